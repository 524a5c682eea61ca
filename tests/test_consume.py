"""The consumer loop's idle exit, on a real SQLite queue."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path

from fraudlens.consume import BatchResult, Consumer, work_isolated
from fraudlens.errors import UnavailableError
from fraudlens.queues import Message, SQLiteQueue


class _SlowFailOnce:
    """Takes ``seconds`` per batch; a message's first delivery fails, its second succeeds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deliveries: list[int] = []

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        time.sleep(self.seconds)
        result = BatchResult()
        for m in msgs:
            self.deliveries.append(m.attempts)
            if m.attempts == 1:
                result.failed.append((m, "first delivery fails"))
            else:
                result.done.append(m)
        return result

    def probe(self) -> None:
        return None


def test_idle_exit_counts_from_the_end_of_a_slow_batch(tmp_path: Path) -> None:
    """A batch slower than ``idle_exit`` does not count as idle time: the retry it nacked
    with a short back-off is received and worked before the loop exits (the idle clock
    once started at the receive, so the first empty poll after a slow batch ended the run
    with the retry still pending)."""
    q = SQLiteQueue(tmp_path / "q.db", max_attempts=3)
    q.send_batch([{"n": 1}])
    handler = _SlowFailOnce(seconds=0.5)
    consumer = Consumer(q, handler, poll=True, retry_base=0.2)
    stats = consumer.run(idle_exit=0.3)
    assert handler.deliveries == [1, 2]
    assert stats.failed == 1 and stats.processed == 1 and stats.dead_lettered == 0
    assert q.depth() == 0
    q.close()


class _EchoingFailure:
    """Fails every message with an error quoting the message's own long value, as a
    parser's error does."""

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        result = BatchResult()

        def work(items: Sequence[Message]) -> None:
            raise ValueError(f"bad account id: {items[0].body['account_id']!r}")

        for m in msgs:
            work_isolated([m], work, lambda item: item, result)
        return result

    def probe(self) -> None:
        return None


def test_a_dead_letter_reason_does_not_repeat_a_long_value(tmp_path: Path) -> None:
    """A message's megabyte of text is cut at 80 characters in its dead-letter reason."""
    q = SQLiteQueue(tmp_path / "q.db", max_attempts=1)
    q.send_batch([{"account_id": "x" * 1_000_000}])
    stats = Consumer(q, _EchoingFailure(), poll=True).run(idle_exit=0.2)
    assert stats.dead_lettered == 1
    (dead,) = q.dead_letters()
    reason = dead["reason"]
    assert "ValueError: bad account id: 'xxx" in reason
    assert "x" * 81 not in reason and len(reason) <= 500
    q.close()


class _Warming:
    """Records when its model was loaded, relative to the batches it handled."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def warm_up(self) -> None:
        self.calls.append("warm_up")
        if self.fail:
            raise UnavailableError("model not there yet", what="model")

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        self.calls.append("handle")
        return BatchResult(done=list(msgs))

    def probe(self) -> None:
        return None


def test_the_handler_warms_up_before_the_first_batch_and_the_heap_is_frozen(
    tmp_path: Path,
) -> None:
    """The model is loaded before the first receive, and what was loaded is frozen out of
    the collector's way (the first batch once paid for that full collection); a handler
    that cannot warm up yet still gets its batches (the loop's outage handling is for
    them)."""
    for fail in (False, True):
        gc.unfreeze()
        q = SQLiteQueue(tmp_path / f"q{fail}.db")
        q.send_batch([{"n": 1}, {"n": 2}])
        handler = _Warming(fail)
        stats = Consumer(q, handler, poll=True).run(idle_exit=0.2)
        assert handler.calls == ["warm_up", "handle"]
        assert stats.processed == 2
        assert gc.get_freeze_count() > 0
        q.close()
    gc.unfreeze()


class _Frozen:
    """A handler whose call never returns until ``thaw`` is set: a store or sink server
    that stopped answering without closing its connection (``SIGSTOP``, a host gone)."""

    def __init__(self) -> None:
        import threading

        self.thaw = threading.Event()

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        self.thaw.wait(30)
        return BatchResult(done=list(msgs))

    def probe(self) -> None:
        return None


def _healthz(port: int) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_batch_stuck_past_its_lease_is_unhealthy(tmp_path: Path) -> None:
    """A call that never returns (a PostgreSQL server stopped with SIGSTOP left the
    store's ping waiting over 40 s, and for as long as it stayed stopped) held the loop
    in its batch: /healthz said ok for ever while nothing moved and the batch's lease ran
    out. Now a batch in hand for longer than its lease is reported: 503, what
    'stalled', and ok again once it ends. The same for a process of several
    (SharedHealth)."""
    import socket
    import threading
    from types import SimpleNamespace

    from fraudlens.consume import ConsumerMetrics, SharedHealth

    q = SQLiteQueue(tmp_path / "q.db", name="frozen")
    q.send({"n": 1})
    handler = _Frozen()
    metrics = ConsumerMetrics("test_frozen")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert metrics.serve(port)
    consumer = Consumer(q, handler, poll=True, visibility_timeout=0.5, metrics=metrics)
    shared = SharedHealth(1)
    shared.watch(0, SimpleNamespace(pid=1, exitcode=None))
    shared.attach(0, consumer.health)
    runner = threading.Thread(target=consumer.run, kwargs={"limit": 1})
    runner.start()
    try:
        time.sleep(1.2)
        code, body = _healthz(port)
        assert code == 503, body
        assert body["what"] == "stalled" and "longer than its 0.5 s lease" in body["reason"]
        worst = shared.as_json()
        assert worst["status"] == "unavailable" and worst["what"] == "stalled", worst
    finally:
        handler.thaw.set()
        runner.join(10)
    assert consumer.stats.processed == 1
    assert _healthz(port) == (200, {"status": "ok"})
    assert shared.as_json()["status"] == "ok"
    q.close()
