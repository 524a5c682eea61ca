"""What one service instance holds: settings, models, metrics, sink, store and queue.

:func:`~fraudlens.service.app.create_app` builds one :class:`ServiceState` and keeps it in
``app.state.fraudlens``; routes get its parts through the dependencies of
:mod:`fraudlens.service.deps`, never from module globals, so several apps (tests) can live
in one process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from starlette.concurrency import run_in_threadpool

from fraudlens.errors import ConfigError, MissingDependencyError, UnavailableError

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.config import Settings
    from fraudlens.model_cache import ModelCache
    from fraudlens.queues import Queue
    from fraudlens.service._middleware import Metrics
    from fraudlens.sinks import Sink
    from fraudlens.store import Store

__all__ = ["ImageGate", "Lazy", "ServiceModels", "ServiceState", "WorkGate"]


class _Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=_Closable)


class Lazy(Generic[T]):
    """A resource given by the caller, or opened on first use and closed by :meth:`close`.

    Parameters
    ----------
    given
        The caller's instance (never closed here), or None to open one with ``opener``.
    opener
        Opens the resource; called at most once at a time, from a worker thread.
    what
        What the resource is (``"store"``, ``"queue"``): names it in errors.
    """

    def __init__(self, given: T | None, opener: Callable[[], T], what: str) -> None:
        self._value = given
        self._opener = opener
        self._owned = False
        self._lock = threading.Lock()
        self.what = what

    @property
    def opened(self) -> bool:
        """Whether the resource is open (given, or opened here and not closed)."""
        return self._value is not None

    def get(self) -> T:
        """Return the resource, opening it now if needed (blocking).

        Raises
        ------
        UnavailableError
            If it cannot be opened (bad URL, server down), with the reason.
        """
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                try:
                    self._value = self._opener()
                except (UnavailableError, MissingDependencyError):
                    raise
                except ConfigError as exc:
                    raise UnavailableError(str(exc), what=self.what) from exc
                except Exception as exc:
                    # A driver's connection error: the server's problem, not the request's.
                    raise UnavailableError(
                        f"cannot open the {self.what}: {_first_line(exc)}", what=self.what
                    ) from exc
                self._owned = True
            return self._value

    async def aget(self) -> T:
        """:meth:`get` off the event loop when the resource still has to be opened."""
        value = self._value
        return value if value is not None else await run_in_threadpool(self.get)

    def close(self) -> None:
        """Close the resource if it was opened here."""
        with self._lock:
            if self._owned and self._value is not None:
                value, self._value, self._owned = self._value, None, False
                value.close()


class ServiceModels:
    """The model cache, seen from the event loop.

    Most requests find their model loaded and fresh, and get it without a thread hop;
    otherwise it is loaded (or re-checked against the registry) in the thread pool.
    """

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    async def get(self, key: str) -> Detector:
        """The detector for ``key`` (see :meth:`ModelCache.get
        <fraudlens.model_cache.ModelCache.get>`).

        Raises
        ------
        ModelNotFoundError
            No such model trained.
        UnavailableError
            The active version cannot be loaded.
        """
        det = self.cache.peek(key)
        return det if det is not None else await run_in_threadpool(self.cache.get, key)


class WorkGate:
    """How many heavy requests are worked at the same time.

    A request takes a slot for its work (:meth:`slot`); one that finds none free within
    ``wait_seconds`` is refused (UnavailableError: 503, "every <name> (<slots>) stayed
    busy ..."). The service has two: the image decode slots (:class:`ImageGate`) and the
    market requests of many accounts. A market request of 2,000 accounts is a body of
    about 230 KB, under the body limit's "large" size, but holds about 30 MB while it is
    scored: forty at once (the thread pool's size) had taken a server from 350 MB to
    1.5 GB.

    Parameters
    ----------
    slots
        Heavy requests worked at the same time.
    wait_seconds
        How long a request waits for a slot.
    name
        What one slot is, in the refusal (e.g. "slot for market requests of many
        accounts").
    what
        What is unavailable, the refusal's ``what``.
    """

    def __init__(
        self,
        slots: int,
        wait_seconds: float,
        *,
        name: str,
        what: str,
    ) -> None:
        self.slots = max(1, int(slots))
        self.wait_seconds = float(wait_seconds)
        self.name = name
        self.what = what
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def semaphore(self) -> asyncio.Semaphore:
        """The slots (created in the running event loop on first use)."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        return self._semaphore

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block; UnavailableError if none is free in time."""
        try:
            await asyncio.wait_for(self.semaphore.acquire(), self.wait_seconds)
        except TimeoutError:
            raise UnavailableError(
                f"every {self.name} ({self.slots}) stayed busy for "
                f"{self.wait_seconds:.0f} s; retry later",
                what=self.what,
            ) from None
        try:
            yield
        finally:
            self.semaphore.release()


#: How long an image waits for a decode slot before the reply is 503.
IMAGE_DECODE_WAIT_SECONDS = 10.0


class ImageGate(WorkGate):
    """How large an image may be, and how many are decoded at once (a :class:`WorkGate`
    whose slots are the decode slots, waited for :data:`IMAGE_DECODE_WAIT_SECONDS`).

    Parameters
    ----------
    max_pixels
        Largest image decoded (read from the header before decoding).
    concurrency
        Images decoded and scored at the same time; further requests wait their turn.
    """

    def __init__(self, max_pixels: int, concurrency: int) -> None:
        super().__init__(
            concurrency,
            IMAGE_DECODE_WAIT_SECONDS,
            name="image decode slot",
            what="image decoder",
        )
        self.max_pixels = int(max_pixels)

    @property
    def concurrency(self) -> int:
        """Images decoded and scored at the same time."""
        return self.slots


@dataclass
class ServiceState:
    """Everything the routes of one app share."""

    settings: Settings
    models: ServiceModels
    metrics: Metrics
    sink: Sink | None
    store: Lazy[Store]
    queue: Lazy[Queue]
    max_body_bytes: int
    images: ImageGate
    market: WorkGate


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]
