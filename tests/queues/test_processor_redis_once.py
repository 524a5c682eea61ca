"""The card processor on a Redis queue whose server goes away between the sink's durable
write of a batch and its ack: the ack is lost, the processor stops during the outage, the
server comes back (with its append-only file: the entries are still pending) and a new
processor gets the batch again. It acks it without writing its rows a second time, so
every record is in the sink exactly once.

A private ``redis-server`` (its own port and folder; the machine's server is never
touched). Skipped when ``redis-server`` is missing (a failure under ``CI``).
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from _services import bench_module, unavailable  # type: ignore[import-not-found]
from fraudlens.processor import process
from fraudlens.queues import Message, RedisQueue, open_queue

pytestmark = pytest.mark.services


@pytest.fixture
def server() -> Iterator[Any]:
    outage: ModuleType = bench_module("outage")
    try:
        srv = outage.PrivateRedis(persistent=True)
    except RuntimeError as exc:
        unavailable(f"cannot run a private Redis server: {exc}")
    try:
        yield srv
    finally:
        srv.cleanup()


def _rows(root: Path) -> list[str]:
    ids: list[str] = []
    for f in sorted(p for p in root.rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            ids.extend(r["transaction_id"] for r in csv.DictReader(fh))
    return ids


def test_an_ack_lost_with_the_server_writes_nothing_twice(
    server: Any,
    card_models: Path,
    ulb_records: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.start()
    ids = [f"r{i}" for i in range(100)]
    with open_queue(server.url, name="card-events") as q:
        body = [{k: v for k, v in r.items() if k != "Class"} for r in ulb_records[:100]]
        q.send_batch(
            [{"record": {**b, "transaction_id": i}} for i, b in zip(ids, body, strict=True)]
        )
    sink = tmp_path / "sink"
    stop = threading.Event()
    real_ack_many = RedisQueue.ack_many
    calls: list[int] = []

    def ack_many(self: RedisQueue, msgs: Sequence[Message]) -> None:
        # Fault injection: the server goes away after the first batch's rows were
        # spooled and before its ack reaches it (the ack then fails for real), and the
        # processor is stopped during the outage.
        calls.append(1)
        if len(calls) == 1:
            server.stop("term")
            stop.set()
        real_ack_many(self, msgs)

    monkeypatch.setattr(RedisQueue, "ack_many", ack_many)
    first = process(
        f"queue:{server.url}",
        sink,
        card_models,
        batch_size=20,
        visibility_timeout=1.0,
        stop_event=stop,
        pause_cap=0.2,
    )
    assert first.records == 20
    assert first.outages == 1
    monkeypatch.setattr(RedisQueue, "ack_many", real_ack_many)
    kept = sink / ".checkpoints.json"
    saved = json.loads(kept.read_text()) if kept.exists() else {}
    unacked = [v["unacked"] for k, v in saved.items() if k.startswith("queue:redis:")]

    server.start()  # the append-only file kept the stream and the pending entries
    with open_queue(server.url, name="card-events") as q:
        assert q.depth() == 100
    time.sleep(1.3)  # the lost batch's entries idle longer than a lease: claimable
    second = process(
        f"queue:{server.url}", sink, card_models, batch_size=20, visibility_timeout=1.0
    )
    got = _rows(sink)
    assert len(got) - len(set(got)) == 0, f"{len(got) - len(set(got))} rows written twice"
    assert getattr(second, "repeats", None) == 20  # acked, not written again
    assert sorted(got) == sorted(ids)
    assert second.records == 80
    assert [len(u) for u in unacked] == [20]  # kept with the rows: their ack was lost
    with open_queue(server.url, name="card-events") as q:
        assert q.depth() == 0
    saved = json.loads((sink / ".checkpoints.json").read_text())
    assert [v["unacked"] for k, v in saved.items() if k.startswith("queue:redis:")] == [[]]
