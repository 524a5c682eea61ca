"""A worker drains 5,000 account checks through a real store outage and loses nothing.

Runs the scenario of ``bench/outage.py`` (which the README's figures come from, with a
5-minute outage and 10,000 checks) once per store, with a shorter outage and half the
checks (the suite runs it on every CI run):

- Redis Streams + a private PostgreSQL server that is stopped (``pg_ctl stop -m fast``)
  for 20 s mid-run and started again;
- SQLite queue + SQLite store whose write lock another process holds for 12 s (longer
  than the store's busy timeout, set to 3 s on its URL with ``?busy_timeout=3``, so writes
  really fail with "database is locked").

The accounts are of every default simulated kind (beneficiaries and internalising market
makers included). Each run ends with every check worked: no dead letters, an empty queue,
exactly one risk event per account batch scoring flags and none for any other account
(none lost, none duplicated, none unexpected), the worker having reported itself
unhealthy on ``/healthz`` while the store was down.

Shorter runs (1,500 checks or records, 12 s outages) cover the other servers going away:

- the queue: a private ``redis-server`` with an append-only file is stopped and started
  again under a worker (SQLite store), and under ``fraudlens cards process`` reading
  card records from it (every record in the sink exactly once);
- a private MariaDB server stopped under a worker;
- the service's enqueue route answers 503 with the reason while Redis is down, and 202
  again once it is back.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from _services import bench_module, unavailable  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def _outage_module() -> ModuleType:
    return bench_module("outage")


def _check(r: Any, *, released: bool = True) -> None:
    """The exact judgement; ``released``: the batch in hand was handed back (a store
    outage; with the queue down there is nothing to hand back to)."""
    summary = r.worker_output[-2000:]
    assert r.worker_exit == 0, summary
    assert r.expected_events > r.checks // 5
    assert r.dead_letters == 0, summary
    assert r.left_in_queue == 0
    # Exactly the accounts batch scoring flags, whatever accounts shared a batch.
    assert (r.lost, r.duplicated, r.unexpected) == (0, 0, 0), (
        r.lost_ids[:10],
        r.unexpected_ids[:10],
    )
    assert r.events == r.expected_events
    # The outage was seen and waited out, not spent on attempts.
    assert r.healthz_503_seen, summary
    assert r.worker_outages is not None and r.worker_outages >= 1, summary
    assert r.worker_released is not None and (r.worker_released >= 1 or not released)
    assert r.worker_dead_lettered == 0


def _private_postgresql_and_redis() -> ModuleType:
    """``bench/outage.py`` as a module, once a private PostgreSQL server can run here and
    Redis answers (the test is unavailable otherwise)."""
    outage = _outage_module()
    try:
        outage.PrivatePostgres().cleanup()  # can we run one? (its folder goes again)
    except RuntimeError as exc:
        unavailable(f"cannot run a private PostgreSQL server: {exc}")
    try:
        import redis

        redis.Redis.from_url(outage.REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        unavailable(f"Redis is unreachable at {outage.REDIS_URL}: {exc}")
    return outage


@pytest.mark.services
def test_postgresql_outage_loses_nothing(tmp_path: Path) -> None:
    outage = _private_postgresql_and_redis()
    result = outage.run_outage(
        "postgresql", checks=5_000, outage=20, outage_at=1_000, workdir=tmp_path, log=print
    )
    _check(result)


def test_sqlite_locked_store_loses_nothing(tmp_path: Path) -> None:
    outage = _outage_module()
    result = outage.run_outage(
        "sqlite",
        checks=5_000,
        outage=12,
        outage_at=1_000,
        sqlite_timeout=3,
        workdir=tmp_path,
        log=print,
    )
    _check(result)
    assert "database is locked" in result.healthz_reason


@pytest.mark.services
def test_a_frozen_postgresql_is_cut_after_the_lease_and_loses_nothing(tmp_path: Path) -> None:
    """Every process of a private PostgreSQL server stopped with SIGSTOP for 12 s under a
    worker (lease 4 s): its store call waits without an error (no read timeout, and the
    kernel still acknowledges). The call had waited out the whole freeze while /healthz
    said 200 (later "stalled"). Now, once it has run past the lease (and 10 s), the worker cuts its
    connections: the call fails and the batch is tried on a fresh connection, which
    opens once the server runs again (within the 10 s connect timeout; a longer freeze is
    an outage the worker pauses for). /healthz says "stalled" while the batch is in hand
    past its lease, and the judgement is exact."""
    outage = _private_postgresql_and_redis()
    r = outage.run_outage(
        "postgresql",
        checks=1_500,
        outage=12,
        outage_at=400,
        stop_mode="freeze",
        visibility_timeout=4,
        workdir=tmp_path,
    )
    summary = r.worker_output[-2000:]
    assert r.worker_exit == 0, summary
    assert (r.lost, r.duplicated, r.unexpected) == (0, 0, 0), (r.lost_ids[:10], summary)
    assert r.events == r.expected_events and r.dead_letters == 0 and r.left_in_queue == 0
    assert r.healthz_503_seen, summary
    assert '"what": "stalled"' in r.healthz_reason, r.healthz_reason
    assert "(the batch's lease is 4 s): cut" in r.worker_output, summary
    said = " ".join(summary.split())  # the summary may be wrapped
    assert re.search(
        r"cut the store's connections \d+ times?: a call had not returned in 10 s", said
    ), summary


def test_private_postgres_helper_cleans_up() -> None:
    outage = _outage_module()
    try:
        pg = outage.PrivatePostgres()
    except RuntimeError as exc:
        unavailable(f"cannot run a private PostgreSQL server: {exc}")
    root = pg.root
    try:
        pg.init()
        pg.start()
        from fraudlens.store import open_store

        with open_store(pg.url) as store:
            store.upgrade()
            store.ping(write=True)
        pg.stop()
        from fraudlens.errors import StoreUnavailableError

        with open_store(pg.url) as store, pytest.raises(StoreUnavailableError):
            store.ping()
    finally:
        pg.cleanup()
    assert not root.exists()


def _private(outage: ModuleType, kind: str, **kw: Any) -> Any:
    """A private server helper, or skip (fail under CI) when its binaries are missing."""
    try:
        return getattr(outage, kind)(**kw)
    except RuntimeError as exc:
        unavailable(f"cannot run {kind}: {exc}")


@pytest.mark.services
@pytest.mark.parametrize("down", ["queue", "queue-volatile"])
def test_redis_queue_outage_loses_nothing(tmp_path: Path, down: str) -> None:
    """Redis stopped for 12 s under a worker.

    With an append-only file the checks it held, the pending ones included, are all
    worked once it is back; the ack the stopped server refused is made then (the batch
    was left in the queue until its lease ran out). Without persistence it comes back
    empty (Redis lost the checks): the worker recreates its consumer group by itself,
    neither crashing nor dead-lettering, and works every check sent again, each flagged
    account's event once."""
    outage = _outage_module()
    _private(outage, "PrivateRedis").cleanup()
    result = outage.run_outage(
        "sqlite", down=down, checks=1_500, outage=12, outage_at=400, workdir=tmp_path
    )
    _check(result, released=False)
    assert '"what": "queue"' in result.healthz_reason
    assert result.depth_after_restart is not None
    if down == "queue":
        assert result.depth_after_restart > 0 and result.resent == 0
    else:
        assert result.depth_after_restart == 0 and result.resent == 1_500
        assert "consumer group" in result.worker_output  # recreated, and said so


@pytest.mark.services
def test_mariadb_store_outage_loses_nothing(tmp_path: Path) -> None:
    outage = _outage_module()
    _private(outage, "PrivateMariaDB", root=tmp_path / "probe").cleanup()
    try:
        import redis

        redis.Redis.from_url(outage.REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        unavailable(f"Redis is unreachable at {outage.REDIS_URL}: {exc}")
    result = outage.run_outage(
        "mariadb", checks=1_500, outage=12, outage_at=400, workdir=tmp_path / "run"
    )
    _check(result)
    assert '"what": "store"' in result.healthz_reason


@pytest.mark.services
def test_card_processor_through_a_redis_outage_writes_each_record_once(tmp_path: Path) -> None:
    """``fraudlens cards process`` reading a Redis queue whose server stops for 12 s: every
    record in the sink exactly once, nothing left or dead-lettered, /healthz 503 while it
    was down (the processor's /healthz answered 200 throughout)."""
    outage = _outage_module()
    _private(outage, "PrivateRedis").cleanup()
    r = outage.run_processor_outage(records=1_500, outage=12, outage_at=400, workdir=tmp_path)
    tail = r.output[-2000:]
    assert r.exit_code == 0, tail
    assert (r.rows, r.lost, r.duplicated, r.unexpected) == (1_500, 0, 0, 0), tail
    assert r.left_in_queue == 0 and r.dead_letters == 0, tail
    assert r.healthz_503_seen, tail
    assert '"what": "queue"' in r.healthz_reason


@pytest.mark.services
def test_enqueue_route_is_503_while_redis_is_down(tmp_path: Path) -> None:
    import uuid

    from fastapi.testclient import TestClient

    from fraudlens.config import Settings
    from fraudlens.queues import RedisQueue
    from fraudlens.service import create_app

    outage = _outage_module()
    server = _private(outage, "PrivateRedis", root=tmp_path / "redis")
    try:
        server.start()
        stream = f"enqueue-{uuid.uuid4().hex}"
        cfg = Settings(
            models_dir=tmp_path / "models",
            queue_url=f"{server.url}?stream={stream}",
            database_url=f"sqlite:///{tmp_path / 'store.db'}",
        )
        with TestClient(create_app(cfg, preload=False)) as client:
            assert client.post("/v1/accounts/a1/check").status_code == 202
            server.stop("term")
            down = client.post("/v1/accounts/a2/check")
            assert down.status_code == 503, down.text
            body = down.json()
            assert body["error"] == "the queue is unavailable"
            assert "Connection refused" in body["detail"]["reason"]
            server.start()
            assert client.post("/v1/accounts/a3/check").status_code == 202
        with RedisQueue(server.url, stream=stream) as q:
            got = q.receive(10, visibility_timeout=30)
            assert sorted(m.body["account_id"] for m in got) == ["a1", "a3"]
    finally:
        server.cleanup()
