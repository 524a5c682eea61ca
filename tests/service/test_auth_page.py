"""Sign-in and CSRF in a real browser (Debian's chromium driven by Playwright) against the
real service on a real port with authentication on; decisions read back from the database.
A page on another origin that posts forms at the service changes nothing."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _live import (  # type: ignore[import-not-found]
    desk_event,
    serve_in_thread,
    watched_page,
)

from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")
pytest.importorskip("uvicorn")
pytest.importorskip("argon2")
playwright_api = pytest.importorskip("playwright.sync_api")

from fraudlens.auth import Authenticator  # noqa: E402
from fraudlens.queues import open_queue  # noqa: E402
from fraudlens.store import open_store  # noqa: E402

PASSWORD = "a passphrase for the desk"
expect = playwright_api.expect
expect.set_options(timeout=20_000)


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """The real app under uvicorn, authentication on unless the test asks for "off":
    (base URL, db URL, queue URL)."""
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    queue_url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_store(db_url) as store:
        store.upgrade()
        store.add_risk_events([desk_event(f"acct-0{i}", i) for i in range(1, 4)])
        Authenticator(store).create_user("ana", "analyst", PASSWORD)
    settings = Settings(
        models_dir=tmp_path / "models",
        database_url=db_url,
        queue_url=queue_url,
        auth=getattr(request, "param", "on"),
    )
    with serve_in_thread(create_app(settings, preload=False)) as base:
        yield base, db_url, queue_url


@pytest.fixture
def attacker(served: tuple[str, str, str]) -> Iterator[str]:
    """Another origin (another port) serving a page that posts forms at the service. The
    check form has no fields: an empty body is a valid account check, so only the
    cross-site guard (or a missing identity) stands in its way."""
    base = served[0]
    page = f"""<!doctype html><html><body>
<form id="check" method="post" action="{base}/v1/accounts/acct-09/check" target="f1">
</form>
<form id="review" method="post" action="{base}/v1/risk-events/2/review" target="f2"
      enctype="text/plain">
  <input name='{{"status": "dismissed", "note": "x", "pad": "' value='"}}'>
</form>
<iframe name="f1"></iframe><iframe name="f2"></iframe>
<script>
  document.getElementById("check").submit();
  document.getElementById("review").submit();
  fetch("{base}/v1/accounts/acct-10/check", {{method: "POST", mode: "no-cors",
        credentials: "include", body: "x"}}).finally(() => {{ document.title = "sent"; }});
</script></body></html>""".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with watched_page(browser, 1400, 900) as pg:
        yield pg


def _stored(db_url: str, event_id: int) -> tuple[Any, list[Any]]:
    with open_store(db_url) as store:
        event = store.get_risk_event(event_id)
        history = store.review_history(event_id)
    assert event is not None
    return event, history


def _sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/review")
    expect(page).to_have_url(f"{base}/login?next=/review")
    page.fill("#username", "ana")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#message")).to_have_text("Wrong user name or password.")
    expect(page.locator("#username")).to_have_value("ana")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/review")
    expect(page.locator("#user-name")).to_have_text("ana (analyst)")


def test_sign_in_review_and_sign_out(
    page: Any, served: tuple[str, str, str], tmp_path: Path
) -> None:
    base, db_url, _ = served
    _sign_in(page, base)
    page.screenshot(path=str(tmp_path / "signed-in.png"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "fraudlens_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the session is out of the script's reach
    # The name field is gone: decisions are recorded in the signed-in user's name.
    expect(page.locator("#reviewer")).to_be_hidden()

    page.locator('#events-body tr[data-id="3"]').click()
    expect(page.locator("#d-id")).to_have_text("#3")
    page.fill("#note", "same-bar round trips")
    page.click("#confirm")
    expect(page.locator("#toast")).to_contain_text("confirmed")
    event, history = _stored(db_url, 3)
    assert (event["status"], event["reviewed_by"]) == ("confirmed", "ana")
    assert [(h.actor, h.from_status, h.to_status, h.note) for h in history] == [
        ("ana", "open", "confirmed", "same-bar round trips")
    ]

    page.click("#sign-out")
    expect(page).to_have_url(f"{base}/login")
    page.goto(f"{base}/review")
    expect(page).to_have_url(f"{base}/login?next=/review")


def test_requests_without_the_csrf_token_are_refused(
    page: Any, served: tuple[str, str, str]
) -> None:
    base, db_url, _ = served
    _sign_in(page, base)
    # The page's own session cookie goes along (same origin), but not the token.
    replies = page.evaluate(
        """async () => {
            const post = (headers) => fetch("/v1/risk-events/2/review", {
                method: "POST", credentials: "same-origin",
                headers: Object.assign({"Content-Type": "application/json"}, headers),
                body: JSON.stringify({status: "dismissed", note: "forged"}),
            }).then((r) => r.status);
            const me = await fetch("/v1/me").then((r) => r.json());
            return [
                await post({}),
                await post({"X-CSRF-Token": "not-the-token"}),
                await post({"X-CSRF-Token": me.csrf_token.slice(0, -2)
                    + (me.csrf_token.endsWith("AA") ? "BB" : "AA")}),
                await post({"X-CSRF-Token": me.csrf_token}),
            ];
        }"""
    )
    assert replies == [403, 403, 403, 200]
    event, history = _stored(db_url, 2)
    assert event["status"] == "dismissed" and len(history) == 1  # only the last one


@pytest.mark.parametrize("served", ["on", "off"], indirect=True)
def test_a_page_on_another_origin_changes_nothing(
    page: Any, served: tuple[str, str, str], attacker: str, request: pytest.FixtureRequest
) -> None:
    """With authentication on (the victim signed in, in the same browser) and off (the
    loopback default, where anyone on the machine may act): the forms are refused."""
    base, db_url, queue_url = served
    if "on" in request.node.callspec.id:
        _sign_in(page, base)
    else:
        page.goto(f"{base}/review")  # the page works without signing in
        expect(page.locator("#events-body tr")).to_have_count(3)
    other = page.context.new_page()
    other.goto(attacker)
    expect(other).to_have_title("sent")
    other.wait_for_timeout(500)  # let the two form posts land
    event, history = _stored(db_url, 2)
    assert event["status"] == "open" and history == []
    with open_queue(queue_url) as q:
        assert q.depth() == 0
