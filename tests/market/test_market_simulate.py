"""The market simulator: real-looking bars, the promised behaviours, user bars, validity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.market._bars import bar_context, bar_statistics, estimate_tick
from fraudlens.market.data import (
    MarketData,
    attach_bars,
    load_klines,
    load_market,
    validate_klines,
    validate_labels,
    validate_trades,
    write_market,
)
from fraudlens.market.simulate import (
    DEFAULT_KIND_WEIGHTS,
    KINDS,
    REFERENCE_KINDS,
    Behaviour,
    generate_bars,
    simulate,
    simulate_reference,
)


@pytest.fixture(scope="module")
def data() -> MarketData:
    return simulate(1200, seed=7, n_symbols=24, days=4)


@pytest.fixture(scope="module")
def joined(data: MarketData) -> pd.DataFrame:
    k = data.klines.sort_values(["symbol", "ts"]).reset_index(drop=True)
    ctx = bar_context(k)
    a = attach_bars(data.trades, k)
    row = a["bar_row"].to_numpy()
    a["pos"] = ((a["price"] - a["bar_low"]) / (a["bar_high"] - a["bar_low"])).fillna(0.5)
    a["rank"] = ctx.rank[row]
    a["rel"] = ctx.rel[row]
    a["ticks"] = ctx.ticks[row]
    a["tick"] = ctx.tick[row]
    a["n_day"] = ctx.n_day[row]
    kinds = data.labels.set_index("account_id")["kind"]
    a["kind"] = kinds.reindex(a["account_id"]).to_numpy()
    day = a["ts"].dt.floor("D")
    a["main_day"] = day == day.groupby(a["account_id"]).transform("max")
    return a


def _of(joined: pd.DataFrame, kind: str) -> pd.DataFrame:
    out = joined[(joined["kind"] == kind) & joined["main_day"]]
    assert len(out), kind
    return out


# ------------------------------------------------------------------------ validity


def test_output_is_valid(data: MarketData, joined: pd.DataFrame) -> None:
    k = validate_klines(data.klines)
    t = validate_trades(data.trades, klines=k)
    validate_labels(data.labels)
    assert len(t) == len(data.trades)
    assert (joined["bar_row"] >= 0).all()
    assert (joined["price"] >= joined["bar_low"]).all()
    assert (joined["price"] <= joined["bar_high"]).all()
    # every price on its symbol-day's tick
    steps = (joined["price"] - joined["bar_low"]) / joined["tick"]
    assert np.allclose(steps, np.rint(steps), atol=1e-6)
    assert (data.trades["quantity"] > 0).all()
    assert data.trades["trade_id"].is_unique
    assert data.trades["ts"].is_monotonic_increasing
    assert data.klines.equals(data.klines.sort_values(["symbol", "ts"]).reset_index(drop=True))
    assert data.account_ids.tolist() == sorted(data.labels["account_id"])
    assert (data.labels["label"] == data.labels["kind"].map(KINDS)).all()


def test_deterministic_for_a_seed() -> None:
    a = simulate(80, seed=11, n_symbols=5, days=2)
    b = simulate(80, seed=11, n_symbols=5, days=2)
    c = simulate(80, seed=12, n_symbols=5, days=2)
    pd.testing.assert_frame_equal(a.klines, b.klines)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    assert not a.trades["price"].equals(c.trades["price"])


def test_kinds_and_label_shares() -> None:
    even = {k: 1.0 for k in KINDS}
    d = simulate(880, seed=3, fraud_share=0.25, n_symbols=8, days=2, kinds=even)
    counts = d.labels["kind"].value_counts()
    assert set(counts.index) == set(KINDS)
    assert int(d.labels["label"].sum()) == 220
    fraud = counts[[k for k, v in KINDS.items() if v == 1]]
    normal = counts[[k for k, v in KINDS.items() if v == 0]]
    assert fraud.max() - fraud.min() <= 1 and normal.max() - normal.min() <= 1
    # the default mix draws the hard look-alikes more often than the easy ones
    dflt = simulate(880, seed=3, n_symbols=8, days=2).labels["kind"].value_counts()
    assert dflt["normal_momentum"] > 2 * dflt["normal_casual"]
    assert set(DEFAULT_KIND_WEIGHTS) == set(KINDS)
    with pytest.raises(ValueError, match="unknown kinds"):
        simulate(10, kinds={"normal_nope": 1.0})


def test_several_accounts_share_each_symbol_day(joined: pd.DataFrame) -> None:
    main = joined[joined["main_day"]]
    per_sd = main.groupby(["symbol", main["ts"].dt.floor("D")])["account_id"].nunique()
    assert per_sd.median() >= 4


# ------------------------------------------------------------------------ bars


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars(40, days=5, seed=3)


def test_bars_markets_sessions_and_price_levels(bars: pd.DataFrame) -> None:
    validate_klines(bars)
    sym = bars["symbol"]
    per_day = bars.groupby([sym, bars["ts"].dt.floor("D")]).size()
    names = per_day.index.get_level_values(0)
    crypto = per_day[names.str.endswith(("-USD", "-BTC"))]
    equity = per_day[~names.str.contains("-") & ~names.str.endswith("F")]
    assert len(crypto) and len(equity)
    # thin markets leave some 5-minute slots without a bar: at most a full day's
    assert crypto.max() == 288 and crypto.median() >= 280
    assert equity.max() == 78
    eq = bars[~sym.str.contains("-") & ~sym.str.endswith("F")]
    # 2026-03-02..06 is before the US switch to daylight time: 14:30-21:00 UTC.
    minutes = eq["ts"].dt.hour * 60 + eq["ts"].dt.minute
    assert minutes.min() == 14 * 60 + 30 and minutes.max() == 20 * 60 + 55
    assert set(eq["ts"].dt.day_of_week) <= {0, 1, 2, 3, 4}
    levels = bars.groupby("symbol")["close"].median()
    assert levels.min() < 1e-3 and levels.max() > 1e3  # coins in BTC up to indices


def test_bars_have_the_stylised_facts_of_real_ones(bars: pd.DataFrame) -> None:
    st = bar_statistics(bars)
    # heavy tails and volatility clustering in most instruments
    assert (st["kurtosis"] > 2).mean() > 0.75
    assert st["acf_abs_1"].median() > 0.1
    assert (st["acf_abs_12"] > 0).mean() > 0.7
    # volume goes with range
    assert st["vol_range_corr"].median() > 0.4
    # a tick structure: instruments whose bars are a few ticks wide, some zero-range
    # bars, and others hundreds of ticks wide
    assert (st["few_ticks"] > 0.3).sum() >= 3
    assert (st["zero_range"] > 0).sum() >= 5
    assert st["range_ticks"].max() > 100
    # gaps between sessions, none inside a 24 h market
    session = st.index.str.endswith("F") | ~st.index.str.contains("-")
    assert st.loc[session, "gap"].median() > 2 * st.loc[~session, "gap"].median()


def test_u_shaped_session_volatility(bars: pd.DataFrame) -> None:
    sym = bars["symbol"]
    eq = bars[~sym.str.contains("-") & ~sym.str.endswith("F")]
    rel = (eq["high"] - eq["low"]) / eq["low"]
    slot = ((eq["ts"].dt.hour * 60 + eq["ts"].dt.minute) - (14 * 60 + 30)) // 5
    assert rel[slot < 6].mean() > 1.3 * rel[(slot >= 30) & (slot < 48)].mean()


# ------------------------------------------------------------------------ user bars


def _user_klines() -> pd.DataFrame:
    """Two symbols at very different price levels and ticks, one day each, written out."""
    rng = np.random.default_rng(0)
    rows = []
    t0 = pd.Timestamp("2024-05-06T00:00:00Z")
    for sym, p0, tick in (("ALT_BTC", 2.5e-6, 1e-8), ("IDX", 18_000.0, 0.25)):
        p = p0
        for i in range(120):
            o = round(round(p / tick) * tick, 10)
            step = [round(round(p * x / tick) * tick, 10) for x in np.exp(rng.normal(0, 4e-3, 4))]
            h, lo = max(o, *step), min(o, *step)
            c = step[-1]
            rows.append((sym, t0 + pd.Timedelta(minutes=5 * i), o, h, lo, c, 10.0 + i))
            p = c
    return pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_simulate_on_user_klines_file(tmp_path: Path, fmt: str) -> None:
    raw = _user_klines()
    path = tmp_path / f"klines.{fmt}"
    if fmt == "csv":
        raw.assign(ts=raw["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(path, index=False)
    else:
        raw.to_parquet(path, index=False)
    k = load_klines(path)
    d = simulate(120, seed=5, klines=k)
    # the bars come back as they were
    pd.testing.assert_frame_equal(
        d.klines[["symbol", "ts", "open", "high", "low", "close"]].reset_index(drop=True),
        k.sort_values(["symbol", "ts"])[
            ["symbol", "ts", "open", "high", "low", "close"]
        ].reset_index(drop=True),
    )
    t = validate_trades(d.trades, klines=d.klines)
    a = attach_bars(t, d.klines)
    assert ((a["price"] >= a["bar_low"]) & (a["price"] <= a["bar_high"])).all()
    # prices on each symbol's own tick, derived from the data
    tick = a["symbol"].map({"ALT_BTC": 1e-8, "IDX": 0.25})
    steps = a["price"] / tick
    assert np.allclose(steps, np.rint(steps), atol=1e-6)
    assert set(d.labels["kind"]) <= set(KINDS)
    assert d.trades["symbol"].nunique() == 2


def test_bars_priced_past_what_trades_may_hold_are_refused() -> None:
    """Bars priced near 1e300 (the klines contract allows them) had given trades whose
    price x quantity passed the trades contract's 1e303: `market simulate --klines`
    wrote them and `market train` on its folder refused them."""
    from fraudlens.errors import DataError

    k = simulate(40, seed=1, n_symbols=8, days=2).klines
    cols = ["open", "high", "low", "close"]

    def scaled(top: float) -> pd.DataFrame:
        out = k.copy()
        out[cols] = out[cols].mul(top / out.groupby("symbol")["high"].transform("max"), axis=0)
        return out

    with pytest.raises(DataError, match="leave no room for the accounts' quantities") as exc:
        simulate(40, seed=1, klines=scaled(9e299))
    assert exc.value.column == "high"
    d = simulate(40, seed=1, klines=scaled(1e295))
    validate_trades(d.trades, klines=d.klines)


def test_tick_from_the_data_and_given() -> None:
    assert estimate_tick(np.array([100.25, 100.5, 101.0, 99.75])) == 0.25
    assert estimate_tick(np.array([0.09219985, 0.0922])) == pytest.approx(5e-8)
    assert estimate_tick(np.array([126.35, 126.39, 126.4])) == 0.01
    assert estimate_tick(np.array([3602.0, 3603.0, 3597.0])) == 1.0
    assert np.isnan(estimate_tick(np.array([])))
    k = _user_klines()
    d = simulate(60, seed=1, klines=k, tick_size={"ALT_BTC": 5e-8, "IDX": 0.5})
    a = attach_bars(d.trades, d.klines)
    idx = a[a["symbol"] == "IDX"]
    on_grid = (idx["price"] - idx["bar_low"]) / 0.5
    inner = (idx["price"] != idx["bar_low"]) & (idx["price"] != idx["bar_high"])
    assert np.allclose(on_grid[inner], np.rint(on_grid[inner]), atol=1e-6)


# ------------------------------------------------------------------------ behaviours


def _trips(g: pd.DataFrame) -> int:
    return int(min((g["side"] == "buy").sum(), (g["side"] == "sell").sum()))


def test_takeover_reference_at_extremes_of_top10_bars(joined: pd.DataFrame) -> None:
    r = _of(joined, "takeover_reference")
    # (a wick takeover's prints can widen another bar of the day past one of these)
    assert (r["rank"] <= 10).mean() > 0.9 and (r["rank"] <= 20).all()
    buys, sells = r[r["side"] == "buy"], r[r["side"] == "sell"]
    wide = r["ticks"] >= 20  # tick rounding moves a fill by up to half a tick
    assert (buys.loc[wide, "pos"] <= 0.1 + 1e-9).all()
    assert (sells.loc[wide, "pos"] >= 0.9 - 1e-9).all()
    # both legs of a round trip at one timestamp, as the reference writes them
    per_ts = r.groupby(["account_id", "ts"])["side"].agg(lambda s: (s == "buy").sum() * 2 - len(s))
    assert (per_ts == 0).all()
    assert r.groupby("account_id").apply(_trips).between(2, 8).all()


def test_takeover_reverse_direction(joined: pd.DataFrame) -> None:
    r = _of(joined, "takeover_reverse")
    wide = r["ticks"] >= 20
    assert (r.loc[wide & (r["side"] == "buy"), "pos"] >= 0.88).all()
    assert (r.loc[wide & (r["side"] == "sell"), "pos"] <= 0.12).all()
    # the day's 5 to 40 widest bars, past the 10th only volatile ones (>= 1.5 median
    # ranges); a wick takeover's prints can widen another bar of the day past one
    assert (r["rank"] <= 40).mean() > 0.95
    assert ((r["rank"] <= 10) | (r["rel"] >= 1.5)).mean() > 0.95


def test_takeover_adjacent_legs_in_neighbouring_bars(joined: pd.DataFrame) -> None:
    r = _of(joined, "takeover_adjacent")
    per_acct = r.groupby("account_id")
    split = 0
    for _, g in per_acct:
        rows_buy = set(g.loc[g["side"] == "buy", "bar_row"])
        rows_sell = set(g.loc[g["side"] == "sell", "bar_row"])
        split += any(b + 1 in rows_sell or b - 1 in rows_sell for b in rows_buy)
    assert split / per_acct.ngroups > 0.95


def test_rough_two_and_split(joined: pd.DataFrame) -> None:
    rough = _of(joined, "takeover_rough")
    wide = rough["ticks"] >= 20
    edge = np.minimum(rough["pos"], 1 - rough["pos"])
    # within the rough band, give or take the half tick a price is rounded by
    band = 0.3 + 0.5 / rough["ticks"] + 1e-9
    assert (edge[wide] <= band[wide]).all() and (edge[wide] > 0.15).mean() > 0.2
    two = _of(joined, "takeover_two")
    assert (two.groupby("account_id").size() == 4).mean() > 0.9
    split = _of(joined, "takeover_split")
    fills = split.groupby("account_id").size()
    legs = split.groupby(["account_id", "bar_row", "side"]).ngroups
    assert fills.sum() > 1.8 * legs
    # the legs of each round trip still add up to the same size on both sides
    per = split.groupby(["account_id", "bar_row", "side"])["quantity"].sum().unstack()
    per = per.dropna()
    assert np.isclose(per["buy"], per["sell"]).mean() > 0.6


def _joined(d: MarketData) -> pd.DataFrame:
    k = d.klines.sort_values(["symbol", "ts"]).reset_index(drop=True)
    ctx = bar_context(k)
    a = attach_bars(d.trades, k)
    row = a["bar_row"].to_numpy()
    a["pos"] = ((a["price"] - a["bar_low"]) / (a["bar_high"] - a["bar_low"])).fillna(0.5)
    a["rank"], a["rel"], a["ticks"] = ctx.rank[row], ctx.rel[row], ctx.ticks[row]
    a["median_amp"] = ctx.median_amp[row]
    day = a["ts"].dt.floor("D")
    return a[day == day.groupby(a["account_id"]).transform("max")]  # not the day before


def test_takeover_bars_reach_past_the_ten_widest_but_stay_volatile() -> None:
    beh = Behaviour(takeover_top=(40,))
    d = simulate(240, seed=11, n_symbols=8, days=2, fraud_share=1.0, behaviour=beh,
                 kinds={"takeover_reverse": 1.0, "takeover_multi": 1.0})  # fmt: skip
    a = _joined(d)
    past = a[a["rank"] > 10]
    assert len(past) > 0.2 * len(a)  # bars past the day's ten widest are used ...
    assert (past["rel"] >= 1.5).mean() > 0.95  # ... only while volatile
    assert (a["rank"] <= 40).mean() > 0.95


def test_scalper_near_the_ends_of_ordinary_bars_loses_some_round_trips() -> None:
    beh = Behaviour(scalper_edge_share=1.0)
    d = simulate(200, seed=12, n_symbols=8, days=2, fraud_share=0.0, behaviour=beh,
                 kinds={"normal_scalper": 1.0})  # fmt: skip
    a = _joined(d)
    a = a[a["ticks"] >= 20]  # rounding to the tick moves a fill in a narrow bar
    trips = a.groupby(["account_id", "bar_row", "side"])["pos"].mean().unstack().dropna()
    assert len(trips) > 500
    ordinary = a["rel"].between(0.6 - 1e-9, 1.3 + 1e-9)
    assert ordinary.mean() > 0.7
    near_end = np.minimum(a["pos"], 1 - a["pos"]) <= 0.2 + 0.5 / a["ticks"] + 1e-9
    assert near_end.mean() > 0.9
    lost = trips["buy"] > trips["sell"]  # bought near the high, sold near the low
    assert 0.05 < lost.mean() < 0.4
    assert lost.groupby(level="account_id").mean().gt(0).mean() > 0.5


def test_two_round_trips_mix_same_bar_and_adjacent_legs() -> None:
    beh = Behaviour(mixed_adjacent=1.0, adjacent_ordinary=0.0)
    d = simulate(120, seed=13, n_symbols=8, days=2, fraud_share=1.0, behaviour=beh,
                 kinds={"takeover_two": 1.0})  # fmt: skip
    a = _joined(d)
    mixed = 0
    for _, g in a.groupby("account_id"):
        buys = set(g.loc[g["side"] == "buy", "bar_row"])
        sells = set(g.loc[g["side"] == "sell", "bar_row"])
        same = len(buys & sells)
        adjacent = sum(b + 1 in sells or b - 1 in sells for b in buys - sells)
        mixed += same >= 1 and adjacent >= 1
    # a fifth of them have both round trips adjacent (takeover_two's own share)
    assert mixed / a["account_id"].nunique() > 0.65


def test_adjacent_legs_in_ordinary_bars_far_apart() -> None:
    beh = Behaviour(adjacent_ordinary=1.0)
    d = simulate(160, seed=14, n_symbols=8, days=2, fraud_share=1.0, behaviour=beh,
                 kinds={"takeover_adjacent": 1.0})  # fmt: skip
    a = _joined(d)
    spans, rels, ranks = [], [], []
    for _, g in a.groupby("account_id"):
        buy = g[g["side"] == "buy"].set_index("bar_row")
        sell = g[g["side"] == "sell"]
        for _, s in sell.iterrows():
            for r in (s["bar_row"] - 1, s["bar_row"] + 1):
                if r in buy.index:
                    b = buy.loc[[r]].iloc[0]
                    spans.append(abs(b["price"] - s["price"]) / s["median_amp"])
                    rels.append(max(b["rel"], s["rel"]))
                    ranks.append(min(b["rank"], s["rank"]))
    spans_a, rels_a, ranks_a = np.array(spans), np.array(rels), np.array(ranks)
    assert len(spans_a) > 300
    # the used extremes 1.6 median ranges apart (less the share of the range inside)
    assert (spans_a >= 1.6 * 0.8 - 1e-9).mean() > 0.95
    # not only the day's widest bars: mostly neither among the 10 widest, some both
    # ordinary (under 1.5 median ranges), which no other takeover's legs are
    assert (ranks_a > 10).mean() > 0.5 and (rels_a < 1.5).mean() > 0.1


def test_beneficiary_mirrors_its_victims(data: MarketData) -> None:
    t = data.trades
    kinds = data.labels.set_index("account_id")["kind"]
    ben = t[t["account_id"].map(kinds) == "beneficiary"]
    key = ["symbol", "ts", "price", "quantity"]
    other = t[t["account_id"].map(kinds) != "beneficiary"]
    m = ben.merge(other, on=key, suffixes=("", "_other"))
    m = m[m["side"] != m["side_other"]]
    mirrored = m.groupby("account_id").size()
    # most beneficiaries take the other side of a victim in this book (some of another)
    assert len(mirrored) > 0.6 * ben["account_id"].nunique()
    victims = m["account_id_other"].map(kinds)
    assert (victims.map(KINDS) == 1).all()


def test_market_maker_captures_the_spread_of_quiet_bars(joined: pd.DataFrame) -> None:
    mm = _of(joined, "normal_market_maker")
    assert (mm["rel"] <= 1.0).mean() > 0.55  # mostly quiet bars
    assert (mm["rel"] <= 2.05).mean() > 0.97  # not the day's volatile ones
    buys, sells = mm[mm["side"] == "buy"], mm[mm["side"] == "sell"]
    assert (buys["pos"] <= 0.5).mean() > 0.95 and (sells["pos"] >= 0.5).mean() > 0.95
    assert mm.groupby("account_id").size().median() >= 12


def test_market_maker_keeps_quoting_as_bars_widen(joined: pd.DataFrame) -> None:
    mm = _of(joined, "normal_market_maker")
    # round trips in bars 1.3-2 day-medians wide, in most makers' days
    wide = mm[(mm["rel"] > 1.3) & (mm["rel"] <= 2.05)]
    assert len(wide) > 0.08 * len(mm)
    assert wide["account_id"].nunique() > 0.6 * mm["account_id"].nunique()
    # still bought near the low and sold near the high
    buys, sells = wide[wide["side"] == "buy"], wide[wide["side"] == "sell"]
    assert (buys["pos"] <= 0.25).mean() > 0.95 and (sells["pos"] >= 0.75).mean() > 0.95


def test_momentum_trader_is_stopped_out_once(joined: pd.DataFrame) -> None:
    mo = _of(joined, "normal_momentum")
    for _, g in mo.groupby("account_id"):
        # (rounding to the tick moves a fill in a bar a few ticks wide)
        # (a flat bar's one price is both its high and its low)
        flat = g["ticks"] == 0
        buy = g[(g["side"] == "buy") & ((g["pos"] >= 0.7) | flat)]
        sell = g[(g["side"] == "sell") & ((g["pos"] <= 0.3) | flat)]
        assert len(buy) >= 1 and len(sell) >= 1  # in at one end, out at the other
        # the entry is at an extreme of one of the day's widest bars
        assert (pd.concat([buy, sell])["rank"] <= 25).any()
    # one losing round trip, not a repeated pattern: one matched pair per account
    per = mo.groupby("account_id")
    pairs = per.apply(lambda g: int((g["side"] == "buy").sum() > 0) and _trips(g))
    assert (pairs >= 1).all()


def test_edge_trader_fills_at_bid_and_ask_of_narrow_bars(joined: pd.DataFrame) -> None:
    e = _of(joined, "normal_edge")
    # bars a few ticks wide, or the day's quiet half where it has too few of those
    assert ((e["ticks"] <= 4) | (e["rel"] <= 1.3)).mean() > 0.9
    at_edge = ((e["side"] == "buy") & (e["pos"] == 1.0)) | ((e["side"] == "sell") & (e["pos"] == 0))
    assert at_edge.mean() > 0.8


def test_limit_fills_at_an_extreme_but_never_matched(joined: pd.DataFrame) -> None:
    lim = _of(joined, "normal_limit")
    edge_buy = (lim["side"] == "buy") & (lim["price"] == lim["bar_low"])
    edge_sell = (lim["side"] == "sell") & (lim["price"] == lim["bar_high"])
    assert (edge_buy | edge_sell).mean() > 0.4
    both = (
        lim.assign(eb=edge_buy, es=edge_sell).groupby(["account_id", "bar_row"])[["eb", "es"]].any()
    )
    assert not (both["eb"] & both["es"]).any()


def test_small_fills_and_volume_chasers(joined: pd.DataFrame) -> None:
    sf = _of(joined, "normal_small_fills")
    assert sf.groupby("account_id").size().median() >= 30
    vc = _of(joined, "normal_volume_chaser")
    assert (vc["rank"] <= vc["n_day"] / 2).mean() > 0.6  # busy bars are the wide ones


def test_behaviour_parameters_change_the_accounts() -> None:
    narrow = Behaviour(mm_round_trips=(2, 2))
    d = simulate(
        300,
        seed=4,
        n_symbols=6,
        days=2,
        behaviour=narrow,
        fraud_share=0.0,
        kinds={"normal_market_maker": 1},
    )
    sizes = d.trades.groupby("account_id").size()
    # two round trips in each of one or two symbols, plus a few other fills at most
    assert sizes.median() <= 8 and sizes.max() <= 8 + 3 + 3
    assert Behaviour().with_(rough_band=0.2).rough_band == 0.2


def test_progress_is_reported() -> None:
    seen: list[int] = []
    simulate(50, seed=1, n_symbols=4, days=1, progress=seen.append)
    assert sum(seen) == 50 and len(seen) >= 2
    assert all(k > 0 for k in seen)


def test_weekend_only_days_use_crypto() -> None:
    d = simulate(40, seed=2, n_symbols=6, start="2026-03-07", days=2)
    assert d.klines["symbol"].str.contains("-").all()
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


def _mixed(behaviour: Behaviour, seed: int) -> tuple[MarketData, pd.DataFrame]:
    """Only ``takeover_mixed`` accounts, with each fill's place in its bar."""
    d = simulate(
        60,
        seed=seed,
        n_symbols=6,
        days=3,
        fraud_share=1.0,
        kinds={"takeover_mixed": 1.0},
        behaviour=behaviour,
    )
    k = d.klines.sort_values(["symbol", "ts"]).reset_index(drop=True)
    a = attach_bars(d.trades, k)
    a["pos"] = ((a["price"] - a["bar_low"]) / (a["bar_high"] - a["bar_low"])).fillna(0.5)
    a["rel"] = bar_context(k).rel[a["bar_row"].to_numpy()]
    return d, a


def _extreme_pairs(a: pd.DataFrame) -> pd.Series:
    """Per account: bars wider than the day's median holding an equal-size buy and sell
    at opposite thirds of the range (the thief's round trips; rough ones included)."""
    wide = a[a["rel"] > 1.0]
    lo = wide[wide["pos"] <= 0.3][["account_id", "bar_row", "side", "quantity"]]
    hi = wide[wide["pos"] >= 0.7][["account_id", "bar_row", "side", "quantity"]]
    m = lo.merge(hi, on=["account_id", "bar_row", "quantity"])
    m = m[m["side_x"] != m["side_y"]]
    return m.groupby("account_id")["bar_row"].nunique()


def test_busy_owner_is_a_normal_kinds_day() -> None:
    # every owner is a many-small-fills account: its 30-250 fills around the thief's
    # 2-4 round trips at opposite extremes of wide bars
    beh = Behaviour(
        busy_owner_kinds=("normal_small_fills",),
        busy_owner_kind_share=1.0,
        busy_owner_overnight=0.0,
        mixed_adjacent=0.0,  # same-bar round trips, as _extreme_pairs counts them
    )
    d, a = _mixed(beh, seed=5)
    assert set(d.labels["kind"]) == {"takeover_mixed"}
    sizes = d.trades.groupby("account_id").size()
    assert sizes.min() >= 30 + 4 and sizes.median() >= 60
    pairs = _extreme_pairs(a).reindex(sizes.index, fill_value=0)
    assert (pairs >= 2).mean() > 0.8
    # the owner's small fills are smaller than the thief's legs
    small = a.groupby("account_id")["quantity"].median()
    top = a.groupby("account_id")["quantity"].max()
    assert (small < top / 2).mean() > 0.8


def test_busy_owner_day_across_midnight() -> None:
    beh = Behaviour(busy_owner_overnight=1.0, busy_owner_kind_share=0.0)
    d, a = _mixed(beh, seed=6)
    t = d.trades
    day = t["ts"].dt.floor("D")
    n_days = day.groupby(t["account_id"]).nunique()
    span = t.groupby("account_id")["ts"].agg(lambda s: s.max() - s.min())
    # most owners had a day before on their symbol: they trade into the next day, all
    # in one 24 h scoring window (the others are days of a normal kind)
    two = n_days.index[(n_days == 2) & (span < pd.Timedelta(hours=24))]
    assert len(two) > 0.4 * len(n_days)
    own = t[t["account_id"].isin(two)]
    a2 = a[a["account_id"].isin(two)]
    # the thief's round trips come after midnight, in the first hours of the later day
    last_day = own.groupby("account_id")["ts"].transform("max").dt.floor("D")
    a2 = a2.assign(late=(a2["ts"].dt.floor("D") == last_day.to_numpy()).to_numpy())
    pairs = _extreme_pairs(a2[a2["late"]]).reindex(two, fill_value=0)
    # (some round trips have legs in neighbouring bars or of unequal size)
    assert (pairs >= 2).mean() > 0.5 and (pairs >= 1).mean() > 0.8
    before = own[own["ts"].dt.floor("D") < last_day]
    assert before.groupby("account_id").size().median() >= 3


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_a_full_disk_keeps_the_old_files_and_names_the_one_that_did_not_fit(
    full_disk_folder: Path, fmt: str
) -> None:
    """``market simulate --out DIR`` onto a full disk left a truncated klines.csv (the
    next ``market train`` read it, or failed on its torn last row) and said only "cannot
    write: No space left on device". Each file is now written whole or not at all, and
    the error names it."""
    from _disk import fill  # type: ignore[import-not-found]

    data = simulate(60, seed=2, days=2)
    out = full_disk_folder / "data"
    old = write_market(simulate(5, seed=1, days=1), out, fmt=fmt)
    before = {name: p.read_bytes() for name, p in old.items()}
    filler = fill(full_disk_folder, leave=64 << 10)
    with pytest.raises(OSError) as info:
        write_market(data, out, fmt=fmt)
    assert info.value.errno == 28 and info.value.filename == str(out / f"klines.{fmt}")
    assert {name: p.read_bytes() for name, p in old.items()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in old.values())
    filler.unlink()
    written = write_market(data, out, fmt=fmt)
    again = load_market(out)
    assert len(again.trades) == len(data.trades) and set(written) == set(old)
