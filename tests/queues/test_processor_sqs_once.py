"""The card processor on an SQS queue (moto's emulator over HTTP) whose acks fail: the
rows of the batch are in the sink, the processor stops, and the batch comes back after
its lease with new receipt handles. It is recognised by its MessageId (stable across
deliveries, unlike the receipt handle) and acked without being written again.
"""

from __future__ import annotations

import csv
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from fraudlens.errors import QueueError
from fraudlens.processor import process
from fraudlens.queues import Message, SQSQueue


def test_a_batch_whose_ack_failed_is_known_by_its_message_id(
    sqs_endpoint: str,
    card_models: Path,
    ulb_records: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    name = f"cards-{uuid.uuid4().hex[:12]}"
    url = f"sqs://{name}?region=us-east-1&endpoint_url={sqs_endpoint}"
    ids = [f"s{i}" for i in range(30)]
    q = SQSQueue.from_url(url, name=name)
    body = [{k: v for k, v in r.items() if k != "Class"} for r in ulb_records[:30]]
    q.send_batch([{"record": {**b, "transaction_id": i}} for i, b in zip(ids, body, strict=True)])
    q.close()
    sink = tmp_path / "sink"
    stop = threading.Event()
    handles: list[str] = []

    def ack_many(self: SQSQueue, msgs: Iterable[Message]) -> None:
        # Fault injection: every ack fails (the rows are spooled already); the processor
        # is stopped during the outage, so the batch stays in the queue.
        handles.extend(m.id for m in msgs)
        stop.set()
        raise QueueError("acks fail in this test")

    real_ack_many = SQSQueue.ack_many
    monkeypatch.setattr(SQSQueue, "ack_many", ack_many)
    first = process(
        f"queue:{url}", sink, card_models, batch_size=10, visibility_timeout=1, stop_event=stop
    )
    assert first.records == 10
    monkeypatch.setattr(SQSQueue, "ack_many", real_ack_many)
    time.sleep(1.5)  # the batch's lease runs out: SQS delivers it again, new handles
    second = process(f"queue:{url}", sink, card_models, batch_size=10, visibility_timeout=1)
    got: list[str] = []
    for f in sorted(p for p in sink.rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            got.extend(r["transaction_id"] for r in csv.DictReader(fh))
    assert len(got) - len(set(got)) == 0, f"{len(got) - len(set(got))} rows written twice"
    assert sorted(got) == sorted(ids)
    assert getattr(second, "repeats", None) == 10
    assert second.records == 20
    with SQSQueue.from_url(url, name=name) as q:
        assert q.depth() == 0
