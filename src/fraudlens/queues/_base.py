"""The queue contract every backend implements, and the helpers they share.

Delivery is *at least once*: a message stays in the queue until a consumer acks it. A
received message is leased for ``visibility_timeout`` seconds; if the consumer neither acks
nor nacks it in that time (it crashed, or is too slow) the message becomes visible again and
its delivery count goes up. When a message is about to be delivered for more than
``max_attempts`` times it is moved to the dead-letter store instead, with the reason
``"max attempts exceeded: <last reason>"``.

Malformed bodies: a message whose text is not a JSON object is never handed to a consumer.
``receive`` moves it to the dead-letter store at once with the reason
``"malformed JSON: <what is wrong>"`` (the raw text is kept), so a consumer only ever sees
``Message.body`` as a ``dict`` and cannot crash on decoding.

Handing back without spending an attempt: ``nack`` says "this delivery failed" and counts
towards ``max_attempts``. ``release`` says "I could not try": the consumer's own
dependencies (its database, its sink) are down, the message is not at fault. A released
message becomes visible again after ``delay`` seconds with the delivery undone, so an
outage of any length dead-letters nothing.

Every move to the dead-letter store an instance makes (an explicit ``dead_letter``, a
``nack`` of the last attempt, a receive that finds a message over ``max_attempts`` or
malformed) adds one to :attr:`Queue.dead_letter_count` and calls
:attr:`Queue.on_dead_letter` with the reason, so a consumer's counts can match what the
dead-letter store received.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudlens._closing import Closing
from fraudlens._echo import clip_echoes
from fraudlens._ids import id_problem
from fraudlens.errors import ConfigError, QueueError

__all__ = [
    "EXPIRED_REASON",
    "Message",
    "Queue",
    "dead_letter_record",
    "decode_body",
    "encode_body",
    "max_attempts_reason",
    "utc_iso",
]

log = logging.getLogger("fraudlens.queues")

#: Last reason recorded for a message whose lease ran out without an ack or nack.
EXPIRED_REASON = "visibility timeout expired without ack"


@dataclass(frozen=True)
class Message:
    """One delivery of a queued message.

    Attributes
    ----------
    id
        Backend handle of this delivery: SQLite row id, Redis stream entry id, or SQS
        receipt handle. Pass the whole message back to ``ack``/``nack``/``dead_letter``.
    body
        The decoded JSON object.
    attempts
        How many times the message has been delivered, this delivery included (1 = first).
    raw
        The message text exactly as stored.
    key
        The message's own id, the same in every delivery of it: the SQLite row id, the
        Redis stream entry id, the SQS MessageId (``id`` is the receipt handle there, new
        with every receive). None when the backend has none.
    """

    id: str
    body: dict[str, Any] = field(repr=False)
    attempts: int
    raw: str = field(repr=False)
    key: str | None = field(default=None, repr=False)


def encode_body(body: dict[str, Any] | str) -> str:
    """Return the text stored for ``body``.

    A ``dict`` is serialised as strict JSON (no NaN or infinity, which other languages'
    parsers reject). A ``str`` is stored unchanged, so text from an outside producer can be
    forwarded as is; whether it is a JSON object is checked when it is received.

    Raises
    ------
    QueueError
        If ``body`` is neither a dict nor a str, or the dict cannot be written as JSON.
    """
    if isinstance(body, str):
        return body
    if not isinstance(body, dict):
        raise QueueError(f"message body must be a dict or str, not {type(body).__name__}")
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"message body is not JSON-serialisable: {exc}") from exc


def decode_body(raw: str) -> tuple[dict[str, Any], str | None]:
    """Parse ``raw`` as a JSON object.

    Returns
    -------
    (body, error)
        ``body`` is the object (``{}`` when parsing fails); ``error`` is ``None`` on success,
        else a short description such as ``"malformed JSON: Expecting value (char 0)"``.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        # A body nested deeper than the parser's stack: a poison message like any other
        # malformed one, not a crash of every consumer that receives it.
        return {}, "malformed JSON: nested too deeply"
    except ValueError as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        pos = f" (char {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        return {}, f"malformed JSON: {detail}{pos}"
    if not isinstance(value, dict):
        return {}, f"malformed JSON: expected an object, got {type(value).__name__}"
    return value, None


def max_attempts_reason(last_reason: str | None) -> str:
    """Return the dead-letter reason for a message that ran out of attempts."""
    return f"max attempts exceeded: {last_reason or EXPIRED_REASON}"


def utc_iso(ts: float) -> str:
    """Return the Unix time ``ts`` as an ISO-8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def dead_letter_record(
    message_id: str, raw: str, reason: str, attempts: int, failed_at: float
) -> dict[str, Any]:
    """One entry of :meth:`Queue.dead_letters`, the same in every backend.

    ``failed_at`` is Unix time; ``body`` is the decoded object, or None when ``raw`` is
    not a JSON object (the reason then says why).
    """
    body, error = decode_body(raw)
    return {
        "id": message_id,
        "body": None if error else body,
        "raw": raw,
        "reason": reason,
        "attempts": int(attempts),
        "failed_at": utc_iso(failed_at),
    }


#: Longest queue name (SQS allows 80 characters).
_MAX_NAME = 80


class Queue(Closing, ABC):
    """A work queue with leases, retries and a dead-letter store.

    Parameters
    ----------
    name
        Logical queue name (``"checks"`` by default in :func:`fraudlens.queues.open_queue`).
    max_attempts
        Deliveries allowed per message before it is dead-lettered (at least 1).

    Attributes
    ----------
    dead_letter_count
        Messages this instance moved to the dead-letter store, whatever the cause.
    on_dead_letter
        Called with the reason after each such move (for metrics), or None.

    Notes
    -----
    Instances can be used as context managers; leaving the block calls :meth:`close`.
    """

    max_attempts: int = 5

    def __init__(self, name: str, *, max_attempts: int = 5) -> None:
        # A name is shown in messages and logs and stored in the queue's tables: the id
        # rule (1 to 80 characters, no control or invisible character; SQS allows 80).
        # `enqueue --queue-name` had taken ESC sequences and 1,000 characters and printed
        # them raw in "queued 1 check on ... (NAME)".
        problem = id_problem(str(name), max_length=_MAX_NAME) if isinstance(name, str) else None
        if not isinstance(name, str) or problem is not None:
            raise ConfigError(f"queue name {clip_echoes(repr(name))} {problem or 'is not text'}")
        if int(max_attempts) < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        self.name = name
        self.max_attempts = int(max_attempts)
        self.dead_letter_count = 0
        self.on_dead_letter: Callable[[str], None] | None = None

    @property
    def identity(self) -> str:
        """What names this queue: its backend, where it lives and its name, without
        credentials (``sqlite:/abs/path.db#name``, ``redis:host:port/db#stream#group``,
        ``sqs:<queue URL>``). The same queue gives the same text in every process and
        after a restart (the card processor keys its sink checkpoint by it)."""
        return f"{type(self).__name__}#{self.name}"

    @property
    def incarnation(self) -> str | None:
        """What tells this copy of the queue's storage from another at the same place
        (None when the backend has no such thing): a SQLite queue file deleted and made
        again has a new one, and its row ids (:attr:`Message.key`) start over, naming
        other messages than the old file's. The card processor keeps it with the
        message ids in its sink checkpoint and ignores ids of another incarnation."""
        return None

    def _counted_dead_letter(self, reason: str) -> None:
        """Record one move to the dead-letter store (call after it is committed)."""
        self.dead_letter_count += 1
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(reason)
            except Exception:  # a metrics hook must never undo a committed move
                log.exception("queue %s: on_dead_letter hook failed", self.name)

    # -- producing -----------------------------------------------------------------------
    @abstractmethod
    def send(self, body: dict[str, Any] | str) -> str:
        """Enqueue one message and return its backend id.

        Parameters
        ----------
        body
            A JSON-serialisable dict, or text that is stored unchanged.
        """

    def send_batch(self, bodies: Iterable[dict[str, Any] | str]) -> list[str]:
        """Enqueue many messages; return their ids in order.

        Backends override this with one round trip (or transaction) per chunk.
        """
        return [self.send(b) for b in bodies]

    # -- consuming -----------------------------------------------------------------------
    def receive(
        self, max_messages: int = 10, *, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        """Lease up to ``max_messages`` visible messages.

        Parameters
        ----------
        max_messages
            Upper bound on the number of messages returned.
        visibility_timeout
            Seconds the messages stay hidden from other consumers unless acked or nacked.
        wait
            Seconds to wait for a message when none is visible (0 returns at once).

        Returns
        -------
        list of Message
            Possibly empty. Messages over ``max_attempts`` and malformed bodies are
            dead-lettered here and not returned.
        """
        if max_messages < 1:
            return []
        return self._receive(max_messages, visibility_timeout, time.monotonic() + max(0.0, wait))

    @abstractmethod
    def _receive(
        self, max_messages: int, visibility_timeout: float, deadline: float
    ) -> list[Message]:
        """The backend's :meth:`receive`: at least one message wanted, waiting for one
        until ``deadline`` (a :func:`time.monotonic` time) at the latest."""

    @abstractmethod
    def ack(self, msg: Message) -> None:
        """Delete a processed message for good."""

    def ack_many(self, msgs: Iterable[Message]) -> None:
        """Ack several messages (one transaction or round trip where the backend allows)."""
        for m in msgs:
            self.ack(m)

    @abstractmethod
    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None:
        """Give a message back for another attempt.

        The message becomes visible again after ``delay`` seconds. If it has already been
        delivered ``max_attempts`` times it is dead-lettered with the reason
        ``"max attempts exceeded: <reason>"`` instead.
        """

    @abstractmethod
    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int:
        """Hand leased messages back without spending a delivery attempt.

        For failures that are not the messages' fault (the consumer's store or sink is
        down): each message becomes visible again after ``delay`` seconds, and its next
        delivery has the ``attempts`` this one had. Messages whose lease was already lost
        are left alone.

        Returns
        -------
        int
            Messages handed back.
        """

    @abstractmethod
    def dead_letter(self, msg: Message, reason: str) -> None:
        """Move a message to the dead-letter store now, recording ``reason``."""

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` dead letters, oldest first.

        Each is a dict with keys ``id`` (the message's id in the source queue), ``body``
        (the object, or ``None`` if the text was not a JSON object), ``raw``, ``reason``,
        ``attempts`` and ``failed_at`` (ISO-8601 UTC). ``attempts`` is the delivery count
        when the message was moved; for "max attempts exceeded" at receive time it counts
        the refused delivery too, so it is ``max_attempts + 1``.
        """

    # -- housekeeping --------------------------------------------------------------------
    def ping(self) -> None:
        """Check that the queue can be used now; a consumer waiting out a queue outage
        calls this to learn when to resume.

        A backend whose writes can fail while it still answers reads (a SQLite file on a
        full disk, or whose write lock another process holds) checks that a write could
        go through too; by default, answering :meth:`depth` is enough.

        Raises
        ------
        QueueError
            The queue cannot be used now.
        """
        self.depth()

    @abstractmethod
    def depth(self) -> int:
        """Return the number of messages not yet acked: visible plus in flight."""

    @abstractmethod
    def purge(self) -> None:
        """Delete every message and every dead letter of this queue."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. The instance cannot be used afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, max_attempts={self.max_attempts})"

    # -- shared rule ---------------------------------------------------------------------
    def _verdict(self, attempts: int, raw: str, last_error: str | None) -> str | dict[str, Any]:
        """Decide what a receive does with a delivery: the body to hand out, or a DLQ reason.

        ``attempts`` is the delivery count including the delivery being decided.
        """
        if attempts > self.max_attempts:
            return max_attempts_reason(last_error)
        body, error = decode_body(raw)
        if error is not None:
            return error
        return body
