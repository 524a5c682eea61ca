"""``bench/_fourth_accounts.py`` (the real-bar check's fourth account generator) keeps the
trades contract, labels half its accounts as takeovers, makes every kind it describes,
and its takeovers, beneficiaries and market makers trade the way its docstring says."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.market.data import attach_bars, validate_klines, validate_trades

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from _fourth_accounts import NORMAL_KINDS, TAKEOVER_KINDS, FourthGenerator  # noqa: E402


def _walk(symbol: str, start: str, n: int, price: float, tick: float, vol: bool, seed: int):
    """Random-walk bars on a tick, with fat-tailed steps (some bars several times wider)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    move = np.round(rng.standard_t(3, n) * 5) * tick
    close = np.round((price + np.cumsum(move)) / tick) * tick
    open_ = np.r_[close[0], close[:-1]]
    up, down = (np.round(np.abs(rng.normal(0, 3, (2, n)))) + 1) * tick
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": ts,
            "open": open_,
            "high": np.maximum(open_, close) + up,
            "low": np.minimum(open_, close) - down,
            "close": close,
            "volume": rng.lognormal(8, 1, n) if vol else 0.0,
        }
    )


TICKS = {"AAA_BTC": 1e-8, "BBB_BTC": 1e-6, "IDX": 0.25}


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    # two coins quoted in BTC over three whole days, and a session index without volume
    a = _walk("AAA_BTC", "2021-06-01", 3 * 288, 2e-5, TICKS["AAA_BTC"], True, 1)
    b = _walk("BBB_BTC", "2021-06-01", 3 * 288, 0.03, TICKS["BBB_BTC"], True, 2)
    idx = [_walk("IDX", f"2021-06-0{d} 09:00", 100, 3500.0, 0.25, False, 5 + d) for d in (1, 2)]
    return validate_klines(pd.concat([a, b, *idx], ignore_index=True))


@pytest.fixture(scope="module")
def made(klines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    trades, labels = FourthGenerator(klines, seed=21).run(400)
    return validate_trades(trades, klines=klines), labels


def test_contract_halves_and_kinds(klines, made) -> None:
    trades, labels = made
    assert len(labels) == 400 and labels["account_id"].is_unique
    assert int(labels["label"].sum()) == 200
    assert set(labels.loc[labels["label"] == 0, "kind"]) == set(NORMAL_KINDS)
    assert set(labels.loc[labels["label"] == 1, "kind"]) == set(TAKEOVER_KINDS)
    assert set(trades["account_id"]) == set(labels["account_id"])
    assert trades["trade_id"].is_unique
    bars = attach_bars(trades, klines)
    assert (bars["price"] >= bars["bar_low"]).all() and (bars["price"] <= bars["bar_high"]).all()
    steps = bars["price"] / bars["symbol"].map(TICKS)
    assert np.allclose(steps, np.round(steps), rtol=0, atol=1e-6)  # on the tick
    assert (trades["ts"].dt.microsecond % 1000 == 0).all()  # millisecond stamps
    assert (trades["ts"] != trades["ts"].dt.floor("5min")).mean() > 0.95  # not at the open
    g = trades.groupby("account_id")
    assert (g["ts"].agg(lambda t: t.max() - t.min()) < pd.Timedelta(hours=24)).all()
    assert (g["symbol"].nunique() > 1).any()


def test_takeovers_lose_and_market_makers_gain(klines, made) -> None:
    trades, labels = made
    kind = trades["account_id"].map(labels.set_index("account_id")["kind"])
    signed = np.where(trades["side"] == "buy", -1.0, 1.0) * trades["price"] * trades["quantity"]
    cash = pd.Series(signed).groupby([kind.to_numpy(), trades["account_id"].to_numpy()]).sum()
    # a thief's round trips buy dearer than they sell: the victim's cash goes down ...
    for k in ("wick", "adjacent", "rough", "two_rt", "split"):
        assert (cash[k] < 0).all(), k
    # ... and a market maker's buy-the-low / sell-the-high round trips earn
    assert (cash["market_maker"] > 0).mean() > 0.9
    bars = attach_bars(trades, klines)
    mm = bars[kind.to_numpy() == "market_maker"]
    at_edge = np.where(
        mm["side"] == "buy", mm["price"] == mm["bar_low"], mm["price"] == mm["bar_high"]
    )
    assert at_edge.mean() > 0.7
    # a thief's round trips never share a bar: at most one buy and one sell fill per bar
    thief = bars[kind.isin(["wick", "adjacent", "rough", "two_rt"]).to_numpy()]
    per_bar = thief.groupby(["account_id", "bar_ts", "side"]).size()
    assert per_bar.max() == 1


def test_beneficiary_mirrors_a_victim(made) -> None:
    trades, labels = made
    kind = labels.set_index("account_id")["kind"]
    t = trades.assign(kind=trades["account_id"].map(kind))
    ben, others = t[t["kind"] == "beneficiary"], t[t["kind"] != "beneficiary"]
    m = ben.merge(others, on=["symbol", "price", "quantity"], suffixes=("", "_v"))
    m = m[(m["side"] != m["side_v"]) & ((m["ts"] - m["ts_v"]).abs() <= pd.Timedelta(seconds=20))]
    pairs = m.groupby(["account_id", "account_id_v"]).size()
    assert (pairs.groupby(level=0).max() >= 4).sum() == ben["account_id"].nunique()
    assert set(m["kind_v"]) <= set(TAKEOVER_KINDS) - {"beneficiary"}


def test_same_seed_same_accounts(klines) -> None:
    a = FourthGenerator(klines, seed=3).run(80)
    b = FourthGenerator(klines, seed=3).run(80)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    c = FourthGenerator(klines, seed=4).run(80)
    assert not a[0]["price"].equals(c[0]["price"])
