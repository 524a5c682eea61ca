"""Reply helpers and the documented error replies shared by the routers."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from fraudlens.service._schemas import ErrorResponse

__all__ = ["error_docs", "model_reply"]

_TEXT = {
    400: "Unreadable body or corrupt image",
    404: "No such record",
    408: "The body stalled (15 s) or took too long to arrive (120 s)",
    409: "The request conflicts with the record's current state (nothing was changed)",
    413: "Body or image larger than the limit",
    415: "Unsupported content type (JSON routes: a body not sent as application/json)",
    422: "Missing fields or bad values (row and column named)",
    503: "No model trained, a model that cannot be loaded, or an unreachable store or queue",
}


def error_docs(*codes: int, **texts: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses (``texts``: ``_404="..."``)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        text = texts.get(f"_{code}", _TEXT[code])
        out[code] = {"model": ErrorResponse, "description": text}
    return out


def model_reply(content: Any, version: str, status: int = 200) -> JSONResponse:
    """JSON reply with the ``X-Model-Version`` header (``name:version`` of the model(s))."""
    return JSONResponse(content, status_code=status, headers={"X-Model-Version": version})
