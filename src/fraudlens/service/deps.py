"""Dependencies of the routes, as ``Annotated`` types.

A route declares what it needs in its signature (``store: StoreDep``) and FastAPI hands
it over; nothing is read from module globals. Each dependency is a small function, so a
new one (an authenticated user for the state-changing routes, say) is one more function
and one more ``Annotated`` alias here, added to the routes that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from fraudlens.config import Settings
from fraudlens.service._middleware import Metrics
from fraudlens.service._state import ImageGate, ServiceModels, ServiceState

if TYPE_CHECKING:
    from fraudlens.queues import Queue
    from fraudlens.sinks import Sink
    from fraudlens.store import Store

__all__ = [
    "ImagesDep",
    "MetricsDep",
    "ModelsDep",
    "QueueDep",
    "SettingsDep",
    "SinkDep",
    "StateDep",
    "StoreDep",
    "get_queue",
    "get_state",
    "get_store",
]


def get_state(request: Request) -> ServiceState:
    """The state of the app serving ``request``."""
    state: ServiceState = request.app.state.fraudlens
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    """The app's settings."""
    return state.settings


def get_models(state: StateDep) -> ServiceModels:
    """The app's model cache."""
    return state.models


def get_metrics(state: StateDep) -> Metrics:
    """The app's Prometheus collectors."""
    return state.metrics


def get_sink(state: StateDep) -> Sink | None:
    """Where scored card rows go, if anywhere."""
    return state.sink


def get_images(state: StateDep) -> ImageGate:
    """Image size limit and decode slots."""
    return state.images


async def get_store(state: StateDep) -> Store:
    """The risk-event store, opened on first use (UnavailableError if it cannot be)."""
    return await state.store.aget()


async def get_queue(state: StateDep) -> Queue:
    """The account-check queue, opened on first use (UnavailableError if it cannot be)."""
    return await state.queue.aget()


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ServiceModels, Depends(get_models)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ImagesDep = Annotated[ImageGate, Depends(get_images)]
if TYPE_CHECKING:
    SinkDep = Annotated[Sink | None, Depends(get_sink)]
    StoreDep = Annotated[Store, Depends(get_store)]
    QueueDep = Annotated[Queue, Depends(get_queue)]
else:
    # At run time the store, queue and sink classes are not imported here (SQLAlchemy and
    # the queue clients load only when a route first opens one); FastAPI needs only the
    # dependency function.
    SinkDep = Annotated[Any, Depends(get_sink)]
    StoreDep = Annotated[Any, Depends(get_store)]
    QueueDep = Annotated[Any, Depends(get_queue)]
