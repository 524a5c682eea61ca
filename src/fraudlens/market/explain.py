"""Which trades drove an account's score, in words an analyst can check against the chart.

The trades are ranked by how strongly they show the takeover pattern:

1. legs of a same-bar round trip whose buy and sell sit at opposite ends of the bar
   (either direction), stronger when they share a timestamp, set the bar's high or low,
   or fall in one of the day's widest bars;
2. fills priced exactly at the bar's high or low without a matching opposite fill;
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
from fraudlens.market.features import NEAR_DELTA, trade_level_frame

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
    fwd_d = tl["fwd_delta"].to_numpy(dtype=np.float64)
    rev_d = tl["rev_delta"].to_numpy(dtype=np.float64)
    fwd_d = np.where(np.isnan(fwd_d), -np.inf, fwd_d)
    rev_d = np.where(np.isnan(rev_d), -np.inf, rev_d)
    use_rev = rev_d > fwd_d
    delta = np.where(use_rev, rev_d, fwd_d)
    partner = np.where(
        use_rev, tl["rev_partner"].to_numpy(np.int64), tl["fwd_partner"].to_numpy(np.int64)
    )
    matched = delta >= NEAR_DELTA
    pos = tl["pos"].to_numpy(dtype=np.float64)
    wick = tl["wick"].to_numpy(dtype=bool)
    top_bar = tl["amp_rank"].to_numpy(dtype=np.float64) <= _TOP_BARS
    ts = tl["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    same_ts = matched & (ts[np.where(matched, partner, 0)] == ts)
    edge = np.abs(pos - 0.5) * 2.0  # 0 at the middle of the bar, 1 at either end
    # tiers keep the categories apart; the small terms order trades inside a tier
    weight = np.select(
        [matched, wick, edge >= 0.8],
        [3.0 + delta, 2.0 + edge, 1.0 + edge],
        default=edge,
    )
    weight = weight + 0.2 * same_ts + 0.1 * (wick & matched) + 0.1 * (top_bar & matched)
    # both legs of a pair share the stronger leg's weight so they sort together
    idx = np.arange(n)
    group = np.where(matched, np.minimum(idx, partner), idx)
    pair_w = pd.Series(weight).groupby(group).transform("max").to_numpy()
    extra = pd.DataFrame(
        {
            "_direction": np.where(matched, np.where(use_rev, "reverse", "forward"), ""),
            "_delta": np.where(matched, delta, np.nan),
            "_partner": np.where(matched, partner, -1),
            "_same_ts": same_ts,
            "_weight": weight,
            "_pair_weight": pair_w,
            "_group": group,
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
        if not math.isnan(rank) and row["bars_in_day"] > 0
        else ""
    )
    if not row["_has_bar"]:
        return f"{side} with no price bar for its symbol and time"
    if partner is not None:
        other = "sell" if side == "buy" else "buy"
        when = "at the same timestamp" if row["_same_ts"] else "in the same bar"
        text = f"{where} matched by {other} at {_pct(partner['pos'])} {when}"
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
        ``"reverse"``: buy high / sell low, or ``None``), ``delta, partner_trade_id,
        same_timestamp, weight`` and a ``reason`` sentence.
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
