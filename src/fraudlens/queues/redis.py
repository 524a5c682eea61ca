"""Queue on a Redis Stream with a consumer group (Redis >= 6.2).

How the contract maps onto Redis:

- ``send`` is ``XADD <stream> * body <text>``; the stream entry id is the message id.
- ``receive`` first runs ``XAUTOCLAIM`` with ``min-idle-time = visibility_timeout``: entries
  another consumer received but has not acked for that long (it died, or is stuck) are
  claimed by this consumer. It then reads never-delivered entries with ``XREADGROUP >``.
  The delivery count is Redis's own per-entry counter, read with ``XPENDING``.
- ``ack`` is ``XACK`` + ``XDEL``, so the stream only holds unacked messages and ``XLEN`` is
  the depth.
- ``nack`` leaves the entry pending and rewrites its idle time with
  ``XCLAIM ... IDLE <ms> JUSTID`` (JUSTID keeps the delivery counter unchanged). With
  ``delay=0`` the idle time is set far in the past, so the next ``receive`` of any consumer
  claims it. With ``delay > 0`` it is set to ``visibility_timeout - delay``, where
  ``visibility_timeout`` is the one the message was received with: consumers that use the
  same timeout claim it ``delay`` seconds later. Redis keeps no per-entry "visible at", so a
  delay longer than that visibility timeout is cut down to it. The nack reason is kept in
  the hash ``<stream>:errors`` until the message is acked or dead-lettered.
- ``release`` is ``XCLAIM ... IDLE <ms> RETRYCOUNT <attempts - 1> JUSTID``: the entry stays
  pending, claimable after ``delay`` like a nack, with its delivery counter set back by one.
- Dead letters go to the stream ``<stream>:dlq`` with fields ``id``, ``body``, ``reason``,
  ``attempts`` and ``failed_at``; moving one is a Lua script, so it is atomic.

The visibility timeout is the *claimer's* ``min-idle-time``: Redis tracks only how long an
entry has been idle, so a consumer receiving with a short timeout may claim an entry that
another consumer received with a long one.

When the server goes away
-------------------------
Every redis-py error becomes a :class:`~fraudlens.errors.QueueError` (the consumer loop
pauses on it and probes with :meth:`RedisQueue.depth`). A queue opened while the server
is down waits for it: the consumer group is created on the first receive that reaches
the server. A server restarted *with* its data (an append-only file, ``appendonly yes``)
keeps the stream, the group and the pending entries: nothing is lost. A server without
persistence comes back empty: the stream and the group are gone (``NOGROUP``), and with
them every message not yet acked. The queue then recreates the group (reading from the
stream's start, so messages sent meanwhile are all delivered), and an ack, nack, release
or dead-letter of an entry that vanished with the group is a no-op. After losing contact
with the server, the first receive that reaches it again also hands back, unspent, the
entries pending on this consumer that it does not hold: entries a read delivered whose
reply the broken connection lost (they would otherwise wait for their lease to run out,
a visibility timeout later). The messages Redis
lost are lost by Redis itself: run Redis with ``appendonly yes`` (``appendfsync
everysec`` loses at most a second of writes to a crash, ``always`` none).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fraudlens.errors import QueueError
from fraudlens.queues._base import (
    Message,
    Queue,
    dead_letter_record,
    encode_body,
    log,
    max_attempts_reason,
)

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = ["RedisQueue"]

DEFAULT_GROUP = "fraudlens"
# Idle time given to an entry nacked with delay=0: far beyond any visibility timeout, but
# below the current Unix time in ms (Redis clamps larger values to "now").
_IDLE_NOW_MS = 10 * 365 * 24 * 3600 * 1000
# Longest single XREADGROUP BLOCK, so entries nacked or expired meanwhile are still seen.
_BLOCK_SLICE = 0.5
_SEND_CHUNK = 500
#: Seconds a Redis command may wait for its reply, and a connection for the server.
_SOCKET_TIMEOUT_S = 15.0
_CONNECT_TIMEOUT_S = 10.0

# Atomically move a pending entry to the dead-letter stream. XACK returning 0 means the
# entry was already acked or dead-lettered by someone else: then nothing is written.
_DEAD_LETTER_LUA = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'body', ARGV[3], 'reason', ARGV[4],
           'attempts', ARGV[5], 'failed_at', ARGV[6])
return 1
"""


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


#: Field of the nack-reason hash that :meth:`RedisQueue.ping` sets and deletes (entry ids
#: are ``<ms>-<seq>``, so it names no entry).
_PING_FIELD = "fraudlens:ping"


class RedisQueue(Queue):
    """A queue on a Redis Stream read through a consumer group.

    Parameters
    ----------
    url
        Redis connection URL (``redis://host:port/db``, ``rediss://`` for TLS).
    name
        Queue name; the stream defaults to ``fraudlens:<name>``.
    stream, group
        Stream key and consumer group (created with ``MKSTREAM`` if missing).
    consumer
        This instance's consumer name; unique per instance by default (host-pid-random).
    max_attempts
        Deliveries allowed per message before it is dead-lettered.
    client
        An existing ``redis.Redis`` (created with ``decode_responses=True``) to use
        instead of ``url``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        name: str = "checks",
        stream: str | None = None,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        max_attempts: int = 5,
        client: redis_lib.Redis | None = None,
    ) -> None:
        super().__init__(name, max_attempts=max_attempts)
        import redis as redis_lib

        self._redis_errors: tuple[type[Exception], ...] = (redis_lib.RedisError,)
        self._lost_errors = (redis_lib.ConnectionError, redis_lib.TimeoutError)
        self._response_error = redis_lib.ResponseError
        self.url = url
        self.stream = stream or f"fraudlens:{name}"
        self.dlq = f"{self.stream}:dlq"
        self._errors_key = f"{self.stream}:errors"
        self.group = group
        self.consumer = consumer or _default_consumer()
        # A client passed in belongs to the caller, who closes it.
        self._owns_client = client is None
        # Socket timeouts (the URL's socket_timeout / socket_connect_timeout override
        # them): a server that stops answering (a frozen process, a host gone without
        # closing its connections) had held a command for ever, where the consumer
        # should pause for the outage and retry. Every command here is short: a receive
        # blocks at most _BLOCK_SLICE, a send goes in pipelines of _SEND_CHUNK entries.
        self._r: redis_lib.Redis | None = client or redis_lib.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=_SOCKET_TIMEOUT_S,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
        )
        self._dead_letter_script = self._redis.register_script(_DEAD_LETTER_LUA)
        self._identity = self._where()
        self._cursor = "0-0"
        # Visibility timeout each in-flight entry was received with, for nack's delay.
        self._leases: dict[str, float] = {}
        self._group_ready = False
        # Set when a call lost the connection: the next receive looks for entries a lost
        # reply left pending on this consumer.
        self._contact_lost = False
        try:
            self._ensure_group()
        except QueueError as exc:
            if not isinstance(exc.__cause__, redis_lib.ConnectionError | redis_lib.TimeoutError):
                raise
            # The server is down: the group is created by the first receive that reaches
            # it (a consumer started during an outage waits instead of crashing).
            log.warning("queue %s: %s; the consumer group is created later", name, exc)

    @classmethod
    def from_url(cls, url: str, *, name: str = "checks", max_attempts: int = 5) -> RedisQueue:
        """Open ``redis://host:port/db?stream=...&group=...&consumer=...``.

        Other query parameters are passed on to ``redis.Redis.from_url``.
        """
        parts = urlsplit(url)
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query):
            if key in {"stream", "group", "consumer"}:
                ours[key] = value
            else:
                theirs.append((key, value))
        conn_url = urlunsplit(parts._replace(query=urlencode(theirs)))
        return cls(
            conn_url,
            name=name,
            stream=ours.get("stream"),
            group=ours.get("group", DEFAULT_GROUP),
            consumer=ours.get("consumer"),
            max_attempts=max_attempts,
        )

    @property
    def identity(self) -> str:
        """``redis:<host>:<port>/<db>#<stream>#<group>`` (``redis:<socket path>/<db>#...``
        on a Unix socket), read from the client's connection settings (a client passed
        in included), never its password."""
        return self._identity

    def _where(self) -> str:
        try:
            kw = self._redis.get_connection_kwargs()
        except AttributeError:  # not a redis.Redis: nothing known of where it connects
            kw = {}
        where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        return f"redis:{where}/{kw.get('db', 0)}#{self.stream}#{self.group}"

    # -- plumbing ------------------------------------------------------------------------
    @property
    def _redis(self) -> Any:
        # Typed as Any: redis-py's overloaded response types do not narrow with
        # decode_responses=True, and every reply is converted explicitly below.
        if self._r is None:
            raise QueueError(f"queue {self.name!r} on {self.stream} is closed")
        return self._r

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn redis-py errors into QueueError, recreating a group deleted under us."""
        try:
            yield
        except self._redis_errors as exc:
            if isinstance(exc, self._lost_errors):
                self._contact_lost = True
            if self._no_group(exc):
                # The stream was purged, or the server restarted without its data:
                # recreate so the next call works.
                self._group_lost()
                self._ensure_group()
            raise QueueError(
                f"Redis queue {self.stream} ({self._safe_url()}): {what}: {exc}"
            ) from exc

    def _no_group(self, exc: BaseException) -> bool:
        return isinstance(exc, self._response_error) and "NOGROUP" in str(exc)

    def _group_lost(self) -> None:
        """Forget what this instance knew of the old group's entries."""
        if self._group_ready:
            log.warning(
                "queue %s: consumer group %s on %s is gone (stream deleted, or the server "
                "restarted without its data): recreating it; unacked messages it held are "
                "lost with it",
                self.name,
                self.group,
                self.stream,
            )
        self._group_ready = False
        self._leases.clear()
        self._cursor = "0-0"

    @contextmanager
    def _entries_guard(self, what: str, ids: list[str]) -> Iterator[None]:
        """Like :meth:`_guard` for a call on received entries: when their group is gone
        (``NOGROUP``), so are they, and the call is a no-op."""
        try:
            with self._guard(what):
                yield
        except QueueError as exc:
            if not self._no_group(exc.__cause__ or exc):
                raise
            log.warning(
                "queue %s: %s of %d entr%s skipped: they went with the consumer group",
                self.name,
                what,
                len(ids),
                "y" if len(ids) == 1 else "ies",
            )
            for i in ids:
                self._leases.pop(i, None)

    def _safe_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def _ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except self._response_error as exc:
            if "BUSYGROUP" not in str(exc):
                raise QueueError(
                    f"cannot create group {self.group} on {self.stream}: {exc}"
                ) from exc
        except self._redis_errors as exc:
            raise QueueError(f"Redis at {self._safe_url()} is unreachable: {exc}") from exc
        self._group_ready = True

    def _move_to_dlq(self, entry_id: str, raw: str, reason: str, attempts: int) -> bool:
        done = self._dead_letter_script(
            keys=[self.stream, self.dlq, self._errors_key],
            args=[self.group, entry_id, raw, reason, attempts, time.time()],
        )
        self._leases.pop(entry_id, None)
        if done:
            self._counted_dead_letter(reason)
        return bool(done)

    def _idle_for(self, entry_id: str, delay: float) -> int:
        """Idle time (ms) that makes a pending entry claimable ``delay`` s from now."""
        vt = self._leases.pop(entry_id, 30.0)
        return _IDLE_NOW_MS if delay <= 0 else max(0, math.floor((vt - delay) * 1000))

    # -- producing -----------------------------------------------------------------------
    def send(self, body: dict[str, Any] | str) -> str:
        """Append one message to the stream; return its entry id."""
        raw = encode_body(body)
        with self._guard("send"):
            return str(self._redis.xadd(self.stream, {"body": raw}))

    def send_batch(self, bodies: Iterable[dict[str, Any] | str]) -> list[str]:
        """Append many messages, pipelined 500 per round trip; return their entry ids."""
        raws = [encode_body(b) for b in bodies]
        ids: list[str] = []
        with self._guard("send_batch"):
            for start in range(0, len(raws), _SEND_CHUNK):
                pipe = self._redis.pipeline(transaction=False)
                for raw in raws[start : start + _SEND_CHUNK]:
                    pipe.xadd(self.stream, {"body": raw})
                ids.extend(str(i) for i in pipe.execute())
        return ids

    # -- consuming -----------------------------------------------------------------------
    def _receive(
        self, max_messages: int, visibility_timeout: float, deadline: float
    ) -> list[Message]:
        """Claim expired entries, then read new ones; block until ``deadline``."""
        if not self._group_ready:
            self._ensure_group()
        for attempt in range(2):
            try:
                with self._guard("receive"):
                    if self._contact_lost:
                        self._reclaim_orphans()
                    while True:
                        remaining = deadline - time.monotonic()
                        block = min(remaining, _BLOCK_SLICE) if remaining > 0 else 0.0
                        got, dead = self._receive_once(max_messages, visibility_timeout, block)
                        if got:
                            return got
                        if not dead and deadline - time.monotonic() <= 0:
                            return []
            except QueueError as exc:
                # The group went (and _guard recreated it): read again at once.
                if attempt or not self._no_group(exc.__cause__ or exc):
                    raise
        return []

    def _reclaim_orphans(self) -> None:
        """Make the entries pending on this consumer that it does not hold claimable now,
        their delivery undone (a read whose reply was lost delivered them to nobody)."""
        r = self._redis
        rows = r.xpending_range(self.stream, self.group, "-", "+", 10_000, self.consumer)
        orphans = [
            (str(row["message_id"]), int(row["times_delivered"]))
            for row in rows
            if str(row["message_id"]) not in self._leases
        ]
        if orphans:
            pipe = r.pipeline(transaction=False)
            for entry_id, delivered in orphans:
                pipe.xclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    0,
                    [entry_id],
                    idle=_IDLE_NOW_MS,
                    retrycount=max(0, delivered - 1),
                    justid=True,
                )
            pipe.execute()
            self._cursor = "0-0"
            log.warning(
                "queue %s: %d entr%s delivered to this consumer before the connection broke "
                "handed back",
                self.name,
                len(orphans),
                "y" if len(orphans) == 1 else "ies",
            )
        self._contact_lost = False

    def _receive_once(
        self, limit: int, visibility_timeout: float, block: float
    ) -> tuple[list[Message], int]:
        r = self._redis
        min_idle = max(0, int(visibility_timeout * 1000))
        entries: list[tuple[str, dict[str, str], int]] = []

        claimed: list[tuple[str, dict[str, str]]] = []
        # The cursor walks the pending list across calls instead of rescanning it from the
        # start each time; "0-0" means the scan wrapped around. If it started midway and
        # came up short, one more pass from the start covers the entries before it.
        for _ in range(2):
            started = self._cursor
            cursor, batch, *_ = r.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle,
                start_id=started,
                count=limit - len(claimed),
            )
            self._cursor = str(cursor)
            # Redis 6.2 reports entries deleted from the stream as nil; 7 leaves them out.
            claimed.extend((str(i), f) for i, f in batch if f is not None)
            if len(claimed) >= limit or started == "0-0":
                break
        if claimed:
            ids = [i for i, _ in claimed]
            pipe = r.pipeline(transaction=False)
            for entry_id in ids:
                pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
            # Read and clear the last nack reasons: one recorded now belongs to the previous
            # delivery, and this delivery's own failure (if any) will record a new one.
            pipe.hmget(self._errors_key, ids)
            pipe.hdel(self._errors_key, *ids)
            *pending, last_errors, _ = pipe.execute()
            for (entry_id, fields), info in zip(claimed, pending, strict=True):
                count = int(info[0]["times_delivered"]) if info else 1
                entries.append((entry_id, fields, count))
        else:
            last_errors = []

        if len(entries) < limit:
            block_ms = max(1, int(block * 1000)) if block > 0 and not entries else None
            resp = r.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=limit - len(entries),
                block=block_ms,
            )
            for _stream, items in resp or []:
                for entry_id, fields in items:
                    entries.append((str(entry_id), fields, 1))
                    last_errors.append(None)

        out: list[Message] = []
        dead = 0
        for (entry_id, fields, attempts), last_error in zip(entries, last_errors, strict=True):
            raw = fields["body"] if "body" in fields else json.dumps(fields)
            # Redelivered with no reason on record: the previous lease simply ran out.
            verdict = self._verdict(attempts, raw, last_error)
            if isinstance(verdict, str):
                self._move_to_dlq(entry_id, raw, verdict, attempts)
                dead += 1
                continue
            self._leases[entry_id] = visibility_timeout
            out.append(Message(entry_id, verdict, attempts, raw, key=entry_id))
        return out, dead

    def ack(self, msg: Message) -> None:
        """Acknowledge and delete the entry."""
        self.ack_many([msg])

    def ack_many(self, msgs: Iterable[Message]) -> None:
        """Acknowledge and delete several entries in one round trip."""
        ids = [m.id for m in msgs]
        if not ids:
            return
        with self._entries_guard("ack", ids):
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
            pipe.hdel(self._errors_key, *ids)
            pipe.execute()
        for i in ids:
            self._leases.pop(i, None)

    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None:
        """Leave the entry pending with its idle time reset so it is claimed after ``delay``."""
        reason = reason or "nacked"
        with self._entries_guard("nack", [msg.id]):
            if msg.attempts >= self.max_attempts:
                self._move_to_dlq(msg.id, msg.raw, max_attempts_reason(reason), msg.attempts)
                return
            idle = self._idle_for(msg.id, delay)
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._errors_key, msg.id, reason)
            pipe.xclaim(self.stream, self.group, self.consumer, 0, [msg.id], idle=idle, justid=True)
            _, claimed = pipe.execute()
            if not claimed:
                log.warning("queue %s: nack of %s after it was acked", self.name, msg.id)
                self._redis.hdel(self._errors_key, msg.id)

    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int:
        """Leave the entries pending, claimable after ``delay``, delivery counters set back."""
        todo = list(msgs)
        if not todo:
            return 0
        claimed: list[Any] = []
        with self._entries_guard("release", [m.id for m in todo]):
            pipe = self._redis.pipeline(transaction=True)
            for msg in todo:
                # RETRYCOUNT sets the counter the next claim increments: that claim then
                # sees the attempts this delivery had. JUSTID leaves it unchanged here.
                pipe.xclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    0,
                    [msg.id],
                    idle=self._idle_for(msg.id, delay),
                    retrycount=max(0, msg.attempts - 1),
                    justid=True,
                )
            claimed = pipe.execute()
        done = sum(1 for c in claimed if c)
        if done < len(todo):
            log.warning(
                "queue %s: %d release(s) after the entry was acked", self.name, len(todo) - done
            )
        return done

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Move the entry to ``<stream>:dlq`` now."""
        with self._entries_guard("dead_letter", [msg.id]):
            if not self._move_to_dlq(msg.id, msg.raw, reason, msg.attempts):
                log.warning("queue %s: dead_letter of %s after it was acked", self.name, msg.id)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` entries of ``<stream>:dlq``, oldest first."""
        with self._guard("dead_letters"):
            rows = self._redis.xrange(self.dlq, "-", "+", count=int(limit))
        return [
            dead_letter_record(
                f.get("id", ""),
                f.get("body", ""),
                f.get("reason", ""),
                int(f.get("attempts", 0)),
                float(f.get("failed_at", 0.0)),
            )
            for _dlq_id, f in rows
        ]

    # -- housekeeping --------------------------------------------------------------------
    def ping(self) -> None:
        """Check that the server takes a write now, not only a read: a field set and
        deleted again in the queue's hash of nack reasons (commands the queue needs
        anyway, so a user whose ACL allows the queue allows them). A server out of
        memory (``maxmemory`` with
        ``noeviction``), refusing writes after a failed save (``MISCONF``) or a read-only
        replica answers ``XLEN`` while it refuses every receive and ack: a consumer that
        judged it by its depth resumed, failed, paused again, over and over, and gave up
        the acks it owed (their work was done again after the lease).

        Raises
        ------
        QueueError
            The server cannot take a write now.
        """
        with self._guard("ping"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._errors_key, _PING_FIELD, "1")
            pipe.hdel(self._errors_key, _PING_FIELD)
            pipe.execute()

    def depth(self) -> int:
        """Return the stream length: acked entries are deleted, so this is what is left."""
        with self._guard("depth"):
            return int(self._redis.xlen(self.stream))

    def purge(self) -> None:
        """Delete the stream, its dead letters and nack reasons, and recreate the group."""
        with self._guard("purge"):
            self._redis.delete(self.stream, self.dlq, self._errors_key)
        self._leases.clear()
        self._cursor = "0-0"
        self._ensure_group()

    def remove(self) -> None:
        """Delete the queue for good: the stream with its consumer group, its dead letters
        and nack reasons; then disconnect. For throwaway queues (benchmarks, tests)."""
        with self._guard("remove"):
            self._redis.delete(self.stream, self.dlq, self._errors_key)
        self._leases.clear()
        if self._r is not None and self._owns_client:
            self._r.close()
        self._r = None

    def close(self) -> None:
        """Remove this consumer from the group if it holds nothing, and disconnect."""
        if self._r is None:
            return
        try:
            # A consumer with pending entries must stay: deleting it would drop them from
            # the pending list, and nobody could claim them any more.
            info = self._r.xpending_range(self.stream, self.group, "-", "+", 1, self.consumer)
            if not info:
                self._r.xgroup_delconsumer(self.stream, self.group, self.consumer)
        except self._redis_errors as exc:
            log.debug("queue %s: could not remove consumer %s: %s", self.name, self.consumer, exc)
        finally:
            if self._owns_client:
                self._r.close()
            self._r = None

    def __repr__(self) -> str:
        return (
            f"RedisQueue(url={self._safe_url()!r}, stream={self.stream!r}, "
            f"group={self.group!r}, consumer={self.consumer!r})"
        )
