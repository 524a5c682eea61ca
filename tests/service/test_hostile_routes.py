"""Every route of the service, enumerated from the app's own route table, gets hostile
input in every part of its request, and answers each request with a 4xx (or a correct
2xx/3xx), never a 5xx, within a bounded time and memory.

- path parameters: traversal (``..``, ``%2F``), NUL and other control characters, bytes
  that are not UTF-8, numbers beyond any integer column, text where a number belongs,
  formula-like text, very long values;
- query parameters, the route's own and a few others: negative and huge numbers, NaN and
  Infinity, 1e400, a 5,000-digit number, unknown sort keys, NUL bytes, 10,000-character
  values, repeats, 2,000 parameters;
- headers: Authorization that is not a bearer token, empty, a bearer token with NUL or
  non-ASCII bytes, 8,000 characters, a session cookie that names no session (all 401 or
  403 on a route that needs an identity); a session without its CSRF token or with a
  wrong one on every state-changing route (403); a cross-site Origin or Sec-Fetch-Site
  on every state-changing route (403); unreadable Host and Origin values; odd Accept,
  Content-Type and X-Model values; other methods on the route's path;
- bodies of every state-changing route: over the body limit, JSON nested 100,000 deep,
  not UTF-8, NaN/Infinity/1e400/10**400, duplicate keys, empty arrays and objects, an
  array of 100,000 values, and each field of a valid request replaced in turn by a value
  of every wrong type (records and rows inside arrays too); forms, multipart bodies and
  CSV rows that are not what they claim (NUL, NaN, inf, 1e308, UTF-16, a byte-order mark,
  a header row, short and long rows, CR line ends, binary garbage, a Parquet file); and
  decompression bombs (one declared in the header, one in the compressed data), truncated
  and corrupt PNG/JPEG/GIF images.

A route added later is covered without changing this file: its path parameters, query
parameters and body fields are read from the route itself (a route whose valid body is
not in the fixture's samples gets every field its OpenAPI schema names). Routes that
reach the store past the access check run on PostgreSQL and MariaDB too (``services``),
which refuse text and integers SQLite takes.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from _services import fresh_store, risk_event, route_table_app  # type: ignore[import-not-found]
from fraudlens.config import Settings
from fraudlens.service import create_app
from fraudlens.service._auth import CSRF_HEADER, SAFE_METHODS, Policy, route_entries

pytest.importorskip("sqlalchemy")
argon2 = pytest.importorskip("argon2")

PASSWORD = "correct horse battery staple"
#: The test app's body limit (small, so that an oversized body costs little to send).
BODY_LIMIT = 256 * 1024
#: Largest growth of the process's peak memory over one route's hostile requests.
MAX_RSS_GROWTH_MB = 400
#: Longest time one request may take.
MAX_REQUEST_SECONDS = 10.0


# ---------------------------------------------------------------------- route table


@dataclass(frozen=True)
class RouteInfo:
    """One (method, path) of the app, with what its handler reads."""

    method: str
    path: str
    policy: Policy | None
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    json_body: bool


def _api_routes(app: FastAPI) -> dict[str, APIRoute]:
    """The app's API routes by full path (included routers flattened)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # a FastAPI that copies included routes into app.routes
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(list(app.routes)))
    found = {}
    for ctx in contexts:
        original = getattr(ctx, "original_route", ctx)
        if isinstance(original, APIRoute):
            found[str(getattr(ctx, "path", original.path))] = original
    return found


def _query_params(dependant: Any) -> tuple[str, ...]:
    """The query parameters a route reads: its own and its dependencies' (a shared set
    of filters declared once as a dependency, say), each once."""
    names = [p.alias for p in dependant.query_params]
    for sub in dependant.dependencies:
        names.extend(_query_params(sub))
    return tuple(dict.fromkeys(names))


def routes_of(app: FastAPI) -> list[RouteInfo]:
    """Every method of every route, as requests reach them."""
    api = _api_routes(app)
    rows = []
    for entry in route_entries(app.routes):
        methods = set(entry.methods or {"GET", "POST"})
        if "GET" in methods:
            methods.discard("HEAD")
        route = api.get(entry.path)
        dep = route.dependant if route is not None else None
        path_params = tuple(p.name for p in dep.path_params) if dep else ()
        query = _query_params(dep) if dep else ()
        body = bool(dep and dep.body_params)
        for m in sorted(methods):
            rows.append(RouteInfo(m, entry.path, entry.policy, path_params, query, body))
    return rows


def _collection_app() -> FastAPI:
    # Only for reading the route table at collection time: nothing is opened.
    app: FastAPI = route_table_app("fraudlens-hostile-routes")
    return app


ROUTES = routes_of(_collection_app())


# -------------------------------------------------------------------------- fixture


@dataclass
class Ctx:
    """A service with authentication on, its store and queue, a user of each role."""

    app: FastAPI
    client: TestClient
    auth: Any
    tokens: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def session(self, role: str) -> tuple[str, str]:
        """A new session of the user with this role: (Cookie header, CSRF token)."""
        grant = self.auth.sign_in(f"{role}-user", PASSWORD, "198.51.100.7")
        return f"fraudlens_session={grant.cookie}", grant.csrf_token


def _serve(kind: str, registry: Path, tmp: Path) -> Iterator[Ctx]:
    """A service with authentication on over a fresh store on ``kind`` (a database name
    of ``_services.DATABASES``), with a few risk events and a user of each role."""
    from fraudlens.auth import Authenticator, Passwords
    from fraudlens.market.simulate import simulate
    from fraudlens.queues import open_queue

    qurl = f"sqlite:///{tmp / 'q.db'}"
    store = fresh_store(kind, tmp)
    db = store.url
    store.add_risk_events([risk_event(f"acct-{i}", i) for i in range(1, 6)])
    fast = Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    auth = Authenticator(store, passwords=fast)
    tokens = {}
    for role in ("analyst", "admin", "service"):
        auth.create_user(f"{role}-user", role, None if role == "service" else PASSWORD)
        tokens[role], _ = auth.create_token(f"{role}-user")
    queue = open_queue(qurl)
    settings = Settings(
        models_dir=registry,
        database_url=db,
        queue_url=qurl,
        auth="on",
        host="127.0.0.1",
        max_body_bytes=BODY_LIMIT,
    )
    app = create_app(settings, store=store, queue=queue, preload=False)
    row = [float(v) for v in np.random.default_rng(0).normal(size=30)]  # Time, V1..V28, Amount
    data = simulate(3, seed=5, n_symbols=1, days=1)
    market = {
        name: [
            {**rec, "ts": rec["ts"].isoformat()}
            for rec in frame[list(cols)].head(6).to_dict(orient="records")
        ]
        for name, frame, cols in (
            ("klines", data.klines, ("symbol", "ts", "open", "high", "low", "close", "volume")),
            (
                "trades",
                data.trades,
                ("trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"),
            ),
        )
    }
    # Valid JSON bodies, whose fields the test replaces one at a time.
    samples: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/cards/score"): {"data": [row], "model": "both", "explain": True, "top": 3},
        ("POST", "/v1/market/score"): {**market, "explain": True},
        ("POST", "/invocations"): market,
        ("POST", "/v1/accounts/{account_id}/check"): {"business_type": "brokerage"},
        ("POST", "/v1/risk-events/{event_id}/review"): {
            "status": "confirmed",
            "note": "same-bar round trips",
            "reviewed_by": "someone",
        },
        ("POST", "/v1/reviews"): {"ids": [2, 3], "status": "dismissed", "note": "known client"},
        ("POST", "/v1/assignments"): {"ids": [2, 3], "assignee": "analyst-user", "note": "mine"},
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Ctx(app, client, auth, tokens, samples)
    queue.close()
    store.drop_all()
    store.close()


@pytest.fixture(scope="module")
def ctx(full_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    """The service over a SQLite store."""
    yield from _serve("sqlite", full_registry, tmp_path_factory.mktemp("hostile-routes"))


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("postgresql", marks=pytest.mark.services),
        pytest.param("mariadb", marks=pytest.mark.services),
    ],
)
def server_ctx(
    request: pytest.FixtureRequest, full_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ctx]:
    """The service over a store on the PostgreSQL or MariaDB server."""
    yield from _serve(request.param, full_registry, tmp_path_factory.mktemp("hostile-routes"))


# ------------------------------------------------------------------ hostile values

#: Path parameter values: traversal, control characters, not UTF-8, huge numbers, text.
PATH_VALUES = (
    "..",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2Fregistry",
    "%00",
    "a%00b",
    "%0d%0aSet-Cookie:%20x=1",
    "%FF%FE",
    "%C0%AE%C0%AE",
    "-1",
    "0",
    "2147483648",
    "9223372036854775808",
    "1" * 400,
    "9" * 5000,
    "1e400",
    "NaN",
    "=HYPERLINK(%22http://x%22)",
    "%E2%80%AEevil",
    "x" * 10_000,
)

#: Query values: numbers out of any range, NaN, NUL, not UTF-8, very long.
QUERY_VALUES = (
    "-1",
    "0",
    "-9223372036854775809",
    "1" * 400,
    "9" * 5000,
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-inf",
    "%00",
    "a%00b",
    "%FF",
    "=cmd|'/c calc'!A0",
    "%5C",  # a backslash, and LIKE's wildcards and escape
    "a%25%5F%2F%5C",
    "'%3B DROP TABLE risk_events%3B --",
    "-unknown_key",
    "9999-99-99T99:99:99",
    "2024-03-01T00:00:00+25:00",
    "x" * 10_000,
    "",
)

#: JSON values of every type, put in place of each field in turn.
WRONG_VALUES: tuple[Any, ...] = (
    None,
    True,
    -1,
    0,
    2**63,
    10**30,
    -1.5,
    1e308,
    "",
    "x" * 5000,
    "\u0000",
    "\ud800",
    "=1+1",
    [],
    [None],
    [[]],
    {},
    {"a": 1},
)

#: Raw JSON texts json.dumps cannot write: NaN, Infinity, 1e400, 10**400, and an integer
#: longer than Python converts by default.
RAW_NUMBERS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1" + "0" * 400,
    "9" * 5000,
    "1e-400",
)


def _png(width: int, height: int, idat: bytes | None = None, *, truncate: bool = False) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if idat is None:
        # rows of zeros: compresses about 1,000 to 1
        idat = zlib.compress(b"\x00" * ((width * 3 + 1) * height), 9)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    if truncate:
        return body[: len(body) - len(idat) // 2 - 4]
    return body + chunk(b"IEND", b"")


def _bomb_png() -> bytes:
    """A PNG that declares 100,000 x 100,000 pixels (30 GB decoded) in a few bytes."""
    return _png(100_000, 100_000, idat=zlib.compress(b"\x00" * 100_000, 9))


def _inner_bomb_png() -> bytes:
    """A PNG whose header declares a few pixels and whose data inflates to 50 MB."""
    return _png(8, 8, idat=zlib.compress(b"\x00" * 50_000_000, 9))


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _huge_jpeg_header() -> bytes:
    """A JPEG whose frame header declares 65,500 x 65,500 pixels."""
    data = bytearray(_jpeg())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65_500, 65_500)
    return bytes(data)


def _gif_bomb() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (64, 64)).save(buf, format="GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 65_535, 65_535)  # logical screen
    return bytes(data)


def image_bodies() -> list[tuple[str, str, bytes]]:
    """(name, Content-Type, body) of hostile images."""
    png = _png(64, 48)
    jpeg = _jpeg()
    return [
        ("png bomb (header)", "image/png", _bomb_png()),
        ("png bomb (data)", "image/png", _inner_bomb_png()),
        ("png truncated", "image/png", _png(64, 48, truncate=True)),
        ("png header only", "image/png", png[:33]),
        ("png corrupt data", "image/png", png[:41] + b"\xde\xad" * 20 + png[81:]),
        ("png signature only", "image/png", b"\x89PNG\r\n\x1a\n"),
        ("jpeg truncated", "image/jpeg", jpeg[: len(jpeg) // 2]),
        ("jpeg corrupt", "image/jpeg", jpeg[:200] + b"\x00" * 200 + jpeg[400:]),
        ("jpeg huge header", "image/jpeg", _huge_jpeg_header()),
        ("jpeg SOI only", "image/jpeg", b"\xff\xd8"),
        ("gif huge screen", "application/x-image", _gif_bomb()),
        ("png sent as jpeg", "image/jpeg", png),
        ("text sent as image", "image/png", b"hello, not an image"),
        ("1x1 png", "image/png", _png(1, 1)),
        ("0x0 png", "image/png", _png(0, 0, idat=zlib.compress(b""))),
        ("svg as image", "application/x-image", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
    ]


# ---------------------------------------------------------------- request building


@dataclass
class Req:
    """One hostile request."""

    name: str
    path: str
    params: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | str | None = None
    auth: bool = True  # send the route's credentials
    #: The statuses the reply must have (None: any but a 5xx).
    expect: frozenset[int] | None = None
    method: str | None = None  # another method than the route's


def _fill(path: str, value: str = "1") -> str:
    """The path with every ``{param}`` set to ``value`` (already URL-encoded)."""
    import re

    return re.sub(r"\{[^}]+\}", value, path)


def _base_path(ctx: Ctx, route: RouteInfo) -> str:
    """A path that names things that exist (event 1, account acct-1)."""
    import re

    def one(m: re.Match[str]) -> str:
        return "acct-1" if "account" in m.group(0) else "1"

    return re.sub(r"\{[^}]+\}", one, route.path)


def _json_fields(ctx: Ctx, route: RouteInfo) -> dict[str, Any]:
    """A valid body for the route (its sample), or {} when there is none."""
    return dict(ctx.samples.get((route.method, route.path), {}))


def _schema_fields(ctx: Ctx, route: RouteInfo) -> list[str]:
    """Top-level fields of the route's JSON body, as its OpenAPI schema names them."""
    doc = ctx.app.openapi()
    op = doc.get("paths", {}).get(route.path, {}).get(route.method.lower(), {})
    schema = (
        op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    )
    ref = schema.get("$ref") or next(
        (s.get("$ref") for s in schema.get("anyOf", []) if "$ref" in s), None
    )
    if ref:
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return list(schema.get("properties", {}))


def hostile_requests(ctx: Ctx, route: RouteInfo) -> Iterator[Req]:
    """Every hostile request this test sends to ``route``."""
    base = _base_path(ctx, route)
    sends_body = route.method not in SAFE_METHODS
    json_type = {"Content-Type": "application/json"}

    # Path parameters.
    if route.path_params:
        for value in PATH_VALUES:
            yield Req(f"path {value[:40]!r}", _fill(route.path, value))
    for suffix in ("/..", "/%2e%2e", "/%00", "//", "/../../etc/passwd"):
        yield Req(f"path suffix {suffix!r}", base + suffix)

    # Query parameters: the route's own, an unknown one, repeats.
    for name in route.query_params:
        for value in QUERY_VALUES:
            yield Req(f"query {name}={value[:40]!r}", f"{base}?{name}={value}")
    for name in ("unknown", "format", "next"):  # read by some routes from the request itself
        for value in ("%00", "%FF", "1e400", "x" * 10_000, "//evil.example"):
            yield Req(f"query {name}={value[:40]!r}", f"{base}?{name}={value}")
    if route.query_params:
        yield Req(
            "query repeated", base + "?" + "&".join(f"{q}=1&{q}=2" for q in route.query_params)
        )
    yield Req("query 2,000 params", base + "?" + "&".join(f"p{i}=1" for i in range(2000)))
    yield Req("query not key=value", base + "?&&==&%&%zz&=")

    # Headers: credentials and content negotiation. Without valid credentials a route
    # that needs some answers 401 (or 403); a public route answers as it would anyone.
    refused = None if _is_public(route) else frozenset({401, 403})
    for value in (
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "bearer   ",
        "Bearer " + "x" * 8000,
        "Bearer a\x00b",
        "Bearer \u00e9\u00e8",
        "Bearer flk_" + "A" * 64,
        "Token abc",
        ",,,",
    ):
        yield Req(
            f"Authorization {value[:30]!r}",
            base,
            headers={"Authorization": value},
            auth=False,
            expect=refused,
        )
    for value in (
        "fraudlens_session=",
        "fraudlens_session=" + "x" * 4000,
        "fraudlens_session=a;b",
        "fraudlens_session=\u00e9\u0000",
    ):
        yield Req(
            f"Cookie {value[:30]!r}", base, headers={"Cookie": value}, auth=False, expect=refused
        )
    if sends_body and not _is_public(route):
        # A session without its CSRF token, or with a wrong one, changes nothing: 403 (or
        # 403 for the role, when people may not call the route at all).
        cookie, token = ctx.session("admin")
        for csrf in (None, "", token + "x", token[:-1], "\u0000" + token, token * 100):
            headers = {"Cookie": cookie, **json_type}
            if csrf is not None:
                headers[CSRF_HEADER] = csrf
            yield Req(
                f"CSRF {str(csrf)[:20]!r}",
                base,
                headers=headers,
                auth=False,
                expect=frozenset({403}),
                content=json.dumps(_json_fields(ctx, route)),
            )
    for value in ("*/*", "text/csv", "image/png;q=abc", "\u00e9", "x" * 4000):
        yield Req(f"Accept {value[:30]!r}", base, headers={"Accept": value})
    for value in ("99", "../../etc", "\u00e9"):
        yield Req(f"X-Model {value!r}", base, headers={"X-Model": value})

    # Host and origin: unreadable values, and a state-changing request from another site
    # (refused whatever its credentials: 403).
    for value in ("", "[::1", "a:b:c", "host:99999999", "\u00e9.example", "x" * 4000):
        yield Req(f"Host {value[:30]!r}", base, headers={"Host": value})
    cross = frozenset({403}) if sends_body else None
    for value in ("http://[::1", "null", "http://evil.example", "file://", "http://x:99999999"):
        yield Req(f"Origin {value!r}", base, headers={"Origin": value}, expect=cross)
    for value in ("cross-site", "same-site", "\u00e9"):
        yield Req(
            f"Sec-Fetch-Site {value!r}", base, headers={"Sec-Fetch-Site": value}, expect=cross
        )

    # Other methods on the route's path.
    for method in ("HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND"):
        if method != route.method:
            yield Req(f"method {method}", base, method=method, content=b"{}")

    if not sends_body:
        return

    # Bodies: content types.
    for ctype in (
        "",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "text/plain",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "image/png; q",
        "text/csv; charset=nonsense",
        "application/octet-stream",
    ):
        yield Req(f"Content-Type {ctype!r}", base, headers={"Content-Type": ctype}, content=b"{}")

    # Bodies: unreadable or absurd JSON.
    raw_bodies: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("over the limit", b"[" + b"0," * (BODY_LIMIT // 2) + b"0]"),
        ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
        ("nested objects 10,000 deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
        ("not UTF-8", b'{"x": "\xff\xfe\xc0\xae"}'),
        ("UTF-16", json.dumps({"ids": [1]}).encode("utf-16")),
        ("BOM then JSON", b"\xef\xbb\xbf{}"),
        ("NUL", b"\x00"),
        ("truncated", b'{"ids": [1, 2'),
        ("not JSON", b"=HYPERLINK(1)"),
        ("empty array", b"[]"),
        ("empty object", b"{}"),
        ("null", b"null"),
        ("string", b'"x"'),
        ("huge array", b"[" + b"0," * 99_999 + b"0]"),
        ("5,000-digit number", b"1" * 5000),
    ]
    for number in RAW_NUMBERS:
        raw_bodies.append((f"bare {number[:10]}", number.encode()))
    for name, content in raw_bodies:
        yield Req(f"body {name}", base, headers=json_type, content=content)

    # Bodies: each field of a valid request replaced by each hostile value.
    sample = _json_fields(ctx, route)
    fields = list(dict.fromkeys([*sample, *_schema_fields(ctx, route)]))
    for key in fields:
        for number in RAW_NUMBERS:
            text = json.dumps({**sample, key: "@@"}).replace('"@@"', number)
            yield Req(f"field {key}={number[:10]}", base, headers=json_type, content=text)
        for value in WRONG_VALUES:
            body = {**sample, key: value}
            text = json.dumps(body, allow_nan=False)
            yield Req(f"field {key}={str(value)[:20]!r}", base, headers=json_type, content=text)
        # duplicate keys: the field twice, once valid, once hostile
        if key in sample:
            text = (
                json.dumps(sample)[:-1] + f', "{key}": null, "{key}": {json.dumps(sample[key])}}}'
            )
            yield Req(f"field {key} twice", base, headers=json_type, content=text)
        given = sample.get(key)
        if isinstance(given, list) and given:
            # as many values as the body limit lets in (or more: then 413)
            many = given[:1] * (BODY_LIMIT // max(len(json.dumps(given[0])), 1))
            yield Req(
                f"field {key} of {len(many):,} values",
                base,
                headers=json_type,
                content=json.dumps({**sample, key: many}),
            )
        # arrays of records: each key of the first record
        if isinstance(given, list) and given and isinstance(given[0], dict):
            for inner in given[0]:
                for bad in (*WRONG_VALUES[::3], "1e400"):
                    records = [{**given[0], inner: bad}, *given[1:]]
                    text = json.dumps({**sample, key: records}, allow_nan=False)
                    yield Req(
                        f"field {key}[0].{inner}={str(bad)[:20]!r}",
                        base,
                        headers=json_type,
                        content=text,
                    )
                for number in RAW_NUMBERS[:4]:
                    records = [{**given[0], inner: "@@"}, *given[1:]]
                    text = json.dumps({**sample, key: records}).replace('"@@"', number)
                    yield Req(
                        f"field {key}[0].{inner}={number[:10]}",
                        base,
                        headers=json_type,
                        content=text,
                    )
            yield Req(
                f"field {key} of 20,000 copies",
                base,
                headers=json_type,
                content=json.dumps({**sample, key: given[:1] * 20_000}),
            )
        if isinstance(given, list) and given and isinstance(given[0], list):
            row = given[0]
            for bad in ("x", None, [], "1e400"):
                yield Req(
                    f"field {key}[0][0]={bad!r}",
                    base,
                    headers=json_type,
                    content=json.dumps({**sample, key: [[bad, *row[1:]]]}),
                )
            yield Req(
                f"field {key} short row",
                base,
                headers=json_type,
                content=json.dumps({**sample, key: [row[:3]]}),
            )
            yield Req(
                f"field {key} ragged",
                base,
                headers=json_type,
                content=json.dumps({**sample, key: [row, row[:-1]]}),
            )
            text = json.dumps({**sample, key: [[*row[:-1], "@@"]]}).replace('"@@"', "NaN")
            yield Req(f"field {key}[0][-1]=NaN", base, headers=json_type, content=text)

    # Bodies the route reads itself (forms, CSV, images).
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for name, content in (
        ("form not UTF-8", b"username=\xff\xfe&password=\xc0"),
        ("form NUL", b"username=a%00b&password=x%00&next=%00"),
        ("form huge password", b"username=analyst-user&password=" + b"x" * 200_000),
        ("form huge username", b"username=" + b"u" * 200_000 + b"&password=x"),
        ("form open redirect", b"username=analyst-user&password=wrong&next=//evil.example"),
        ("form 10,000 fields", b"&".join(b"f%d=1" % i for i in range(10_000))),
        ("form formula", b"username=%3D1%2B1&password=%2Bx"),
    ):
        yield Req(name, base, headers=form, content=content)
    yield Req(
        "multipart with a file",
        base,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        content=(
            b'--b\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nx\r\n--b--\r\n'
        ),
    )
    yield Req(
        "multipart unterminated",
        base,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        content=b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\n' + b"x" * 1000,
    )
    csv = {"Content-Type": "text/csv"}
    csv_row = ",".join(["0.5"] * 30)
    for name, content in (
        ("csv NUL", (csv_row + "\n").replace("0.5", "0\x005", 1).encode()),
        ("csv formula", ("=1+1," + csv_row[4:] + "\n").encode()),
        ("csv NaN", ("nan," + csv_row[4:] + "\n").encode()),
        ("csv 1e400", ("1e400," + csv_row[4:] + "\n").encode()),
        ("csv not UTF-8", b"\xff\xfe" + csv_row.encode()),
        ("csv quoted newline", ('"0.5\n",' + csv_row[4:] + "\n").encode()),
        ("csv 5,000 columns", (",".join(["1"] * 5000) + "\n").encode()),
        ("csv one long line", b"1" * 200_000),
        ("csv inf", ("inf," + csv_row[4:] + "\n-inf," + csv_row[4:] + "\n").encode()),
        ("csv 1e308 everywhere", (",".join(["1e308"] * 30) + "\n").encode()),
        ("csv UTF-16", (csv_row + "\n").encode("utf-16")),
        ("csv byte-order mark", b"\xef\xbb\xbf" + (csv_row + "\n").encode()),
        ("csv header row", (",".join(f"V{i}" for i in range(30)) + "\n").encode()),
        ("csv short row", (csv_row[4:] + "\n").encode()),
        ("csv long row", (csv_row + ",0.5\n").encode()),
        ("csv CR line ends", (csv_row + "\r" + csv_row + "\r").encode()),
        ("csv blank lines", ("\n\n" + csv_row + "\n\n").encode()),
        ("csv only commas", b"," * 100_000),
        ("csv binary garbage", np.random.default_rng(5).bytes(4096)),
        ("csv a Parquet file", _parquet_bytes()),
    ):
        yield Req(name, base, headers=csv, content=content)
    for name, ctype, content in image_bodies():
        yield Req(name, base, headers={"Content-Type": ctype}, content=content)


def _parquet_bytes() -> bytes:
    """A small Parquet file of card rows (a client sending a table as it has it)."""
    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame({f"V{i}": [0.5, 1.5] for i in range(30)}).to_parquet(buf)
    return buf.getvalue()


def _is_public(route: RouteInfo) -> bool:
    return route.policy is not None and route.policy.public


def _credentials(ctx: Ctx, route: RouteInfo) -> dict[str, str]:
    """Headers that get a request past the route's access check (a bearer token of a
    role it admits), or none for a public route."""
    policy = route.policy
    if policy is None or policy.public or policy.roles is None:
        return {}
    for role in ("service", "analyst", "admin"):
        if role in policy.roles:
            return {"Authorization": f"Bearer {ctx.tokens[role]}"}
    return {}


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _send(ctx: Ctx, route: RouteInfo, req: Req) -> tuple[int, float, str]:
    headers = {**(_credentials(ctx, route) if req.auth else {}), **req.headers}
    # as bytes: a header may hold non-ASCII characters (sent as UTF-8, as some clients do)
    raw = {k: v.encode("utf-8") for k, v in headers.items()}
    t0 = time.perf_counter()
    r = ctx.client.request(
        req.method or route.method,
        req.path,
        content=req.content,
        headers=raw,
        follow_redirects=False,
    )
    return r.status_code, time.perf_counter() - t0, r.text[:300]


# ------------------------------------------------------------------------------ tests


def test_the_route_table_is_read_from_the_app() -> None:
    paths = {(r.method, r.path) for r in ROUTES}
    # A few routes of each kind: the table is the app's, prefixes applied.
    assert {
        ("POST", "/invocations"),
        ("GET", "/v1/risk-events/{event_id}"),
        ("POST", "/v1/reviews"),
        ("POST", "/login"),
        ("GET", "/review"),
    } <= paths
    event = next(r for r in ROUTES if r.path == "/v1/risk-events")
    assert {"limit", "offset", "sort", "since"} <= set(event.query_params)
    # the export's filters are the list's (one dependency), read through it
    export = next(r for r in ROUTES if r.path == "/v1/risk-events/export")
    assert set(export.query_params) == set(event.query_params) - {"limit", "offset"} | {"max_rows"}
    assert next(r for r in ROUTES if r.path.endswith("/review") and r.method == "POST").json_body


#: Routes that read or write the store beyond the access check: fuzzed on PostgreSQL and
#: MariaDB too (each refuses some text SQLite takes, such as NUL, and has integer limits).
STORE_ROUTES = (
    "/v1/risk-events",
    "/v1/reviews",
    "/v1/assignments",
    "/v1/me",
    "/v1/monitor",
    "/login",
    "/logout",
)


SERVER_ROUTES = [
    r for r in ROUTES if r.path.startswith(STORE_ROUTES) and not r.path.endswith(".css")
]


def _route_id(route: RouteInfo) -> str:
    return f"{route.method} {route.path}"


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
def test_hostile_requests_get_no_server_error(ctx: Ctx, route: RouteInfo) -> None:
    _fuzz(ctx, route)


@pytest.mark.parametrize("route", SERVER_ROUTES, ids=_route_id)
def test_hostile_requests_on_database_servers(server_ctx: Ctx, route: RouteInfo) -> None:
    _fuzz(server_ctx, route)


def _fuzz(ctx: Ctx, route: RouteInfo) -> None:
    """Send every hostile request to ``route``; fail naming each wrong reply."""
    rss0 = _peak_rss_mb()
    failures = []
    n = 0
    for req in hostile_requests(ctx, route):
        n += 1
        status, seconds, text = _send(ctx, route, req)
        wrong = status >= 500 if req.expect is None else status not in req.expect
        if wrong or seconds > MAX_REQUEST_SECONDS:
            failures.append(f"{req.name}: {status} in {seconds:.1f} s: {text}")
    grew = _peak_rss_mb() - rss0
    assert failures == [], f"{route.method} {route.path}, {len(failures)} of {n}:\n" + "\n".join(
        failures
    )
    assert grew < MAX_RSS_GROWTH_MB, f"peak memory grew by {grew:.0f} MB over {n} requests"
