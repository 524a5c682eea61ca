"""Redis Streams queue on the real server: dead consumers, consumer names, URLs.

Skipped when Redis is unreachable and ``CI`` is unset; under ``CI=true`` a missing server
fails these tests (see ``conftest.py``).
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid

import pytest
import redis

from fraudlens.queues import RedisQueue, open_queue

pytestmark = pytest.mark.services


def test_a_live_consumer_claims_the_pending_messages_of_a_dead_one(
    redis_url: str, redis_stream: str
) -> None:
    dead = RedisQueue(redis_url, stream=redis_stream, consumer="worker-that-dies")
    live = RedisQueue(redis_url, stream=redis_stream)
    dead.send_batch([{"n": i} for i in range(5)])

    taken = dead.receive(10, visibility_timeout=30)
    assert sorted(m.body["n"] for m in taken) == list(range(5))
    # The dead consumer never acks. Its entries are pending under its name...
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    pending = r.xpending_range(redis_stream, live.group, "-", "+", 10)
    assert {p["consumer"] for p in pending} == {"worker-that-dies"}
    # ...and not visible to the live consumer before they have been idle long enough.
    assert live.receive(10, visibility_timeout=0.3) == []

    time.sleep(0.4)
    claimed = live.receive(10, visibility_timeout=0.3)
    assert sorted(m.body["n"] for m in claimed) == list(range(5))
    assert all(m.attempts == 2 for m in claimed)
    pending = r.xpending_range(redis_stream, live.group, "-", "+", 10)
    assert {p["consumer"] for p in pending} == {live.consumer}

    live.ack_many(claimed)
    assert live.depth() == 0
    assert r.xpending(redis_stream, live.group)["pending"] == 0
    # The dead consumer's late ack is harmless.
    dead.ack_many(taken)
    assert live.depth() == 0
    r.close()
    live.close()
    dead.close()


def test_each_instance_has_its_own_consumer_name(redis_url: str, redis_stream: str) -> None:
    a = RedisQueue(redis_url, stream=redis_stream)
    b = RedisQueue(redis_url, stream=redis_stream)
    assert a.consumer != b.consumer
    pattern = rf"{re.escape(socket.gethostname())}-{os.getpid()}-[0-9a-f]{{6}}"
    assert re.fullmatch(pattern, a.consumer)
    # Two consumers share the work: each new entry goes to exactly one of them.
    a.send_batch([{"n": i} for i in range(4)])
    got_a = a.receive(2)
    got_b = b.receive(10)
    assert len(got_a) == 2
    assert len(got_b) == 2
    assert {m.id for m in got_a}.isdisjoint(m.id for m in got_b)
    a.ack_many(got_a)
    b.ack_many(got_b)
    a.close()
    b.close()


def test_close_keeps_a_consumer_that_still_holds_messages(
    redis_url: str, redis_stream: str
) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    idle = RedisQueue(redis_url, stream=redis_stream)
    busy = RedisQueue(redis_url, stream=redis_stream)
    busy.send_batch([{"n": 1}, {"n": 2}])
    assert len(busy.receive(1)) == 1
    idle.ack_many(idle.receive(1))  # done with its work, holds nothing
    names = {c["name"] for c in r.xinfo_consumers(redis_stream, idle.group)}
    assert {idle.consumer, busy.consumer} <= names

    idle.close()
    busy.close()
    names = {c["name"] for c in r.xinfo_consumers(redis_stream, busy.group)}
    # Deleting `busy` would drop its pending entry for good; it must stay claimable.
    assert idle.consumer not in names
    assert busy.consumer in names
    r.close()


def test_open_queue_redis_url_options(redis_url: str, redis_stream: str) -> None:
    url = f"{redis_url}?stream={redis_stream}&group=scorers&consumer=w1&socket_timeout=5"
    q = open_queue(url, max_attempts=3)
    assert isinstance(q, RedisQueue)
    assert (q.stream, q.group, q.consumer, q.max_attempts) == (redis_stream, "scorers", "w1", 3)
    q.send({"n": 1})
    (m,) = q.receive(1)
    q.ack(m)
    q.close()

    name = f"alerts-{uuid.uuid4().hex[:8]}"
    default = open_queue(redis_url, name=name)
    assert isinstance(default, RedisQueue)
    assert default.stream == f"fraudlens:{name}"
    assert default.dlq == f"fraudlens:{name}:dlq"
    default.close()
    r = redis.Redis.from_url(redis_url)
    r.delete(default.stream)
    r.close()


def test_remove_deletes_every_key_of_the_queue(redis_url: str, redis_stream: str) -> None:
    q = RedisQueue(redis_url, stream=redis_stream, max_attempts=1)
    q.send_batch([{"n": i} for i in range(3)])
    (msg,) = q.receive(1)
    q.nack(msg, reason="bad")  # the last attempt: a dead letter
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert r.exists(redis_stream, f"{redis_stream}:dlq") == 2
    q.remove()
    assert r.exists(redis_stream, f"{redis_stream}:dlq", f"{redis_stream}:errors") == 0
    q.close()  # still safe after remove
    r.close()


def test_a_redis_server_that_never_answers_is_an_outage_not_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that takes the connection and then says nothing (a frozen process: its
    kernel still accepts) had held every command for ever, so the consumer hung instead
    of pausing for the outage. Commands now time out (15 s by default; 1 s here)."""
    from _services import error_within, silent_server  # type: ignore[import-not-found]
    from fraudlens.errors import QueueError
    from fraudlens.queues import redis as redis_queue

    monkeypatch.setattr(redis_queue, "_SOCKET_TIMEOUT_S", 1.0)
    monkeypatch.setattr(redis_queue, "_CONNECT_TIMEOUT_S", 1.0)
    with silent_server() as port:
        said = error_within(lambda: RedisQueue.from_url(f"redis://127.0.0.1:{port}/0").ping(), 60)
    assert isinstance(said, QueueError), said
    assert "Timeout" in str(said) or "timed out" in str(said), said
