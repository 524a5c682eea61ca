"""Account checks onto the queue, and the risk events analysts review.

- ``POST /v1/accounts/{account_id}/check``: queue a check of the account for the worker.
- ``GET /v1/risk-events``: filtered, sorted (by priority unless told otherwise),
  paginated.
- ``GET /v1/risk-events/export``: the same events, filters and order as a CSV file for a
  spreadsheet (streamed; text that would run as a formula is quoted).
- ``GET /v1/risk-events/{event_id}``: one event with the trades behind its score.
- ``POST /v1/risk-events/{event_id}/review``: an analyst's decision.
- ``POST /v1/reviews``: one decision and note on several events (all or none).
- ``POST /v1/assignments``: assign several events to a user, or to nobody (all or none;
  taking another user's events needs ``force``). Not under ``/v1/risk-events/``, where
  ``GET /v1/risk-events/{event_id}`` would take every other method's request for it.
- ``GET /v1/risk-events/{event_id}/picture.svg``: the account's trades over its bars.

The store and the queue are blocking clients: every call goes through the thread pool.
Their failures are answered 503 by the service's error handlers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from fraudlens._csvsafe import RISK_EVENT_COLUMNS, csv_chunks, risk_event_row
from fraudlens._ids import ID_PATTERN, MAX_SYMBOL_LENGTH
from fraudlens._time import utc, utcnow
from fraudlens.errors import DataError, NotFoundError
from fraudlens.service._auth import actor_for
from fraudlens.service._responses import error_docs
from fraudlens.service._schemas import (
    AccountCheckQueued,
    AccountCheckRequest,
    AccountId,
    AssignRequest,
    AssignResult,
    BulkReviewRequest,
    BulkReviewResult,
    IsoTime,
    Label,
    Name,
    ReviewRequest,
    RiskEvent,
    RiskEventDetail,
    RiskEventPage,
)
from fraudlens.service.deps import (
    ForAnalysts,
    ForAnyRole,
    ForServices,
    ModelsDep,
    QueueDep,
    StoreDep,
    UserDep,
)

#: Keys of ``sort`` (the store's :data:`fraudlens.store._triage.SORT_KEYS`, repeated here
#: so that importing the routes does not load SQLAlchemy; a test keeps them equal).
SORT_KEYS = (
    "priority",
    "score",
    "value_moved",
    "created_at",
    "window_end",
    "account_id",
    "counterparty",
    "id",
)
# Every accepted ``sort`` value, so the schema lists them and anything else is a 422.
if TYPE_CHECKING:
    SortKey = str
else:
    SortKey = Literal[tuple(k for key in SORT_KEYS for k in (f"-{key}", key))]
#: A ticker symbol, as the store keeps it.
Symbol = Annotated[str, Field(min_length=1, max_length=MAX_SYMBOL_LENGTH, pattern=ID_PATTERN)]

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["risk events"])

# Largest id any backend's integer key can hold: bigger ids cannot exist, and sending them to
# PostgreSQL would be an "out of range" error instead of a 404.
_MAX_EVENT_ID = 2**31 - 1

_EVENT_ERRORS = error_docs(
    404, 422, 503, _404="No risk event with this id", _422="Bad filter, status or reviewer"
)


@router.post(
    "/accounts/{account_id}/check",
    dependencies=[ForServices],
    status_code=202,
    response_model=AccountCheckQueued,
    responses=error_docs(
        400,
        408,
        413,
        415,
        422,
        503,
        _422="Bad account id or body",
        _503="The queue cannot be reached",
    ),
)
async def check_account(
    account_id: Annotated[AccountId, Path(description="Account to score.")],
    queue: QueueDep,
    body: Annotated[AccountCheckRequest | None, Body()] = None,
) -> Any:
    """Ask for an account to be scored: a worker takes the message from the queue,
    scores the account's latest window and records a risk event if it is flagged."""
    from fraudlens.checks import check_message

    message = check_message(account_id, body.business_type if body is not None else None)
    message_id = await run_in_threadpool(queue.send, message)
    return JSONResponse(
        # The id as queued (blanks around it stripped), which the risk event will carry.
        AccountCheckQueued(
            message_id=str(message_id), account_id=message["account_id"]
        ).model_dump(),
        status_code=202,
    )


@dataclass(frozen=True)
class TriageFilters:
    """The filters and order of a triage query, as the list and the export take them
    (the keyword arguments of :meth:`fraudlens.store.Store.list_risk_events`)."""

    status: str | None = None
    account_id: str | None = None
    business_type: str | None = None
    fraud_type: str | None = None
    min_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    account_prefix: str | None = None
    symbol: str | None = None
    counterparty: str | None = None
    min_value_moved: float | None = None
    assignee: str | None = None
    unassigned: bool = False
    sort: str = "-priority"

    def filters(self) -> dict[str, Any]:
        """The filters alone (without ``sort``), as the store's keyword arguments."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        del out["sort"]
        return out


def triage_filters(
    status: Annotated[
        Literal["open", "confirmed", "dismissed"] | None,
        Query(description="Only events in this review state."),
    ] = None,
    account_id: Annotated[AccountId | None, Query(description="Exact account id.")] = None,
    business_type: Annotated[Label | None, Query()] = None,
    fraud_type: Annotated[Label | None, Query()] = None,
    min_score: Annotated[
        float | None, Query(allow_inf_nan=False, description="Score at least this.")
    ] = None,
    since: Annotated[
        IsoTime | None,
        Query(description="Recorded at or after this time (ISO-8601; UTC if no zone)."),
    ] = None,
    until: Annotated[
        IsoTime | None,
        Query(description="Recorded before this time (ISO-8601; UTC if no zone)."),
    ] = None,
    account_prefix: Annotated[
        AccountId | None,
        Query(
            description="Account ids that start with this (``%`` and ``_`` match only themselves)."
        ),
    ] = None,
    symbol: Annotated[
        Symbol | None, Query(description="Events whose evidence trades this symbol.")
    ] = None,
    counterparty: Annotated[
        AccountId | None, Query(description="Events naming this suspected counterparty.")
    ] = None,
    min_value_moved: Annotated[
        float | None,
        Query(allow_inf_nan=False, description="Value moved at least this (quote currency)."),
    ] = None,
    sort: Annotated[
        SortKey,
        Query(
            description="Order: a key, ``-`` first for descending. ``-priority`` (the "
            "default) puts the largest expected value at risk (score x value moved) first, "
            "then the highest score; every order ends with the id."
        ),
    ] = "-priority",
    assignee: Annotated[
        Name | None,
        Query(
            description="Events assigned to this user; ``me``: to the caller (a signed-in "
            "user or a token's user)."
        ),
    ] = None,
    unassigned: Annotated[
        bool, Query(description="Only events assigned to nobody (not with ``assignee``).")
    ] = False,
    user: UserDep = None,
) -> TriageFilters:
    """The triage filters and order of a request (one list of query parameters for every
    route that reads events this way); DataError (422) when ``since`` is after ``until``,
    ``assignee=me`` comes from nobody, or ``assignee`` comes with ``unassigned``."""
    try:
        lo, hi = utc(since), utc(until)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: past year 9999 in UTC
        raise DataError("since or until lies outside years 1-9999 in UTC") from None
    if lo is not None and hi is not None and lo > hi:
        raise DataError(f"since ({lo.isoformat()}) is after until ({hi.isoformat()})")
    if assignee is not None and unassigned:
        raise DataError("assignee and unassigned exclude each other: give one", column="assignee")
    if assignee == "me":
        if user is None:
            raise DataError(
                "assignee=me needs a signed-in caller (authentication is off): name the user",
                column="assignee",
            )
        assignee = user.username
    return TriageFilters(
        status=status,
        account_id=account_id,
        business_type=business_type,
        fraud_type=fraud_type,
        min_score=min_score,
        since=lo,
        until=hi,
        account_prefix=account_prefix,
        symbol=symbol,
        counterparty=counterparty,
        min_value_moved=min_value_moved,
        assignee=assignee,
        unassigned=unassigned,
        sort=sort,
    )


TriageFiltersDep = Annotated[TriageFilters, Depends(triage_filters)]


@router.get(
    "/risk-events",
    response_model=RiskEventPage,
    responses=_EVENT_ERRORS,
    dependencies=[ForAnyRole],
)
async def list_risk_events(
    store: StoreDep,
    triage: TriageFiltersDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9, description="Events to skip.")] = 0,
) -> Any:
    """Risk events matching every filter given, in ``sort`` order, one page at a time."""
    items, total = await run_in_threadpool(
        lambda: store.list_risk_events(
            **triage.filters(), limit=limit, offset=offset, sort=triage.sort
        )
    )
    return {"items": items, "total": total, "limit": limit, "offset": offset}


#: Rows an export holds unless ``max_rows`` asks for fewer, and the most it may ask for.
EXPORT_ROWS = 100_000
MAX_EXPORT_ROWS = 1_000_000
#: Events read from the store at a time while an export streams.
EXPORT_PAGE = 1000


@router.get(
    "/risk-events/export",
    response_class=StreamingResponse,
    dependencies=[ForAnyRole],
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "The events as CSV, a header row first. Text a spreadsheet "
            "would run as a formula starts with a single quote. ``X-Fraudlens-Total``: "
            "the events that match; ``X-Fraudlens-Truncated: true`` when that is more "
            "than ``max_rows``, which is then how many the file holds.",
        },
        **error_docs(422, 503, _422="Bad filter or sort"),
    },
)
async def export_risk_events(
    store: StoreDep,
    triage: TriageFiltersDep,
    max_rows: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_EXPORT_ROWS,
            description=f"Most events to write (at most {MAX_EXPORT_ROWS:,}).",
        ),
    ] = EXPORT_ROWS,
) -> StreamingResponse:
    """The risk events of the triage list (the filters and ``sort`` of
    ``GET /v1/risk-events``) as a CSV file for a spreadsheet: one row an event, in
    ``sort`` order, every event that matches up to ``max_rows``.

    Text that a spreadsheet would read as a formula (it starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return) is written with a single quote before it; numbers
    are written as numbers. The file is streamed as it is read from the store, a
    thousand events at a time, each page continuing where the last ended."""
    filters = triage.filters()
    total = await run_in_threadpool(lambda: store.count_risk_events(**filters))
    # The first page before the reply starts: a store that fails now is a 503, not a
    # cut file.
    first = await run_in_threadpool(
        lambda: store.risk_events_after(
            None, limit=min(EXPORT_PAGE, max_rows), sort=triage.sort, **filters
        )
    )

    def batches() -> Iterator[list[list[Any]]]:
        items, after = first
        asked, written = min(EXPORT_PAGE, max_rows), 0
        while True:
            written += len(items)
            yield [risk_event_row(e) for e in items]
            if len(items) < asked or written >= max_rows:
                return
            asked = min(EXPORT_PAGE, max_rows - written)
            # A page that fails now ends the file early: the reply has begun, so the
            # connection is closed without the chunked ending, which clients report.
            items, after = store.risk_events_after(after, limit=asked, sort=triage.sort, **filters)

    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Content-Disposition": f'attachment; filename="risk-events-{stamp}.csv"',
        "X-Fraudlens-Total": str(total),
        "X-Fraudlens-Truncated": "true" if total > max_rows else "false",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
    header = [name for name, _key in RISK_EVENT_COLUMNS]
    # a sync iterator: Starlette reads it in the thread pool, one batch (a store page) at
    # a time, so the store's blocking calls stay off the event loop
    return StreamingResponse(
        csv_chunks(header, batches()), media_type="text/csv; charset=utf-8", headers=headers
    )


@router.get(
    "/risk-events/{event_id}",
    response_model=RiskEventDetail,
    responses=_EVENT_ERRORS,
    dependencies=[ForAnyRole],
)
async def get_risk_event(event_id: Annotated[int, Path(ge=1)], store: StoreDep) -> Any:
    """One risk event with the trades that drove its score, and its review history
    (every decision, oldest first: who, when, from which status to which, note)."""
    event = None
    if event_id <= _MAX_EVENT_ID:
        event = await run_in_threadpool(store.get_risk_event, event_id)
    if event is None:
        raise HTTPException(404, f"no risk event with id {event_id}")
    history = await run_in_threadpool(store.review_history, event_id)
    return {**event, "history": [h.as_dict() for h in history]}


@router.post(
    "/risk-events/{event_id}/review",
    response_model=RiskEvent,
    responses={**_EVENT_ERRORS, **error_docs(400, 408, 413, 415)},
    dependencies=[ForAnalysts],
)
async def review_risk_event(
    event_id: Annotated[int, Path(ge=1)], review: ReviewRequest, store: StoreDep, user: UserDep
) -> Any:
    """Record an analyst's decision (confirmed, dismissed, or back to open) in the
    caller's name, and append it to the event's history."""
    if event_id > _MAX_EVENT_ID:
        raise HTTPException(404, f"no risk event with id {event_id}")
    actor, user_id = actor_for(user, review.reviewed_by)
    try:
        return await run_in_threadpool(
            lambda: store.review_risk_event(
                event_id, status=review.status, reviewed_by=actor, note=review.note, user_id=user_id
            )
        )
    except NotFoundError:
        raise HTTPException(404, f"no risk event with id {event_id}") from None


def _distinct_event_ids(ids: list[int]) -> list[int]:
    """``ids`` once each, in the order given; 404 naming the first beyond any id the store
    can hold (a bulk request's ids, checked before the store is asked)."""
    unique = list(dict.fromkeys(ids))
    too_big = [i for i in unique if i > _MAX_EVENT_ID]
    if too_big:
        raise HTTPException(404, f"no risk event with id {too_big[0]}")
    return unique


@router.post(
    "/reviews",
    response_model=BulkReviewResult,
    dependencies=[ForAnalysts],
    responses={
        **_EVENT_ERRORS,
        **error_docs(400, 408, 413, 415, _404="Some id names no risk event (nothing was changed)"),
    },
)
async def review_risk_events(review: BulkReviewRequest, store: StoreDep, user: UserDep) -> Any:
    """Record one decision, with one note, on several events: all of them or, when an
    id is unknown, none. Each event's history gets its own entry; an id given twice is
    decided once."""
    actor, user_id = actor_for(user, review.reviewed_by)
    unique = _distinct_event_ids(review.ids)
    try:
        ids = await run_in_threadpool(
            lambda: store.review_risk_events(
                unique,
                status=review.status,
                reviewed_by=actor,
                note=review.note,
                user_id=user_id,
            )
        )
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"status": review.status, "ids": ids, "reviewed_by": actor}


@router.post(
    "/assignments",
    response_model=AssignResult,
    dependencies=[ForAnalysts],
    responses={
        **error_docs(
            400,
            404,
            408,
            409,
            413,
            415,
            422,
            503,
            _404="Some id names no risk event (nothing was changed)",
            _409="Some event is assigned to another user and force was not sent (nothing "
            "was changed; the message names the holders)",
            _422="Bad body, or the assignee is no user, a disabled one or a service account",
        ),
    },
)
async def assign_risk_events(assign: AssignRequest, store: StoreDep, user: UserDep) -> Any:
    """Assign events to a user, so that two analysts do not work the same alert, or to
    nobody (``assignee: null``): all of them or, when an id is unknown, none. Each change
    appends an ``assign`` entry to the event's history (status unchanged, from and to
    assignee, the note); reviewing an event later keeps its assignee. Events held by a
    user other than the caller and the new assignee are taken only with ``force``."""
    from fraudlens.store._triage import AssignedElsewhereError

    actor, user_id = actor_for(user, assign.assigned_by, column="assigned_by")
    unique = _distinct_event_ids(assign.ids)
    try:
        changed = await run_in_threadpool(
            lambda: store.assign_risk_events(
                unique,
                assign.assignee,
                actor=actor,
                user_id=user_id,
                note=assign.note,
                force=assign.force,
            )
        )
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AssignedElsewhereError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"ids": unique, "changed": changed, "assignee": assign.assignee, "assigned_by": actor}


#: The picture loads nothing and runs nothing; its one image is inline.
_PICTURE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _cnn_style(registry: Any, model_version: Any) -> str | None:
    """The image style of the CNN that scored an event (``market-cnn:vNNNN``), else of
    the active CNN; None (the default look) when neither can be read."""
    from fraudlens.market.detectors import CNNDetector
    from fraudlens.market.render import STYLES

    scored_by, _, scored_version = str(model_version or "").partition(":")
    tried: list[str | None] = [None]  # the active version
    if scored_by == CNNDetector.name and scored_version:
        tried.insert(0, scored_version)
    for version in tried:
        try:
            style = CNNDetector.recorded_style(registry.get(CNNDetector.name, version).metadata)
        except Exception:  # no such model, or unreadable: the next, or the default
            continue
        if style in STYLES and style != "reference":
            return str(style)
    return None


@router.get(
    "/risk-events/{event_id}/picture.svg",
    response_class=Response,
    dependencies=[ForAnyRole],
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "The picture (SVG)."},
        **_EVENT_ERRORS,
    },
)
async def risk_event_picture(
    event_id: Annotated[int, Path(ge=1)], store: StoreDep, models: ModelsDep
) -> Response:
    """The account's trades over the bars of its window, drawn by the server: matched
    round trips joined, the counterparty's mirrored trades ringed, and the detector's own
    image of the account beneath (:mod:`fraudlens.market.picture`), in the look of the
    CNN that scored the event, else of the active CNN, else the CNN's default look."""
    event = None
    if event_id <= _MAX_EVENT_ID:
        event = await run_in_threadpool(store.get_risk_event, event_id)
    if event is None:
        raise HTTPException(404, f"no risk event with id {event_id}")

    def draw() -> str:
        from fraudlens.market.picture import account_picture_svg

        account, counterparty = event["account_id"], event.get("counterparty")
        start = datetime.fromisoformat(event["window_start"])
        end = datetime.fromisoformat(event["window_end"])
        accounts = [account] + ([counterparty] if counterparty else [])
        data = store.trades_between(accounts, start, end)
        return account_picture_svg(
            data,
            account,
            counterparty=counterparty,
            title=f"Risk event #{event_id}: account {account}",
            style=_cnn_style(models.cache.registry, event.get("model_version")),
        )

    svg = await run_in_threadpool(draw)
    return Response(svg, media_type="image/svg+xml", headers=_PICTURE_HEADERS)
