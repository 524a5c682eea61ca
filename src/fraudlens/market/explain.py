"""Which trades drove an account's score, in words an analyst can check against the chart.

The trades are ranked by how strongly they show the takeover pattern:

1. legs of a round trip (a buy and a sell of the account in the same bar or the next)
   at opposite ends of their bars, either direction; "strong" ones (both legs within a
   quarter of the range from the extremes, more than an ordinary bar's range apart)
   first, then by how extreme, how far apart relative to the day's ordinary bar, and
   whether the two sizes are equal;
2. fills priced exactly at a wide bar's high or low without a matching opposite fill;
3. other fills near a bar extreme;
4. everything else, by how far from the middle of its bar it sits.

Both legs of a round trip are listed next to each other. The output is plain JSON types
(ISO-8601 timestamps, ``None`` for missing values).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraudlens.errors import DataError
from fraudlens.market.data import MarketData
from fraudlens.market.features import (
    STRONG_EXT,
    _array,
    _floats,
    _legs,
    _round_trips,
    _sorted_klines,
    _trade_arrays,
    _traded_symbols_only,
)

__all__ = ["explain_account", "explain_analysis", "explain_batch"]

_TOP_BARS = 10


def _pct(p: float) -> str:
    return f"{round(100.0 * p):d}%"


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat()


def _iso_many(values: Any) -> list[str | None]:
    """:func:`_iso` of each value of a datetime column, vectorised for UTC timestamps
    (the same text as ``Timestamp.isoformat``: fractions of a second only when there
    are any, in microseconds unless there are nanoseconds)."""
    if isinstance(values, pd.arrays.DatetimeArray) and str(values.tz) == "UTC":
        # a UTC column's array (the worker's case): its nanoseconds directly, no index
        stamps = np.asarray(values, dtype="datetime64[ns]")
        return _iso_utc(stamps.view(np.int64), np.isnat(stamps))
    idx = pd.DatetimeIndex(values)
    if idx.tz is None or str(idx.tz) != "UTC":
        return [_iso(v) for v in idx]
    return _iso_utc(idx.as_unit("ns").asi8, np.asarray(idx.isna(), dtype=bool))


def _iso_utc(ns: np.ndarray, missing: np.ndarray) -> list[str | None]:
    """:func:`_iso_many` of UTC times given as Unix nanoseconds (``missing`` marks NaT)."""
    ns = np.where(missing, 0, ns)
    sec, frac = np.divmod(ns, 10**9)
    base = np.datetime_as_string(sec.astype("datetime64[s]"), unit="s").tolist()
    # numpy's text of whole seconds, with a fraction only where there is one: in
    # microseconds when it has no finer digits, else in nanoseconds
    if frac.any():
        micro = frac // 1000
        fine = (frac % 1000) != 0
        parts = np.where(fine, frac, micro).tolist()
        digits = np.where(fine, 9, 6).tolist()
        base = [
            b if f == 0 else f"{b}.{f:0{d}d}" for b, f, d in zip(base, parts, digits, strict=True)
        ]
    if missing.any():
        return [None if m else b + "+00:00" for b, m in zip(base, missing.tolist(), strict=True)]
    return [b + "+00:00" for b in base]


def _round4(values: np.ndarray) -> list[float]:
    """``[round(float(v), 4) for v in values]``, computed by numpy (a batch of 500 accounts
    rounds some 27,000 values: 12 ms in Python, 1.5 ms here), value for value the same.

    Python's ``round(x, 4)`` is the double nearest to ``x``'s exact decimal value
    rounded to 4 places (half to even); ``rint(x * 1e4) / 1e4`` is the double nearest to
    the integer that rounds ``x * 1e4`` *as a double*. The two integers differ only where
    the product's rounding error may have crossed a half (the product within an ulp of
    ``k + 0.5``), where the product is too large for its integer to be exact, or where
    ``x`` is not finite: those few values go through ``round`` itself.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return []
    z = x * 1e4
    with np.errstate(invalid="ignore"):
        out = np.rint(z) / 1e4
        doubtful = ~(np.abs(z) < 2.0**52) | (
            np.abs(z - np.floor(z) - 0.5) <= 2.0 * np.spacing(np.abs(z))
        )
    result = out.tolist()
    if doubtful.any():
        xs = x.tolist()
        for i in np.flatnonzero(doubtful).tolist():
            result[i] = round(xs[i], 4)
    return result


def _round4_where(values: np.ndarray, when: np.ndarray) -> list[float | None]:
    """:func:`_round4` where ``when``, None elsewhere."""
    return [v if w else None for v, w in zip(_round4(values), when.tolist(), strict=True)]


def _floats_or_none(values: Any) -> list[float | None]:
    """Each value as a float, None where it is NaN."""
    x = np.asarray(values, dtype=np.float64)
    out: list[float | None] = list(x.tolist())
    nan = np.isnan(x)
    if nan.any():
        for i in np.flatnonzero(nan).tolist():
            out[i] = None
    return out


def _pct_texts(values: np.ndarray) -> list[str]:
    """``[_pct(v) for v in values]``: numpy's ``rint`` of ``100 * v`` is Python's
    ``round`` of the same double (half to even), exactly."""
    x = 100.0 * np.asarray(values, dtype=np.float64)
    if not np.isfinite(x).all():  # round() raises on these: let it, as before
        return [_pct(v) for v in np.asarray(values, dtype=np.float64).tolist()]
    return [f"{v}%" for v in np.rint(x).astype(np.int64).tolist()]


@dataclass
class _Annotated:
    """Per-fill columns of the explanation, as arrays in the trades' row order."""

    partner: np.ndarray  # row of a fill of the other leg of the fill's round trip, or -1
    direction: np.ndarray  # "forward", "reverse" or ""
    delta: np.ndarray
    same_ts: np.ndarray
    weight: np.ndarray
    pair_weight: np.ndarray
    group: np.ndarray
    strong: np.ndarray
    gap: np.ndarray
    equal: np.ndarray


def _annotate(tr: Any, legs: Any, rt: Any) -> _Annotated:
    """Each fill's round trip (through its leg) and how strongly it shows the pattern.

    ``tr``, ``legs`` and ``rt`` are the feature pass's trade, leg and round-trip arrays
    (:mod:`fraudlens.market.features`); everything here is per fill and per account, so
    the result for an account does not depend on which other accounts the arrays hold.
    """
    n = len(tr.pos)
    # each fill -> its leg -> the leg's round trip -> the other leg's first fill
    leg_rt = np.full(len(legs.buy), -1, dtype=np.int64)
    leg_other = np.full(len(legs.buy), -1, dtype=np.int64)
    leg_rt[rt.buy] = np.arange(len(rt.buy))
    leg_rt[rt.sell] = np.arange(len(rt.buy))
    leg_other[rt.buy] = legs.first[rt.sell]
    leg_other[rt.sell] = legs.first[rt.buy]
    leg = np.maximum(tr.leg, 0)
    fill_rt = np.where(tr.leg >= 0, leg_rt[leg], -1)
    in_rt = fill_rt >= 0
    j = np.maximum(fill_rt, 0)

    def per(a: np.ndarray, fill: Any) -> np.ndarray:
        if len(a) == 0:
            return np.full(n, fill)
        return np.where(in_rt, a[j], fill)

    partner = np.where(in_rt, leg_other[leg], -1).astype(np.int64)
    ext = np.nan_to_num(per(rt.ext, np.nan).astype(np.float64), nan=-np.inf)
    gap = np.nan_to_num(per(rt.gap, np.nan).astype(np.float64))
    strong = per(rt.strong, False).astype(bool)
    matched = (partner >= 0) & (ext >= STRONG_EXT)
    forward = per(rt.fwd, False).astype(bool)
    equal = per(rt.eq, False).astype(bool)
    pos = tr.pos
    wick = tr.wick & (tr.ticks >= 4)
    ts = tr.ts
    same_ts = matched & (ts[np.where(matched, partner, 0)] == ts)
    edge = np.abs(pos - 0.5) * 2.0  # 0 at the middle of the bar, 1 at either end
    # tiers keep the categories apart; the small terms order trades inside a tier
    weight = np.select(
        [matched & strong, matched, wick, edge >= 0.8],
        [5.0 + ext + np.minimum(gap, 8.0) / 8.0, 3.0 + ext, 2.0 + edge, 1.0 + edge],
        default=edge,
    )
    weight = weight + 0.2 * (matched & equal) + 0.1 * same_ts
    # both legs of a pair share the stronger leg's weight so they sort together
    idx = np.arange(n)
    group = np.where(matched, np.minimum(idx, np.where(matched, partner, idx)), idx)
    pair_w = np.full(n, -np.inf)
    np.maximum.at(pair_w, group, weight)
    return _Annotated(
        partner=np.where(matched, partner, -1),
        direction=np.where(matched, np.where(forward, "forward", "reverse"), ""),
        delta=np.where(matched, ext, np.nan),
        same_ts=same_ts,
        weight=weight,
        pair_weight=pair_w[group],
        group=group,
        strong=matched & strong,
        gap=np.where(matched, gap, np.nan),
        equal=matched & equal,
    )


def _reason(
    side: str,
    pos: float,
    pct: str,
    rank: float,
    bars_in_day: float,
    rel: float,
    ticks: float,
    has_bar: bool,
    wick: bool,
    bar_row: int,
    partner: tuple[str, int, bool, bool, bool, float] | None,
) -> str:
    """A trade's reason in words; ``pct`` is :func:`_pct` of ``pos``, ``partner`` is
    ``(_pct of the partner's pos, partner's bar row, same timestamp, equal size, strong,
    gap)`` when the trade has a matched partner."""
    if not has_bar:
        return f"{side} with no price bar for its symbol and time"
    rank_txt = (
        f"; bar amplitude rank {int(rank)} of {int(bars_in_day)}"
        f" ({rel:.1f}x the day's median bar, {int(ticks)} ticks)"
        if not math.isnan(rank) and bars_in_day > 0
        else ""
    )
    where = f"{side} at {pct} of bar range"
    if partner is not None:
        p_pct, p_bar_row, same_ts, equal, strong, gap = partner
        other = "sell" if side == "buy" else "buy"
        if same_ts:
            when = "at the same timestamp"
        elif p_bar_row != bar_row:
            when = "in the neighbouring bar"
        else:
            when = "in the same bar"
        size = "the same size" if equal else "a different size"
        text = f"{where} matched by {other} of {size} at {p_pct} {when}"
        if strong:
            text += f", {gap:.1f} ordinary bar ranges apart"
        if wick:
            text += f"; the {side} sets the bar's {'low' if pos < 0.5 else 'high'}"
        return text + rank_txt
    if wick:
        end = "low" if pos < 0.5 else "high"
        return f"{side} exactly at the bar's {end}, with no opposite fill at the other end" + (
            rank_txt
        )
    return where + rank_txt


#: Columns of :func:`_records` turned into Python values from their arrays as a whole.
_NUMPY_CONVERTED = frozenset(
    ("price", "quantity", "bar_high", "bar_low", "_delta", "_partner", "_weight")
)


def _records(
    trades: pd.DataFrame, k: pd.DataFrame, tr: Any, an: _Annotated, rows: np.ndarray
) -> list[dict[str, Any]]:
    # plain Python values only for the trades reported and their partners
    partners = an.partner[rows]
    needed = np.unique(np.r_[rows, partners[partners >= 0]]).astype(np.int64)
    has = tr.has_bar[needed]
    safe = np.where(has, tr.bar_row[needed], 0)
    if len(k):
        k_ts = _array(k, "ts")
        if isinstance(k_ts, pd.arrays.DatetimeArray) and str(k_ts.tz) == "UTC":
            # the bars' times as nanoseconds, missing where there is no bar (what the
            # Series below reads, without building it)
            stamps = np.asarray(k_ts, dtype="datetime64[ns]")[safe]
            bar_ts_text = _iso_utc(stamps.view(np.int64), ~has | np.isnat(stamps))
        else:
            bar_ts_text = _iso_many(pd.Series(k_ts.take(safe)).where(has))
        bar_high = np.where(has, _floats(k, "high")[safe], np.nan)
        bar_low = np.where(has, _floats(k, "low")[safe], np.nan)
    else:
        bar_ts_text = _iso_many(
            pd.Series(pd.NaT, index=range(len(needed)), dtype="datetime64[ns, UTC]")
        )
        bar_high = bar_low = np.full(len(needed), np.nan)

    # the reported rows of each column (no row selection of the whole frame first)
    def col(name: str) -> Any:
        values = _array(trades, name)
        arrow = getattr(values, "_pa_array", None)
        if (
            arrow is not None
            and not arrow.null_count
            and pd.api.types.is_string_dtype(values.dtype)
        ):
            # pyarrow's own take: pandas' take of pyarrow strings costs a dozen times more
            # (index checks and a new pandas array) than the few rows it returns. Strings
            # only: other pyarrow types would lose what numpy cannot hold (a time zone).
            import pyarrow as pa

            return arrow.take(pa.array(needed)).to_numpy(zero_copy_only=False)
        return values.take(needed)

    arrays: dict[str, Any] = {
        "trade_id": np.asarray(col("trade_id")),
        "symbol": np.asarray(col("symbol")),
        "ts": np.asarray(_iso_many(col("ts")), dtype=object),
        "side": np.asarray(col("side")),
        "price": np.asarray(col("price")),
        "quantity": np.asarray(col("quantity")),
        "bar_ts": np.asarray(bar_ts_text, dtype=object),
        "bar_high": bar_high,
        "bar_low": bar_low,
        "pos": tr.pos[needed],
        "wick": tr.wick[needed],
        "amp_rank": tr.rank[needed],
        "bars_in_day": tr.n_day[needed],
        "_direction": an.direction[needed],
        "_delta": an.delta[needed],
        "_partner": an.partner[needed],
        "_same_ts": an.same_ts[needed],
        "_weight": an.weight[needed],
        "bar_row": tr.bar_row[needed],
        "rel": tr.rel[needed],
        "ticks": tr.ticks[needed],
        "_strong": an.strong[needed],
        "_gap": an.gap[needed],
        "_equal": an.equal[needed],
    }
    # Column by column over the reported rows (and, for the partner's fields, over their
    # partners' rows): one list per field, then one dict per record. A dict of every
    # column per row first, then read field by field, cost about twice as much (2,400
    # records of a batch of 500: 26 ms).
    at = np.searchsorted(needed, rows)
    p_row = an.partner[rows]
    p_at = np.searchsorted(needed, np.maximum(p_row, 0))
    # Python values of the columns read value by value below (the numbers that are
    # rounded or checked for NaN are converted by numpy, from their arrays)
    values = {c: a[at].tolist() for c, a in arrays.items() if c not in _NUMPY_CONVERTED}
    has_bar_at = arrays["bar_row"][at].astype(np.int64) >= 0
    has_bar = has_bar_at.tolist()
    partner_at = p_row >= 0
    has_partner = partner_at.tolist()
    p_tid = arrays["trade_id"][p_at].tolist()
    pct = _pct_texts(arrays["pos"])
    own_pct = [pct[i] for i in at.tolist()]
    p_pct = [pct[i] for i in p_at.tolist()]
    p_bar_row = arrays["bar_row"][p_at].tolist()

    def rounded(name: str, when: np.ndarray) -> list[Any]:
        return _round4_where(arrays[name][at], when)

    def ints(name: str) -> list[Any]:
        return [int(v) if h else None for v, h in zip(values[name], has_bar, strict=True)]

    partners = [
        (pp, pb, same, eq, strong, gap) if hp else None
        for hp, pp, pb, same, eq, strong, gap in zip(
            has_partner,
            p_pct,
            p_bar_row,
            values["_same_ts"],
            values["_equal"],
            values["_strong"],
            values["_gap"],
            strict=True,
        )
    ]
    reasons = list(
        map(
            _reason,
            values["side"],
            values["pos"],
            own_pct,
            values["amp_rank"],
            values["bars_in_day"],
            values["rel"],
            values["ticks"],
            has_bar,
            values["wick"],
            values["bar_row"],
            partners,
        )
    )
    # one dict display per record (its keys built once): dict(zip(keys, ...)) per record
    # cost twice as much
    return [
        {
            "trade_id": tid,
            "symbol": sym,
            "ts": ts,
            "side": side,
            "price": price,
            "quantity": qty,
            "bar_ts": bar_ts,
            "bar_high": high,
            "bar_low": low,
            "pos": pos,
            "wick": wick,
            "amp_rank": rank,
            "bars_in_day": n_day,
            "pattern": pattern,
            "delta": delta,
            "partner_trade_id": p_id,
            "same_timestamp": same,
            "strong": strong,
            "gap": gap,
            "equal_quantity": equal,
            "bar_range_vs_day": rel,
            "bar_ticks": ticks,
            "weight": weight,
            "reason": reason,
        }
        for (
            tid,
            sym,
            ts,
            side,
            price,
            qty,
            bar_ts,
            high,
            low,
            pos,
            wick,
            rank,
            n_day,
            pattern,
            delta,
            p_id,
            same,
            strong,
            gap,
            equal,
            rel,
            ticks,
            weight,
            reason,
        ) in zip(
            [str(v) for v in values["trade_id"]],
            [str(v) for v in values["symbol"]],
            values["ts"],
            [str(v) for v in values["side"]],
            np.asarray(arrays["price"][at], dtype=np.float64).tolist(),
            _floats_or_none(arrays["quantity"][at]),
            values["bar_ts"],
            _floats_or_none(arrays["bar_high"][at]),
            _floats_or_none(arrays["bar_low"][at]),
            _round4(arrays["pos"][at]),
            [bool(v) for v in values["wick"]],
            ints("amp_rank"),
            ints("bars_in_day"),
            [v or None for v in values["_direction"]],
            rounded("_delta", partner_at),
            [str(t) if hp else None for t, hp in zip(p_tid, has_partner, strict=True)],
            [bool(v) for v in values["_same_ts"]],
            [bool(v) for v in values["_strong"]],
            rounded("_gap", partner_at),
            [bool(v) for v in values["_equal"]],
            rounded("rel", has_bar_at),
            ints("ticks"),
            _round4(arrays["_weight"][at]),
            reasons,
            strict=True,
        )
    ]


def explain_analysis(
    trades: pd.DataFrame,
    klines: pd.DataFrame,
    tr: Any,
    legs: Any,
    rt: Any,
    account_ids: Iterable[str],
    *,
    top: int = 10,
) -> dict[str, list[dict[str, Any]]]:
    """:func:`explain_batch` from arrays the feature pass built already.

    Parameters
    ----------
    trades
        The trades the arrays were built from, in the same row order.
    klines
        The k-lines the arrays' bar rows point into (sorted by ``(symbol, ts)``).
    tr, legs, rt
        The trade, leg and round-trip arrays of :mod:`fraudlens.market.features` for
        ``trades`` (any accounts: an account's explanation reads its own rows only).
    account_ids, top
        As in :func:`explain_batch`.
    """
    ids = [str(a) for a in account_ids]
    result: dict[str, list[dict[str, Any]]] = {a: [] for a in ids}
    if not ids or len(trades) == 0:
        return result
    an = _annotate(tr, legs, rt)
    acct_all = tr.account_ids.astype(str)
    wanted = np.isin(acct_all, np.asarray(ids, dtype=str))
    rows = np.flatnonzero(wanted[tr.acct])
    if len(rows) == 0:
        return result
    # each row's account as its place in the accounts' text order (equal ids equal): the
    # sort and the groups below on integers rather than on an array of text per row
    names, code = np.unique(acct_all, return_inverse=True)
    account = code.reshape(-1)[tr.acct[rows]]
    # strongest pair first; legs of one pair stay together, buy before sell
    sides = _array(trades, "side")
    if isinstance(sides.dtype, pd.StringDtype):  # text already: no astype(str) copy
        side = np.asarray(sides.take(rows), dtype=object)
    else:
        side = trades["side"].astype(str).to_numpy()[rows]
    order = np.lexsort((side != "buy", an.group[rows], -an.pair_weight[rows], account))
    acct_sorted = account[order]
    first = np.r_[True, acct_sorted[1:] != acct_sorted[:-1]]
    start = np.flatnonzero(first)
    rank = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
    keep = order[rank < top]
    kept_names = [str(a) for a in names[account[keep]].tolist()]
    for rec, acct in zip(_records(trades, klines, tr, an, rows[keep]), kept_names, strict=True):
        result.setdefault(acct, []).append(rec)
    return result


def explain_batch(
    data: MarketData, account_ids: Iterable[str], *, top: int = 10
) -> dict[str, list[dict[str, Any]]]:
    """The trades that drove each account's score.

    Parameters
    ----------
    data
        Trades and k-lines (typically the scoring window).
    account_ids
        Accounts to explain; an account with no trades in ``data`` gets an empty list.
    top
        At most this many trades per account, strongest first.

    Returns
    -------
    dict
        ``account_id -> [record, ...]``. Each record holds ``trade_id, symbol, ts, side,
        price, quantity, bar_ts, bar_high, bar_low, pos`` (0 = bar low, 1 = bar high),
        ``wick, amp_rank, bars_in_day, pattern`` (``"forward"``: buy low / sell high,
        ``"reverse"``: buy high / sell low, or ``None``), ``delta`` (how close both legs
        sit to opposite extremes, 1 = exactly), ``partner_trade_id, same_timestamp,
        strong, gap`` (the legs' price gap in ordinary bar ranges of the day),
        ``equal_quantity, bar_range_vs_day, bar_ticks, weight`` and a ``reason``.
    """
    ids = [str(a) for a in account_ids]
    result: dict[str, list[dict[str, Any]]] = {a: [] for a in ids}
    if not ids:
        return result
    sub = data.subset(ids)
    if len(sub.trades) == 0:
        return result
    # only the traded symbols' bars matter; fewer bars make the join and ranks cheaper
    k = _sorted_klines(_traded_symbols_only(sub.klines, sub.trades))
    tr = _trade_arrays(sub.trades, k, sub.bar)
    legs = _legs(tr)
    rt = _round_trips(tr, legs, k, sub.bar)
    return explain_analysis(sub.trades, k, tr, legs, rt, ids, top=top)


def explain_account(data: MarketData, account_id: str, *, top: int = 10) -> list[dict[str, Any]]:
    """The trades that drove one account's score (see :func:`explain_batch`).

    Raises
    ------
    DataError
        If ``data`` holds no trades of ``account_id``.
    """
    out = explain_batch(data, [account_id], top=top)[str(account_id)]
    if not out:
        raise DataError(f"no trades for account {account_id!r}", column="account_id")
    return out
