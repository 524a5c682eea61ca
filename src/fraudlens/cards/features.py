"""Leak-free window features for raw card transactions (after the Fraud Detection Handbook).

For each transaction at time ``t`` (features are aligned to the input rows):

- ``tx_amount``; ``tx_during_weekend`` (Saturday or Sunday); ``tx_during_night``
  (hour <= 6, the handbook's definition). Day and hour are read on the timestamp's own
  wall clock (UTC when it has no zone).
- Customer behaviour over each window of ``w`` days: ``customer_id_nb_tx_{w}day_window``
  and ``customer_id_avg_amount_{w}day_window``, over the customer's transactions in
  ``(t - w, t]`` up to and including the current one. The current amount is known when
  the transaction is scored, so including it leaks nothing. Transactions with the same
  timestamp count in input order: a later row never feeds an earlier one.
- Terminal risk with a label delay of ``delay_days`` (frauds are only known that long
  after the fact): ``terminal_id_nb_tx_{w}day_window`` and ``terminal_id_risk_{w}day_window``,
  the number of the terminal's transactions in ``[t - delay - w, t - delay)`` and the share
  of them labelled fraud (0 when there are none). Only labels of transactions that happened
  before ``t - delay`` are read. A missing label counts as not (yet) fraud.

Everything is computed with one sort, cumulative sums and ``searchsorted``; there is no
Python loop over rows or groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from fraudlens.errors import DataError

__all__ = ["FEATURE_NAMES", "REQUIRED_COLUMNS", "feature_names", "transaction_features"]

#: Columns :func:`transaction_features` needs (``label`` is optional).
REQUIRED_COLUMNS = ("ts", "customer_id", "terminal_id", "amount")

_NS_PER_DAY = 86_400 * 10**9
_NS_PER_HOUR = 3_600 * 10**9


def _fmt(w: float) -> str:
    return f"{w:g}"


def feature_names(windows: Sequence[float] = (1, 7, 30)) -> tuple[str, ...]:
    """Names of the columns :func:`transaction_features` returns, in order.

    Parameters
    ----------
    windows
        Window lengths in days.

    Returns
    -------
    tuple of str
        ``tx_amount, tx_during_weekend, tx_during_night``, then the customer pair and
        the terminal pair for each window.
    """
    names = ["tx_amount", "tx_during_weekend", "tx_during_night"]
    for w in windows:
        names += [
            f"customer_id_nb_tx_{_fmt(w)}day_window",
            f"customer_id_avg_amount_{_fmt(w)}day_window",
        ]
    for w in windows:
        names += [f"terminal_id_nb_tx_{_fmt(w)}day_window", f"terminal_id_risk_{_fmt(w)}day_window"]
    return tuple(names)


#: Feature names for the default windows (1, 7 and 30 days); a stable order.
FEATURE_NAMES = feature_names()


def _timestamps(ts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Absolute time (int64 ns since the epoch, UTC) and wall-clock time (int64 ns)."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        wall = ts.dt.tz_localize(None)
        absolute = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(ts.dtype):
        wall = absolute = ts
    else:
        parsed = pd.to_datetime(ts, utc=True, errors="coerce", format="ISO8601")
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"unparseable timestamp {ts.iloc[i]!r}", row=i + 1, column="ts")
        wall = absolute = parsed.dt.tz_localize(None)
    a = absolute.to_numpy("datetime64[ns]").view(np.int64)
    w = wall.to_numpy("datetime64[ns]").view(np.int64)
    if np.isnat(absolute.to_numpy("datetime64[ns]")).any():
        i = int(np.argmax(np.isnat(absolute.to_numpy("datetime64[ns]"))))
        raise DataError("missing timestamp", row=i + 1, column="ts")
    return a, w


class _TimeRanks:
    """Ranks of times among the sorted unique row times, computed on time-sorted queries.

    Rank lookups run on queries sorted by time (cache-friendly ``searchsorted``) and are
    scattered back to row order.
    """

    def __init__(self, t: np.ndarray) -> None:
        self.order = np.argsort(t, kind="stable")
        self.t_sorted = t[self.order]
        keep = np.r_[True, self.t_sorted[1:] != self.t_sorted[:-1]]
        self.uniq = self.t_sorted[keep]

    def rank(self, offset: np.int64 | int = 0, *, strict: bool = False) -> np.ndarray:
        """Per row: index of the first unique time >= t - offset (> t - offset if strict)."""
        out = np.empty(len(self.order), dtype=np.int64)
        side: Literal["left", "right"] = "right" if strict else "left"
        out[self.order] = np.searchsorted(self.uniq, self.t_sorted - offset, side=side)
        return out


class _GroupedTimes:
    """Rows sorted by (group, time, input position), with window lookups per group.

    A lookup "first row of my group at time >= q" is one ``searchsorted`` into a composite
    key ``group * M + time_rank``; ranks (not raw times) keep the key within int64
    whatever the time span and number of groups.
    """

    def __init__(self, group: np.ndarray, ranks: _TimeRanks) -> None:
        self.m = np.int64(len(ranks.uniq) + 1)
        key = group * self.m + ranks.rank()
        # A stable sort keeps input order among equal (group, time).
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]
        self.group = group[self.order]
        first = np.r_[True, self.group[1:] != self.group[:-1]]
        self.group_start = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))

    def first_at(self, rank: np.ndarray) -> np.ndarray:
        """Sorted position of the first row of the same group with time rank >= ``rank``.

        ``rank`` is given per row in input order.
        """
        return np.searchsorted(self.key, self.group * self.m + rank[self.order], side="left")


def transaction_features(
    df: pd.DataFrame,
    *,
    windows: Sequence[float] = (1, 7, 30),
    delay_days: float = 7,
) -> pd.DataFrame:
    """Customer and terminal window features for raw transactions, without look-ahead.

    Parameters
    ----------
    df
        Transactions with ``ts`` (datetime or ISO-8601 text; no zone means UTC),
        ``customer_id``, ``terminal_id``, ``amount`` and optionally ``label`` (0/1; missing
        values count as not fraud). Row order is free.
    windows
        Window lengths in days.
    delay_days
        Label delay for the terminal risk features.

    Returns
    -------
    pandas.DataFrame
        float32 columns :func:`feature_names` ``(windows)``, same index and row order as
        ``df``.

    Raises
    ------
    DataError
        When a required column is missing or a timestamp cannot be read.
    """
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise DataError("missing column", column=col)
    n = len(df)
    names = feature_names(windows)
    if n == 0:
        return pd.DataFrame({c: np.empty(0, np.float32) for c in names}, index=df.index)

    t, wall = _timestamps(df["ts"])
    amount = pd.to_numeric(df["amount"], errors="coerce").to_numpy(dtype=np.float64)
    if "label" in df.columns:
        label = pd.to_numeric(df["label"], errors="coerce").fillna(0).to_numpy(np.float64)
        fraud = (label > 0).astype(np.int64)
    else:
        fraud = np.zeros(n, dtype=np.int64)

    out: dict[str, np.ndarray] = {"tx_amount": amount}
    day = np.floor_divide(wall, _NS_PER_DAY)
    # 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
    out["tx_during_weekend"] = ((day + 3) % 7 >= 5).astype(np.float64)
    out["tx_during_night"] = ((wall - day * _NS_PER_DAY) // _NS_PER_HOUR <= 6).astype(np.float64)

    ranks = _TimeRanks(t)
    spans = [np.int64(round(w * _NS_PER_DAY)) for w in windows]
    delay = np.int64(round(delay_days * _NS_PER_DAY))

    # Customers: (t - w, t], up to and including the current row.
    cg = _GroupedTimes(pd.factorize(df["customer_id"])[0].astype(np.int64), ranks)
    pos = np.arange(n, dtype=np.int64)
    a_sorted = amount[cg.order]
    # Per-group running sums restart at each group, so the sum for a row only ever adds
    # the same rows in the same order, whatever other groups hold.
    csum = pd.Series(a_sorted).groupby(cg.group).cumsum().to_numpy()
    for w, span in zip(windows, spans, strict=True):
        lo = cg.first_at(ranks.rank(span, strict=True))
        count = pos - lo + 1
        before = np.where(lo > cg.group_start, csum[np.maximum(lo - 1, 0)], 0.0)
        total = csum - before
        nb = np.empty(n)
        avg = np.empty(n)
        nb[cg.order] = count
        avg[cg.order] = total / count
        out[f"customer_id_nb_tx_{_fmt(w)}day_window"] = nb
        out[f"customer_id_avg_amount_{_fmt(w)}day_window"] = avg

    # Terminals: [t - delay - w, t - delay); every label read belongs to a row before t - delay.
    tg = _GroupedTimes(pd.factorize(df["terminal_id"])[0].astype(np.int64), ranks)
    cfraud = np.r_[0, np.cumsum(fraud[tg.order])]
    hi = tg.first_at(ranks.rank(delay))
    for w, span in zip(windows, spans, strict=True):
        lo = tg.first_at(ranks.rank(delay + span))
        count = hi - lo
        frauds = cfraud[hi] - cfraud[lo]
        nb = np.empty(n)
        risk = np.empty(n)
        nb[tg.order] = count
        risk[tg.order] = np.divide(frauds, count, out=np.zeros(n), where=count > 0)
        out[f"terminal_id_nb_tx_{_fmt(w)}day_window"] = nb
        out[f"terminal_id_risk_{_fmt(w)}day_window"] = risk

    return pd.DataFrame({c: out[c].astype(np.float32) for c in names}, index=df.index)
