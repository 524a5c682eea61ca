"""Commit latency of the risk-event write on the servers themselves, without fraudlens.

Run:  python bench/store_commit_tail.py [--seconds 30] [--rate 100] [--rows 1]
                                       [--servers mariadb,postgresql]

The worker's last step per batch is one transaction: ``INSERT`` the batch's risk events
(``INSERT IGNORE`` on MariaDB, ``ON CONFLICT DO NOTHING`` on PostgreSQL, ``RETURNING
id``), ``INSERT`` their symbols, ``COMMIT``. This sends the same transaction through the
bare drivers (PyMySQL, psycopg: no SQLAlchemy, no fraudlens code in the timed path) into
fraudlens's own tables (a database of its own per server, ``fraudlens_bench_<random>``,
schema by ``Store.upgrade``, dropped at the end), ``--rate`` transactions a second on
each server, and times each from the first statement to the end of the ``COMMIT``; then
one ``SELECT 1`` round trip as a control. The servers take turns, and which goes first
changes every tick, so both see the same machine load.

What it tells: how much of a pipeline latency tail (bench/pipeline.py) the server and
its disk give on their own at that rate. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fraudlens.store import open_store
from pipeline import _database

SERVERS = {
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/fraudlens_bench_{uid}",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/fraudlens_bench_{uid}",
}

_COLUMNS = (
    "account_id, fraud_type, business_type, score, threshold, model_threshold, "
    "model_version, window_start, window_end, details, value_moved, counterparty, "
    "priority, status, created_at, requested_at"
)


def _connect(name: str, url: str) -> Any:
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    if name == "mariadb":
        import pymysql

        return pymysql.connect(
            host=u.host, port=u.port or 3306, user=u.username, database=u.database
        )
    import psycopg

    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, dbname=u.database)


def _details() -> str:
    """An event's details of the size the worker writes (ten explained trades)."""
    trades = [
        {
            "trade_id": f"T{i}",
            "symbol": "BTCUSDT",
            "side": "buy" if i % 2 else "sell",
            "price": 123.456 + i,
            "quantity": 1.5,
            "ts": "2026-01-01T00:00:00+00:00",
            "contribution": 0.1234,
        }
        for i in range(10)
    ]
    return json.dumps({"trades": trades, "value_moved": 1234.5, "counterparty": "A99"})


def _transaction(name: str, conn: Any, first: int, rows: int, details: str) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    values: list[Any] = []
    for n in range(first, first + rows):
        values += [
            f"acct{n}",
            "market",
            "withdrawal",
            0.95,
            0.9,
            0.5,
            "market/v1",
            now - timedelta(hours=24),
            now,
            details,
            1234.5,
            "A99",
            1172.8,
            "open",
            now,
            now,
        ]
    marks = "(" + ", ".join(["%s"] * 16) + ")"
    head = "INSERT IGNORE INTO" if name == "mariadb" else "INSERT INTO"
    tail = "" if name == "mariadb" else " ON CONFLICT DO NOTHING"
    cur = conn.cursor()
    cur.execute(
        f"{head} risk_events ({_COLUMNS}) VALUES {', '.join([marks] * rows)}{tail} RETURNING id",
        values,
    )
    ids = [r[0] for r in cur.fetchall()]
    if ids:
        cur.execute(
            "INSERT INTO risk_event_symbols (event_id, symbol) VALUES "
            + ", ".join(["(%s, %s)"] * len(ids)),
            [v for i in ids for v in (i, "BTCUSDT")],
        )
    conn.commit()
    cur.close()


def _ping(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    conn.commit()
    cur.close()


def _summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": float(len(a)),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=100.0, help="transactions per second per server")
    ap.add_argument("--rows", type=int, default=1, help="risk events per transaction")
    ap.add_argument("--servers", default="mariadb,postgresql")
    args = ap.parse_args()
    names = args.servers.split(",")
    uid = uuid.uuid4().hex[:8]
    urls = {n: SERVERS[n].format(uid=uid) for n in names}
    details = _details()
    conns: dict[str, Any] = {}
    tx: dict[str, list[float]] = {n: [] for n in names}
    ping: dict[str, list[float]] = {n: [] for n in names}
    try:
        for n, url in urls.items():
            _database(url, create=True)
            store = open_store(url)
            store.upgrade()
            store.close()
            conns[n] = _connect(n, url)
        serial = 0
        tick = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            order = names[tick % len(names) :] + names[: tick % len(names)]
            for n in order:
                t = time.perf_counter()
                _transaction(n, conns[n], serial, args.rows, details)
                tx[n].append((time.perf_counter() - t) * 1000)
                serial += args.rows
                t = time.perf_counter()
                _ping(conns[n])
                ping[n].append((time.perf_counter() - t) * 1000)
            tick += 1
            pause = t0 + tick / args.rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    finally:
        for c in conns.values():
            c.close()
        for url in urls.values():
            _database(url, create=False)
    results: dict[str, Any] = {}
    for n in names:
        results[n] = {"transaction": _summary(tx[n]), "select_1": _summary(ping[n])}
        for what, r in results[n].items():
            print(
                f"{n:10s} {what:11s} n={r['n']:.0f} p50 {r['p50_ms']:.2f} p90 {r['p90_ms']:.2f} "
                f"p99 {r['p99_ms']:.2f} max {r['max_ms']:.2f} ms"
            )
    print(json.dumps({"seconds": args.seconds, "rate": args.rate, "rows": args.rows, **results}))


if __name__ == "__main__":
    main()
