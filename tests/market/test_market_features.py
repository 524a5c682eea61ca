"""Trade features on small hand-made frames with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.market.data import MarketData
from fraudlens.market.features import FEATURE_NAMES, account_features, trade_level_frame
from fraudlens.market.simulate import simulate

T0 = pd.Timestamp("2024-03-04 14:00", tz="UTC")
N_BARS = 40
WIDE = (6, 13, 20, 27)  # bars 8x the ordinary range


def _klines(scale: float = 1.0, tick: float = 0.01) -> pd.DataFrame:
    """AAA: 40 bars of range 1.00 (100 ticks) except four of range 8.00; BBB: flat bars."""
    rows = []
    for i in range(N_BARS):
        low = 100.0 + 0.37 * i
        high = low + (8.0 if i in WIDE else 1.0)
        vol = 1e4 * (3 if i in WIDE else 1)
        rows.append(("AAA", T0 + pd.Timedelta(minutes=5 * i), low, high, low, high, vol))
    for i in range(N_BARS):
        rows.append(("BBB", T0 + pd.Timedelta(minutes=5 * i), 50.0, 50.0, 50.0, 50.0, 1e3))
    k = pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
    for c in ("open", "high", "low", "close"):
        k[c] = np.round(k[c] * scale, 12)
    return k


def _ts(bar: int, sec: int = 10) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=5 * bar, seconds=sec)


def _at(bar: int, p: float) -> float:
    """Price at fraction ``p`` of AAA bar ``bar``'s range (on the 0.01 tick)."""
    low = 100.0 + 0.37 * bar
    return round(low + p * (8.0 if bar in WIDE else 1.0), 2)


def _data(rows: list[tuple], scale: float = 1.0) -> MarketData:
    trades = pd.DataFrame(
        rows, columns=["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]
    )
    trades["price"] = np.round(trades["price"] * scale, 12)
    return MarketData(_klines(scale), trades)


def _trip(acct: str, tag: str, bar: int, buy_p: float, sell_p: float, q: float = 10,
          sell_bar: int | None = None) -> list[tuple]:  # fmt: skip
    sb = bar if sell_bar is None else sell_bar
    return [
        (f"{tag}b", acct, "AAA", _ts(bar), "buy", _at(bar, buy_p), q),
        (f"{tag}s", acct, "AAA", _ts(sb, 20), "sell", _at(sb, sell_p), q),
    ]


@pytest.fixture
def data() -> MarketData:
    rows = [
        # takeover, reference direction: two round trips at the extremes of wide bars
        *_trip("fwd", "f1", 6, 0.02, 0.98),
        *_trip("fwd", "f2", 13, 0.0, 1.0),
        # takeover, the SEC direction: buy high, sell low, three times
        *_trip("rev", "r1", 6, 0.97, 0.03, 4),
        *_trip("rev", "r2", 20, 0.95, 0.05, 4),
        *_trip("rev", "r3", 27, 1.0, 0.0, 4),
        # a momentum trader stopped out once: buy the high, sell the low of the next bar
        *_trip("stop", "m1", 13, 1.0, 0.0, 7, sell_bar=14),
        # a market maker: buy the low and sell the high of ordinary (quiet) bars
        *[r for i, b in enumerate((2, 3, 4, 8, 9)) for r in _trip("mm", f"q{i}", b, 0.0, 1.0, 5)],
        # legs in adjacent bars: buy at bar 20's low, sell at bar 21's high, twice
        *_trip("adj", "a1", 20, 0.0, 1.0, 3, sell_bar=21),
        *_trip("adj", "a2", 27, 0.0, 1.0, 3, sell_bar=28),
        # roughly at the extremes: within a quarter of the range
        *_trip("rough", "g1", 6, 0.2, 0.8),
        *_trip("rough", "g2", 13, 0.22, 0.77),
        # split fills: each leg in three pieces adding up to the same size
        ("p1", "split", "AAA", _ts(20, 1), "buy", _at(20, 0.01), 3),
        ("p2", "split", "AAA", _ts(20, 2), "buy", _at(20, 0.03), 4),
        ("p3", "split", "AAA", _ts(20, 3), "buy", _at(20, 0.02), 5),
        ("p4", "split", "AAA", _ts(20, 9), "sell", _at(20, 0.99), 6),
        ("p5", "split", "AAA", _ts(20, 11), "sell", _at(20, 0.97), 6),
        *_trip("split", "p6", 27, 0.0, 1.0, 12),
        # mid-bar scalps in wide bars
        *_trip("scalp", "s1", 6, 0.45, 0.55),
        *_trip("scalp", "s2", 13, 0.4, 0.6),
        # a flat bar (range 0) and a trade outside every bar
        ("x1", "flat", "BBB", _ts(3), "buy", 50.0, 1),
        ("x2", "flat", "BBB", _ts(3, 30), "sell", 50.0, 1),
        ("x3", "flat", "BBB", _ts(45), "sell", 51.0, 1),
    ]
    return _data(rows)


def test_shape_order_and_dtype(data: MarketData) -> None:
    f = account_features(data)
    assert list(f.index) == list(data.account_ids)
    assert tuple(f.columns) == FEATURE_NAMES
    assert all(dt == np.float32 for dt in f.dtypes)
    assert np.isfinite(f.drop(columns=["vol_share_mean", "vol_share_max",
                                       "strong_vol_share_max"])).all().all()  # fmt: skip


def test_strong_round_trips_both_directions(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["fwd", "n_strong"] == 2 and f.loc["fwd", "n_strong_fwd"] == 2
    assert f.loc["rev", "n_strong"] == 3 and f.loc["rev", "n_strong_rev"] == 3
    assert f.loc["rev", "n_strong_eq"] == 3
    # both legs at the extremes of bars 8x the day's median range: ext 1, gap 8; the
    # second round trip's ext is 0.98; the strongest three are read up to 0.9
    assert f.loc["fwd", "ext_mean_wide"] == pytest.approx((1.0 + 0.98) / 2)
    assert f.loc["fwd", "rt1_ext90"] == pytest.approx(0.9)
    assert f.loc["fwd", "rt1_gap"] == pytest.approx(np.log2(1 + 8.0))
    assert f.loc["fwd", "rt2_ext90"] == pytest.approx(0.9)
    assert f.loc["rev", "rt3_ext90"] == pytest.approx(0.9)
    assert f.loc["fwd", "strong_pnl_sign"] == 1 and f.loc["rev", "strong_pnl_sign"] == -1
    assert f.loc["fwd", "n_strong_pure"] == 2 and f.loc["fwd", "strong_crowd"] == 0


def test_one_stop_out_is_one_round_trip(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["stop", "n_strong"] == 1
    assert f.loc["stop", "rt2_ext90"] == 0 and f.loc["stop", "rt2_gap"] == 0
    assert f.loc["stop", "strong_adjacent_share"] == 1


def test_quiet_bar_spread_capture_is_extreme_but_not_strong(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["mm", "n_rt_ext"] == 5 and f.loc["mm", "n_rt_ext_quiet"] == 5
    assert f.loc["mm", "n_strong"] == 0
    assert f.loc["mm", "rt_eq_share"] == 1
    assert f.loc["mm", "quiet_share"] == 1


def test_adjacent_rough_and_split(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["adj", "n_strong"] == 2 and f.loc["adj", "rt_adjacent_share"] == 1
    assert f.loc["rough", "n_strong"] == 2 and f.loc["rough", "rt1_ext90"] <= 0.8 + 1e-6
    assert f.loc["split", "n_strong"] == 2 and f.loc["split", "n_strong_eq"] == 2
    assert f.loc["split", "fills_per_leg"] == pytest.approx(7 / 4)
    assert f.loc["scalp", "n_strong"] == 0 and f.loc["scalp", "n_rt"] == 2


def test_flat_bars_and_missing_bars(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["flat", "no_bar_share"] == pytest.approx(1 / 3)
    assert f.loc["flat", "n_strong"] == 0 and f.loc["flat", "n_rt_ext"] == 0


def test_nothing_depends_on_the_price_level(data: MarketData) -> None:
    """The same book at 1e-6 of the price (a coin quoted in BTC) reads the same."""
    base = account_features(data)
    small = account_features(_data(data.trades.values.tolist(), scale=1e-6))
    pd.testing.assert_frame_equal(base, small, check_exact=False, rtol=1e-5, atol=1e-5)


def test_volume_share_needs_volume(data: MarketData) -> None:
    f = account_features(data)
    assert f.loc["fwd", "vol_share_max"] == pytest.approx(10 / 3e4)
    no_vol = MarketData(data.klines.assign(volume=0.0), data.trades)
    g = account_features(no_vol)
    assert g["vol_share_max"].isna().all() and g["vol_share_mean"].isna().all()
    other = [c for c in FEATURE_NAMES if "vol_share" not in c]
    pd.testing.assert_frame_equal(f[other], g[other])


def test_row_order_and_subsets_do_not_matter(data: MarketData) -> None:
    base = account_features(data)
    rng = np.random.default_rng(0)
    shuffled = data.trades.iloc[rng.permutation(len(data.trades))]
    pd.testing.assert_frame_equal(account_features(MarketData(data.klines, shuffled)), base)
    part = account_features(data.subset(["rev", "mm"]))
    pd.testing.assert_frame_equal(part, base.loc[["mm", "rev"]])


def test_trade_level_frame(data: MarketData) -> None:
    tl = trade_level_frame(data).set_index("trade_id")
    assert tl.loc["f2b", "pos"] == 0.0 and tl.loc["f2s", "pos"] == 1.0
    assert tl.loc["f2b", "rt_partner"] == data.trades.index[data.trades["trade_id"] == "f2s"][0]
    assert bool(tl.loc["f2b", "rt_strong"]) and bool(tl.loc["f2b", "rt_forward"])
    assert not bool(tl.loc["r1b", "rt_forward"])
    assert tl.loc["f2b", "amp_rank"] == 1 and tl.loc["f2b", "bars_in_day"] == N_BARS
    assert tl.loc["f2b", "rel"] == pytest.approx(8.0) and tl.loc["f2b", "ticks"] == 800
    assert bool(tl.loc["a1b", "rt_adjacent"]) and bool(tl.loc["p1", "rt_equal_qty"])
    assert not bool(tl.loc["q0b", "rt_strong"])
    assert tl.loc["x3", "bar_row"] == -1 and tl.loc["x3", "rt_partner"] == -1
    assert bool(tl.loc["f2b", "wick"])


def test_features_on_simulated_accounts_separate_the_look_alikes() -> None:
    d = simulate(700, seed=3, n_symbols=10, days=2)
    f = account_features(d)
    kinds = pd.Series(d.label_column("kind"), index=d.account_ids)
    by = f.groupby(kinds)
    # repetition: a stopped-out momentum trader has one strong round trip at most
    assert by["n_strong"].median()["normal_momentum"] <= 1
    assert by["rt2_gap"].median()["normal_momentum"] < 1.0
    # quiet bars: market makers' round trips are extreme, and few of them strong (those
    # in bars up to two day-medians wide, where their quotes stood as the bar widened)
    assert by["n_rt_ext_quiet"].median()["normal_market_maker"] >= 4
    strong_share = (f["n_strong"] / f["n_rt"].clip(lower=1)).groupby(kinds).median()
    assert strong_share["normal_market_maker"] <= 0.25
    for kind in ("takeover_reverse", "takeover_reference", "takeover_two", "beneficiary"):
        assert by["n_strong"].median()[kind] >= 2, kind


@pytest.mark.parametrize("seed", [12, 13, 15])
def test_features_do_not_depend_on_the_trades_row_order(seed: int) -> None:
    from fraudlens.market.data import window

    d = window(simulate(400, seed=seed))
    base = account_features(d)
    for p in range(3):
        rng = np.random.default_rng(p)
        shuffled = d.trades.iloc[rng.permutation(len(d.trades))]
        again = account_features(MarketData(d.klines, shuffled, d.labels, book=d.the_book()))
        # exactly: a leg's price summed over its fills in another order had moved a
        # last bit, and round trips across the gap thresholds of the strong counts
        pd.testing.assert_frame_equal(again, base, check_exact=True)


def test_tick_found_in_either_block_of_candidates() -> None:
    from fraudlens.market._bars import estimate_tick

    rng = np.random.default_rng(4)
    # 1e5 quoted to the cent: the tick sits beyond the six largest decades
    assert estimate_tick(np.round(rng.uniform(99_000, 101_000, 400), 2)) == 0.01
    assert estimate_tick(np.round(rng.uniform(90, 110, 400) * 4) / 4) == 0.25
    assert estimate_tick(np.round(rng.uniform(1e-7, 3e-7, 400), 10)) == 1e-10


def test_bar_order_within_days_is_the_two_key_sort() -> None:
    from fraudlens.market._bars import _sort_in_groups

    rng = np.random.default_rng(6)
    special = np.array([0.0, -0.0, 1.0, -1.0, np.nan, -np.nan, np.inf, -np.inf, 1e-300, -2.5])
    for n_groups in (1, 7, 300, 70_000):  # one group digit, and two
        counts = rng.integers(1, 60 if n_groups < 70_000 else 4, n_groups)
        group = np.repeat(np.arange(n_groups), counts)
        ties = rng.integers(0, 5, len(group)).astype(np.float64)  # many ties
        mixed = np.where(
            rng.random(len(group)) < 0.5,
            rng.choice(special, len(group)),
            rng.normal(0, 1e3, len(group)),
        )
        for values in (ties, -ties, mixed, rng.uniform(0, 1e6, len(group))):
            np.testing.assert_array_equal(
                _sort_in_groups(values, group, n_groups), np.lexsort((values, group))
            )


def test_day_medians_from_a_padded_table_are_those_of_the_sort() -> None:
    from fraudlens.market._bars import _group_median, _group_median_values, _sort_in_groups

    rng = np.random.default_rng(13)
    for sizes in ((1, 60), (200, 300), (1, 2)):  # equal-ish days, and very unequal ones
        counts = rng.integers(*sizes, 150)
        if sizes == (1, 2):
            counts[0] = 5000  # one long day: the stable sort instead of the table
        start = np.r_[0, np.cumsum(counts)[:-1]]
        group = np.repeat(np.arange(len(counts)), counts)
        values = np.round(rng.lognormal(3, 2, len(group)), 1)
        values[rng.random(len(group)) < 0.05] = np.nan
        values[rng.random(len(group)) < 0.05] = 0.0
        values[rng.random(len(group)) < 0.01] = np.inf
        values[start[3] : start[3] + counts[3]] = np.nan  # a day without volume
        want = _group_median(np.nan_to_num(values), group, _sort_in_groups(values, group, 150))
        got = _group_median_values(values, group, start, counts)
        assert got.tobytes() == want.tobytes()


def test_ticks_of_all_days_at_once_are_estimate_tick_of_each() -> None:
    from fraudlens.market._bars import _ticks_of_runs, estimate_tick

    rng = np.random.default_rng(11)
    n_runs = 120
    counts = rng.integers(1, 400, n_runs)  # fewer than 64 bars (whole) and more (sampled)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    n = int(counts.sum())
    level = np.repeat(10.0 ** rng.uniform(-8, 5, n_runs), counts)
    tick = np.repeat(rng.choice([1e-8, 2.5e-3, 5e-2, 0.01, 0.25, 1.0, 2e-6], n_runs), counts)
    raw = level * (1 + rng.normal(0, 0.01, (4, n)))
    kind = np.repeat(rng.integers(0, 6, n_runs), counts)
    prices = np.where(kind == 0, raw, np.maximum(np.round(raw / tick), 1) * tick)
    off = (kind == 1) & (rng.random((4, n)) < 0.004)  # a few off-grid prints
    off[0, start] = True  # one among the first prices read, which 50+ bars allow
    prices = np.where(off, raw, prices)
    # exact powers of ten and their float neighbours (the top decade's edge)
    tens = np.repeat(10.0 ** rng.integers(-8, 6, n_runs).astype(np.float64), counts)
    near = tens * rng.choice([1.0, 1 - 1e-12, 1 + 1e-12, 0.5], (4, n))
    prices = np.where(kind == 2, near, prices)
    # missing, zero and negative prices: the days holding them
    bad = (kind == 3) & (rng.random((4, n)) < 0.01)
    prices = np.where(bad, rng.choice([np.nan, 0.0, -1.0, np.inf], (4, n)), prices)
    prices[:, start[-1] :] = np.nan  # a day without any price
    got = _ticks_of_runs(prices, start, counts)
    for i, (a, c) in enumerate(zip(start, counts, strict=True)):
        want = estimate_tick(prices[:, a : a + c].ravel())
        assert np.float64(got[i]).tobytes() == np.float64(want).tobytes(), (i, got[i], want)


def test_leg_key_order_is_the_stable_argsort() -> None:
    from fraudlens.market.features import _int_order

    rng = np.random.default_rng(9)
    for n_major, n_minor in [(1, 10), (5, 70_000), (20_000, 240_000), (2**16, 2**20)]:
        for n in (0, 1, 5_000):
            a = rng.integers(0, n_major, n)
            b = rng.integers(0, n_minor, n)
            key = a * n_minor + b  # the legs' (account, inner) key
            got = _int_order(key, n_major * n_minor)
            np.testing.assert_array_equal(got, np.argsort(key, kind="stable"))
    # accounts beyond 16 bits, and a missing account (-1: a negative key)
    for a, b, n_major in [
        (np.array([70_000, 3]), np.array([1, 0]), 70_001),
        (np.array([-1, 0]), np.array([1, 1]), 1),
    ]:
        key = a * 2 + b
        np.testing.assert_array_equal(_int_order(key, n_major * 2), np.argsort(key, kind="stable"))


def test_int_order_is_the_stable_argsort() -> None:
    from fraudlens.market.features import _int_order

    rng = np.random.default_rng(10)
    for bound in (1, 300, 2**16, 2**16 + 1, 2**40, 2**62):
        key = rng.integers(0, bound, 20_000) if bound > 1 else np.zeros(20_000, np.int64)
        key[::7] = key[0]  # ties
        np.testing.assert_array_equal(_int_order(key, bound), np.argsort(key, kind="stable"))
    key = np.array([3, -1, 2, -1])
    np.testing.assert_array_equal(_int_order(key, 4), np.argsort(key, kind="stable"))


def test_traded_klines_read_with_one_hash_of_their_symbols() -> None:
    from fraudlens.market._bars import bar_context
    from fraudlens.market.data import FEW_BARS, _bar_positions
    from fraudlens.market.features import (
        _sorted_klines,
        _traded_sorted_klines,
        _traded_symbols_only,
    )

    rng = np.random.default_rng(12)
    n_sym, per = 12, FEW_BARS // 8  # more k-lines than FEW_BARS, then fewer once selected
    ts = T0 + pd.to_timedelta(np.tile(np.arange(per) * 5, n_sym), unit="min")
    sym = np.repeat([f"S{i:02d}" for i in rng.permutation(n_sym)], per)
    price = np.round(rng.uniform(10, 11, len(ts)), 2)
    base = pd.DataFrame(
        {
            "symbol": sym,
            "ts": ts,
            "open": price,
            "high": price + 0.05,
            "low": price - 0.05,
            "close": price,
            "volume": 1.0,
        }
    )
    base["symbol"] = base["symbol"].astype("str")
    trades = pd.DataFrame(
        {"symbol": ["S03", "S07", "S03", "ZZZ"], "ts": T0 + pd.to_timedelta([7, 12, 99, 3], "min")}
    )
    traded = pd.factorize(trades["symbol"])[1]
    cases = {
        "sorted": base.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True),
        "as built": base,
        "shuffled": base.sample(frac=1.0, random_state=1),
        "index kept": base.sort_values(["symbol", "ts"], kind="stable"),
        "few": base.sort_values(["symbol", "ts"]).head(FEW_BARS - 1).reset_index(drop=True),
    }
    missing = cases["sorted"].copy()
    missing.loc[5, "symbol"] = None
    cases["a missing symbol"] = missing
    hashed = []
    for name, k in cases.items():
        for tr, tr_syms in ((trades, traded), (base, pd.factorize(base["symbol"])[1])):
            want = _sorted_klines(_traded_symbols_only(k, tr, tr_syms))
            got, k_symbols = _traded_sorted_klines(k, tr, tr_syms)
            pd.testing.assert_frame_equal(got, want, obj=name)
            if k_symbols is None:
                continue
            hashed.append(name)
            codes, names = k_symbols
            np.testing.assert_array_equal(np.asarray(names)[codes], got["symbol"].to_numpy())
            dense = np.cumsum(np.r_[0, codes[1:] != codes[:-1]])
            np.testing.assert_array_equal(dense, pd.factorize(got["symbol"], sort=True)[0])
            ctx, ctx_own = bar_context(got, symbol_codes=dense), bar_context(got)
            for field in ("symbol", "rank", "tick", "median_amp"):
                np.testing.assert_array_equal(getattr(ctx, field), getattr(ctx_own, field))
            np.testing.assert_array_equal(
                _bar_positions(tr, got, pd.Timedelta(minutes=5), k_symbols=k_symbols),
                _bar_positions(tr, got, pd.Timedelta(minutes=5)),
            )
    assert set(hashed) == {"sorted", "index kept"}


def test_bar_context_kept_days_read_the_same_as_fresh_ones(monkeypatch) -> None:
    from fraudlens.market import _bars

    k = simulate(60, seed=21).klines.sort_values(["symbol", "ts"], kind="stable")
    k = k.reset_index(drop=True)
    fields = ("symbol", "day_group", "amp", "rank", "n_day", "median_amp", "rel", "tick",
              "ticks", "volume", "median_volume")  # fmt: skip

    def same(a: _bars.BarContext, b: _bars.BarContext) -> None:
        for f in fields:
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f

    _bars.clear_day_cache()
    fresh = _bars.bar_context(k)
    assert len(_bars._days) == len(np.unique(fresh.day_group))
    same(_bars.bar_context(k), fresh)  # every day kept
    # one symbol's bars only, then a frame where one day changed: the changed day is
    # another day, worked out again, the others read from the cache
    one = k[k["symbol"] == k["symbol"].iloc[0]].reset_index(drop=True)
    _bars.clear_day_cache()
    same(_bars.bar_context(k), fresh)
    kept = _bars.bar_context(one)  # every day read from the cache
    _bars.clear_day_cache()
    same(kept, _bars.bar_context(one))  # against the days worked out afresh
    changed = k.copy()
    one_day = fresh.day_group == fresh.day_group.max() // 2  # not the frame's first rows
    changed.loc[one_day, "high"] = changed.loc[one_day, "high"] * 1.5
    _bars.clear_day_cache()
    want = _bars.bar_context(changed)
    _bars.clear_day_cache()
    _bars.bar_context(k)
    n_kept = len(_bars._days)
    same(_bars.bar_context(changed), want)
    assert len(_bars._days) == n_kept + 1
    assert not np.array_equal(want.median_amp[one_day], fresh.median_amp[one_day])
    # without volume, and a bounded cache (oldest days dropped first)
    no_vol = k.drop(columns=["volume"])
    _bars.clear_day_cache()
    want = _bars.bar_context(no_vol)
    monkeypatch.setattr(_bars, "_DAYS_KEPT", 500)
    _bars.clear_day_cache()
    same(_bars.bar_context(no_vol), want)
    same(_bars.bar_context(no_vol), want)
    assert 0 < _bars._days_rows <= 500
    assert _bars._days_rows == sum(len(day[3]) + _bars._DAY_COST for day in _bars._days.values())
    _bars.clear_day_cache()


def test_bar_context_cache_bound_counts_each_kept_day(monkeypatch) -> None:
    from fraudlens.market import _bars

    # one bar a day: each kept day holds a key, a tuple and an array besides its one bar,
    # so the bound counts it as more than one bar
    n_days = 400
    k = pd.DataFrame(
        {
            "symbol": "AAA",
            "ts": T0 + pd.to_timedelta(np.arange(n_days), unit="D"),
            "open": 10.0 + 0.01 * np.arange(n_days),
            "high": 11.0 + 0.01 * np.arange(n_days),
            "low": 9.0,
            "close": 10.5,
            "volume": 5.0,
        }
    )
    monkeypatch.setattr(_bars, "_DAYS_KEPT", 2_000)
    _bars.clear_day_cache()
    want = _bars.bar_context(k)
    assert 0 < len(_bars._days) <= 2_000 // (1 + _bars._DAY_COST)
    assert _bars._days_rows <= 2_000
    # the days dropped are worked out again, the same
    got = _bars.bar_context(k)
    for f in ("rank", "tick", "median_amp", "median_volume"):
        assert getattr(got, f).tobytes() == getattr(want, f).tobytes(), f
    _bars.clear_day_cache()


def test_bar_context_cache_keeps_the_days_read_again(monkeypatch) -> None:
    from fraudlens.market import _bars

    # A worker reads yesterday's closed day with every batch while today's day gets a
    # new key with each new bar: the closed day must outlive today's old versions.
    def one_day(symbol: str, n_bars: int, shift: float = 0.0) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "symbol": symbol,
                "ts": T0 + pd.to_timedelta(5 * np.arange(n_bars), unit="min"),
                "open": 10.0 + shift,
                "high": 11.0 + 0.01 * np.arange(n_bars) + shift,
                "low": 9.0,
                "close": 10.5,
                "volume": 5.0,
            }
        )

    closed = one_day("AAA", 100)
    key_bars = 100 + _bars._DAY_COST
    monkeypatch.setattr(_bars, "_DAYS_KEPT", 3 * key_bars)  # room for three such days
    _bars.clear_day_cache()
    _bars.bar_context(closed)
    (closed_key,) = _bars._days
    for version in range(1, 6):  # today's bars, one version after another
        _bars.bar_context(one_day("BBB", 100, shift=version))
        assert closed_key in _bars._days, version
        _bars.bar_context(closed)  # read again
    assert _bars._days_rows <= 3 * key_bars
    _bars.clear_day_cache()
