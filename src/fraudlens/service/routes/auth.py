"""Sign-in for people, and who-am-I for any caller.

- ``GET /login``: the sign-in page (no script; one stylesheet from this service).
- ``POST /login``: a form with ``username``, ``password`` and ``next``; on success a
  session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and 303 to ``next``; 401
  for a wrong name or password, 429 with ``Retry-After`` after too many failures.
- ``POST /logout``: ends the session (it needs the session's CSRF token like any other
  state-changing request) and removes the cookie.
- ``GET /v1/me``: the caller's name and role, and for a session its CSRF token, which
  the review page sends back in ``X-CSRF-Token``.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fraudlens.auth import ADMIN, ANALYST, SERVICE, InvalidCredentialsError, RateLimitedError
from fraudlens.errors import FraudlensError
from fraudlens.service._auth import (
    CSRF_HEADER,
    PUBLIC,
    auth_of,
    error_reply,
    identity_of,
    require_role,
)
from fraudlens.service._errors import exception_reply

__all__ = ["LOGIN_HEADERS", "router"]

router = APIRouter(tags=["auth"])

#: The sign-in page runs no script, loads only its stylesheet, and posts only to itself.
LOGIN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DEFAULT_NEXT = "/review"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _static(name: str) -> str:
    return resources.files("fraudlens.service").joinpath("static", name).read_text("utf-8")


def _safe_next(value: str | None) -> str:
    """A local path to go to after sign-in; anything else (another host, ``//x``,
    backslashes, control characters) becomes the review page."""
    if not value or len(value) > 512 or not value.startswith("/") or value.startswith("//"):
        return _DEFAULT_NEXT
    if "\\" in value or not value.isprintable() or value.startswith("/login"):
        return _DEFAULT_NEXT
    return value


def _page(status: int, *, message: str = "", next_path: str, username: str = "") -> Response:
    text = (
        _static("login.html")
        .replace("{{hidden}}", "" if message else " hidden")
        .replace("{{message}}", html.escape(message))
        .replace("{{next}}", html.escape(next_path, quote=True))
        .replace("{{username}}", html.escape(username[:64], quote=True))
    )
    return Response(
        text, status_code=status, media_type="text/html; charset=utf-8", headers=LOGIN_HEADERS
    )


@router.get("/login", include_in_schema=False, dependencies=[Depends(PUBLIC)])
async def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=512)] = None
) -> Response:
    """The sign-in page (a signed-in visitor goes straight on)."""
    target = _safe_next(next)
    ident = identity_of(request)
    if ident is not None and ident.via == "session":
        return RedirectResponse(target, status_code=303)
    return _page(200, next_path=target)


@router.get("/login/login.css", include_in_schema=False, dependencies=[Depends(PUBLIC)])
async def login_css() -> Response:
    """The sign-in page's stylesheet."""
    css = await run_in_threadpool(_static, "login.css")
    return Response(css, media_type="text/css; charset=utf-8", headers=LOGIN_HEADERS)


@router.post("/login", include_in_schema=False, dependencies=[Depends(PUBLIC)])
async def login(request: Request) -> Response:
    """Check the form's name and password; open a session."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _FORM_TYPES:
        return error_reply(415, "send the sign-in form (application/x-www-form-urlencoded)")
    form = await request.form(max_files=0, max_fields=8)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    username = fields.get("username", "")
    password = fields.get("password", "")
    target = _safe_next(fields.get("next"))
    if not username.strip() or not password:
        return _page(422, message="Enter your user name and password.", next_path=target)
    service = auth_of(request)
    address = request.client.host if request.client is not None else "unknown"
    try:
        auth = await run_in_threadpool(service.authenticator)
        grant = await run_in_threadpool(auth.sign_in, username, password, address)
    except RateLimitedError as exc:
        reply = _page(
            429,
            message=f"Too many attempts. Try again in {exc.retry_after} seconds.",
            next_path=target,
            username=username,
        )
        reply.headers["Retry-After"] = str(exc.retry_after)
        return reply
    except InvalidCredentialsError:
        return _page(
            401, message="Wrong user name or password.", next_path=target, username=username
        )
    except FraudlensError as exc:
        return exception_reply(exc, "POST /login")
    reply = RedirectResponse(target, status_code=303)
    service.set_session_cookie(reply, request.scope, grant.cookie)
    reply.headers["Cache-Control"] = "no-store"
    return reply


@router.post(
    "/logout",
    status_code=204,
    include_in_schema=False,
    dependencies=[Depends(require_role(ANALYST, ADMIN))],
)
async def logout(request: Request) -> Response:
    """End the session and remove its cookie."""
    service = auth_of(request)
    cookie = service.session_cookie(request)
    if cookie is not None:
        auth = await run_in_threadpool(service.authenticator)
        await run_in_threadpool(auth.sign_out, cookie)
    reply = Response(status_code=204)
    service.clear_session_cookie(reply, request.scope)
    return reply


class Me(BaseModel):
    """Who the caller is."""

    username: str | None = Field(description="None: nobody (authentication is off).")
    role: Literal["analyst", "admin", "service"] | None = None
    via: Literal["session", "token"] | None = Field(
        None, description="How the caller proved who they are."
    )
    csrf_token: str | None = Field(
        None,
        description=f"For a session: the token to send in the {CSRF_HEADER} header of "
        "every state-changing request.",
    )
    auth_required: bool = Field(description="Whether the service demands an identity.")


@router.get(
    "/v1/me",
    response_model=Me,
    dependencies=[Depends(require_role(ANALYST, ADMIN, SERVICE))],
)
async def me(request: Request) -> Any:
    """The caller's name and role (and a session's CSRF token)."""
    ident = identity_of(request)
    assert ident is not None
    user = ident.user
    reply = Me(
        username=user.username if user is not None else None,
        role=user.role if user is not None else None,  # type: ignore[arg-type]
        via=ident.via,  # type: ignore[arg-type]
        csrf_token=ident.csrf_token,
        auth_required=ident.auth_required,
    )
    return Response(
        reply.model_dump_json(),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
