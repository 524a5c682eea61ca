"""Database time of the worker's batch, statement by statement, on a server database.

Run:  python bench/_db_time.py --server mysql+pymysql://root@127.0.0.1:3306 [--sizes 1,4,100]
                               [--repeats 40] [--db fl_dbtime_tmp] [--events FILE]

Creates the database ``--db`` on the server (dropped at the end), loads
``simulate(2000, seed=1, days=3)`` as bench/pipeline.py does, and scores with the default
feature detector fitted on ``simulate(2000, seed=2, days=3)`` (kept in ``--cache``, shared
with bench/_batch_cpu.py). Batches run through ``CheckHandler._work`` as the worker runs
them (one pinned connection kept between batches); every statement's wall time is taken
from SQLAlchemy's ``before_cursor_execute``/``after_cursor_execute`` events (PyMySQL and
psycopg read the whole result inside ``execute``), and COMMIT, ROLLBACK and the pool's
ping from the dialect's ``do_commit``/``do_rollback``/``do_ping``.

Batches: of size 1 and 4, distinct take-over accounts (each batch writes its events, as
the latency run's checks do); of size 100 (or any size >= 50), the 2,000 accounts in
order, as the drain works them. The risk events are deleted before each size (untimed).
Prints per size: batches, wall and CPU ms per batch (median), database ms per batch
(median), then per statement kind the calls and ms per batch (mean) and per call, and
the CPU this process spent inside those calls per batch (the driver's quoting and row
parsing; the rest of a call's time is the network and the server).

``--events FILE`` also drains every account at batches of 100 into an emptied store and
writes its risk events (all fields but id, created_at, requested_at) and their symbol
rows, sorted, as JSON: compare two trees' files for parity.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from _batch_cpu import bench_models, load_store  # type: ignore[import-not-found]
from fraudlens.checks import AccountCheck
from fraudlens.consume import BatchResult
from fraudlens.store import open_store
from fraudlens.worker import CheckHandler

_KINDS = (
    ("window_joined", re.compile(r"ts <= \(SELECT MAX\(ts\)", re.I)),
    ("latest", re.compile(r"^SELECT trades\.account_id, max\(", re.I)),
    ("window", re.compile(r"FROM trades\s+WHERE trades\.account_id IN", re.I)),
    ("bars", re.compile(r"FROM klines", re.I)),
    (
        "mirror",
        re.compile(
            r"FROM (trades (FORCE INDEX \(ix_trades_mirror\) )?WHERE \(symbol|unnest)", re.I
        ),
    ),
    ("insert_event", re.compile(r"^INSERT\b.*INTO risk_events\b", re.I | re.S)),
    ("insert_symbols", re.compile(r"^INSERT\b.*INTO risk_event_symbols", re.I | re.S)),
)


def _kind(statement: str) -> str:
    for name, rx in _KINDS:
        if rx.search(statement):
            return name
    return "other: " + " ".join(statement.split())[:60]


class _Timer:
    def __init__(self, engine: sa.Engine) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        #: this process's CPU seconds inside each kind's calls (PyMySQL quotes the values
        #: and parses the rows in Python: that part is the client's, not the server's)
        self.cpu: dict[str, float] = defaultdict(float)
        #: the slowest call of each kind: (seconds, the statement as sent, when known)
        self.slowest: dict[str, tuple[float, str]] = {}
        self.on = False
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)
        dialect = engine.dialect
        for name, kind in (
            ("do_commit", "COMMIT"),
            ("do_rollback", "ROLLBACK"),
            ("do_ping", "ping"),
        ):
            self._wrap(dialect, name, kind)

    def _wrap(self, dialect: Any, name: str, kind: str) -> None:
        inner = getattr(dialect, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                if self.on:
                    self.calls[kind].append(time.perf_counter() - t0)
                    self.cpu[kind] += time.process_time() - c0

        setattr(dialect, name, timed)

    def _before(self, conn, cursor, statement, params, context, executemany) -> None:
        conn.info["_c0"] = time.process_time()
        conn.info["_t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, executemany) -> None:
        if self.on:
            kind = _kind(statement)
            took = time.perf_counter() - conn.info.pop("_t0")
            self.calls[kind].append(took)
            self.cpu[kind] += time.process_time() - conn.info.pop("_c0")
            if took > self.slowest.get(kind, (0.0, ""))[0]:
                sent = getattr(cursor, "_executed", None) or statement
                self.slowest[kind] = (took, sent if isinstance(sent, str) else str(sent))


def _database(server: str, name: str, create: bool) -> str:
    url = sa.engine.make_url(server)
    admin = url.set(database="postgres" if url.get_backend_name() == "postgresql" else "mysql")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        if create:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _clear(handler: CheckHandler) -> None:
    with handler.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM risk_event_symbols"))
        conn.execute(sa.text("DELETE FROM risk_events"))


def _run(handler: CheckHandler, ids: list[str]) -> None:
    items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
    handler._work(items, BatchResult())  # type: ignore[arg-type]


def _events(handler: CheckHandler) -> dict[str, Any]:
    with handler.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM risk_events")).mappings().all()
        syms = conn.execute(
            sa.text(
                "SELECT e.account_id, e.window_end, s.symbol FROM risk_event_symbols s "
                "JOIN risk_events e ON e.id = s.event_id"
            )
        ).all()
    events = []
    for r in rows:
        d = {k: v for k, v in r.items() if k not in ("id", "created_at", "requested_at")}
        if isinstance(d.get("details"), str):
            d["details"] = json.loads(d["details"])
        events.append(json.loads(json.dumps(d, default=str, sort_keys=True)))
    events.sort(key=lambda e: json.dumps(e, sort_keys=True))
    return {"events": events, "symbols": sorted([str(a), str(w), str(s)] for a, w, s in syms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--server", required=True, help="server URL without a database")
    ap.add_argument("--db", default="fl_dbtime_tmp")
    ap.add_argument("--sizes", default="1,4,100")
    ap.add_argument("--repeats", type=int, default=40, help="batches per small size")
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--cache", default="/tmp/fraudlens-batch-cpu-cache")
    ap.add_argument("--events", default=None, help="write a batch-100 drain's events here")
    ap.add_argument("--slowest", default=None, help="write each kind's slowest statement here")
    ap.add_argument("--keep", action="store_true", help="leave the database (drop it yourself)")
    args = ap.parse_args()
    models = bench_models(Path(args.cache))
    url = _database(args.server, args.db, True)
    try:
        store = open_store(url)
        store.upgrade()
        handler, ids, flagged = load_store(store, args.accounts, models)
        timer = _Timer(store.engine)
        # warm-up (libraries, the model, the closed days' bars), then a clean table
        for a in ids[:50]:
            _run(handler, [a])
        print(f"{store.dialect}: {len(flagged)} take-over accounts", flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            _clear(handler)
            if size >= 50:
                batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            else:
                rng = np.random.default_rng(size)
                pool = rng.permutation(flagged).tolist()
                batches = [pool[i * size : (i + 1) * size] for i in range(args.repeats)]
            timer.calls.clear()
            timer.cpu.clear()
            timer.slowest.clear()
            walls, cpus, dbs = [], [], []
            for batch in batches:
                before = {k: sum(v) for k, v in timer.calls.items()}
                timer.on = True
                t0, c0 = time.perf_counter(), time.process_time()
                _run(handler, batch)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                timer.on = False
                dbs.append(sum(sum(v) - before.get(k, 0.0) for k, v in timer.calls.items()))
            n = len(batches)
            print(
                f"batch of {size}: {n} batches, wall {statistics.median(walls) * 1e3:.2f} ms, "
                f"CPU {statistics.median(cpus) * 1e3:.2f} ms, database "
                f"{statistics.median(dbs) * 1e3:.2f} ms (median per batch; database mean "
                f"{statistics.fmean(dbs) * 1e3:.2f})",
                flush=True,
            )
            for kind, times in sorted(timer.calls.items(), key=lambda kv: -sum(kv[1])):
                print(
                    f"  {kind:<16} {len(times) / n:6.2f} calls {sum(times) / n * 1e3:8.3f} ms "
                    f"per batch; {statistics.median(times) * 1e3:7.3f} ms median per call; "
                    f"client CPU {timer.cpu[kind] / n * 1e3:7.3f} ms per batch",
                    flush=True,
                )
            if args.slowest:
                with open(args.slowest, "a") as fh:
                    for kind, (took, sent) in timer.slowest.items():
                        fh.write(f"-- size {size} {kind} {took * 1e3:.2f} ms\n{sent};\n")
        if args.events:
            _clear(handler)
            for i in range(0, len(ids), 100):
                _run(handler, ids[i : i + 100])
            out = _events(handler)
            Path(args.events).write_text(json.dumps(out, sort_keys=True))
            print(
                f"{len(out['events'])} events, {len(out['symbols'])} symbol rows -> {args.events}"
            )
        store.close()
    finally:
        if not args.keep:
            _database(args.server, args.db, False)


if __name__ == "__main__":
    main()
