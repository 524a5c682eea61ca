"""``bench/_blind_accounts.py`` (the real-bar check's third account generator) keeps the
trades contract on bars of its own, labels half its accounts as takeovers and makes
every kind it describes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.market.data import attach_bars, validate_klines, validate_trades

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from _blind_accounts import NORMAL_KINDS, TAKEOVER_KINDS, BlindGenerator  # noqa: E402


def _bars(symbol: str, start: str, n: int, price: float, tick: float, volume: bool, seed: int):
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    steps = rng.standard_t(3, n) * 6 * np.exp(rng.normal(0, 0.5, n))
    close = np.round(price / tick + np.cumsum(steps)) * tick
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0, 4, (2, n)))) * tick
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": ts,
            "open": open_,
            "high": np.maximum(open_, close) + wick[0],
            "low": np.minimum(open_, close) - wick[1],
            "close": close,
            "volume": rng.lognormal(5, 1, n) if volume else 0.0,
        }
    )


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    # a 24 h coin quoted in BTC (tick 1e-8) over three days, and a session market
    # (09:00-17:25, tick 0.5, no volume) over three weekdays
    coin = _bars("COIN_BTC", "2020-03-02", 3 * 288, 1e-4, 1e-8, True, 1)
    days = [_bars("IDX", f"2020-03-0{d} 09:00", 102, 3600.0, 0.5, False, 10 + d) for d in (2, 3, 4)]
    return validate_klines(pd.concat([coin, *days], ignore_index=True))


def test_contract_halves_and_kinds(klines: pd.DataFrame) -> None:
    trades, labels = BlindGenerator(klines, seed=5).run(240)
    checked = validate_trades(trades, klines=klines)  # every trade inside a bar of its symbol
    assert len(labels) == 240 and labels["account_id"].is_unique
    assert int(labels["label"].sum()) == 120
    assert set(labels["kind"]) == set(NORMAL_KINDS) | set(TAKEOVER_KINDS)
    assert set(checked["account_id"]) == set(labels["account_id"])
    assert set(labels.loc[labels["label"] == 0, "kind"]) == set(NORMAL_KINDS)

    bars = attach_bars(checked, klines)
    assert (bars["price"] >= bars["bar_low"]).all() and (bars["price"] <= bars["bar_high"]).all()
    tick = np.where(bars["symbol"] == "IDX", 0.5, 1e-8)
    steps = bars["price"] / tick
    assert np.allclose(steps, np.round(steps), rtol=0, atol=1e-6)
    assert (checked["quantity"] > 0).all()

    # one scoring window (24 h) holds each account's trades; some accounts trade on two
    # UTC days, some on two symbols
    g = checked.groupby("account_id")
    assert (g["ts"].agg(lambda t: t.max() - t.min()) < pd.Timedelta(hours=24)).all()
    assert (g["ts"].agg(lambda t: t.dt.floor("D").nunique()) > 1).any()
    assert (g["symbol"].nunique() > 1).any()


def test_beneficiary_mirrors_its_victim(klines: pd.DataFrame) -> None:
    trades, labels = BlindGenerator(klines, seed=9).run(200)
    kind = labels.set_index("account_id")["kind"]
    t = trades.assign(kind=trades["account_id"].map(kind))
    ben = t[t["kind"] == "beneficiary"]
    others = t[t["kind"] != "beneficiary"]
    key = ["symbol", "price", "quantity"]
    m = ben.merge(others, on=key, suffixes=("", "_v"))
    m = m[(m["side"] != m["side_v"]) & ((m["ts"] - m["ts_v"]).abs() <= pd.Timedelta(seconds=40))]
    # every beneficiary mirrors at least two fills of one takeover account
    pairs = m.groupby(["account_id", "account_id_v"]).size()
    assert (pairs.groupby(level=0).max() >= 2).sum() == ben["account_id"].nunique()
    assert set(m["kind_v"]) <= set(TAKEOVER_KINDS)


def test_same_seed_same_accounts(klines: pd.DataFrame) -> None:
    a = BlindGenerator(klines, seed=3).run(60)
    b = BlindGenerator(klines, seed=3).run(60)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
