"""``POST /v1/market/score``: per-account scores and the trades that drove each score."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fraudlens.service._responses import error_docs, model_reply
from fraudlens.service._schemas import MarketScoreRequest, MarketScoreResponse
from fraudlens.service.deps import ForServices, MarketGateDep, MetricsDep, ModelsDep, SettingsDep
from fraudlens.service.routes._scoring import market_records, market_scored

__all__ = ["router"]

# Machines score: a service token when authentication is on.
router = APIRouter(prefix="/v1/market", tags=["market"], dependencies=[ForServices])


@router.post(
    "/score",
    response_model=MarketScoreResponse,
    response_model_exclude_none=True,
    responses=error_docs(400, 408, 413, 415, 422, 503),
)
async def market_score(
    req: MarketScoreRequest,
    models: ModelsDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    gate: MarketGateDep,
) -> Any:
    """Score each account's trades in its window (the 24 h ending at its latest trade);
    return the ``top`` trades behind each score. ``flagged``: score above the model's own
    threshold."""
    res = await market_scored(models, settings, metrics, req, explain=True, gate=gate)
    content = {"model": res.model, "threshold": res.threshold, "scores": market_records(res)}
    return model_reply(content, res.model)
