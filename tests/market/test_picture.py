"""The account's picture: well-formed SVG with every fill, round trip and mirrored trade
marked, text escaped, nothing loaded from outside."""

from __future__ import annotations

import xml.dom.minidom

import pandas as pd

from fraudlens.market.data import MarketData
from fraudlens.market.picture import account_picture_svg

T0 = pd.Timestamp("2026-03-02T14:30:00Z")


def _data(account: str = "V", other: str = "B") -> MarketData:
    klines = pd.DataFrame(
        {
            "symbol": ["X"] * 12 + ["Y"] * 12,
            "ts": [T0 + pd.Timedelta(minutes=5 * i) for i in range(12)] * 2,
            "open": 10.0,
            "high": 13.0,
            "low": 9.0,
            "close": 11.0,
            "volume": 1000.0,
        }
    )
    rows = [
        ("v1", account, "X", 10, "buy", 13.0, 4.0),
        ("b1", other, "X", 10, "sell", 13.0, 4.0),
        ("v2", account, "X", 320, "sell", 9.0, 4.0),
        ("b2", other, "X", 320, "buy", 9.0, 4.0),
        ("v3", account, "Y", 900, "buy", 12.0, 1.0),  # alone: no round trip, no mirror
        ("o1", "O", "X", 400, "buy", 10.5, 1.0),
    ]
    trades = pd.DataFrame(
        [
            {
                "trade_id": t,
                "account_id": a,
                "symbol": sym,
                "ts": T0 + pd.Timedelta(seconds=s),
                "side": side,
                "price": p,
                "quantity": q,
            }
            for t, a, sym, s, side, p, q in rows
        ]
    )
    return MarketData(klines, trades)


def test_marks_every_fill_round_trip_and_mirror() -> None:
    svg = account_picture_svg(_data(), "V", counterparty="B")
    xml.dom.minidom.parseString(svg)  # well-formed
    assert svg.count('class="fill buy"') == 2 and svg.count('class="fill sell"') == 1
    assert svg.count('class="round-trip"') == 1
    assert svg.count('class="mirror"') == 2  # B's two trades against V
    assert svg.count('class="panel"') == 2  # X and Y
    assert "16.00" in svg  # the round trip moved (13 - 9) x 4
    assert 'class="detector"' in svg and "data:image/png;base64," in svg
    # nothing from outside: the only URL is the SVG namespace
    assert svg.replace('xmlns="http://www.w3.org/2000/svg"', "").count("://") == 0
    # another account's trades are never drawn as the account's
    assert "trade o1" not in svg


def test_without_counterparty_and_without_trades() -> None:
    svg = account_picture_svg(_data(), "V")
    assert 'class="mirror"' not in svg and svg.count('class="round-trip"') == 1
    empty = account_picture_svg(_data(), "nobody")
    xml.dom.minidom.parseString(empty)
    assert "No stored trades" in empty


def test_text_is_escaped() -> None:
    hostile = 'V<script>alert("x")</script>&'
    svg = account_picture_svg(
        _data(account=hostile, other="B&<b>"),
        hostile,
        counterparty="B&<b>",
        title="event <img src=x onerror=alert(1)> \x07 bell",
    )
    xml.dom.minidom.parseString(svg)
    assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg and "&amp;" in svg
    assert "\x07" not in svg
