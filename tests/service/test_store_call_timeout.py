"""The service's store calls are bounded by ``FRAUDLENS_STORE_CALL_TIMEOUT``.

A relay between the service and the real PostgreSQL or MariaDB server leaves every open
connection half-open (the server's end gone, the client's silent), as a frozen server or
a failover does. A request whose store call waited on such a connection had held its
thread for ever.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _services import (  # type: ignore[import-not-found]
    error_within,
    private_database,
    relayed_database,
)
from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")


@pytest.mark.services
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_request_on_a_connection_left_half_open_is_answered_after_the_bound(
    kind: str, tmp_path: Path
) -> None:
    """The service's pooled connection is left half-open: the next request's store
    call (the pool's liveness ping) waited for ever; now it is cut after the 2 s bound
    and the request answered."""
    with relayed_database(kind, tmp_path) as (url, proxy):
        settings = Settings(database_url=url, models_dir=tmp_path / "models", store_call_timeout=2)
        with TestClient(create_app(settings, preload=False)) as c:
            assert c.get("/v1/risk-events").json()["total"] == 1
            assert proxy.fail_over() >= 1
            said: dict[str, Any] = {}

            def request() -> None:
                started = time.monotonic()
                said["reply"] = c.get("/v1/risk-events")
                said["seconds"] = time.monotonic() - started

            # on the old code: still waiting after 40 s
            assert error_within(request, 40) is None
            # the pooled connection's ping was cut, and the pool opened a fresh one
            # (a 503 if that had failed too)
            reply = said["reply"]
            assert reply.status_code in (200, 503), reply.text
            assert 1.9 <= said["seconds"] < 12, said["seconds"]
            assert c.get("/v1/risk-events").json()["total"] == 1
            metrics = c.get("/metrics").text
            assert "fraudlens_store_calls_cut_total 1.0" in metrics


@pytest.mark.services
@pytest.mark.parametrize(("setting", "bound"), [(None, 30.0), (5, 5.0), (0, None)])
def test_the_service_opens_its_store_with_the_setting(
    setting: float | None, bound: float | None, tmp_path: Path
) -> None:
    """30 s by default; 0 sets no bound."""
    with private_database("postgresql", tmp_path) as url:
        given = {} if setting is None else {"store_call_timeout": setting}
        settings = Settings(database_url=url, models_dir=tmp_path / "models", **given)
        with TestClient(create_app(settings, preload=False)) as c:
            store = c.app.state.fraudlens.store.get()  # type: ignore[attr-defined]
            watch = store._watch
            assert (watch.bound if watch is not None else None) == bound
            assert "fraudlens_store_calls_cut_total 0.0" in c.get("/metrics").text
