"""Trade features on small hand-made frames with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.market.data import MarketData
from fraudlens.market.features import FEATURE_NAMES, account_features, trade_level_frame

T0 = pd.Timestamp("2024-03-04 14:00", tz="UTC")


def _klines() -> pd.DataFrame:
    """20 five-minute bars of AAA; bar i spans [100 + i, 100 + i + (1 + i % 7)]."""
    rows = []
    for i in range(20):
        low = 100.0 + i
        high = low + 1 + i % 7
        rows.append(
            ("AAA", T0 + pd.Timedelta(minutes=5 * i), low + 0.2, high, low, high - 0.2, 1e4)
        )
    # a second symbol with flat and normal bars
    for i in range(20):
        low = 50.0
        high = 50.0 if i == 3 else 50.0 + 0.1 * (i + 1)
        rows.append(("BBB", T0 + pd.Timedelta(minutes=5 * i), low, high, low, high, 1e3))
    return pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])


def _ts(bar: int, sec: int = 10) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=5 * bar, seconds=sec)


def _at(bar: int, p: float) -> float:
    """Price at fraction ``p`` of AAA bar ``bar``'s range."""
    low = 100.0 + bar
    return low + p * (1 + bar % 7)


def _data(rows: list[tuple]) -> MarketData:
    trades = pd.DataFrame(
        rows, columns=["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]
    )
    return MarketData(_klines(), trades)


@pytest.fixture
def data() -> MarketData:
    rows = [
        # takeover: buy at the low, sell at the high of bar 6 (widest), same timestamp
        ("h1", "hack", "AAA", _ts(6), "buy", _at(6, 0.0), 10),
        ("h2", "hack", "AAA", _ts(6), "sell", _at(6, 1.0), 10),
        ("h3", "hack", "AAA", _ts(9), "buy", _at(9, 0.5), 3),
        # scalper: several mid-bar round trips
        ("s1", "scalp", "AAA", _ts(2, 5), "buy", _at(2, 0.4), 5),
        ("s2", "scalp", "AAA", _ts(2, 40), "sell", _at(2, 0.6), 5),
        ("s3", "scalp", "AAA", _ts(3, 5), "buy", _at(3, 0.45), 5),
        ("s4", "scalp", "AAA", _ts(3, 50), "sell", _at(3, 0.55), 5),
        ("s5", "scalp", "AAA", _ts(3, 70), "buy", _at(3, 0.3), 5),
        ("s6", "scalp", "AAA", _ts(3, 90), "sell", _at(3, 0.7), 5),
        # reverse takeover: buy near the high, sell near the low, 2 seconds apart
        ("r1", "rev", "AAA", _ts(13, 1), "buy", _at(13, 0.95), 2),
        ("r2", "rev", "AAA", _ts(13, 3), "sell", _at(13, 0.05), 2),
        # limit order filled exactly at a bar's high, nothing at the low
        ("l1", "limit", "AAA", _ts(4), "sell", _at(4, 1.0), 1),
        ("l2", "limit", "AAA", _ts(4, 20), "buy", _at(4, 0.5), 1),
        # flat bar (range 0) and a trade outside every bar
        ("f1", "flat", "BBB", _ts(3), "buy", 50.0, 1),
        ("f2", "flat", "BBB", _ts(25), "sell", 51.0, 1),
    ]
    return _data(rows)


def test_shape_order_and_dtype(data: MarketData) -> None:
    f = account_features(data)
    assert list(f.index) == list(data.account_ids)
    assert tuple(f.columns) == FEATURE_NAMES
    assert all(dt == np.float32 for dt in f.dtypes)
    assert np.isfinite(f.to_numpy()).all()
    assert f.loc["hack", "n_trades"] == 3
    assert f.loc["scalp", "n_trades"] == 6


def test_extreme_round_trip_counted(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["hack", "n_rt_fwd_ext"] == 1
    assert f.loc["hack", "n_rt_rev_ext"] == 0
    assert f.loc["hack", "n_rt_ext"] == 1
    assert f.loc["hack", "n_same_ts_pairs"] == 1
    assert f.loc["hack", "n_wick_bars_both"] == 1
    assert f.loc["hack", "max_delta"] == pytest.approx(1.0)
    # bar 6 has amplitude 7, tied with bar 13 for the widest of the day
    assert f.loc["hack", "rt_amp_rank_min"] == 1
    assert f.loc["hack", "rt_trade_share"] == pytest.approx(2 / 3)


def test_scalper_mid_bar_round_trips_are_not_extreme(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["scalp", "n_pairs"] == 3
    assert f.loc["scalp", "n_bars_both_sides"] == 2
    assert f.loc["scalp", "n_rt_ext"] == 0
    assert f.loc["scalp", "n_rt_near"] == 0
    assert f.loc["scalp", "max_delta_fwd"] == pytest.approx(0.4, abs=1e-6)
    assert f.loc["scalp", "mid_share"] == 1.0
    assert f.loc["scalp", "n_same_ts_pairs"] == 0


def test_reverse_direction_counted(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["rev", "n_rt_rev_ext"] == 1
    assert f.loc["rev", "n_rt_fwd_ext"] == 0
    assert f.loc["rev", "max_delta_rev"] == pytest.approx(0.9, abs=1e-6)
    assert f.loc["rev", "n_edge_unfav"] == 2
    assert f.loc["rev", "n_edge_fav"] == 0
    assert f.loc["rev", "rt_pnl_rel"] < 0


def test_limit_fill_is_a_wick_but_not_a_round_trip(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["limit", "n_wick"] == 1
    assert f.loc["limit", "n_wick_bars_both"] == 0
    assert f.loc["limit", "n_rt_near"] == 0
    assert f.loc["limit", "n_wick_in_rt"] == 0


def test_flat_bar_and_missing_bar(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["flat", "no_bar_share"] == pytest.approx(0.5)
    tl = trade_level_frame(data).set_index("trade_id")
    assert tl.loc["f1", "pos"] == 0.5  # range 0
    assert tl.loc["f2", "bar_row"] == -1
    assert tl.loc["f2", "pos"] == 0.5


def test_trade_level_positions_exact(data: MarketData) -> None:
    tl = trade_level_frame(data).set_index("trade_id")
    expected = {"h1": 0.0, "h2": 1.0, "h3": 0.5, "s1": 0.4, "r1": 0.95, "r2": 0.05, "l1": 1.0}
    for tid, p in expected.items():
        assert tl.loc[tid, "pos"] == pytest.approx(p, abs=1e-12), tid
    assert tl.loc["h1", "fwd_partner"] == tl.index.get_loc("h2")
    assert tl.loc["h1", "fwd_delta"] == pytest.approx(1.0)
    assert tl.loc["r1", "rev_delta"] == pytest.approx(0.9)
    assert tl.loc["h1", "same_ts_partner"] == tl.index.get_loc("h2")
    assert tl.loc["s1", "same_ts_partner"] == -1
    assert bool(tl.loc["h1", "wick"]) and bool(tl.loc["l1", "wick"])
    assert not bool(tl.loc["s1", "wick"])
    assert tl.loc["h1", "bars_in_day"] == 20


def test_pairing_prefers_lowest_buys_with_highest_sells() -> None:
    # two buys and two sells in one bar: the two legs at 0 / 0.1 should pair with 0.85 / 1.0
    rows = [
        ("a", "x", "AAA", _ts(6, 1), "buy", _at(6, 0.0), 1),
        ("b", "x", "AAA", _ts(6, 2), "buy", _at(6, 0.1), 1),
        ("c", "x", "AAA", _ts(6, 3), "sell", _at(6, 0.85), 1),
        ("d", "x", "AAA", _ts(6, 4), "sell", _at(6, 1.0), 1),
        # a third buy in the middle stays unpaired
        ("e", "x", "AAA", _ts(6, 5), "buy", _at(6, 0.5), 1),
    ]
    f = account_features(_data(rows))
    assert f.loc["x", "n_pairs"] == 2
    assert f.loc["x", "n_rt_fwd_ext"] == 2
    tl = trade_level_frame(_data(rows)).set_index("trade_id")
    assert tl.loc["e", "fwd_partner"] == -1


def test_mid_bar_fill_does_not_hide_an_extreme_round_trip() -> None:
    # pairing 0.0-0.6 and 0.5-1.0 would show no extreme pair; 0.0-1.0 is one
    rows = [
        ("a", "x", "AAA", _ts(6, 1), "buy", _at(6, 0.0), 1),
        ("b", "x", "AAA", _ts(6, 2), "buy", _at(6, 0.5), 1),
        ("c", "x", "AAA", _ts(6, 3), "sell", _at(6, 0.6), 1),
        ("d", "x", "AAA", _ts(6, 4), "sell", _at(6, 1.0), 1),
    ]
    f = account_features(_data(rows))
    assert f.loc["x", "n_rt_fwd_ext"] == 1
    assert f.loc["x", "n_rt_fwd_near"] == 1
    assert f.loc["x", "n_pairs"] == 2
    tl = trade_level_frame(_data(rows)).set_index("trade_id")
    assert tl.loc["a", "fwd_partner"] == tl.index.get_loc("d")
    assert tl.loc["b", "fwd_partner"] == -1


def test_adjacent_bar_round_trip() -> None:
    rows = [
        ("a", "x", "AAA", _ts(6), "buy", _at(6, 0.0), 1),
        ("b", "x", "AAA", _ts(7), "sell", _at(7, 1.0), 1),
        ("c", "y", "AAA", _ts(6), "buy", _at(6, 0.0), 1),
        ("d", "y", "AAA", _ts(9), "sell", _at(9, 1.0), 1),
    ]
    f = account_features(_data(rows))
    assert f.loc["x", "n_bars_adjacent_sides"] == 1
    assert f.loc["y", "n_bars_adjacent_sides"] == 0
    assert f.loc["x", "n_pairs"] == 0


def test_accounts_independent_of_each_other(data: MarketData) -> None:
    """An account's features do not depend on which other accounts are in the batch."""
    full = account_features(data)
    alone = account_features(data.subset(["rev"]))
    pd.testing.assert_series_equal(full.loc["rev"], alone.loc["rev"])


def test_empty_trades() -> None:
    f = account_features(_data([]))
    assert len(f) == 0
    assert tuple(f.columns) == FEATURE_NAMES


def test_trade_level_frame_bar_columns_match_attach_bars(data: MarketData) -> None:
    from fraudlens.market.data import attach_bars

    tl = trade_level_frame(data)
    ref = attach_bars(data.trades, data.klines, data.bar).reset_index(drop=True)
    cols = ["bar_row", "bar_ts", "bar_open", "bar_high", "bar_low", "bar_close"]
    pd.testing.assert_frame_equal(tl[cols], ref[cols], check_dtype=False)


def test_unrelated_symbols_do_not_change_features(data: MarketData) -> None:
    extra = data.klines.assign(symbol="ZZZ", high=data.klines["high"] * 3)
    more = MarketData(pd.concat([data.klines, extra], ignore_index=True), data.trades)
    pd.testing.assert_frame_equal(account_features(more), account_features(data))


def _max_matching(buys: list[float], sells: list[float], cut: float) -> int:
    """Brute-force largest set of disjoint (buy, sell) pairs with sell - buy >= cut."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    if not buys or not sells:
        return 0
    adj = np.array([[s - b >= cut - 1e-9 for s in sells] for b in buys], dtype=np.int8)
    match = maximum_bipartite_matching(csr_matrix(adj), perm_type="column")
    return int((match >= 0).sum())


def test_round_trip_counts_equal_brute_force_matching() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for a in range(100):
        for j in range(int(rng.integers(1, 10))):
            bar = int(rng.choice([6, 13]))
            # positions on a 1/20 grid so exact ties with the cuts are exercised too
            p = float(rng.integers(0, 21)) / 20
            side = "buy" if rng.random() < 0.5 else "sell"
            rows.append((f"t{a}-{j}", f"acct{a:03d}", "AAA", _ts(bar, j), side, _at(bar, p), 1))
    data = _data(rows)
    f = account_features(data)
    tl = trade_level_frame(data)
    for acct, g in tl.groupby("account_id"):
        fwd_ext = fwd_near = rev_ext = 0
        for _, bar in g.groupby("bar_row"):
            buys = bar.loc[bar["side"] == "buy", "pos"].tolist()
            sells = bar.loc[bar["side"] == "sell", "pos"].tolist()
            fwd_ext += _max_matching(buys, sells, 0.8)
            fwd_near += _max_matching(buys, sells, 0.65)
            rev_ext += _max_matching([1 - b for b in buys], [1 - s for s in sells], 0.8)
        assert f.loc[acct, "n_rt_fwd_ext"] == fwd_ext, acct
        assert f.loc[acct, "n_rt_fwd_near"] == fwd_near, acct
        assert f.loc[acct, "n_rt_rev_ext"] == rev_ext, acct
        # every reported partner pair is a real opposite-side pair above the cut
        paired = g[g["fwd_partner"] >= 0]
        assert len(paired) == 2 * fwd_near
        for i, row in paired.iterrows():
            other = tl.loc[row["fwd_partner"]]
            assert other["side"] != row["side"] and other["bar_row"] == row["bar_row"]
            assert tl.loc[other.name, "fwd_partner"] == i
            assert row["fwd_delta"] >= 0.65 - 1e-7
