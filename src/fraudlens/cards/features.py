"""Leak-free features for raw card transactions (after the Fraud Detection Handbook).

For each transaction at time ``t`` (features are aligned to the input rows), with the
window lengths ``windows`` (days; ``L`` the longest) and the label delay ``delay_days``
(``D``, positive):

The handbook's 15 features, first and in its order, with its definitions:

- ``tx_amount``; ``tx_during_weekend`` (Saturday or Sunday); ``tx_during_night``
  (hour <= 6). Day and hour are read on the timestamp's own wall clock (UTC when it has
  no zone).
- Customer behaviour over each window of ``w`` days: ``customer_id_nb_tx_{w}day_window``
  and ``customer_id_avg_amount_{w}day_window``, over the customer's transactions in
  ``(t - w, t]`` up to and including the current one (pandas' time-based rolling window,
  which the handbook uses). The current amount is known when the transaction is scored,
  so including it leaks nothing.
- Terminal risk with a label delay (a fraud is known ``D`` days after the fact):
  ``terminal_id_nb_tx_{w}day_window`` and ``terminal_id_risk_{w}day_window``, the number
  of the terminal's transactions in ``(t - D - w, t - D]`` and the share of them labelled
  fraud (0 when there are none). This is the handbook's window: its rolling counts over
  ``D + w`` days minus those over ``D`` days, so a transaction exactly ``D`` days old is
  in, one exactly ``D + w`` days old is out. Only labels of transactions at least ``D``
  days old are read. A missing label counts as not (yet) fraud.

Same-time rows of one customer
    With ``ties="input"`` (default) they count in input order: a later row never feeds an
    earlier one, so a row's features never depend on rows that come after it. The handbook
    orders each customer's rows with pandas' default sort, which is not stable: on its
    public data, 29 pairs of one customer's transactions share a second and about a third
    of them come out reversed. ``ties="handbook"`` reproduces that order exactly (numpy's
    quicksort over each customer's rows taken in input order; feed rows in
    ``transaction_id`` order, as the handbook reads them). That order depends on all of
    the customer's rows, so only use it to reproduce the handbook's files.

Then behavioural features, over the same customer windows and delayed terminal windows:

- ``customer_id_amount_to_avg_{w}day_window``: the amount over the customer's mean amount
  of that window (1 when that mean is 0). A stolen card used for larger amounts stands
  out against its own history, whatever the card's usual spending.
- ``customer_id_avg_amount_{w}day_to_{L}day_window`` and
  ``customer_id_nb_tx_{w}day_to_{L}day_window`` for each window shorter than ``L``: the
  mean amount of the short window over the long one (1 when the long mean is 0), and the
  number of transactions of the short window over the number expected from the long
  window's daily rate (``nb_w / (nb_L * w / L)``).
- ``customer_id_std_amount_{L}day_window`` (population standard deviation of the amounts
  in the long window; 0 when it is below 1e-7 of their root mean square, which is
  rounding, not spread) and ``customer_id_amount_zscore_{L}day_window``
  (``(amount - mean) / std``, 0 when the standard deviation is 0).
- ``customer_id_days_since_previous_tx``: days since the customer's previous transaction,
  capped at ``L`` (also ``L`` for the first one seen).
- ``terminal_id_fraud_streak_{L}day_window``: how many of the terminal's latest
  transactions in ``(t - D - L, t - D]`` were all fraud, counted back from the latest
  one to the first genuine one. A compromised terminal makes a run of frauds; a stolen
  card used there once makes a single fraud followed by genuine transactions.
- ``terminal_id_days_since_streak_start_{L}day_window``: days from the first fraud of
  that run to ``t`` (0 without a run): a compromise that started long ago may be over.
- ``terminal_id_last_fraud_amount_ratio_{L}day_window``: the amount of the terminal's
  latest known fraud in ``(t - D - L, t - D]`` over the terminal's mean amount in that
  window (0 without a fraud). Frauds with ordinary amounts point at the terminal, frauds
  with large amounts at the card used there.
- ``terminal_id_nb_fraud_{L}day_window``: the number of the terminal's known frauds in
  ``(t - D - L, t - D]``.
- ``terminal_id_days_since_last_fraud_{L}day_window``: days from the terminal's latest
  known fraud in that window to ``t`` (``D + L`` without one).
- ``terminal_id_days_since_genuine_before_streak_{L}day_window``: days from the
  terminal's latest genuine transaction before its run of frauds (the run of
  ``terminal_id_fraud_streak``) to ``t``; 0 without a run, ``D + L`` when the window holds
  no genuine transaction before the run. A compromise began between that transaction
  and the run's first fraud, so this bounds its age from above, as the days since the
  run's start bound it from below: a compromise that lasts a fixed time may be known
  to be over although its last known transactions were all frauds.

With ``R`` the longest window shorter than ``L`` (7 days by default; these two are left
out when there is a single window), against the customer's *baseline*, their mean amount
over ``(t - L, t - R]``: spending from before the last ``R`` days, which a card stolen
in those days has not yet inflated:

- ``customer_id_amount_to_baseline_{L}day_window``: the amount over the baseline (1
  without a baseline);
- ``customer_id_nb_large_tx_{R}day_window``: how many of the customer's transactions in
  ``(t - R, t]``, this one included, were over three times their own baseline. A thief
  who spends big once looks like a one-off; one who keeps spending big does not.

Nothing looks back further than ``D + L`` days, and every feature of a row is a function
of the rows inside its own windows only: sums of amounts are exact integer sums of a
fixed-point split of each amount (see :class:`_ExactSums`), so a file that starts earlier
or later, or holds other customers, gives bit-for-bit the same features for a row with
``D + L`` days of history.

Everything is computed with one sort per key, cumulative sums and ``searchsorted``; there
is no Python loop over rows (``ties="handbook"`` loops over the customers that have ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from fraudlens.errors import DataError

__all__ = [
    "FEATURE_NAMES",
    "HANDBOOK_FEATURE_NAMES",
    "REQUIRED_COLUMNS",
    "TIES",
    "feature_names",
    "transaction_features",
]

#: Columns :func:`transaction_features` needs (``label`` is optional).
REQUIRED_COLUMNS = ("ts", "customer_id", "terminal_id", "amount")
#: Orders for one customer's same-time rows (see the module docstring).
TIES = ("input", "handbook")

_NS_PER_DAY = 86_400 * 10**9
_NS_PER_HOUR = 3_600 * 10**9
# A transaction is "large" above this many times the customer's baseline mean.
_LARGE = 3.0


def _fmt(w: float) -> str:
    return f"{w:g}"


def _check_windows(windows: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(w) for w in windows)
    if not out or min(out) <= 0:
        raise ValueError(f"windows must be one or more positive lengths in days, got {windows!r}")
    return out


def _handbook_names(windows: Sequence[float]) -> list[str]:
    names = ["tx_amount", "tx_during_weekend", "tx_during_night"]
    for w in windows:
        names += [
            f"customer_id_nb_tx_{_fmt(w)}day_window",
            f"customer_id_avg_amount_{_fmt(w)}day_window",
        ]
    for w in windows:
        names += [f"terminal_id_nb_tx_{_fmt(w)}day_window", f"terminal_id_risk_{_fmt(w)}day_window"]
    return names


def _recent(windows: Sequence[float]) -> float | None:
    """The "recent" window of the baseline features: the longest one shorter than ``L``."""
    shorter = [w for w in windows if w < max(windows)]
    return max(shorter) if shorter else None


def _behaviour_names(windows: Sequence[float]) -> list[str]:
    longest = _fmt(max(windows))
    names = [f"customer_id_amount_to_avg_{_fmt(w)}day_window" for w in windows]
    for w in windows:
        if w < max(windows):
            names += [
                f"customer_id_avg_amount_{_fmt(w)}day_to_{longest}day_window",
                f"customer_id_nb_tx_{_fmt(w)}day_to_{longest}day_window",
            ]
    names += [
        f"customer_id_std_amount_{longest}day_window",
        f"customer_id_amount_zscore_{longest}day_window",
        "customer_id_days_since_previous_tx",
        f"terminal_id_fraud_streak_{longest}day_window",
        f"terminal_id_days_since_streak_start_{longest}day_window",
        f"terminal_id_last_fraud_amount_ratio_{longest}day_window",
        f"terminal_id_nb_fraud_{longest}day_window",
        f"terminal_id_days_since_last_fraud_{longest}day_window",
        f"terminal_id_days_since_genuine_before_streak_{longest}day_window",
    ]
    recent = _recent(windows)
    if recent is not None:
        names += [
            f"customer_id_amount_to_baseline_{longest}day_window",
            f"customer_id_nb_large_tx_{_fmt(recent)}day_window",
        ]
    return names


def feature_names(windows: Sequence[float] = (1, 7, 30)) -> tuple[str, ...]:
    """Names of the columns :func:`transaction_features` returns, in order.

    Parameters
    ----------
    windows
        Window lengths in days (one or more, all positive).

    Returns
    -------
    tuple of str
        The handbook's features (``tx_amount, tx_during_weekend, tx_during_night``, then
        the customer pair and the terminal pair for each window), then the behavioural
        features described in the module docstring.

    Raises
    ------
    ValueError
        When ``windows`` is empty or holds a length that is not positive.
    """
    windows = _check_windows(windows)
    return (*_handbook_names(windows), *_behaviour_names(windows))


#: Feature names for the default windows (1, 7 and 30 days); a stable order.
FEATURE_NAMES = feature_names()
#: The first 15 of :data:`FEATURE_NAMES`: the Fraud Detection Handbook's own features.
HANDBOOK_FEATURE_NAMES = tuple(_handbook_names((1.0, 7.0, 30.0)))


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
    """Rows sorted by (group, time, tie order), with window lookups per group.

    A lookup "first row of my group at time >= q" is one ``searchsorted`` into a composite
    key ``group * M + time_rank``; ranks (not raw times) keep the key within int64
    whatever the time span and number of groups.
    """

    def __init__(
        self, group: np.ndarray, ranks: _TimeRanks, tiebreak: np.ndarray | None = None
    ) -> None:
        self.m = np.int64(len(ranks.uniq) + 1)
        key = group * self.m + ranks.rank()
        if tiebreak is None:
            # A stable sort keeps input order among equal (group, time).
            self.order = np.argsort(key, kind="stable")
        else:
            self.order = np.lexsort((tiebreak, key))
        self.key = key[self.order]
        self.group = group[self.order]
        first = np.r_[True, self.group[1:] != self.group[:-1]]
        self.group_start = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))

    def first_at(self, rank: np.ndarray) -> np.ndarray:
        """Sorted position of the first row of the same group with time rank >= ``rank``.

        ``rank`` is given per row in input order.
        """
        return np.searchsorted(self.key, self.group * self.m + rank[self.order], side="left")

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """Values in sorted order, back to input order."""
        out = np.empty(len(values), dtype=np.float64)
        out[self.order] = values
        return out


class _ExactSums:
    """Sums over ranges of positions that depend only on the values in the range.

    Prefix sums in floating point carry the rounding of every earlier row into each
    difference, so a window's sum would change in its last bits with where the data
    start. Here each value ``v`` (scaled by a power of two, ``2**e`` above the largest
    magnitude) is split into three 31-bit integer limbs, ``v = (l0 / 2**31 + l1 / 2**62
    + l2 / 2**93) * 2**e`` (exact for every value within 2**40 of the largest; smaller
    ones lose bits below ``2**(e - 93)``). Integer prefix sums of the limbs are exact, so
    a range's limb sums are exact and independent of the other rows, and the one final
    conversion to float is a fixed function of them.
    """

    _BITS = 31

    def __init__(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        top = float(np.max(np.abs(v))) if len(v) else 0.0
        self.exp = int(np.frexp(top)[1]) if top > 0 else 0
        u = np.ldexp(np.abs(v), -self.exp)
        sign = np.where(v < 0, -1, 1).astype(np.int64)
        self.prefix: list[np.ndarray] = []
        for _ in range(3):
            u = np.ldexp(u, self._BITS)
            limb = np.floor(u)
            u = u - limb
            self.prefix.append(np.r_[np.int64(0), np.cumsum(limb.astype(np.int64) * sign)])

    def between(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum over positions ``lo .. hi - 1`` (0 where ``hi <= lo``)."""
        s0, s1, s2 = (p[hi] - p[lo] for p in self.prefix)
        total = np.ldexp(s2.astype(np.float64), -self._BITS) + s1
        total = np.ldexp(total, -self._BITS) + s0
        return np.where(hi > lo, np.ldexp(total, self.exp - self._BITS), 0.0)


def _ratio(num: np.ndarray, den: np.ndarray, default: float) -> np.ndarray:
    return np.divide(num, den, out=np.full(len(num), default), where=den != 0)


def _handbook_tiebreak(group: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """Tie order of the handbook: numpy's quicksort of each group's times, rows in input order.

    Returns a per-row secondary sort key (None when no group has two rows at one time).
    """
    by_group = np.lexsort((t, group))
    g, ts = group[by_group], t[by_group]
    tied = (g[1:] == g[:-1]) & (ts[1:] == ts[:-1])
    if not tied.any():
        return None
    rows_by_group = np.argsort(group, kind="stable")
    sorted_groups = group[rows_by_group]
    tiebreak = np.arange(len(group), dtype=np.int64)
    for gid in np.unique(g[1:][tied]):
        lo, hi = np.searchsorted(sorted_groups, [gid, gid + 1])
        rows = rows_by_group[lo:hi]  # the group's rows, in input order
        # The handbook sorts each customer's rows with pandas' default (numpy's
        # quicksort on datetime64), which is not stable; replay it.
        qs = np.argsort(t[rows].view("datetime64[ns]"), kind="quicksort")
        tiebreak[rows[qs]] = rows
    return tiebreak


def _customer_features(
    out: dict[str, np.ndarray],
    cg: _GroupedTimes,
    ranks: _TimeRanks,
    t: np.ndarray,
    amount: np.ndarray,
    windows: tuple[float, ...],
) -> None:
    """Customer windows ``(t - w, t]``, up to and including the current row."""
    n = len(amount)
    pos = np.arange(n, dtype=np.int64)
    a = amount[cg.order]
    # Amounts over a power of two (exact) so that squares cannot overflow.
    top = float(np.max(np.abs(a))) if n else 0.0
    scale = float(np.ldexp(1.0, int(np.frexp(top)[1]))) if top > 0 else 1.0
    b = a / scale
    sums = _ExactSums(b)
    squares = _ExactSums(b * b)
    counts: dict[float, np.ndarray] = {}
    means: dict[float, np.ndarray] = {}
    longest = max(windows)
    for w in windows:
        lo = cg.first_at(ranks.rank(np.int64(round(w * _NS_PER_DAY)), strict=True))
        counts[w] = (pos - lo + 1).astype(np.float64)
        mean_b = sums.between(lo, pos + 1) / counts[w]
        means[w] = mean_b * scale
        out[f"customer_id_nb_tx_{_fmt(w)}day_window"] = cg.scatter(counts[w])
        out[f"customer_id_avg_amount_{_fmt(w)}day_window"] = cg.scatter(means[w])
        out[f"customer_id_amount_to_avg_{_fmt(w)}day_window"] = cg.scatter(_ratio(a, means[w], 1.0))
        if w == longest:
            m2 = squares.between(lo, pos + 1) / counts[w]
            var = m2 - mean_b * mean_b
            # What is left of the cancellation in ``m2 - mean ** 2`` is rounding, not
            # spread: equal amounts get a standard deviation (and z-score) of exactly 0.
            std = np.sqrt(np.where(var > 1e-14 * m2, var, 0.0)) * scale
            key = _fmt(w)
            out[f"customer_id_std_amount_{key}day_window"] = cg.scatter(std)
            out[f"customer_id_amount_zscore_{key}day_window"] = cg.scatter(
                _ratio(a - means[w], std, 0.0)
            )
    for w in windows:
        if w < longest:
            name = f"{_fmt(w)}day_to_{_fmt(longest)}day_window"
            out[f"customer_id_avg_amount_{name}"] = cg.scatter(
                _ratio(means[w], means[longest], 1.0)
            )
            out[f"customer_id_nb_tx_{name}"] = cg.scatter(
                counts[w] / (counts[longest] * (w / longest))
            )
    recent = _recent(windows)
    if recent is not None:
        lo = cg.first_at(ranks.rank(np.int64(round(longest * _NS_PER_DAY)), strict=True))
        hi = cg.first_at(ranks.rank(np.int64(round(recent * _NS_PER_DAY)), strict=True))
        n_base = hi - lo
        base = np.divide(sums.between(lo, hi), n_base, out=np.zeros(n), where=n_base > 0) * scale
        out[f"customer_id_amount_to_baseline_{_fmt(longest)}day_window"] = cg.scatter(
            _ratio(a, base, 1.0)
        )
        # Each row is large or not against its own baseline; count those in (t - R, t].
        large = np.r_[0, np.cumsum((n_base > 0) & (base > 0) & (a > _LARGE * base))]
        out[f"customer_id_nb_large_tx_{_fmt(recent)}day_window"] = cg.scatter(
            (large[pos + 1] - large[hi]).astype(np.float64)
        )
    ts = t[cg.order]
    first = pos == cg.group_start
    gap = (ts - np.r_[ts[:1], ts[:-1]]) / _NS_PER_DAY
    out["customer_id_days_since_previous_tx"] = cg.scatter(
        np.where(first, longest, np.minimum(gap, longest))
    )


def _terminal_features(
    out: dict[str, np.ndarray],
    tg: _GroupedTimes,
    ranks: _TimeRanks,
    t: np.ndarray,
    amount: np.ndarray,
    fraud: np.ndarray,
    windows: tuple[float, ...],
    delay: np.int64,
) -> None:
    """Terminal windows ``(t - delay - w, t - delay]``: every label read is known by ``t``."""
    n = len(amount)
    pos = np.arange(n, dtype=np.int64)
    f = fraud[tg.order]
    cfraud = np.r_[0, np.cumsum(f)]
    # Sorted positions: the window is lo .. hi - 1 (rows of the row's own group).
    hi = tg.first_at(ranks.rank(delay, strict=True))
    longest = max(windows)
    lo_longest = hi
    for w in windows:
        lo = tg.first_at(ranks.rank(delay + np.int64(round(w * _NS_PER_DAY)), strict=True))
        count = (hi - lo).astype(np.float64)
        frauds = cfraud[hi] - cfraud[lo]
        out[f"terminal_id_nb_tx_{_fmt(w)}day_window"] = tg.scatter(count)
        out[f"terminal_id_risk_{_fmt(w)}day_window"] = tg.scatter(
            np.divide(frauds, count, out=np.zeros(n), where=count > 0)
        )
        if w == longest:
            lo_longest = lo
    lo = lo_longest
    known = hi > lo
    last = np.maximum(hi - 1, 0)
    # Latest genuine and latest fraudulent row at or before each sorted position. Both
    # may belong to an earlier group; comparing them with ``lo`` (inside the row's own
    # group) rules that out.
    last_genuine = np.maximum.accumulate(np.where(f == 0, pos, -1))[last]
    last_fraud = np.maximum.accumulate(np.where(f == 1, pos, -1))[last]
    start = np.maximum(last_genuine + 1, lo)
    streak = np.where(known, hi - start, 0)
    ts = t[tg.order]
    since = np.where(streak > 0, (ts - ts[np.minimum(start, n - 1)]) / _NS_PER_DAY, 0.0)
    key = _fmt(longest)
    out[f"terminal_id_fraud_streak_{key}day_window"] = tg.scatter(streak.astype(np.float64))
    out[f"terminal_id_days_since_streak_start_{key}day_window"] = tg.scatter(since)
    a = amount[tg.order]
    mean = np.divide(_ExactSums(a).between(lo, hi), hi - lo, out=np.zeros(n), where=known)
    has_fraud = known & (last_fraud >= lo)
    fraud_amount = a[np.maximum(last_fraud, 0)]
    ratio = np.divide(fraud_amount, mean, out=np.zeros(n), where=has_fraud & (mean != 0))
    out[f"terminal_id_last_fraud_amount_ratio_{key}day_window"] = tg.scatter(ratio)
    out[f"terminal_id_nb_fraud_{key}day_window"] = tg.scatter(
        (cfraud[hi] - cfraud[lo]).astype(np.float64)
    )
    # Both "days since" read D + L (the furthest a label is read back) when the window
    # holds no such row: further back than anything seen.
    far = (delay / _NS_PER_DAY) + longest
    since_fraud = (ts - ts[np.maximum(last_fraud, 0)]) / _NS_PER_DAY
    out[f"terminal_id_days_since_last_fraud_{key}day_window"] = tg.scatter(
        np.where(has_fraud, since_fraud, far)
    )
    # A compromise began after the latest genuine row before the run of frauds: the days
    # since that row bound the compromise's age from above (days since the run's start
    # bound it from below).
    has_genuine = known & (last_genuine >= lo)
    since_genuine = (ts - ts[np.maximum(last_genuine, 0)]) / _NS_PER_DAY
    out[f"terminal_id_days_since_genuine_before_streak_{key}day_window"] = tg.scatter(
        np.where(streak > 0, np.where(has_genuine, since_genuine, far), 0.0)
    )


def transaction_features(
    df: pd.DataFrame,
    *,
    windows: Sequence[float] = (1, 7, 30),
    delay_days: float = 7,
    ties: str = "input",
) -> pd.DataFrame:
    """Customer and terminal features for raw transactions, without look-ahead.

    Parameters
    ----------
    df
        Transactions with ``ts`` (datetime or ISO-8601 text; no zone means UTC),
        ``customer_id``, ``terminal_id``, ``amount`` and optionally ``label`` (0/1; missing
        values count as not fraud). Row order is free.
    windows
        Window lengths in days (one or more, all positive).
    delay_days
        Label delay for the terminal features, in days (positive).
    ties
        Order of one customer's same-time rows: ``"input"`` or ``"handbook"`` (see the
        module docstring).

    Returns
    -------
    pandas.DataFrame
        float32 columns :func:`feature_names` ``(windows)``, same index and row order as
        ``df``. See the module docstring for each feature's definition.

    Raises
    ------
    DataError
        When a required column is missing or a timestamp cannot be read.
    ValueError
        When ``windows`` is empty or holds a length that is not positive, ``delay_days``
        is not positive, or ``ties`` is unknown.
    """
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise DataError("missing column", column=col)
    wins = _check_windows(windows)
    if not delay_days > 0:
        # With no delay the terminal windows would read the current row's own label.
        raise ValueError(f"delay_days must be positive, got {delay_days!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, not {ties!r}")
    n = len(df)
    names = feature_names(wins)
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
    customer = pd.factorize(df["customer_id"])[0].astype(np.int64)
    tiebreak = _handbook_tiebreak(customer, t) if ties == "handbook" else None
    customers = _GroupedTimes(customer, ranks, tiebreak)
    _customer_features(out, customers, ranks, t, amount, wins)
    terminals = _GroupedTimes(pd.factorize(df["terminal_id"])[0].astype(np.int64), ranks)
    delay = np.int64(round(delay_days * _NS_PER_DAY))
    _terminal_features(out, terminals, ranks, t, amount, fraud, wins, delay)

    return pd.DataFrame({c: out[c].astype(np.float32) for c in names}, index=df.index)
