"""CPU time of the worker's scoring path per small batch (no queue; the store's window
read timed with ``--read`` only).

Run:  python bench/_batch_cpu.py [--sizes 1,4,16] [--repeats 60] [--profile 1]
                                [--accounts 2000] [--read] [--out FILE]

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
(and min) of those CPU ms per batch over the repeats, then with
``--profile`` a cProfile top list of batches of that size. ``--out`` writes the events'
fields (all but ``created_at``) of every timed batch as JSON, to compare two trees.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import dataclasses
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


def _batch(
    handler: CheckHandler, ids: list[str], *, read: bool = False
) -> tuple[float, list[dict]]:
    """CPU seconds of one batch's scoring path (with its window read when ``read``), and
    its events."""

    items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
    if not read:
        data = handler.store.account_windows(ids, hours=handler.hours)
    t0 = time.process_time()
    if read:
        data = handler.store.account_windows(ids, hours=handler.hours)
    events, _ = handler._score(items, data)  # type: ignore[arg-type]
    cpu = time.process_time() - t0
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
    ap.add_argument("--profile", type=int, default=0, help="profile batches of this size")
    ap.add_argument("--top", type=int, default=30, help="rows of the profile")
    ap.add_argument("--cache", default="/tmp/fraudlens-batch-cpu-cache")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    handler, flagged = _setup(args.accounts, cache)
    print(f"{len(flagged)} take-over accounts above {handler.threshold}", flush=True)
    rng = np.random.default_rng(0)
    # warm-up: libraries, the model, the closed days' bars (as a running worker has)
    for _ in range(5):
        _batch(handler, list(rng.choice(flagged, 4, replace=False)))
    results: dict[str, list] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(size)
        times = []
        events = []
        for _ in range(args.repeats):
            ids = sorted(rng.choice(flagged, size, replace=False).tolist())
            runs = [_batch(handler, ids, read=args.read) for _ in range(args.inner)]
            cpu, ev = min(runs, key=lambda r: r[0])
            times.append(cpu * 1000)
            events.append(ev)
        results[str(size)] = events
        print(
            f"batch of {size:3d}: CPU {statistics.median(times):7.3f} ms median, "
            f"{min(times):7.3f} min ({args.repeats} batches)",
            flush=True,
        )
    if args.profile:
        rng = np.random.default_rng(99)
        batches = [
            sorted(rng.choice(flagged, args.profile, replace=False).tolist())
            for _ in range(args.repeats)
        ]
        prof = cProfile.Profile()
        for ids in batches:
            items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
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
        Path(args.out).write_text(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
