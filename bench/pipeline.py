"""Pipeline benchmark: account checks from the queue to risk rows, on real backends.

Run:  python bench/pipeline.py [--accounts 3000] [--rate 100] [--seconds 10]
                              [--setups sqlite,redis+postgresql,redis+mariadb]
                              [--batch-sizes 100,500]

The server setups use a database of their own on the machine's PostgreSQL / MariaDB
(``fraudlens_bench_<random>``, created and dropped here) and a stream of their own on
Redis, so the benchmark never touches other users' tables.

For each setup (queue + database):

0. Bulk load: rows per second of ``Store.load_klines`` + ``load_trades`` (what
   ``fraudlens db load`` runs) into empty tables.
1. Throughput. Every simulated account is queued (half of them take-over patterns), then
   the worker drains the queue: one process in this interpreter, once per
   ``--batch-sizes`` entry, then ``--concurrency 2`` (two processes, the machine's two
   cores, batches of 100). Rate = checks / busy time (first batch in to last batch
   done, without start-up or idle waits); the CPU rate divides by the process's CPU time
   instead, which other jobs on a shared machine disturb less.
2. Latency at moderate load. A ``fraudlens worker`` process runs; once it has worked
   the normal accounts' checks (a warm-up to steady state: libraries, model and the
   closed days' bars loaded), a producer sends checks of distinct take-over accounts at
   ``--rate`` per second, each stamped with ``requested_at``, so each makes a risk row.
   Latency = the risk row's ``created_at`` minus ``requested_at``, read back from the
   database (p50, p99, max).

Targets: >= 2,000 checks/s in one process with the embedded queue and SQLite; p99 <= 50
ms at 100 checks/s on every setup. The last line printed is one JSON object with every
figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudlens.checks import check_message
from fraudlens.market.data import window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.queues import Queue, RedisQueue, open_queue
from fraudlens.registry import Registry
from fraudlens.store import Store, open_store
from fraudlens.worker import Worker, WorkerConfig, run_workers

SETUPS = {
    "sqlite": ("sqlite:///{tmp}/queue.db", "sqlite:///{tmp}/store.db"),
    "redis+postgresql": (
        "redis://127.0.0.1:6379/0?stream=fraudlens-bench-{uid}",
        "postgresql+psycopg://postgres@127.0.0.1:5432/fraudlens_bench_{uid}",
    ),
    "redis+mariadb": (
        "redis://127.0.0.1:6379/0?stream=fraudlens-bench-{uid}",
        "mysql+pymysql://root@127.0.0.1:3306/fraudlens_bench_{uid}",
    ),
}


def _drop_stream(queue_url: str) -> None:
    """Delete the run's own Redis stream (its keys would stay in the server otherwise)."""
    if queue_url.startswith("redis"):
        queue = open_queue(queue_url)
        assert isinstance(queue, RedisQueue)
        queue.remove()


def _database(store_url: str, create: bool) -> None:
    """Create (or drop) the benchmark's own database on a server."""
    import sqlalchemy as sa

    url = sa.engine.make_url(store_url)
    if url.get_backend_name() == "sqlite":
        return
    name = url.database
    admin = url.set(database="postgres" if url.get_backend_name() == "postgresql" else "mysql")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if create:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        else:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    engine.dispose()


def _fresh(store_url: str, data: Any, timings: dict[str, float] | None = None) -> Store:
    store = open_store(store_url)
    store.drop_all()
    store.upgrade()
    t0 = time.perf_counter()
    store.load_klines(data.klines)
    store.load_trades(data.trades)
    if timings is not None:
        timings["load_rows_per_s"] = (len(data.klines) + len(data.trades)) / (
            time.perf_counter() - t0
        )
    return store


def _drain_in_process(
    queue_url: str, store: Store, models: Path, ids: list[str], batch_size: int
) -> tuple[float, float]:
    """(checks per second of busy time, checks per CPU second) of one worker here."""
    with open_queue(queue_url) as q:
        q.send_batch([check_message(a) for a in ids])
        w = Worker(q, store, models, batch_size=batch_size)
        cpu = time.process_time()
        stats = w.run(idle_exit=0.5)
        cpu = time.process_time() - cpu
        assert stats.processed == len(ids), stats
        assert q.depth() == 0
    assert stats.first_at is not None and stats.last_at is not None
    return stats.processed / (stats.last_at - stats.first_at), stats.processed / cpu


def _drain_processes(queue_url: str, store_url: str, models: Path, ids: list[str]) -> float:
    with open_queue(queue_url) as q:
        q.send_batch([check_message(a) for a in ids])
    config = WorkerConfig(queue_url, store_url, models, idle_exit=1.0)
    all_stats = run_workers(config, concurrency=2)
    first = min(s.first_at for s in all_stats if s.first_at is not None)
    last = max(s.last_at for s in all_stats if s.last_at is not None)
    done = sum(s.processed for s in all_stats)
    assert done == len(ids), [s.processed for s in all_stats]
    return done / (last - first)


def _latency(
    queue_url: str,
    store: Store,
    models: Path,
    flagged: list[str],
    normal: list[str],
    rate: float,
    seconds: float,
) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "fraudlens.cli",
        "worker",
        "--queue",
        queue_url,
        "--db",
        store.url,
        "--model-dir",
        str(models),
        "--metrics-port",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    q: Queue = open_queue(queue_url)
    try:
        # Warm up to a steady state: the normal accounts' checks (no events) load the
        # libraries, the model and the closed days' bars, as a long-running worker has.
        q.send_batch([check_message(a) for a in normal])
        q.send(check_message(flagged[0]))
        deadline = time.monotonic() + 300
        while store.counts()["risk_events"] < 1 or q.depth() > 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the worker did not start")
            time.sleep(0.05)
        n = min(int(rate * seconds), len(flagged) - 1)
        todo = flagged[1 : n + 1]
        t0 = time.perf_counter()
        for i, account in enumerate(todo):
            # An even arrival rate: sleep until this message's slot.
            pause = t0 + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            q.send(check_message(account, "withdrawal", datetime.now(UTC)))
        deadline = time.monotonic() + 120
        while store.counts()["risk_events"] < n + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        items, total = store.list_risk_events(business_type="withdrawal", limit=10_000)
        lat = np.array(
            [
                (
                    datetime.fromisoformat(e["created_at"])
                    - datetime.fromisoformat(e["requested_at"])
                ).total_seconds()
                for e in items
            ]
        )
        return {
            "sent": float(n),
            "rows": float(total),
            "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000),
            "max_ms": float(lat.max() * 1000),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        q.purge()
        q.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=100.0, help="checks per second (latency run)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    ap.add_argument("--setups", default="sqlite,redis+postgresql")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-sizes", default="100,500", help="throughput runs, one process")
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="fraudlens-bench-pipeline-"))
    print(
        f"simulating {args.accounts:,} accounts and training the feature detector ...", flush=True
    )
    data = simulate(args.accounts, seed=args.seed + 1, days=3)
    models = tmp / "models"
    Registry(models).save(FeatureDetector().fit(window(simulate(2000, seed=args.seed + 2, days=3))))
    det = Registry(models).load("market")
    scores = det.decision_function(window(data))
    ids = [str(a) for a in data.account_ids]
    flagged = [a for a, s in zip(ids, scores, strict=True) if s > 0.9]
    normal = sorted(set(ids) - set(flagged))
    print(f"{len(ids):,} accounts, {len(flagged):,} above 0.9", flush=True)

    results: dict[str, dict[str, float]] = {}
    for name in args.setups.split(","):
        q_tpl, db_tpl = SETUPS[name]
        uid = uuid.uuid4().hex[:8]
        queue_url, store_url = (t.format(tmp=tmp, uid=uid) for t in (q_tpl, db_tpl))
        print(f"\n== {name}", flush=True)
        _database(store_url, create=True)
        try:
            timings: dict[str, float] = {}
            store = _fresh(store_url, data, timings)
            print(f"  bulk load : {timings['load_rows_per_s']:,.0f} rows/s", flush=True)
            one: dict[str, float] = {}
            for b in batch_sizes:
                store.close()
                store = _fresh(store_url, data)
                rate, cpu_rate = _drain_in_process(queue_url, store, models, ids, b)
                one[f"checks_per_s_1proc_b{b}"] = rate
                one[f"checks_per_cpu_s_1proc_b{b}"] = cpu_rate
                print(
                    f"  1 process, batches of {b}: {rate:,.0f} checks/s "
                    f"({cpu_rate:,.0f} per CPU second)",
                    flush=True,
                )
            store.close()
            store = _fresh(store_url, data)
            two = _drain_processes(queue_url, store_url, models, ids)
            print(f"  2 processes: {two:,.0f} checks/s", flush=True)
            store.close()
            store = _fresh(store_url, data)
            lat = _latency(queue_url, store, models, flagged, normal, args.rate, args.seconds)
            print(
                f"  latency at {args.rate:.0f}/s: p50 {lat['p50_ms']:.1f} ms, "
                f"p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms "
                f"({lat['rows']:.0f} rows)",
                flush=True,
            )
            store.drop_all()
            store.close()
        finally:
            _database(store_url, create=False)
            _drop_stream(queue_url)
        results[name] = {**timings, **one, "checks_per_s_2proc": two, **lat}

    heads = " | ".join(f"checks/s 1 proc, batch {b} (per CPU s)" for b in batch_sizes)
    print(
        f"\n| setup | load rows/s | {heads} | checks/s, 2 processes "
        f"| p50 ms at {args.rate:.0f}/s | p99 ms | max ms |"
    )
    print("| --- |" + " ---: |" * (len(batch_sizes) + 5))
    for name, r in results.items():
        cells = " | ".join(
            f"{r[f'checks_per_s_1proc_b{b}']:,.0f} ({r[f'checks_per_cpu_s_1proc_b{b}']:,.0f})"
            for b in batch_sizes
        )
        print(
            f"| {name} | {r['load_rows_per_s']:,.0f} | {cells} | "
            f"{r['checks_per_s_2proc']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |"
        )
    base = results.get("sqlite")
    if base:
        best = max(base[f"checks_per_s_1proc_b{b}"] for b in batch_sizes)
        print(f"target >= 2,000 checks/s (embedded, 1 process): {best:,.0f} ({best / 2000:.2f}x)")
    for name, r in results.items():
        print(f"target p99 <= 50 ms at {args.rate:.0f}/s, {name}: {r['p99_ms']:.1f} ms")
    print(
        json.dumps(
            {"accounts": len(ids), "rate": args.rate, "cpu_count": os.cpu_count(), **results}
        )
    )


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
