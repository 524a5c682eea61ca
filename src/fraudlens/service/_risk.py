"""Risk-event routes and the analysts' review page.

The store and the queue are blocking clients, so every call goes through the thread pool.
Both are opened from the settings on first use unless the app was given them, and only what
was opened here is closed at shutdown: an injected store or queue belongs to its caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Protocol, TypeVar

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from fraudlens.errors import ConfigError, DataError, NotFoundError, QueueError, StoreError
from fraudlens.service._schemas import (
    AccountCheckQueued,
    AccountCheckRequest,
    ErrorResponse,
    ReviewRequest,
    RiskEvent,
    RiskEventPage,
)

if TYPE_CHECKING:
    from fraudlens.queues import Queue
    from fraudlens.store import Store

__all__ = ["Lazy", "UnavailableError", "install_risk_routes"]

# Largest id any backend's integer key can hold: bigger ids cannot exist, and sending them to
# PostgreSQL would be an "out of range" error instead of a 404.
_MAX_ID = 2**31 - 1
# The store's account_id column width: a longer id can match nothing.
_ACCOUNT_CHARS = 64
_STATIC = "static"
_PAGE_FILES = {
    "review.js": "text/javascript; charset=utf-8",
    "review.css": "text/css; charset=utf-8",
}
# The page loads only its own script and stylesheet and talks only to this API.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_RISK_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No risk event with this id"},
    422: {"model": ErrorResponse, "description": "Bad filter, status or reviewer"},
    503: {"model": ErrorResponse, "description": "The store cannot be reached"},
}


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
    """

    def __init__(self, given: T | None, opener: Callable[[], T]) -> None:
        self._value = given
        self._opener = opener
        self._owned = False
        self._lock = threading.Lock()

    def get(self) -> T:
        """Return the resource, opening it now if needed (blocking)."""
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                self._value = self._opener()
                self._owned = True
            return self._value

    def close(self) -> None:
        """Close the resource if it was opened here."""
        with self._lock:
            if self._owned and self._value is not None:
                value, self._value, self._owned = self._value, None, False
                value.close()


class UnavailableError(Exception):
    """The store or the queue cannot serve the request (reply 503 with the reason)."""

    def __init__(self, what: str, exc: Exception) -> None:
        text = str(exc).strip()
        self.reason = (text.splitlines()[0] if text else type(exc).__name__)[:500]
        self.what = what
        lowered = self.reason.lower()
        missing_table = (
            "no such table" in lowered
            or "doesn't exist" in lowered
            or ("relation" in lowered and "does not exist" in lowered)
        )
        self.hint = (
            "the database has no fraudlens tables yet: run `fraudlens db upgrade`"
            if missing_table
            else None
        )
        super().__init__(f"the {what} is unavailable: {self.reason}")


async def _unavailable_reply(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnavailableError)
    detail = {"reason": exc.reason, "hint": exc.hint}
    return JSONResponse({"error": f"the {exc.what} is unavailable", "detail": detail}, 503)


async def _store_call(store: Lazy[Store], method: str, *args: Any, **kwargs: Any) -> Any:
    def run() -> Any:
        return getattr(store.get(), method)(*args, **kwargs)

    try:
        return await run_in_threadpool(run)
    except (ConfigError, StoreError) as exc:
        raise UnavailableError("risk-event store", exc) from exc
    except Exception as exc:
        # Driver and connection failures (SQLAlchemy's whole hierarchy) are the server's
        # problem, not the request's: 503 with the reason, never a bare 500.
        if type(exc).__module__.split(".", 1)[0] == "sqlalchemy":
            raise UnavailableError("risk-event store", exc) from exc
        raise


def _utc(value: datetime | None) -> datetime | None:
    # A timestamp without a zone means UTC throughout fraudlens.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _page_file(name: str) -> bytes:
    return resources.files("fraudlens.service").joinpath(_STATIC, name).read_bytes()


def install_risk_routes(app: FastAPI, store: Lazy[Store], queue: Lazy[Queue]) -> None:
    """Add the account-check, risk-event and review-page routes to ``app``."""
    app.add_exception_handler(UnavailableError, _unavailable_reply)

    @app.post(
        "/v1/accounts/{account_id}/check",
        status_code=202,
        response_model=AccountCheckQueued,
        responses={
            422: {"model": ErrorResponse, "description": "Bad account id or body"},
            503: {"model": ErrorResponse, "description": "The queue cannot be reached"},
        },
        tags=["risk events"],
    )
    async def check_account(
        account_id: Annotated[
            str,
            Path(min_length=1, max_length=_ACCOUNT_CHARS, description="Account to score."),
        ],
        body: Annotated[AccountCheckRequest | None, Body()] = None,
    ) -> Any:
        """Ask for an account to be scored: a worker takes the message from the queue,
        scores the account's latest window and records a risk event if it is flagged."""
        from fraudlens.checks import check_message

        message = check_message(account_id, body.business_type if body is not None else None)

        def send() -> str:
            return queue.get().send(message)

        try:
            message_id = await run_in_threadpool(send)
        except (QueueError, ConfigError) as exc:
            raise UnavailableError("queue", exc) from exc
        return JSONResponse(
            AccountCheckQueued(message_id=str(message_id), account_id=account_id).model_dump(),
            status_code=202,
        )

    @app.get(
        "/v1/risk-events",
        response_model=RiskEventPage,
        responses=_RISK_ERRORS,
        tags=["risk events"],
    )
    async def list_risk_events(
        status: Annotated[
            Literal["open", "confirmed", "dismissed"] | None,
            Query(description="Only events in this review state."),
        ] = None,
        account_id: Annotated[
            str | None,
            Query(min_length=1, max_length=_ACCOUNT_CHARS, description="Exact account id."),
        ] = None,
        business_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        fraud_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        min_score: Annotated[
            float | None, Query(allow_inf_nan=False, description="Score at least this.")
        ] = None,
        since: Annotated[
            datetime | None,
            Query(description="Recorded at or after this time (ISO-8601; UTC if no zone)."),
        ] = None,
        until: Annotated[
            datetime | None,
            Query(description="Recorded before this time (ISO-8601; UTC if no zone)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
        offset: Annotated[int, Query(ge=0, le=10**9, description="Events to skip.")] = 0,
    ) -> Any:
        """Risk events matching every filter given, newest first, one page at a time."""
        lo, hi = _utc(since), _utc(until)
        if lo is not None and hi is not None and lo > hi:
            raise DataError(f"since ({lo.isoformat()}) is after until ({hi.isoformat()})")
        items, total = await _store_call(
            store,
            "list_risk_events",
            status=status,
            account_id=account_id,
            business_type=business_type,
            fraud_type=fraud_type,
            min_score=min_score,
            since=lo,
            until=hi,
            limit=limit,
            offset=offset,
        )
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get(
        "/v1/risk-events/{event_id}",
        response_model=RiskEvent,
        responses=_RISK_ERRORS,
        tags=["risk events"],
    )
    async def get_risk_event(event_id: Annotated[int, Path(ge=1)]) -> Any:
        """One risk event with the trades that drove its score."""
        event = None
        if event_id <= _MAX_ID:
            event = await _store_call(store, "get_risk_event", event_id)
        if event is None:
            raise HTTPException(404, f"no risk event with id {event_id}")
        return event

    @app.post(
        "/v1/risk-events/{event_id}/review",
        response_model=RiskEvent,
        responses=_RISK_ERRORS,
        tags=["risk events"],
    )
    async def review_risk_event(event_id: Annotated[int, Path(ge=1)], review: ReviewRequest) -> Any:
        """Record an analyst's decision (confirmed, dismissed, or back to open)."""
        if event_id > _MAX_ID:
            raise HTTPException(404, f"no risk event with id {event_id}")
        try:
            return await _store_call(
                store,
                "review_risk_event",
                event_id,
                status=review.status,
                reviewed_by=review.reviewed_by,
                note=review.note,
            )
        except NotFoundError:
            raise HTTPException(404, f"no risk event with id {event_id}") from None

    # -- the review page -------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/review", status_code=307)

    @app.get("/review", include_in_schema=False)
    async def review_page() -> Response:
        html = await run_in_threadpool(_page_file, "review.html")
        return Response(html, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    for name, media in _PAGE_FILES.items():
        app.add_api_route(
            f"/review/{name}", _static(name, media), methods=["GET"], include_in_schema=False
        )


def _static(name: str, media: str) -> Callable[[], Any]:
    async def serve() -> Response:
        content = await run_in_threadpool(_page_file, name)
        return Response(content, media_type=media, headers=_PAGE_HEADERS)

    return serve
