"""What a bar means within its market: tick size, its symbol-day, and bar statistics.

Everything a detector reads about a bar is relative, so it holds at any price level
(a coin quoted at 1e-7 BTC or an index at 1e5) and any market (24 h or a session):

- the **tick** of each symbol-day, derived from the prices themselves (the largest
  step of the form ``{1, 2, 2.5, 5} x 10^k`` on which nearly every open, high, low and
  close lies), so a bar's range can be counted in ticks;
- the bar's **range relative to its symbol-day** (``high - low`` over the day's median
  range) and its amplitude rank within the day;
- the day's median bar volume, so a fill's size can be read as a share of its bar.

A "day" is a UTC calendar day: the k-lines of one symbol and one UTC day are one
symbol-day. Only that day's bars enter its statistics, so a symbol-day reads the same
whether it is loaded alone (the real-time worker) or with weeks around it (batch).

:func:`bar_statistics` summarises k-lines the way the simulator's bars are checked
against real ones: tail weight, volatility clustering, volume against range, tick
structure.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import pandas as pd

__all__ = ["BarContext", "bar_context", "bar_statistics", "estimate_tick"]

_DAY_NS: Final = 86_400 * 10**9
#: Mantissas of candidate ticks, largest first within a decade.
_MANTISSAS: Final = (5.0, 2.5, 2.0, 1.0)
#: Share of prices that must lie on a candidate tick's grid.
_ON_GRID: Final = 0.995
#: Most prices read per symbol-day when estimating its tick.
_TICK_SAMPLE: Final = 256


def estimate_tick(prices: np.ndarray) -> float:
    """The largest tick ``{1, 2, 2.5, 5} x 10^k`` on which nearly all ``prices`` lie.

    Parameters
    ----------
    prices
        Positive prices of one instrument (opens, highs, lows, closes).

    Returns
    -------
    float
        The tick; ``nan`` when ``prices`` holds no positive finite value. At least 99.5 %
        of the prices must be whole multiples of it (up to float noise), so a few
        off-grid prints (an auction price, a split adjustment) do not shrink it.
    """
    p = np.asarray(prices, dtype=np.float64)
    p = p[np.isfinite(p) & (p > 0)]
    if len(p) == 0:
        return float("nan")
    if len(p) > _TICK_SAMPLE:
        p = p[:: int(np.ceil(len(p) / _TICK_SAMPLE))]
    top = int(np.floor(np.log10(p.max())))
    # Candidates from a tick the size of the largest price down to 1e-12 of it, largest
    # first; all tested at once on the sample.
    exps = np.arange(top, top - 13, -1, dtype=np.float64)
    cands = (np.asarray(_MANTISSAS)[None, :] * 10.0 ** exps[:, None]).ravel()
    # the five largest decades first: most ticks are among them, and the rest is tested
    # only when none of them is the tick (the same answer, about half the work)
    for lo, hi in ((0, 20), (20, len(cands))):
        q = p[None, :] / cands[lo:hi, None]
        on = np.abs(q - np.rint(q)) <= 1e-4 + 1e-10 * q  # float noise only
        # the share on the grid (what on.mean(axis=1) gives, from an integer count)
        ok = np.flatnonzero(np.count_nonzero(on, axis=1) / on.shape[1] >= _ON_GRID)
        if len(ok):
            return float(cands[lo + ok[0]])
    return float(10.0 ** (top - 12))


@dataclass
class BarContext:
    """Per-bar context, aligned with k-lines sorted by ``(symbol, ts)``.

    Attributes
    ----------
    symbol
        Symbol code of each bar (dense, in sorted symbol order).
    day_group
        Dense id of the bar's symbol-day.
    amp
        ``high - low``.
    rank
        Amplitude rank within the symbol-day, 1 = widest (ties share the best rank).
    n_day
        Bars in the symbol-day.
    median_amp
        The symbol-day's median range.
    rel
        ``amp / median_amp`` (1 when the median is 0 and the bar is flat; the bar's range
        in ticks over one tick when the median is 0 and the bar is not).
    tick
        The symbol-day's tick (:func:`estimate_tick`).
    ticks
        ``amp / tick``, rounded to whole ticks.
    volume
        The bar's volume (``nan`` when the k-lines carry none, all zero for the day).
    median_volume
        The symbol-day's median bar volume (``nan`` when the day has no volume).
    """

    symbol: np.ndarray
    day_group: np.ndarray
    amp: np.ndarray
    rank: np.ndarray
    n_day: np.ndarray
    median_amp: np.ndarray
    rel: np.ndarray
    tick: np.ndarray
    ticks: np.ndarray
    volume: np.ndarray
    median_volume: np.ndarray


def _group_median(values: np.ndarray, group: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Median of ``values`` per contiguous group, ``order`` sorting by (group, value)."""
    g = group[order]
    v = values[order]
    n = len(v)
    start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[start, n])
    mid = start + (counts - 1) // 2
    mid2 = start + counts // 2
    return (v[mid] + v[mid2]) / 2.0


def _group_median_values(
    values: np.ndarray, group: np.ndarray, start: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """``_group_median(np.nan_to_num(values), group, _sort_in_groups(values, ...))`` for
    groups that are runs of rows: only the values at the middle positions count, not
    which of equal values sits there, so each group's values are sorted as one row of a
    padded table (NaN last, as in every numpy sort; a zero's sign may differ, which no
    caller reads). Groups of very unequal sizes take the stable sort."""
    n = len(values)
    n_groups = len(start)
    width = int(counts.max()) if n_groups else 0
    if n_groups * width > 2 * n + 1024:
        return _group_median(np.nan_to_num(values), group, _sort_in_groups(values, group, n_groups))
    table = np.full((n_groups, width), np.nan)
    table[group, np.arange(n) - np.repeat(start, counts)] = values
    table.sort(axis=1)
    rows = np.arange(n_groups)
    low = np.nan_to_num(table[rows, (counts - 1) // 2])
    high = np.nan_to_num(table[rows, counts // 2])
    return (low + high) / 2.0


def _float_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers ordered as numpy's sort orders ``values`` (float64): ``-0.0``
    equal to ``0.0`` and every NaN last."""
    v = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 + 0.0 is 0.0
    bits = v.view(np.uint64)
    neg = (bits >> np.uint64(63)).astype(bool)
    keys = np.where(neg, ~bits, bits | np.uint64(1 << 63))
    keys[np.isnan(v)] = np.iinfo(np.uint64).max
    return keys


def _int_order(key: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` for integer keys in ``[0, bound)``: 16-bit
    radix passes (linear each) from the lowest digit up while four or fewer do."""
    if bound > 2**64 or (len(key) and int(key.min()) < 0):
        return np.argsort(key, kind="stable")
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while bound > 1 << shift:
        digit = ((key >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit[order], kind="stable")]
        shift += 16
    return order


def _sort_in_groups(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """``np.lexsort((values, group))`` (float ``values``, ``group`` in ``[0, n_groups)``):
    stable 16-bit radix passes (each linear) over one int64 key of (group, value) when
    the values are whole numbers, else over the values' ordered bits, lowest digit first,
    skipping digits that are the same in every row, then over the group."""
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(group, dtype=np.int64)
    if len(v) and bool(np.isfinite(v).all()):
        lo, hi = float(v.min()), float(v.max())
        if max(-lo, hi) < 2.0**52 and bool((v == np.rint(v)).all()):
            # whole numbers (ranges in ticks): (group, value) as one exact int64 key
            span = int(hi - lo) + 1
            if n_groups * span < 2**62:
                return _int_order(g * span + (v - lo).astype(np.int64), n_groups * span)
    keys = _float_keys(v)
    order = np.arange(len(keys))
    for shift in (0, 16, 32, 48):
        digit = ((keys >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.uint16)
        if len(digit) and digit.min() == digit.max():
            continue  # a pass over one digit value keeps the order
        order = order[np.argsort(digit[order], kind="stable")]
    if n_groups > 1:  # then by group, keeping the value order within each
        order = order[_int_order(g[order], n_groups)]
    return order


#: Sampled prices read per symbol-day in the first, cheap test of every candidate tick.
_SCREEN: Final = 8


def _ticks_of_runs(prices: np.ndarray, start: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`estimate_tick` of every run of rows at once.

    ``prices`` is ``(4, n)``: opens, highs, lows and closes of rows sorted by run; run
    ``i`` is rows ``start[i] : start[i] + counts[i]``, and its prices are
    ``np.concatenate(prices[:, a:b])``. The same sample of each run's prices, the same
    candidates and the same float tests as :func:`estimate_tick`, so the same ticks;
    candidates that the first few sampled prices already rule out are never tested on
    the whole sample.
    """
    n_runs = len(start)
    out = np.full(n_runs, np.nan)
    if n_runs == 0:
        return out
    run_of_row = np.repeat(np.arange(n_runs), counts)
    valid = np.isfinite(prices) & (prices > 0)
    clean = np.bincount(run_of_row, weights=valid.all(axis=0), minlength=n_runs) == counts
    # a run with any missing or non-positive price: the function itself (rare)
    for i in np.flatnonzero(~clean).tolist():
        a, b = int(start[i]), int(start[i] + counts[i])
        out[i] = estimate_tick(np.concatenate([prices[0, a:b], prices[1, a:b],
                                               prices[2, a:b], prices[3, a:b]]))  # fmt: skip
    runs = np.flatnonzero(clean & (counts > 0))
    if len(runs) == 0:
        return out
    # the sample: every s-th of a run's 4c prices, as ``p[:: s]`` takes them
    c = counts[runs].astype(np.int64)
    m = 4 * c
    step = np.where(m > _TICK_SAMPLE, np.ceil(m / _TICK_SAMPLE), 1).astype(np.int64)
    k = (m + step - 1) // step
    first = np.cumsum(k) - k
    j = np.arange(int(k.sum())) - np.repeat(first, k)
    at = j * np.repeat(step, k)
    c_rep = np.repeat(c, k)
    p = prices[at // c_rep, np.repeat(start[runs], k) + at % c_rep]
    which = np.repeat(np.arange(len(runs)), k)  # each sampled price's run (in ``runs``)
    top = np.floor(np.log10(np.maximum.reduceat(p, first))).astype(np.int64)
    # candidates as estimate_tick builds them, once per distinct top decade
    tops, top_code = np.unique(top, return_inverse=True)
    table = np.empty((len(tops), 13 * len(_MANTISSAS)))
    for i, t in enumerate(tops.tolist()):
        exps = np.arange(t, t - 13, -1, dtype=np.float64)
        table[i] = (np.asarray(_MANTISSAS)[None, :] * 10.0 ** exps[:, None]).ravel()
    cands = table[top_code.ravel()]
    n_c = cands.shape[1]
    # most misses a run may have: on the grid means count / k >= _ON_GRID
    allowed = np.zeros(len(runs), dtype=np.int64)
    for misses in (1, 2, 3):
        allowed += (k - misses) / k >= _ON_GRID
    # screening: a candidate missing more of the first sampled prices than allowed fails
    s_n = np.minimum(k, _SCREEN)
    first_s = np.flatnonzero(j < _SCREEN)
    grid = np.ones((len(runs), _SCREEN))
    grid[which[first_s], j[first_s]] = p[first_s]
    q = grid[:, None, :] / cands[:, :, None]
    off = ~(np.abs(q - np.rint(q)) <= 1e-4 + 1e-10 * q)
    off &= np.arange(_SCREEN)[None, None, :] < s_n[:, None, None]
    alive = np.count_nonzero(off, axis=2) <= allowed[:, None]
    # the first candidate alive, tested on the whole sample; the next one if it fails
    pick = np.where(alive.any(axis=1), alive.argmax(axis=1), n_c)
    found = np.full(len(runs), np.nan)
    todo = np.flatnonzero(pick < n_c)
    while len(todo):
        sel = np.zeros(len(runs), dtype=bool)
        sel[todo] = True
        rows = np.flatnonzero(sel[which])
        w = which[rows]
        cand = cands[todo, pick[todo]]
        cand_of = np.zeros(len(runs))
        cand_of[todo] = cand
        q = p[rows] / cand_of[w]
        on = np.abs(q - np.rint(q)) <= 1e-4 + 1e-10 * q
        ok = np.bincount(w, weights=on, minlength=len(runs))[todo].astype(np.int64) / k[todo]
        hit = ok >= _ON_GRID
        found[todo[hit]] = cand[hit]
        miss = todo[~hit]
        alive[miss, pick[miss]] = False
        nxt = np.where(alive[miss].any(axis=1), alive[miss].argmax(axis=1), n_c)
        pick[miss] = nxt
        todo = miss[nxt < n_c]
    # no candidate: the smallest decade's unit, as estimate_tick returns it
    for i in np.flatnonzero(np.isnan(found)).tolist():
        found[i] = float(10.0 ** (int(top[i]) - 12))
    out[runs] = found
    return out


def _day_statistics(
    prices: np.ndarray, vol: np.ndarray, start: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`bar_context` reads per symbol-day, for days that are runs of rows
    (``start``, ``counts``): each day's tick, median range and median volume (NaN when
    the day has none), and each row's amplitude rank within its day. ``prices`` is
    ``(4, n)``: opens, highs, lows, closes; ``vol`` the volumes (NaN when unknown). A
    day's figures depend on its own rows only."""
    n = prices.shape[1]
    n_days = len(start)
    group = np.repeat(np.arange(n_days), counts)
    amp = prices[1] - prices[2]
    ticks_day = _ticks_of_runs(prices, start, counts)
    tick = ticks_day[group]
    with np.errstate(divide="ignore", invalid="ignore"):
        n_ticks = np.rint(np.where(tick > 0, amp / tick, 0.0))
    # Rank widest first within each symbol-day; equal ranges share the best rank. Ranges
    # are compared in whole ticks, so float noise cannot split a tie.
    key = np.where(np.isfinite(tick) & (tick > 0), n_ticks, amp)
    order = _sort_in_groups(-key, group, n_days)
    g_sorted = group[order]
    a_sorted = key[order]
    new_value = np.r_[True, (g_sorted[1:] != g_sorted[:-1]) | (a_sorted[1:] != a_sorted[:-1])]
    first_of_value = np.maximum.accumulate(np.where(new_value, np.arange(n), 0))
    rank = np.empty(n)
    rank[order] = first_of_value - np.repeat(start, counts) + 1
    # The median of a group is the same whichever way its values are sorted.
    median_amp = _group_median(amp, group, order)
    med_vol = _group_median_values(vol, group, start, counts)
    has_vol = np.bincount(group, weights=np.nan_to_num(vol) > 0, minlength=n_days) > 0
    med_vol = np.where(has_vol & (med_vol > 0), med_vol, np.nan)
    return ticks_day, median_amp, med_vol, rank


#: Bars whose symbol-day figures are kept between calls, in all (about 8 bytes each plus
#: about 370 per day): a closed day's bars never change, and the real-time worker, the
#: chunks of a batch and the renderer read the same days again and again.
_DAYS_KEPT: Final = 1 << 20
#: What each kept day counts for beside its bars (its key, tuple, floats and array
#: header, in bars of 8 bytes), so that many short days cannot hold far more memory
#: than the bound's bars: 2^20 one-bar days would otherwise keep about 380 MB.
_DAY_COST: Final = 48
#: sha256 of a day's opens, highs, lows, closes and volumes (float64, in row order) ->
#: (tick, median range, median volume, ranks): the key is the day's content, so a day
#: whose bars changed (today's, a corrected one) is simply another day.
_days: dict[bytes, tuple[float, float, float, np.ndarray]] = {}
_days_rows = 0
_days_lock = threading.Lock()


def clear_day_cache() -> None:
    """Forget the symbol-day figures kept between calls of :func:`bar_context`."""
    global _days_rows
    with _days_lock:
        _days.clear()
        _days_rows = 0


def _cached_day_statistics(
    prices: np.ndarray, vol: np.ndarray, start: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_day_statistics`, reading days seen before (the same rows, bit for bit)
    from the cache and working out only the others."""
    global _days_rows
    columns = [np.ascontiguousarray(c).data.cast("B") for c in (*prices, vol)]
    keys = []
    for a, c in zip(start.tolist(), counts.tolist(), strict=True):
        digest = hashlib.sha256()
        for column in columns:  # the day's opens, highs, lows, closes and volumes
            digest.update(column[a * 8 : (a + c) * 8])
        keys.append(digest.digest())
    found = [_days.get(key) for key in keys]
    miss = [i for i, day in enumerate(found) if day is None]
    if len(miss) < len(keys):
        # Least recently used leaves first: a day read again moves to the end, so the
        # closed days a worker reads all the time outlive the versions of today's bars
        # that each new bar makes.
        with _days_lock:
            for key, day in zip(keys, found, strict=True):
                if day is not None and key in _days:
                    _days[key] = _days.pop(key)
    if miss:
        if len(miss) == len(keys):
            sub_prices, sub_vol, sub_start, sub_counts = prices, vol, start, counts
        else:
            m = np.asarray(miss)
            sub_counts = counts[m]
            sub_start = np.cumsum(sub_counts) - sub_counts
            take = np.repeat(start[m] - sub_start, sub_counts) + np.arange(int(sub_counts.sum()))
            sub_prices, sub_vol = prices[:, take], vol[take]
        ticks, medians, volumes, ranks = _day_statistics(sub_prices, sub_vol, sub_start, sub_counts)
        new = []
        for j, (a, c) in enumerate(zip(sub_start.tolist(), sub_counts.tolist(), strict=True)):
            day = (float(ticks[j]), float(medians[j]), float(volumes[j]), ranks[a : a + c].copy())
            found[miss[j]] = day
            new.append((keys[miss[j]], day))
        with _days_lock:
            for key, day in new:
                if key not in _days:
                    _days[key] = day
                    _days_rows += len(day[3]) + _DAY_COST
            while _days_rows > _DAYS_KEPT and _days:  # the least recently used first
                _days_rows -= len(_days.pop(next(iter(_days)))[3]) + _DAY_COST
    days = cast("list[tuple[float, float, float, np.ndarray]]", found)
    return (
        np.array([d[0] for d in days]),
        np.array([d[1] for d in days]),
        np.array([d[2] for d in days]),
        np.concatenate([d[3] for d in days]),
    )


#: Longest string column :func:`_factorize` codes in Python (in order of first
#: appearance; sorted) rather than with pandas, whose factorize of pyarrow strings costs
#: about 30 us a call (90 us sorted) however short the column.
_SHORT_UNSORTED: Final = 128
_SHORT_SORTED: Final = 512


#: Shortest string column :func:`_factorize` codes with pyarrow's dictionary encoding
#: rather than a dict of its Python strings (which first makes every value a str).
_ARROW_CODES: Final = 48


def _arrow_strings(column: Any) -> Any:
    """The pyarrow array (or chunked array) behind a pyarrow string column (a Series or
    its array) without missing values; None for anything else."""
    arrow = getattr(getattr(column, "array", column), "_pa_array", None)
    if arrow is None or arrow.null_count:
        return None
    import pyarrow as pa

    if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        return None
    return arrow


def _arrow_factorize(column: Any, *, sort: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """What :func:`_factorize`'s dict of Python strings gives (int64 codes in order of
    first appearance or of the sorted values, the distinct values as an object array),
    from pyarrow's dictionary encoding of a pyarrow string column without missing
    values; None for anything else."""
    arrow = _arrow_strings(column)
    if arrow is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(arrow)
    if isinstance(encoded, pa.ChunkedArray):
        if encoded.num_chunks != 1:
            # each chunk has a dictionary of its own: one array, one dictionary
            encoded = pc.dictionary_encode(arrow.combine_chunks())
        else:
            encoded = encoded.chunk(0)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names = encoded.dictionary.to_pylist()  # first appearance, as the dict's keys
    if sort:
        # Python's str order is code-point order, as pandas and the dict path sort
        order = sorted(range(len(names)), key=names.__getitem__)
        rank = np.empty(len(names), dtype=np.int64)
        rank[order] = np.arange(len(names), dtype=np.int64)
        codes = rank[codes]
        names = [names[i] for i in order]
    return codes, np.array(names, dtype=object).reshape(-1)


def _factorize(column: pd.Series, *, sort: bool = False) -> tuple[np.ndarray, Any]:
    """``pd.factorize(column, sort=sort)``: int64 codes and the distinct values (in
    order of first appearance, or sorted).

    A short column of strings without missing values is coded by a dict of its Python
    strings (the distinct values then an object array), a few microseconds for the
    dozens of values of a small worker batch. Anything else takes pandas' path.
    """
    n = len(column)
    values: list[Any] = []
    if (
        n <= (_SHORT_SORTED if sort else _SHORT_UNSORTED)
        and column.dtype != object
        and pd.api.types.is_string_dtype(column.dtype)
    ):
        if n >= _ARROW_CODES:
            coded = _arrow_factorize(column, sort=sort)
            if coded is not None:
                return coded
        values = column.tolist()
        # a missing value (None or NaN in the list) takes pandas' path (Series.hasnans
        # alone costs half of pandas' factorize)
        if not all(type(v) is str for v in values):
            values = []
    if len(values) == n > 0:
        if sort:
            # Python's str order is code-point order, as pandas sorts strings
            uniques = sorted(set(values))
            at = {v: i for i, v in enumerate(uniques)}
        else:
            at = {}
            for v in values:
                at.setdefault(v, len(at))
            uniques = list(at)
        codes = np.fromiter((at[v] for v in values), dtype=np.int64, count=n)
        return codes, np.array(uniques, dtype=object).reshape(-1)
    codes, found = pd.factorize(column, sort=sort)
    return np.asarray(codes, dtype=np.int64), found


def bar_context(klines: pd.DataFrame, symbol_codes: np.ndarray | None = None) -> BarContext:
    """Per-bar context of k-lines **sorted by** ``(symbol, ts)``.

    Parameters
    ----------
    klines
        The k-lines contract, sorted by symbol then time.
    symbol_codes
        ``pd.factorize(klines["symbol"], sort=True)[0]`` when the caller has it.

    Returns
    -------
    BarContext
        Arrays aligned with the rows of ``klines``. A symbol-day's figures (tick, ranks,
        medians) are kept between calls, keyed by its bars' content, so a day read again
        costs a hash of its bars.
    """
    n = len(klines)
    if n == 0:
        z = np.zeros(0)
        zi = np.zeros(0, dtype=np.int64)
        return BarContext(zi, zi, z, z, z, z, z, z, z, z, z)
    from fraudlens.market._columns import _floats, _ns, _text

    # the columns' arrays (read-only), not a Series each: pandas' fixed cost per column
    high = _floats(klines, "high")
    low = _floats(klines, "low")
    amp = high - low
    if symbol_codes is None:
        symbols = _text(klines, "symbol")
        # only the codes are used: pyarrow's for any length (pandas' sorted factorize of
        # the bars' symbols costs several times more)
        coded = _arrow_factorize(symbols, sort=True)
        symbol_codes = (coded if coded is not None else _factorize(symbols, sort=True))[0]
    sym = np.asarray(symbol_codes, dtype=np.int64)
    day = _ns(klines, "ts").astype(np.int64) // _DAY_NS
    new = np.r_[True, (sym[1:] != sym[:-1]) | (day[1:] != day[:-1])]
    group = np.cumsum(new) - 1
    start = np.flatnonzero(new)
    counts = np.diff(np.r_[start, n])
    opens = _floats(klines, "open")
    closes = _floats(klines, "close")
    vol = _floats(klines, "volume") if "volume" in klines.columns else np.full(n, np.nan)
    ticks_day, median_day, vol_day, rank = _cached_day_statistics(
        np.stack([opens, high, low, closes]), vol, start, counts
    )
    tick = ticks_day[group]
    with np.errstate(divide="ignore", invalid="ignore"):
        n_ticks = np.rint(np.where(tick > 0, amp / tick, 0.0))
    median_amp = median_day[group]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(
            median_amp > 0, amp / median_amp, np.where(amp > 0, np.maximum(n_ticks, 1.0), 1.0)
        )
    med_vol = vol_day[group]
    vol = np.where(np.isfinite(med_vol), vol, np.nan)
    return BarContext(
        symbol=sym,
        day_group=group,
        amp=amp,
        rank=rank,
        n_day=counts.astype(np.float64)[group],
        median_amp=median_amp,
        rel=rel,
        tick=tick,
        ticks=n_ticks,
        volume=vol,
        median_volume=med_vol,
    )


def _acf(x: np.ndarray, lag: int) -> float:
    if len(x) <= lag + 2:
        return float("nan")
    a, b = x[:-lag], x[lag:]
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def bar_statistics(klines: pd.DataFrame) -> pd.DataFrame:
    """Stylised facts of each symbol's bars, one row per symbol.

    Columns: ``bars``, ``days``, ``bars_per_day`` (median), ``price`` (median close),
    ``tick``, ``range_ticks`` (median range in ticks), ``zero_range`` (share of bars with
    ``high == low``), ``few_ticks`` (share of bars 1-3 ticks wide), ``kurtosis`` (excess
    kurtosis of 5-minute log returns within a day), ``acf_abs_1`` / ``acf_abs_12`` (the
    autocorrelation of absolute returns at 1 and 12 bars: volatility clustering),
    ``vol_range_corr`` (correlation of log volume with log range over bars with both),
    ``gap`` (median absolute move from a day's last close to the next day's first open,
    in units of the median bar range), ``missing`` (share of 5-minute slots between a
    day's first and last bar with no bar).
    """
    k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    ctx = bar_context(k)
    rows = []
    ts = k["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    day = ts // _DAY_NS
    close = k["close"].to_numpy(dtype=np.float64)
    opn = k["open"].to_numpy(dtype=np.float64)
    vol = k["volume"].to_numpy(dtype=np.float64)
    bar_ns = 5 * 60 * 10**9
    for code, name in enumerate(sorted(k["symbol"].astype(str).unique())):
        m = np.flatnonzero(ctx.symbol == code)
        d = day[m]
        same_day = d[1:] == d[:-1]
        r = np.diff(np.log(close[m]))[same_day]
        r_abs = np.abs(r)
        amp = ctx.amp[m]
        new_day = np.flatnonzero(~same_day)
        gap = np.abs(np.log(opn[m][new_day + 1]) - np.log(close[m][new_day]))
        rel_gap = gap / np.maximum(np.median(amp / close[m]), 1e-12)
        both = (vol[m] > 0) & (amp > 0)
        vr = (
            float(np.corrcoef(np.log(vol[m][both]), np.log(amp[both]))[0, 1])
            if both.sum() > 10
            else float("nan")
        )
        day_first = pd.Series(ts[m]).groupby(d).agg(["min", "max", "size"])
        slots = ((day_first["max"] - day_first["min"]) // bar_ns + 1).sum()
        rows.append(
            {
                "symbol": name,
                "bars": len(m),
                "days": len(np.unique(d)),
                "bars_per_day": float(day_first["size"].median()),
                "price": float(np.median(close[m])),
                "tick": float(np.median(ctx.tick[m])),
                "range_ticks": float(np.median(ctx.ticks[m])),
                "zero_range": float(np.mean(amp == 0)),
                "few_ticks": float(np.mean((ctx.ticks[m] >= 1) & (ctx.ticks[m] <= 3))),
                "kurtosis": float(pd.Series(r).kurt()) if len(r) > 10 else float("nan"),
                "acf_abs_1": _acf(r_abs, 1),
                "acf_abs_12": _acf(r_abs, 12),
                "vol_range_corr": vr,
                "gap": float(np.median(rel_gap)) if len(rel_gap) else float("nan"),
                "missing": float(1.0 - len(m) / max(int(slots), 1)),
            }
        )
    return pd.DataFrame(rows).set_index("symbol")
