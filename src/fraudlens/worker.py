"""The account-check worker: queue in, risk events out.

For each message (the contract is :mod:`fraudlens.checks`: ``account_id``,
``business_type``, ``requested_at``) the worker loads the account's last 24 h of trades
and the bars of its symbols from the store, scores them through the one scoring path
(:func:`fraudlens.scoring.score_market`) with the active market model, writes a risk
event when the score is above the risk-event threshold (0.9 by default), then acks.

The loop around the work is :class:`fraudlens.consume.Consumer`; this module is the
handler (:class:`CheckHandler`) and the process plumbing.

- Delivery is at least once, and the work is idempotent: a risk event's unique key is
  ``(account_id, fraud_type, window_end)``, so a message redelivered after a crash (its
  event committed, its ack lost) writes nothing new.
- Messages are worked in batches: one window query, one scoring call and one
  transaction per batch, acked only after that transaction commits. A failing batch is
  retried message by message, so one bad account cannot hold back the rest.
- A message that breaks the contract is dead-lettered with the reason. A message whose
  work fails (bad account data) spends a delivery attempt and is retried with back-off.
- When the store or the model is unavailable (:class:`~fraudlens.errors.
  UnavailableError`) the batch is handed back without spending attempts and the worker
  pauses, probing with back-off, until the store answers again. A batch whose
  connection died under it (the server restarted while the connection was kept between
  batches) is tried once more on a fresh connection first: the server may be back
  already, and the loop's probe would then pass and count the batch as failed.
- On SIGTERM the worker finishes and acks the batch in hand, then exits.
"""

from __future__ import annotations

import gc
import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudlens._time import utc, utcnow
from fraudlens.checks import AccountCheck, parse_check
from fraudlens.consume import (
    NO_MODEL_WARN_SECONDS,
    BatchResult,
    Consumer,
    ConsumerMetrics,
    ConsumerStats,
    NoModelWarning,
    failure_reason,
    stop_on_signals,
    work_isolated,
)
from fraudlens.errors import DataError, FraudlensError, StoreUnavailableError, UnavailableError

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.consume import SharedHealth
    from fraudlens.market.data import MarketData
    from fraudlens.model_cache import ModelCache
    from fraudlens.queues import Message, Queue
    from fraudlens.scoring import MarketScores
    from fraudlens.store import RiskEvent, Store

__all__ = [
    "CheckHandler",
    "Worker",
    "WorkerConfig",
    "WorkerMetrics",
    "WorkerStats",
    "run_workers",
    "work",
]

log = logging.getLogger("fraudlens.worker")

#: Seconds a worker keeps its store connection after a batch for the next one
#: (:meth:`~fraudlens.store.Store.pinned`'s ``linger``): batches that follow each other
#: skip the pool's ping on checkout and rollback on return, two round trips a batch on a
#: server (0.5-0.7 ms a batch on MariaDB on a loaded machine).
_LINGER = 2.0

#: What a worker did (the consumer loop's counts; ``written`` = new risk events).
WorkerStats = ConsumerStats


class WorkerMetrics(ConsumerMetrics):
    """Prometheus metrics of a worker process: :class:`~fraudlens.consume.ConsumerMetrics`
    named ``fraudlens_worker_*`` (``fraudlens_worker_messages_total{outcome}``, latency
    from a check's ``requested_at`` to the commit of its result, batch time, health)."""

    def __init__(self, registry: Any = None) -> None:
        super().__init__("fraudlens_worker", registry)


# ------------------------------------------------------------------------------ handler


class CheckHandler:
    """Score account checks and write risk events: the worker's part of the loop.

    Parameters
    ----------
    store
        Where trades, bars and risk events live.
    models
        A :class:`~fraudlens.model_cache.ModelCache` or a registry folder. The model is
        looked up per batch, so activating a new version takes effect without a restart.
    model
        Registry model or domain (``market`` = the market default).
    threshold
        The risk-event threshold: scores above it raise an event (default: the
        ``event_threshold`` setting, 0.9).
    hours
        Window length ending at the account's latest trade.
    explain_top
        Trades recorded in an event's ``details``.
    model_hint
        What to run to get a usable model, for the warning logged while there is none
        (default: ``fraudlens market train`` into the registry).
    """

    def __init__(
        self,
        store: Store,
        models: ModelCache | str | os.PathLike[str],
        *,
        model: str = "market",
        threshold: float | None = None,
        hours: float | None = None,
        explain_top: int = 10,
        model_hint: str | None = None,
    ) -> None:
        from fraudlens.config import get_settings
        from fraudlens.model_cache import ModelCache, serving_threads

        settings = get_settings()
        self.store = store
        self.models = (
            models
            if isinstance(models, ModelCache)
            else ModelCache(Path(models), prepare=serving_threads)
        )
        self.model = model
        self.threshold = float(settings.event_threshold if threshold is None else threshold)
        self.hours = float(settings.window_hours if hours is None else hours)
        self.explain_top = int(explain_top)
        self.model_hint = model_hint or (
            f"`fraudlens market train --data DIR -m {shlex.quote(str(self.models.root))}` "
            "trains and activates one"
        )
        self._no_model = NoModelWarning(log)

    # -- Handler protocol ------------------------------------------------------------
    def probe(self) -> None:
        """Raise UnavailableError until the store can be written and the model loads."""
        self.store.ping(write=True)
        self._detector()

    def unstick(self) -> int:
        """Cut the store's connections: a call waits on one that will never answer
        (see :meth:`Store.cut_connections <fraudlens.store.Store.cut_connections>`)."""
        return self.store.cut_connections()

    def warm_up(self) -> None:
        """Load the model before the first batch (UnavailableError if it cannot be)."""
        self._detector()

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        """Work one batch: parse, score, write events; report each message's fate."""
        result = BatchResult()
        good: list[tuple[Message, AccountCheck]] = []
        for msg in msgs:
            try:
                good.append((msg, parse_check(msg.body)))
            except DataError as exc:
                result.invalid.append((msg, f"invalid check message: {exc}"))
        if good:
            work_isolated(
                good, lambda items: self._work_reconnecting(items, result), _message, result
            )
        return result

    def _work_reconnecting(
        self, items: Sequence[tuple[Message, AccountCheck]], result: BatchResult
    ) -> None:
        """:meth:`_work`, once more on a fresh connection if the one in use died under it
        (nothing was committed: the events' unique key makes a redo harmless anyway)."""
        with _collection_paused():
            try:
                self._work(items, result)
            except StoreUnavailableError as exc:
                if not exc.disconnected:
                    raise
                log.warning("store connection lost (%s): trying the batch on a fresh one", exc)
                self._work(items, result)

    # -- the work --------------------------------------------------------------------
    def _detector(self) -> Detector:
        try:
            detector = self.models.get(self.model)
        except UnavailableError as exc:
            self._warn_no_model(str(exc))
            raise
        except Exception as exc:
            # No model, or one that does not load: nothing any message can fix.
            reason = failure_reason(exc)
            self._warn_no_model(reason)
            raise UnavailableError(
                f"model {self.model!r} in {self.models.root} cannot be used: {reason}",
                what="model",
            ) from exc
        self._no_model.usable()
        return detector

    def _warn_no_model(self, reason: str) -> None:
        """Tell the operator, at once and then every
        :data:`~fraudlens.consume.NO_MODEL_WARN_SECONDS` (this module's name, read at
        each warning), that checks wait for a model, where it is looked for and what to
        run."""
        self._no_model.warn(
            NO_MODEL_WARN_SECONDS,
            "no usable model %r in the registry %s (%s); the checks stay queued, none "
            "worked and none lost, until one is active: %s",
            self.model,
            self.models.root,
            reason,
            self.model_hint,
        )

    def _work(self, items: Sequence[tuple[Message, AccountCheck]], result: BatchResult) -> None:
        ids = list(dict.fromkeys(c.account_id for _, c in items))
        # One connection for the batch's reads and its write (not one per call: on a
        # server each checkout is a ping and each return a rollback, round trips a
        # check waits for), kept for the next batch if it comes soon.
        with self.store.pinned(linger=_LINGER):
            data = self.store.account_windows(ids, hours=self.hours)
            events, flagged = self._score(items, data)
            written = self.store.add_risk_events(events)
        done = utcnow()
        # The events are committed: only now may the messages go (the loop acks them).
        result.done.extend(m for m, _ in items)
        result.written += written
        result.flagged += sum(1 for _, c in items if c.account_id in flagged)
        result.latencies.extend(
            (done - c.requested_at).total_seconds() for _, c in items if c.requested_at
        )

    def _score(
        self, items: Sequence[tuple[Message, AccountCheck]], data: MarketData
    ) -> tuple[list[RiskEvent], set[str]]:
        """The batch's risk events and flagged accounts from its windows (``data``); the
        store is only read (the counterparties' trades), never written."""
        from fraudlens.scoring import score_market

        if not len(data.trades):
            return [], set()
        scores = score_market(
            self._detector(),
            data,
            threshold=self.threshold,
            explain="flagged",
            top=self.explain_top,
            # Only events carry evidence: it is computed below for the flagged
            # accounts alone, with their stored counterparties.
            evidence=False,
        )
        flagged = set(scores.flagged_ids())
        if not flagged:
            return [], flagged
        scores = self._with_counterparties(data, scores, flagged)
        return self._events(items, data, scores, flagged), flagged

    def _with_counterparties(
        self, data: MarketData, scores: MarketScores, flagged: set[str]
    ) -> MarketScores:
        """The flagged accounts' evidence again, now with the stored trades of other
        accounts that may be the other side of theirs: the suspected counterparty.

        Only events carry it, so only flagged accounts pay for the store lookup.
        """
        from dataclasses import replace

        import numpy as np

        from fraudlens.scoring import market_evidence

        ids = np.asarray(sorted(flagged), dtype=object)
        # Every scored account flagged (the usual batch of one or two take-over checks):
        # the batch's data is already theirs, no subset to build.
        mine = data if len(flagged) == len(scores.account_ids) else data.subset(ids)
        # The batch's book (the batch's trades and the store's mirror candidates): the
        # candidates the feature detector fetched already are reused, only the flagged
        # accounts' other trades are looked up.
        book = data.book if data.book is not None else self.store.book(data.trades)
        context = book.candidates(mine.trades)
        return replace(scores, evidence=market_evidence(mine, ids, context_trades=context))

    def _events(
        self,
        items: Sequence[tuple[Message, AccountCheck]],
        data: MarketData,
        scores: MarketScores,
        flagged: set[str],
    ) -> list[RiskEvent]:
        from fraudlens.store import RiskEvent

        first: dict[str, AccountCheck] = {}
        for _, c in items:
            first.setdefault(c.account_id, c)
        last = _latest_trades(data, flagged)
        score_of = scores.score_map()
        evidence = _evidence(scores, flagged)
        explained = scores.explanations or {}
        now = utcnow()
        span = timedelta(hours=self.hours)
        out = []
        for a in sorted(flagged):
            end = last[a]
            out.append(
                RiskEvent(
                    account_id=a,
                    score=score_of[a],
                    event_threshold=scores.threshold,
                    model_threshold=scores.model_threshold,
                    model_version=scores.model,
                    window_start=end - span,
                    window_end=end,
                    business_type=first[a].business_type,
                    details={"trades": explained.get(a, []), **evidence.get(a, {})},
                    value_moved=evidence.get(a, {}).get("value_moved"),
                    counterparty=evidence.get(a, {}).get("counterparty"),
                    requested_at=first[a].requested_at,
                    created_at=now,
                )
            )
        return out


_gc_lock = threading.Lock()
_gc_state = {"depth": 0, "was_enabled": False}


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a batch is worked, then one
    collection of the youngest objects (those the batch left alive).

    A batch of 500 checks allocates hundreds of thousands of containers (frames,
    explanation records, rows) that live until the batch ends. Collected every 700
    allocations as usual, they survive the young collections, are promoted, and every
    few batches push a full collection over every object of the process (pandas,
    SQLAlchemy, the model: about 100 ms each here). bench/_batch_cpu.py --write, 20
    batches of 500: 18-22 ms of collections a batch on average before (3 full ones,
    ~700 young, ~60 middle), 0.3 ms after (the one young collection at the end). With
    the collector paused, the batch's objects are freed by their reference counts when
    it ends, as before, and only what it left alive is collected. What the collector
    would have freed during a batch (reference cycles) waits until it ends: memory
    bounded by the batch. Nested and concurrent pauses (threads) re-enable it once,
    when the last ends, and only if it was enabled before the first.
    """
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            resume = _gc_state["depth"] == 0 and _gc_state["was_enabled"]
            if resume:
                gc.enable()
        if resume and gc.get_count()[0] > gc.get_threshold()[0]:
            # what the next allocation would start anyway, here, as part of the batch
            gc.collect(0)


def _message(item: tuple[Message, AccountCheck]) -> Message:
    return item[0]


def _latest_trades(data: MarketData, accounts: set[str]) -> dict[str, Any]:
    """Each account's latest trade time (its window's end), as aware datetimes."""
    import numpy as np
    import pandas as pd

    from fraudlens.market._bars import _factorize
    from fraudlens.market.features import _array, _text

    trades = data.trades
    # the columns' arrays (no Series each); short string columns skip pandas' fixed
    # cost (a small batch's few dozen ids)
    codes, names = _factorize(_text(trades, "account_id"))
    values = _array(trades, "ts")
    if isinstance(values, pd.arrays.DatetimeArray):
        ts = np.asarray(values, dtype="datetime64[us]").view(np.int64)
    else:
        ts = trades["ts"].to_numpy("datetime64[us]").view(np.int64)
    latest = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, codes, ts)
    at = dict(zip(names.tolist(), latest.astype("datetime64[us]").tolist(), strict=True))
    return {a: utc(at[a]) for a in accounts}


def _evidence(scores: MarketScores, accounts: set[str]) -> dict[str, dict[str, Any]]:
    """Per-account evidence beside the score (counterparty, value moved...), when the
    scoring path provides it, as plain JSON values (NaN as None)."""
    ev = scores.evidence
    if ev is None or not len(ev.columns):
        return {}
    cols = [str(c) for c in ev.columns]
    rows = [i for i, a in enumerate(ev.index.tolist()) if a in accounts]
    if not rows:
        return {}
    # One object array of the wanted rows: pandas' row iteration costs more than this.
    values = ev.to_numpy(dtype=object)[rows]
    names = ev.index.to_numpy()[rows]
    return {
        str(account): {c: _json_value(v) for c, v in zip(cols, row, strict=True)}
        for account, row in zip(names.tolist(), values.tolist(), strict=True)
    }


def _json_value(value: Any) -> Any:
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


# ------------------------------------------------------------------------------- worker


class Worker:
    """Consume account checks from a queue and write risk events to the store.

    A :class:`~fraudlens.consume.Consumer` running a :class:`CheckHandler`.

    Parameters
    ----------
    queue, store
        Where checks come from and where trades, bars and risk events live.
    models
        A :class:`~fraudlens.model_cache.ModelCache` or a registry folder.
    model, threshold, hours, explain_top
        See :class:`CheckHandler` (``threshold`` is the risk-event threshold).
    batch_size
        Messages received (and scored) together at most.
    visibility_timeout
        Lease of a received batch; a crashed worker's batch is redelivered after it.
    wait
        Seconds one receive call may block waiting for messages.
    pause_cap
        Longest wait between probes while the store is down.
    metrics
        Prometheus metrics to update, if any.
    model_hint
        See :class:`CheckHandler`.
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
        pause_cap: float = 10.0,
        metrics: WorkerMetrics | None = None,
        model_hint: str | None = None,
    ) -> None:
        from fraudlens.queues import SQLiteQueue

        self.queue = queue
        self.store = store
        self.handler = CheckHandler(
            store,
            models,
            model=model,
            threshold=threshold,
            hours=hours,
            explain_top=explain_top,
            model_hint=model_hint,
        )
        self.metrics = metrics
        self.consumer = Consumer(
            queue,
            self.handler,
            batch_size=batch_size,
            visibility_timeout=visibility_timeout,
            wait=wait,
            # SQLite cannot block on an empty queue: the loop polls it at a short interval.
            poll=isinstance(queue, SQLiteQueue),
            pause_cap=pause_cap,
            metrics=metrics,
        )

    @property
    def stats(self) -> WorkerStats:
        """The running counts."""
        return self.consumer.stats

    @property
    def threshold(self) -> float:
        """The risk-event threshold."""
        return self.handler.threshold

    @property
    def stop_event(self) -> threading.Event:
        """Set to stop after the batch in hand."""
        return self.consumer.stop_event

    def stop(self) -> None:
        """Ask the loop to exit after the batch in hand (what SIGTERM does)."""
        self.consumer.stop()

    def run(
        self,
        *,
        limit: int | None = None,
        idle_exit: float | None = None,
        on_batch: Callable[[WorkerStats], None] | None = None,
    ) -> WorkerStats:
        """Work until stopped, ``limit`` messages are settled, or the queue stays empty
        for ``idle_exit`` seconds (or the worker is that long without a usable model: see
        :meth:`Consumer.run <fraudlens.consume.Consumer.run>`)."""
        return self.consumer.run(
            limit=limit, idle_exit=idle_exit, on_batch=on_batch, idle_without_model=True
        )

    def process(self, msgs: Sequence[Message]) -> None:
        """Work one received batch and settle its messages."""
        self.consumer.process(msgs)


# ------------------------------------------------------------------ several processes


@dataclass(frozen=True)
class WorkerConfig:
    """Where a worker process reads, writes and finds its model, and how it runs.

    Attributes
    ----------
    queue_url, queue_name, max_attempts
        The queue (:func:`fraudlens.queues.open_queue`) and its dead-letter rule.
    db_url
        The store.
    models_dir
        The model registry.
    model
        Registry model or domain.
    threshold
        The risk-event threshold (None: the ``event_threshold`` setting).
    hours
        Window length (None: the ``window_hours`` setting).
    batch_size, visibility_timeout, explain_top, pause_cap
        See :class:`Worker`.
    idle_exit
        Exit after the queue has been empty, or the worker without a usable model, this
        many seconds (None: run until stopped). Checks waiting for a model stay queued.
    model_hint
        See :class:`CheckHandler`.
    """

    queue_url: str
    db_url: str
    models_dir: Path
    queue_name: str = "checks"
    max_attempts: int = 5
    model: str = "market"
    threshold: float | None = None
    hours: float | None = None
    batch_size: int = 100
    visibility_timeout: float = 60.0
    explain_top: int = 10
    pause_cap: float = 10.0
    idle_exit: float | None = None
    model_hint: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.models_dir, Path):
            object.__setattr__(self, "models_dir", Path(self.models_dir))
        if self.batch_size < 1 or self.max_attempts < 1 or self.visibility_timeout <= 0:
            raise FraudlensError(
                "batch_size and max_attempts must be at least 1, visibility_timeout above 0"
            )


def work(
    config: WorkerConfig,
    *,
    metrics: WorkerMetrics | None = None,
    on_batch: Callable[[WorkerStats], None] | None = None,
    on_start: Callable[[Worker], None] | None = None,
) -> WorkerStats:
    """Open the queue and the store ``config`` names and work checks in this process
    until SIGTERM or SIGINT (each finishes the batch in hand; a second SIGINT interrupts)
    or ``config.idle_exit``.

    ``on_start`` is called with the worker before it starts (e.g. to serve its health).
    """
    from fraudlens.queues import open_queue
    from fraudlens.store import open_store

    with (
        open_queue(config.queue_url, name=config.queue_name, max_attempts=config.max_attempts) as q,
        open_store(config.db_url) as store,
    ):
        worker = Worker(
            q,
            store,
            config.models_dir,
            model=config.model,
            threshold=config.threshold,
            hours=config.hours,
            batch_size=config.batch_size,
            visibility_timeout=config.visibility_timeout,
            explain_top=config.explain_top,
            pause_cap=config.pause_cap,
            metrics=metrics,
            model_hint=config.model_hint,
        )
        if on_start is not None:
            on_start(worker)
        # The same signal handling as the card processor: SIGTERM/SIGINT finish the batch
        # in hand; a second SIGINT interrupts at once.
        with stop_on_signals(worker.stop_event):
            return worker.run(idle_exit=config.idle_exit, on_batch=on_batch)


def _child(config: WorkerConfig, index: int, results: Any, health: SharedHealth) -> None:
    """One worker process of :func:`run_workers`: work, then report its stats; its health
    goes to its slot of ``health`` (read by the parent's ``/healthz``)."""
    metrics = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import REGISTRY

        # In multiprocess mode the metrics write to files the parent collects; they must
        # be registered in the default registry.
        metrics = WorkerMetrics(registry=REGISTRY)

    def attach(worker: Worker) -> None:
        health.attach(index, worker.consumer.health)

    try:
        stats = work(_own_consumer(config, index), metrics=metrics, on_start=attach)
    except (FraudlensError, OSError) as exc:
        # A wrong setting (a path that cannot be used included), or a state waiting
        # cannot mend: the parent says it in one line (and whether the process is
        # replaced), as a single process's CLI does, instead of the traceback
        # multiprocessing prints.
        results.put((index, str(exc)))
        raise SystemExit(2) from None
    stats.latencies = stats.latencies[:20_000]
    results.put((index, stats))


def _own_consumer(config: WorkerConfig, index: int) -> WorkerConfig:
    """``config`` for process ``index``: a Redis consumer name given in the queue URL
    (``consumer=NAME``) becomes ``NAME-<index>``, so no two processes read as one
    consumer (each would hand back the other's entries as its own lost ones); a process
    that replaces a dead one gets its name, and with it the entries it left pending."""
    from dataclasses import replace
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(config.queue_url)
    if not parts.scheme.startswith("redis"):
        return config
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "consumer" for k, _ in query):
        return config
    query = [(k, f"{v}-{index}" if k == "consumer" else v) for k, v in query]
    return replace(config, queue_url=urlunsplit(parts._replace(query=urlencode(query))))


def run_workers(
    config: WorkerConfig,
    concurrency: int = 2,
    *,
    on_start: Callable[[SharedHealth], None] | None = None,
    restart_base: float = 1.0,
    restart_cap: float = 60.0,
) -> list[WorkerStats]:
    """Run ``concurrency`` worker processes, each as :func:`work` does.

    Each process opens its own queue and store connections. SIGTERM and SIGINT sent to
    the caller are forwarded; each process finishes its batch in hand before it exits.

    A process that dies (killed, or a crash) after it started consuming is replaced in
    its slot, after ``restart_base`` seconds, doubling with each death that follows
    within a minute up to ``restart_cap``; the checks it held come back to the queue
    when their lease runs out. One that dies while starting is not replaced: a wrong
    setting would only kill it again (the run ends once no process is left).

    ``on_start`` is called with the processes' health once they are started (e.g. to
    serve it on ``/healthz``): a :class:`~fraudlens.consume.SharedHealth` that is
    unhealthy while any live process is paused by an outage or still starting, or a
    process is dead and not yet replaced.

    Returns
    -------
    list of WorkerStats
        One per process that exited normally.
    """
    import multiprocessing as mp
    import queue as stdlib_queue

    from fraudlens.consume import SharedHealth

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    health = SharedHealth(concurrency, ctx)
    procs: list[Any] = [None] * concurrency
    born = [0.0] * concurrency
    delay = [restart_base] * concurrency
    due: dict[int, float] = {}
    given_up: set[int] = set()

    def start(i: int) -> None:
        procs[i] = ctx.Process(target=_child, args=(config, i, results, health))
        health.watch(i, procs[i])
        procs[i].start()
        born[i] = time.monotonic()

    for i in range(concurrency):
        start(i)
    if on_start is not None:
        on_start(health)

    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        due.clear()
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        out: dict[int, WorkerStats] = {}
        # The error each process that stopped on one said (its last).
        errors: dict[int, str] = {}

        def take(i: int, said: WorkerStats | str) -> None:
            """A process's report: its stats on a normal exit, else its error."""
            if isinstance(said, str):
                errors[i] = said
            else:
                out[i] = said

        while len(out) < concurrency:
            try:
                take(*results.get(timeout=0.5))
                continue
            except stdlib_queue.Empty:
                pass
            now = time.monotonic()
            # Taken before the pass: the run ends only after a pass that saw every
            # process dead, so none that died meanwhile goes unreported.
            alive = any(p.is_alive() for p in procs)
            for i, p in enumerate(procs):
                if stopping or i in out or i in due or i in given_up or p.exitcode in (None, 0):
                    continue
                _forget_metrics_of(p.pid)
                try:  # its error, if it stopped on one (sent just before it exited)
                    while True:
                        take(*results.get(timeout=0.2))
                except stdlib_queue.Empty:
                    pass
                why = f": {errors[i]}" if i in errors else ""
                if not health.started(i):
                    given_up.add(i)
                    log.error(
                        "worker process %d (pid %s) died while starting (exit code %s): "
                        "not replaced%s",
                        i,
                        p.pid,
                        p.exitcode,
                        why,
                    )
                    continue
                # a process that lived a minute or more starts the back-off again
                delay[i] = restart_base if now - born[i] >= 60 else delay[i]
                due[i] = now + delay[i]
                log.warning(
                    "worker process %d (pid %s) died (exit code %s)%s; a new one starts in %.0f s",
                    i,
                    p.pid,
                    p.exitcode,
                    why,
                    delay[i],
                )
                delay[i] = min(delay[i] * 2, restart_cap)
            for i, when in list(due.items()):
                if now >= when:
                    del due[i]
                    start(i)
            if not due and not alive:
                break
        for p in procs:
            p.join()
        if not out and len(given_up) == concurrency:
            # Not one process could start (a wrong setting): a failed run, as with one
            # process, not "processed 0 checks" and exit status 0.
            first = next((errors[i] for i in sorted(errors)), None)
            raise FraudlensError(
                "every worker process died while starting"
                + (f": {first}" if first else " (see above)")
            )
        return [out[i] for i in sorted(out)]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _forget_metrics_of(pid: int | None) -> None:
    """Drop a dead process's live gauges (its health) from the multiprocess metrics; its
    counters stay in the totals."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
