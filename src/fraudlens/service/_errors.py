"""Every error reply of the service, decided in one place.

Each reply is JSON ``{"error": sentence, "detail": ...}``. The exception tree of
:mod:`fraudlens.errors` maps to statuses as follows:

======================================  ======  ==========================================
exception                               status  detail
======================================  ======  ==========================================
``ImageTooLargeError``                  413     width, height, max_pixels
``DataError``                           422     file, row, column, reason
``NotFoundError``                       404
``ModelNotFoundError``                  503     (no model trained for the request)
``StoreError`` / ``UnavailableError``   503     reason, and a hint when one is known
``QueueError``, ``ConfigError``,        503     reason
``MissingDependencyError``
any other ``FraudlensError``            400
``HTTPException``                       its own (413 body limit, 404 unknown path, ...)
``RequestValidationError``              422     (400 when the body is not JSON at all;
                                                415 when a JSON route's body is sent as
                                                another type)
``ClientDisconnect``                    499     (the client left; nothing is sent)
anything else                           500     the exception's class name, logged
======================================  ======  ==========================================

A body that cannot be parsed at all gets 400 saying why (nested too deeply, a number of
thousands of digits, not UTF-8), not the framework's bare "error parsing the body".

SQLAlchemy errors that reach this far (the store maps its own; a store given by a caller
may not) count as the store being unavailable, never as a bad request.

A 503 for an outage (the store, queue or sink unreachable, no free slot for a large
request) carries ``Retry-After`` (:data:`RETRY_AFTER_SECONDS`), as the large-body gate's
503s do: the client may try again. A 503 for what waiting will not mend (no model
trained, a missing extra, a bad setting) does not.

A 4xx reply repeats little of what the client sent (:func:`clip_echoes`, shared with the
card processor's dead-letter reasons in :mod:`fraudlens._echo`, applied by
:func:`error_reply` to every string of a 4xx reply, keys included): a quoted value or
a run of text without blanks longer than :data:`MAX_ECHO_CHARS` characters is cut there
with an ellipsis, a whole string is cut at :data:`MAX_REPLY_CHARS`, and a 422 lists at
most :data:`MAX_ERRORS` validation errors (``"n_errors"`` in the last one's place says
how many there were). A 5 MB body of bad values used to get a 100 MB reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fraudlens._echo import MAX_ECHO_CHARS, MAX_REPLY_CHARS, clip_echoes
from fraudlens._images import ImageTooLargeError
from fraudlens.errors import (
    ConfigError,
    DataError,
    FraudlensError,
    MissingDependencyError,
    ModelNotFoundError,
    NotFoundError,
    QueueError,
    StoreError,
    UnavailableError,
)

__all__ = [
    "MAX_ECHO_CHARS",
    "MAX_ERRORS",
    "MAX_REPLY_CHARS",
    "clip_echoes",
    "error_reply",
    "exception_reply",
    "install_error_handlers",
    "reply_for",
]

log = logging.getLogger("fraudlens.service")

_WHAT = {"store": "the risk-event store", "queue": "the queue", "sink": "the sink"}


#: Most validation errors a 422 reply lists.
MAX_ERRORS = 20


def _clip_all(value: Any) -> Any:
    if isinstance(value, str):
        return clip_echoes(value)
    if isinstance(value, dict):
        return {clip_echoes(str(k)): _clip_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clip_all(v) for v in value]
    return value


def error_reply(status: int, error: str, detail: Any = None) -> JSONResponse:
    """The JSON error reply ``{"error", "detail"}``; a 4xx reply's strings are cut by
    :func:`clip_echoes`."""
    content = {"error": error, "detail": jsonable_encoder(detail)}
    if status < 500:
        content = _clip_all(content)
    return JSONResponse(content, status_code=status)


#: Seconds an outage's 503 asks the client to wait before trying again.
RETRY_AFTER_SECONDS = 5


def _retry_later(response: Response) -> Response:
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def exception_reply(exc: FraudlensError, where: str = "") -> Response:
    """The reply to an exception of the fraudlens tree, wherever it is caught (the
    error handlers, the identity check before routing, the sign-in form): an outage's
    503 carries ``Retry-After`` and is logged (with ``where``, the request's method and
    path), as every outage's 503 is."""
    status, error, detail = reply_for(exc)
    if status >= 500:
        log.warning("%s: %s", where or "request", exc)
    reply = error_reply(status, error, detail)
    if status == 503 and isinstance(exc, StoreError | UnavailableError | QueueError):
        return _retry_later(reply)
    return reply


def data_error_detail(exc: DataError) -> dict[str, Any]:
    """Where the bad value is: file, row, column and what is wrong."""
    return {"file": exc.file, "row": exc.row, "column": exc.column, "reason": exc.reason}


def reply_for(exc: FraudlensError) -> tuple[int, str, Any]:
    """Status, error sentence and detail for an exception of the fraudlens tree."""
    if isinstance(exc, ImageTooLargeError):
        size = {"width": exc.width, "height": exc.height, "max_pixels": exc.max_pixels}
        return 413, str(exc), size
    if isinstance(exc, DataError):
        return 422, str(exc), data_error_detail(exc)
    if isinstance(exc, NotFoundError):
        return 404, str(exc), None
    if isinstance(exc, ModelNotFoundError):
        return 503, str(exc), None
    if isinstance(exc, StoreError | UnavailableError | QueueError):
        what = getattr(exc, "what", None)
        if isinstance(exc, StoreError):
            what = "store"
        elif isinstance(exc, QueueError):
            what = "queue"
        reason = _first_line(exc)
        if what in _WHAT:
            return 503, f"{_WHAT[what]} is unavailable", {"reason": reason, "hint": _hint(reason)}
        return 503, str(exc), {"reason": reason, "what": what}
    if isinstance(exc, ConfigError | MissingDependencyError):
        return 503, f"the service cannot serve this request: {_first_line(exc)}", None
    return 400, str(exc), None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


def _hint(reason: str) -> str | None:
    lowered = reason.lower()
    if (
        "no such table" in lowered
        or "doesn't exist" in lowered
        or ("relation" in lowered and "does not exist" in lowered)
        or "fraudlens db upgrade" in lowered
    ):
        return "the database has no fraudlens tables yet: run `fraudlens db upgrade`"
    return None


def _message(error: Any) -> Any:
    if error.get("type") == "string_pattern_mismatch":
        # The patterns are the id and text rules; their regex says little to a client.
        return (
            "contains a character that is not allowed (a control or invisible formatting "
            "character), or nothing but blanks"
        )
    return error.get("msg")


#: FastAPI's reply when a JSON body cannot be read for a reason other than bad syntax.
_FASTAPI_PARSE_ERROR = "There was an error parsing the body"
#: Media types FastAPI reads as JSON for a route with a JSON body.
_JSON_SUFFIX = "+json"
# Validation errors that say the whole body is not an object: for a body that is not
# JSON at all (a text/plain body, or none), FastAPI validates the raw bytes.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def _parse_failure(exc: BaseException | None) -> str:
    """Why a JSON body could not be parsed, for FastAPI's generic 400."""
    if isinstance(exc, RecursionError):
        return "the body's JSON is nested too deeply to read"
    if isinstance(exc, UnicodeDecodeError):
        return f"the body is not UTF-8 text (byte {exc.start})"
    if isinstance(exc, ValueError) and "digits" in str(exc):
        # int("9" * 5000): Python refuses integers of more than 4,300 digits.
        return "a number in the body has too many digits to read"
    return "the body could not be read as JSON"


def _is_json_media(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith(_JSON_SUFFIX)
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into a JSON reply."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc.__cause__, ClientDisconnect):
            return await client_gone(request, exc.__cause__)
        detail = exc.detail
        if exc.status_code == 400 and detail == _FASTAPI_PARSE_ERROR:
            detail = _parse_failure(exc.__cause__)
        error = detail if isinstance(detail, str) else "request failed"
        extra = None if isinstance(detail, str) else detail
        if exc.status_code == 413:
            extra = {"limit": request.app.state.fraudlens.max_body_bytes}
        reply = error_reply(exc.status_code, error, extra)
        for name, value in (exc.headers or {}).items():
            # e.g. Allow on a 405: clients learn which methods the path has.
            reply.headers[name] = value
        return reply

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        raw = exc.errors()
        errors: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type")}
            for e in raw[:MAX_ERRORS]
        ]
        if len(raw) > MAX_ERRORS:
            # A body of a million bad values is a million errors: say how many, list a few.
            errors[-1] = {
                "loc": [],
                "msg": f"{len(raw):,} errors in all; the first {MAX_ERRORS - 1} are listed",
                "type": "too_many_errors",
                "n_errors": len(raw),
            }
        if any(e.get("type") == "json_invalid" for e in raw):
            return error_reply(400, "the body is not valid JSON", errors)
        if (
            raw
            and tuple(raw[0].get("loc", ())) == ("body",)
            and raw[0].get("type") in _NOT_AN_OBJECT
            and not _is_json_media(request)
        ):
            # FastAPI reads a JSON body only when it is sent as JSON; anything else is
            # validated as raw bytes, and "should be a valid dictionary" misleads.
            media = request.headers.get("content-type") or "none"
            return error_reply(
                415,
                "send the body as JSON (Content-Type: application/json)",
                {"content_type": media},
            )
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return error_reply(422, f"{where}: {first['msg']}", errors)

    async def fraudlens_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FraudlensError)
        return exception_reply(exc, f"{request.method} {request.url.path}")

    async def other_error(request: Request, exc: Exception) -> Response:
        if type(exc).__module__.split(".", 1)[0] == "sqlalchemy":
            # A caller's store that does not map its driver's errors: still an outage of
            # the store as far as the client can tell.
            reason = _first_line(exc)
            log.warning("store error on %s %s: %s", request.method, request.url.path, reason)
            return _retry_later(
                error_reply(
                    503,
                    "the risk-event store is unavailable",
                    {"reason": reason, "hint": _hint(reason)},
                )
            )
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_reply(500, "internal server error", type(exc).__name__)

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client closed the connection before its body was in: nobody reads the
        # reply. Not a server error: no traceback, and metrics count it as 499.
        log.info("client left during %s %s", request.method, request.url.path)
        return Response(status_code=499)

    handlers: dict[Any, Callable[..., Any]] = {
        ClientDisconnect: client_gone,
        HTTPException: http_error,
        RequestValidationError: validation_error,
        FraudlensError: fraudlens_error,
        Exception: other_error,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
