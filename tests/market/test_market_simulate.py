"""The market simulator: valid data, the promised kinds, and a learnable problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.market.data import (
    MarketData,
    attach_bars,
    validate_klines,
    validate_labels,
    validate_trades,
)
from fraudlens.market.simulate import KINDS, REFERENCE_KINDS, simulate, simulate_reference


@pytest.fixture(scope="module")
def data() -> MarketData:
    return simulate(720, seed=7)


@pytest.fixture(scope="module")
def joined(data: MarketData) -> pd.DataFrame:
    k = data.klines.copy()
    k["day"] = k["ts"].dt.floor("D")
    k["amp"] = k["high"] - k["low"]
    k["rank"] = k.groupby(["symbol", "day"])["amp"].rank(ascending=False, method="first")
    a = attach_bars(data.trades, k)
    a["pos"] = (a["price"] - a["bar_low"]) / (a["bar_high"] - a["bar_low"])
    a["rank"] = k["rank"].to_numpy()[a["bar_row"]]
    a["rel_amp"] = k["amp"].to_numpy()[a["bar_row"]] / a["bar_low"]
    kinds = data.labels.set_index("account_id")["kind"]
    a["kind"] = kinds.reindex(a["account_id"]).to_numpy()
    # About one owner in ten also traded a little the day before; most checks below are
    # about the kind's own day.
    day = a["ts"].dt.floor("D")
    a["main_day"] = day == day.groupby(a["account_id"]).transform("max")
    return a


def _main(joined: pd.DataFrame, kind: str) -> pd.DataFrame:
    return joined[(joined["kind"] == kind) & joined["main_day"]]


def test_output_is_valid(data: MarketData, joined: pd.DataFrame) -> None:
    k = validate_klines(data.klines)
    t = validate_trades(data.trades, klines=k)
    validate_labels(data.labels)
    assert len(t) == len(data.trades)
    assert (joined["bar_row"] >= 0).all()
    assert (joined["price"] >= joined["bar_low"]).all()
    assert (joined["price"] <= joined["bar_high"]).all()
    assert (data.trades["quantity"] > 0).all()
    assert data.trades["trade_id"].is_unique
    assert data.trades["ts"].is_monotonic_increasing
    assert data.klines.equals(data.klines.sort_values(["symbol", "ts"]).reset_index(drop=True))
    assert data.account_ids.tolist() == sorted(data.labels["account_id"])
    assert data.account_ids[0] == "acct-000001"


def test_deterministic_for_a_seed() -> None:
    a = simulate(60, seed=11, n_symbols=5, days=2)
    b = simulate(60, seed=11, n_symbols=5, days=2)
    c = simulate(60, seed=12, n_symbols=5, days=2)
    pd.testing.assert_frame_equal(a.klines, b.klines)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    assert not a.trades["price"].equals(c.trades["price"])


def test_kinds_and_label_shares() -> None:
    d = simulate(480, seed=3, fraud_share=0.25, n_symbols=8, days=2)
    counts = d.labels["kind"].value_counts()
    assert set(counts.index) == set(KINDS)
    assert int(d.labels["label"].sum()) == 120
    fraud = counts[[k for k, v in KINDS.items() if v == 1]]
    normal = counts[[k for k, v in KINDS.items() if v == 0]]
    assert fraud.max() - fraud.min() <= 1 and normal.max() - normal.min() <= 1
    assert (d.labels["label"] == d.labels["kind"].map(KINDS)).all()


def test_bars_sessions_shape_and_wicks(data: MarketData) -> None:
    k = data.klines
    per_day = k.groupby(["symbol", k["ts"].dt.floor("D")]).size()
    crypto = per_day[per_day.index.get_level_values(0).str.endswith("-USD")]
    equity = per_day[~per_day.index.get_level_values(0).str.endswith("-USD")]
    assert (crypto == 288).all() and (equity == 78).all()
    assert len(crypto) and len(equity)
    eq = k[~k["symbol"].str.endswith("-USD")]
    # 2026-03-02..06 is before the US switch to daylight time: 14:30-21:00 UTC.
    minutes = eq["ts"].dt.hour * 60 + eq["ts"].dt.minute
    assert minutes.min() == 14 * 60 + 30 and minutes.max() == 20 * 60 + 55
    assert set(eq["ts"].dt.day_of_week) <= {0, 1, 2, 3, 4}
    levels = k.groupby("symbol")["close"].median()
    assert levels.min() < 10 and levels.max() > 500
    body_top = k[["open", "close"]].max(axis=1)
    body_bottom = k[["open", "close"]].min(axis=1)
    assert ((k["high"] > body_top) & (k["low"] < body_bottom)).mean() > 0.7
    # U-shaped volatility: the first and last half hours swing more than midday.
    rel = (eq["high"] - eq["low"]) / eq["low"]
    slot = eq.groupby(["symbol", eq["ts"].dt.floor("D")]).cumcount()
    assert rel[slot < 6].mean() > 1.5 * rel[(slot >= 30) & (slot < 48)].mean()
    assert rel[slot >= 72].mean() > rel[(slot >= 30) & (slot < 48)].mean()
    # Fat tails: the largest moves are far beyond the typical one.
    ret = np.log(k["close"] / k["open"]).abs()
    assert ret.quantile(0.999) > 6 * ret.median()


def test_takeover_reference_at_extremes_of_top10_bars(joined: pd.DataFrame) -> None:
    r = _main(joined, "takeover_reference")
    assert len(r)
    assert (r["rank"] <= 10).all()
    assert (r["rel_amp"] >= 0.005).all()
    buys, sells = r[r["side"] == "buy"], r[r["side"] == "sell"]
    assert (buys["pos"] <= 0.1).all() and (sells["pos"] >= 0.89).all()
    assert (sells["pos"] <= 1.0).all()
    # Matched: each timestamp holds as many buys as sells, in the same bar.
    per_ts = r.groupby(["account_id", "ts"])["side"].agg(lambda s: (s == "buy").sum() * 2 - len(s))
    assert (per_ts == 0).all()
    trips = r.groupby("account_id").size() // 2
    assert trips.between(2, 8).all()


def test_takeover_reverse_direction(joined: pd.DataFrame) -> None:
    r = _main(joined, "takeover_reverse")
    assert (r["rank"] <= 10).all()
    assert (r.loc[r["side"] == "buy", "pos"] >= 0.89).all()
    assert (r.loc[r["side"] == "sell", "pos"] <= 0.11).all()


def test_takeover_wick_sets_bar_extremes(joined: pd.DataFrame) -> None:
    w = _main(joined, "takeover_wick")
    assert len(w)
    at_high = w["price"] == w["bar_high"]
    at_low = w["price"] == w["bar_low"]
    assert (at_high | at_low).all()
    per_bar = w.groupby(["account_id", "bar_row"])
    # In every bar used, one side sits on the high and the other on the low.
    for _, g in per_bar:
        buys_high = g.loc[g["side"] == "buy", "price"].eq(g["bar_high"].iloc[0])
        sells_low = g.loc[g["side"] == "sell", "price"].eq(g["bar_low"].iloc[0])
        assert buys_high.all() == sells_low.all()
        assert len(g[g["side"] == "buy"]) == len(g[g["side"] == "sell"])


def test_subtle_mixed_multi(joined: pd.DataFrame) -> None:
    s = _main(joined, "takeover_subtle")
    assert len(s) and (s["rank"] <= 20).all()
    assert ((s["pos"] <= 0.16) | (s["pos"] >= 0.84)).all()
    assert s.groupby("account_id").size().between(4, 6).all()
    m = _main(joined, "takeover_mixed")
    assert m.groupby("account_id").size().min() >= 4 + 4
    assert m.groupby("account_id").size().max() > 20
    mu = _main(joined, "takeover_multi")
    # Up to 3 symbols with round trips (fewer only if a day lists fewer symbols).
    assert (mu.groupby("account_id")["symbol"].nunique() >= 2).mean() > 0.9


def test_scalper_round_trips_near_the_middle(joined: pd.DataFrame) -> None:
    s = _main(joined, "normal_scalper")
    sides = s.groupby(["account_id", "bar_row"])["side"].agg(list)
    assert sides.map(lambda x: x.count("buy") == x.count("sell")).all()
    # Tick rounding moves a price by up to half a tick: exact on wide bars.
    assert s["pos"].between(0.29, 0.71).mean() > 0.97
    wide = s[(s["bar_high"] - s["bar_low"]) / s["bar_low"] >= 0.002]
    assert len(wide) > 100 and wide["pos"].between(0.27, 0.73).all()


def test_limit_fills_at_an_extreme_but_never_matched(joined: pd.DataFrame) -> None:
    lim = _main(joined, "normal_limit")
    edge_buy = (lim["side"] == "buy") & (lim["price"] == lim["bar_low"])
    edge_sell = (lim["side"] == "sell") & (lim["price"] == lim["bar_high"])
    assert (edge_buy | edge_sell).mean() > 0.4
    both = (
        lim.assign(eb=edge_buy, es=edge_sell).groupby(["account_id", "bar_row"])[["eb", "es"]].any()
    )
    assert not (both["eb"] & both["es"]).any()


def test_normal_volatile_trades_in_volatile_bars(joined: pd.DataFrame) -> None:
    v = _main(joined, "normal_volatile")
    assert (v["rank"] <= 20).mean() > 0.9
    # Random positions: spread over the whole range, not at the extremes.
    assert 0.35 < v["pos"].mean() < 0.65
    assert v["pos"].std() > 0.2


def test_progress_is_reported() -> None:
    seen: list[int] = []
    simulate(50, seed=1, n_symbols=4, days=1, progress=seen.append)
    assert sum(seen) == 50 and len(seen) >= 2
    assert all(k > 0 for k in seen)


def test_weekend_only_days_use_crypto() -> None:
    d = simulate(40, seed=2, n_symbols=6, start="2026-03-07", days=2)
    assert d.klines["symbol"].str.endswith("-USD").all()
    validate_trades(d.trades, klines=d.klines)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        simulate(0)
    with pytest.raises(ValueError):
        simulate(10, fraud_share=1.5)


def test_simulate_reference() -> None:
    d = simulate_reference(200, seed=5)
    k = d.klines
    assert len(k) == 80 and k["symbol"].unique().tolist() == ["COIN"]
    assert set(d.labels["kind"]) == set(REFERENCE_KINDS)
    assert int(d.labels["label"].sum()) == 100
    a = attach_bars(d.trades, k)
    assert (a["bar_row"] >= 0).all()
    assert ((a["price"] >= a["bar_low"]) & (a["price"] <= a["bar_high"])).all()
    kinds = d.labels.set_index("account_id")["kind"]
    a["kind"] = kinds.reindex(a["account_id"]).to_numpy()
    normal = a[a["kind"] == "ref_normal"]
    sides = normal.groupby("account_id")["side"].agg(sorted)
    assert len(sides) == 100
    assert sides.map(lambda x: x == ["buy", "sell"]).all()
    hack = a[a["kind"] == "ref_takeover"]
    amp = k["high"] - k["low"]
    top10 = set(amp.sort_values(ascending=False, kind="stable").index[:10])
    assert set(hack["bar_row"]) <= top10
    pos = (hack["price"] - hack["bar_low"]) / (hack["bar_high"] - hack["bar_low"])
    assert (pos[hack["side"] == "buy"] <= 0.1).all()
    assert (pos[hack["side"] == "sell"].between(0.89, 1.0)).all()
    assert (hack["ts"] == hack["bar_ts"]).all()


def _account_features(d: MarketData) -> pd.DataFrame:
    """A few plain per-account features: enough to show the classes are separable."""
    k = d.klines.copy()
    k["amp"] = k["high"] - k["low"]
    k["rank"] = k.groupby(["symbol", k["ts"].dt.floor("D")])["amp"].rank(
        ascending=False, method="first"
    )
    a = attach_bars(d.trades, k)
    a["pos"] = (a["price"] - a["bar_low"]) / (a["bar_high"] - a["bar_low"])
    a["rank"] = k["rank"].to_numpy()[a["bar_row"]]
    a["bp"] = a["pos"].where(a["side"] == "buy")
    a["sp"] = a["pos"].where(a["side"] == "sell")
    g = a.groupby(["account_id", "bar_row"]).agg(
        bmax=("bp", "max"), bmin=("bp", "min"), smax=("sp", "max"), smin=("sp", "min")
    )
    g["pair"] = np.fmax(g["smax"] - g["bmin"], g["bmax"] - g["smin"]).fillna(-1)
    g["wide"] = g["pair"] >= 0.7
    g["paired"] = g["pair"] > -1
    per = g.groupby("account_id")
    a["top10"] = a["rank"] <= 10
    x = pd.DataFrame(
        {
            "n": a.groupby("account_id").size(),
            "max_pair": per["pair"].max(),
            "n_wide": per["wide"].sum(),
            "n_pairs": per["paired"].sum(),
            "top10": a.groupby("account_id")["top10"].mean(),
        }
    )
    x["wide_share"] = x["n_wide"] * 2 / x["n"]
    return x.reindex(d.account_ids)


@pytest.mark.slow
def test_problem_is_learnable() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    train = simulate(2400, seed=21)
    test = simulate(2400, seed=22)
    model = HistGradientBoostingClassifier(max_iter=150, random_state=0)
    # One thread: OpenMP spinning on a busy 2-core machine costs 100x here.
    with threadpool_limits(1):
        model.fit(_account_features(train), train.y())
        p = model.predict_proba(_account_features(test))[:, 1]
    y = test.y()
    kinds = test.label_column("kind")
    assert kinds is not None
    assert roc_auc_score(y, p) > 0.995
    threshold = np.quantile(p[y == 0], 0.99)
    for kind in (k for k, v in KINDS.items() if v == 1):
        recall = (p[kinds == kind] > threshold).mean()
        assert recall > 0.9, f"{kind}: recall {recall:.3f} at 1 % FPR"
