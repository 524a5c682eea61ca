"""``GET /ping`` (SageMaker's health check) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fraudlens.errors import FraudlensError
from fraudlens.registry import DETECTORS
from fraudlens.service._errors import error_reply
from fraudlens.service._responses import error_docs
from fraudlens.service._schemas import PingResponse
from fraudlens.service.deps import ForEveryone, MetricsDep, ModelsDep

__all__ = ["router"]

# Open to anyone: load balancers and Prometheus carry no credentials.
router = APIRouter(tags=["health"], dependencies=[ForEveryone])


@router.get(
    "/ping",
    response_model=PingResponse,
    responses=error_docs(503, _503="A model cannot be loaded, or none is trained"),
)
async def ping(models: ModelsDep) -> Any:
    """Healthy when every model in the registry loads (its active version).

    A corrupt or unloadable active model makes the container unhealthy (503, with the
    reason per model), so an orchestrator does not send traffic it would fail.
    """
    names = [n for n in await run_in_threadpool(models.cache.names) if n in DETECTORS]
    if not names:
        return error_reply(
            503,
            f"no loadable model in registry {models.cache.root}",
            "the registry is empty; train a model first",
        )
    problems: dict[str, str] = {}
    for name in names:
        try:
            await models.get(name)
        except FraudlensError as exc:
            problems[name] = str(exc)
    if problems:
        return error_reply(
            503,
            f"{len(problems)} of {len(names)} models in registry {models.cache.root} "
            "cannot be loaded",
            problems,
        )
    return {"status": "healthy", "models": models.cache.loaded()}


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition: request counts and latency by route, model versions."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
