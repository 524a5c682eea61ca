"""The analysts' desk in a real browser (Debian's chromium through Playwright) against the
real service on a real port: sorting by column headers, prefix search, a bulk decision
(read back from the database with its audit trail), the account's picture and the
counterparty link, the empty state, the layout at 1280 x 720 and 1400 x 900, and the
monitoring page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _live import serve_in_thread, watched_page  # type: ignore[import-not-found]

from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")
pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api")

from fraudlens.store import open_store  # noqa: E402

T0 = pd.Timestamp("2026-03-02T14:30:00Z")
expect = playwright_api.expect
# A busy 2-core machine can take a while to render; these are waits, not speed checks.
expect.set_options(timeout=20_000)


def _market() -> tuple[pd.DataFrame, pd.DataFrame]:
    """V buys at the bars' highs from B and sells back to B at the lows (mirrored round
    trips); O trades alone."""
    klines = pd.DataFrame(
        {
            "symbol": "XYZ",
            "ts": [T0 + pd.Timedelta(minutes=5 * i) for i in range(24)],
            "open": 10.0,
            "high": 13.0,
            "low": 9.0,
            "close": 11.0,
            "volume": 1000.0,
        }
    )
    rows = [
        ("v1", "acct-V", 10, "buy", 13.0, 4.0),
        ("b1", "acct-B", 10, "sell", 13.0, 4.0),
        ("v2", "acct-V", 320, "sell", 9.0, 4.0),
        ("b2", "acct-B", 320, "buy", 9.0, 4.0),
        ("v3", "acct-V", 900, "buy", 13.0, 2.0),
        ("b3", "acct-B", 900, "sell", 13.0, 2.0),
        ("v4", "acct-V", 1000, "sell", 9.0, 2.0),
        ("b4", "acct-B", 1000, "buy", 9.0, 2.0),
        ("o1", "acct-O", 400, "buy", 10.5, 1.0),
    ]
    trades = pd.DataFrame(
        [
            {
                "trade_id": t,
                "account_id": a,
                "symbol": "XYZ",
                "ts": T0 + pd.Timedelta(seconds=s),
                "side": side,
                "price": p,
                "quantity": q,
            }
            for t, a, s, side, p, q in rows
        ]
    )
    return klines, trades


def _event(
    account: str, score: float, value: float | None, hours: int, **extra: Any
) -> dict[str, Any]:
    end = (T0 + pd.Timedelta(seconds=1000) + timedelta(hours=hours)).to_pydatetime()
    trades = [
        {
            "trade_id": f"{account}-t{i}",
            "ts": (end - timedelta(minutes=5 * i)).isoformat(),
            "symbol": "XYZ",
            "side": "buy" if i % 2 == 0 else "sell",
            "price": 13.0 if i % 2 == 0 else 9.0,
            "quantity": 4.0,
            "pos": 1.0 if i % 2 == 0 else 0.0,
            "bar_low": 9.0,
            "bar_high": 13.0,
            "reason": f"{'buy at the high' if i % 2 == 0 else 'sell at the low'} of a wide bar, "
            f"mirrored by another account's trade at the same price and size (trade {i})",
        }
        for i in range(10)
    ]
    return {
        "account_id": account,
        "score": score,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "business_type": "brokerage",
        "window_start": end - timedelta(hours=24),
        "window_end": end,
        # recorded in the last hours, so that monitoring's alerts per day show them
        "created_at": datetime.now(UTC) - timedelta(hours=6 - hours),
        "value_moved": value,
        "details": {"trades": trades},
        **extra,
    }


# priority (score x value moved): V 23.76, B 19.2, C 9.5, D 0 (score .99), E 0 (.95)
EVENTS = [
    _event("acct-V", 0.99, 24.0, 0, counterparty="acct-B"),
    _event("acct-B", 0.96, 20.0, 1, counterparty="acct-V"),
    _event("acct-C", 0.95, 10.0, 2),
    _event("acct-D", 0.99, None, 3),
    _event("acct-E", 0.95, 0.0, 4),
    _event("zz-F", 0.93, 5.0, 5, status="dismissed"),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The real app under uvicorn on a free loopback port: (base URL, database URL)."""
    db_url = f"sqlite:///{tmp_path / 'desk.db'}"
    klines, trades = _market()
    with open_store(db_url) as store:
        store.upgrade()
        store.load_klines(klines)
        store.load_trades(trades)
        for e in EVENTS:  # one at a time: ids 1..6 in this order
            assert store.add_risk_events([e]) == 1
    settings = Settings(
        models_dir=tmp_path / "models",
        database_url=db_url,
        queue_url=f"sqlite:///{tmp_path / 'q.db'}",
    )
    with serve_in_thread(create_app(settings, preload=False)) as base:
        yield base, db_url


def _ids(page: Any) -> list[str]:
    return page.locator("#events-body tr").evaluate_all("rs => rs.map(r => r.dataset.id)")


def _sort_state(page: Any) -> dict[str, str]:
    return page.locator("#events th[data-sort]").evaluate_all(
        "ths => Object.fromEntries(ths.map(t => [t.dataset.sort, t.getAttribute('aria-sort')]))"
    )


def test_headers_sort_and_say_so(page: Any, served: tuple[str, str]) -> None:
    base, _ = served
    page.goto(f"{base}/review")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(5)
    # the default: priority, highest first
    assert _ids(page) == ["1", "2", "3", "4", "5"]
    assert _sort_state(page)["priority"] == "descending"
    assert {v for k, v in _sort_state(page).items() if k != "priority"} == {"none"}

    page.click('#events th[data-sort="score"] button')
    expect(page.locator('#events th[data-sort="score"]')).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(rows.first).to_have_attribute("data-id", "4")  # 0.99, newer than V's 0.99
    assert _ids(page) == ["4", "1", "2", "5", "3"]
    assert _sort_state(page)["priority"] == "none"
    page.click('#events th[data-sort="score"] button')
    expect(page.locator('#events th[data-sort="score"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(rows.first).to_have_attribute("data-id", "3")
    assert _ids(page) == ["3", "5", "2", "1", "4"]

    page.click('#events th[data-sort="account_id"] button')
    expect(page.locator('#events th[data-sort="account_id"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(rows.first).to_have_attribute("data-id", "2")  # acct-B
    assert _ids(page) == ["2", "3", "4", "5", "1"]
    # value moved, highest first; the unknown one last
    page.click('#events th[data-sort="value_moved"] button')
    expect(rows.first).to_have_attribute("data-id", "1")
    assert _ids(page) == ["1", "2", "3", "5", "4"]
    # the order is in the URL and survives a reload
    assert "sort=-value_moved" in page.url
    page.reload()
    expect(rows).to_have_count(5)
    assert _ids(page) == ["1", "2", "3", "5", "4"]
    assert _sort_state(page)["value_moved"] == "descending"


def test_prefix_search(page: Any, served: tuple[str, str]) -> None:
    base, _ = served
    page.goto(f"{base}/review?status=")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(6)
    page.fill("#account-search", "acct-")
    expect(rows).to_have_count(5)
    page.fill("#account-search", "zz")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", "6")
    page.fill("#account-search", "acct_")  # _ is not a wildcard
    expect(page.locator("#empty")).to_be_visible()


def test_bulk_dismiss_with_one_note(page: Any, served: tuple[str, str]) -> None:
    base, db_url = served
    page.goto(f"{base}/review")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#bulk")).to_be_hidden()
    page.fill("#reviewer", "ana")
    page.locator('#events-body tr[data-id="3"] input[type=checkbox]').check()
    page.locator('#events-body tr[data-id="5"] input[type=checkbox]').check()
    expect(page.locator("#bulk")).to_be_visible()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    assert page.locator("#select-page").evaluate("el => el.indeterminate")
    page.fill("#bulk-note", "same market maker on both")
    page.click("#bulk-dismiss")
    expect(page.locator("#toast")).to_contain_text("2 events dismissed")
    expect(rows).to_have_count(3)
    expect(page.locator("#bulk")).to_be_hidden()
    assert _ids(page) == ["1", "2", "4"]
    with open_store(db_url) as store:
        for event_id in (3, 5):
            e = store.get_risk_event(event_id)
            assert e is not None
            assert (e["status"], e["reviewed_by"], e["note"]) == (
                "dismissed",
                "ana",
                "same market maker on both",
            )
            history = store.review_history(event_id)
            assert [(h.actor, h.from_status, h.to_status) for h in history] == [
                ("ana", "open", "dismissed")
            ]
        assert store.get_risk_event(1)["status"] == "open"  # type: ignore[index]
    # select the whole page, then clear
    page.check("#select-page")
    expect(page.locator("#bulk-count")).to_have_text("3 selected")
    page.click("#bulk-clear")
    expect(page.locator("#bulk")).to_be_hidden()


def test_picture_and_the_counterparty_link(page: Any, served: tuple[str, str]) -> None:
    base, _ = served
    page.goto(f"{base}/review?event=1")
    expect(page.locator("#d-account")).to_have_text("acct-V")
    expect(page.locator("#d-value")).to_have_text("24.00")
    page.click("#tab-picture")
    picture = page.locator("#d-picture")
    expect(picture).to_be_visible()
    page.wait_for_function("() => document.getElementById('d-picture').naturalWidth > 0")
    assert picture.get_attribute("src") == "/v1/risk-events/1/picture.svg"
    svg = page.request.get(f"{base}/v1/risk-events/1/picture.svg")
    assert svg.status == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    text = svg.text()
    assert text.count('class="fill buy"') == 2 and text.count('class="fill sell"') == 2
    assert text.count('class="round-trip"') == 2  # two round trips, both mirrored
    assert text.count('class="mirror"') == 4  # every trade of V mirrored by B
    assert "mirrored by acct-B" in text
    assert 'class="detector"' in text and "data:image/png;base64," in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    # p / t switch the evidence tabs from the keyboard
    page.keyboard.press("t")
    expect(page.locator("#panel-trades")).to_be_visible()
    expect(page.locator("#trades-body tr")).to_have_count(10)
    page.keyboard.press("p")
    expect(page.locator("#panel-picture")).to_be_visible()

    # the counterparty links to its own alerts, whatever their status
    page.click("#d-counterparty a")
    rows = page.locator("#events-body tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("acct-B")
    expect(page.locator("#chips")).to_contain_text("account = acct-B")
    assert "account_id=acct-B" in page.url
    expect(page.locator("#d-account")).to_have_text("acct-B")
    page.click("#chips .chip-x")
    expect(rows).to_have_count(6)


def test_empty_state_clears_the_detail_pane(page: Any, served: tuple[str, str]) -> None:
    base, db_url = served
    page.goto(f"{base}/review")
    expect(page.locator("#d-id")).to_have_text("#1")
    page.fill("#reviewer", "ana")
    page.fill("#account-search", "nobody-has-this-prefix")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#detail-body")).to_be_hidden()
    expect(page.locator("#detail-empty")).to_be_visible()
    expect(page.locator("#confirm")).to_be_disabled()
    expect(page.locator("#dismiss")).to_be_disabled()
    page.locator("#account-search").press("Escape")
    page.keyboard.press("c")
    page.keyboard.press("d")
    page.wait_for_timeout(300)
    with open_store(db_url) as store:
        assert store.list_risk_events(status="open")[1] == 5
    # a filter that matches again brings an event back
    page.fill("#account-search", "acct-C")
    expect(page.locator("#d-account")).to_have_text("acct-C")
    expect(page.locator("#confirm")).to_be_enabled()


@pytest.mark.parametrize(("width", "height", "min_rows"), [(1280, 720, 4), (1400, 900, 8)])
def test_layout(
    browser: Any, served: tuple[str, str], width: int, height: int, min_rows: int
) -> None:
    """Trade rows visible above the review form, and no list column clipped."""
    base, _ = served
    with watched_page(browser, width, height) as page:
        page.goto(f"{base}/review?status=")
        expect(page.locator("#trades-body tr")).to_have_count(10)
        geometry = page.evaluate(
            """() => {
              const form = document.querySelector('.review').getBoundingClientRect();
              const wrap = document.getElementById('panel-trades').getBoundingClientRect();
              const rows = [...document.querySelectorAll('#trades-body tr')].filter(r => {
                const b = r.getBoundingClientRect();
                return b.top >= wrap.top && b.bottom <= Math.min(wrap.bottom, form.top) + 0.5;
              }).length;
              const table = document.getElementById('events');
              const pane = table.parentElement;
              const heads = [...table.querySelectorAll('thead th')].filter(
                th => getComputedStyle(th).display !== 'none');
              const paneBox = pane.getBoundingClientRect();
              const clipped = heads.filter(th => {
                const b = th.getBoundingClientRect();
                return b.right > paneBox.right + 0.5 || b.width < 20;
              }).map(th => th.textContent.trim());
              return {rows, clipped, scroll: table.scrollWidth, client: pane.clientWidth,
                      bodyScroll: document.documentElement.scrollHeight, height: innerHeight};
            }"""
        )
        assert geometry["rows"] >= min_rows, geometry
        assert geometry["clipped"] == [], geometry
        assert geometry["scroll"] <= geometry["client"], geometry
        assert geometry["bodyScroll"] <= geometry["height"], geometry  # panes scroll, not the page


def test_monitor_page_and_icon(page: Any, served: tuple[str, str]) -> None:
    base, _ = served
    icon = page.request.get(f"{base}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text().startswith("<svg")
    page.goto(f"{base}/review")
    page.click("a[href='/monitor']")
    expect(page.locator("h2", has_text="Alerts per day")).to_be_visible()
    expect(page.locator("#alerts svg.plot")).to_have_count(1)
    titles = page.locator("#alerts svg rect.bar title").all_text_contents()
    assert sum(int(t.split(": ")[1].split(" ")[0]) for t in titles) == 6, titles
    expect(page.locator("#precision-table")).to_contain_text("market-features:v0001")
    expect(page.locator(".cards")).to_contain_text("Open alerts")
    # no model in the registry: the page says why scores and drift are missing
    expect(page.locator(".notes")).to_contain_text("no market model")
    assert page.evaluate("() => document.scripts.length") == 0
