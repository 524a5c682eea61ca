"""Analysts' desk benchmark: the review queue's first page out of 100,000 open events.

Run:  python bench/desk.py [--events 100000] [--repeat 30] [--databases sqlite,postgresql]
                           [--out desk.json]

For each database (a SQLite file, or a private PostgreSQL schema / MariaDB database that
is dropped afterwards):

1. Load ``--events`` open risk events through ``Store.add_risk_events`` (the worker's
   path: one event a statement, its symbols beside it), each like a worker's: ten evidence
   trades in ``details``, a value moved (log-normal; a fifth of the events moved none, a
   twentieth has none recorded), a counterparty for a third, 2,000 accounts, 40 symbols.
2. Time ``GET /v1/risk-events`` queries through the real app (on PostgreSQL after
   ``ANALYZE``, and the first two again after ``VACUUM ANALYZE``, the state autovacuum
   keeps a table in; the machine's server runs with autovacuum off). *Server time* is measured
   by an ASGI wrapper around the app: from the moment the app receives the request to
   its last response byte (routing, parameter checks, the store's two queries - the page
   and the total count - and the JSON of 50 events with their details), without the
   client. Each query runs twice to warm up, then ``--repeat`` times; the median, p95 and
   max are reported.
3. Drop the triage indexes of migrations 0005 and 0007 (keeping the columns) and time the same
   queries again in the same run: the *ratio* column is without / with indexes.

Target: the first 50 of 100,000 open events by priority (the page's default query) in at
most 300 ms of server time on SQLite and on PostgreSQL. The last line printed is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

DATABASES = {
    "sqlite": None,
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
TARGET_MS = 300.0
#: (label, query string) timed on every database; the first is the target's query.
QUERIES = [
    ("open, by priority (default)", "status=open"),
    ("all statuses, by priority", ""),
    ("open, by score", "status=open&sort=-score"),
    ("open, by value moved", "status=open&sort=-value_moved"),
    ("open, newest first", "status=open&sort=-created_at"),
    ("open, by window end", "status=open&sort=-window_end"),
    ("open, by account", "status=open&sort=account_id"),
    ("open, page 21 by priority", "status=open&offset=1000"),
    ("account prefix acct-001", "status=open&account_prefix=acct-001"),
    ("symbol SYM07", "status=open&symbol=SYM07"),
    ("counterparty acct-01234", "status=open&counterparty=acct-01234"),
    ("value moved >= 5,000", "status=open&min_value_moved=5000"),
]
#: Indexes of migrations 0005 and 0007 the "without" run drops.
TRIAGE_INDEXES = (
    "ix_risk_events_status_priority",
    "ix_risk_events_priority",
    "ix_risk_events_status_score",
    "ix_risk_events_status_value",
    "ix_risk_events_status_window",
    "ix_risk_events_status_account",
    "ix_risk_events_status_counterparty",
    "ix_risk_events_counterparty",
    "ix_risk_event_symbols_symbol",
)


def make_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` open events shaped like the worker's."""
    rng = np.random.default_rng(seed)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    accounts = [f"acct-{i:05d}" for i in range(2000)]
    symbols = [f"SYM{i:02d}" for i in range(40)]
    out = []
    for i in range(n):
        end = base + timedelta(seconds=int(rng.integers(0, 30 * 86400)))
        u = rng.random()
        value = None if u < 0.05 else 0.0 if u < 0.25 else float(rng.lognormal(6.0, 1.5))
        syms = rng.choice(symbols, size=int(rng.integers(1, 4)), replace=False)
        trades = [
            {
                "trade_id": f"t{i}-{k}",
                "ts": (end - timedelta(minutes=5 * k)).isoformat(),
                "symbol": str(syms[k % len(syms)]),
                "side": "buy" if k % 2 == 0 else "sell",
                "price": 10.0 + k,
                "quantity": 100.0,
                "pos": 0.98 if k % 2 == 0 else 0.02,
                "bar_low": 10.0,
                "bar_high": 11.0,
                "reason": "buy at 98% of bar range; matched by a sell in the same bar",
            }
            for k in range(10)
        ]
        out.append(
            {
                "account_id": accounts[int(rng.integers(0, len(accounts)))],
                "score": float(min(1.0, 0.9 + rng.random() * 0.1)),
                "threshold": 0.9,
                "model_version": "market-features:v0001",
                "window_start": end - timedelta(hours=24),
                "window_end": end,
                "created_at": end + timedelta(seconds=2),
                "value_moved": value,
                "counterparty": accounts[int(rng.integers(0, len(accounts)))]
                if rng.random() < 1 / 3
                else None,
                "details": {"trades": trades, "value_moved": value},
            }
        )
    return out


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A private database of ``kind`` for this run, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'desk.db'}"
        return
    import sqlalchemy as sa

    name = f"fl_desk_{uuid.uuid4().hex[:10]}"
    server = DATABASES[kind]
    assert server is not None  # every kind but sqlite names its server
    base = sa.engine.make_url(server)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    if kind == "postgresql":
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
        url = base.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        create, drop = f"CREATE DATABASE `{name}`", f"DROP DATABASE IF EXISTS `{name}`"
        url = base.set(database=name)
    with admin.connect() as conn:
        conn.execute(sa.text(create))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


class ServerTimer:
    """ASGI wrapper recording each request's time inside the app (seconds)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.times.append(time.perf_counter() - t0)


def time_queries(
    client: Any, timer: ServerTimer, repeat: int, queries: list[tuple[str, str]] = QUERIES
) -> dict[str, dict[str, float]]:
    out = {}
    for label, query in queries:
        url = f"/v1/risk-events?{query}" if query else "/v1/risk-events"
        for _ in range(2):
            r = client.get(url)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:300]}")
        timer.times.clear()
        for _ in range(repeat):
            client.get(url)
        ms = sorted(t * 1000 for t in timer.times)
        out[label] = {
            "median_ms": statistics.median(ms),
            "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
            "max_ms": ms[-1],
            "total": int(r.json()["total"]),
        }
    return out


def plan_of_default(store: Any) -> str:
    """The database's plan for the default query (one line)."""
    import sqlalchemy as sa

    from fraudlens.store._tables import RiskEventRow
    from fraudlens.store._triage import DEFAULT_SORT, order_by

    stmt = (
        sa.select(RiskEventRow.__table__)
        .where(RiskEventRow.status == "open")
        .order_by(*order_by(DEFAULT_SORT, store.dialect))
        .limit(50)
    )
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    prefix = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(prefix[store.dialect] + sql)).all()
    if store.dialect == "sqlite":
        return "; ".join(str(r[-1]) for r in rows)
    if store.dialect == "postgresql":
        return "; ".join(str(r[0]).strip() for r in rows[:2])
    keys = rows[0]._mapping
    return f"key={keys.get('key')} extra={keys.get('Extra')}"


def drop_triage_indexes(store: Any) -> None:
    import sqlalchemy as sa

    with store.engine.begin() as conn:
        for name in TRIAGE_INDEXES:
            table = "risk_event_symbols" if "symbols" in name else "risk_events"
            if store.dialect == "mysql":
                if name == "ix_risk_event_symbols_symbol":
                    continue  # MySQL needs an index on the foreign key's column first
                conn.execute(sa.text(f"DROP INDEX {name} ON {table}"))
            else:
                conn.execute(sa.text(f"DROP INDEX {name}"))
        if store.dialect == "postgresql":
            conn.execute(sa.text("ANALYZE risk_events"))
    # fresh connections: no statement prepared (or plan cached) before the drop is reused
    store.engine.dispose()


def run_one(kind: str, events: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient
    from rich.progress import Progress

    from fraudlens.config import Settings
    from fraudlens.service import create_app
    from fraudlens.store import open_store

    with tempfile.TemporaryDirectory() as tmpdir, database(kind, Path(tmpdir)) as url:
        tmp = Path(tmpdir)
        store = open_store(url)
        store.upgrade()
        t0 = time.perf_counter()
        with Progress(transient=True) as bar:
            task = bar.add_task(f"{kind}: loading {len(events):,} events", total=len(events))
            for i in range(0, len(events), 2000):
                store.add_risk_events(events[i : i + 2000])
                bar.update(task, advance=len(events[i : i + 2000]))
        load_s = time.perf_counter() - t0
        if store.dialect == "postgresql":
            import sqlalchemy as sa

            with store.engine.begin() as conn:  # what autovacuum would do soon after
                conn.execute(sa.text("ANALYZE"))
        settings = Settings(
            models_dir=tmp / "models", database_url=url, queue_url=f"sqlite:///{tmp / 'q.db'}"
        )
        app = create_app(settings, store=store, preload=False)
        timer = ServerTimer(app)
        with TestClient(timer) as client:
            with_idx = time_queries(client, timer, repeat)
            plan = plan_of_default(store)
            vacuumed = None
            if store.dialect == "postgresql":
                # The machine's server runs with autovacuum off; a production server's
                # autovacuum visits a table after a bulk insert like this and sets its
                # visibility map, which lets the total count read the index alone.
                import sqlalchemy as sa

                with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("VACUUM ANALYZE risk_events"))
                vacuumed = time_queries(client, timer, repeat, QUERIES[:2])
            drop_triage_indexes(store)
            without = time_queries(client, timer, repeat)
            plan_without = plan_of_default(store)
        store.close()
    return {
        "database": kind,
        "events": len(events),
        "load_seconds": round(load_s, 1),
        "with_indexes": with_idx,
        "after_vacuum": vacuumed,
        "without_indexes": without,
        "plan": plan,
        "plan_without": plan_without,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in DATABASES]
    if unknown:
        parser.error(f"unknown database {unknown[0]!r}; choose from {', '.join(DATABASES)}")
    events = make_events(args.events)
    results = [run_one(kind, events, args.repeat) for kind in kinds]

    for res in results:
        print(
            f"\n{res['database']}: {res['events']:,} open events (loaded through "
            f"Store.add_risk_events in {res['load_seconds']:.0f} s), server time in ms "
            f"over {args.repeat} requests"
        )
        print(
            f"{'query':32} {'matches':>8} {'median':>8} {'p95':>8} {'max':>8} "
            f"{'no-idx med':>11} {'ratio':>7}"
        )
        for label, _q in QUERIES:
            a, b = res["with_indexes"][label], res["without_indexes"][label]
            print(
                f"{label:32} {a['total']:>8,} {a['median_ms']:>8.1f} {a['p95_ms']:>8.1f} "
                f"{a['max_ms']:>8.1f} {b['median_ms']:>11.1f} "
                f"{b['median_ms'] / a['median_ms']:>6.1f}x"
            )
        if res["after_vacuum"]:
            for label, a in res["after_vacuum"].items():
                print(
                    f"{label.split(' (')[0] + ' (vacuumed)':32} {a['total']:>8,} "
                    f"{a['median_ms']:>8.1f} {a['p95_ms']:>8.1f} {a['max_ms']:>8.1f}"
                )
        print(f"plan (default query): {res['plan']}")
        print(f"plan without the triage indexes: {res['plan_without']}")
    verdict = {
        r["database"]: r["with_indexes"][QUERIES[0][0]]["p95_ms"] <= TARGET_MS for r in results
    }
    print(
        "\ntarget: first 50 of the open events by priority in <= 300 ms server time (p95): "
        + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in verdict.items())
    )
    blob = {"target_ms": TARGET_MS, "repeat": args.repeat, "results": results, "met": verdict}
    if args.out is not None:
        args.out.write_text(json.dumps(blob, indent=2))
    print(json.dumps(blob))
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
