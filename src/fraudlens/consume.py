"""The one consumer loop: receive, handle, then ack, dead-letter, retry or hand back.

The account-check worker (:mod:`fraudlens.worker`) and the card event processor
(:mod:`fraudlens.processor`) both run on :class:`Consumer`. Each supplies a
:class:`Handler` that does the work of a batch and says what became of each message; the
loop owns everything around it: leases, acks, retries with back-off, dead letters, outage
handling, metrics, health and signals.

Failures are classified
-----------------------
A handler reports each message of a batch as

- **done**: its effect is durable (risk events committed, records accepted by the sink);
  the loop acks it;
- **invalid**: the message itself can never succeed (not a check message, a record with a
  bad field); the loop dead-letters it now, with the reason;
- **failed**: working this message failed (bad account data, a value the database refused);
  the loop nacks it, which spends a delivery attempt, with an exponential back-off
  (``retry_base * 2 ** (attempts - 1)``, at most ``retry_cap``). The queue dead-letters it,
  with the last reason, once ``max_attempts`` deliveries have failed;
- **released**: not tried, because something the work depends on is down. The handler
  raises :class:`~fraudlens.errors.UnavailableError` (a store, sink or model outage) or
  returns the outage in :class:`BatchResult`.

An outage is not the messages' fault, so it must cost them nothing. The loop then:

1. asks the handler's :meth:`Handler.probe` whether the dependency really is down. If the
   probe passes at once, the failure followed the messages after all (a statement that
   times out only for them, say): they are nacked as *failed*. This keeps one poisonous
   message from pausing the consumer forever;
2. otherwise hands the unsettled messages back with :meth:`Queue.release
   <fraudlens.queues.Queue.release>`, which returns them *without spending a delivery
   attempt*, marks itself unhealthy (log line, ``<prefix>_healthy`` gauge at 0,
   ``/healthz`` answering 503 with the reason), and stops receiving;
3. waits with exponential back-off (``pause_base``, doubling, at most ``pause_cap``
   seconds, with 10 % jitter so many consumers do not probe in step), probing after each
   wait, until the probe passes; then it marks itself healthy and resumes.

So an outage of any length dead-letters nothing and loses nothing: the messages stay in
the queue, and delivery attempts are only spent on work that was really tried.

The queue itself failing (``QueueError`` on receive, ack, nack, release or dead-letter)
is an outage too: the loop pauses the same way, probing the queue. The queue calls that
failed are owed: once the queue answers again they are made again, in order, before
anything new is received (an ack of work already durable, say), so a queue outage neither
leaves acked work in the queue until its lease runs out nor works it twice. A call that
keeps failing while the queue answers is given up after a few tries; its messages come
back after their lease and are redone, so handlers must be idempotent (the worker's
risk-event key is). A queue that lost its messages while it was down (a Redis without
persistence, restarted) makes the owed calls no-ops.

Dead letters are counted where they happen: through the queue's ``on_dead_letter`` hook,
so moves the queue makes on its own (a receive that finds a message over ``max_attempts``,
the nack of a last attempt) count as well as the loop's own.

Stopping
--------
:meth:`Consumer.stop` (what SIGTERM and SIGINT do under :func:`stop_on_signals`) lets the
batch in hand finish, settle and be acked, then returns. A second SIGINT interrupts at
once.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fraudlens.errors import QueueError, UnavailableError

if TYPE_CHECKING:
    from fraudlens.queues import Message

__all__ = [
    "MAX_REASON_CHARS",
    "NO_MODEL_WARN_SECONDS",
    "BatchResult",
    "Consumer",
    "ConsumerMetrics",
    "ConsumerStats",
    "Handler",
    "Health",
    "HealthReport",
    "NoModelWarning",
    "SharedHealth",
    "Source",
    "failure_reason",
    "stop_on_signals",
    "work_isolated",
]

log = logging.getLogger("fraudlens.consume")

#: Longest pause between polls of a source that cannot block (SQLite, files): bounds the
#: latency an idle consumer adds to the first message after a quiet spell.
_MAX_POLL = 0.005
#: Check latencies kept in memory for summaries and benchmarks.
_KEEP_LATENCIES = 100_000
#: Times an owed queue call may fail while the queue answers before it is given up.
_OWED_TRIES = 3
#: Longest text of a failed or dead-lettered message's reason.
MAX_REASON_CHARS = 500
#: Seconds between two warnings that a consumer has no usable model (the first is at
#: once); the outage's probes run far more often.
NO_MODEL_WARN_SECONDS = 60.0


class Source(Protocol):
    """What the loop needs from where messages come from: a
    :class:`~fraudlens.queues.Queue`, or a local source shaped like one."""

    name: str
    on_dead_letter: Callable[[str], None] | None

    def receive(
        self, max_messages: int = 10, *, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]: ...

    def ack_many(self, msgs: Iterable[Message]) -> None: ...

    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None: ...

    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int: ...

    def dead_letter(self, msg: Message, reason: str) -> None: ...

    def depth(self) -> int: ...


def _ping(source: Source) -> None:
    """Check that ``source`` can be used now: its ``ping`` where it has one (a queue,
    which checks that a write could go through), else its depth. QueueError if not."""
    ping = getattr(source, "ping", None)
    if callable(ping):
        ping()
    else:
        source.depth()


@dataclass
class BatchResult:
    """What became of each message of a batch (each in exactly one list).

    Attributes
    ----------
    done
        Durably worked: to ack.
    invalid
        ``(message, reason)``: can never succeed; dead-lettered now.
    failed
        ``(message, reason)``: this attempt failed; retried with back-off until the
        queue's ``max_attempts``.
    released
        Not tried because of ``outage``: handed back without spending an attempt.
    outage
        The infrastructure failure that stopped the batch, if any.
    flagged
        Messages among ``done`` whose record was flagged.
    written
        New durable effects (risk events inserted, records put to the sink).
    latencies
        Seconds from each done message's request time to its durable effect, if known.
    """

    done: list[Message] = field(default_factory=list)
    invalid: list[tuple[Message, str]] = field(default_factory=list)
    failed: list[tuple[Message, str]] = field(default_factory=list)
    released: list[Message] = field(default_factory=list)
    outage: UnavailableError | None = None
    flagged: int = 0
    written: int = 0
    latencies: list[float] = field(default_factory=list)


def failure_reason(exc: BaseException) -> str:
    """The reason recorded for a failed message: the exception's type and text, at most
    500 characters, any value it quotes cut at 80 (:func:`fraudlens._echo.clip_echoes`):
    a message's own megabyte of text must not come back in its reason."""
    from fraudlens._echo import clip_echoes

    return clip_echoes(f"{type(exc).__name__}: {exc}", MAX_REASON_CHARS)


_T = TypeVar("_T")


def work_isolated(
    items: Sequence[_T],
    work: Callable[[Sequence[_T]], None],
    message: Callable[[_T], Message],
    result: BatchResult,
) -> None:
    """Run ``work`` on all ``items`` at once; if that fails, on each item alone, so one
    bad item cannot hold back the rest.

    ``work`` adds what it made durable to ``result``. An
    :class:`~fraudlens.errors.UnavailableError` releases the items not yet worked and
    records the outage; any other failure marks the item (or the lone item) failed.
    """
    try:
        work(items)
        return
    except UnavailableError as exc:
        result.released.extend(message(i) for i in items)
        result.outage = exc
        return
    except Exception as exc:
        if len(items) == 1:
            result.failed.append((message(items[0]), failure_reason(exc)))
            return
        log.warning("batch of %d failed (%s); retrying one by one", len(items), exc)
    for n, item in enumerate(items):
        try:
            work([item])
        except UnavailableError as exc:
            result.released.extend(message(i) for i in items[n:])
            result.outage = exc
            return
        except Exception as exc:
            result.failed.append((message(item), failure_reason(exc)))


class NoModelWarning:
    """The warning a handler logs while it has no usable model: at once, then at most
    every ``every`` seconds while the model stays unusable (the outage's probes run far
    more often), again at once after the model was usable in between.

    The worker and the card processor each word theirs (where the model is looked for,
    what waits, what to run); this keeps when they say it the same.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        # monotonic time of the last warning (None: usable since, or never warned)
        self._last: float | None = None

    def warn(self, every: float, message: str, *args: Any) -> bool:
        """Log ``message % args`` as a warning unless one was logged within ``every``
        seconds; whether it was logged."""
        now = time.monotonic()
        if self._last is not None and now - self._last < every:
            return False
        self._last = now
        self.log.warning(message, *args)
        return True

    def usable(self) -> None:
        """The model is usable: the next unusable spell warns at once."""
        self._last = None


class Handler(Protocol):
    """The work of one kind of message.

    ``handle`` works a batch and reports each message in a :class:`BatchResult`. It may
    raise :class:`~fraudlens.errors.UnavailableError` instead when nothing of the batch
    was made durable. ``probe`` raises UnavailableError while what the work depends on is
    still down, and returns when work can resume.
    """

    def handle(self, msgs: Sequence[Message]) -> BatchResult: ...

    def probe(self) -> None: ...


# A handler may also have ``unstick() -> int``: cut what a call of it that has not
# returned waits on (the store's connections), so the call fails as an outage instead
# of waiting for ever; it returns how many things it cut. The consumer calls it from
# another thread when ``handle`` or ``probe`` has run longer than ``cut_after(lease)``.

#: Fewest seconds a handler call runs before it may be cut (see ``unstick`` above).
CUT_AFTER_MIN = 10.0


def cut_after(lease: float) -> float:
    """Seconds a handler call runs before it is cut: the batch's lease, and at least
    :data:`CUT_AFTER_MIN` (a short lease must not cut calls that are merely slow)."""
    return max(lease, CUT_AFTER_MIN)


# ------------------------------------------------------------------------------ metrics


class ConsumerMetrics:
    """Prometheus metrics of a consumer (a private registry unless one is given).

    Names start with ``prefix`` (``fraudlens_worker`` for the worker,
    ``fraudlens_processor`` for the card processor):

    - ``<prefix>_messages_total{outcome}``: ``processed``, ``flagged``, ``failed``
      (attempts spent on failures), ``dead_lettered`` (every move to the dead-letter
      store, the queue's own included), ``released`` (handed back during an outage);
    - ``<prefix>_latency_seconds``: from a message's request time to its durable effect;
    - ``<prefix>_batch_seconds``: time to work one batch;
    - ``<prefix>_healthy``: 1 while consuming, 0 while paused by an outage;
    - ``<prefix>_outages_total`` and ``<prefix>_paused_seconds_total``.

    :attr:`health` is the :class:`Health` that ``/healthz`` of :meth:`serve` reports by
    default; a :class:`Consumer` given these metrics reports into it, so a process that
    runs one consumer after another (the card processor's passes) keeps one ``/healthz``.

    Parameters
    ----------
    prefix
        Metric name prefix.
    registry
        A prometheus-client registry (the default one in multiprocess mode).
    """

    OUTCOMES = ("processed", "flagged", "failed", "dead_lettered", "released")

    def __init__(self, prefix: str = "fraudlens_worker", registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.prefix = prefix
        self.registry = registry if registry is not None else CollectorRegistry()
        self.messages = Counter(
            f"{prefix}_messages",
            "Messages handled by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_latency_seconds",
            "From a message's request time to the commit of its result.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch = Histogram(
            f"{prefix}_batch_seconds",
            "Time to work one batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        # livemin: across processes, unhealthy when any live one is.
        self.healthy = Gauge(
            f"{prefix}_healthy",
            "1 while consuming, 0 while paused by an outage of what the work depends on.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.outages = Counter(
            f"{prefix}_outages", "Outages that paused consumption.", registry=self.registry
        )
        self.paused = Counter(
            f"{prefix}_paused_seconds", "Time spent paused by outages.", registry=self.registry
        )
        self.cuts = Counter(
            f"{prefix}_stuck_calls_cut",
            "Calls still running past the lease whose connections were cut.",
            registry=self.registry,
        )
        self.healthy.set(1)
        for outcome in self.OUTCOMES:
            self.messages.labels(outcome)
        self.health = Health()

    def serve(self, port: int, addr: str = "127.0.0.1", health: HealthReport | None = None) -> bool:
        """Serve ``/metrics`` and ``/healthz`` (from ``health``, by default :attr:`health`)
        over HTTP in a thread.

        Returns
        -------
        bool
            False (and a warning) if the port is taken.
        """
        try:
            serve_metrics(self.registry, port, addr, health if health is not None else self.health)
        except OSError as exc:
            log.warning("metrics not exported on %s:%d: %s", addr, port, exc)
            return False
        return True


@dataclass
class Health:
    """Whether a consumer is consuming, and if not, why.

    One instance per consumer, updated in place (the HTTP thread reads it).
    ``on_change``, if set, is called with the health after each change (a worker process
    of several publishes it to the parent that serves ``/healthz``:
    :class:`SharedHealth`).
    """

    healthy: bool = True
    what: str | None = None
    reason: str | None = None
    since: float | None = None
    #: Unix time the batch in hand was received (None between batches), and the seconds
    #: after which a batch still in hand counts as stalled (its lease; None: never).
    busy_since: float | None = None
    stall_after: float | None = None
    on_change: Callable[[Health], None] | None = field(default=None, repr=False, compare=False)
    #: Called with :attr:`busy_since` after each :meth:`busy` (a batch taken or done:
    #: often, so kept apart from :attr:`on_change`, whose reports are heavier).
    on_busy: Callable[[float | None], None] | None = field(default=None, repr=False, compare=False)

    def down(self, what: str | None, reason: str) -> None:
        """Mark unhealthy."""
        self.what, self.reason, self.since = what, reason, time.time()
        self.healthy = False
        self._changed()

    def still_down(self, reason: str) -> None:
        """Record the latest reason while unhealthy (a probe that failed again)."""
        self.reason = reason
        self._changed()

    def up(self) -> None:
        """Mark healthy."""
        self.healthy = True
        self.what = self.reason = self.since = None
        self._changed()

    def busy(self, busy: bool) -> None:
        """A batch is in hand from now (True), or no longer (False)."""
        self.busy_since = time.time() if busy else None
        if self.on_busy is not None:
            try:
                self.on_busy(self.busy_since)
            except Exception as exc:  # reporting must never stop the loop
                log.warning("health not published: %s: %s", type(exc).__name__, exc)

    def state(self) -> dict[str, Any]:
        """The fields as plain values (what :class:`SharedHealth` stores)."""
        return {
            "healthy": self.healthy,
            "what": self.what,
            "reason": self.reason,
            "since": self.since,
            "busy_since": self.busy_since,
            "stall_after": self.stall_after,
        }

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception as exc:  # reporting must never stop the loop
                log.warning("health not published: %s: %s", type(exc).__name__, exc)

    def as_json(self) -> dict[str, Any]:
        """The ``/healthz`` body."""
        if self.healthy:
            stalled = _stalled(self.state(), time.time())
            if stalled is None:
                return {"status": "ok"}
            reason, down = stalled
            return {
                "status": "unavailable",
                "what": "stalled",
                "reason": reason,
                "down_seconds": down,
            }
        return {
            "status": "unavailable",
            "what": self.what,
            "reason": self.reason,
            "down_seconds": round(time.time() - (self.since or time.time()), 1),
        }


def _stalled(state: dict[str, Any], now: float) -> tuple[str, float] | None:
    """Why a consumer that says it is healthy is not (its batch in hand for longer than
    its lease: a call that never returns), and for how long; None if it is.

    A server frozen, or gone without closing its connections, leaves a call waiting for
    its reply for ever: the loop never gets to mark itself down, and ``/healthz`` said
    ``ok`` while nothing moved."""
    since, after = state.get("busy_since"), state.get("stall_after")
    if not isinstance(since, int | float) or not isinstance(after, int | float):
        return None
    busy = now - since
    if busy <= after:
        return None
    reason = (
        f"a batch has been in hand for {busy:.0f} s, longer than its {after:g} s lease: a "
        "call to the store, queue or sink has not returned (a server that stopped answering "
        "without closing the connection?)"
    )
    return reason, round(busy - after, 1)


class HealthReport(Protocol):
    """What ``/healthz`` reports: a :class:`Health` or a :class:`SharedHealth`."""

    def as_json(self) -> dict[str, Any]: ...


#: Shared memory per process of a :class:`SharedHealth`: its health as JSON (the reason
#: is cut to fit).
_SLOT_BYTES = 2048


class SharedHealth:
    """The health of several consumer processes in shared memory: each process
    publishes its consumer's :class:`Health` to a slot of its own (:meth:`attach`), and
    the parent serving ``/healthz`` reports the worst of them (:meth:`as_json`).

    A process counts as unhealthy while its consumer is paused by an outage, while it is
    starting (until it has attached its health), and once it has died (a non-zero exit
    code, or killed by a signal) until a new process is given its slot (:meth:`watch`). A
    process that exited normally (code 0: stopped by a signal or idle) does not count.

    Parameters
    ----------
    processes
        Number of slots, one per process.
    context
        The multiprocessing context the processes are started from (the default one
        otherwise).
    """

    def __init__(self, processes: int, context: Any = None) -> None:
        import ctypes
        import multiprocessing

        ctx = context if context is not None else multiprocessing.get_context()
        self.size = max(1, int(processes))
        self._memory = ctx.Array(ctypes.c_char, self.size * _SLOT_BYTES)
        # Each slot's Health.busy_since (0: none), written once per batch: a plain double
        # per slot, without the lock and the JSON of the slots above.
        self._busy = ctx.Array(ctypes.c_double, self.size, lock=False)
        # the parent's side only: each slot's process and when it was first seen dead
        self._processes: list[Any] = [None] * self.size
        self._dead_since: list[float | None] = [None] * self.size

    def __getstate__(self) -> dict[str, Any]:
        # A child gets the shared memory; the process handles stay with the parent.
        return {"size": self.size, "_memory": self._memory, "_busy": self._busy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.size = state["size"]
        self._memory = state["_memory"]
        self._busy = state["_busy"]
        self._processes = [None] * self.size
        self._dead_since = [None] * self.size

    # -- a process's side --------------------------------------------------------------
    def attach(self, index: int, health: Health) -> None:
        """Publish ``health`` to slot ``index`` now and after each of its changes."""
        if not 0 <= index < self.size:
            raise IndexError(f"health slot {index} of {self.size}")
        busy = self._busy

        def on_busy(since: float | None) -> None:
            busy[index] = since or 0.0

        health.on_change = lambda h: self._write(index, h.state())
        health.on_busy = on_busy
        self._write(index, health.state())
        on_busy(health.busy_since)

    # -- the parent's side -------------------------------------------------------------
    def watch(self, index: int, process: Any) -> None:
        """Judge slot ``index`` by ``process`` (a ``multiprocessing`` process) from now on;
        the slot is cleared, so the process counts as starting until it attaches."""
        self._processes[index] = process
        self._dead_since[index] = None
        self._write(index, None)
        self._busy[index] = 0.0

    def started(self, index: int) -> bool:
        """Whether slot ``index``'s process has attached its health (started consuming)."""
        return self._read(index) is not None

    def processes(self) -> list[dict[str, Any]]:
        """Each process's status: ``ok``, ``unavailable`` (paused by an outage, with what
        and why), ``starting``, ``dead`` or ``stopped``."""
        now = time.time()
        out = []
        for i in range(self.size):
            proc = self._processes[i]
            item: dict[str, Any] = {"process": i, "pid": getattr(proc, "pid", None)}
            exitcode = getattr(proc, "exitcode", None)
            state = self._read(i)
            if state is not None:
                state["busy_since"] = self._busy[i] or None
            if exitcode is not None and exitcode != 0:
                if self._dead_since[i] is None:
                    self._dead_since[i] = now
                how = f"killed by signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"
                item.update(
                    status="dead",
                    what="process",
                    reason=f"process {i} (pid {item['pid']}) died: {how}",
                    down_seconds=round(now - (self._dead_since[i] or now), 1),
                )
            elif exitcode == 0:
                item["status"] = "stopped"
            elif state is None:
                item.update(
                    status="starting",
                    what="process",
                    reason=f"process {i} has not started consuming yet",
                )
            elif state.get("healthy") and (stalled := _stalled(state, now)) is not None:
                item.update(
                    status="unavailable",
                    what="stalled",
                    reason=stalled[0],
                    down_seconds=stalled[1],
                )
            elif state.get("healthy"):
                item["status"] = "ok"
            else:
                since = state.get("since")
                item.update(
                    status="unavailable",
                    what=state.get("what"),
                    reason=state.get("reason"),
                    down_seconds=round(now - (since or now), 1),
                )
            out.append(item)
        return out

    @property
    def healthy(self) -> bool:
        """Whether every process is consuming (or stopped normally)."""
        return self.as_json()["status"] == "ok"

    def as_json(self) -> dict[str, Any]:
        """The ``/healthz`` body: the worst process's what, why and how long (dead, then
        paused longest, then starting), and every process's status."""
        items = self.processes()
        rank = {"dead": 0, "unavailable": 1, "starting": 2}
        bad = [p for p in items if p["status"] in rank]
        if not bad:
            return {"status": "ok", "processes": items}
        worst = min(bad, key=lambda p: (rank[p["status"]], -(p.get("down_seconds") or 0.0)))
        return {
            "status": "unavailable",
            "what": worst["what"],
            "reason": worst["reason"],
            "down_seconds": worst.get("down_seconds", 0.0),
            "unhealthy": len(bad),
            "processes": items,
        }

    # -- the shared memory -------------------------------------------------------------
    def _write(self, index: int, state: dict[str, Any] | None) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"health slot {index} of {self.size}")
        data = b""
        if state is not None:
            state = dict(state)
            data = json.dumps(state).encode()
            while len(data) > _SLOT_BYTES and state.get("reason"):
                state["reason"] = str(state["reason"])[: len(str(state["reason"])) // 2]
                data = json.dumps(state).encode()
        start = index * _SLOT_BYTES
        self._memory[start : start + _SLOT_BYTES] = data.ljust(_SLOT_BYTES, b"\0")

    def _read(self, index: int) -> dict[str, Any] | None:
        start = index * _SLOT_BYTES
        raw = bytes(self._memory[start : start + _SLOT_BYTES]).rstrip(b"\0")
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def serve_metrics(
    registry: Any, port: int, addr: str = "127.0.0.1", health: HealthReport | None = None
) -> Any:
    """Start a threaded HTTP server with ``/metrics`` and ``/healthz``; return it.

    ``/healthz`` answers 200 ``{"status": "ok"}`` while ``health`` is healthy (or when
    there is no ``health``), else 503 with what is down and why.

    Raises
    ------
    OSError
        If the address cannot be bound.
    """
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            state = health.as_json() if health is not None else {"status": "ok"}
            code = "200 OK" if state["status"] == "ok" else "503 Service Unavailable"
            start_response(code, [("Content-Type", "application/json")])
            return [json.dumps(state).encode()]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would flood the log

    server = make_server(addr, port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True, name="fraudlens-metrics").start()
    return server


# -------------------------------------------------------------------------------- stats


@dataclass
class ConsumerStats:
    """What a consumer did.

    ``first_at``/``last_at`` are the Unix times the first batch arrived and the last one
    was done (busy time, without idle waits); ``latencies`` holds up to 100,000 message
    latencies in seconds. ``dead_lettered`` counts every move to the dead-letter store
    this consumer's queue handle made, including the queue's own moves after
    ``max_attempts``.
    """

    received: int = 0
    processed: int = 0
    flagged: int = 0
    written: int = 0
    failed: int = 0
    dead_lettered: int = 0
    released: int = 0
    outages: int = 0
    paused_seconds: float = 0.0
    batches: int = 0
    seconds: float = 0.0
    first_at: float | None = None
    last_at: float | None = None
    latencies: list[float] = field(default_factory=list, repr=False)
    #: Why the run ended with work left in the queue (``idle_exit`` spent without a
    #: usable model), else None.
    gave_up: str | None = None
    #: Times a handler call still running past the lease was cut (``unstick``).
    cut: int = 0

    @property
    def rate(self) -> float:
        """Processed messages per second."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def handled(self) -> int:
        """Messages settled for good: processed or dead-lettered."""
        return self.processed + self.dead_lettered


# --------------------------------------------------------------------------------- loop


class Consumer:
    """Run a :class:`Handler` over a :class:`Source` until stopped.

    Parameters
    ----------
    source
        A :class:`~fraudlens.queues.Queue` or a queue-shaped local source.
    handler
        The work.
    batch_size
        Messages received and handled together at most.
    visibility_timeout
        Lease of a received batch; a crashed consumer's batch is redelivered after it.
    wait
        Seconds one receive may block for messages (sources that can block).
    poll
        True for sources that cannot block (SQLite, files): the loop polls them at a
        short interval instead.
    retry_base, retry_cap
        Back-off of a failed message: ``retry_base * 2 ** (attempts - 1)``, at most
        ``retry_cap`` seconds.
    pause_base, pause_cap
        Back-off while an outage lasts: the first wait, doubled after each failed probe,
        at most ``pause_cap`` seconds.
    metrics
        Prometheus metrics to update, if any.
    stop_event
        Set it to stop after the batch in hand (a fresh one by default).
    """

    def __init__(
        self,
        source: Source,
        handler: Handler,
        *,
        batch_size: int = 100,
        visibility_timeout: float = 60.0,
        wait: float = 1.0,
        poll: bool = False,
        retry_base: float = 1.0,
        retry_cap: float = 60.0,
        pause_base: float = 0.5,
        pause_cap: float = 10.0,
        metrics: ConsumerMetrics | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.handler = handler
        self.batch_size = max(1, int(batch_size))
        self.visibility_timeout = float(visibility_timeout)
        self.wait = float(wait)
        self.poll = bool(poll)
        self.retry_base = float(retry_base)
        self.retry_cap = float(retry_cap)
        self.pause_base = float(pause_base)
        self.pause_cap = float(pause_cap)
        self.metrics = metrics
        self.stats = ConsumerStats()
        # One health per metrics (what their /healthz shows), else our own.
        self.health = metrics.health if metrics is not None else Health()
        # A batch in hand for longer than its lease is stalled (see Health.as_json).
        self.health.stall_after = self.visibility_timeout
        self.stop_event = stop_event or threading.Event()
        self._warmed = False
        self._frozen = False
        # Monotonic time the handler call in progress (handle or probe) began, else None.
        self._call_since: float | None = None
        # Queue calls that failed with the queue down, made again when it answers:
        # [function, args, kwargs, failures while the queue answered].
        self._owed: list[list[Any]] = []
        self._count_dead_letters()

    def _count_dead_letters(self) -> None:
        chained = self.source.on_dead_letter

        def counted(reason: str) -> None:
            self._count("dead_lettered")
            if chained is not None:
                chained(reason)

        self.source.on_dead_letter = counted

    # -- control ---------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self.stop_event.set()

    def hold(self, outage: UnavailableError) -> None:
        """Pause for ``outage``, found outside a batch (what the next work needs is down:
        a model a pass must load before it can start). :meth:`run` then waits it out
        first, probing with back-off, as for an outage a batch met: with
        ``idle_without_model`` a model outage counts as idle."""
        self._enter_outage(outage)

    def run(
        self,
        *,
        limit: int | None = None,
        idle_exit: float | None = None,
        drain: bool = False,
        on_batch: Callable[[ConsumerStats], None] | None = None,
        idle_without_model: bool = False,
    ) -> ConsumerStats:
        """Consume until stopped, ``limit`` messages are settled (processed or
        dead-lettered), the source stays empty for ``idle_exit`` seconds, or (``drain``)
        the first receive that finds nothing.

        With ``idle_without_model``, time paused by a *model* outage (no model, or one
        that does not load) counts as idle: with ``idle_exit`` the run ends after that
        long without a usable model, the messages it handed back still queued (none
        acked, none dead-lettered), and :attr:`ConsumerStats.gave_up` says why. A missing
        model is a setting to fix, not an outage that ends by itself. A store or queue
        outage is waited out whatever ``idle_exit`` is (a server restart ends by itself).

        Returns
        -------
        ConsumerStats
            The running totals (also :attr:`stats`).
        """
        if not self._warmed:
            self._warm_up()
        self.stats.gave_up = None
        watch = self._start_watch()
        try:
            return self._run(limit, idle_exit, drain, on_batch, idle_without_model)
        finally:
            if watch is not None:
                watch.set()

    def _run(
        self,
        limit: int | None,
        idle_exit: float | None,
        drain: bool,
        on_batch: Callable[[ConsumerStats], None] | None,
        idle_without_model: bool,
    ) -> ConsumerStats:
        t0 = time.perf_counter() - self.stats.seconds
        idle_since = time.monotonic()
        pause = 0.001
        while not self.stop_event.is_set():
            if not self.health.healthy:
                until = None
                if idle_without_model and idle_exit is not None and self.health.what == "model":
                    until = idle_since + idle_exit
                self._wait_out_outage(until=until)
                if until is not None and not self.health.healthy and time.monotonic() >= until:
                    self.stats.gave_up = (
                        f"no usable model for {idle_exit:g} s (idle exit): {self.health.reason}"
                    )
                    log.error(
                        "stopping: %s; the messages handed back stay queued", self.stats.gave_up
                    )
                    break
                continue
            settled = self.stats.handled
            if limit is not None and settled >= limit:
                break
            want = self.batch_size if limit is None else min(self.batch_size, limit - settled)
            try:
                msgs = self.source.receive(
                    max(1, want),
                    visibility_timeout=self.visibility_timeout,
                    wait=0.0 if self.poll else self.wait,
                )
            except QueueError as exc:
                self._enter_outage(UnavailableError(str(exc), what="queue"))
                continue
            if not msgs:
                if drain or (idle_exit is not None and time.monotonic() - idle_since >= idle_exit):
                    break
                if self.poll:
                    self.stop_event.wait(pause)
                    pause = min(pause * 2, _MAX_POLL)
                continue
            pause = 0.001
            self.process(msgs)
            # Idle time runs from the end of the batch: a batch slower than idle_exit must
            # not end the loop before the retries it nacked (short back-off) come due.
            idle_since = time.monotonic()
            self.stats.seconds = time.perf_counter() - t0
            if on_batch is not None:
                on_batch(self.stats)
        if self._owed:
            # Stopped during a queue outage: one last try, else the leases run out and
            # the messages are redone.
            self._pay_owed()
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def _start_watch(self) -> threading.Event | None:
        """Start the thread that unsticks a handler call running past the lease (when the
        handler can); return the event that stops it."""
        unstick = getattr(self.handler, "unstick", None)
        if unstick is None:
            return None
        done = threading.Event()
        threading.Thread(
            target=self._watch, args=(unstick, done), name="fraudlens-unstick", daemon=True
        ).start()
        return done

    def _watch(self, unstick: Callable[[], int], done: threading.Event) -> None:
        """Every second at most: a handler call in progress for longer than
        :func:`cut_after` the lease waits on a server that will not answer (a half-open
        connection, a frozen process), and so would the loop, for ever: cut what it
        waits on, so it fails as an outage (the batch is handed back, the loop pauses
        and probes). Once per bound at most for one call."""
        lease = self.visibility_timeout
        bound = cut_after(lease)
        while not done.wait(min(1.0, bound / 4)):
            since = self._call_since
            if since is None or time.monotonic() - since <= bound:
                continue
            held = time.monotonic() - since
            try:
                cut = unstick()
            except Exception as exc:  # the watch must go on
                log.warning("could not cut a stuck call: %s: %s", type(exc).__name__, exc)
                continue
            if self._call_since == since:
                self._call_since = time.monotonic()  # the next cut as long after
            if cut:
                self.stats.cut += 1
                if self.metrics is not None:
                    self.metrics.cuts.inc()
                log.error(
                    "a call to the store has not returned in %.0f s (the batch's lease is "
                    "%g s): cut %d connection(s); the call fails as an outage",
                    held,
                    lease,
                    cut,
                )

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        """Mark a handler call in progress for :meth:`_watch`."""
        self._call_since = time.monotonic()
        try:
            yield
        finally:
            self._call_since = None

    def _warm_up(self) -> None:
        """Before the first receive: let the handler load what it keeps for the run (its
        model), then move everything loaded so far out of the collector's way, so the
        first batch does not pay for a full collection of the libraries and the model.
        A handler that cannot warm up now (its model unavailable) is left to the loop's
        outage handling."""
        self._warmed = True
        warm_up = getattr(self.handler, "warm_up", None)
        if warm_up is not None:
            try:
                warm_up()
            except UnavailableError as exc:
                log.info("not warmed up before the first batch: %s", exc)
        gc.collect()
        gc.freeze()

    # -- one batch -------------------------------------------------------------------
    def process(self, msgs: Sequence[Message]) -> None:
        """Handle one received batch and settle every message of it."""
        started = time.perf_counter()
        if self.stats.first_at is None:
            self.stats.first_at = time.time()
        self.stats.received += len(msgs)
        self.stats.batches += 1
        self.health.busy(True)
        try:
            try:
                with self._calling():
                    result = self.handler.handle(msgs)
            except UnavailableError as exc:
                result = BatchResult(released=list(msgs), outage=exc)
            except Exception as exc:
                # A bug or an unexpected library error: the messages' attempts pay for
                # it, so a poisonous message ends in the dead-letter store instead of
                # looping.
                log.exception("handling a batch of %d failed", len(msgs))
                reason = failure_reason(exc)
                result = BatchResult(failed=[(m, reason) for m in msgs])
            self._settle(msgs, result)
        finally:
            self.health.busy(False)
        self.stats.last_at = time.time()
        if self.metrics is not None:
            self.metrics.batch.observe(time.perf_counter() - started)
        if not self._frozen and self.stats.processed:
            # The caches the first batch filled live for the whole run too (the model
            # and the libraries were frozen before it): move them out of the
            # collector's way, or a full collection walking them stalls a message for
            # tens of milliseconds now and then.
            gc.collect()
            gc.freeze()
            self._frozen = True

    def _settle(self, msgs: Sequence[Message], result: BatchResult) -> None:
        accounted = {
            id(m)
            for m in (
                *result.done,
                *(m for m, _ in result.invalid),
                *(m for m, _ in result.failed),
                *result.released,
            )
        }
        missing = [m for m in msgs if id(m) not in accounted]
        if missing:
            log.error("handler left %d message(s) unsettled: handing them back", len(missing))
            result.released.extend(missing)
        if result.released and result.outage is None:
            result.outage = UnavailableError("handler released messages", what="handler")

        if result.done:
            # The effects are durable: if the queue is down, the ack is owed and made
            # once it answers (stop pulling until then).
            self._queue_call(self.source.ack_many, list(result.done))
        self._count("processed", len(result.done))
        self._count("flagged", result.flagged)
        self.stats.written += result.written
        for seconds in result.latencies:
            if len(self.stats.latencies) < _KEEP_LATENCIES:
                self.stats.latencies.append(seconds)
            if self.metrics is not None:
                self.metrics.latency.observe(max(seconds, 0.0))

        for msg, reason in result.invalid:
            log.warning("message %s dead-lettered: %s", msg.id, reason)
            self._queue_call(self.source.dead_letter, msg, reason)

        if result.outage is not None:
            if self._confirmed(result.outage):
                if result.released:
                    self._release(result.released, result.outage)
                self._enter_outage(result.outage)
            else:
                reason = f"{result.outage} (the probe passed: not an outage)"
                result.failed.extend((m, reason) for m in result.released)

        for msg, reason in result.failed:
            log.warning("message %s failed (attempt %d): %s", msg.id, msg.attempts, reason)
            delay = min(self.retry_base * 2.0 ** max(0, msg.attempts - 1), self.retry_cap)
            self._queue_call(self.source.nack, msg, reason=reason[:500], delay=delay)
            self._count("failed")

    def _queue_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Make a queue call; if the queue is down, owe it (made again once the queue
        answers) and pause."""
        if self._owed:
            # Keep the order: an earlier owed call (an ack, say) goes first.
            self._owed.append([fn, args, kwargs, 0])
            return None
        try:
            return fn(*args, **kwargs)
        except QueueError as exc:
            log.warning("queue call %s failed: %s", getattr(fn, "__name__", fn), exc)
            self._owed.append([fn, args, kwargs, 0])
            self._enter_outage(UnavailableError(str(exc), what="queue"))
            return None

    def _pay_owed(self) -> QueueError | None:
        """Make the owed queue calls again, in order; the error that stopped them, if any.

        A call that fails ``_OWED_TRIES`` times while the queue answers (its ping: a
        queue that answers reads but cannot take a write, such as a SQLite file on a full
        disk, is still down) is given up: its messages come back after their lease.
        """
        while self._owed:
            entry = self._owed[0]
            fn, args, kwargs = entry[0], entry[1], entry[2]
            try:
                fn(*args, **kwargs)
            except QueueError as exc:
                try:
                    _ping(self.source)
                except QueueError:
                    return exc  # still down
                entry[3] += 1
                if entry[3] < _OWED_TRIES:
                    return exc
                log.error(
                    "queue call %s keeps failing while the queue answers: given up (%s)",
                    getattr(fn, "__name__", fn),
                    exc,
                )
            self._owed.pop(0)
        return None

    def _release(self, msgs: list[Message], outage: UnavailableError) -> None:
        self._queue_call(self._release_now, msgs, str(outage)[:200])

    def _release_now(self, msgs: list[Message], reason: str) -> None:
        n = self.source.release(msgs, reason=reason)
        self.stats.released += n
        if self.metrics is not None:
            self.metrics.messages.labels("released").inc(n)

    # -- outages ---------------------------------------------------------------------
    def _probe(self) -> UnavailableError | None:
        try:
            if self.health.what == "queue" or self._owed:
                _ping(self.source)
                owed = self._pay_owed()
                if owed is not None:
                    raise owed
            with self._calling():
                self.handler.probe()
        except UnavailableError as exc:
            return exc
        except QueueError as exc:
            return UnavailableError(str(exc), what="queue")
        except Exception as exc:  # a probe that cannot tell is a probe that failed
            log.warning("probe failed unexpectedly: %s: %s", type(exc).__name__, exc)
            return UnavailableError(f"probe failed: {type(exc).__name__}: {exc}")
        return None

    def _confirmed(self, outage: UnavailableError) -> bool:
        """Whether the dependency is really down (the probe fails too)."""
        if outage.what == "queue":
            return True
        return self._probe() is not None

    def _enter_outage(self, outage: UnavailableError) -> None:
        if not self.health.healthy:
            return
        self.health.down(outage.what, str(outage)[:500])
        self.stats.outages += 1
        log.error(
            "%s unavailable, pausing consumption until it answers: %s",
            outage.what or "a dependency",
            outage,
        )
        if self.metrics is not None:
            self.metrics.healthy.set(0)
            self.metrics.outages.inc()

    def _wait_out_outage(self, until: float | None = None) -> None:
        """Back off and probe until the dependency answers (or we are stopped, or the
        monotonic time ``until`` has passed)."""
        started = time.monotonic()
        pause = self.pause_base
        probes = 0
        while not self.stop_event.is_set():
            jittered = pause * random.uniform(0.9, 1.1)
            if until is not None:
                jittered = min(jittered, max(0.0, until - time.monotonic()))
            self.stop_event.wait(jittered)
            if self.stop_event.is_set():
                break
            probes += 1
            problem = self._probe()
            if problem is None:
                down = time.monotonic() - started
                log.warning(
                    "%s answers again after %.1f s (%d %s): resuming",
                    self.health.what or "dependency",
                    down,
                    probes,
                    "probe" if probes == 1 else "probes",
                )
                self.health.up()
                if self.metrics is not None:
                    self.metrics.healthy.set(1)
                break
            self.health.still_down(str(problem)[:500])
            if probes == 1 or probes % 10 == 0:
                log.warning(
                    "still unavailable after %d %s: %s",
                    probes,
                    "probe" if probes == 1 else "probes",
                    problem,
                )
            pause = min(pause * 2, self.pause_cap)
            if until is not None and time.monotonic() >= until:
                break
        paused = time.monotonic() - started
        self.stats.paused_seconds += paused
        if self.metrics is not None:
            self.metrics.paused.inc(paused)

    def _count(self, outcome: str, n: int = 1) -> None:
        if n <= 0:
            return
        setattr(self.stats, outcome, getattr(self.stats, outcome) + n)
        if self.metrics is not None:
            self.metrics.messages.labels(outcome).inc(n)


# ------------------------------------------------------------------------------ signals


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, *, enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop``; a second SIGINT raises
    KeyboardInterrupt. Does nothing outside the main thread or when not ``enabled``."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("signal %s: finishing the batch in hand, then stopping", signum)
        stop.set()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
