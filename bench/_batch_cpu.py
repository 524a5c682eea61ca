"""CPU time of the worker's scoring path per small batch (no queue; the store's window
read timed with ``--read`` only).

Run:  python bench/_batch_cpu.py [--sizes 1,4,16] [--repeats 60] [--profile 1]
                                [--accounts 2000] [--read] [--write] [--prefill 20000]
                                [--out FILE]

The set-up follows bench/pipeline.py: ``simulate(accounts, seed=1, days=3)`` loaded into
a SQLite store in a temporary folder, the default feature detector fitted on
``simulate(2000, seed=2, days=3)`` (kept in ``--cache`` between runs so every tree scores
with the same model), and the take-over accounts (score above the risk-event threshold
0.9): the checks the latency run sends at 100/s, each of which makes a risk event.

Per repeat a batch of ``size`` such accounts is read with ``Store.account_windows``
(untimed unless ``--read``, a fresh read each time, as the worker does), then the
worker's handler path is timed with ``time.process_time``: ``score_market`` (features,
scores, explanations of the flagged), ``CheckHandler._with_counterparties`` (the book's
candidates, the evidence) and ``CheckHandler._events`` (the risk events). The store's
mirror-candidate lookup the book makes inside ``score_market`` is in the timed part
(SQLite, in process).

Each batch runs ``--inner`` times (a fresh read each time) and its least CPU time
counts (other jobs on a shared machine only ever add time). Prints per size the median
(and min and mean) of those CPU ms per batch over the repeats and the garbage
collections that ran inside the timed runs (CPU ms per run), then with
``--profile`` a cProfile top list of batches of that size. ``--out`` writes the events'
fields (all but ``created_at``) of every timed batch as JSON, to compare two trees.

``--write`` times the worker's whole handler path (``CheckHandler._work_reconnecting``
without the queue): the window read, the scoring path above and the events' insert
(``Store.add_risk_events``: the rows, their JSON details, the table's indexes, the symbol
rows). The events table first holds ``--prefill`` events of other accounts (the indexes
of a store in use are not empty); each run's new events are deleted after it, untimed.
With ``--write``, ``--out`` writes the stored rows instead: every column but ``id`` and
``created_at``, ``details`` parsed from the stored text by :func:`json.loads`, and the
event's symbol rows, so two trees' files are equal when they store the same values.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import dataclasses
import gc
import io
import json
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fraudlens.checks import AccountCheck
from fraudlens.market.data import window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
from fraudlens.store import open_store
from fraudlens.worker import CheckHandler


def bench_models(cache: Path) -> Path:
    """The benchmark's feature model (trained once, kept in ``cache``)."""
    models = cache / "models"
    if not models.exists():
        Registry(models).save(FeatureDetector().fit(window(simulate(2000, seed=2, days=3))))
    return models


def load_store(
    store: Any, accounts: int, models: Path
) -> tuple[CheckHandler, list[str], list[str]]:
    """Load ``accounts`` simulated accounts into ``store``: the worker's handler on it,
    every account id, and the accounts its model flags."""
    data = simulate(accounts, seed=1, days=3)
    store.load_klines(data.klines)
    store.load_trades(data.trades)
    handler = CheckHandler(store, models)
    det = handler._detector()
    scores = det.decision_function(window(data))
    ids = [str(a) for a in data.account_ids]
    flagged = [a for a, s in zip(ids, scores, strict=True) if s > handler.threshold]
    return handler, ids, flagged


def _setup(accounts: int, cache: Path) -> tuple[CheckHandler, list[str]]:
    models = bench_models(cache)
    tmp = Path(tempfile.mkdtemp(prefix="fraudlens-batch-cpu-"))
    store = open_store(f"sqlite:///{tmp}/store.db")
    # the store's folder goes at exit (each run had left its 22 MB behind)
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    atexit.register(store.close)
    store.upgrade()
    handler, _, flagged = load_store(store, accounts, models)
    return handler, flagged


class _Collections:
    """CPU seconds of Python's garbage collections while a batch is timed (``on``), per
    generation: part of a batch's cost that its own code does not show."""

    def __init__(self) -> None:
        self.on = False
        self.spent: dict[int, list[float]] = {}
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.process_time()
        elif self.on:
            self.spent.setdefault(int(info["generation"]), []).append(
                time.process_time() - self._t0
            )

    def report(self, batches: int) -> str:
        if not self.spent:
            return "no garbage collection while timed"
        parts = [
            f"gen {g}: {len(t)} x, {sum(t) * 1000 / batches:.2f} ms/batch"
            for g, t in sorted(self.spent.items())
        ]
        return "garbage collections while timed: " + "; ".join(parts)


COLLECTIONS = _Collections()


def prefill(store: Any, n: int) -> None:
    """``n`` risk events of accounts no check names (``fill-<i>``), spread over a few
    weeks, statuses, scores and counterparties as a store in use holds them, written
    through ``Store.add_risk_events`` in batches of 1,000."""
    from datetime import UTC, datetime, timedelta

    from fraudlens.store import RiskEvent

    rng = np.random.default_rng(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for lo in range(0, n, 1000):
        events = []
        for i in range(lo, min(n, lo + 1000)):
            end = t0 + timedelta(seconds=int(rng.integers(0, 30 * 86400)))
            moved = None if rng.random() < 0.2 else float(rng.gamma(2.0, 5000.0))
            events.append(
                RiskEvent(
                    account_id=f"fill-{i:07d}",
                    score=float(rng.uniform(0.9, 1.0)),
                    event_threshold=0.9,
                    model_version="market-features:fill",
                    window_start=end - timedelta(hours=24),
                    window_end=end,
                    business_type="withdrawal",
                    details={"trades": [{"symbol": f"SYM{i % 40}", "price": 1.0}]},
                    value_moved=moved,
                    counterparty=None if rng.random() < 0.5 else f"fill-{i // 3:07d}",
                    created_at=end + timedelta(minutes=1),
                )
            )
        store.add_risk_events(events)


def _stored(store: Any, since_id: int) -> list[dict[str, Any]]:
    """The risk-event rows above ``since_id`` as stored (see ``--write``), in key order."""
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT * FROM risk_events WHERE id > ? ORDER BY account_id, window_end",
            (since_id,),
        )
        names = list(rows.keys())
        events = [dict(zip(names, r, strict=True)) for r in rows.cursor.fetchall()]
        symbols: dict[int, list[str]] = {}
        for event_id, sym in conn.execute(
            sa.text(
                "SELECT event_id, symbol FROM risk_event_symbols WHERE event_id > :i "
                "ORDER BY event_id, symbol"
            ),
            {"i": since_id},
        ):
            symbols.setdefault(int(event_id), []).append(str(sym))
    out = []
    for e in events:
        e["symbols"] = symbols.get(int(e.pop("id")), [])
        e.pop("created_at")
        e["details"] = json.loads(e["details"])
        out.append(e)
    return out


def _last_id(store: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM risk_events").scalar())


def _forget(store: Any, since_id: int) -> None:
    """Delete the risk events above ``since_id`` and their symbol rows."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM risk_event_symbols WHERE event_id > ?", (since_id,))
        conn.exec_driver_sql("DELETE FROM risk_events WHERE id > ?", (since_id,))


def _work(handler: CheckHandler, ids: list[str], keep: int) -> tuple[float, list[dict]]:
    """CPU seconds of one batch's whole handler path (read, score, insert) and the rows it
    stored; they are deleted again (untimed), down to the prefilled ``keep``."""
    from fraudlens.consume import BatchResult

    items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
    result = BatchResult()
    COLLECTIONS.on = True
    t0 = time.process_time()
    handler._work_reconnecting(items, result)  # type: ignore[arg-type]
    cpu = time.process_time() - t0
    COLLECTIONS.on = False
    out = _stored(handler.store, keep)
    _forget(handler.store, keep)
    return cpu, out


def _batch(
    handler: CheckHandler, ids: list[str], *, read: bool = False
) -> tuple[float, list[dict]]:
    """CPU seconds of one batch's scoring path (with its window read when ``read``), and
    its events."""

    items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
    if not read:
        data = handler.store.account_windows(ids, hours=handler.hours)
    COLLECTIONS.on = True
    t0 = time.process_time()
    if read:
        data = handler.store.account_windows(ids, hours=handler.hours)
    events, _ = handler._score(items, data)  # type: ignore[arg-type]
    cpu = time.process_time() - t0
    COLLECTIONS.on = False
    out = []
    for e in events:
        d = dataclasses.asdict(e)
        d.pop("created_at", None)
        out.append(json.loads(json.dumps(d, default=str)))
    return cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument(
        "--inner", type=int, default=3, help="runs of each batch (fresh reads); the least counts"
    )
    ap.add_argument(
        "--read",
        action="store_true",
        help="time the window read (Store.account_windows: query and frames) too",
    )
    ap.add_argument(
        "--write",
        action="store_true",
        help="time the whole handler path: window read, scoring and the events' insert",
    )
    ap.add_argument(
        "--prefill", type=int, default=20_000, help="events stored before --write's batches"
    )
    ap.add_argument("--profile", type=int, default=0, help="profile batches of this size")
    ap.add_argument("--top", type=int, default=30, help="rows of the profile")
    ap.add_argument("--cache", default="/tmp/fraudlens-batch-cpu-cache")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    handler, flagged = _setup(args.accounts, cache)
    print(f"{len(flagged)} take-over accounts above {handler.threshold}", flush=True)
    keep = 0
    if args.write:
        prefill(handler.store, args.prefill)
        keep = _last_id(handler.store)
        print(f"{keep} events stored before the timed batches", flush=True)
    rng = np.random.default_rng(0)
    # warm-up: libraries, the model, the closed days' bars (as a running worker has)
    for _ in range(5):
        _batch(handler, list(rng.choice(flagged, 4, replace=False)))
    results: dict[str, list] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        COLLECTIONS.spent.clear()
        rng = np.random.default_rng(size)
        times = []
        events = []
        for _ in range(args.repeats):
            ids = sorted(rng.choice(flagged, size, replace=False).tolist())
            runs = [
                _work(handler, ids, keep) if args.write else _batch(handler, ids, read=args.read)
                for _ in range(args.inner)
            ]
            cpu, ev = min(runs, key=lambda r: r[0])
            times.append(cpu * 1000)
            events.append(ev)
        results[str(size)] = events
        print(
            f"batch of {size:3d}: CPU {statistics.median(times):7.3f} ms median, "
            f"{min(times):7.3f} min, {statistics.mean(times):7.3f} mean ({args.repeats} batches)",
            flush=True,
        )
        print("  " + COLLECTIONS.report(args.repeats * args.inner), flush=True)
    if args.profile:
        rng = np.random.default_rng(99)
        batches = [
            sorted(rng.choice(flagged, args.profile, replace=False).tolist())
            for _ in range(args.repeats)
        ]
        prof = cProfile.Profile()
        for ids in batches:
            items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
            if args.write:
                from fraudlens.consume import BatchResult

                prof.enable()
                handler._work_reconnecting(items, BatchResult())  # type: ignore[arg-type]
                prof.disable()
                _forget(handler.store, keep)
                continue
            if not args.read:
                data = handler.store.account_windows(ids, hours=handler.hours)
            prof.enable()
            if args.read:
                data = handler.store.account_windows(ids, hours=handler.hours)
            handler._score(items, data)  # type: ignore[arg-type]
            prof.disable()
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s)
        st.sort_stats("tottime").print_stats(args.top)
        st.sort_stats("cumulative").print_stats(args.top)
        print(s.getvalue())
    if args.out:
        Path(args.out).write_text(json.dumps(results, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
