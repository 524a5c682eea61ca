"""The consumer loop's idle exit, on a real SQLite queue."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from fraudlens.consume import BatchResult, Consumer
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
