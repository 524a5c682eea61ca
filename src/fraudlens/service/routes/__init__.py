"""One :class:`fastapi.APIRouter` per resource; :func:`~fraudlens.service.app.create_app`
includes them all, in :data:`ROUTERS` order."""

from __future__ import annotations

from fastapi import APIRouter

from fraudlens.service.routes import (
    auth,
    cards,
    docs,
    health,
    market,
    monitor,
    review,
    risk_events,
    sagemaker,
)

__all__ = ["ROUTERS"]

#: Every router of the service.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    sagemaker.router,
    cards.router,
    market.router,
    risk_events.router,
    review.router,
    monitor.router,
    docs.router,
    auth.router,
)
