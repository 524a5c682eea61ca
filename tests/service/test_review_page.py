"""The analysts' review page in a real browser (Debian's chromium driven by Playwright)
against the real service on a real port, with the decisions read back from the database."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _live import serve_in_thread  # type: ignore[import-not-found]

from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")
pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api")

from fraudlens.store import open_store  # noqa: E402

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
expect = playwright_api.expect
# A busy 2-core machine can take a while to render; these are waits, not speed checks.
expect.set_options(timeout=20_000)


def _event(account: str, hours: int, score: float, **extra: Any) -> dict[str, Any]:
    end = BASE + timedelta(hours=hours)
    trades = [
        {
            "trade_id": f"{account}-t{i}",
            "ts": (end - timedelta(minutes=5 * i)).isoformat(),
            "symbol": "COIN",
            "side": side,
            "price": 10.0 if side == "buy" else 11.0,
            "quantity": 250.0,
            "pos": 0.0 if side == "buy" else 1.0,
            "bar_low": 10.0,
            "bar_high": 11.0,
            "reason": f"{side} at {'0' if side == 'buy' else '100'}% of bar range "
            f"matched in the same bar (trade {i})",
        }
        for i, side in enumerate(("buy", "sell", "buy"))
    ]
    return {
        "account_id": account,
        "score": score,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "business_type": "brokerage",
        "window_start": end - timedelta(hours=24),
        "window_end": end,
        "created_at": end + timedelta(minutes=1),
        "details": {"trades": trades},
        **extra,
    }


# ids 1..5; newest first in the page: 5, 4, 3, 2, 1 (5 is already dismissed).
EVENTS = [
    _event("acct-01", 1, 0.97),
    _event("acct-02", 2, 0.91),
    _event("acct-03", 3, 0.99),
    _event("acct-01", 4, 0.93),
    _event("acct-04", 5, 0.95, status="dismissed"),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The real app under uvicorn on a free port: (base URL, database URL)."""
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(db_url) as store:
        store.upgrade()
        assert store.add_risk_events(EVENTS) == len(EVENTS)
    settings = Settings(
        models_dir=tmp_path / "models",
        database_url=db_url,
        queue_url=f"sqlite:///{tmp_path / 'q.db'}",
    )
    with serve_in_thread(create_app(settings, preload=False)) as base:
        yield base, db_url


def _stored(db_url: str, event_id: int) -> dict[str, Any]:
    with open_store(db_url) as store:
        event = store.get_risk_event(event_id)
    assert event is not None
    return event


def test_confirm_dismiss_and_filter(page: Any, served: tuple[str, str], tmp_path: Path) -> None:
    base, db_url = served
    # newest first (the default order is priority; the desk's own tests cover it)
    page.goto(f"{base}/review?sort=-created_at")
    rows = page.locator("#events-body tr")
    # Open events by default; the first one is opened.
    expect(rows).to_have_count(4)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == ["4", "3", "2", "1"]
    expect(page.locator("#range")).to_have_text("1–4 of 4")
    expect(page.locator("#d-id")).to_have_text("#4")
    expect(rows.first.locator(".badge")).to_have_text("open")

    # Open event 3: its facts and the trades that drove its score.
    page.locator('#events-body tr[data-id="3"]').click()
    expect(page.locator("#d-account")).to_have_text("acct-03")
    expect(page.locator("#d-score")).to_have_text("0.990")
    expect(page.locator("#d-threshold")).to_have_text("0.900")
    expect(page.locator("#d-model")).to_have_text("market-features:v0001")
    expect(page.locator("#d-business")).to_have_text("brokerage")
    expect(page.locator("#d-window-end")).to_have_text("2024-03-01 15:00:00")
    trades = page.locator("#trades-body tr")
    expect(trades).to_have_count(3)
    expect(trades.nth(1)).to_contain_text("sell at 100% of bar range matched in the same bar")
    expect(trades.nth(1)).to_contain_text("COIN")
    assert page.locator("#d-gauge svg").count() == 1
    page.screenshot(path=str(tmp_path / "review.png"))

    # Confirm it with a note: the row leaves the open list without a reload.
    page.fill("#reviewer", "ana")
    page.fill("#note", "buy at the low, sell at the high, same bar")
    page.click("#confirm")
    expect(page.locator("#toast")).to_contain_text("confirmed")
    expect(page.locator('#events-body tr[data-id="3"]')).to_have_count(0)
    expect(rows).to_have_count(3)
    stored = _stored(db_url, 3)
    assert stored["status"] == "confirmed"
    assert stored["reviewed_by"] == "ana"
    assert stored["note"] == "buy at the low, sell at the high, same bar"
    assert stored["reviewed_at"] is not None

    # The next event in the list takes its place; j moves on, d dismisses.
    expect(page.locator("#d-id")).to_have_text("#2")
    page.keyboard.press("j")
    expect(page.locator("#d-id")).to_have_text("#1")
    page.keyboard.press("d")
    expect(page.locator('#events-body tr[data-id="1"]')).to_have_count(0)
    expect(rows).to_have_count(2)
    stored = _stored(db_url, 1)
    assert (stored["status"], stored["reviewed_by"], stored["note"]) == ("dismissed", "ana", None)
    assert _stored(db_url, 2)["status"] == "open"

    # Status filters.
    page.click('.segmented button[data-status="confirmed"]')
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", "3")
    expect(rows.first.locator(".col-status")).to_have_attribute("title", "by ana")
    expect(rows.first.locator(".badge")).to_have_text("confirmed")
    page.click('.segmented button[data-status="dismissed"]')
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == ["5", "1"]
    page.click('.segmented button[data-status=""]')
    expect(rows).to_have_count(5)
    expect(page.locator("#range")).to_have_text("1–5 of 5")
    # Back to open with the keyboard shortcut.
    page.keyboard.press("1")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == ["4", "2"]


def test_reopen_and_reviewer_memory(page: Any, served: tuple[str, str]) -> None:
    base, db_url = served
    page.goto(f"{base}/review?status=dismissed")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#d-id")).to_have_text("#5")
    page.fill("#reviewer", "bo")
    page.reload()
    # The reviewer's name is remembered in the browser.
    expect(page.locator("#reviewer")).to_have_value("bo")
    expect(page.locator("#d-id")).to_have_text("#5")
    page.click("#reopen")
    expect(rows).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    stored = _stored(db_url, 5)
    assert (stored["status"], stored["reviewed_by"]) == ("open", "bo")


def test_errors_are_shown(page: Any, served: tuple[str, str]) -> None:
    base, db_url = served
    page.goto(f"{base}/review?sort=-created_at")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#d-id")).to_have_text("#4")  # the first event is open
    banner = page.locator("#banner")
    expect(banner).to_be_hidden()

    # No reviewer name: nothing is sent, the page says why.
    page.fill("#reviewer", "")
    page.keyboard.press("Escape")  # leave the field, so the next key is a shortcut
    page.keyboard.press("c")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Enter your name as reviewer first")
    assert _stored(db_url, 4)["status"] == "open"
    page.click("#banner-close")
    expect(banner).to_be_hidden()

    # An account id longer than the API allows: the API's 422 shows in the banner.
    page.fill("#account-search", "x" * 65)
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("HTTP 422")
    expect(banner).to_contain_text("account_prefix")  # the search box is a prefix search
    expect(page.locator("#empty")).to_be_visible()

    # Searching an account clears the error.
    page.fill("#account-search", "acct-01")
    expect(rows).to_have_count(2)
    expect(banner).to_be_hidden()
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == ["4", "1"]

    # An event that does not exist.
    page.goto(f"{base}/review?event=999")
    expect(banner).to_contain_text("Could not load risk event 999")
    expect(banner).to_contain_text("HTTP 404")


def test_export_csv_follows_the_filters_and_sort(
    page: Any, served: tuple[str, str], tmp_path: Path
) -> None:
    base, db_url = served
    with open_store(db_url) as store:  # an account id a spreadsheet would run (id 6)
        assert store.add_risk_events([_event('=HYPERLINK("http://x")', 6, 0.92)]) == 1
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    reply = page.goto(f"{base}/review?sort=-created_at")
    assert reply is not None and "script-src 'self'" in reply.headers["content-security-policy"]
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(5)

    def export() -> list[list[str]]:
        with page.expect_download() as info:
            page.click("#export")
        download = info.value
        assert re.fullmatch(r"risk-events-\d{8}T\d{6}Z\.csv", download.suggested_filename)
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        with target.open(encoding="utf-8", newline="") as f:
            table = list(csv.reader(f))
        assert table[0][:3] == ["id", "recorded_at", "account_id"]
        return table[1:]

    # The open events, newest first, as the page lists them; the formula is quoted.
    got = export()
    assert [r[0] for r in got] == ["6", "4", "3", "2", "1"]
    assert got[0][2] == '\'=HYPERLINK("http://x")'

    # A prefix search and another order: the export follows both, not only this page.
    page.fill("#account-search", "acct-0")
    expect(rows).to_have_count(4)
    page.locator('#events th[data-sort="account_id"] button').click()
    expect(rows.first).to_have_attribute("data-id", "1")
    assert [r[0] for r in export()] == ["1", "4", "2", "3"]

    # Every status: the dismissed event too.
    page.locator('.segmented button[data-status=""]').click()
    expect(rows).to_have_count(5)
    assert [r[0] for r in export()] == ["1", "4", "2", "3", "5"]
    assert violations == []
