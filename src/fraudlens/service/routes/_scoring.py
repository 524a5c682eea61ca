"""Scoring steps shared by the SageMaker and v1 routers: model lookup, the one scoring
path of :mod:`fraudlens.scoring`, metrics. Blocking work runs in the thread pool."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool

from fraudlens.errors import DataError
from fraudlens.scoring import CardScores, MarketScores, score_cards, score_market
from fraudlens.service._parse import (
    MAX_EXPLAIN_ROWS,
    card_matrix,
    market_data,
    market_model_key,
    name_card_column,
)

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.config import Settings
    from fraudlens.service._middleware import Metrics
    from fraudlens.service._schemas import MarketScoreRequest
    from fraudlens.service._state import ImageGate, ServiceModels, WorkGate

__all__ = [
    "HEAVY_MARKET_ACCOUNTS",
    "cards_scored",
    "image_scored",
    "market_records",
    "market_scored",
]

R = TypeVar("R")

# Bodies up to this size (a few card rows) are scored on the event loop: cheaper than a
# hop to the thread pool. Larger work goes to the pool so the loop stays free.
INLINE_BYTES = 4096
#: Market requests of more accounts than this take a slot of the service's market gate
#: (:class:`~fraudlens.service._state.WorkGate`) while they are scored.
HEAVY_MARKET_ACCOUNTS = 100


async def run(inline: bool, func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``func(*args)`` on the event loop when ``inline``, else in the thread pool."""
    return func(*args, **kwargs) if inline else await run_in_threadpool(func, *args, **kwargs)


def _cards(
    classifier: Detector | None,
    anomaly: Detector | None,
    text: str | None,
    rows: Any,
    explain: bool = False,
    top: int = 3,
) -> CardScores:
    shape = classifier if classifier is not None else anomaly
    assert shape is not None
    X = card_matrix(shape, text, rows)
    if explain and classifier is not None and len(X) > MAX_EXPLAIN_ROWS:
        raise DataError(
            f"explain is limited to {MAX_EXPLAIN_ROWS:,} rows per request, got {len(X):,}: "
            "send the rows to explain in smaller requests, or explain=false",
            column="explain",
        )
    try:
        return score_cards(classifier, X, anomaly=anomaly, explain=explain, top=top)
    except DataError as exc:
        raise name_card_column(exc, shape) from None


async def cards_scored(
    metrics: Metrics,
    classifier: Detector | None,
    anomaly: Detector | None,
    *,
    text: str | None = None,
    rows: list[Any] | None = None,
    inline: bool = False,
    explain: bool = False,
    top: int = 3,
) -> CardScores:
    """Card rows (CSV ``text``, numeric ``rows`` or ``{feature: value}`` rows) scored
    through :func:`score_cards`, with the classifier's top reasons when ``explain``."""
    res = await run(inline, _cards, classifier, anomaly, text, rows, explain, top)
    for version in res.models:
        metrics.scored.labels(version).inc(len(res))
    return res


async def market_scored(
    models: ServiceModels,
    settings: Settings,
    metrics: Metrics,
    req: MarketScoreRequest,
    *,
    explain: bool,
    gate: WorkGate,
) -> MarketScores:
    """A market request scored through :func:`score_market` (its default model if the
    request names none), with the trades behind each score when ``explain``. A request
    of more than :data:`HEAVY_MARKET_ACCOUNTS` accounts is scored in one of ``gate``'s
    slots."""
    # Bad input is answered 422 whether or not a model is trained: parse first.
    data = await run_in_threadpool(market_data, req, settings.window_hours)
    det = await models.get(market_model_key(req.model))
    heavy = len(data.account_ids) > HEAVY_MARKET_ACCOUNTS
    async with gate.slot() if heavy else nullcontext():
        res = await run_in_threadpool(lambda: score_market(det, data, explain=explain, top=req.top))
    metrics.scored.labels(res.model).inc(len(res))
    return res


def market_records(res: MarketScores) -> list[dict[str, Any]]:
    """The reply's records of a market score (:meth:`MarketScores.records`).

    JSON has no infinity: prices and quantities that each pass validation can still add
    up past the largest float (value moved, a trade's reason figures). Such a request is
    refused (DataError, 422) naming the account and field, not answered with a 500.
    """
    records = res.records()
    for rec in records:
        where = _non_finite(rec)
        if where is not None:
            raise DataError(
                f"account {rec.get('account_id')!r}: {where} is not a finite number; the "
                "trades' prices and quantities are too large to add up",
                file="trades",
                column=where.split(".", 1)[0].split("[", 1)[0],
            )
    return records


def _non_finite(obj: Any, path: str = "") -> str | None:
    """Where in a JSON-like value a float is NaN or infinite (``"trades[2].delta"``)."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else path or "value"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            found = _non_finite(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


async def image_scored(
    models: ServiceModels, images: ImageGate, metrics: Metrics, body: bytes
) -> tuple[list[float], str]:
    """``[p_takeover, p_normal]`` of one encoded image, and the model's ``name:version``.

    The pixel limit is checked from the header first, outside the decode slots, so an
    oversized image is refused at once even when every slot is busy; at most
    ``images.concurrency`` images are then decoded and scored at a time.
    """
    from fraudlens._images import check_image
    from fraudlens.scoring import model_id

    # The header first: an oversized image is refused whether or not a CNN is trained.
    await run_in_threadpool(check_image, body, max_pixels=images.max_pixels)
    det = await models.get("market-cnn")
    async with images.slot():
        probs = await run_in_threadpool(
            det.score_image_bytes,  # type: ignore[attr-defined]
            body,
            max_pixels=images.max_pixels,
        )
    version = model_id(det)
    metrics.scored.labels(version).inc()
    return [float(p) for p in probs], version
