"""The account-check worker: queue in, risk events out.

For each message ``{"account_id", "business_type", "requested_at"}`` (the reference's
``userid`` and ``businessType`` are accepted too) the worker loads the account's last
24 h of trades and the bars of its symbols from the store, scores them with the active
market model, writes a risk event when the score is above the threshold (0.9 by
default), then acks the message.

Delivery is at least once, and the work is idempotent: a risk event's unique key is
``(account_id, fraud_type, window_end)``, so a message redelivered after a crash (its
event already committed, its ack lost) writes nothing new. Messages are worked in
batches: one window query, one scoring call and one transaction per batch, acked only
after that transaction commits. A malformed message goes to the dead-letter queue with
the reason and never stops the worker. On SIGTERM the worker finishes and acks the batch
in hand, then exits.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudlens.checks import AccountCheck, parse_check
from fraudlens.errors import DataError, FraudlensError

if TYPE_CHECKING:
    from fraudlens.model_cache import ModelCache
    from fraudlens.queues import Message, Queue
    from fraudlens.store import Store

__all__ = [
    "Worker",
    "WorkerConfig",
    "WorkerMetrics",
    "WorkerStats",
    "run_workers",
    "work",
]

log = logging.getLogger("fraudlens.worker")

#: Longest pause between polls of a queue that cannot block (SQLite): bounds the latency
#: an idle worker adds to the first message after a quiet spell.
_MAX_POLL = 0.005


# ------------------------------------------------------------------------------ metrics


class WorkerMetrics:
    """Prometheus metrics of a worker process (a private registry unless one is given).

    ``fraudlens_worker_messages_total{outcome}`` counts processed, flagged, failed and
    dead_lettered messages; ``fraudlens_worker_latency_seconds`` is the time from a
    check's ``requested_at`` to the commit of its result; ``fraudlens_worker_batch_seconds``
    the time to work one batch.
    """

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self.messages = Counter(
            "fraudlens_worker_messages",
            "Messages handled by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fraudlens_worker_latency_seconds",
            "From a check's requested_at to the commit of its result.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch = Histogram(
            "fraudlens_worker_batch_seconds",
            "Time to work one batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        for outcome in ("processed", "flagged", "failed", "dead_lettered"):
            self.messages.labels(outcome)

    def serve(self, port: int, addr: str = "127.0.0.1") -> bool:
        """Expose the metrics over HTTP; False (and a warning) if the port is taken."""
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            log.warning("metrics not exported on %s:%d: %s", addr, port, exc)
            return False
        return True


@dataclass
class WorkerStats:
    """What a worker did.

    ``first_at``/``last_at`` are the Unix times the first batch arrived and the last one
    was done (busy time, without idle waits); ``latencies`` holds up to 100,000 check
    latencies in seconds.
    """

    received: int = 0
    processed: int = 0
    flagged: int = 0
    events_written: int = 0
    failed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    seconds: float = 0.0
    first_at: float | None = None
    last_at: float | None = None
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        """Processed messages per second."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------------------- worker


class Worker:
    """Consume account checks from a queue and write risk events to the store.

    Parameters
    ----------
    queue, store
        Where checks come from and where trades, bars and risk events live.
    models
        A :class:`~fraudlens.model_cache.ModelCache` or a registry folder. The model is
        looked up per batch, so activating a new version takes effect without a restart.
    model
        Registry model or domain (``market`` = the market default).
    threshold
        Scores above it raise a risk event (default: the ``market_threshold`` setting, 0.9).
    hours
        Window length ending at the account's latest trade.
    batch_size
        Messages received (and scored) together at most.
    visibility_timeout
        Lease of a received batch; a crashed worker's batch is redelivered after it.
    wait
        Seconds one receive call may block waiting for messages.
    explain_top
        Trades recorded in an event's ``details``.
    metrics
        Prometheus metrics to update, if any.
    """

    def __init__(
        self,
        queue: Queue,
        store: Store,
        models: ModelCache | str | os.PathLike[str],
        *,
        model: str = "market",
        threshold: float | None = None,
        hours: float | None = None,
        batch_size: int = 100,
        visibility_timeout: float = 60.0,
        wait: float = 1.0,
        explain_top: int = 10,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        from fraudlens.config import get_settings
        from fraudlens.model_cache import ModelCache, serving_threads

        settings = get_settings()
        self.queue = queue
        self.store = store
        self.models = (
            models
            if isinstance(models, ModelCache)
            else ModelCache(Path(models), prepare=serving_threads)
        )
        self.model = model
        self.threshold = float(settings.market_threshold if threshold is None else threshold)
        self.hours = float(settings.window_hours if hours is None else hours)
        self.batch_size = int(batch_size)
        self.visibility_timeout = float(visibility_timeout)
        self.wait = float(wait)
        self.explain_top = int(explain_top)
        self.metrics = metrics
        self.stats = WorkerStats()
        self.stop_event = threading.Event()
        from fraudlens.queues import SQLiteQueue

        # SQLite cannot block on an empty queue: poll it ourselves at a short interval.
        self._polls = isinstance(queue, SQLiteQueue)

    # -- loop ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to exit after the batch in hand (what SIGTERM does)."""
        self.stop_event.set()

    def run(
        self,
        *,
        limit: int | None = None,
        idle_exit: float | None = None,
        on_batch: Callable[[WorkerStats], None] | None = None,
    ) -> WorkerStats:
        """Work until stopped, ``limit`` messages are handled, or the queue stays empty
        for ``idle_exit`` seconds.
        """
        t0 = time.perf_counter()
        idle_since = time.monotonic()
        pause = 0.001
        while not self.stop_event.is_set():
            handled = self.stats.processed + self.stats.failed + self.stats.dead_lettered
            if limit is not None and handled >= limit:
                break
            want = (
                self.batch_size if limit is None else max(1, min(self.batch_size, limit - handled))
            )
            wait = 0.0 if self._polls else self.wait
            msgs = self.queue.receive(want, visibility_timeout=self.visibility_timeout, wait=wait)
            if not msgs:
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
                if self._polls:
                    self.stop_event.wait(pause)
                    pause = min(pause * 2, _MAX_POLL)
                continue
            pause = 0.001
            idle_since = time.monotonic()
            self.process(msgs)
            if self.stats.batches == 1:
                # The model, bars and libraries loaded by the first batch live for the
                # whole run: move them out of the collector's way, or a full collection
                # walking them stalls a check for tens of milliseconds now and then.
                gc.collect()
                gc.freeze()
            self.stats.seconds = time.perf_counter() - t0
            if on_batch is not None:
                on_batch(self.stats)
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    # -- one batch -------------------------------------------------------------------
    def process(self, msgs: Sequence[Message]) -> None:
        """Work one batch of messages: score, write events, ack (or nack on failure)."""
        started = time.perf_counter()
        if self.stats.first_at is None:
            self.stats.first_at = time.time()
        self.stats.received += len(msgs)
        self.stats.batches += 1
        good: list[tuple[Message, AccountCheck]] = []
        for msg in msgs:
            try:
                good.append((msg, parse_check(msg.body)))
            except DataError as exc:
                self.queue.dead_letter(msg, f"invalid check message: {exc}")
                self._count("dead_lettered")
        if good:
            try:
                self._score_and_write(good)
            except Exception as exc:
                if len(good) == 1:
                    self._fail(good[0][0], exc)
                else:
                    # One bad account must not hold back the rest: retry them one by one.
                    log.warning("batch of %d failed (%s); retrying one by one", len(good), exc)
                    for item in good:
                        try:
                            self._score_and_write([item])
                        except Exception as one_exc:
                            self._fail(item[0], one_exc)
        self.stats.last_at = time.time()
        if self.metrics is not None:
            self.metrics.batch.observe(time.perf_counter() - started)

    def _fail(self, msg: Message, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, FraudlensError):
            log.warning("check %s failed: %s", msg.id, reason)
        else:
            log.exception("check %s failed", msg.id, exc_info=exc)
        # Back off a little: a database that is down now may be up in a few seconds.
        self.queue.nack(msg, reason=reason, delay=min(2.0**msg.attempts, 60.0))
        self._count("failed")

    def _count(self, outcome: str, n: int = 1) -> None:
        setattr(self.stats, outcome, getattr(self.stats, outcome) + n)
        if self.metrics is not None:
            self.metrics.messages.labels(outcome).inc(n)

    def _score_and_write(self, items: Sequence[tuple[Message, AccountCheck]]) -> None:
        ids = list(dict.fromkeys(c.account_id for _, c in items))
        data = self.store.account_windows(ids, hours=self.hours)
        scored: dict[str, float] = {}
        det = None
        if len(data.trades):
            det = self.models.get(self.model)
            scores = np.asarray(det.decision_function(data), dtype=np.float64)
            scored = dict(zip(data.account_ids.tolist(), scores.tolist(), strict=True))
        flagged = [a for a in ids if scored.get(a, 0.0) > self.threshold]
        events = []
        if flagged:
            from fraudlens.market.explain import explain_batch
            from fraudlens.model_cache import version_of

            assert det is not None
            drivers = explain_batch(data, flagged, top=self.explain_top)
            last = data.trades.groupby("account_id")["ts"].max()
            first_check: dict[str, AccountCheck] = {}
            for _, c in items:
                first_check.setdefault(c.account_id, c)
            now = datetime.now(UTC)
            for a in flagged:
                end = last[a].to_pydatetime()
                events.append(
                    {
                        "account_id": a,
                        "business_type": first_check[a].business_type,
                        "score": scored[a],
                        "threshold": self.threshold,
                        "model_version": version_of(det),
                        "window_start": end - timedelta(hours=self.hours),
                        "window_end": end,
                        "details": {"trades": drivers.get(a, [])},
                        "requested_at": first_check[a].requested_at,
                        "created_at": now,
                    }
                )
        written = self.store.add_risk_events(events)
        done = datetime.now(UTC)
        # The events are committed: only now may the messages go.
        self.queue.ack_many([m for m, _ in items])
        self.stats.events_written += written
        self._count("processed", len(items))
        flagged_set = set(flagged)
        self._count("flagged", sum(1 for _, c in items if c.account_id in flagged_set))
        for _, c in items:
            if c.requested_at is not None:
                seconds = (done - c.requested_at).total_seconds()
                if len(self.stats.latencies) < 100_000:
                    self.stats.latencies.append(seconds)
                if self.metrics is not None:
                    self.metrics.latency.observe(max(seconds, 0.0))


# ------------------------------------------------------------------ several processes


@dataclass(frozen=True)
class WorkerConfig:
    """Where a worker process reads, writes and finds its model, and how it runs.

    ``options`` are keyword arguments of :class:`Worker` (``model``, ``threshold``,
    ``batch_size``, ...); ``idle_exit`` is passed to :meth:`Worker.run`.
    """

    queue_url: str
    queue_name: str
    max_attempts: int
    db_url: str
    models_dir: str
    idle_exit: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


def work(
    config: WorkerConfig,
    *,
    metrics: WorkerMetrics | None = None,
    on_batch: Callable[[WorkerStats], None] | None = None,
) -> WorkerStats:
    """Open the queue and the store ``config`` names and work checks in this process
    until SIGTERM or SIGINT (each finishes the batch in hand) or ``config.idle_exit``."""
    from fraudlens.queues import open_queue
    from fraudlens.store import open_store

    with (
        open_queue(config.queue_url, name=config.queue_name, max_attempts=config.max_attempts) as q,
        open_store(config.db_url) as store,
    ):
        worker = Worker(q, store, config.models_dir, metrics=metrics, **config.options)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        return worker.run(idle_exit=config.idle_exit, on_batch=on_batch)


def _child(config: WorkerConfig, index: int, results: Any) -> None:
    """One worker process of :func:`run_workers`: work, then report its stats."""
    metrics = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import REGISTRY

        # In multiprocess mode the metrics write to files the parent collects; they must
        # be registered in the default registry.
        metrics = WorkerMetrics(registry=REGISTRY)
    stats = work(config, metrics=metrics)
    stats.latencies = stats.latencies[:20_000]
    results.put((index, stats))


def run_workers(config: WorkerConfig, concurrency: int = 2) -> list[WorkerStats]:
    """Run ``concurrency`` worker processes, each as :func:`work` does.

    Each process opens its own queue and store connections. SIGTERM and SIGINT sent to
    the caller are forwarded; each process finishes its batch in hand before it exits.

    Returns
    -------
    list of WorkerStats
        One per process that exited normally.
    """
    import multiprocessing as mp
    import queue as stdlib_queue

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(config, i, results)) for i in range(concurrency)]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        out: dict[int, WorkerStats] = {}
        while len(out) < len(procs):
            try:
                i, stats = results.get(timeout=0.5)
                out[i] = stats
            except stdlib_queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
        for p in procs:
            p.join()
        return [out[i] for i in sorted(out)]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
