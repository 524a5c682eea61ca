"""The Queue contract, run against every backend: SQLite, Redis and SQS.

SQLite runs on a temporary file and Redis on the real server (see ``conftest.py``). SQS is
tested against moto's SQS emulator served over HTTP on 127.0.0.1, because no AWS account is
reachable from CI: it checks that the adapter drives the SQS API correctly (batching,
visibility timeouts, receive counts, the explicit dead-letter queue), not AWS itself.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from fraudlens.errors import QueueError
from fraudlens.queues import Message, Queue

QueueFactory = Callable[..., Queue]


def drain(
    q: Queue, n: int, *, visibility_timeout: float = 30.0, timeout: float = 5.0
) -> list[Message]:
    """Receive until ``n`` messages arrived (SQS may hand out fewer per call than asked)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        # Poll without long-polling: moto's emulated long poll waits for a full batch.
        batch = q.receive(min(10, n - len(got)), visibility_timeout=visibility_timeout)
        got += batch
        if not batch:
            time.sleep(0.05)
    return got


def test_send_receive_ack(make_queue: QueueFactory) -> None:
    q = make_queue()
    bodies = [{"account_id": f"A{i}", "n": i, "note": "käse"} for i in range(3)]
    ids = [q.send(b) for b in bodies]
    assert len(set(ids)) == 3
    assert q.depth() == 3

    got = drain(q, 3)
    assert sorted((m.body for m in got), key=lambda b: b["n"]) == bodies
    assert all(m.attempts == 1 for m in got)
    assert all(isinstance(m.raw, str) and m.raw for m in got)
    assert q.depth() == 3  # in flight still counts until acked

    for m in got:
        q.ack(m)
    assert q.depth() == 0
    assert q.receive(10, wait=0.0) == []
    assert q.dead_letters() == []


def test_expired_lease_is_redelivered_with_attempts_incremented(
    make_queue: QueueFactory, lease: float
) -> None:
    producer, consumer = make_queue(), make_queue()
    producer.send({"account_id": "A1"})

    (first,) = drain(consumer, 1, visibility_timeout=lease)
    assert first.attempts == 1
    # Leased: nobody else sees it, the consumer "crashes" and never acks.
    assert producer.receive(10, visibility_timeout=lease) == []

    time.sleep(lease + 0.15)
    # Same timeout as the first consumer: Redis judges expiry by the claimer's timeout.
    (second,) = drain(producer, 1, visibility_timeout=lease)
    assert second.body == {"account_id": "A1"}
    assert second.attempts == 2
    # The message's own key is the same in both deliveries (SQS: the MessageId, while the
    # receipt handle in ``id`` changes), and differs from another message's.
    assert second.key is not None and second.key == first.key
    producer.send({"account_id": "A2"})
    (other,) = drain(producer, 1, visibility_timeout=lease)
    assert other.key not in (None, first.key)
    producer.ack_many([second, other])
    assert producer.depth() == 0


def test_nack_retries_then_dead_letters_after_max_attempts(make_queue: QueueFactory) -> None:
    q = make_queue(max_attempts=3)
    q.send({"account_id": "A7"})
    for attempt in range(1, 4):
        (msg,) = drain(q, 1)
        assert msg.attempts == attempt
        q.nack(msg, reason=f"scoring failed #{attempt}")

    assert q.receive(10) == []
    assert q.depth() == 0
    (dead,) = q.dead_letters()
    assert dead["reason"] == "max attempts exceeded: scoring failed #3"
    assert dead["body"] == {"account_id": "A7"}
    assert dead["attempts"] == 3
    assert dead["failed_at"].endswith("+00:00")


def test_expired_leases_count_towards_max_attempts(make_queue: QueueFactory, lease: float) -> None:
    q = make_queue(max_attempts=2)
    q.send({"account_id": "A9"})
    for attempt in (1, 2):
        (msg,) = drain(q, 1, visibility_timeout=lease)
        assert msg.attempts == attempt
        time.sleep(lease + 0.15)  # never acked: the lease runs out

    assert q.receive(10, visibility_timeout=lease) == []
    (dead,) = q.dead_letters()
    assert dead["reason"] == "max attempts exceeded: visibility timeout expired without ack"
    assert dead["body"] == {"account_id": "A9"}
    assert q.depth() == 0


def test_nack_with_delay_hides_the_message_for_that_long(
    make_queue: QueueFactory, lease: float
) -> None:
    delay = lease
    vt = 5 * delay
    q = make_queue()
    q.send({"account_id": "A3"})
    (msg,) = drain(q, 1, visibility_timeout=vt)
    q.nack(msg, reason="rate limited", delay=delay)

    assert q.receive(10, visibility_timeout=vt) == []
    time.sleep(delay + 0.15)
    (again,) = drain(q, 1, visibility_timeout=vt)
    assert again.body == {"account_id": "A3"}
    assert again.attempts == 2
    q.ack(again)


def test_malformed_bodies_are_dead_lettered_not_delivered(make_queue: QueueFactory) -> None:
    q = make_queue()
    q.send("this is {not json")
    q.send("[1, 2, 3]")
    q.send({"account_id": "A5"})

    got = drain(q, 1)
    got += q.receive(10)
    assert [m.body for m in got] == [{"account_id": "A5"}]
    q.ack(got[0])

    dead = {d["raw"]: d for d in q.dead_letters()}
    assert set(dead) == {"this is {not json", "[1, 2, 3]"}
    assert dead["this is {not json"]["reason"].startswith("malformed JSON: Expecting value")
    assert dead["[1, 2, 3]"]["reason"] == "malformed JSON: expected an object, got list"
    assert all(d["body"] is None for d in dead.values())
    assert q.depth() == 0


def test_a_body_nested_too_deeply_is_dead_lettered_not_a_crash(make_queue: QueueFactory) -> None:
    """json.loads raised RecursionError, which no consumer caught: a worker receiving
    such a message died, and so did every worker started after it."""
    q = make_queue()
    deep = '{"account_id": "A6", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
    q.send(deep)
    q.send({"account_id": "A7"})

    got = drain(q, 1)
    got += q.receive(10)
    assert [m.body for m in got] == [{"account_id": "A7"}]
    q.ack(got[0])
    (dead,) = q.dead_letters()
    assert dead["raw"] == deep
    assert dead["reason"] == "malformed JSON: nested too deeply"


def test_dead_letter_moves_message_immediately(make_queue: QueueFactory) -> None:
    q = make_queue()
    q.send({"account_id": "A8", "ts": "2024-01-01T00:00:00Z"})
    (msg,) = drain(q, 1)
    q.dead_letter(msg, "unknown account A8")
    assert q.depth() == 0
    assert q.receive(10) == []
    (dead,) = q.dead_letters()
    assert dead["reason"] == "unknown account A8"
    assert dead["body"] == {"account_id": "A8", "ts": "2024-01-01T00:00:00Z"}
    assert dead["attempts"] == 1


def test_depth_counts_visible_and_in_flight(make_queue: QueueFactory) -> None:
    q = make_queue()
    q.send_batch([{"i": i} for i in range(5)])
    assert q.depth() == 5
    got = drain(q, 2)
    assert len(got) == 2
    assert q.depth() == 5
    q.ack_many(got)
    assert q.depth() == 3


def test_send_batch_round_trip(make_queue: QueueFactory) -> None:
    q = make_queue()
    bodies: list[dict[str, Any]] = [{"i": i, "payload": "x" * (i % 7)} for i in range(25)]
    ids = q.send_batch(bodies)
    assert len(ids) == 25
    assert len(set(ids)) == 25
    assert q.depth() == 25

    got = drain(q, 25)
    assert sorted(m.body["i"] for m in got) == list(range(25))
    assert all(json.loads(m.raw) == m.body for m in got)
    q.ack_many(got)
    assert q.depth() == 0


def test_purge_removes_messages_and_dead_letters(make_queue: QueueFactory) -> None:
    q = make_queue()
    q.send_batch([{"i": i} for i in range(4)])
    (msg,) = drain(q, 1)
    q.dead_letter(msg, "bad")
    assert q.depth() == 3
    assert len(q.dead_letters()) == 1
    q.purge()
    assert q.depth() == 0
    assert q.dead_letters() == []
    assert q.receive(10) == []


def test_bodies_that_are_not_json_serialisable_are_refused(make_queue: QueueFactory) -> None:
    q = make_queue()
    with pytest.raises(QueueError, match="not JSON-serialisable"):
        q.send({"score": math.nan})
    with pytest.raises(QueueError, match="dict or str"):
        q.send(42)  # type: ignore[arg-type]
    assert q.depth() == 0


def test_release_hands_messages_back_without_spending_an_attempt(
    make_queue: QueueFactory, lease: float
) -> None:
    q = make_queue(max_attempts=2)
    q.send({"account_id": "R1"})
    q.send({"account_id": "R2"})
    # Far more hand-backs than max_attempts (an outage of any length) dead-letter nothing.
    for _ in range(4):
        got = drain(q, 2)
        assert sorted(m.body["account_id"] for m in got) == ["R1", "R2"]
        assert all(m.attempts == 1 for m in got)
        assert q.release(got, reason="store unavailable") == 2
    assert q.dead_letters() == [] and q.dead_letter_count == 0
    # A failure after a release still counts: first delivery nacked, second is attempt 2.
    got = drain(q, 2)
    for m in got:
        q.nack(m, reason="bad account")
    again = drain(q, 2)
    assert all(m.attempts == 2 for m in again)
    q.release(again, reason="outage again")
    last = drain(q, 2)
    assert all(m.attempts == 2 for m in last)
    q.ack_many(last)
    assert q.depth() == 0 and q.dead_letters() == []


def test_release_with_delay_hides_the_messages(make_queue: QueueFactory, lease: float) -> None:
    delay = lease
    vt = 5 * delay
    q = make_queue()
    q.send({"account_id": "D1"})
    got = drain(q, 1, visibility_timeout=vt)
    q.release(got, delay=delay)
    assert q.receive(10, visibility_timeout=vt) == []
    time.sleep(delay + 0.15)
    (again,) = drain(q, 1, visibility_timeout=vt)
    assert again.attempts == 1
    q.ack(again)


def test_every_move_to_the_dead_letter_store_is_counted(make_queue: QueueFactory) -> None:
    """Explicit dead letters, the last attempt's nack, and receive-time moves (malformed
    bodies, exhausted attempts) all reach ``dead_letter_count`` and the hook."""
    q = make_queue(max_attempts=1)
    seen: list[str] = []
    q.on_dead_letter = seen.append
    q.send("not json")
    q.send({"account_id": "N1"})
    q.send({"account_id": "N2"})
    got = drain(q, 2)  # the malformed one is moved during the receive
    by_id = {m.body["account_id"]: m for m in got}
    q.dead_letter(by_id["N1"], "invalid check message")
    q.nack(by_id["N2"], reason="scoring failed")  # the only attempt: dead-lettered
    assert q.dead_letter_count == 3 == len(seen) == len(q.dead_letters())
    assert sorted(s.split(":")[0] for s in seen) == [
        "invalid check message",
        "malformed JSON",
        "max attempts exceeded",
    ]


def test_identity_names_the_queue_the_same_in_every_handle(
    make_queue: QueueFactory, backend: str
) -> None:
    """``Queue.identity`` (the card processor's checkpoint key of a queue) is the same
    for two handles on one queue and starts with the backend."""
    from fraudlens.processor import _queue_key

    a, b = make_queue(), make_queue()
    assert a.identity == b.identity
    assert a.identity.startswith(f"{backend}:")
    assert _queue_key(a) == f"queue:{a.identity}"


def test_identity_of_each_backend_is_the_key_sinks_already_hold(
    tmp_path: Any, redis_url: str, redis_stream: str
) -> None:
    """The text of the checkpoint keys written before (so a sink's unacked ids are
    found after an upgrade), read from public settings: the SQLite file's absolute path,
    the Redis client's connection settings without the password (a client passed in
    too, a Unix socket by its path)."""
    from urllib.parse import urlsplit

    import redis

    from fraudlens.queues import RedisQueue, SQLiteQueue

    with SQLiteQueue(tmp_path / "q.db", name="cards") as q:
        assert q.identity == f"sqlite:{(tmp_path / 'q.db').resolve()}#cards"
    parts = urlsplit(redis_url)
    secret = f"{parts.scheme}://:not-the-password@{parts.hostname}:{parts.port}/3"
    with RedisQueue(secret, name="cards", stream=redis_stream, group="g") as q:
        assert q.identity == f"redis:{parts.hostname}:{parts.port}/3#{redis_stream}#g"
        assert "not-the-password" not in q.identity
    client = redis.Redis(unix_socket_path="/nowhere/redis.sock", db=2, decode_responses=True)
    try:
        q = RedisQueue(name="cards", stream=redis_stream, group="g", client=client)
        assert q.identity == f"redis:/nowhere/redis.sock/2#{redis_stream}#g"
    finally:
        client.close()
