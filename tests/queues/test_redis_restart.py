"""The Redis queue when its server goes away: a private ``redis-server`` (its own port and
folder, the machine's server is never touched) is stopped and started again.

- with an append-only file, a restart keeps the stream, the group and the pending entries;
- without persistence, a restart loses them: the queue recreates its consumer group by
  itself, and calls on entries that went with it are no-ops instead of errors;
- a queue opened while the server is down waits for it instead of failing;
- the consumer loop owes the ack a queue outage made fail and makes it once the server is
  back: the batch is neither left in the queue nor worked twice.

Skipped when ``redis-server`` is missing (a failure under ``CI``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest

from _services import bench_module, unavailable  # type: ignore[import-not-found]
from fraudlens.consume import BatchResult, Consumer
from fraudlens.errors import QueueError
from fraudlens.queues import Message, RedisQueue

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def outage() -> ModuleType:
    return bench_module("outage")


def _server(outage: ModuleType, *, persistent: bool) -> Any:
    try:
        return outage.PrivateRedis(persistent=persistent)
    except RuntimeError as exc:
        unavailable(f"cannot run a private Redis server: {exc}")


def _serving(outage: ModuleType, *, persistent: bool) -> Iterator[Any]:
    server = _server(outage, persistent=persistent)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def volatile(outage: ModuleType) -> Iterator[Any]:
    yield from _serving(outage, persistent=False)


@pytest.fixture
def durable(outage: ModuleType) -> Iterator[Any]:
    yield from _serving(outage, persistent=True)


def _queue(server: Any, **kw: Any) -> RedisQueue:
    return RedisQueue(server.url, stream=f"restart-{uuid.uuid4().hex}", **kw)


def test_a_restart_with_an_append_only_file_keeps_pending_entries(durable: Any) -> None:
    durable.start()
    q = _queue(durable)
    q.send_batch([{"n": i} for i in range(5)])
    got = q.receive(3, visibility_timeout=30)
    assert len(got) == 3
    durable.stop("term")
    with pytest.raises(QueueError, match=r"Connection refused|connecting"):
        q.depth()
    durable.start()
    assert q.depth() == 5
    q.ack_many(got)  # the same entries, still pending after the restart
    rest = q.receive(5, visibility_timeout=30)
    assert sorted(m.body["n"] for m in rest) == [3, 4]
    q.ack_many(rest)
    assert q.depth() == 0
    q.close()


def test_a_restart_without_persistence_recreates_the_group(volatile: Any) -> None:
    volatile.start()
    q = _queue(volatile)
    q.send_batch([{"n": i} for i in range(4)])
    a, b, c, d = q.receive(4, visibility_timeout=30)
    volatile.stop("term")
    volatile.start()
    # Everything the server held is gone, the entries in hand included: calls on them
    # are no-ops, not errors (the old group answered NOGROUP to each).
    assert q.depth() == 0
    q.ack_many([a])
    q.nack(b, reason="retry", delay=0)
    assert q.release([c]) == 0
    q.dead_letter(d, "bad")
    assert q.dead_letters() == []
    # Messages sent after the restart are delivered: the group came back by itself.
    q.send({"n": 10})
    got = q.receive(10, visibility_timeout=30, wait=1)
    assert [(m.body["n"], m.attempts) for m in got] == [(10, 1)]
    q.ack_many(got)
    assert q.depth() == 0
    q.close()


def test_messages_sent_before_the_first_receive_after_a_restart_are_delivered(
    volatile: Any,
) -> None:
    """A producer may re-send before any consumer recreated the group (the stream then
    exists without it): the group is recreated from the stream's start."""
    volatile.start()
    consumer = _queue(volatile)
    producer = RedisQueue(volatile.url, stream=consumer.stream)
    consumer.send({"n": 0})
    assert len(consumer.receive(1, visibility_timeout=30)) == 1
    volatile.stop("term")
    volatile.start()
    producer.send_batch([{"n": i} for i in range(1, 4)])
    got = consumer.receive(10, visibility_timeout=30, wait=1)
    assert sorted(m.body["n"] for m in got) == [1, 2, 3]
    consumer.ack_many(got)
    assert consumer.depth() == 0
    producer.close()
    consumer.close()


def test_a_queue_opened_while_the_server_is_down_waits_for_it(volatile: Any) -> None:
    q = _queue(volatile)  # nothing listens on the port yet: no error here
    with pytest.raises(QueueError, match=r"unreachable|Connection refused|connecting"):
        q.receive(1, visibility_timeout=30)
    volatile.start()
    q.send({"n": 1})
    got = q.receive(1, visibility_timeout=30, wait=1)
    assert [m.body for m in got] == [{"n": 1}]
    q.ack_many(got)
    q.close()


class _StopsTheServer:
    """Works every message once; the first batch stops the server before it returns, so
    its ack fails. Counts deliveries per message."""

    def __init__(self, server: Any, down_for: float) -> None:
        self.server = server
        self.down_for = down_for
        self.seen: list[int] = []
        self.restarted = threading.Event()

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        self.seen.extend(int(m.body["n"]) for m in msgs)
        if len(self.seen) == len(msgs):  # the first batch
            self.server.stop("term")
            timer = threading.Timer(self.down_for, self._restart)
            timer.daemon = True
            timer.start()
        return BatchResult(done=list(msgs))

    def _restart(self) -> None:
        self.server.start()
        self.restarted.set()

    def probe(self) -> None:
        return None


def test_the_consumer_acks_after_a_queue_outage_what_it_had_done(durable: Any) -> None:
    """The ack a stopped server refused is owed and made once it is back: the batch is
    not left in the queue until its lease runs out (30 s here, past the idle exit), and
    no message is worked twice."""
    durable.start()
    q = _queue(durable)
    q.send_batch([{"n": i} for i in range(30)])
    handler = _StopsTheServer(durable, down_for=1.5)
    consumer = Consumer(
        q, handler, batch_size=10, visibility_timeout=30, wait=0.2, pause_base=0.2, pause_cap=0.5
    )
    stats = consumer.run(idle_exit=1.0)
    assert handler.restarted.is_set()
    assert sorted(handler.seen) == list(range(30))  # each once
    assert stats.processed == 30 and stats.outages == 1 and stats.dead_lettered == 0
    assert q.depth() == 0
    q.close()


def test_entries_a_lost_reply_left_pending_come_back_at_once(durable: Any) -> None:
    """A read whose reply the broken connection lost leaves its entries pending on this
    consumer, which does not hold them: after losing contact, the next receive hands them
    back unspent instead of leaving them to their lease (30 s here)."""
    durable.start()
    stream = f"restart-{uuid.uuid4().hex}"
    # Another handle with the same consumer name reads them: to ``q`` this is a read
    # whose reply never arrived.
    lost = RedisQueue(durable.url, stream=stream, consumer="c1")
    q = RedisQueue(durable.url, stream=stream, consumer="c1")
    q.send_batch([{"n": i} for i in range(3)])
    assert len(lost.receive(3, visibility_timeout=30)) == 3
    durable.stop("term")
    with pytest.raises(QueueError):
        q.depth()
    durable.start()
    got = q.receive(10, visibility_timeout=30, wait=0.5)
    assert sorted((m.body["n"], m.attempts) for m in got) == [(0, 1), (1, 1), (2, 1)]
    q.ack_many(got)
    assert q.depth() == 0
    # Entries this handle holds are not touched by that.
    q.send({"n": 3})
    held = q.receive(1, visibility_timeout=30)
    durable.stop("term")
    durable.start()
    with pytest.raises(QueueError):
        durable.stop("term")
        q.depth()
    durable.start()
    assert q.receive(1, visibility_timeout=30, wait=0.2) == []
    q.ack_many(held)
    assert q.depth() == 0
    lost.close()
    q.close()


class _FillsTheServer:
    """Works each batch; after the first one's work, before its ack, the server reaches
    ``maxmemory`` (no eviction) for ``full_for`` seconds: it answers reads and refuses
    every write (receives and acks included), as one out of memory, refusing writes
    after a failed save (MISCONF) or a read-only replica does."""

    def __init__(self, server: Any, full_for: float) -> None:
        import redis

        self.client = redis.Redis.from_url(server.url)
        self.full_for = full_for
        self.seen: list[int] = []
        self.freed = threading.Event()

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        self.seen.extend(m.body["n"] for m in msgs)
        if len(self.seen) == len(msgs):
            used = int(self.client.info("memory")["used_memory"])
            self.client.config_set("maxmemory-policy", "noeviction")
            self.client.config_set("maxmemory", str(max(1, used - 4096)))

            def free() -> None:
                self.client.config_set("maxmemory", "0")
                self.freed.set()

            threading.Timer(self.full_for, free).start()
        return BatchResult(done=list(msgs))

    def probe(self) -> None:
        return None


def test_a_server_refusing_writes_is_one_pause_and_no_ack_is_given_up(volatile: Any) -> None:
    """Redis at maxmemory for 4 s, from the first batch's work on: it answered XLEN (the
    queue's depth, what the loop judged it by) while it refused every receive and ack,
    so the loop resumed, failed, paused again (4 outages in 4 s) and gave the refused
    ack up: the batch stayed pending for its lease (30 s here, past the idle exit) and
    would have been worked again. Now the queue's ping is a write: one pause, and the
    ack made once the server takes writes."""
    volatile.start()
    q = _queue(volatile)
    q.send_batch([{"n": i} for i in range(40)])
    handler = _FillsTheServer(volatile, full_for=4.0)
    consumer = Consumer(
        q, handler, batch_size=10, visibility_timeout=30, wait=0.2, pause_base=0.2, pause_cap=0.5
    )
    stats = consumer.run(idle_exit=1.0)
    assert handler.freed.is_set()
    assert sorted(handler.seen) == list(range(40))
    assert stats.outages == 1 and stats.processed == 40 and stats.dead_lettered == 0
    assert q.depth() == 0
    q.close()
