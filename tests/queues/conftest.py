"""Fixtures for the queue tests: real SQLite files, the real Redis server, and an SQS emulator.

Redis: ``FRAUDLENS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). When it cannot be
reached the Redis tests are skipped, unless the environment variable ``CI`` is set (to
anything but ``""``, ``0``, ``false`` or ``no``): then they fail.

SQS: no AWS account is reachable from CI, so the SQS adapter is tested against moto's SQS
emulator running as a real HTTP server on 127.0.0.1 (``moto.server.ThreadedMotoServer``);
boto3 talks to it over the network exactly as it would to AWS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _services import unavailable  # type: ignore[import-not-found]
from fraudlens.queues import Queue, RedisQueue, SQLiteQueue, SQSQueue

REDIS_URL = os.environ.get("FRAUDLENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

#: Lease used by tests that wait for a visibility timeout to run out. SQS only accepts
#: whole seconds, so its lease is 1 s; the others can be much shorter.
LEASE = {"sqlite": 0.2, "redis": 0.2, "sqs": 1.0}


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis server, or skip/fail."""
    try:
        import redis
    except ImportError:
        unavailable("redis-py is not installed")
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        unavailable(f"Redis is unreachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def redis_stream(redis_url: str) -> Iterator[str]:
    """A fresh stream name; its keys are deleted after the test."""
    import redis

    stream = f"fraudlens-test:{uuid.uuid4().hex}"
    yield stream
    client = redis.Redis.from_url(redis_url)
    client.delete(stream, f"{stream}:dlq", f"{stream}:errors")
    client.close()


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """Endpoint URL of moto's SQS emulator, started for the session on 127.0.0.1."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        unavailable('moto is not installed (pip install "moto[server]")')
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


#: Credentials moto accepts; passed explicitly so no AWS_* variable leaks into other tests.
FAKE_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _sqs_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint, **FAKE_AWS)


@pytest.fixture
def sqs_client(sqs_endpoint: str) -> Callable[[], Any]:
    """Factory of boto3 SQS clients bound to the emulator (each queue closes its own)."""
    return lambda: _sqs_client(sqs_endpoint)


QueueFactory = Callable[..., Queue]


@pytest.fixture
def lease(backend: str) -> float:
    """Short visibility timeout suited to the current backend."""
    return LEASE[backend]


@pytest.fixture(
    params=["sqlite", pytest.param("redis", marks=pytest.mark.services), "sqs"],
)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the backend the contract test runs against."""
    return str(request.param)


@pytest.fixture
def make_queue(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[QueueFactory]:
    """Factory for queues of the current backend, all on one fresh queue; closed afterwards.

    Several calls return several handles (consumers) on the same queue.
    """
    opened: list[Queue] = []
    if backend == "sqlite":
        path = tmp_path / "queue.db"

        def make(max_attempts: int = 5) -> Queue:
            return SQLiteQueue(path, name="contract", max_attempts=max_attempts)

    elif backend == "redis":
        url = request.getfixturevalue("redis_url")
        stream = request.getfixturevalue("redis_stream")

        def make(max_attempts: int = 5) -> Queue:
            return RedisQueue(url, name="contract", stream=stream, max_attempts=max_attempts)

    else:
        endpoint = request.getfixturevalue("sqs_endpoint")
        queue_name = f"contract-{uuid.uuid4().hex[:12]}"

        def make(max_attempts: int = 5) -> Queue:
            return SQSQueue(queue_name, max_attempts=max_attempts, client=_sqs_client(endpoint))

    def factory(max_attempts: int = 5) -> Queue:
        q = make(max_attempts)
        opened.append(q)
        return q

    yield factory
    if opened:
        opened[0].purge()
    for q in opened:
        q.close()


ULB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ulb_creditcard_day1.csv"


@pytest.fixture(scope="session")
def ulb_records() -> list[dict[str, Any]]:
    """The ULB sample's first 3,000 rows and every fraud (both classes for a model)."""
    if not ULB.is_file():
        pytest.skip(f"ULB sample not found at {ULB}")
    import pandas as pd

    df = pd.read_csv(ULB)
    df = df[(df.index < 3000) | (df["Class"] == 1)]
    return list(df.to_dict(orient="records"))


@pytest.fixture(scope="session")
def card_models(
    tmp_path_factory: pytest.TempPathFactory, ulb_records: list[dict[str, Any]]
) -> Path:
    """A registry with a small XGBoost card model trained on :func:`ulb_records`."""
    import pandas as pd

    from fraudlens.cards.detectors import XGBoostDetector
    from fraudlens.registry import Registry

    df = pd.DataFrame(ulb_records)
    X, y = df.drop(columns="Class"), df["Class"].to_numpy()
    root = tmp_path_factory.mktemp("models")
    Registry(root).save(
        XGBoostDetector(n_estimators=10, early_stopping_rounds=None, refit=False, n_jobs=1).fit(
            X, y
        )
    )
    return root
