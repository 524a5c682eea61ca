"""Case assignment on the review page in a real browser (Debian's chromium driven by
Playwright), signed in, against the real service on a real port: assign ticked events to
me, the Mine / Unassigned / Anyone filter, taking another analyst's event with the ``a``
key after agreeing to, unassigning; every change read back from the database; the event's
history tab after an assignment and a decision, hostile names and notes shown as text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _live import (  # type: ignore[import-not-found]
    desk_event,
    serve_in_thread,
)

from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")
pytest.importorskip("uvicorn")
pytest.importorskip("argon2")
playwright_api = pytest.importorskip("playwright.sync_api")

from fraudlens.auth import Authenticator  # noqa: E402
from fraudlens.store import open_store  # noqa: E402

PASSWORD = "a passphrase for the desk"
expect = playwright_api.expect
expect.set_options(timeout=20_000)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The app with authentication on; events 1-4 open (2 assigned to bo), 5 dismissed:
    (base URL, db URL)."""
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(db_url) as store:
        store.upgrade()
        store.add_risk_events([desk_event(f"acct-0{i}", i) for i in range(1, 5)])
        store.add_risk_events([desk_event("acct-05", 5, status="dismissed")])
        auth = Authenticator(store)
        auth.create_user("ana", "analyst", PASSWORD)
        auth.create_user("bo", "analyst", PASSWORD)
        store.assign_risk_events([2], "bo", actor="bo")
    settings = Settings(
        models_dir=tmp_path / "models",
        database_url=db_url,
        queue_url=f"sqlite:///{tmp_path / 'q.db'}",
        auth="on",
    )
    with serve_in_thread(create_app(settings, preload=False)) as base:
        yield base, db_url


def _stored(db_url: str, event_id: int) -> tuple[dict[str, Any], list[Any]]:
    with open_store(db_url) as store:
        event = store.get_risk_event(event_id)
        history = store.review_history(event_id)
    assert event is not None
    return event, history


def _sign_in(page: Any, base: str) -> None:
    """Sign in on the review page as analyst ana."""
    page.goto(f"{base}/review")
    page.fill("#username", "ana")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#user-name")).to_have_text("ana (analyst)")


def _ids(rows: Any) -> list[str]:
    ids: list[str] = rows.evaluate_all("rs => rs.map(r => r.dataset.id)")
    return ids


def test_assign_to_me_filter_mine_take_and_unassign(
    page: Any, served: tuple[str, str], tmp_path: Path
) -> None:
    base, db_url = served
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    _sign_in(page, base)
    page.goto(f"{base}/review?sort=-created_at")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(4)
    assert _ids(rows) == ["4", "3", "2", "1"]
    expect(page.locator('#events-body tr[data-id="2"] .col-assignee')).to_have_text("bo")
    expect(page.locator('#events-body tr[data-id="3"] .col-assignee')).to_have_text("—")

    # Tick 3 and 1, assign them to me.
    for ticked in ("3", "1"):
        page.locator(f'#events-body tr[data-id="{ticked}"] input[type=checkbox]').check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.click("#bulk-assign")
    expect(page.locator("#toast")).to_contain_text("2 events assigned to ana")
    expect(page.locator('#events-body tr[data-id="3"] .col-assignee')).to_have_text("ana")
    expect(page.locator('#events-body tr[data-id="1"] .col-assignee')).to_have_text("ana")
    expect(page.locator("#bulk")).to_be_hidden()
    for event_id in (1, 3):
        event, history = _stored(db_url, event_id)
        assert event["assignee"] == "ana" and event["assigned_at"] is not None
        assert [(h.action, h.actor, h.to_assignee) for h in history] == [("assign", "ana", "ana")]

    # Mine: only ana's events, kept in the URL across a reload.
    page.click('#assigned button[data-assigned="me"]')
    expect(rows).to_have_count(2)
    assert _ids(rows) == ["3", "1"]
    expect(page).to_have_url(f"{base}/review?assigned=me&sort=-created_at&event=3")
    page.reload()
    expect(rows).to_have_count(2)
    expect(page.locator('#assigned button[data-assigned="me"]')).to_have_attribute(
        "aria-checked", "true"
    )
    # Unassigned: event 4 only (2 is bo's, 5 is not open).
    page.click('#assigned button[data-assigned="none"]')
    expect(rows).to_have_count(1)
    assert _ids(rows) == ["4"]

    # Anyone; bo's event 2 taken with the a key, after agreeing to take it from him.
    page.click('#assigned button[data-assigned=""]')
    expect(rows).to_have_count(4)
    page.locator('#events-body tr[data-id="2"]').click()
    expect(page.locator("#d-id")).to_have_text("#2")
    expect(page.locator("#d-assignee")).to_contain_text("bo since")
    asked: list[str] = []

    def agree(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", agree)
    page.keyboard.press("a")
    expect(page.locator("#toast")).to_contain_text("Event #2 assigned to ana")
    assert asked and "#2 to bo" in asked[0]
    expect(page.locator("#d-assignee")).to_contain_text("ana since")
    expect(page.locator('#events-body tr[data-id="2"] .col-assignee')).to_have_text("ana")
    event, history = _stored(db_url, 2)
    assert event["assignee"] == "ana"
    assert [(h.actor, h.from_assignee, h.to_assignee) for h in history] == [
        ("bo", None, "bo"),
        ("ana", "bo", "ana"),
    ]
    # a again: it is mine, so it goes back to nobody
    expect(page.locator("#assign")).to_contain_text("Unassign")
    page.keyboard.press("a")
    expect(page.locator("#toast")).to_contain_text("Event #2 unassigned")
    expect(page.locator('#events-body tr[data-id="2"] .col-assignee')).to_have_text("—")
    assert _stored(db_url, 2)[0]["assignee"] is None

    # Unassign a ticked event.
    page.locator('#events-body tr[data-id="1"] input[type=checkbox]').check()
    page.click("#bulk-unassign")
    expect(page.locator("#toast")).to_contain_text("Event #1 unassigned")
    expect(page.locator('#events-body tr[data-id="1"] .col-assignee')).to_have_text("—")
    assert _stored(db_url, 1)[0]["assignee"] is None
    assert _stored(db_url, 3)[0]["assignee"] == "ana"

    # The key is in the shortcut list.
    page.keyboard.press("?")
    expect(page.locator("#help")).to_contain_text("Assign the selected event to yourself")
    page.screenshot(path=str(tmp_path / "assign.png"))
    assert violations == []


def test_refusing_to_take_changes_nothing(page: Any, served: tuple[str, str]) -> None:
    base, db_url = served
    _sign_in(page, base)
    page.goto(f"{base}/review?sort=-created_at&event=2")
    expect(page.locator("#d-id")).to_have_text("#2")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.keyboard.press("a")
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("HTTP 409")
    expect(banner).to_contain_text("#2 to bo")
    event, history = _stored(db_url, 2)
    assert event["assignee"] == "bo" and len(history) == 1


def test_history_shows_review_and_assignment_newest_first_as_text(
    page: Any, served: tuple[str, str]
) -> None:
    """The History tab (h) lists an event's decisions and assignments, newest first,
    refreshed after each; names and notes are shown as text, never run as markup."""
    base, db_url = served
    hostile = "<img src=x onerror=alert(1)>"
    with open_store(db_url) as store:  # a name and a note from outside the page (event 3)
        store.review_risk_event(3, status="dismissed", reviewed_by="<b>mallory</b>", note=hostile)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    _sign_in(page, base)
    page.goto(f"{base}/review?status=&sort=-created_at&event=4")
    expect(page.locator("#d-id")).to_have_text("#4")
    history = page.locator("#history-list li")
    page.keyboard.press("h")
    expect(page.locator("#panel-history")).to_be_visible()
    expect(page.locator("#panel-trades")).to_be_hidden()
    expect(page.locator("#history-empty")).to_be_visible()
    expect(history).to_have_count(0)

    # Assign it to me with the a key: the open History tab shows the entry.
    page.keyboard.press("a")
    expect(page.locator("#toast")).to_contain_text("Event #4 assigned to ana")
    expect(history).to_have_count(1)
    expect(page.locator("#d-history-count")).to_have_text("(1)")
    expect(history.first.locator(".assignee")).to_have_text("— → ana")

    # Confirm it with a hostile note: the decision comes first, the assignment after it.
    page.fill("#note", hostile)
    page.click("#confirm")
    expect(page.locator("#toast")).to_contain_text("Event #4 (acct-04) confirmed")
    expect(history).to_have_count(2)
    expect(page.locator("#d-history-count")).to_have_text("(2)")
    assert history.evaluate_all("rs => rs.map(r => r.dataset.action)") == ["review", "assign"]
    newest, oldest = history.nth(0), history.nth(1)
    expect(newest.locator(".who")).to_have_text("ana")
    expect(newest.locator(".action")).to_have_text("confirmed")
    expect(newest.locator(".status")).to_have_text("open → confirmed")
    expect(newest.locator(".note")).to_have_text(hostile)
    expect(newest.locator(".assignee")).to_have_count(0)  # a decision keeps the assignee
    expect(oldest.locator(".action")).to_have_text("assigned")
    expect(oldest.locator(".status")).to_have_text("open")
    expect(oldest.locator(".note")).to_have_count(0)
    times = history.locator(".time").all_text_contents()
    assert times[0] >= times[1], times
    assert page.locator("#history-list img").count() == 0
    event, stored = _stored(db_url, 4)
    assert (event["status"], event["assignee"]) == ("confirmed", "ana")
    assert [(h.action, h.to_status, h.to_assignee, h.note) for h in stored] == [
        ("assign", "open", "ana", None),
        ("review", "confirmed", None, hostile),
    ]

    # Another event's history: a hostile name and note as text; the keys still switch tabs.
    page.keyboard.press("j")
    expect(page.locator("#d-id")).to_have_text("#3")
    expect(history).to_have_count(1)
    expect(history.first.locator(".who")).to_have_text("<b>mallory</b>")
    expect(history.first.locator(".note")).to_have_text(hostile)
    expect(history.first.locator(".status")).to_have_text("open → dismissed")
    assert page.locator("#history-list img, #history-list b").count() == 0
    page.keyboard.press("t")
    expect(page.locator("#panel-trades")).to_be_visible()
    expect(page.locator("#panel-history")).to_be_hidden()
    page.keyboard.press("h")
    expect(page.locator("#panel-history")).to_be_visible()
    assert dialogs == []
