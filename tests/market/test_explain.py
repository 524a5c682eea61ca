"""Explanations: the matched extreme round trips come first, with checkable reasons."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraudlens.errors import DataError
from fraudlens.market.data import MarketData
from fraudlens.market.explain import explain_account, explain_batch
from fraudlens.market.simulate import simulate

T0 = pd.Timestamp("2024-03-04 14:00", tz="UTC")


def _hand_made() -> MarketData:
    bars = []
    for i in range(10):
        low = 100.0
        high = 100.0 + (10.0 if i == 4 else 1.0 + 0.1 * i)
        bars.append(("AAA", T0 + pd.Timedelta(minutes=5 * i), low, high, low, high, 1e4))
    klines = pd.DataFrame(bars, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
    at = T0 + pd.Timedelta(minutes=20, seconds=30)
    rows = [
        ("n1", "victim", "AAA", T0 + pd.Timedelta(minutes=1), "buy", 100.5, 1.0),
        ("x1", "victim", "AAA", at, "buy", 100.3, 5.0),  # 3 % of the widest bar
        ("x2", "victim", "AAA", at, "sell", 109.7, 5.0),  # 97 %
        ("n2", "victim", "AAA", T0 + pd.Timedelta(minutes=41), "sell", 101.0, 1.0),
        ("s1", "scalper", "AAA", T0 + pd.Timedelta(minutes=11), "buy", 100.5, 1.0),
        ("s2", "scalper", "AAA", T0 + pd.Timedelta(minutes=12), "sell", 100.7, 1.0),
    ]
    trades = pd.DataFrame(
        rows, columns=["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]
    )
    return MarketData(klines, trades)


def test_hand_made_round_trip_comes_first_with_reason() -> None:
    out = explain_account(_hand_made(), "victim", top=3)
    assert [r["trade_id"] for r in out[:2]] == ["x1", "x2"]
    buy, sell = out[0], out[1]
    assert buy["partner_trade_id"] == "x2" and sell["partner_trade_id"] == "x1"
    assert buy["pattern"] == "forward"
    assert buy["same_timestamp"] is True
    assert buy["pos"] == pytest.approx(0.03)
    assert sell["pos"] == pytest.approx(0.97)
    assert buy["bar_high"] == 110.0 and buy["bar_low"] == 100.0
    assert buy["amp_rank"] == 1 and buy["bars_in_day"] == 10
    assert buy["ts"] == "2024-03-04T14:20:30+00:00"
    assert buy["bar_ts"] == "2024-03-04T14:20:00+00:00"
    assert buy["strong"] is True and buy["equal_quantity"] is True
    assert buy["bar_ticks"] == 100  # a 0.1 tick read from the bars' prices
    assert buy["reason"] == (
        "buy at 3% of bar range matched by sell of the same size at 97% at the same "
        "timestamp, 6.1 ordinary bar ranges apart; bar amplitude rank 1 of 10 "
        "(6.5x the day's median bar, 100 ticks)"
    )
    assert out[2]["pattern"] is None
    assert len(out) == 3
    json.dumps(out)  # plain JSON types only


def test_scalper_has_no_round_trip_and_unknown_account_fails() -> None:
    data = _hand_made()
    out = explain_batch(data, ["scalper", "nobody"], top=10)
    assert out["nobody"] == []
    assert len(out["scalper"]) == 2
    assert all(r["pattern"] is None and r["partner_trade_id"] is None for r in out["scalper"])
    with pytest.raises(DataError, match="nobody"):
        explain_account(data, "nobody")


@pytest.fixture(scope="module")
def sim() -> MarketData:
    return simulate(120, seed=4)


def _ids_of(data: MarketData, kind: str) -> np.ndarray:
    kinds = data.label_column("kind")
    assert kinds is not None
    return data.account_ids[kinds == kind]


def test_reference_takeover_explained_by_its_matched_trades(sim: MarketData) -> None:
    ids = _ids_of(sim, "takeover_reference")[:5]
    out = explain_batch(sim, ids, top=4)
    trades = sim.trades.set_index("trade_id")
    for acct in ids:
        recs = out[str(acct)]
        assert len(recs) == 4
        # (two round trips in one bar merge into one leg a side, whose first fills may
        # come from different round trips: most, not all, pairs share a timestamp)
        assert sum(r["same_timestamp"] for r in recs) >= len(recs) // 2
        for r in recs:
            assert r["pattern"] == "forward"
            partner = trades.loc[r["partner_trade_id"]]
            assert partner["account_id"] == acct
            assert partner["side"] != r["side"]
            if r["bar_ticks"] >= 20:  # (a tick moves a fill in a narrower bar)
                assert r["pos"] <= 0.1 if r["side"] == "buy" else r["pos"] >= 0.89
            assert r["amp_rank"] <= 20
        # legs of one pair sit next to each other
        assert recs[0]["partner_trade_id"] == recs[1]["trade_id"]
    json.dumps(out)


def test_reverse_takeover_pattern(sim: MarketData) -> None:
    acct = str(_ids_of(sim, "takeover_reverse")[0])
    recs = explain_account(sim, acct, top=2)
    assert {r["pattern"] for r in recs} == {"reverse"}
    buy = next(r for r in recs if r["side"] == "buy")
    assert buy["pos"] >= 0.85
    assert "matched by sell" in buy["reason"]


def test_batch_matches_single(sim: MarketData) -> None:
    ids = [str(a) for a in sim.account_ids[:12]]
    batch = explain_batch(sim, ids, top=5)
    for acct in ids[:4]:
        assert batch[acct] == explain_account(sim, acct, top=5)


def test_pyarrow_columns_read_the_same() -> None:
    pa = pytest.importorskip("pyarrow")
    data = _hand_made()
    want = explain_account(data, "victim", top=5)
    trades = data.trades.copy()
    # pyarrow-backed columns: strings, and a time with its zone (which numpy cannot hold)
    trades["ts"] = trades["ts"].astype(pd.ArrowDtype(pa.timestamp("ns", tz="UTC")))
    trades["price"] = trades["price"].astype(pd.ArrowDtype(pa.float64()))
    for name in ("trade_id", "account_id", "symbol", "side"):
        trades[name] = trades[name].astype(pd.StringDtype("pyarrow"))
    got = explain_account(MarketData(data.klines, trades), "victim", top=5)
    assert got == want
    assert got[0]["ts"].endswith("+00:00")
