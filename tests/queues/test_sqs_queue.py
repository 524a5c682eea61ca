"""SQS adapter details, against an SQS emulator.

No AWS account is reachable from CI, so these tests run against moto's SQS emulator served
over HTTP on 127.0.0.1 (``moto.server.ThreadedMotoServer``, see ``conftest.py``). They show
the adapter drives the SQS API as intended (URLs, the explicit ``<name>-dlq`` queue with the
reason as a message attribute, batches above 10); they do not prove AWS behaves like moto.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from fraudlens.errors import ConfigError
from fraudlens.queues import SQSQueue, open_queue

SQSClient = Callable[[], Any]


def _name() -> str:
    return f"sqs-{uuid.uuid4().hex[:12]}"


def test_dead_letter_goes_to_the_dlq_queue_with_the_reason_attribute(sqs_client: SQSClient) -> None:
    name = _name()
    q = SQSQueue(name, client=sqs_client())
    assert q.dlq_url.endswith(f"/{name}-dlq")
    source_id = q.send({"account_id": "A1"})
    (msg,) = q.receive(1)
    q.dead_letter(msg, "unknown symbol XYZ")

    # Read the DLQ with plain boto3: the adapter's own view is not the only witness.
    raw = sqs_client().receive_message(
        QueueUrl=q.dlq_url, MessageAttributeNames=["All"], MaxNumberOfMessages=10
    )["Messages"]
    assert len(raw) == 1
    attrs = {k: v["StringValue"] for k, v in raw[0]["MessageAttributes"].items()}
    assert attrs["reason"] == "unknown symbol XYZ"
    assert attrs["source_message_id"] == source_id
    assert attrs["source_queue"] == name
    assert raw[0]["Body"] == '{"account_id":"A1"}'
    assert q.depth() == 0
    q.purge()
    q.close()


def test_receive_more_than_ten_and_ack_many(sqs_client: SQSClient) -> None:
    q = SQSQueue(_name(), client=sqs_client())
    q.send_batch([{"n": i} for i in range(23)])
    got = q.receive(23)
    assert sorted(m.body["n"] for m in got) == list(range(23))
    q.ack_many(got)
    assert q.depth() == 0
    q.purge()
    q.close()


def test_dead_letters_browse_leaves_them_in_place(sqs_client: SQSClient) -> None:
    q = SQSQueue(_name(), client=sqs_client())
    q.send_batch([f"broken {i}" for i in range(13)])
    assert q.receive(20) == []
    first = q.dead_letters()
    assert sorted(d["raw"] for d in first) == sorted(f"broken {i}" for i in range(13))
    assert q.dead_letters(limit=5) and len(q.dead_letters(limit=5)) == 5
    assert len(q.dead_letters()) == 13  # browsing did not hide or consume them
    q.purge()
    q.close()


def test_open_queue_sqs_url(
    sqs_endpoint: str, sqs_client: SQSClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    name = _name()
    q = open_queue(f"sqs://{name}?region=eu-west-1&endpoint_url={sqs_endpoint}", max_attempts=4)
    assert isinstance(q, SQSQueue)
    assert q.name == name
    assert q.max_attempts == 4
    assert q._client.meta.region_name == "eu-west-1"
    q.send({"n": 1})
    assert q.depth() == 1
    # The same queue, opened by its URL: the emulator's address becomes the endpoint.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    by_url = open_queue(q.queue_url)
    assert isinstance(by_url, SQSQueue)
    assert by_url.name == name
    assert by_url.depth() == 1
    q.purge()
    q.close()
    by_url.close()

    with pytest.raises(ConfigError, match="FIFO"):
        SQSQueue("jobs.fifo", client=sqs_client())
    with pytest.raises(ConfigError, match="unknown SQS queue option"):
        open_queue("sqs://jobs?regoin=eu-west-1")


def test_region_is_read_from_an_aws_queue_url(
    sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    url = "https://sqs.eu-central-1.amazonaws.com/123456789012/orders"
    # Only the region and the names are checked; requests still go to the emulator.
    q = SQSQueue(url, endpoint_url=sqs_endpoint)
    assert q._client.meta.region_name == "eu-central-1"
    assert q.queue_url == url
    assert q.name == "orders"
    assert q.dlq_url.endswith("/orders-dlq")
    q.close()


def test_boto3_is_not_imported_by_the_package() -> None:
    code = "import fraudlens.queues, sys; print('boto3' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
