"""The scoring service: SageMaker-compatible ``/ping`` + ``/invocations``, and the v1 API.

Routes
------
``GET /ping``
    200 when at least one model in the registry loads, else 503 (SageMaker health check).
``POST /invocations``
    Dispatch on ``Content-Type``:

    - ``image/jpeg``, ``image/png``, ``application/x-image``: the market CNN; reply
      ``[p_takeover, p_normal]`` (class order ``["hacker", "normal"]``, as the reference
      endpoint).
    - ``application/json`` with ``klines`` and ``trades``: the market model; reply
      ``{"model", "threshold", "scores": [{"account_id", "score", "flagged"}]}``.
    - ``text/csv``: headerless card rows. Default reply (Linear Learner style)
      ``{"predictions": [{"score", "predicted_label"}]}``; with ``Accept: text/csv`` or
      ``?format=xgboost``, one probability per line (XGBoost style); with ``?format=rcf`` or
      ``X-Model: anomaly``, ``{"scores": [{"score"}]}`` (Random Cut Forest style) from the
      anomaly model. ``X-Model`` may also name a model (``xgboost``, ``logistic``,
      ``cards-xgboost``, ...).
``POST /v1/cards/score``
    ``{"data": csv | rows, "metadata": [...], "model": "fraud_classifier" |
    "anomaly_detector" | null}``, reply ``{"fraud_classifier": {"pred_proba",
    "prediction"}, "anomaly_detector": {"score"}}`` (the requested model, or both).
``POST /v1/market/score``
    Trades and bars; reply per-account score, flag and the trades that drove the score.
``POST /v1/accounts/{account_id}/check``
    Optional body ``{"business_type"}``. Puts ``{"account_id", "business_type",
    "requested_at"}`` on the checks queue for a worker to score; reply 202 ``{"queued",
    "message_id", "account_id"}``.
``GET /v1/risk-events``
    Filters ``status``, ``account_id``, ``business_type``, ``fraud_type``, ``min_score``,
    ``since``, ``until``; pages with ``limit`` (1..500, default 50) and ``offset``. Reply
    ``{"items", "total", "limit", "offset"}``, newest first.
``GET /v1/risk-events/{id}``
    One risk event, with the trades that drove its score in ``details.trades``.
``POST /v1/risk-events/{id}/review``
    ``{"status": "confirmed" | "dismissed" | "open", "reviewed_by", "note"}``; reply the
    updated event.
``GET /review``
    The analysts' review page (``/`` redirects there): a self-contained HTML page that
    lists, filters and pages risk events and confirms or dismisses them.
``GET /metrics``
    Prometheus text: request counts and latency by route, loaded model versions.

Every error is JSON ``{"error": "...", "detail": ...}``. Bad input gets a 4xx (415 wrong
content type, 400 corrupt image or unreadable body, 422 missing fields or bad values with
row and column, 404 unknown risk event, 413 body over the size limit), a missing model,
an unreachable store or queue 503. The store and the queue are opened from the settings
(``database_url``, ``queue_url``) on first use unless :func:`create_app` is given them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from fraudlens.config import Settings, get_settings
from fraudlens.errors import DataError, FraudlensError, ModelNotFoundError
from fraudlens.model_cache import ModelCache, serving_threads, version_of
from fraudlens.registry import DETECTORS
from fraudlens.service._middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from fraudlens.service._risk import Lazy, install_risk_routes
from fraudlens.service._schemas import (
    AnomalyResult,
    CardScoreRequest,
    CardScoreResponse,
    ErrorResponse,
    FraudClassifierResult,
    MarketAccountScore,
    MarketScoreRequest,
    MarketScoreResponse,
    PingResponse,
)

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.market.data import MarketData
    from fraudlens.queues import Queue
    from fraudlens.sinks import Sink
    from fraudlens.store import Store

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

log = logging.getLogger(__name__)

#: Request body limit when the settings do not give one.
DEFAULT_MAX_BODY_BYTES = 5 * 2**20

# Bodies up to this size (a few card rows) are scored on the event loop.
_INLINE_BYTES = 4096
_IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "application/x-image"})
_JSON_TYPES = frozenset({"application/json"})
_CSV_TYPES = frozenset({"text/csv"})

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Unreadable body or corrupt image"),
        (413, "Body larger than the limit"),
        (415, "Unsupported content type"),
        (422, "Missing fields or bad values (row and column named)"),
        (503, "No model trained for this request"),
    )
}

_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": "0,-1.36,-0.07,...,149.62"},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/MarketScoreRequest"}},
        },
    },
    "parameters": [
        {
            "name": "format",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["linear-learner", "xgboost", "rcf"]},
            "description": "Reply style for text/csv input.",
        },
        {
            "name": "X-Model",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Card model to use: anomaly, xgboost, logistic or a full name.",
        },
    ],
}


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": jsonable_encoder(detail)}, status_code=status)


def _data_error_detail(exc: DataError) -> dict[str, Any]:
    return {"file": exc.file, "row": exc.row, "column": exc.column, "reason": exc.reason}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def create_app(
    settings: Settings | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    *,
    max_body_bytes: int | None = None,
    sink: Sink | None = None,
    check_seconds: float = 1.0,
    preload: bool = True,
    store: Store | None = None,
    queue: Queue | None = None,
) -> FastAPI:
    """Build the scoring service.

    Parameters
    ----------
    settings
        Configuration; :func:`~fraudlens.config.get_settings` by default.
    models_dir
        Registry folder; ``settings.models_dir`` by default.
    max_body_bytes
        Request body limit; ``settings.max_body_bytes`` if that exists, else 5 MiB.
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

    Returns
    -------
    fastapi.FastAPI
    """
    settings = settings or get_settings()
    root = Path(models_dir) if models_dir is not None else Path(settings.models_dir)
    limit = int(
        max_body_bytes
        if max_body_bytes is not None
        else getattr(settings, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    )
    metrics = Metrics()
    risk_store: Lazy[Store] = Lazy(store, lambda: _open_store(settings))
    check_queue: Lazy[Queue] = Lazy(queue, lambda: _open_queue(settings))
    cache = ModelCache(
        root, check_seconds=check_seconds, on_load=metrics.model_loaded, prepare=serving_threads
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:
            for key in ("cards-classifier", "cards-anomaly", "market"):
                try:
                    await run_in_threadpool(cache.get, key)
                except Exception as exc:
                    log.info("not preloading %s: %s", key, exc)
        try:
            yield
        finally:
            if sink is not None:
                sink.close()
            risk_store.close()
            check_queue.close()

    app = FastAPI(
        title="fraudlens scoring service",
        version=_version(),
        description=(
            "Scores brokerage accounts (market) and card transactions (cards). "
            "`/ping` and `/invocations` follow the SageMaker hosting contract."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.models = cache
    app.state.metrics = metrics
    app.state.sink = sink
    app.state.max_body_bytes = limit
    app.state.risk_store = risk_store
    app.state.check_queue = check_queue
    # Outermost first in the chain: metrics see every reply, including a 413.
    app.add_middleware(BodyLimitMiddleware, limit=limit)
    known_paths: set[str] = set()
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known_paths)
    _install_error_handlers(app)

    async def model(key: str) -> Detector:
        # Most requests find the model loaded and fresh: no thread hop for those.
        det = cache.peek(key)
        return det if det is not None else await run_in_threadpool(cache.get, key)

    async def compute(small: bool, func: Callable[..., Any], *args: Any) -> Any:
        # A few rows score in well under a millisecond: cheaper on the event loop than a
        # hop to the thread pool. Larger work goes to the pool so the loop stays free.
        return func(*args) if small else await run_in_threadpool(func, *args)

    async def body_of(request: Request) -> bytes:
        # Reading through the request stream lets BodyLimitMiddleware count the bytes.
        return await request.body()

    # -- health and metrics ----------------------------------------------------------
    @app.get(
        "/ping",
        response_model=PingResponse,
        responses={503: {"model": ErrorResponse}},
        tags=["health"],
    )
    async def ping() -> Any:
        """Healthy when at least one model in the registry can be loaded."""
        names = await run_in_threadpool(cache.names)
        problems: dict[str, str] = {}
        for name in names:
            try:
                await model(name)
                break
            except Exception as exc:
                problems[name] = str(exc)
        loaded = cache.loaded()
        if not loaded:
            return _error(
                503,
                f"no loadable model in registry {cache.root}",
                problems or "the registry is empty; train a model first",
            )
        return {"status": "healthy", "models": loaded}

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus exposition: request counts and latency by route, model versions."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # -- SageMaker contract ----------------------------------------------------------
    @app.post(
        "/invocations",
        tags=["sagemaker"],
        responses=_ERRORS,
        openapi_extra=_INVOCATIONS_BODY,
    )
    async def invocations(request: Request) -> Response:
        """Score an image (market CNN), trades + bars (market) or card rows (CSV)."""
        media = _media_type(request)
        if not media:
            return _error(415, "missing Content-Type", _supported())
        if media not in _IMAGE_TYPES | _JSON_TYPES | _CSV_TYPES:
            return _error(415, f"unsupported Content-Type {media!r}", _supported())
        body = await body_of(request)
        if not body:
            return _error(400, "empty request body", None)
        if media in _IMAGE_TYPES:
            return await _score_image(body)
        if media in _JSON_TYPES:
            req = _parse_json_model(body, MarketScoreRequest)
            reply = await run_in_threadpool(_score_market, req, False)
            return _json(reply.model_dump(exclude_none=True), reply.model)
        return await _score_csv(request, body)

    async def _score_image(body: bytes) -> Response:
        det = await model("market-cnn")
        try:
            probs = await run_in_threadpool(det.score_image_bytes, body)  # type: ignore[attr-defined]
        except DataError as exc:
            return _error(400, f"cannot read the image: {exc.reason}", _data_error_detail(exc))
        metrics.scored.labels(version_of(det)).inc()
        return _json([float(p) for p in probs], version_of(det))

    async def _score_csv(request: Request, body: bytes) -> Response:
        fmt = request.query_params.get("format", "").lower()
        wanted = request.headers.get("x-model", "").strip().lower()
        if fmt and fmt not in ("linear-learner", "xgboost", "rcf"):
            return _error(
                422, f"unknown format {fmt!r}", {"allowed": ["linear-learner", "xgboost", "rcf"]}
            )
        anomaly = fmt == "rcf" or wanted in ("anomaly", "cards-anomaly", "rcf", "anomaly_detector")
        if anomaly:
            key = "cards-anomaly"
        elif wanted:
            key = wanted if wanted.startswith("cards-") else f"cards-{wanted}"
            if key not in DETECTORS:
                known = sorted(
                    n.removeprefix("cards-") for n in DETECTORS if n.startswith("cards-")
                )
                return _error(422, f"unknown card model {wanted!r} in X-Model", {"known": known})
        else:
            key = "cards-classifier"
        det = await model(key)
        text = _decode(body)
        scores = await compute(len(body) <= _INLINE_BYTES, _card_scores, det, text)
        metrics.scored.labels(version_of(det)).inc(len(scores))
        if anomaly:
            return _json({"scores": [{"score": float(s)} for s in scores]}, version_of(det))
        accept = request.headers.get("accept", "").lower()
        if fmt == "xgboost" or (fmt == "" and "text/csv" in accept):
            text_out = "\n".join(repr(float(s)) for s in scores) + "\n"
            return Response(text_out, media_type="text/csv", headers=_version_header(det))
        labels = (scores > det.threshold_).astype(int)
        preds = [
            {"score": float(s), "predicted_label": int(lbl)}
            for s, lbl in zip(scores, labels, strict=True)
        ]
        return _json({"predictions": preds}, version_of(det))

    # -- v1 API ----------------------------------------------------------------------
    @app.post(
        "/v1/cards/score",
        response_model=CardScoreResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
        tags=["cards"],
    )
    async def cards_score(req: CardScoreRequest) -> Any:
        """Score card rows with the fraud classifier, the anomaly detector, or both."""
        wanted = [req.model] if req.model else ["fraud_classifier", "anomaly_detector"]
        text = req.data if isinstance(req.data, str) else None
        rows = None if isinstance(req.data, str) else req.data
        out = CardScoreResponse()
        n_rows = 0
        versions = []
        if "fraud_classifier" in wanted:
            det = await model("cards-classifier")
            p = await run_in_threadpool(_card_scores, det, text, rows)
            out.fraud_classifier = FraudClassifierResult(
                pred_proba=[float(v) for v in p],
                prediction=[int(v) for v in (p > det.threshold_)],
            )
            n_rows = len(p)
            versions.append(version_of(det))
            metrics.scored.labels(version_of(det)).inc(len(p))
        if "anomaly_detector" in wanted:
            det = await model("cards-anomaly")
            s = await run_in_threadpool(_card_scores, det, text, rows)
            out.anomaly_detector = AnomalyResult(score=[float(v) for v in s])
            n_rows = len(s)
            versions.append(version_of(det))
            metrics.scored.labels(version_of(det)).inc(len(s))
        meta = _align_metadata(req.metadata, n_rows)
        if sink is not None:
            await run_in_threadpool(sink.put_many, _sink_rows(out, meta, versions))
        return JSONResponse(
            out.model_dump(exclude_none=True), headers={"X-Model-Version": ",".join(versions)}
        )

    @app.post(
        "/v1/market/score",
        response_model=MarketScoreResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
        tags=["market"],
    )
    async def market_score(req: MarketScoreRequest) -> Any:
        """Score each account's trades in its window; return the trades behind each score."""
        reply = await run_in_threadpool(_score_market, req, True)
        return _json(reply.model_dump(exclude_none=True), reply.model)

    # -- helpers that close over the cache --------------------------------------------
    def _score_market(req: MarketScoreRequest, explain: bool) -> MarketScoreResponse:
        data = _market_data(req, settings.window_hours)
        key = req.model or "market"
        key = key if key.startswith("market") else f"market-{key}"
        det = cache.get(key)
        scores = np.asarray(det.decision_function(data), dtype=np.float64)
        ids = [str(a) for a in data.account_ids]
        drivers: dict[str, list[dict[str, Any]]] = {}
        if explain and req.top > 0:
            from fraudlens.market.explain import explain_batch

            drivers = explain_batch(data, ids, top=req.top)
        metrics.scored.labels(version_of(det)).inc(len(ids))
        threshold = float(det.threshold_)
        return MarketScoreResponse(
            model=version_of(det),
            threshold=threshold,
            scores=[
                MarketAccountScore(
                    account_id=a,
                    score=float(s),
                    flagged=bool(s >= threshold),
                    trades=jsonable_encoder(drivers.get(a, [])) if explain else None,
                )
                for a, s in zip(ids, scores, strict=True)
            ],
        )

    install_risk_routes(app, risk_store, check_queue)

    # Filled now that the routes exist; the middleware reads it per request.
    known_paths.update(str(getattr(r, "path", "")) for r in app.routes)
    return app


# ---------------------------------------------------------------------------- helpers


def _version() -> str:
    from fraudlens import __version__

    return __version__


def _open_store(settings: Settings) -> Store:
    from fraudlens.store import open_store

    return open_store(settings.database_url)


def _open_queue(settings: Settings) -> Queue:
    from fraudlens.queues import open_queue

    return open_queue(settings.queue_url)


def _supported() -> dict[str, list[str]]:
    return {"supported": sorted(_IMAGE_TYPES | _JSON_TYPES | _CSV_TYPES)}


def _version_header(det: Detector) -> dict[str, str]:
    return {"X-Model-Version": version_of(det)}


def _json(content: Any, version: str) -> JSONResponse:
    return JSONResponse(content, headers={"X-Model-Version": version})


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"the body is not UTF-8 text (byte {exc.start})") from None


def _parse_json_model(body: bytes, model: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _card_scores(
    det: Detector, text: str | None, rows: list[list[float]] | None = None
) -> np.ndarray:
    """Scores of headerless CSV text or numeric rows, in the detector's feature order."""
    names = list(getattr(det, "feature_names_", []))
    if text is not None:
        X = _fast_csv(text, len(names))
        if X is None:
            from fraudlens.cards.data import read_csv_rows

            # The slow path names the row and column of whatever the fast one choked on.
            X = read_csv_rows(text, len(names))
    else:
        assert rows is not None
        if not rows:
            raise DataError("no rows in data")
        for i, row in enumerate(rows):
            if len(row) != len(names):
                raise DataError(f"expected {len(names)} values, got {len(row)}", row=i + 1)
        X = np.asarray(rows, dtype=np.float64)
    try:
        return np.asarray(det.decision_function(X), dtype=np.float64)
    except DataError as exc:
        if exc.column is not None and exc.column in names:
            # Name the position too: CSV senders think in positions, not feature names.
            raise DataError(
                exc.reason, row=exc.row, column=f"{names.index(exc.column) + 1} ({exc.column})"
            ) from None
        raise


def _fast_csv(text: str, n_features: int) -> np.ndarray | None:
    """Parse clean numeric CSV rows with numpy alone (a single row in microseconds).

    Returns None on anything unusual (wrong width, a token that is not a plain finite
    number), so the caller falls back to the validating parser.
    """
    if "_" in text or len(text) > 1 << 16:
        return None
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    if not rows or any(len(r) != n_features for r in rows):
        return None
    try:
        X = np.array(rows, dtype=np.float64)
    except ValueError:
        return None
    return X if np.isfinite(X).all() else None


def _align_metadata(metadata: list[Any] | None, n_rows: int) -> list[Any]:
    if metadata is None:
        return [None] * n_rows
    if len(metadata) == n_rows:
        return list(metadata)
    if n_rows == 1:
        # One row: the reference sends a flat metadata list.
        return [metadata]
    raise DataError(
        f"metadata has {len(metadata)} items for {n_rows} rows; send one item per row",
        column="metadata",
    )


def _sink_rows(
    out: CardScoreResponse, meta: list[Any], versions: list[str]
) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    rows = []
    for i, m in enumerate(meta):
        row: dict[str, Any] = {"timestamp": now}
        if isinstance(m, dict):
            row.update({str(k): v for k, v in m.items()})
        elif m is not None:
            row["metadata"] = json.dumps(m)
        if out.fraud_classifier is not None:
            row["prediction"] = out.fraud_classifier.prediction[i]
            row["score"] = out.fraud_classifier.pred_proba[i]
        if out.anomaly_detector is not None:
            row["anomaly_score"] = out.anomaly_detector.score[i]
        row["model"] = ",".join(versions)
        rows.append(row)
    return rows


def _market_data(req: MarketScoreRequest, window_hours: float) -> MarketData:
    import pandas as pd

    from fraudlens.market.data import MarketData, validate_klines, validate_trades, window

    if not req.trades:
        raise DataError("no trades", column="trades")
    if not req.klines:
        raise DataError("no klines", column="klines")
    klines = validate_klines(pd.DataFrame.from_records(req.klines), "klines")
    trades = validate_trades(pd.DataFrame.from_records(req.trades), "trades", klines=klines)
    return window(MarketData(klines, trades), hours=window_hours)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail
        error = detail if isinstance(detail, str) else "request failed"
        if exc.status_code == 413:
            return _error(413, error, {"limit": request.app.state.max_body_bytes})
        return _error(exc.status_code, error, None if isinstance(detail, str) else detail)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return _error(400, "the body is not valid JSON", errors)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return _error(422, f"{where}: {first['msg']}", errors)

    async def data_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DataError)
        return _error(422, str(exc), _data_error_detail(exc))

    async def model_missing(request: Request, exc: Exception) -> Response:
        return _error(503, str(exc), None)

    async def other_fraudlens_error(request: Request, exc: Exception) -> Response:
        return _error(400, str(exc), None)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error", type(exc).__name__)

    handlers: dict[Any, Callable[..., Any]] = {
        HTTPException: http_error,
        RequestValidationError: validation_error,
        DataError: data_error,
        ModelNotFoundError: model_missing,
        FraudlensError: other_fraudlens_error,
        Exception: internal_error,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
