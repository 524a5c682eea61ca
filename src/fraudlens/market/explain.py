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
from typing import Any

import numpy as np
import pandas as pd

from fraudlens.errors import DataError
from fraudlens.market.data import MarketData
from fraudlens.market.features import STRONG_EXT, trade_level_frame

__all__ = ["explain_account", "explain_batch"]

_TOP_BARS = 10


def _pct(p: float) -> str:
    return f"{round(100.0 * p):d}%"


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat()


def _num(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def _annotate(tl: pd.DataFrame) -> pd.DataFrame:
    """Add ``direction, delta, partner, weight, group`` columns to a trade-level frame."""
    n = len(tl)
    partner = tl["rt_partner"].to_numpy(np.int64)
    ext = np.nan_to_num(tl["rt_ext"].to_numpy(dtype=np.float64), nan=-np.inf)
    gap = np.nan_to_num(tl["rt_gap"].to_numpy(dtype=np.float64))
    strong = tl["rt_strong"].to_numpy(dtype=bool)
    matched = (partner >= 0) & (ext >= STRONG_EXT)
    forward = tl["rt_forward"].to_numpy(dtype=bool)
    equal = tl["rt_equal_qty"].to_numpy(dtype=bool)
    pos = tl["pos"].to_numpy(dtype=np.float64)
    wick = tl["wick"].to_numpy(dtype=bool) & (tl["ticks"].to_numpy(dtype=np.float64) >= 4)
    ts = tl["ts"].to_numpy("datetime64[ns]").astype(np.int64)
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
    pair_w = pd.Series(weight).groupby(group).transform("max").to_numpy()
    extra = pd.DataFrame(
        {
            "_direction": np.where(matched, np.where(forward, "forward", "reverse"), ""),
            "_delta": np.where(matched, ext, np.nan),
            "_partner": np.where(matched, partner, -1),
            "_same_ts": same_ts,
            "_weight": weight,
            "_pair_weight": pair_w,
            "_group": group,
            "_strong": matched & strong,
            "_gap": np.where(matched, gap, np.nan),
            "_equal": matched & equal,
        },
        index=tl.index,
    )
    return pd.concat([tl, extra], axis=1)


def _reason(row: dict[str, Any], partner: dict[str, Any] | None) -> str:
    side = row["side"]
    where = f"{side} at {_pct(row['pos'])} of bar range"
    rank = row["amp_rank"]
    rank_txt = (
        f"; bar amplitude rank {int(rank)} of {int(row['bars_in_day'])}"
        f" ({row['rel']:.1f}x the day's median bar, {int(row['ticks'])} ticks)"
        if not math.isnan(rank) and row["bars_in_day"] > 0
        else ""
    )
    if not row["_has_bar"]:
        return f"{side} with no price bar for its symbol and time"
    if partner is not None:
        other = "sell" if side == "buy" else "buy"
        if row["_same_ts"]:
            when = "at the same timestamp"
        elif partner["bar_row"] != row["bar_row"]:
            when = "in the neighbouring bar"
        else:
            when = "in the same bar"
        size = "the same size" if row["_equal"] else "a different size"
        text = f"{where} matched by {other} of {size} at {_pct(partner['pos'])} {when}"
        if row["_strong"]:
            text += f", {row['_gap']:.1f} ordinary bar ranges apart"
        if row["wick"]:
            text += f"; the {side} sets the bar's {'low' if row['pos'] < 0.5 else 'high'}"
        return text + rank_txt
    if row["wick"]:
        end = "low" if row["pos"] < 0.5 else "high"
        return f"{side} exactly at the bar's {end}, with no opposite fill at the other end" + (
            rank_txt
        )
    return where + rank_txt


def _records(tl: pd.DataFrame, rows: np.ndarray) -> list[dict[str, Any]]:
    cols = [
        "trade_id",
        "account_id",
        "symbol",
        "ts",
        "side",
        "price",
        "quantity",
        "bar_ts",
        "bar_high",
        "bar_low",
        "pos",
        "wick",
        "amp_rank",
        "bars_in_day",
        "_direction",
        "_delta",
        "_partner",
        "_same_ts",
        "_weight",
        "bar_row",
        "rel",
        "ticks",
        "_strong",
        "_gap",
        "_equal",
    ]
    # plain Python rows only for the trades reported and their partners
    partners = tl["_partner"].to_numpy()[rows]
    needed = np.unique(np.r_[rows, partners[partners >= 0]]).astype(np.int64)
    # Column arrays, then plain dicts: DataFrame.to_dict("records") is slow on a few rows.
    values = {c: tl[c].to_numpy()[needed].tolist() for c in cols}
    recs = {int(i): {c: values[c][j] for c in cols} for j, i in enumerate(needed.tolist())}
    out: list[dict[str, Any]] = []
    for i in rows:
        r = recs[int(i)]
        r["_has_bar"] = int(r["bar_row"]) >= 0
        p_idx = int(r["_partner"])
        partner = recs[p_idx] if p_idx >= 0 else None
        out.append(
            {
                "trade_id": str(r["trade_id"]),
                "symbol": str(r["symbol"]),
                "ts": _iso(r["ts"]),
                "side": str(r["side"]),
                "price": float(r["price"]),
                "quantity": _num(r["quantity"]),
                "bar_ts": _iso(r["bar_ts"]),
                "bar_high": _num(r["bar_high"]),
                "bar_low": _num(r["bar_low"]),
                "pos": round(float(r["pos"]), 4),
                "wick": bool(r["wick"]),
                "amp_rank": int(r["amp_rank"]) if r["_has_bar"] else None,
                "bars_in_day": int(r["bars_in_day"]) if r["_has_bar"] else None,
                "pattern": r["_direction"] or None,
                "delta": None if partner is None else round(float(r["_delta"]), 4),
                "partner_trade_id": None if partner is None else str(partner["trade_id"]),
                "same_timestamp": bool(r["_same_ts"]),
                "strong": bool(r["_strong"]),
                "gap": None if partner is None else round(float(r["_gap"]), 4),
                "equal_quantity": bool(r["_equal"]),
                "bar_range_vs_day": round(float(r["rel"]), 4) if r["_has_bar"] else None,
                "bar_ticks": int(r["ticks"]) if r["_has_bar"] else None,
                "weight": round(float(r["_weight"]), 4),
                "reason": _reason(r, partner),
            }
        )
    return out


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
    keep = sub.klines["symbol"].isin(pd.unique(sub.trades["symbol"])).to_numpy()
    sub = MarketData(sub.klines[keep], sub.trades, sub.labels, sub.bar)
    tl = _annotate(trade_level_frame(sub))
    # strongest pair first; legs of one pair stay together, buy before sell
    order = np.lexsort(
        (
            tl["side"].astype(str).to_numpy() != "buy",
            tl["_group"].to_numpy(),
            -tl["_pair_weight"].to_numpy(),
            tl["account_id"].astype(str).to_numpy(),
        )
    )
    acct_sorted = tl["account_id"].astype(str).to_numpy()[order]
    first = np.r_[True, acct_sorted[1:] != acct_sorted[:-1]]
    start = np.flatnonzero(first)
    rank = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
    keep = order[rank < top]
    for rec, acct in zip(
        _records(tl, keep), tl["account_id"].astype(str).to_numpy()[keep], strict=True
    ):
        result.setdefault(acct, []).append(rec)
    return result


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
