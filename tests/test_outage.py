"""A worker drains 5,000 account checks through a real store outage and loses nothing.

Runs the scenario of ``bench/outage.py`` (which the README's figures come from, with a
5-minute outage and 10,000 checks) once per store, with a shorter outage and half the
checks (the suite runs it on every CI run):

- Redis Streams + a private PostgreSQL server that is stopped (``pg_ctl stop -m fast``)
  for 40 s mid-run and started again;
- SQLite queue + SQLite store whose write lock another process holds for 45 s (longer
  than the store's 30 s busy timeout, so writes really fail with "database is locked").

The accounts are of every default simulated kind (beneficiaries and internalising market
makers included). Each run ends with every check worked: no dead letters, an empty queue,
exactly one risk event per account batch scoring flags and none for any other account
(none lost, none duplicated, none unexpected), the worker having reported itself
unhealthy on ``/healthz`` while the store was down.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from _services import bench_module, unavailable  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def _outage_module() -> ModuleType:
    return bench_module("outage")


def _check(r: Any) -> None:
    summary = r.worker_output[-2000:]
    assert r.worker_exit == 0, summary
    assert r.expected_events > 1000
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
    assert r.worker_released is not None and r.worker_released >= 1
    assert r.worker_dead_lettered == 0


@pytest.mark.services
def test_postgresql_outage_loses_nothing(tmp_path: Path) -> None:
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
    result = outage.run_outage(
        "postgresql", checks=5_000, outage=40, outage_at=1_000, workdir=tmp_path, log=print
    )
    _check(result)


def test_sqlite_locked_store_loses_nothing(tmp_path: Path) -> None:
    outage = _outage_module()
    result = outage.run_outage(
        "sqlite", checks=5_000, outage=45, outage_at=1_000, workdir=tmp_path, log=print
    )
    _check(result)
    assert "database is locked" in result.healthz_reason


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
