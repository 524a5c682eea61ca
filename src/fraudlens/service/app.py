"""The scoring service: ``create_app`` wires state, routers, middleware and error handlers.

Routes (one router module per resource in :mod:`fraudlens.service.routes`):

``GET /ping`` (health)
    200 when every model in the registry loads, else 503 with the reason per model
    (SageMaker's health check).
``GET /metrics`` (health)
    Prometheus text: request counts and latency by route, loaded model versions.
``POST /invocations`` (sagemaker)
    SageMaker's inference contract: an image (market CNN, ``[p_takeover, p_normal]``),
    JSON trades and bars (market scores) or CSV card rows, by Content-Type.
``POST /v1/cards/score`` (cards)
    The reference REST API's card scoring: classifier, anomaly model or both.
``POST /v1/market/score`` (market)
    Per-account scores with the trades behind each.
``POST /v1/accounts/{account_id}/check``, ``GET /v1/risk-events``,
``GET /v1/risk-events/{id}``, ``POST /v1/risk-events/{id}/review`` (risk_events)
    Account checks onto the queue; risk events for analysts.
``GET /review`` (review)
    The analysts' review page (``/`` redirects there).
``GET /docs`` (docs)
    Swagger UI, served from a package (no CDN).

Every score goes through :mod:`fraudlens.scoring` (one flag rule: ``score > threshold``).
Every error is JSON ``{"error", "detail"}``, decided in :mod:`fraudlens.service._errors`:
bad input 4xx (415 content type, 400 unreadable body, 408 body too slow, 413 body or
image too large, 422 bad values with row and column, 404 unknown record), 503 when a
model is missing or cannot be loaded or the store or queue cannot be reached. Images
are refused from their header when they declare more than ``max_image_pixels`` pixels,
and at most ``image_decoders`` are decoded at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from fraudlens.config import Settings, get_settings
from fraudlens.model_cache import ModelCache, serving_threads
from fraudlens.service._auth import install_auth
from fraudlens.service._errors import install_error_handlers
from fraudlens.service._middleware import (
    BODY_IDLE_SECONDS,
    BODY_SECONDS,
    LARGE_BODY_QUEUE,
    LARGE_BODY_SLOTS,
    LARGE_BODY_WAIT_SECONDS,
    BodyLimitMiddleware,
    HeadMiddleware,
    Metrics,
    MetricsMiddleware,
)
from fraudlens.service._monitor import Monitor
from fraudlens.service._state import ImageGate, Lazy, ServiceModels, ServiceState, WorkGate
from fraudlens.service.routes import ROUTERS

if TYPE_CHECKING:
    from fraudlens.queues import Queue
    from fraudlens.sinks import Sink
    from fraudlens.store import Store

__all__ = ["DEFAULT_IMAGE_DECODERS", "DEFAULT_MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("fraudlens.service")

#: Request body limit when the settings do not give one (the setting's default).
DEFAULT_MAX_BODY_BYTES: int = Settings.model_fields["max_body_bytes"].default
#: Images decoded at the same time when the settings do not say (the setting's default).
DEFAULT_IMAGE_DECODERS: int = Settings.model_fields["image_decoders"].default
# Models loaded at startup (errors are left for the requests that need them).
_PRELOAD = ("cards-classifier", "cards-anomaly", "market")


def create_app(
    settings: Settings | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    *,
    max_body_bytes: int | None = None,
    max_image_pixels: int | None = None,
    image_decoders: int | None = None,
    sink: Sink | None = None,
    check_seconds: float = 1.0,
    preload: bool = True,
    store: Store | None = None,
    queue: Queue | None = None,
    body_idle_seconds: float = BODY_IDLE_SECONDS,
    body_seconds: float = BODY_SECONDS,
    large_body_slots: int = LARGE_BODY_SLOTS,
    large_body_wait_seconds: float = LARGE_BODY_WAIT_SECONDS,
    large_body_queue: int = LARGE_BODY_QUEUE,
) -> FastAPI:
    """Build the scoring service.

    Parameters
    ----------
    settings
        Configuration; :func:`~fraudlens.config.get_settings` by default.
    models_dir
        Registry folder; ``settings.models_dir`` by default.
    max_body_bytes
        Request body limit; ``settings.max_body_bytes`` (5 MiB by default) if None.
    max_image_pixels
        Largest image decoded (width x height, read from the header before decoding);
        ``settings.max_image_pixels`` (``FRAUDLENS_MAX_IMAGE_PIXELS``, 4 megapixels by
        default) if None.
    image_decoders
        Images decoded at the same time; ``settings.image_decoders``
        (``FRAUDLENS_IMAGE_DECODERS``, 2 by default) if None.
    sink
        If given, ``/v1/cards/score`` writes each scored row (with its metadata) to it,
        like the reference API's Firehose stream. The app closes it on shutdown.
    check_seconds
        How often, at most, the registry markers are re-read to pick up a new version.
    preload
        Load the domain default models at startup (errors are left for requests).
    store
        Risk-event store for the ``/v1/risk-events`` routes and the review page. If None,
        ``open_store(settings.database_url)`` on first use, closed at shutdown; a given
        store is left open for its owner.
    queue
        Queue the account checks go to. If None, ``open_queue(settings.queue_url)`` on
        first use, closed at shutdown; a given queue is left open for its owner.
    body_idle_seconds, body_seconds
        A request body that stalls this long, or takes this long in all, gets 408 (15 s
        and 120 s).
    large_body_slots, large_body_wait_seconds
        Requests with bodies over 256 KiB handled at a time (2), and how long one waits
        for a slot before its reply is 503 (30 s); the same for market requests of more
        than 100 accounts while they are scored (a smaller body, as heavy to score).
    large_body_queue
        Such requests let in beyond the slots, being read or waiting for a slot (8); one
        more gets 503 before its body is read.

    Returns
    -------
    fastapi.FastAPI
    """
    settings = settings or get_settings()
    root = Path(models_dir) if models_dir is not None else Path(settings.models_dir)
    metrics = Metrics()
    cache = ModelCache(
        root, check_seconds=check_seconds, on_load=metrics.model_loaded, prepare=serving_threads
    )
    state = ServiceState(
        settings=settings,
        models=ServiceModels(cache),
        metrics=metrics,
        sink=sink,
        store=Lazy(store, lambda: _open_store(settings), "store"),
        queue=Lazy(queue, lambda: _open_queue(settings), "queue"),
        max_body_bytes=_given(max_body_bytes, settings.max_body_bytes),
        images=ImageGate(
            _given(max_image_pixels, settings.max_image_pixels),
            _given(image_decoders, settings.image_decoders),
        ),
        # Market requests of many accounts: as many at a time as large bodies.
        market=WorkGate(
            large_body_slots,
            large_body_wait_seconds,
            name="slot for market requests of many accounts",
            what="market requests of many accounts",
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:
            for key in _PRELOAD:
                try:
                    await run_in_threadpool(cache.get, key)
                except Exception as exc:
                    log.info("not preloading %s: %s", key, exc)
        try:
            yield
        finally:
            if sink is not None:
                sink.close()
            state.store.close()
            state.queue.close()

    app = FastAPI(
        title="fraudlens scoring service",
        version=_version(),
        description=(
            "Scores brokerage accounts (market) and card transactions (cards). "
            "`/ping` and `/invocations` follow the SageMaker hosting contract. "
            "Flags follow one rule: score > threshold."
        ),
        lifespan=lifespan,
        # /docs is served by the docs router from packaged assets; ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.fraudlens = state
    # monitoring snapshots for /monitor, /v1/monitor and the gauges in /metrics
    app.state.fraudlens_monitor = Monitor(state)
    metrics.registry.register(app.state.fraudlens_monitor)
    metrics.registry.register(_StoreCuts(state.store))
    for router in ROUTERS:
        app.include_router(router)
    # Identity checks run last before routing (after the body limit and the metrics).
    install_auth(app, settings, state.store)
    # Outermost first in the chain: metrics see every reply, including a 413.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=state.max_body_bytes,
        idle_seconds=body_idle_seconds,
        total_seconds=body_seconds,
        large_slots=large_body_slots,
        large_wait_seconds=large_body_wait_seconds,
        large_queue=large_body_queue,
    )
    # HEAD is answered as GET without the body (between the metrics and the body limit).
    app.add_middleware(HeadMiddleware)
    # Paths of requests answered before routing (a 413 from the body limit) are labelled
    # by path when it is one of these.
    known_paths = {str(app.openapi_url)} | {
        str(getattr(r, "path", "")) for router in ROUTERS for r in router.routes
    }
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known_paths)
    install_error_handlers(app)
    return app


def _given(given: int | None, setting: int) -> int:
    """An argument of :func:`create_app` when given, else the setting it overrides."""
    return int(setting if given is None else given)


def _version() -> str:
    from fraudlens import __version__

    return __version__


class _StoreCuts:
    """``fraudlens_store_calls_cut_total``: store calls cut for running past
    ``FRAUDLENS_STORE_CALL_TIMEOUT`` (0 until the store is opened)."""

    def __init__(self, store: Lazy[Store]) -> None:
        self._store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        store = self._store.get() if self._store.opened else None
        yield CounterMetricFamily(
            "fraudlens_store_calls_cut",
            "Store calls whose connection was cut after FRAUDLENS_STORE_CALL_TIMEOUT "
            "(a frozen or vanished database server).",
            value=getattr(store, "calls_cut", 0),
        )


def _open_store(settings: Settings) -> Store:
    from fraudlens.store import open_store

    return open_store(settings.database_url, call_timeout=settings.store_call_timeout or None)


def _open_queue(settings: Settings) -> Queue:
    from fraudlens.queues import open_queue

    return open_queue(settings.queue_url)
