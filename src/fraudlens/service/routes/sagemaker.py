"""``POST /invocations``: the SageMaker inference contract, dispatched on Content-Type.

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
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from fraudlens._images import ImageTooLargeError
from fraudlens.errors import DataError
from fraudlens.registry import DETECTORS
from fraudlens.service._errors import error_reply
from fraudlens.service._parse import decode_text, media_type
from fraudlens.service._responses import error_docs, model_reply
from fraudlens.service._schemas import CARD_ROW_EXAMPLE, MarketScoreRequest
from fraudlens.service.deps import (
    ForServices,
    ImagesDep,
    MarketGateDep,
    MetricsDep,
    ModelsDep,
    SettingsDep,
)
from fraudlens.service.routes._scoring import (
    INLINE_BYTES,
    cards_scored,
    image_scored,
    market_records,
    market_scored,
)

__all__ = ["router"]

# Machines score: a service token when authentication is on.
router = APIRouter(tags=["sagemaker"], dependencies=[ForServices])

IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "application/x-image"})
JSON_TYPES = frozenset({"application/json"})
CSV_TYPES = frozenset({"text/csv"})
FORMATS = ("linear-learner", "xgboost", "rcf")
_ANOMALY_NAMES = frozenset({"anomaly", "cards-anomaly", "rcf", "anomaly_detector"})

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "minLength": 1}, "example": CARD_ROW_EXAMPLE},
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
            "schema": {"type": "string", "enum": list(FORMATS)},
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


def _supported() -> dict[str, list[str]]:
    return {"supported": sorted(IMAGE_TYPES | JSON_TYPES | CSV_TYPES)}


_REPLIES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Scores: ``[p_takeover, p_normal]`` for an image; ``{model, threshold, "
        "scores}`` for market JSON; ``{predictions}`` or ``{scores}`` for card CSV, or one "
        "probability per line as text/csv (``Accept: text/csv`` or ``format=xgboost``).",
        "content": {
            "application/json": {"schema": {}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
    **error_docs(400, 408, 413, 415, 422, 503),
}


@router.post("/invocations", responses=_REPLIES, openapi_extra=_BODY)
async def invocations(
    request: Request,
    models: ModelsDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    images: ImagesDep,
    gate: MarketGateDep,
) -> Response:
    """Score an image (market CNN), trades + bars (market) or card rows (CSV)."""
    media = media_type(request)
    if not media:
        return error_reply(415, "missing Content-Type", _supported())
    if media not in IMAGE_TYPES | JSON_TYPES | CSV_TYPES:
        return error_reply(415, f"unsupported Content-Type {media!r}", _supported())
    # Reading through the request stream lets the body-limit middleware count the bytes.
    body = await request.body()
    if not body:
        return error_reply(400, "empty request body", None)
    if media in IMAGE_TYPES:
        try:
            probs, version = await image_scored(models, images, metrics, body)
        except ImageTooLargeError:
            raise  # 413, from the error handlers
        except DataError as exc:
            # A corrupt or foreign body is unreadable (400), not a bad value in a table.
            return error_reply(400, f"cannot read the image: {exc.reason}", None)
        return model_reply(probs, version)
    if media in JSON_TYPES:
        try:
            # A leading byte-order mark is ignored, as the JSON routes' own parser
            # (json.loads on bytes) does, so one body reads the same on either route.
            req = MarketScoreRequest.model_validate_json(body.removeprefix(b"\xef\xbb\xbf"))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        res = await market_scored(models, settings, metrics, req, explain=False, gate=gate)
        content = {"model": res.model, "threshold": res.threshold, "scores": market_records(res)}
        return model_reply(content, res.model)
    return await _csv(request, body, models, metrics)


async def _csv(request: Request, body: bytes, models: Any, metrics: Any) -> Response:
    fmt = request.query_params.get("format", "").lower()
    wanted = request.headers.get("x-model", "").strip().lower()
    if fmt and fmt not in FORMATS:
        return error_reply(422, f"unknown format {fmt!r}", {"allowed": list(FORMATS)})
    anomaly = fmt == "rcf" or wanted in _ANOMALY_NAMES
    if anomaly:
        key = "cards-anomaly"
    elif wanted:
        key = wanted if wanted.startswith("cards-") else f"cards-{wanted}"
        if key not in DETECTORS:
            known = sorted(n.removeprefix("cards-") for n in DETECTORS if n.startswith("cards-"))
            return error_reply(422, f"unknown card model {wanted!r} in X-Model", {"known": known})
    else:
        key = "cards-classifier"
    det = await models.get(key)
    text = decode_text(body)
    inline = len(body) <= INLINE_BYTES
    if anomaly:
        res = await cards_scored(metrics, None, det, text=text, inline=inline)
        assert res.anomaly_scores is not None
        return model_reply(
            {"scores": [{"score": s} for s in res.anomaly_scores.tolist()]}, res.model
        )
    res = await cards_scored(metrics, det, None, text=text, inline=inline)
    assert res.scores is not None
    accept = request.headers.get("accept", "").lower()
    if fmt == "xgboost" or (fmt == "" and "text/csv" in accept):
        text_out = "\n".join(repr(s) for s in res.scores.tolist()) + "\n"
        return Response(text_out, media_type="text/csv", headers={"X-Model-Version": res.model})
    preds = [
        {"score": s, "predicted_label": int(f)}
        for s, f in zip(res.scores.tolist(), res.flagged.tolist(), strict=True)
    ]
    return model_reply({"predictions": preds}, res.model)
