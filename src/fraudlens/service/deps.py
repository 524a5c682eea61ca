"""Dependencies of the routes, as ``Annotated`` types.

A route declares what it needs in its signature (``store: StoreDep``) and FastAPI hands
it over; nothing is read from module globals. Each dependency is a small function, so a
new one is one more function and one more ``Annotated`` alias here, added to the routes
that need it.

Every route also declares who may call it, with one of ``ForEveryone``,
``ForAnalysts``, ``ForServices`` or ``ForAnyRole`` (or ``Depends(require_role(...))``)
in its ``dependencies``; the service refuses a route that declares none whenever
authentication is on (:mod:`fraudlens.service._auth`). ``UserDep`` is the caller: the
signed-in user or the API token's user, None when authentication is off and the caller
sent neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from fraudlens.auth import ADMIN, ANALYST, SERVICE, User
from fraudlens.config import Settings
from fraudlens.service._auth import PUBLIC, identity_of, require_role
from fraudlens.service._middleware import Metrics
from fraudlens.service._state import ImageGate, ServiceModels, ServiceState, WorkGate

if TYPE_CHECKING:
    from fraudlens.queues import Queue
    from fraudlens.sinks import Sink
    from fraudlens.store import Store

__all__ = [
    "ForAnalysts",
    "ForAnyRole",
    "ForEveryone",
    "ForServices",
    "ImagesDep",
    "MarketGateDep",
    "MetricsDep",
    "ModelsDep",
    "QueueDep",
    "SettingsDep",
    "SinkDep",
    "StateDep",
    "StoreDep",
    "UserDep",
    "get_queue",
    "get_state",
    "get_store",
    "get_user",
    "require_role",
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


def get_market_gate(state: StateDep) -> WorkGate:
    """Slots for market requests of many accounts."""
    return state.market


async def get_store(state: StateDep) -> Store:
    """The risk-event store, opened on first use (UnavailableError if it cannot be)."""
    return await state.store.aget()


async def get_queue(state: StateDep) -> Queue:
    """The account-check queue, opened on first use (UnavailableError if it cannot be)."""
    return await state.queue.aget()


def get_user(request: Request) -> User | None:
    """The caller (None: anonymous, which only a service with authentication off admits)."""
    ident = identity_of(request)
    return ident.user if ident is not None else None


#: Access policies, for a route's ``dependencies=[...]``.
ForEveryone = Depends(PUBLIC)
ForAnalysts = Depends(require_role(ANALYST, ADMIN))
ForServices = Depends(require_role(SERVICE))
ForAnyRole = Depends(require_role(ANALYST, ADMIN, SERVICE))

UserDep = Annotated[User | None, Depends(get_user)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ServiceModels, Depends(get_models)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ImagesDep = Annotated[ImageGate, Depends(get_images)]
MarketGateDep = Annotated[WorkGate, Depends(get_market_gate)]
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
