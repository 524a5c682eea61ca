"""Per-account features read directly from trades and their 5-minute bars.

An account takeover shows up as matched trades at the two extremes of a volatile bar: a
buy near the bar's low and a sell near its high in the same bar (or the reverse, a buy
near the high and a sell near the low), often at the same timestamp, in the day's
highest-amplitude bars. The features below measure that pattern and the ordinary
trading it hides in.

Everything is vectorised over all trades at once (one sort per pairing, ``np.bincount``
per aggregate); there is no Python loop per account or per trade.

Terms used in names and docstrings:

``pos``
    where a fill sits in its bar's range, ``(price - low) / (high - low)``, clipped to
    ``[0, 1]``; 0.5 when the bar has no range or no bar was found.
``fwd`` / ``rev``
    the two directions of a round trip: *forward* buys low and sells high (the reference
    generator's recipe); *reverse* buys high and sells low (what the SEC's intrusion
    cases describe).
``delta``
    how far apart the two legs of a same-bar round trip sit, ``sell_pos - buy_pos``
    for forward pairs and ``buy_pos - sell_pos`` for reverse pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from fraudlens.market.data import MarketData, _bar_positions

__all__ = [
    "EXTREME_DELTA",
    "FEATURE_DESCRIPTIONS",
    "FEATURE_NAMES",
    "NEAR_DELTA",
    "account_features",
    "trade_level_frame",
]

#: A same-bar round trip whose legs are at least this far apart (in bar-range units) is
#: "extreme" (the reference recipe gives >= 0.81).
EXTREME_DELTA: Final = 0.8
#: A looser cut for round trips placed a little further from the extremes.
NEAR_DELTA: Final = 0.65
#: A fill within this share of the range from a bar end counts as "at the extreme".
_EDGE: Final = 0.1
#: Bars ranked this high (or better) by amplitude within their symbol's day are "top" bars.
_TOP_BARS: Final = 10
#: Placeholder rank for "no such bar" (worse than any real rank).
_NO_RANK: Final = 999.0
_DAY_NS: Final = 86_400 * 10**9

#: What each feature measures, per account (``pos``, ``delta``, fwd/rev: see the module
#: docstring). "Round trip" means a same-bar buy/sell pair; "near" ones have
#: delta >= NEAR_DELTA, "extreme" ones delta >= EXTREME_DELTA. Counts of pairs come from
#: the largest matching of buys with sells per bar, so one mid-bar fill cannot hide an
#: extreme pair.
FEATURE_DESCRIPTIONS: Final[dict[str, str]] = {
    # activity
    "n_trades": "number of fills",
    "log_notional": "log(1 + total price x quantity)",
    "buy_share": "share of fills that are buys",
    "n_symbols": "distinct symbols traded",
    "n_bars": "distinct bars traded in",
    "trades_per_bar": "fills per bar traded in",
    "span_hours": "hours from the first to the last fill",
    "no_bar_share": "share of fills no bar of their symbol contains",
    # where fills sit in their bars
    "pos_mean": "mean pos",
    "pos_std": "standard deviation of pos",
    "buy_pos_mean": "mean pos of buys (0.5 if none)",
    "sell_pos_mean": "mean pos of sells (0.5 if none)",
    "mid_share": "share of fills with 0.25 < pos < 0.75",
    "edge_share": "share of fills within 10 % of the range from either end",
    "n_edge_fav": "buys near the low plus sells near the high",
    "n_edge_unfav": "buys near the high plus sells near the low",
    "edge_fav_share": "n_edge_fav / n_trades",
    "edge_unfav_share": "n_edge_unfav / n_trades",
    # fills that set the bar's high or low
    "n_wick": "fills priced exactly at their bar's high or low",
    "wick_share": "n_wick / n_trades",
    "n_wick_bars_both": "bars where the account's fills hit both the high and the low",
    "n_wick_in_rt": "wick fills that are a leg of a near round trip",
    # same-bar opposite-side fills
    "n_bars_both_sides": "bars holding both a buy and a sell of the account",
    "bars_both_share": "n_bars_both_sides / n_bars",
    "n_pairs": "sum over bars of min(buys, sells)",
    "spread_mean": "mean over two-sided bars of the widest buy/sell pos gap",
    "n_rt_fwd_ext": "extreme forward round trips",
    "n_rt_rev_ext": "extreme reverse round trips",
    "n_rt_ext": "extreme round trips, both directions",
    "n_rt_fwd_near": "near forward round trips",
    "n_rt_rev_near": "near reverse round trips",
    "n_rt_near": "near round trips, both directions",
    "max_delta_fwd": "largest max(sell pos) - min(buy pos) over two-sided bars",
    "max_delta_rev": "largest max(buy pos) - min(sell pos) over two-sided bars",
    "max_delta": "max(max_delta_fwd, max_delta_rev)",
    "second_delta": "second-largest two-sided bar spread (repeated round trips)",
    "sum_delta_near": "sum of delta over near round trips",
    "rt_trade_share": "share of fills that are a leg of a near round trip",
    "rt_value_share": "share of notional in near round-trip legs",
    "log_rt_value": "log(1 + notional of near round-trip legs)",
    "rt_pnl_rel": "(sell - buy) x quantity over near round trips, / total notional",
    "rt_equal_qty_share": "share of near round trips whose legs have equal quantity",
    "n_bars_adjacent_sides": "bars with a buy whose neighbouring bar holds a sell",
    # same-timestamp opposite-side fills
    "n_same_ts_pairs": "buy/sell pairs sharing symbol and timestamp",
    "same_ts_share": "2 x n_same_ts_pairs / n_trades",
    "n_same_ts_near": "same-timestamp pairs with delta >= NEAR_DELTA, both directions",
    "same_ts_max_delta": "widest pos gap between same-timestamp buys and sells",
    # bar amplitude within the symbol's day
    "amp_rank_min": "best amplitude rank (1 = widest bar of the symbol's day) traded in",
    "amp_rank_mean": "mean amplitude rank of the fills' bars",
    "amp_pct_mean": "mean amplitude rank / bars that day",
    "top_bar_share": "share of fills in one of the day's 10 widest bars",
    "n_top_bars": "distinct top-10 bars traded in",
    "amp_rel_mean": "mean bar amplitude / bar low",
    "amp_rel_max": "largest bar amplitude / bar low",
    "amp_vs_median_mean": "mean bar amplitude / the symbol-day's median amplitude",
    "rt_amp_rank_min": "best amplitude rank among near round trips' bars (999 if none)",
    "rt_amp_rank_mean": "mean amplitude rank of near round trips' bars (999 if none)",
    "n_rt_top_bars": "near round trips in a top-10 bar",
    "rt_amp_rel_mean": "mean amplitude / low of near round trips' bars",
}

#: Column order of :func:`account_features` (stable; a saved model records it).
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(FEATURE_DESCRIPTIONS)


# ---------------------------------------------------------------------------------------
# trade-level arrays
# ---------------------------------------------------------------------------------------
@dataclass
class _Pairs:
    """Buy/sell index pairs (into the trade arrays) and their delta."""

    buy: np.ndarray
    sell: np.ndarray
    delta: np.ndarray


@dataclass
class _Groups:
    """Fills grouped (by account and bar, or account, symbol and timestamp) with side stats."""

    code: np.ndarray  # dense group id per fill, -1 when the fill takes no part
    n: int
    first: np.ndarray  # one fill of each group (a row index into the trade arrays)
    nb: np.ndarray  # buys per group
    ns: np.ndarray  # sells per group
    min_buy: np.ndarray  # lowest buy pos per group (inf if none)
    max_buy: np.ndarray
    min_sell: np.ndarray
    max_sell: np.ndarray

    @property
    def both(self) -> np.ndarray:
        """Groups holding at least one buy and one sell."""
        return (self.nb > 0) & (self.ns > 0)


@dataclass
class _Trades:
    """Trades joined to bars, as flat numpy arrays in the trades' row order."""

    acct: np.ndarray  # account code, index into account_ids
    account_ids: np.ndarray
    is_buy: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    ts: np.ndarray  # int64 ns
    sym: np.ndarray  # symbol code
    bar_row: np.ndarray  # row in the (symbol, ts)-sorted k-lines; -1 when no bar
    has_bar: np.ndarray
    pos: np.ndarray
    wick: np.ndarray
    amp_rank: np.ndarray
    bars_in_day: np.ndarray
    amp_rel: np.ndarray
    amp_vs_median: np.ndarray
    row_symbol: np.ndarray  # symbol code of each k-line row
    bars: _Groups  # one group per (account, bar)
    stamps: _Groups  # one group per (account, symbol, timestamp)
    fwd: _Pairs  # same-bar forward round trips with delta >= NEAR_DELTA
    rev: _Pairs  # same-bar reverse round trips with delta >= NEAR_DELTA
    fwd_ext: np.ndarray  # forward round trips with delta >= EXTREME_DELTA, per bar group
    rev_ext: np.ndarray
    same_ts: _Pairs  # same-timestamp round trips (either direction) with delta >= NEAR_DELTA


def _traded_symbols_only(klines: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    """The k-lines of the symbols in ``trades`` (whole days are kept for amplitude ranks)."""
    keep = klines["symbol"].isin(pd.unique(trades["symbol"])).to_numpy()
    return klines if bool(keep.all()) else klines[keep]


def _sorted_klines(klines: pd.DataFrame) -> pd.DataFrame:
    """K-lines in the row order ``attach_bars`` numbers its ``bar_row`` by."""
    return klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _bar_context(k: pd.DataFrame) -> dict[str, np.ndarray]:
    """Amplitude rank (1 = widest), bars per day, amplitude / low and amplitude / median.

    ``k`` is sorted by ``(symbol, ts)``; results follow its rows.
    """
    n = len(k)
    if n == 0:
        empty = np.zeros(0, dtype=np.float64)
        return {
            "rank": empty,
            "n": empty,
            "amp_rel": empty,
            "amp_vs_median": empty,
            "symbol": np.zeros(0, dtype=np.int64),
        }
    high = k["high"].to_numpy(dtype=np.float64)
    low = k["low"].to_numpy(dtype=np.float64)
    amp = high - low
    sym = np.asarray(pd.factorize(k["symbol"])[0], dtype=np.int64)
    day = k["ts"].to_numpy("datetime64[ns]").astype(np.int64) // _DAY_NS
    # k is sorted by (symbol, ts), so (symbol, day) groups are contiguous runs
    new_group = np.r_[True, (sym[1:] != sym[:-1]) | (day[1:] != day[:-1])]
    group = np.cumsum(new_group) - 1
    # widest first inside each (symbol, day)
    order = _group_order(group, -amp)
    g_sorted = group[order]
    start = np.flatnonzero(new_group)
    counts = np.diff(np.r_[start, n])
    # equal amplitudes share the best rank ("min" ranking)
    amp_sorted = amp[order]
    new_value = np.r_[True, (g_sorted[1:] != g_sorted[:-1]) | (amp_sorted[1:] != amp_sorted[:-1])]
    first_of_value = np.maximum.accumulate(np.where(new_value, np.arange(n), 0))
    rank_sorted = first_of_value - np.repeat(start, counts) + 1
    rank = np.empty(n, dtype=np.float64)
    rank[order] = rank_sorted
    per_day = counts.astype(np.float64)[group]
    # median amplitude of each symbol-day: middle of the sorted slice
    mid = start + (counts - 1) // 2
    mid2 = start + counts // 2
    median = ((amp_sorted[mid] + amp_sorted[mid2]) / 2.0)[group]
    with np.errstate(divide="ignore", invalid="ignore"):
        amp_rel = np.where(low > 0, amp / low, 0.0)
        amp_vs_median = np.where(median > 0, amp / median, 1.0)
    return {
        "rank": rank,
        "n": per_day,
        "amp_rel": amp_rel,
        "amp_vs_median": amp_vs_median,
        "symbol": sym,
    }


def _group_order(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices sorting by ``group`` then ``value`` (``np.lexsort`` is much slower here)."""
    order = np.argsort(value, kind="stable")
    return order[np.argsort(group[order], kind="stable")]


def _dense(key: np.ndarray) -> np.ndarray:
    """Dense ids ``0..n-1`` for the distinct values of ``key`` (in sorted key order)."""
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    k = key[order]
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(np.r_[True, k[1:] != k[:-1]]) - 1
    return ids


def _n_distinct_per(owner: np.ndarray, value: np.ndarray, n_owner: int) -> np.ndarray:
    """How many distinct ``value`` each owner has (both non-negative ints)."""
    if len(owner) == 0:
        return np.zeros(n_owner)
    key = np.sort(owner * (int(value.max()) + 1) + value)
    first = np.r_[True, key[1:] != key[:-1]]
    return np.bincount(key[first] // (int(value.max()) + 1), minlength=n_owner).astype(np.float64)


def _triple_group(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Dense ids for the distinct ``(a, b, c)`` triples of non-negative ints."""
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    c_ids = _dense(c)
    nb_, nc = int(b.max()) + 1, int(c_ids.max()) + 1
    if (int(a.max()) + 1) * nb_ * nc < 2**62:
        return _dense((a * nb_ + b) * nc + c_ids)
    order = np.lexsort((c, b, a))
    a_s, b_s, c_s = a[order], b[order], c[order]
    change = np.r_[True, (a_s[1:] != a_s[:-1]) | (b_s[1:] != b_s[:-1]) | (c_s[1:] != c_s[:-1])]
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(change) - 1
    return ids


def _groups(ids: np.ndarray, valid: np.ndarray, is_buy: np.ndarray, pos: np.ndarray) -> _Groups:
    """Side counts and pos extremes per group; ``ids`` must be dense where ``valid``."""
    code = np.where(valid, ids, -1)
    sel = np.flatnonzero(code >= 0)
    c = code[sel]
    n = int(c.max()) + 1 if len(c) else 0
    first = np.zeros(n, dtype=np.int64)
    first[c] = sel
    b = is_buy[sel]
    p = pos[sel]
    nb = np.bincount(c[b], minlength=n)
    ns = np.bincount(c[~b], minlength=n)
    ext = {}
    for name, side, fn, init in (
        ("min_buy", b, np.minimum, np.inf),
        ("max_buy", b, np.maximum, -np.inf),
        ("min_sell", ~b, np.minimum, np.inf),
        ("max_sell", ~b, np.maximum, -np.inf),
    ):
        arr = np.full(n, init)
        fn.at(arr, c[side], p[side])
        ext[name] = arr
    return _Groups(code=code, n=n, first=first, nb=nb, ns=ns, **ext)


def _match(
    g: _Groups, is_buy: np.ndarray, pos: np.ndarray, min_deltas: tuple[float, ...]
) -> list[_Pairs]:
    """Most pairs per group of a buy and a sell with ``sell_pos - buy_pos >= min_delta``.

    Each buy can pair with the sells at or above ``buy_pos + min_delta``; these sets
    are nested (a lower buy reaches every sell a higher buy reaches), so by the
    Konig-Ore formula the largest matching in a group is
    ``nb - max(0, max_j (j - |N(b_j)|))`` with buys ranked from the highest, ``j = 1..nb``.
    A matching of that size is the ``k`` lowest buys with the ``k`` highest sells, both
    in ascending order. One sort over the fills of groups holding both sides serves
    every cut in ``min_deltas``; one result per cut.
    """
    code = np.where(g.code >= 0, g.code, 0)
    idx = np.flatnonzero((g.code >= 0) & g.both[code])
    e = np.zeros(0, dtype=np.int64)
    if len(idx) == 0:
        return [_Pairs(e, e, np.zeros(0, dtype=np.float64)) for _ in min_deltas]
    c = g.code[idx]
    b = is_buy[idx]
    p = pos[idx]
    order = _group_order(c, np.where(b, 0.0, 2.0) + p)  # group, buys first, then pos
    idx, c, b, p = idx[order], c[order], b[order], p[order]
    seg_start = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (b[1:] != b[:-1])])
    rank = np.arange(len(idx)) - np.repeat(seg_start, np.diff(np.r_[seg_start, len(idx)]))
    nb = g.nb[c]
    ns = g.ns[c]
    # sells sorted by (group, pos); a float key keeps groups apart since pos + delta < 4
    s_c = c[~b]
    s_key = s_c * 4.0 + p[~b]
    b_c = c[b]
    sell_start = np.searchsorted(s_c, b_c, side="left")
    j = nb[b] - rank[b]
    out = []
    for min_delta in min_deltas:
        q = b_c * 4.0 + p[b] + min_delta - 1e-7
        reach = ns[b] - (np.searchsorted(s_key, q, side="left") - sell_start)
        deficit = np.zeros(g.n, dtype=np.int64)
        np.maximum.at(deficit, b_c, j - reach)
        k = (g.nb - deficit)[c]
        # both selections are ordered by (group, rank) and hold k fills per group: they align
        bi = idx[b & (rank < k)]
        si = idx[~b & (rank >= ns - k)]
        out.append(_Pairs(bi, si, pos[si] - pos[bi]))
    return out


def _round_trips(g: _Groups, is_buy: np.ndarray, pos: np.ndarray, min_delta: float) -> _Pairs:
    """Forward and reverse pairs with delta >= ``min_delta`` (disjoint when delta > 0.5)."""
    (fwd,) = _match(g, is_buy, pos, (min_delta,))
    (rev,) = _match(g, is_buy, 1.0 - pos, (min_delta,))
    return _Pairs(np.r_[fwd.buy, rev.buy], np.r_[fwd.sell, rev.sell], np.r_[fwd.delta, rev.delta])


def _trade_arrays(trades: pd.DataFrame, k: pd.DataFrame, bar: pd.Timedelta) -> _Trades:
    """Flat arrays for ``trades``; ``k`` are the k-lines sorted by ``(symbol, ts)``."""
    n = len(trades)
    bar_row = np.asarray(_bar_positions(trades, k, bar), dtype=np.int64)
    has_bar = bar_row >= 0
    safe = np.where(has_bar, bar_row, 0)
    acct_codes, account_ids = pd.factorize(trades["account_id"].astype(str), sort=True)
    acct = np.asarray(acct_codes, dtype=np.int64)
    side = trades["side"]
    is_buy = (side == "buy").to_numpy(dtype=bool)
    if not bool((is_buy | (side == "sell").to_numpy(dtype=bool)).all()):
        # tolerate frames that skipped validation (e.g. "BUY", " sell")
        is_buy = (side.astype(str).str.strip().str.lower() == "buy").to_numpy(dtype=bool)
    price = trades["price"].to_numpy(dtype=np.float64)
    qty = trades["quantity"].to_numpy(dtype=np.float64) if "quantity" in trades else np.ones(n)
    ts = trades["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    if len(k):
        high = np.where(has_bar, k["high"].to_numpy(dtype=np.float64)[safe], np.nan)
        low = np.where(has_bar, k["low"].to_numpy(dtype=np.float64)[safe], np.nan)
    else:
        high = low = np.full(n, np.nan)
    rng = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = np.where(has_bar & (rng > 0), (price - low) / rng, 0.5)
    pos = np.clip(np.nan_to_num(pos, nan=0.5), 0.0, 1.0)
    tol = 1e-9 * np.abs(price)
    wick = has_bar & (rng > 0) & ((np.abs(price - high) <= tol) | (np.abs(price - low) <= tol))

    ctx = _bar_context(k)
    sym = np.asarray(pd.factorize(trades["symbol"].astype(str))[0], dtype=np.int64)

    def pick(a: np.ndarray, missing: float) -> np.ndarray:
        if len(a) == 0:
            return np.full(n, missing)
        return np.where(has_bar, a[safe], missing)

    n_rows = len(k) + 1
    bars = _groups(_dense(acct * n_rows + bar_row), has_bar, is_buy, pos)
    stamps = _groups(_triple_group(acct, sym, ts - ts.min(initial=0)), has_bar, is_buy, pos)
    fwd, fwd_ext = _match(bars, is_buy, pos, (NEAR_DELTA, EXTREME_DELTA))
    rev, rev_ext = _match(bars, is_buy, 1.0 - pos, (NEAR_DELTA, EXTREME_DELTA))
    return _Trades(
        acct=acct,
        account_ids=np.asarray(account_ids, dtype=object),
        is_buy=is_buy,
        price=price,
        qty=qty,
        ts=ts,
        sym=sym,
        bar_row=bar_row,
        has_bar=has_bar,
        pos=pos,
        wick=wick,
        amp_rank=pick(ctx["rank"], _NO_RANK),
        bars_in_day=pick(ctx["n"], 0.0),
        amp_rel=pick(ctx["amp_rel"], 0.0),
        amp_vs_median=pick(ctx["amp_vs_median"], 1.0),
        row_symbol=ctx["symbol"],
        bars=bars,
        stamps=stamps,
        fwd=fwd,
        rev=rev,
        fwd_ext=np.bincount(bars.code[fwd_ext.buy], minlength=bars.n),
        rev_ext=np.bincount(bars.code[rev_ext.buy], minlength=bars.n),
        same_ts=_round_trips(stamps, is_buy, pos, NEAR_DELTA),
    )


# ---------------------------------------------------------------------------------------
# per-account aggregates
# ---------------------------------------------------------------------------------------
def _group_max(codes: np.ndarray, values: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, -np.inf)
    if len(codes):
        np.maximum.at(out, codes, values)
    out[np.isneginf(out)] = fill
    return out


def _group_min(codes: np.ndarray, values: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, np.inf)
    if len(codes):
        np.minimum.at(out, codes, values)
    out[np.isposinf(out)] = fill
    return out


def _second_largest(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Second-largest value per group (0 when the group has fewer than two)."""
    out = np.zeros(n)
    if len(codes) == 0:
        return out
    order = _group_order(codes, -values)
    c, v = codes[order], values[order]
    first = np.r_[True, c[1:] != c[:-1]]
    second = np.r_[False, first[:-1]] & ~first
    out[c[second]] = v[second]
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / b, 0.0)


def _features_from_arrays(tr: _Trades) -> pd.DataFrame:
    n_acc = len(tr.account_ids)
    acct = tr.acct

    def count(mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        w = weights
        if mask is not None:
            w = mask.astype(np.float64) if w is None else np.where(mask, w, 0.0)
        return np.bincount(acct, weights=w, minlength=n_acc).astype(np.float64)

    f: dict[str, np.ndarray] = {}
    n_tr = count()
    notional = np.abs(tr.price * tr.qty)
    total_value = count(weights=notional)
    f["n_trades"] = n_tr
    f["log_notional"] = np.log1p(total_value)
    f["buy_share"] = _ratio(count(tr.is_buy), n_tr)

    # distinct symbols and bars per account; each (account, bar) group is one bar
    bars = tr.bars
    g_acc = acct[bars.first]
    g_row = tr.bar_row[bars.first]
    f["n_symbols"] = _n_distinct_per(acct, tr.sym, n_acc)
    n_bars = np.bincount(g_acc, minlength=n_acc).astype(np.float64)
    f["n_bars"] = n_bars
    f["trades_per_bar"] = _ratio(count(tr.has_bar), n_bars)
    ts_h = tr.ts.astype(np.float64) / 3.6e12
    f["span_hours"] = _group_max(acct, ts_h, n_acc, 0.0) - _group_min(acct, ts_h, n_acc, 0.0)
    f["no_bar_share"] = _ratio(count(~tr.has_bar), n_tr)

    pos = tr.pos
    f["pos_mean"] = _ratio(count(weights=pos), n_tr)
    sq = _ratio(count(weights=pos * pos), n_tr)
    f["pos_std"] = np.sqrt(np.maximum(sq - f["pos_mean"] ** 2, 0.0))
    n_buy = count(tr.is_buy)
    n_sell = n_tr - n_buy
    f["buy_pos_mean"] = np.where(n_buy > 0, _ratio(count(tr.is_buy, pos), n_buy), 0.5)
    f["sell_pos_mean"] = np.where(n_sell > 0, _ratio(count(~tr.is_buy, pos), n_sell), 0.5)
    f["mid_share"] = _ratio(count((pos > 0.25) & (pos < 0.75)), n_tr)
    lo_edge = tr.has_bar & (pos <= _EDGE)
    hi_edge = tr.has_bar & (pos >= 1.0 - _EDGE)
    f["edge_share"] = _ratio(count(lo_edge | hi_edge), n_tr)
    fav = (tr.is_buy & lo_edge) | (~tr.is_buy & hi_edge)
    unfav = (tr.is_buy & hi_edge) | (~tr.is_buy & lo_edge)
    f["n_edge_fav"] = count(fav)
    f["n_edge_unfav"] = count(unfav)
    f["edge_fav_share"] = _ratio(f["n_edge_fav"], n_tr)
    f["edge_unfav_share"] = _ratio(f["n_edge_unfav"], n_tr)

    # wicks: fills priced exactly at the bar's high or low
    f["n_wick"] = count(tr.wick)
    f["wick_share"] = _ratio(f["n_wick"], n_tr)
    at_high = tr.wick & (pos >= 0.5)
    at_low = tr.wick & (pos < 0.5)
    wick_both = (np.bincount(bars.code[at_high], minlength=bars.n) > 0) & (
        np.bincount(bars.code[at_low], minlength=bars.n) > 0
    )
    f["n_wick_bars_both"] = np.bincount(g_acc[wick_both], minlength=n_acc).astype(np.float64)

    # same-bar opposite-side fills, per (account, bar) group
    both = bars.both
    spread_fwd = np.where(both, bars.max_sell - bars.min_buy, -np.inf)
    spread_rev = np.where(both, bars.max_buy - bars.min_sell, -np.inf)
    spread = np.maximum(spread_fwd, spread_rev)
    f["n_bars_both_sides"] = np.bincount(g_acc[both], minlength=n_acc).astype(np.float64)
    f["bars_both_share"] = _ratio(f["n_bars_both_sides"], n_bars)
    n_pairs = np.bincount(g_acc, weights=np.minimum(bars.nb, bars.ns), minlength=n_acc)
    f["n_pairs"] = n_pairs
    f["spread_mean"] = _ratio(
        np.bincount(g_acc[both], weights=spread[both], minlength=n_acc), f["n_bars_both_sides"]
    )
    f["n_rt_fwd_ext"] = np.bincount(g_acc, weights=tr.fwd_ext, minlength=n_acc)
    f["n_rt_rev_ext"] = np.bincount(g_acc, weights=tr.rev_ext, minlength=n_acc)
    f["n_rt_ext"] = f["n_rt_fwd_ext"] + f["n_rt_rev_ext"]
    fwd, rev = tr.fwd, tr.rev
    f["n_rt_fwd_near"] = np.bincount(acct[fwd.buy], minlength=n_acc).astype(np.float64)
    f["n_rt_rev_near"] = np.bincount(acct[rev.buy], minlength=n_acc).astype(np.float64)
    f["n_rt_near"] = f["n_rt_fwd_near"] + f["n_rt_rev_near"]
    f["max_delta_fwd"] = _group_max(g_acc[both], spread_fwd[both], n_acc, 0.0)
    f["max_delta_rev"] = _group_max(g_acc[both], spread_rev[both], n_acc, 0.0)
    f["max_delta"] = np.maximum(f["max_delta_fwd"], f["max_delta_rev"])
    f["second_delta"] = np.maximum(_second_largest(g_acc[both], spread[both], n_acc), 0.0)

    # trades that are a leg of a near-extreme round trip (either direction)
    near_buy = np.r_[fwd.buy, rev.buy]
    near_sell = np.r_[fwd.sell, rev.sell]
    near_delta = np.r_[fwd.delta, rev.delta]
    pair_acc = acct[near_buy]
    f["sum_delta_near"] = np.bincount(pair_acc, weights=near_delta, minlength=n_acc)
    in_rt = np.zeros(len(acct), dtype=bool)
    in_rt[near_buy] = True
    in_rt[near_sell] = True
    f["rt_trade_share"] = _ratio(count(in_rt), n_tr)
    rt_value = count(in_rt, notional)
    f["rt_value_share"] = _ratio(rt_value, total_value)
    f["log_rt_value"] = np.log1p(rt_value)
    pair_q = np.minimum(tr.qty[near_buy], tr.qty[near_sell])
    pnl = (tr.price[near_sell] - tr.price[near_buy]) * pair_q
    f["rt_pnl_rel"] = _ratio(np.bincount(pair_acc, weights=pnl, minlength=n_acc), total_value)
    eq = np.isclose(tr.qty[near_buy], tr.qty[near_sell])
    n_near_pairs = np.bincount(pair_acc, minlength=n_acc).astype(np.float64)
    f["rt_equal_qty_share"] = _ratio(
        np.bincount(pair_acc, weights=eq.astype(np.float64), minlength=n_acc), n_near_pairs
    )
    f["n_wick_in_rt"] = count(in_rt & tr.wick)
    f["n_bars_adjacent_sides"] = _adjacent_sides(tr, g_acc, g_row, n_acc)

    # same timestamp, per (account, symbol, ts) group
    st = tr.stamps
    st_acc = acct[st.first]
    n_same = np.bincount(st_acc, weights=np.minimum(st.nb, st.ns), minlength=n_acc)
    f["n_same_ts_pairs"] = n_same
    f["same_ts_share"] = _ratio(2.0 * n_same, n_tr)
    f["n_same_ts_near"] = np.bincount(acct[tr.same_ts.buy], minlength=n_acc).astype(np.float64)
    st_both = st.both
    st_spread = np.maximum(st.max_sell - st.min_buy, st.max_buy - st.min_sell)
    f["same_ts_max_delta"] = _group_max(st_acc[st_both], st_spread[st_both], n_acc, 0.0)

    # amplitude context
    hb_mask = tr.has_bar
    n_with_bar = count(hb_mask)
    f["amp_rank_min"] = _group_min(acct[hb_mask], tr.amp_rank[hb_mask], n_acc, _NO_RANK)
    f["amp_rank_mean"] = np.where(
        n_with_bar > 0, _ratio(count(hb_mask, tr.amp_rank), n_with_bar), _NO_RANK
    )
    pct = _ratio(tr.amp_rank, tr.bars_in_day)
    f["amp_pct_mean"] = np.where(n_with_bar > 0, _ratio(count(hb_mask, pct), n_with_bar), 1.0)
    top = hb_mask & (tr.amp_rank <= _TOP_BARS)
    f["top_bar_share"] = _ratio(count(top), n_tr)
    top_group = tr.amp_rank[bars.first] <= _TOP_BARS
    f["n_top_bars"] = np.bincount(g_acc[top_group], minlength=n_acc).astype(np.float64)
    f["amp_rel_mean"] = _ratio(count(hb_mask, tr.amp_rel), n_with_bar)
    f["amp_rel_max"] = _group_max(acct, tr.amp_rel, n_acc, 0.0)
    f["amp_vs_median_mean"] = np.where(
        n_with_bar > 0, _ratio(count(hb_mask, tr.amp_vs_median), n_with_bar), 1.0
    )
    rank_near = tr.amp_rank[near_buy]
    f["rt_amp_rank_min"] = _group_min(pair_acc, rank_near, n_acc, _NO_RANK)
    f["rt_amp_rank_mean"] = np.where(
        n_near_pairs > 0,
        _ratio(np.bincount(pair_acc, weights=rank_near, minlength=n_acc), n_near_pairs),
        _NO_RANK,
    )
    f["n_rt_top_bars"] = np.bincount(pair_acc[rank_near <= _TOP_BARS], minlength=n_acc).astype(
        np.float64
    )
    f["rt_amp_rel_mean"] = _ratio(
        np.bincount(pair_acc, weights=tr.amp_rel[near_buy], minlength=n_acc), n_near_pairs
    )

    out = pd.DataFrame(
        {name: np.asarray(f[name], dtype=np.float32) for name in FEATURE_NAMES},
        index=pd.Index(tr.account_ids, name="account_id"),
    )
    return out


def _adjacent_sides(tr: _Trades, g_acc: np.ndarray, g_row: np.ndarray, n_acc: int) -> np.ndarray:
    """Per account: bars holding a buy whose neighbouring bar (same symbol) holds a sell.

    Catches round trips split over two consecutive bars.
    """
    bars = tr.bars
    if bars.n == 0:
        return np.zeros(n_acc)
    # group ids are dense in (account, bar_row) order, so group keys are sorted
    n_rows = len(tr.row_symbol) + 1
    key = g_acc * n_rows + g_row
    has_buy = bars.nb > 0
    hit = np.zeros(bars.n, dtype=bool)
    for step in (-1, 1):
        nrow = g_row + step
        j = np.clip(np.searchsorted(key, key + step), 0, bars.n - 1)
        ok = (key[j] == key + step) & (nrow >= 0) & (nrow < len(tr.row_symbol))
        same_sym = np.zeros(bars.n, dtype=bool)
        same_sym[ok] = tr.row_symbol[nrow[ok]] == tr.row_symbol[g_row[ok]]
        hit |= has_buy & same_sym & (bars.ns[j] > 0)
    return np.bincount(g_acc[hit], minlength=n_acc).astype(np.float64)


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def account_features(data: MarketData) -> pd.DataFrame:
    """One row of float32 features per account, in ``data.account_ids`` order.

    Parameters
    ----------
    data
        Trades and the k-lines of what they traded. Trades outside every bar still count
        in the activity features (``no_bar_share``) but take no part in the bar features.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``account_id``; columns :data:`FEATURE_NAMES`, all ``float32``.
    """
    if len(data.trades) == 0:
        return pd.DataFrame(
            {name: np.zeros(0, dtype=np.float32) for name in FEATURE_NAMES},
            index=pd.Index([], name="account_id", dtype=object),
        )
    k = _sorted_klines(_traded_symbols_only(data.klines, data.trades))
    return _features_from_arrays(_trade_arrays(data.trades, k, data.bar))


def trade_level_frame(data: MarketData) -> pd.DataFrame:
    """Every trade joined to its bar, with its position in the bar and round-trip partners.

    Parameters
    ----------
    data
        Trades and k-lines.

    Returns
    -------
    pandas.DataFrame
        The trades (same row order) plus the columns of
        :func:`~fraudlens.market.data.attach_bars` and:

        ``pos``
            position in the bar's range (0 = low, 1 = high).
        ``wick``
            the fill is priced exactly at the bar's high or low.
        ``amp_rank`` / ``bars_in_day``
            the bar's amplitude rank within its symbol's day (1 = widest) and the number
            of bars that day.
        ``amp_rel``
            bar amplitude / bar low.
        ``fwd_partner`` / ``fwd_delta``
            row position of the opposite-side fill it is paired with in a forward
            same-bar round trip with delta >= :data:`NEAR_DELTA` (-1 / NaN if none), and
            the pair's delta.
        ``rev_partner`` / ``rev_delta``
            the same for reverse round trips.
        ``same_ts_partner`` / ``same_ts_delta``
            the same for round trips (either direction) whose legs share a timestamp.
    """
    k = _sorted_klines(data.klines)
    tr = _trade_arrays(data.trades, k, data.bar)
    base = data.trades.reset_index(drop=True)
    n = len(base)
    # Columns are gathered first and joined once: inserting them one at a time costs
    # more than the arithmetic on a small window.
    cols: dict[str, Any] = {}
    # the columns attach_bars adds, taken from arrays already computed
    has = tr.has_bar
    safe = np.where(has, tr.bar_row, 0)
    cols["bar_row"] = tr.bar_row
    if len(k):
        cols["bar_ts"] = pd.Series(k["ts"].array.take(safe)).where(has)
        for col in ("open", "high", "low", "close"):
            cols[f"bar_{col}"] = np.where(has, k[col].to_numpy(dtype=np.float64)[safe], np.nan)
    else:
        cols["bar_ts"] = pd.Series(pd.NaT, index=base.index, dtype="datetime64[ns, UTC]")
        for col in ("open", "high", "low", "close"):
            cols[f"bar_{col}"] = np.full(n, np.nan)
    cols["pos"] = tr.pos
    cols["wick"] = tr.wick
    cols["amp_rank"] = tr.amp_rank
    cols["bars_in_day"] = tr.bars_in_day
    cols["amp_rel"] = tr.amp_rel
    for prefix, pairs in (("fwd", tr.fwd), ("rev", tr.rev), ("same_ts", tr.same_ts)):
        partner = np.full(n, -1, dtype=np.int64)
        delta = np.full(n, np.nan)
        partner[pairs.buy] = pairs.sell
        partner[pairs.sell] = pairs.buy
        delta[pairs.buy] = pairs.delta
        delta[pairs.sell] = pairs.delta
        cols[f"{prefix}_partner"] = partner
        cols[f"{prefix}_delta"] = delta
    extra = pd.DataFrame(cols, index=base.index)
    return pd.concat([base.drop(columns=list(cols), errors="ignore"), extra], axis=1)
