"""Every state-changing route of the service, enumerated from the app's own route table,
refuses a request without an identity, a session request without its CSRF token, and a
token of the wrong role; and succeeds with the right ones. Nothing a refused request
asked for happens (the database and the queue are compared before and after).

A route added later is enumerated like the others: if it declares no access policy, or
is public without being in the small allow-list below, or has no sample request here,
a test fails and says which.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from _services import risk_event, route_table_app  # type: ignore[import-not-found]
from _tamper import tampered_signature  # type: ignore[import-not-found]
from fraudlens.config import Settings
from fraudlens.service import create_app
from fraudlens.service._auth import CSRF_HEADER, SAFE_METHODS, Policy, route_entries

pytest.importorskip("sqlalchemy")
argon2 = pytest.importorskip("argon2")

#: The routes anyone may call, authentication on or off: health for load balancers and
#: Prometheus, the sign-in page and its form, the API description, the icon and the
#: redirect from ``/``. Keep this list short; a route missing here must declare roles.
PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/ping"),
        ("GET", "/metrics"),
        ("GET", "/login"),
        ("GET", "/login/login.css"),
        ("POST", "/login"),
        ("GET", "/"),
        ("GET", "/favicon.ico"),
        ("GET", "/favicon.svg"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/docs/assets/swagger-ui-bundle.js"),
        ("GET", "/docs/assets/swagger-ui.css"),
        ("GET", "/docs/assets/favicon-32x32.png"),
        ("GET", "/openapi.json"),
    }
)
#: Of those, the only one that changes anything (it opens a session).
PUBLIC_STATE_CHANGING = frozenset({("POST", "/login")})

ROLES = ("analyst", "admin", "service")
PEOPLE = ("analyst", "admin")
PASSWORD = "correct horse battery staple"


def route_table(app: FastAPI) -> list[tuple[str, str, Policy | None]]:
    """(method, path, policy) for every method of every route the app has, as requests
    reach them (included routers flattened, prefixes applied)."""
    rows: list[tuple[str, str, Policy | None]] = []
    for entry in route_entries(app.routes):
        methods = set(entry.methods or {"ANY"})  # a mount takes every method
        if "GET" in methods:
            methods.discard("HEAD")  # answered like GET, under the same policy
        rows.extend((m, entry.path, entry.policy) for m in sorted(methods))
    return rows


def policy_problems(app: FastAPI) -> list[str]:
    """What is wrong with the app's access policies (empty when nothing is)."""
    problems = []
    seen = set()
    for method, path, policy in route_table(app):
        seen.add((method, path))
        if policy is None:
            problems.append(f"{method} {path} declares no access policy")
        elif policy.public and (method, path) not in PUBLIC_ROUTES:
            problems.append(f"{method} {path} is public but not in PUBLIC_ROUTES")
        elif policy.public and method not in SAFE_METHODS:
            if (method, path) not in PUBLIC_STATE_CHANGING:
                problems.append(f"{method} {path} changes state and is public")
        elif not policy.public and (method, path) in PUBLIC_ROUTES:
            problems.append(f"{method} {path} is in PUBLIC_ROUTES but declares roles")
    problems += [f"{m} {p} is in PUBLIC_ROUTES but no such route" for m, p in PUBLIC_ROUTES - seen]
    return problems


def _collection_app() -> FastAPI:
    # Only for reading the route table at collection time: nothing is opened.
    app: FastAPI = route_table_app("fraudlens-route-table")
    return app


#: Every state-changing (method, path) of the service, read from its route table.
STATE_CHANGING = sorted(
    {(m, p) for m, p, _ in route_table(_collection_app()) if m not in SAFE_METHODS}
    - PUBLIC_STATE_CHANGING
)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Ctx:
    """A service with authentication on, its store and queue, users of each role."""

    app: FastAPI
    client: TestClient
    store: Any
    queue: Any
    auth: Any
    tokens: dict[str, str] = field(default_factory=dict)
    market: dict[str, Any] = field(default_factory=dict)
    card_row: list[float] = field(default_factory=list)

    def session(self, role: str) -> tuple[str, str]:
        """A new session of the user with this role: (Cookie header, CSRF token)."""
        grant = self.auth.sign_in(f"{role}-user", PASSWORD, "198.51.100.7")
        return f"fraudlens_session={grant.cookie}", grant.csrf_token

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything a state-changing request could change."""
        import sqlalchemy as sa

        with self.store.engine.connect() as conn:
            audit = conn.execute(sa.text("SELECT COUNT(*) FROM review_audit")).scalar_one()
            events = conn.execute(
                sa.text(
                    "SELECT id, status, reviewed_by, note, assignee FROM risk_events ORDER BY id"
                )
            ).all()
            # (the test opens sessions itself: what must not change is how many ended)
            sessions = conn.execute(
                sa.text("SELECT COUNT(*) FROM user_sessions WHERE revoked_at IS NOT NULL")
            ).scalar_one()
        return audit, [tuple(e) for e in events], sessions, self.queue.depth()


@pytest.fixture(scope="module")
def ctx(full_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    from fraudlens.auth import Authenticator, Passwords
    from fraudlens.market.simulate import simulate
    from fraudlens.queues import open_queue
    from fraudlens.store import open_store

    tmp = tmp_path_factory.mktemp("auth-routes")
    db = f"sqlite:///{tmp / 'store.db'}"
    qurl = f"sqlite:///{tmp / 'q.db'}"
    store = open_store(db)
    store.upgrade()
    store.add_risk_events([risk_event(f"acct-{i}", i) for i in range(1, 6)])
    fast = Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    auth = Authenticator(store, passwords=fast)
    tokens = {}
    for role in ROLES:
        auth.create_user(f"{role}-user", role, None if role == "service" else PASSWORD)
        tokens[role], _ = auth.create_token(f"{role}-user")
    queue = open_queue(qurl)
    settings = Settings(
        models_dir=full_registry, database_url=db, queue_url=qurl, auth="on", host="127.0.0.1"
    )
    app = create_app(settings, store=store, queue=queue, preload=False)
    row = [float(v) for v in np.random.default_rng(0).normal(size=30)]  # Time, V1..V28, Amount
    data = simulate(4, seed=5, n_symbols=2, days=1)
    market = {
        name: [
            {**rec, "ts": rec["ts"].isoformat()}
            for rec in frame[list(cols)].to_dict(orient="records")
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
    with TestClient(app) as client:
        yield Ctx(app, client, store, queue, auth, tokens, market, row)
    queue.close()
    store.drop_all()
    store.close()


# A sample request per state-changing route, and the status that means it succeeded.
Sample = Callable[[Ctx], tuple[str, dict[str, Any], int]]

SAMPLES: dict[tuple[str, str], Sample] = {
    ("POST", "/invocations"): lambda c: (
        "/invocations",
        {
            "content": ",".join(repr(float(v)) for v in c.card_row),
            "headers": {"Content-Type": "text/csv"},
        },
        200,
    ),
    ("POST", "/v1/cards/score"): lambda c: (
        "/v1/cards/score",
        {"json": {"data": [c.card_row]}},
        200,
    ),
    ("POST", "/v1/market/score"): lambda c: ("/v1/market/score", {"json": c.market}, 200),
    ("POST", "/v1/accounts/{account_id}/check"): lambda c: (
        "/v1/accounts/acct-1/check",
        {"json": {"business_type": "brokerage"}},
        202,
    ),
    ("POST", "/v1/risk-events/{event_id}/review"): lambda c: (
        "/v1/risk-events/1/review",
        {"json": {"status": "confirmed", "note": "same-bar round trips"}},
        200,
    ),
    ("POST", "/v1/reviews"): lambda c: (
        "/v1/reviews",
        {"json": {"ids": [2, 3], "status": "dismissed", "note": "known client"}},
        200,
    ),
    # force: every admitted identity takes events 4 and 5 in turn
    ("POST", "/v1/assignments"): lambda c: (
        "/v1/assignments",
        {"json": {"ids": [4, 5], "assignee": "analyst-user", "force": True}},
        200,
    ),
    ("POST", "/logout"): lambda c: ("/logout", {}, 204),
}


def _policy(app: FastAPI, method: str, path: str) -> Policy:
    for m, p, policy in route_table(app):
        if (m, p) == (method, path):
            assert policy is not None
            return policy
    raise AssertionError(f"no route {method} {path}")


def _with(kw: dict[str, Any], **headers: str) -> dict[str, Any]:
    merged = {**kw.get("headers", {}), **headers}
    return {**kw, "headers": merged}


# ------------------------------------------------------------------------------ tests


def test_every_route_declares_an_access_policy() -> None:
    assert policy_problems(_collection_app()) == []


def test_a_new_unprotected_route_is_caught(tmp_path: Path) -> None:
    """What the tests above do when someone adds a route and forgets its policy."""
    from fraudlens.service.deps import ForEveryone

    app = create_app(
        Settings(models_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 's.db'}", auth="on"),
        preload=False,
    )

    @app.post("/v1/new-thing")
    async def new_thing() -> dict[str, str]:
        return {"done": "yes"}

    @app.delete("/v1/open-thing", dependencies=[ForEveryone])
    async def open_thing() -> dict[str, str]:
        return {"done": "yes"}

    problems = policy_problems(app)
    assert "POST /v1/new-thing declares no access policy" in problems
    assert "DELETE /v1/open-thing is public but not in PUBLIC_ROUTES" in problems
    new = {(m, p) for m, p, _ in route_table(app) if m not in SAFE_METHODS}
    assert ("POST", "/v1/new-thing") in new  # and so it would be in STATE_CHANGING
    # The middleware refuses the route without a policy even before the tests run.
    with TestClient(app) as c:
        r = c.post("/v1/new-thing")
        assert r.status_code == 403 and "no access policy" in r.json()["error"]


def test_every_state_changing_route_has_a_sample_request() -> None:
    missing = [f"{m} {p}" for m, p in STATE_CHANGING if (m, p) not in SAMPLES]
    assert missing == [], "add a sample request to SAMPLES for: " + ", ".join(missing)
    stale = [f"{m} {p}" for m, p in SAMPLES if (m, p) not in STATE_CHANGING]
    assert stale == []


@pytest.mark.parametrize(
    ("method", "path"), STATE_CHANGING, ids=[f"{m} {p}" for m, p in STATE_CHANGING]
)
def test_state_changing_route_needs_identity_csrf_and_role(
    ctx: Ctx, method: str, path: str
) -> None:
    if (method, path) not in SAMPLES:
        pytest.fail(f"no sample request for {method} {path}: add one to SAMPLES")
    url, kw, ok = SAMPLES[(method, path)](ctx)
    policy = _policy(ctx.app, method, path)
    assert policy.roles, f"{method} {path} must name roles"
    c = ctx.client
    before = ctx.fingerprint()

    # No identity at all.
    r = c.request(method, url, **kw)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    # A token that is not one.
    for bad in ("Bearer flk_not-a-real-token", "Bearer ", "Basic YWRtaW46YWRtaW4=", "flk_x"):
        r = c.request(method, url, **_with(kw, Authorization=bad))
        assert r.status_code == 401, (bad, r.text)
    # A session, but no CSRF token, a wrong one, or another session's.
    for role in PEOPLE:
        cookie, csrf = ctx.session(role)
        _, other_csrf = ctx.session(role)
        for headers in (
            {"Cookie": cookie},
            {"Cookie": cookie, CSRF_HEADER: "x" * 43},
            {"Cookie": cookie, CSRF_HEADER: other_csrf},
            {"Cookie": cookie, CSRF_HEADER: ""},
        ):
            r = c.request(method, url, **_with(kw, **headers))
            assert r.status_code == 403, (role, headers, r.text)
        # A forged or tampered cookie is no session at all.
        tampered = tampered_signature(cookie)
        r = c.request(method, url, **_with(kw, Cookie=tampered, **{CSRF_HEADER: csrf}))
        assert r.status_code == 401, r.text
    # Tokens of every role the route does not admit.
    for role in sorted(set(ROLES) - policy.roles):
        r = c.request(method, url, **_with(kw, Authorization=f"Bearer {ctx.tokens[role]}"))
        assert r.status_code == 403, (role, r.text)
        if role in PEOPLE:
            cookie, csrf = ctx.session(role)
            r = c.request(method, url, **_with(kw, Cookie=cookie, **{CSRF_HEADER: csrf}))
            assert r.status_code == 403, (role, r.text)
    assert ctx.fingerprint() == before, "a refused request changed something"

    # The right identities succeed: a token of each admitted role, and for people a
    # session with its CSRF token.
    for role in sorted(policy.roles):
        r = c.request(method, url, **_with(kw, Authorization=f"Bearer {ctx.tokens[role]}"))
        assert r.status_code == ok, (role, r.text)
        if role in PEOPLE:
            cookie, csrf = ctx.session(role)
            r = c.request(method, url, **_with(kw, Cookie=cookie, **{CSRF_HEADER: csrf}))
            assert r.status_code == ok, (role, r.text)


def test_reads_need_an_identity_too(ctx: Ctx) -> None:
    c = ctx.client
    for url in ("/v1/risk-events", "/v1/risk-events/1", "/v1/me"):
        assert c.get(url).status_code == 401
        r = c.get(url, headers={"Authorization": f"Bearer {ctx.tokens['service']}"})
        assert r.status_code == 200, r.text
    # A browser asking for the page is sent to sign in first.
    r = c.get("/review", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/review"
    assert c.get("/review/review.js").status_code == 401
    r = c.get("/review", headers={"Authorization": f"Bearer {ctx.tokens['service']}"})
    assert r.status_code == 403  # machines have no page
    for url in ("/ping", "/metrics", "/login", "/login/login.css", "/openapi.json", "/docs"):
        assert c.get(url).status_code in (200, 503), url  # 503: /ping with a model issue


def test_decisions_are_recorded_in_the_callers_name_with_history(ctx: Ctx) -> None:
    c = ctx.client
    cookie, csrf = ctx.session("analyst")
    r = c.post(
        "/v1/risk-events/4/review",
        json={"status": "confirmed", "reviewed_by": "someone-else", "note": "wash trades"},
        headers={"Cookie": cookie, CSRF_HEADER: csrf},
    )
    assert r.status_code == 200, r.text
    assert r.json()["reviewed_by"] == "analyst-user"
    r = c.post(
        "/v1/risk-events/4/review",
        json={"status": "dismissed"},
        headers={"Authorization": f"Bearer {ctx.tokens['admin']}"},
    )
    assert r.status_code == 200 and r.json()["reviewed_by"] == "admin-user"
    r = c.get("/v1/risk-events/4", headers={"Authorization": f"Bearer {ctx.tokens['analyst']}"})
    history = r.json()["history"]
    assert [(h["actor"], h["from_status"], h["to_status"], h["note"]) for h in history[-2:]] == [
        ("analyst-user", "open", "confirmed", "wash trades"),
        ("admin-user", "confirmed", "dismissed", None),
    ]
    users = {u.username: u.id for u in ctx.auth.users()}
    assert history[-1]["user_id"] == users["admin-user"]


def test_me_gives_a_session_its_csrf_token(ctx: Ctx) -> None:
    cookie, csrf = ctx.session("admin")
    r = ctx.client.get("/v1/me", headers={"Cookie": cookie})
    assert r.status_code == 200
    assert r.json() == {
        "username": "admin-user",
        "role": "admin",
        "via": "session",
        "csrf_token": csrf,
        "auth_required": True,
    }
    assert r.headers["cache-control"] == "no-store"
    r = ctx.client.get("/v1/me", headers={"Authorization": f"Bearer {ctx.tokens['service']}"})
    assert r.json()["via"] == "token" and r.json()["csrf_token"] is None


def test_revoked_tokens_and_disabled_users_are_refused(ctx: Ctx) -> None:
    c = ctx.client
    ctx.auth.create_user("temp-scorer", "service")
    value, token = ctx.auth.create_token("temp-scorer")
    bearer = {"Authorization": f"Bearer {value}"}
    assert c.get("/v1/me", headers=bearer).status_code == 200
    service_auth = ctx.app.state.fraudlens_auth.authenticator()
    service_auth.revoke_token(token.id)  # as the service process does: its cache forgets
    assert c.get("/v1/me", headers=bearer).status_code == 401
    ctx.auth.create_user("temp-analyst", "analyst", PASSWORD)
    grant = ctx.auth.sign_in("temp-analyst", PASSWORD, "x")
    cookie = {"Cookie": f"fraudlens_session={grant.cookie}"}
    assert c.get("/v1/me", headers=cookie).status_code == 200
    ctx.auth.disable_user("temp-analyst")
    assert c.get("/v1/me", headers=cookie).status_code == 401


def test_cross_site_form_post_to_account_check_is_refused(ctx: Ctx, tmp_path: Path) -> None:
    """A web page on another site posting a form at the service queues nothing, whether
    authentication is on or off (the default on loopback)."""
    form = {
        "content": "business_type=x",
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://attacker.example",
            "Sec-Fetch-Site": "cross-site",
        },
    }
    depth = ctx.queue.depth()
    r = ctx.client.post("/v1/accounts/acct-1/check", **form)
    assert r.status_code == 403 and r.json()["error"] == "cross-site request refused"
    # Even with a valid token (a browser would not send one, but nothing may pass).
    r = ctx.client.post(
        "/v1/accounts/acct-1/check",
        **_with(form, Authorization=f"Bearer {ctx.tokens['service']}"),
    )
    assert r.status_code == 403
    assert ctx.queue.depth() == depth

    from fraudlens.queues import open_queue

    with open_queue(f"sqlite:///{tmp_path / 'q.db'}") as q:
        off = create_app(
            Settings(models_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 's.db'}"),
            queue=q,
            preload=False,
        )
        with TestClient(off, base_url="http://127.0.0.1:8080") as c:
            for headers in (
                {"Origin": "https://attacker.example"},
                {"Sec-Fetch-Site": "cross-site"},
                {"Sec-Fetch-Site": "same-site"},
                {"Origin": "null"},
                {"Origin": "http://127.0.0.1:8081"},
            ):
                r = c.post(
                    "/v1/accounts/acct-1/check",
                    content="business_type=x",
                    headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
                )
                assert r.status_code == 403, headers
            assert q.depth() == 0
            # The same service's own page, and tools that send no Origin, still work.
            r = c.post(
                "/v1/accounts/acct-1/check",
                headers={"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"},
            )
            assert r.status_code == 202, r.text
            assert c.post("/v1/accounts/acct-2/check").status_code == 202
            assert q.depth() == 2
            # DNS rebinding: a browser reaching the loopback-only service under another name.
            r = c.get(
                "/v1/risk-events",
                headers={"Host": "attacker.example:8080", "Sec-Fetch-Site": "same-origin"},
            )
            assert r.status_code == 403


# ----------------------------------------------------------------------------- sign-in


@contextmanager
def _signed_in_app(tmp_path: Path, **settings: Any) -> Iterator[tuple[TestClient, Any]]:
    """A service with authentication on over a fresh store with one analyst, "ana"."""
    from fraudlens.auth import Authenticator
    from fraudlens.store import open_store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(db)
    store.upgrade()
    Authenticator(store).create_user("ana", "analyst", PASSWORD)
    cfg = Settings(models_dir=tmp_path / "m", database_url=db, auth="on", **settings)
    try:
        with TestClient(create_app(cfg, store=store, preload=False)) as c:
            yield c, store
    finally:
        store.close()


@pytest.fixture
def login_app(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    with _signed_in_app(tmp_path, login_failures_per_user=3, login_failures_per_address=100) as app:
        yield app


def _login(c: TestClient, user: str, password: str, **kw: Any) -> Any:
    return c.post(
        "/login",
        data={"username": user, "password": password, "next": kw.pop("next", "/review")},
        follow_redirects=False,
        **kw,
    )


def test_sign_in_sets_a_strict_http_only_cookie(login_app: tuple[TestClient, Any]) -> None:
    c, _ = login_app
    page = c.get("/login")
    assert page.status_code == 200 and 'action="/login"' in page.text
    csp = page.headers["content-security-policy"]
    assert "form-action 'self'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    r = _login(c, "ana", "wrong password!!")
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert "set-cookie" not in r.headers
    r = _login(c, "ANA", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fraudlens_session=")
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attrs and "secure" not in attrs
    assert "samesite=strict" in cookie.lower()
    # The browser's cookie now opens the page, and /v1/me hands out the CSRF token.
    assert c.get("/review").status_code == 200
    me = c.get("/v1/me").json()
    assert me["username"] == "ana" and me["csrf_token"]
    # Signing out needs the token, then ends the session for good.
    assert c.post("/logout").status_code == 403
    r = c.post("/logout", headers={CSRF_HEADER: me["csrf_token"]})
    assert r.status_code == 204
    assert c.get("/v1/me").status_code == 401


def test_open_redirects_and_login_csrf_are_refused(login_app: tuple[TestClient, Any]) -> None:
    c, _ = login_app
    for target in ("//attacker.example/x", "https://attacker.example", "/\\attacker", "x"):
        r = _login(c, "ana", PASSWORD, next=target)
        assert r.status_code == 303 and r.headers["location"] == "/review", target
    r = _login(c, "ana", PASSWORD, next="/review?status=open")
    assert r.headers["location"] == "/review?status=open"
    # A sign-in form posted from another site (login CSRF) is refused.
    r = _login(c, "ana", PASSWORD, headers={"Origin": "https://attacker.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = c.post("/login", json={"username": "ana", "password": PASSWORD})
    assert r.status_code == 415


def test_sign_in_is_rate_limited_with_retry_after(login_app: tuple[TestClient, Any]) -> None:
    c, _ = login_app
    for _ in range(3):
        assert _login(c, "ana", "wrong password!!").status_code == 401
    r = _login(c, "ana", PASSWORD)  # even the right password, until the window passes
    assert r.status_code == 429
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 900
    assert "set-cookie" not in r.headers
    assert "Too many attempts" in r.text


def test_cookies_are_secure_over_tls_and_behind_a_tls_proxy(tmp_path: Path) -> None:
    from fraudlens.auth import Authenticator
    from fraudlens.store import open_store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(db) as store:
        store.upgrade()
        Authenticator(store).create_user("ana", "analyst", PASSWORD)
    for proxy, base in ((False, "https://testserver"), (True, "http://testserver")):
        settings = Settings(models_dir=tmp_path, database_url=db, auth="on", behind_tls_proxy=proxy)
        with TestClient(create_app(settings, preload=False), base_url=base) as c:
            origin = {"Origin": base} if not proxy else {}
            r = _login(c, "ana", PASSWORD, headers=origin)
            assert r.status_code == 303, r.text
            cookie = r.headers["set-cookie"]
            # __Host-: the browser keeps it only if Secure, host-only and Path=/.
            assert cookie.startswith("__Host-fraudlens_session=")
            assert "secure" in cookie.lower() and "domain" not in cookie.lower()


def test_when_authentication_is_on() -> None:
    from fraudlens.service._auth import ServiceAuth, is_loopback

    def on(scope: dict[str, Any] | None = None, **kw: Any) -> bool:
        s = Settings(**kw)
        return ServiceAuth(s, None).required(scope or {"server": ("127.0.0.1", 8080)})  # type: ignore[arg-type]

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("")
    assert not on()  # the default: loopback, auto
    assert on(host="0.0.0.0") and on(host="::") and on(host="192.168.1.5")
    assert on(host="fraud.internal.example")  # a name may resolve anywhere
    assert not on(host="0.0.0.0", auth="off")
    assert on(auth="on")
    # Bound wider than configured: a request that arrived on a non-loopback address.
    assert on({"server": ("10.0.0.5", 8080)})
    assert not on({"server": ("10.0.0.5", 8080)}, auth="off")


def test_an_unreachable_user_store_is_503_not_500(tmp_path: Path) -> None:
    """Identities live in the database: when it cannot be reached, a request that needs
    one is told so (503 with the reason), and open routes still answer. The 503 is an
    outage's, with ``Retry-After`` as every other (the identity check and the sign-in
    form answered theirs without it, so a client did not know to retry)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    settings = Settings(
        models_dir=tmp_path,
        database_url=f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?connect_timeout=2",
        auth="on",
    )
    with TestClient(create_app(settings, preload=False)) as c:
        r = c.get("/v1/risk-events", headers={"Authorization": "Bearer flk_" + "x" * 43})
        assert r.status_code == 503, r.text
        assert set(r.json()) == {"error", "detail"}
        assert r.json()["error"] == "the risk-event store is unavailable"
        assert r.headers.get("retry-after") == "5"
        r = c.post("/login", data={"username": "ana", "password": PASSWORD})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after") == "5"
        assert c.get("/v1/risk-events").status_code == 401  # no identity: no lookup at all
        assert c.get("/login").status_code == 200


def test_hostile_credentials_and_headers_get_4xx_never_5xx(ctx: Ctx) -> None:
    c = ctx.client
    long = "x" * 20_000
    hostile_auth = [
        "Bearer " + long,
        "Bearer flk_" + long,
        "Bearer flk_\u00e9\u00e9",
        "Bearer " + "flk_" + "a" * 43 + " extra",
        "bearer flk_short",
        "Bearer\tflk_x",
        "Digest username=x",
        "Bearer",
        "",
    ]
    for value in hostile_auth:
        r = c.get("/v1/risk-events", headers={"Authorization": value.encode("utf-8")})
        assert r.status_code == 401, (value[:40], r.status_code, r.text[:200])
    hostile_cookies = [
        "fraudlens_session=" + long,
        "fraudlens_session=" + "a.b.c",
        'fraudlens_session="quoted"',
        "__Host-fraudlens_session=x; fraudlens_session=y",
        "fraudlens_session=",
        "other=1",
    ]
    for value in hostile_cookies:
        r = c.post("/v1/risk-events/1/review", json={"status": "open"}, headers={"Cookie": value})
        assert r.status_code in (401, 403), (value[:40], r.status_code, r.text[:200])
    for origin in ("http://", "https://[::1", "javascript:alert(1)", "http://a:b:c", long):
        r = c.post("/v1/accounts/acct-1/check", headers={"Origin": origin})
        assert r.status_code in (401, 403), (origin[:40], r.status_code)
    for user, password in (
        ("ana\x00", PASSWORD),
        ("a" * 5000, PASSWORD),
        ("analyst-user", "p" * 5000),
        ("\u202eanalyst-user", PASSWORD),
        ("analyst-user", ""),
    ):
        r = c.post("/login", data={"username": user, "password": password})
        assert r.status_code in (401, 422, 429), (user[:20], r.status_code)
    r = c.post(
        "/login",
        content=b"\xff\xfe" * 100,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= r.status_code < 500
    fields = "&".join(f"f{i}=1" for i in range(100))
    r = c.post(
        "/login", content=fields, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert 400 <= r.status_code < 500
    assert c.get("/login", params={"next": long[:600]}).status_code == 422


def test_the_longest_sign_in_settings_work(tmp_path: Path) -> None:
    """The largest session lengths and sign-in limits the settings take (inf hours or a
    count past 2**63 were taken before, and every sign-in then failed with a 500)."""
    with _signed_in_app(
        tmp_path,
        session_hours=366 * 24,
        session_idle_minutes=366 * 24 * 60,
        login_failures_per_user=1_000_000,
        login_failures_per_address=1_000_000,
    ) as (c, _store):
        assert _login(c, "ana", "wrong password!!").status_code == 401
        r = _login(c, "ana", PASSWORD)
        assert r.status_code == 303, r.text
        assert f"max-age={366 * 24 * 3600}" in r.headers["set-cookie"].lower()
        assert c.get("/v1/me").json()["username"] == "ana"
