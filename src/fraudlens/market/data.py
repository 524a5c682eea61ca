"""Market data contracts: k-lines, trades and labels; windowing and bar lookup.

Contracts (see the README's "Data contracts"):

- ``klines``: ``symbol, ts (bar start), open, high, low, close, volume``
- ``trades``: ``trade_id, account_id, symbol, ts, side (buy|sell), price, quantity``
- ``labels``: ``account_id, label`` (1 = takeover pattern, 0 = normal) + optional columns

In memory, ``ts`` columns are ``datetime64[ns, UTC]``; ``account_id``, ``symbol`` and
``trade_id`` are strings; ``side`` is ``"buy"`` or ``"sell"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "BAR",
    "KLINE_COLUMNS",
    "LABEL_COLUMNS",
    "TRADE_COLUMNS",
    "MarketData",
    "attach_bars",
    "window",
]

KLINE_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("trade_id", "account_id", "symbol", "ts", "side", "price", "quantity")
LABEL_COLUMNS = ("account_id", "label")
#: Default bar length.
BAR = pd.Timedelta(minutes=5)


@dataclass
class MarketData:
    """K-lines and trades (and optionally labels) held together.

    ``account_ids`` fixes the order in which every detector returns its scores: the
    sorted unique account ids of ``trades``.
    """

    klines: pd.DataFrame
    trades: pd.DataFrame
    labels: pd.DataFrame | None = None
    bar: pd.Timedelta = field(default=BAR)

    @property
    def account_ids(self) -> np.ndarray:
        """Sorted unique account ids present in ``trades``."""
        return np.sort(self.trades["account_id"].astype(str).unique())

    def y(self) -> np.ndarray:
        """Labels aligned to :attr:`account_ids` (raises if labels are missing)."""
        if self.labels is None:
            raise ValueError("this MarketData has no labels")
        lab = self.labels.set_index("account_id")["label"]
        missing = np.setdiff1d(self.account_ids, lab.index.astype(str))
        if len(missing):
            raise ValueError(f"{len(missing)} accounts have no label, e.g. {missing[:3].tolist()}")
        return lab.reindex(self.account_ids).to_numpy(dtype=np.int8)

    def label_column(self, name: str) -> np.ndarray | None:
        """An extra label column (e.g. ``kind``) aligned to :attr:`account_ids`, if present."""
        if self.labels is None or name not in self.labels.columns:
            return None
        return self.labels.set_index("account_id")[name].reindex(self.account_ids).to_numpy()

    def subset(self, account_ids: np.ndarray | list[str]) -> MarketData:
        """Only the given accounts' trades and labels (k-lines are shared and kept whole)."""
        ids = pd.Index(np.asarray(account_ids, dtype=str))
        trades = self.trades[self.trades["account_id"].isin(ids)].reset_index(drop=True)
        labels = None
        if self.labels is not None:
            labels = self.labels[self.labels["account_id"].isin(ids)].reset_index(drop=True)
        return MarketData(self.klines, trades, labels, self.bar)


def window(data: MarketData, hours: float = 24.0) -> MarketData:
    """Keep, for each account, the trades in the ``hours`` that end at its latest trade.

    This is the scoring unit of every detector.
    """
    t = data.trades
    last = t.groupby("account_id", sort=False)["ts"].transform("max")
    keep = t["ts"] >= last - pd.Timedelta(hours=hours)
    if bool(keep.all()):
        return data
    return MarketData(data.klines, t[keep].reset_index(drop=True), data.labels, data.bar)


def attach_bars(trades: pd.DataFrame, klines: pd.DataFrame, bar: pd.Timedelta = BAR) -> pd.DataFrame:
    """Join each trade to the bar of its symbol that contains its timestamp.

    Returns a copy of ``trades`` (same row order) with ``bar_ts, bar_open, bar_high,
    bar_low, bar_close`` and ``bar_row`` (the row position of the bar in ``klines`` sorted
    by symbol and ts; -1 if none). Trades with no bar get NaN bar columns.
    Vectorised: one sort and one ``searchsorted`` per call, no Python loop per trade.
    """
    k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    sym_codes, sym_uniques = pd.factorize(
        pd.concat([k["symbol"], trades["symbol"]], ignore_index=True), sort=True
    )
    k_sym = sym_codes[: len(k)].astype(np.int64)
    t_sym = sym_codes[len(k) :].astype(np.int64)
    k_ts = k["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    t_ts = trades["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    # k-lines are sorted by (symbol, ts): search each symbol's slice with its trades.
    starts = np.searchsorted(k_sym, np.arange(len(sym_uniques)), side="left")
    ends = np.searchsorted(k_sym, np.arange(len(sym_uniques)), side="right")
    pos = np.full(len(trades), -1, dtype=np.int64)
    order = np.argsort(t_sym, kind="stable")
    ts_sorted_sym = t_sym[order]
    bounds = np.searchsorted(ts_sorted_sym, np.arange(len(sym_uniques) + 1), side="left")
    bar_ns = int(bar.value)
    for s in range(len(sym_uniques)):
        idx = order[bounds[s] : bounds[s + 1]]
        if len(idx) == 0 or starts[s] == ends[s]:
            continue
        seg = k_ts[starts[s] : ends[s]]
        j = np.searchsorted(seg, t_ts[idx], side="right") - 1
        ok = (j >= 0) & (t_ts[idx] < seg[np.clip(j, 0, None)] + bar_ns)
        pos[idx[ok]] = starts[s] + j[ok]
    out = trades.copy()
    has = pos >= 0
    safe = np.where(has, pos, 0)
    out["bar_row"] = pos
    out["bar_ts"] = pd.Series(k["ts"].to_numpy()[safe], index=out.index).where(has)
    for col in ("open", "high", "low", "close"):
        vals = k[col].to_numpy(dtype=np.float64)[safe]
        out[f"bar_{col}"] = np.where(has, vals, np.nan)
    return out
