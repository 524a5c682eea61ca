"""Who may call what: authentication, CSRF and role checks in front of every route.

:class:`AuthMiddleware` sees each request before routing does. It finds the route the
request will reach and that route's access policy, declared on the route with
:func:`require_role` (a dependency whose roles the middleware reads) or :data:`PUBLIC`.
A route with neither is refused whenever authentication is on: a new route cannot slip
through open.

For each request:

1. **Cross-site guard** (always, authentication on or off). A state-changing request
   (anything but GET, HEAD, OPTIONS) that a browser marks as coming from another site
   (``Sec-Fetch-Site`` other than ``same-origin``/``none``, or an ``Origin`` whose host is
   not this request's ``Host``) gets 403. With authentication off, a browser request
   whose ``Host`` is not a loopback name gets 403 too (DNS rebinding).
2. **Identity.** ``Authorization: Bearer <API token>``, else the session cookie. A bad
   token is 401; a bad or expired session cookie counts as no identity.
3. **CSRF.** A state-changing request that relies on the session cookie must carry the
   session's CSRF token in the ``X-CSRF-Token`` header (403 otherwise). Bearer requests
   need none: a browser never adds that header on its own.
4. **Role.** The identity's role must be one the route names (403 otherwise); with no
   identity, 401 when authentication is on (a browser asking for a page is sent to
   ``/login``), or an anonymous pass when it is off.

Authentication is on when the ``auth`` setting says ``on``, or it says ``auto`` (the
default) and either the configured ``host`` is not a loopback address or a request
arrives on a non-loopback local address (the process was bound wider than configured).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import get_route_path

from fraudlens.errors import FraudlensError
from fraudlens.service._errors import error_reply as _error_reply
from fraudlens.service._errors import exception_reply

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Receive, Scope, Send

    from fraudlens.auth import Authenticator, SignedIn, User
    from fraudlens.config import Settings
    from fraudlens.service._state import Lazy
    from fraudlens.store import Store

__all__ = [
    "CSRF_HEADER",
    "PUBLIC",
    "SAFE_METHODS",
    "SECURITY_SCHEMES",
    "AuthMiddleware",
    "Identity",
    "Policy",
    "RouteEntry",
    "ServiceAuth",
    "actor_for",
    "auth_always",
    "auth_of",
    "cookie_names",
    "document_security",
    "error_reply",
    "identity_of",
    "install_auth",
    "is_loopback",
    "require_role",
    "route_entries",
]

log = logging.getLogger("fraudlens.service")

#: Methods that change nothing: no CSRF token, no cross-site check.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Header that carries the session's CSRF token.
CSRF_HEADER = "x-csrf-token"
_COOKIE = "fraudlens_session"
# With Secure, the __Host- prefix makes the browser refuse the cookie from any other
# origin or path (no Domain attribute, Path=/, Secure).
_SECURE_COOKIE = "__Host-fraudlens_session"
_STATE_KEY = "fraudlens_identity"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Paths of routes that are not API routes (no dependencies to read a policy from).
_PUBLIC_PLAIN_ROUTES = frozenset({"/openapi.json"})


def is_loopback(host: str | None) -> bool:
    """True for a loopback address or name (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if not host:
        return False
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def cookie_names() -> tuple[str, str]:
    """The session cookie's names: over TLS, and over plain HTTP (loopback)."""
    return _SECURE_COOKIE, _COOKIE


# ------------------------------------------------------------------------------ policies


@dataclass(frozen=True, slots=True)
class Policy:
    """A route's access rule: public, or one of ``roles``."""

    roles: frozenset[str] | None

    @property
    def public(self) -> bool:
        """Open to anyone."""
        return self.roles is None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts for, as the middleware established it."""

    user: User | None
    via: str | None  # "session", "token" or None (anonymous)
    csrf_token: str | None
    auth_required: bool


def identity_of(conn: HTTPConnection) -> Identity | None:
    """The identity the middleware attached to a request (None without the middleware)."""
    value = conn.scope.get("state", {}).get(_STATE_KEY)
    return value if isinstance(value, Identity) else None


# The attribute by which the middleware recognises an access-policy dependency.
_ROLES_ATTR = "fraudlens_roles"
_NO_POLICY = object()


def require_role(*roles: str) -> Callable[..., Awaitable[User | None]]:
    """A dependency admitting users with any of ``roles``.

    The middleware reads the roles (kept on the function) to refuse a request before the
    route runs; the dependency checks again when the route is called, so a route stays
    closed even in an app without the middleware. It returns the user (None for an
    anonymous request to a service whose authentication is off).
    """
    allowed = frozenset(roles)
    if not allowed:
        raise ValueError("require_role needs at least one role (or use PUBLIC)")

    async def role_check(request: Request) -> User | None:
        ident = identity_of(request)
        if ident is None:
            raise HTTPException(403, "this service has no authentication set up")
        if ident.user is None:
            if ident.auth_required:
                raise HTTPException(401, "sign in or send an API token")
            return None
        if ident.user.role not in allowed:
            raise HTTPException(403, f"the {ident.user.role} role may not do this")
        return ident.user

    role_check.__name__ = f"require_role_{'_'.join(sorted(allowed))}"
    setattr(role_check, _ROLES_ATTR, allowed)
    return role_check


async def _public() -> None:
    """Dependency marking a route as open to anyone (health, sign-in, API docs)."""
    return None


setattr(_public, _ROLES_ATTR, None)

#: Use as ``dependencies=[Depends(PUBLIC)]`` on the few routes anyone may call.
PUBLIC = _public


def _policy_of(dependant: Any) -> Policy | None:
    """The policy declared by the dependencies in a dependant tree, or None."""
    found: list[frozenset[str] | None] = []
    stack = [dependant] if dependant is not None else []
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, _ROLES_ATTR, _NO_POLICY)
        if roles is not _NO_POLICY:
            found.append(roles)  # type: ignore[arg-type]
        stack.extend(dep.dependencies)
    requirements = [r for r in found if r is not None]
    if requirements:
        # Several requirements all apply: the roles every one of them admits.
        return Policy(frozenset.intersection(*requirements))
    return Policy(None) if found else None


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One route as requests reach it: its full path, methods, and access policy."""

    path: str
    methods: frozenset[str] | None  # None: every method (a mount)
    regex: re.Pattern[str] | None
    policy: Policy | None

    def matches(self, path: str, method: str) -> bool:
        """Whether a request for ``method path`` reaches this route."""
        if self.regex is None or not self.regex.match(path):
            return False
        if self.methods is None or method in self.methods:
            return True
        return method == "HEAD" and "GET" in self.methods


def route_entries(routes: Iterable[BaseRoute]) -> list[RouteEntry]:
    """The app's routes in the order the router tries them, with their policies.

    Routers included into the app are flattened (FastAPI's ``iter_route_contexts`` where
    it keeps them apart), so a route's path has every prefix and its policy every
    dependency it will run with.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # a FastAPI that copies included routes into app.routes
        contexts: list[Any] = list(routes)
    else:
        contexts = list(iter_route_contexts(list(routes)))
    entries = []
    for ctx in contexts:
        original = getattr(ctx, "original_route", ctx)
        path = str(getattr(ctx, "path", "") or "")
        methods = getattr(ctx, "methods", None)
        regex = getattr(ctx, "path_regex", None)
        if isinstance(original, APIRoute):
            policy = _policy_of(getattr(ctx, "dependant", None) or original.dependant)
        elif path in _PUBLIC_PLAIN_ROUTES and set(methods or ()) <= SAFE_METHODS:
            policy = Policy(None)
        else:
            policy = None
        entries.append(RouteEntry(path, frozenset(methods) if methods else None, regex, policy))
    return entries


def actor_for(
    user: User | None, reviewed_by: str | None, *, column: str = "reviewed_by"
) -> tuple[str, int | None]:
    """Who a review decision (or an assignment: ``column`` names the body's field) is
    recorded as: (name, user id).

    The caller's own identity when there is one (a name in the request body is ignored:
    nobody can record a decision in someone else's name); otherwise, on a service with
    authentication off, the name the request gives.

    Raises
    ------
    DataError
        Nobody is signed in and the request names no reviewer.
    """
    if user is not None:
        return user.username, user.id
    if reviewed_by is None or not reviewed_by.strip():
        from fraudlens.errors import DataError

        raise DataError(
            f"{column} is required when nobody is signed in (authentication is off)",
            column=column,
        )
    return reviewed_by.strip(), None


# ------------------------------------------------------------------------------- state


def auth_always(settings: Settings) -> bool:
    """Whether a service with these settings demands an identity on every request:
    ``auth=on``, or ``auth=auto`` with a ``host`` that is not loopback."""
    mode = getattr(settings, "auth", "auto")
    return mode == "on" or (mode == "auto" and not is_loopback(getattr(settings, "host", "")))


class ServiceAuth:
    """The service's view of identity: settings, the authenticator, the on/off decision.

    Parameters
    ----------
    settings
        Read for ``auth``, ``host``, ``secret_key``, session lengths, sign-in limits and
        ``behind_tls_proxy``.
    store
        The service's store, opened on first use; users, tokens and sessions live there.
    """

    def __init__(self, settings: Settings, store: Lazy[Store]) -> None:
        self.settings = settings
        self._store = store
        self._auth: Authenticator | None = None
        self._lock = threading.Lock()
        self.mode = getattr(settings, "auth", "auto")
        self.always = auth_always(settings)

    def required(self, scope: Scope) -> bool:
        """Whether this request must carry an identity."""
        if self.always:
            return True
        if self.mode == "off":
            return False
        # Bound wider than the settings say (e.g. uvicorn --host 0.0.0.0 directly): a
        # request that reached a non-loopback local address is from the network.
        server = scope.get("server")
        local = str(server[0]) if server else ""
        return _is_ip(local) and not is_loopback(local)

    def authenticator(self) -> Authenticator:
        """The authenticator over the service's store (blocking on first use)."""
        with self._lock:
            if self._auth is None:
                from fraudlens.auth import Authenticator, LoginLimiter

                s = self.settings
                key = getattr(s, "secret_key", None)
                self._auth = Authenticator(
                    self._store.get(),
                    secret_key=key.get_secret_value() if key is not None else None,
                    session_hours=float(getattr(s, "session_hours", 12.0)),
                    idle_minutes=float(getattr(s, "session_idle_minutes", 120.0)),
                    limiter=LoginLimiter(
                        per_user=int(getattr(s, "login_failures_per_user", 10)),
                        per_address=int(getattr(s, "login_failures_per_address", 30)),
                    ),
                )
            return self._auth

    def secure(self, scope: Scope) -> bool:
        """Whether cookies set on this request's reply are marked Secure."""
        return scope.get("scheme") == "https" or bool(
            getattr(self.settings, "behind_tls_proxy", False)
        )

    def session_cookie(self, conn: HTTPConnection) -> str | None:
        """The session cookie a request carries, if any."""
        for name in cookie_names():
            value = conn.cookies.get(name)
            if value:
                return value
        return None

    def set_session_cookie(self, response: Response, scope: Scope, value: str) -> None:
        """Put a new session cookie on a reply (HttpOnly, SameSite=Strict, Secure over TLS)."""
        secure = self.secure(scope)
        hours = float(getattr(self.settings, "session_hours", 12.0))
        response.set_cookie(
            _SECURE_COOKIE if secure else _COOKIE,
            value,
            max_age=int(hours * 3600),
            path="/",
            secure=secure,
            httponly=True,
            samesite="strict",
        )

    def clear_session_cookie(self, response: Response, scope: Scope) -> None:
        """Remove the session cookie (both names)."""
        for name in cookie_names():
            secure = name == _SECURE_COOKIE
            if secure and not self.secure(scope):
                continue
            response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


def auth_of(conn: HTTPConnection) -> ServiceAuth:
    """The app's :class:`ServiceAuth`."""
    value: ServiceAuth = conn.app.state.fraudlens_auth
    return value


# -------------------------------------------------------------------------- middleware


def error_reply(
    status: int, error: str, detail: Any = None, *, headers: dict[str, str] | None = None
) -> Response:
    """The service's JSON error reply, with extra headers."""
    reply = _error_reply(status, error, detail)
    if headers:
        reply.headers.update(headers)
    return reply


def _host_port(netloc: str, default: int | None) -> tuple[str, int | None]:
    """(host, port) of ``host[:port]``; ("", -1) when it cannot be read (which then
    matches nothing)."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:  # "[::1", "a:b:c", a port out of range
        return "", -1
    return (parts.hostname or "").lower(), port if port is not None else default


def _cross_site(headers: Headers, scope: Scope) -> str | None:
    """Why a state-changing request looks like it came from another site, or None."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        # Set by the browser itself, out of any page's reach, and exact about origins; a
        # page with Referrer-Policy no-referrer sends "Origin: null" on its own posts, so
        # when this header is there it decides.
        if site.lower() in ("same-origin", "none"):
            return None
        return f"a {site} request (Sec-Fetch-Site)"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin == "null":
        return "a request from an opaque origin"
    try:
        parts = urlsplit(origin)
    except ValueError:
        return "a request from an unreadable origin"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"a request from origin {origin[:200]!r}"
    host = headers.get("host", "")
    want_host, want_port = _host_port(host, None)
    got_host, got_port = _host_port(parts.netloc, {"http": 80, "https": 443}[parts.scheme])
    if not got_host:
        return "a request from an unreadable origin"
    # No port in Host: the client used the scheme's default, possibly through a TLS proxy.
    same_port = got_port == want_port if want_port is not None else got_port in (80, 443)
    if got_host != want_host or not same_port:
        return f"a request from origin {origin[:200]!r} to host {host[:200]!r}"
    return None


class AuthMiddleware:
    """ASGI middleware enforcing the access policy of every route (see the module doc).

    Parameters
    ----------
    app
        The next ASGI app.
    routes
        Returns the app's routes, matched in order as the router will.
    auth
        The service's :class:`ServiceAuth`.
    """

    def __init__(
        self, app: ASGIApp, routes: Callable[[], list[BaseRoute]], auth: ServiceAuth
    ) -> None:
        self.app = app
        self.routes = routes
        self.auth = auth
        self._entries: list[RouteEntry] = []
        self._entries_key: tuple[int, ...] = ()

    def _policy(self, scope: Scope) -> tuple[bool, Policy | None]:
        """(a route matches, its policy)."""
        routes = self.routes()
        key = tuple(id(r) for r in routes)
        if key != self._entries_key:  # routes were added (before the first request, say)
            self._entries, self._entries_key = route_entries(routes), key
        path, method = get_route_path(scope), scope["method"]
        for entry in self._entries:
            if entry.matches(path, method):
                return True, entry.policy
        return False, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        reply = await self._check(conn, scope)
        if reply is not None:
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, conn: HTTPConnection, scope: Scope) -> Response | None:
        method = scope["method"]
        unsafe = method not in SAFE_METHODS
        headers = conn.headers
        required = self.auth.required(scope)
        if unsafe:
            why = _cross_site(headers, scope)
            if why is not None:
                return error_reply(403, "cross-site request refused", why)
        if (
            not required
            and ("sec-fetch-site" in headers or "origin" in headers)
            and not is_loopback(_host_port(headers.get("host", ""), None)[0])
        ):
            return error_reply(
                403,
                "browser request to a loopback-only service under another name",
                "open the service at http://127.0.0.1:PORT, or turn authentication on",
            )
        matched, policy = self._policy(scope)
        if not matched:
            return None  # 404 or 405 from the router; nothing runs
        try:
            found = await self._identify(conn)
        except _RefusedError as exc:
            return exc.reply
        user, via, signed_in = found
        scope.setdefault("state", {})[_STATE_KEY] = Identity(
            user, via, signed_in.csrf_token if signed_in is not None else None, required
        )
        if policy is None:
            if required or user is not None:
                log.warning(
                    "refused %s %s: the route declares no access policy", method, scope.get("path")
                )
                return error_reply(403, "this route declares no access policy", None)
            return None
        if policy.public:
            return None
        if user is None:
            if not required:
                return None
            if method == "GET" and "text/html" in headers.get("accept", ""):
                target = quote(scope.get("path", "/"), safe="/")
                return RedirectResponse(f"/login?next={target}", status_code=303)
            return error_reply(
                401,
                "authentication required",
                "sign in at /login, or send Authorization: Bearer <API token>",
                headers={"WWW-Authenticate": 'Bearer realm="fraudlens"'},
            )
        if via == "session" and unsafe:
            assert signed_in is not None
            from fraudlens.auth import Authenticator

            if not Authenticator.csrf_ok(signed_in, headers.get(CSRF_HEADER)):
                return error_reply(
                    403,
                    "missing or wrong CSRF token",
                    f"send the session's token (GET /v1/me) in the {CSRF_HEADER} header",
                )
        assert policy.roles is not None
        if user.role not in policy.roles:
            return error_reply(
                403,
                f"the {user.role} role may not do this",
                {"allowed_roles": sorted(policy.roles)},
            )
        return None

    async def _identify(
        self, conn: HTTPConnection
    ) -> tuple[User | None, str | None, SignedIn | None]:
        header = conn.headers.get("authorization")
        cookie = self.auth.session_cookie(conn)
        if header is None and cookie is None:
            return None, None, None
        try:
            auth = await run_in_threadpool(self.auth.authenticator)
            if header is not None:
                scheme, _, value = header.partition(" ")
                if scheme.lower() != "bearer" or not value.strip():
                    raise _RefusedError(
                        error_reply(
                            401,
                            "unsupported Authorization header",
                            "send Authorization: Bearer <API token>",
                            headers={"WWW-Authenticate": 'Bearer realm="fraudlens"'},
                        )
                    )
                user = await run_in_threadpool(auth.check_token, value.strip())
                if user is None:
                    raise _RefusedError(
                        error_reply(
                            401,
                            "invalid, expired or revoked API token",
                            None,
                            headers={
                                "WWW-Authenticate": 'Bearer realm="fraudlens", '
                                'error="invalid_token"'
                            },
                        )
                    )
                return user, "token", None
            assert cookie is not None
            signed_in = await run_in_threadpool(auth.check_session, cookie)
        except FraudlensError as exc:
            # The store holding the identities is down: 503 with Retry-After, as any
            # outage (the client retries), not a refusal of the credentials.
            where = f"identity check of {conn.scope.get('method', '')} {conn.url.path}"
            raise _RefusedError(exception_reply(exc, where)) from None
        if signed_in is None:
            return None, None, None
        return signed_in.user, "session", signed_in


class _RefusedError(Exception):
    def __init__(self, reply: Response) -> None:
        self.reply = reply


def install_auth(app: FastAPI, settings: Settings, store: Lazy[Store]) -> ServiceAuth:
    """Put identity checks in front of every route of ``app``, and say so in its OpenAPI
    document (:func:`document_security`).

    Call it after the routers are included and before other middleware is added: the
    check then runs after the body limit and the metrics (a refused request is counted)
    and just before routing.
    """
    auth = ServiceAuth(settings, store)
    app.state.fraudlens_auth = auth
    app.add_middleware(AuthMiddleware, routes=lambda: app.router.routes, auth=auth)
    document_security(app)
    return auth


# ------------------------------------------------------------------------------ OpenAPI

#: The OpenAPI security schemes: what ``/docs``'s Authorize button offers.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`fraudlens tokens create USER`), sent as "
        "`Authorization: Bearer flk_...`. Machines (the service role) use these; "
        "analysts may too. No CSRF token is needed.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": _COOKIE,
        "description": "The session cookie a sign-in at `/login` sets (named "
        f"`{_SECURE_COOKIE}` over HTTPS). A browser that has signed in sends it by itself.",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The session's CSRF token (`csrf_token` of `GET /v1/me`): every "
        "state-changing request that relies on the session cookie carries it.",
    },
}
# Either a bearer token, or the session cookie (with its CSRF token when the request
# changes state).
_READ_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"sessionCookie": []}]
_WRITE_SECURITY: list[dict[str, list[str]]] = [
    {"bearerAuth": []},
    {"sessionCookie": [], "csrfToken": []},
]
_AUTH_RESPONSES = {
    "401": "No identity (authentication is on), or an unknown, expired or revoked token",
    "403": "The caller's role may not do this, a session request without its CSRF "
    "token, or a request a browser marks as coming from another site",
}


def document_security(app: FastAPI) -> None:
    """Add the security schemes to ``app``'s OpenAPI document, and to each operation the
    requirement its access policy sets (public operations have none).

    The document says what a request needs when authentication is on; with it off
    (a loopback-only service), the same requests also succeed without an identity.
    """
    build = app.openapi  # FastAPI's own: builds the document once and keeps it

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        error = {"$ref": "#/components/schemas/ErrorResponse"}
        for entry in route_entries(app.routes):
            if entry.policy is None or entry.policy.public or not entry.methods:
                continue
            for method in entry.methods:
                operation = schema["paths"].get(entry.path, {}).get(method.lower())
                if operation is None:  # a route left out of the document
                    continue
                write = method not in SAFE_METHODS
                operation["security"] = _WRITE_SECURITY if write else _READ_SECURITY
                responses = operation.setdefault("responses", {})
                for code, text in _AUTH_RESPONSES.items():
                    responses.setdefault(
                        code,
                        {
                            "description": text,
                            "content": {"application/json": {"schema": error}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
