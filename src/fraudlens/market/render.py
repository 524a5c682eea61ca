"""Draw each account's trades over the bars of what it traded, as RGB images.

A vectorised numpy rasteriser renders whole batches: every step works on flat arrays
of trades, (account, symbol) pairs and bars at once, with no Python loop per account
(only a loop over symbols and over chunks of a few thousand accounts). It needs no
plotting library.

Styles (``STYLES`` maps each name to its ``(height, width)``):

``"fraudlens"`` (this module's default, 64 x 288), the image CNN's encoding: two panels
on a black background, sharing one time axis. (A new CNN is trained on
``"fraudlens-gap"``, below: this look plus one mark.)

- x, both panels: the bar grid, one slot per 5-minute bar, from 3 bars before the
  account's first trade to 3 bars after its last; at least 48 bars (4 h) and at most
  288 (24 h: the margins go first, then the oldest bars). Each bar gets
  ``288 / n_bars`` columns (at least one), and its line is one column narrower than
  its slot when the slot is 2 px or wider, leaving a gap between bars.
- Price panel (rows 0-31): y is price, normalised per (account, symbol) to that
  symbol's drawn bars (min low at the bottom row, max high at the top, widened to
  include the fills), so several symbols share the panel, each in its own scale.
  Blue (80): every bar as a vertical line from its low to its high.
- Range panel (rows 32-63): y is the position inside the fill's own bar, its low at the
  bottom row and its high at the top, whatever the bar's size, so "at the bar's
  extreme" reads the same in a quiet bar and in a wild one. Blue: every bar as a
  full-height column whose intensity (24-255) says how volatile the bar is for its
  market that day: its range over its symbol-day's median range on a log scale (half
  the median or less: 24; four times or more: 255), dimmed for bars under four ticks
  wide, where a fill at the edge is only the bid or the ask. The same picture means the
  same thing for a coin quoted at 1e-7 BTC and an index at 1e5.
- Fills, both panels: red for buys, green for sells; a mark 3 rows tall (clipped at the
  panel's edges) over the bar's line columns (1-3 px wide), so fills of neighbouring
  bars never share a column. Full intensity (255) marks a leg of an equal-size round
  trip (a buy and a sell of the account of the same total size in the same or the next
  bar); other fills are drawn at 150. A matched round trip at a bar's two extremes
  shows as a red and a green mark in one column, at the range panel's top and bottom
  rows; a buy and a sell in one bar at one price add up to yellow.

``"fraudlens-gap"`` (64 x 288, the CNN's default): ``"fraudlens"`` plus one mark for a
round trip whose two legs sit in neighbouring bars. The range panel draws each bar
against its own range, so a buy at one ordinary bar's extreme and the sell at the next
bar's opposite extreme look like two quiet bars there, and the gap between them shows
only in the price panel, a few rows tall. In this style the two bars of an equal-size
round trip across neighbouring bars (the legs the full-intensity marks show) are drawn
in the range panel at least as bright as one bar as wide as the legs' price gap (the gap
between their size-weighted prices, in day-median ranges and ticks as for a bar). A
model records the style it was trained on in its metadata and renders with it when
scoring.

``"reference"`` (250 x 150), the reference system's look, matching its matplotlib
recipe (2.5 x 1.5 in at dpi 100) pixel for pixel, save for anti-aliasing and JPEG noise:

- white background, no axes; the plot box is matplotlib's default subplot position
  (left 0.125, bottom 0.11, width 0.775, height 0.77 of the figure) and clips the marks;
- bars: those whose start lies from 23 h before to 1 h after the account's latest
  trade, as the reference's real-time path selects them; they are invisible and only
  set the data limits, as in the reference: the bar boxes (0.001 day wide) plus
  matplotlib's default 5 % margins, except at the bottom, which sits on the lowest low
  (matplotlib's sticky edge of bar bottoms);
- x: the fill's bar start time; y: price, normalised per symbol to its bars' range when
  the account traded several symbols (identical to the raw price scale for one);
- buys as red (255, 0, 0) and then sells as green (0, 128, 0) discs of matplotlib's
  ``s=80`` marker with its 1.5 pt edge, centred on the pixel matplotlib snaps them to;
  without anti-aliasing: a disc is the 145 pixels (13 across) that matplotlib's
  anti-aliased disc covers by half or more.

Accounts are rendered with the trades given (apply :func:`fraudlens.market.window`
first for the usual 24 h scoring window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlens._echo import cut
from fraudlens._io import write_binary
from fraudlens.errors import ConfigError, DataError
from fraudlens.market._bars import BarContext, bar_context
from fraudlens.market.data import MarketData, _bar_positions

__all__ = [
    "CNN_STYLE",
    "STYLES",
    "fill_legs",
    "panels",
    "render_account",
    "render_batch",
    "render_chunks",
    "save_png",
]

#: Style name -> image ``(height, width)`` in pixels.
STYLES: dict[str, tuple[int, int]] = {
    "fraudlens": (64, 288),
    "fraudlens-gap": (64, 288),
    "reference": (150, 250),
}

#: The style a new CNN is trained on (and the analysts' picture draws when the CNN that
#: scored an account is not known): the adjacent-bar gap mark caught more of the
#: real-bar check's takeovers whose legs sit in neighbouring ordinary bars (README,
#: market on real bars). A saved model keeps the style it was trained on.
CNN_STYLE = "fraudlens-gap"

#: Accounts rendered per chunk: bounds the temporary arrays, sets the progress step.
_CHUNK = 512

_NS = 1_000_000_000


@dataclass(frozen=True)
class _FraudlensLook:
    """Layout constants of the ``"fraudlens"`` style."""

    margin: int = 3  # bars drawn before the first and after the last trade
    min_bars: int = 48  # 4 h of 5-minute bars
    max_bars: int = 288  # 24 h of 5-minute bars: one column per bar at width 288
    price_rows: int = 32  # the price panel; the range panel takes the rows below
    bar_value: int = 80
    range_floor: int = 24  # range panel intensity of a flat bar (the largest gets 255)
    fill_value: int = 255  # a leg of an equal-size round trip
    unmatched_value: int = 150  # any other fill


_FL = _FraudlensLook()

# The reference's matplotlib geometry (figure 250 x 150 px, default subplot box).
_REF_LEFT, _REF_BOTTOM, _REF_WIDTH, _REF_HEIGHT = 0.125, 0.11, 0.775, 0.77
_REF_BAR_HALF_S = 0.0005 * 86400.0  # bar width 0.001 day, centred on the bar start
_REF_MARGIN = 0.05
_REF_RED = (255, 0, 0)
_REF_GREEN = (0, 128, 0)


def _ref_disc() -> tuple[np.ndarray, np.ndarray]:
    # Pixels that the s=80 disc (8.94 pt) with its 1.5 pt edge covers by half or more at
    # dpi 100, once Agg has snapped its centre to a pixel: measured on matplotlib's output.
    d = np.arange(-7, 8)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    keep = dy**2 + dx**2 <= 47
    return dy[keep].astype(np.int64), dx[keep].astype(np.int64)


# --------------------------------------------------------------------------------------
# Preparation shared by the styles
# --------------------------------------------------------------------------------------
#: The two-panel looks (black background, price and range panels); "fraudlens-gap" adds
#: the adjacent-bar gap to the range panel.
_TWO_PANEL = ("fraudlens", "fraudlens-gap")


def _group_reduce(
    ufunc: np.ufunc, values: np.ndarray, group: np.ndarray, n: int, fill: float
) -> np.ndarray:
    """Reduce ``values`` per group id (``group`` sorted ascending) into ``n`` slots.

    ``ufunc.reduceat`` over sorted runs: far faster than ``ufunc.at``.
    """
    dtype = np.float64 if isinstance(fill, float) else values.dtype
    out = np.full(n, fill, dtype=dtype)
    if len(values):
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        out[group[starts]] = ufunc.reduceat(values, starts)
    return out


@dataclass
class _Prepared:
    """Trades of the accounts to draw, flat arrays sorted by account, then symbol."""

    acc: np.ndarray  # account position in the (sorted, unique) batch
    sym: np.ndarray  # symbol code
    ts: np.ndarray  # trade time, ns
    x_ts: np.ndarray  # time its mark is drawn at: the bar start, else the trade time, ns
    t_bar: np.ndarray  # row of the trade's bar in the sorted k-lines, -1 if none
    price: np.ndarray
    buy: np.ndarray  # bool
    bounds: np.ndarray  # trades of account i are [bounds[i], bounds[i + 1])
    k_ts: np.ndarray
    k_grid: np.ndarray  # bar start in whole bar lengths since the epoch
    k_low: np.ndarray  # with one extra trailing element (a sentinel for reduceat)
    k_high: np.ndarray  # idem
    k_amp: np.ndarray  # high - low, idem
    k_level: np.ndarray  # range-panel intensity of each bar (uint8), idem
    # style "fraudlens-gap": per (account, bar row) a range-panel intensity at least, for
    # the bars of equal-size round trips across neighbouring bars; sorted by account
    gap_acc: np.ndarray
    gap_row: np.ndarray
    gap_level: np.ndarray
    bright: np.ndarray  # per trade: mark value (255: a leg of an equal-size round trip)
    k_start: np.ndarray  # bars of symbol s are [k_start[s], k_start[s + 1])
    bar_ns: int
    # range panel: a fill within this share of its bar's range of the high or low is
    # drawn at it (0: where it is); the CNN's training augmentation only
    extreme_snap: float = 0.0


def _bar_levels(ctx: BarContext) -> np.ndarray:
    """Range-panel intensity per bar: its range over the day's median (log scale: half
    the median or less is dark, four times or more is full), dimmed for bars under four
    ticks, where a fill at the edge is only the bid or the ask."""
    return _levels(ctx.rel, ctx.ticks)


def _levels(rel: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Range-panel intensity of a range ``rel`` day-median ranges and ``ticks`` ticks wide."""
    with np.errstate(divide="ignore"):
        r = np.clip((np.log2(np.maximum(rel, 1e-9)) + 1.0) / 3.0, 0.0, 1.0)
    t = np.clip(ticks / 4.0, 0.25, 1.0)
    level = _FL.range_floor + (255 - _FL.range_floor) * r * t
    return np.rint(level).astype(np.uint8)


@dataclass
class _Gaps:
    """Equal-size round trips across neighbouring bars: per leg, its account, its bar's
    row, and the price gap to its partner leg (each leg of the pair appears once)."""

    acc: np.ndarray
    row: np.ndarray
    gap: np.ndarray


def _no_gaps() -> _Gaps:
    return _Gaps(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def _equal_size_legs(
    acc: np.ndarray,
    bar_row: np.ndarray,
    buy: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    k_sym: np.ndarray,
    k_ts: np.ndarray,
    k_low: np.ndarray,
    k_high: np.ndarray,
    bar: pd.Timedelta,
    gaps: _Gaps | None = None,
    legs: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Per fill: whether its leg has a partner (bool).

    A leg is an account's fills on one side in one third of a bar's range (an order cut
    into pieces is one leg), as in :mod:`fraudlens.market.features`. Its partner is an
    opposite leg of the account with the same total size in the same bar or a
    neighbouring one: together they are an equal-size round trip. A leg whose size-
    weighted position in its bar is not a number (a ``nan`` price or quantity) pairs
    with nothing, and no leg pairs with the (account, bar, size) it sits in.

    With ``gaps`` (empty :class:`_Gaps`), its arrays are set to the legs partnered in a
    neighbouring bar: account, bar row and the absolute gap between the two legs'
    size-weighted prices (the widest, for a leg with partners on both sides).

    With ``legs`` (an empty list), each fill's leg number is appended to it (0, 1, ...;
    -1 for a fill without a bar).
    """
    n = len(acc)
    has = bar_row >= 0
    if not has.any():
        if legs is not None:
            legs.append(np.full(n, -1, dtype=np.int64))
        return np.zeros(n, dtype=bool)
    row = np.where(has, bar_row, 0)
    amp = k_high[row] - k_low[row]
    pos = np.divide(price - k_low[row], amp, out=np.full(n, 0.5), where=amp > 0)
    pos = np.clip(pos, 0.0, 1.0)
    zone = np.where(pos <= 1 / 3, 0, np.where(pos >= 2 / 3, 2, 1))
    n_rows = len(k_ts) + 1
    leg_key = ((acc.astype(np.int64) * n_rows + row) * 2 + buy) * 3 + zone
    leg_key = np.where(has, leg_key, -1)
    codes, uniq = pd.factorize(leg_key)
    if legs is not None:
        legs.append(np.where(has, codes, -1).astype(np.int64))
    total = np.bincount(codes, weights=qty)
    leg_pos = np.bincount(codes, weights=qty * pos) / np.maximum(total, 1e-300)
    if gaps is not None:
        leg_price = np.bincount(codes, weights=qty * price) / np.maximum(total, 1e-300)
        leg_gap = np.full(len(uniq), -1.0)
    u_row = (uniq // 6) % n_rows
    u_acc = uniq // 6 // n_rows
    u_buy = (uniq // 3) % 2 == 1
    size_code = pd.factorize(np.round(total, 9))[0].astype(np.int64)
    n_size = int(size_code.max()) + 1 if len(size_code) else 1
    real = uniq >= 0  # legs of fills with a bar
    bad = np.isnan(leg_pos)
    # Key (account, bar row, size): a neighbouring bar's key is this one +- n_size.
    key = (u_acc * n_rows + u_row) * n_size + size_code
    here = np.minimum(u_row, n_rows - 2)
    matched = np.zeros(len(uniq), dtype=bool)
    for side in (False, True):
        mine = np.flatnonzero(real & ~bad & (u_buy == side))
        # The opposite side's keys, less those shared with a leg whose position is nan.
        if gaps is None:
            keys = np.sort(key[real & (u_buy != side)])
        else:
            # the opposite legs sorted by key, to find a neighbouring partner's price
            opp = np.flatnonzero(real & (u_buy != side))
            opp = opp[np.argsort(key[opp], kind="stable")]
            keys = opp_keys = key[opp]
        if bad.any():
            keys = np.setdiff1d(keys, key[real & bad & (u_buy != side)])
        if not len(mine) or not len(keys):
            continue
        mine = mine[np.argsort(key[mine], kind="stable")]  # sorted probes search faster
        k_mine, r_mine, h_mine = key[mine], u_row[mine], here[mine]
        found = np.zeros(len(mine), dtype=bool)
        for step in (-1, 0, 1):
            ok = (r_mine + step >= 0) & (r_mine + step < n_rows - 1)
            if step:
                nb = np.clip(r_mine + step, 0, n_rows - 2)
                ok &= (k_sym[nb] == k_sym[h_mine]) & (
                    np.abs(k_ts[nb] - k_ts[h_mine]) <= 2.5 * bar.value
                )
            probe = k_mine + step * n_size
            j = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
            hit = ok & (keys[j] == probe)
            found |= hit
            if gaps is not None and step and hit.any():
                partner = opp[np.searchsorted(opp_keys, probe[hit])]
                gap = np.abs(leg_price[mine[hit]] - leg_price[partner])
                leg_gap[mine[hit]] = np.maximum(leg_gap[mine[hit]], gap)
        matched[mine] = found
    if gaps is not None:
        sel = np.flatnonzero(leg_gap >= 0)
        gaps.acc, gaps.row, gaps.gap = u_acc[sel], u_row[sel], leg_gap[sel]
    return has & matched[codes]


def _positions(values: pd.Series, ids: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in ``ids`` (unique strings), -1 where absent.

    ``pd.Index(ids).get_indexer(values.astype(str))``; on pyarrow strings without
    missing values, pyarrow's ``index_in`` gives the same answer about ten times faster.
    """
    arrow = getattr(values.array, "_pa_array", None)
    if arrow is not None and not arrow.null_count:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type):
            pos = pc.index_in(arrow, value_set=pa.array(ids, type=arrow.type))
            return np.asarray(pos.fill_null(-1).to_numpy(), dtype=np.intp)
    return pd.Index(ids).get_indexer(values.astype(str))


@dataclass
class _Bars:
    """The k-lines in :func:`~fraudlens.market.data.attach_bars`' order (by symbol, then
    time) as arrays, and each trade's bar row in them (-1: none)."""

    k_sorted: pd.DataFrame
    k_sym: np.ndarray
    k_ts: np.ndarray
    k_low: np.ndarray
    k_high: np.ndarray
    t_sym: np.ndarray
    bar_row: np.ndarray
    n_symbols: int


def _bars(data: MarketData, trades: pd.DataFrame) -> _Bars:
    k = data.klines
    codes, uniques = pd.factorize(
        pd.concat([k["symbol"], trades["symbol"]], ignore_index=True).astype(str), sort=True
    )
    k_sym = codes[: len(k)].astype(np.int64)
    t_sym = codes[len(k) :].astype(np.int64)
    k_ts = k["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    k_low = k["low"].to_numpy(dtype=np.float64)
    k_high = k["high"].to_numpy(dtype=np.float64)
    # Bars in attach_bars' order (stable by symbol, then ts), so that its bar_row indexes
    # these arrays; k-lines usually come sorted already.
    k_sorted = k
    if len(k) > 1 and not (
        (np.diff(k_sym) >= 0).all() and (np.diff(k_ts)[k_sym[1:] == k_sym[:-1]] >= 0).all()
    ):
        k_order = np.lexsort((k_ts, k_sym))
        k_sym, k_ts, k_low, k_high = (a[k_order] for a in (k_sym, k_ts, k_low, k_high))
        k_sorted = k.iloc[k_order]
    k_sorted = k_sorted.reset_index(drop=True)
    if len(k) and len(trades):
        bar_row = np.asarray(_bar_positions(trades, k_sorted, data.bar), dtype=np.int64)
    else:
        bar_row = np.full(len(trades), -1, dtype=np.int64)
    return _Bars(k_sorted, k_sym, k_ts, k_low, k_high, t_sym, bar_row, len(uniques))


def fill_legs(data: MarketData) -> tuple[np.ndarray, np.ndarray]:
    """Each trade's leg and whether the leg is half of an equal-size round trip.

    Per row of ``data.trades``: the leg number (0, 1, ...; -1 for a trade without a
    bar), a leg being an account's fills on one side in one third of a bar's range, and
    whether the leg has an equal-size opposite partner in its bar or a neighbouring one
    (the fills the two-panel looks draw at full brightness). Dropping whole legs never
    makes a new partner; keeping a matched leg and its partners keeps its brightness.
    """
    trades = data.trades
    acc = pd.factorize(trades["account_id"].astype(str))[0].astype(np.int64)
    b = _bars(data, trades)
    buy = (trades["side"].astype(str).str.lower() == "buy").to_numpy()
    legs: list[np.ndarray] = []
    matched = _equal_size_legs(
        acc, b.bar_row, buy, trades["price"].to_numpy(dtype=np.float64),
        trades["quantity"].to_numpy(dtype=np.float64), b.k_sym, b.k_ts, b.k_low, b.k_high,
        data.bar, legs=legs,
    )  # fmt: skip
    return legs[0], matched


def _prepare(
    data: MarketData, ids: np.ndarray, context: bool = True, gap_marks: bool = False
) -> _Prepared:
    trades = data.trades
    acc = _positions(trades["account_id"], ids)
    keep = acc >= 0
    if not keep.all():
        trades = trades.loc[keep]
        acc = acc[keep]
    k = data.klines
    b = _bars(data, trades)
    k_sorted, k_sym, k_ts, k_low, k_high = b.k_sorted, b.k_sym, b.k_ts, b.k_low, b.k_high
    t_sym, bar_row = b.t_sym, b.bar_row
    t_ts = trades["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    buy = (trades["side"].astype(str).str.lower() == "buy").to_numpy()
    k_level = np.zeros(len(k) + 1, dtype=np.uint8)
    bright = np.full(len(trades), _FL.fill_value, dtype=np.uint8)
    gaps = _no_gaps()
    gap_level = np.zeros(0, dtype=np.uint8)
    if context and len(k):
        # Bars of symbols not traded here are never drawn; a symbol-day's context reads
        # that symbol-day alone, so the others' bars are left out of it.
        traded = np.isin(k_sym, t_sym)
        median_amp = tick = None
        if traded.any():
            ctx = bar_context(k_sorted if traded.all() else k_sorted.loc[traded])
            k_level[:-1][traded] = _bar_levels(ctx)
            if gap_marks:
                median_amp = np.zeros(len(k))
                tick = np.zeros(len(k))
                median_amp[traded] = ctx.median_amp
                tick[traded] = ctx.tick
        if len(trades):
            qty = trades["quantity"].to_numpy(dtype=np.float64)
            price = trades["price"].to_numpy(dtype=np.float64)
            eq = _equal_size_legs(
                acc, bar_row, buy, price, qty, k_sym, k_ts, k_low, k_high, data.bar,
                gaps=gaps if gap_marks else None,
            )  # fmt: skip
            bright = np.where(eq, _FL.fill_value, _FL.unmatched_value).astype(np.uint8)
        if len(gaps.acc) and median_amp is not None and tick is not None:
            # The gap drawn as a bar as wide as it: in day-median ranges and in ticks.
            med, tk = median_amp[gaps.row], tick[gaps.row]
            with np.errstate(divide="ignore", invalid="ignore"):
                n_ticks = np.rint(np.where(tk > 0, gaps.gap / tk, 0.0))
                rel = np.where(
                    med > 0, gaps.gap / med, np.where(gaps.gap > 0, np.maximum(n_ticks, 1.0), 1.0)
                )
            gap_level = _levels(rel, n_ticks)
            g_order = np.argsort(gaps.acc, kind="stable")
            gaps = _Gaps(gaps.acc[g_order], gaps.row[g_order], gaps.gap[g_order])
            gap_level = gap_level[g_order]
    x_ts = t_ts.copy()
    has_bar = bar_row >= 0
    x_ts[has_bar] = k_ts[bar_row[has_bar]]

    price = trades["price"].to_numpy(dtype=np.float64)
    order = np.lexsort((t_sym, acc))
    acc = acc[order].astype(np.int64)
    return _Prepared(
        acc=acc,
        sym=t_sym[order],
        ts=t_ts[order],
        x_ts=x_ts[order],
        t_bar=bar_row[order],
        price=price[order],
        buy=buy[order],
        bounds=np.searchsorted(acc, np.arange(len(ids) + 1), side="left"),
        k_ts=k_ts,
        k_grid=k_ts // int(data.bar.value),
        k_low=np.append(k_low, np.inf),
        k_high=np.append(k_high, -np.inf),
        k_amp=np.append(k_high - k_low, -np.inf),
        k_level=k_level,
        gap_acc=gaps.acc.astype(np.int64),
        gap_row=gaps.row.astype(np.int64),
        gap_level=gap_level,
        bright=bright[order],
        k_start=np.searchsorted(k_sym, np.arange(b.n_symbols + 1), side="left"),
        bar_ns=int(data.bar.value),
    )


def _range_reduce(
    ufunc: np.ufunc, values: np.ndarray, first: np.ndarray, last: np.ndarray, fill: float
) -> np.ndarray:
    """``ufunc`` over ``values[first[i]:last[i]]`` for each i (``fill`` where empty).

    ``values`` must end with one spare element. One ``reduceat`` call over the ranges
    sorted by start, so the work is about the ranges' total length plus ``len(values)``.
    """
    out = np.full(len(first), fill)
    if len(first) == 0:
        return out
    order = np.argsort(first, kind="stable")
    idx = np.empty(2 * len(first), dtype=np.int64)
    idx[0::2] = first[order]
    idx[1::2] = last[order]
    red = ufunc.reduceat(values, idx)[0::2]
    out[order] = np.where(last[order] > first[order], red, fill)
    return out


@dataclass
class _Chunk:
    """One chunk's trades and (account, symbol) pairs, sorted by account then symbol.

    Each pair has a range ``[first, last)`` of bar rows (sorted k-lines) to draw and a
    price normalisation ``(price - p_lo) * p_inv + p_add`` onto 0 .. 1.
    """

    acc: np.ndarray  # local account index of each trade
    pair: np.ndarray  # pair index of each trade
    x_ts: np.ndarray
    t_bar: np.ndarray
    price: np.ndarray
    buy: np.ndarray
    bright: np.ndarray
    pair_acc: np.ndarray
    pair_rank: np.ndarray  # 0 for an account's first symbol, 1 for its second, ...
    first: np.ndarray
    last: np.ndarray
    bar_lo: np.ndarray  # lowest low of the pair's bars (inf if none)
    bar_hi: np.ndarray  # highest high (-inf if none)
    p_lo: np.ndarray
    p_inv: np.ndarray
    p_add: np.ndarray


def _chunk(p: _Prepared, start: int, stop: int, lo_ns: np.ndarray, hi_ns: np.ndarray) -> _Chunk:
    """Gather one chunk: bars of each (account, symbol) pair with ``lo_ns <= ts < hi_ns``.

    ``lo_ns`` and ``hi_ns`` are per local account.
    """
    a, b = p.bounds[start], p.bounds[stop]
    acc = p.acc[a:b] - start
    sym = p.sym[a:b]
    new_pair = np.r_[True, (acc[1:] != acc[:-1]) | (sym[1:] != sym[:-1])]
    pair = np.cumsum(new_pair) - 1
    heads = np.flatnonzero(new_pair)
    pair_acc = acc[heads]
    pair_sym = sym[heads]
    n_pairs = len(heads)
    pair_rank = np.arange(n_pairs) - np.searchsorted(pair_acc, pair_acc, side="left")
    first = np.zeros(n_pairs, dtype=np.int64)
    last = np.zeros(n_pairs, dtype=np.int64)
    for s in np.unique(pair_sym):
        sel = np.flatnonzero(pair_sym == s)
        k0, k1 = p.k_start[s], p.k_start[s + 1]
        seg = p.k_ts[k0:k1]
        first[sel] = k0 + np.searchsorted(seg, lo_ns[pair_acc[sel]], side="left")
        last[sel] = k0 + np.searchsorted(seg, hi_ns[pair_acc[sel]], side="left")
    last = np.maximum(last, first)

    price = p.price[a:b]
    bar_lo = _range_reduce(np.minimum, p.k_low, first, last, np.inf)
    bar_hi = _range_reduce(np.maximum, p.k_high, first, last, -np.inf)
    p_lo = np.minimum(bar_lo, _group_reduce(np.minimum, price, pair, n_pairs, np.inf))
    p_hi = np.maximum(bar_hi, _group_reduce(np.maximum, price, pair, n_pairs, -np.inf))
    span = p_hi - p_lo
    ok = span > 0
    p_inv = np.divide(1.0, span, out=np.zeros_like(span), where=ok)
    return _Chunk(
        acc=acc,
        pair=pair,
        x_ts=p.x_ts[a:b],
        t_bar=p.t_bar[a:b],
        price=price,
        buy=p.buy[a:b],
        bright=p.bright[a:b],
        pair_acc=pair_acc,
        pair_rank=pair_rank,
        first=first,
        last=last,
        bar_lo=bar_lo,
        bar_hi=bar_hi,
        p_lo=p_lo,
        p_inv=p_inv,
        p_add=np.where(ok, 0.0, 0.5),
    )


def _normalise(values: np.ndarray, pair: np.ndarray, c: _Chunk) -> np.ndarray:
    """Prices as 0 (pair's low) .. 1 (pair's high); a flat range maps to 0.5."""
    return (values - c.p_lo[pair]) * c.p_inv[pair] + c.p_add[pair]


def _stamp(
    out: np.ndarray,
    img: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    box: tuple[int, int, int, int],
    colour: tuple[int, ...],
) -> None:
    """Paint a fixed pixel pattern (offsets ``dy, dx``) centred on each (row, col).

    Pixels outside ``box = (row_min, row_max, col_min, col_max)`` (inclusive) are clipped.
    ``colour`` gives one value per channel (a ``-1`` leaves that channel alone).
    """
    if len(img) == 0:
        return
    height, width = out.shape[1:3]
    r_min, r_max, c_min, c_max = box
    base = (img * height + row) * width + col
    pix = base[:, None] + (dy * width + dx)[None, :]
    # Most patterns lie wholly inside the box; only the others need a per-pixel test.
    inside = (
        (row + dy.min() >= r_min) & (row + dy.max() <= r_max)
        & (col + dx.min() >= c_min) & (col + dx.max() <= c_max)
    )  # fmt: skip
    flat_pix = pix[inside].reshape(-1)
    if not inside.all():
        rr = row[~inside][:, None] + dy[None, :]
        cc = col[~inside][:, None] + dx[None, :]
        ok = (rr >= r_min) & (rr <= r_max) & (cc >= c_min) & (cc <= c_max)
        flat_pix = np.concatenate([flat_pix, pix[~inside][ok]])
    # Freed before painting: the writes below then reuse this memory instead of new pages.
    del pix, base
    flat_pix *= 3
    flat = out.reshape(-1)
    for ch, value in enumerate(colour):
        if value >= 0:
            flat[flat_pix + ch] = value


# --------------------------------------------------------------------------------------
# Style "fraudlens"
# --------------------------------------------------------------------------------------
# A fill's mark: 3 rows centred on its row, over up to 3 columns from its first column;
# pixel offsets (rows, columns) of the widest mark, row by row.
_MARK_ROWS = np.repeat(np.arange(-1, 2), 3)
_MARK_COLS = np.tile(np.arange(3), 3)
# A price-panel column as a bit mask of its rows (bit r = row r): one byte per 8 rows.
_MASK_BYTES = _FL.price_rows // 8
if _FL.price_rows % 8 or _MASK_BYTES not in (1, 2, 4, 8):
    raise ValueError("the price panel's rows must fill an unsigned integer mask")
_MASK = np.dtype(f"<u{_MASK_BYTES}")
# _COLUMN_SLOTS[nb, c]: in an image of nb bars, the bar whose line covers column c, or
# max_bars (no bar) in the gap between lines. Each bar gets width / nb columns (at
# least one) starting at column k * width // nb; its line is one column narrower than
# its slot when the slot is 2 px or wider.
_WIDTH = STYLES["fraudlens"][1]
if _FL.max_bars > _WIDTH:
    raise ValueError("the CNN look needs a column per bar at least")


def _column_slots() -> np.ndarray:
    nb = np.arange(_FL.max_bars + 1)[:, None]
    col = np.arange(_WIDTH)[None, :]
    k = ((col + 1) * nb - 1) // _WIDTH
    col0 = k * _WIDTH // np.maximum(nb, 1)
    slot = (k + 1) * _WIDTH // np.maximum(nb, 1) - col0
    line = np.maximum(slot - 1, 1)
    return np.where((nb > 0) & (col - col0 < line), k, _FL.max_bars).astype(np.intp)


_COLUMN_SLOTS = _column_slots()
# _LOW_BITS[k]: the k lowest bits set (k = 0..price_rows).
_LOW_BITS = np.array([(1 << k) - 1 for k in range(_FL.price_rows + 1)], dtype=_MASK)
# _BYTE_ROWS[b]: the 8 pixels of a column that mask byte b covers, byte j = row j.
_BYTE_ROWS = np.array(
    [sum(_FL.bar_value << (8 * j) for j in range(8) if b >> j & 1) for b in range(256)],
    dtype="<u8",
)


def _render_fraudlens(p: _Prepared, start: int, stop: int, out: np.ndarray) -> None:
    height, width = out.shape[1:3]
    n = stop - start
    a, b = p.bounds[start], p.bounds[stop]
    if a == b:
        return
    acc_all = p.acc[a:b] - start
    grid = p.x_ts[a:b] // p.bar_ns
    big = np.iinfo(np.int64).max
    g_first = _group_reduce(np.minimum, grid, acc_all, n, big)
    g_last = _group_reduce(np.maximum, grid, acc_all, n, -big)
    has = g_last >= g_first
    g0 = np.where(has, g_first - _FL.margin, 0)
    g1 = np.where(has, g_last + _FL.margin, 0)
    short = np.maximum(_FL.min_bars - (g1 - g0 + 1), 0)
    g0 -= short // 2
    g1 += short - short // 2
    # Too long: give up the margins first, then the oldest bars.
    room = _FL.max_bars - (g_last - g_first + 1)
    g1 = np.where(g1 - g0 + 1 > _FL.max_bars, g_last + np.clip(room // 2, 0, _FL.margin), g1)
    g0 = np.maximum(g0, g1 - _FL.max_bars + 1)
    n_bars = g1 - g0 + 1

    c = _chunk(p, start, stop, g0 * p.bar_ns, (g1 + 1) * p.bar_ns)
    top_h = _FL.price_rows
    scale = top_h - 1

    # Every drawn bar: its pair, k-line row, slot (bar index in its account's grid).
    counts = c.last - c.first
    bar_pair = np.repeat(np.arange(len(counts)), counts)
    bar_row = np.arange(len(bar_pair)) + np.repeat(c.first - (np.cumsum(counts) - counts), counts)
    pa = c.pair_acc
    k_idx = p.k_grid[bar_row] - g0[pa][bar_pair]

    # Price panel: each column is a bit mask of its rows (bit r = row r); a bar sets the
    # bits from its high's row to its low's row. Rows: offset - price * gain, per pair.
    gain = (scale * c.p_inv)[bar_pair]
    offset = ((1.0 - c.p_add) * scale + c.p_lo * scale * c.p_inv)[bar_pair]
    top = np.clip(np.rint(offset - p.k_high[bar_row] * gain), 0, scale).astype(np.int64)
    bot = np.clip(np.rint(offset - p.k_low[bar_row] * gain), 0, scale).astype(np.int64)
    bits = _LOW_BITS[bot + 1] ^ _LOW_BITS[top]
    # Range panel: one intensity per column, the bar's range relative to its day.
    level = p.k_level[bar_row]

    # Per (account, slot): the bits and level of its bars. An account's symbols share
    # its slots: the first symbol's bars are set by plain assignment, the others' are
    # merged in (bits or'ed, the highest level kept) by ufunc.at. The last slot of each
    # account stays empty: the gaps between bar lines read it.
    n_slots = _FL.max_bars + 1
    slot_key = pa[bar_pair] * n_slots + k_idx
    slot_masks = np.zeros(n * n_slots, dtype=_MASK)
    slot_levels = np.zeros(n * n_slots, dtype=np.uint8)
    later = c.pair_rank[bar_pair] > 0
    if later.any():
        first = ~later
        slot_masks[slot_key[first]] = bits[first]
        slot_levels[slot_key[first]] = level[first]
        np.bitwise_or.at(slot_masks, slot_key[later], bits[later])
        np.maximum.at(slot_levels, slot_key[later], level[later])
    else:
        slot_masks[slot_key] = bits
        slot_levels[slot_key] = level
    if len(p.gap_acc):
        # Style "fraudlens-gap": the bars of a round trip across neighbouring bars at
        # least as bright as one bar as wide as the legs' gap.
        ga, gb = np.searchsorted(p.gap_acc, (start, stop))
        if gb > ga:
            g_acc = p.gap_acc[ga:gb] - start
            g_idx = p.k_grid[p.gap_row[ga:gb]] - g0[g_acc]
            ok = (g_idx >= 0) & (g_idx < n_bars[g_acc])
            np.maximum.at(slot_levels, g_acc[ok] * n_slots + g_idx[ok], p.gap_level[ga:gb][ok])
    # Per (account, column): the slot whose bar line covers it, from its number of bars.
    col_slot = (np.arange(n) * n_slots)[:, None] + _COLUMN_SLOTS[n_bars]
    masks = slot_masks[col_slot]
    levels = slot_levels[col_slot]
    # Price panel pixels: each byte of a column's mask gives its 8 rows at once.
    mask_bytes = masks.view(np.uint8).reshape(n, width, _MASK_BYTES).transpose(0, 2, 1)
    rows8 = _BYTE_ROWS[np.ascontiguousarray(mask_bytes)]  # (n, byte, column) uint64
    rows8_px = rows8.view(np.uint8).reshape(n, _MASK_BYTES, width, 8)
    for i in range(_MASK_BYTES):
        out[:, 8 * i : 8 * i + 8, :, 2] = rows8_px[:, i].transpose(0, 2, 1)
    # Range panel: a column is one value top to bottom.
    out[:, top_h:, :, 2] = levels.reshape(n, 1, width)

    # Fills: marks 3 rows tall on the bar's line columns (at most 3), at the fill's price
    # row in the price panel and at its position inside its bar in the range panel.
    tk = c.x_ts // p.bar_ns - g0[c.acc]
    tn = n_bars[c.acc]
    inside = (tk >= 0) & (tk < tn)
    t_col0 = tk * width // tn
    t_slot = (tk + 1) * width // tn - t_col0
    t_line = np.maximum(t_slot - 1, 1)
    mark_w = np.minimum(t_line, 3)
    first_col = t_col0 + (t_line - mark_w) // 2
    row = np.rint((1.0 - _normalise(c.price, c.pair, c)) * scale)
    row = np.clip(row, 0, scale).astype(np.int64)
    tb = np.where(c.t_bar >= 0, c.t_bar, len(p.k_ts))  # the sentinel: no bar
    b_lo = p.k_low[tb]
    b_amp = p.k_amp[tb]
    pos = np.divide(c.price - b_lo, b_amp, out=np.full(len(tb), 0.5), where=b_amp > 0)
    if p.extreme_snap > 0.0:
        near = p.extreme_snap
        pos = np.where(pos <= near, 0.0, np.where(pos >= 1.0 - near, 1.0, pos))
    low_h = height - top_h
    row2 = top_h + np.clip(np.rint((1.0 - pos) * (low_h - 1)), 0, low_h - 1).astype(np.int64)
    # Each side is painted by one assignment, mark by mark, dim marks first so that a
    # bright mark wins where two of one side overlap; in each panel the marks it holds
    # whole come before those it clips. Marks share pixels only within one bar's columns,
    # where they are alike (same columns, same width), so the last one in this order wins
    # as it would painting all marks' first columns, then their second, then their third.
    order = np.argsort(c.bright, kind="stable")
    flat = out.reshape(-1)
    for channel, side in ((0, c.buy), (1, ~c.buy)):
        marks = order[(inside & side)[order]]
        with_bar = marks[c.t_bar[marks] >= 0]
        pix: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for m, rows, r_min, r_max in (
            (marks, row[marks], 0, top_h - 1),
            (with_bar, row2[with_bar], top_h, height - 1),
        ):
            whole = (rows - 1 >= r_min) & (rows + 1 <= r_max)
            if not whole.all():
                m = np.concatenate([m[whole], m[~whole]])
                rows = np.concatenate([rows[whole], rows[~whole]])
            base = (c.acc[m] * height + rows) * width + first_col[m]
            rr = rows[:, None] + _MARK_ROWS[None, :]
            ok = (_MARK_COLS[None, :] < mark_w[m][:, None]) & (rr >= r_min) & (rr <= r_max)
            pix.append((base[:, None] + (_MARK_ROWS * width + _MARK_COLS)[None, :])[ok])
            vals.append(np.broadcast_to(c.bright[m][:, None], ok.shape)[ok])
        flat_pix = np.concatenate(pix) * 3 + channel
        flat_vals = np.concatenate(vals)
        del pix, vals
        flat[flat_pix] = flat_vals


# --------------------------------------------------------------------------------------
# Style "reference"
# --------------------------------------------------------------------------------------
def _limits(
    n: int,
    groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    sticky: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-account axis limits as matplotlib's autoscaling sets them.

    ``groups``: ``(account, lo, hi)`` arrays, each sorted by account, whose union gives
    the data limits. Adds 5 % margins, but no margin beyond a sticky edge (``(account,
    value)``, sorted by account: the lowest bar bottom per symbol) that the data limit
    reaches within matplotlib's 1e-5 relative tolerance. (Matplotlib stops the top margin
    at a bar bottom there too, which needs a flat bar at the very top: not modelled.)
    """
    d0 = np.full(n, np.inf)
    d1 = np.full(n, -np.inf)
    for acc, lo, hi in groups:
        d0 = np.minimum(d0, _group_reduce(np.minimum, lo, acc, n, np.inf))
        d1 = np.maximum(d1, _group_reduce(np.maximum, hi, acc, n, -np.inf))
    empty = ~np.isfinite(d0)
    d0[empty], d1[empty] = 0.0, 1.0
    flat = d1 - d0 <= 0
    d0 = np.where(flat, d0 - 0.5, d0)
    d1 = np.where(flat, d1 + 0.5, d1)
    delta = _REF_MARGIN * (d1 - d0)
    v0, v1 = d0 - delta, d1 + delta
    if sticky is not None and len(sticky[0]):
        s_acc, s_val = sticky
        tol = 1e-5 * np.maximum(np.maximum(np.abs(d0), np.abs(d1)), d1 - d0)
        # The largest sticky value below d0 + tol bounds the lower limit.
        below = np.where(s_val <= (d0 + tol)[s_acc], s_val, -np.inf)
        v0 = np.maximum(v0, _group_reduce(np.maximum, below, s_acc, n, -np.inf))
    return v0, v1


_DISC_DY, _DISC_DX = _ref_disc()


def _render_reference(p: _Prepared, start: int, stop: int, out: np.ndarray) -> None:
    height, width = out.shape[1:3]
    n = stop - start
    a, b = p.bounds[start], p.bounds[stop]
    if a == b:
        return
    acc_all = p.acc[a:b] - start
    last = _group_reduce(np.maximum, p.ts[a:b], acc_all, n, 0)
    c = _chunk(p, start, stop, last - 23 * 3600 * _NS, last + 3600 * _NS + 1)

    # Data limits need only each pair's first and last bar and its extreme prices.
    has = c.last > c.first
    pa = c.pair_acc[has]
    pl = last[pa]
    bx0 = (p.k_ts[c.first[has]] - pl) / _NS - _REF_BAR_HALF_S
    bx1 = (p.k_ts[c.last[has] - 1] - pl) / _NS + _REF_BAR_HALF_S
    # x in seconds relative to the account's latest trade keeps float64 precision.
    tx = (c.x_ts - last[c.acc]) / _NS
    x0, x1 = _limits(n, [(pa, bx0, bx1), (c.acc, tx, tx)])
    lo_norm = (c.bar_lo[has] - c.p_lo[has]) * c.p_inv[has] + c.p_add[has]
    hi_norm = (c.bar_hi[has] - c.p_lo[has]) * c.p_inv[has] + c.p_add[has]
    ty = _normalise(c.price, c.pair, c)
    # The bar bottoms are sticky: only the lowest one can stop the bottom margin.
    y0, y1 = _limits(n, [(pa, lo_norm, hi_norm), (c.acc, ty, ty)], sticky=(pa, lo_norm))

    ta = c.acc
    disp_x = width * (_REF_LEFT + _REF_WIDTH * (tx - x0[ta]) / (x1[ta] - x0[ta]))
    disp_y = height * (_REF_BOTTOM + _REF_HEIGHT * (ty - y0[ta]) / (y1[ta] - y0[ta]))
    # Agg snaps marker centres to whole pixels: floor(v + 0.5) in top-down coordinates.
    col = np.floor(disp_x + 0.5).astype(np.int64)
    row = np.floor(height - disp_y + 0.5).astype(np.int64)
    # The axes clip box, rounded as Agg rounds it; both ends inclusive.
    box = (
        int(np.floor(height - height * (_REF_BOTTOM + _REF_HEIGHT) + 0.5)),
        int(np.floor(height - height * _REF_BOTTOM + 0.5)),
        int(np.floor(width * _REF_LEFT + 0.5)),
        int(np.floor(width * (_REF_LEFT + _REF_WIDTH) + 0.5)),
    )
    # Red discs first, on white: their red channel is 255 already and is left alone.
    red_on_white = tuple(-1 if v == 255 else v for v in _REF_RED)
    for side, colour in ((c.buy, red_on_white), (~c.buy, _REF_GREEN)):
        _stamp(out, ta[side], row[side], col[side], _DISC_DY, _DISC_DX, box, colour)


# Each draws accounts [start, stop) onto `out`, which already holds the background.
_RENDERERS: dict[str, Callable[[_Prepared, int, int, np.ndarray], None]] = {
    "fraudlens": _render_fraudlens,
    "fraudlens-gap": _render_fraudlens,  # the gap marks come from _prepare
    "reference": _render_reference,
}


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def _prepare_for(style: str, data: MarketData, ids: np.ndarray) -> _Prepared:
    """:func:`_prepare` with what ``style`` draws: the bars' context for the two-panel
    looks, and the adjacent-bar gap marks for ``"fraudlens-gap"``."""
    return _prepare(data, ids, context=style in _TWO_PANEL, gap_marks=style == "fraudlens-gap")


def _canvas(style: str, n: int) -> np.ndarray:
    """``n`` blank images of ``style``: black as np.zeros (fresh zero pages, no pass over
    the memory) for the fraudlens look, white for the reference look; the renderers draw
    on them."""
    height, width = STYLES[style]
    if style in _TWO_PANEL:
        return np.zeros((n, height, width, 3), dtype=np.uint8)
    return np.full((n, height, width, 3), 255, dtype=np.uint8)


def render_batch(
    data: MarketData,
    account_ids: Sequence[str] | np.ndarray | None = None,
    *,
    style: str = "fraudlens",
    progress: Callable[[int], None] | None = None,
    extreme_snap: float = 0.0,
) -> np.ndarray:
    """Render one image per account.

    Parameters
    ----------
    data
        K-lines and trades. Every trade given is drawn (window the data first).
    account_ids
        Accounts to draw, in output order; default ``data.account_ids``. An account
        with no trades gets an empty image (background only).
    style
        A key of :data:`STYLES`: ``"fraudlens"`` (default), ``"fraudlens-gap"`` or
        ``"reference"``.
    progress
        Called with the number of images just finished, after each chunk.
    extreme_snap
        Two-panel looks: in the range panel, draw a fill within this share of its
        bar's range of the bar's high or low at it (0, the default: where it is). The
        CNN's training augmentation (:class:`fraudlens.market._cnn.ExtremeSnap`); no
        model scores images drawn this way.

    Returns
    -------
    numpy.ndarray
        uint8 ``(n, height, width, 3)`` RGB.
    """
    if style not in STYLES:
        raise ConfigError(f"unknown image style {style!r}; choose one of {sorted(STYLES)}")
    if not (0.0 <= extreme_snap < 0.5):
        raise ConfigError(f"extreme_snap must be within [0, 0.5), got {extreme_snap}")
    ids = data.account_ids if account_ids is None else np.asarray(account_ids, dtype=str)
    uniq, inverse = np.unique(ids, return_inverse=True)
    # Render each account once, in sorted order, then put them in the order asked for.
    imgs = _canvas(style, len(uniq))
    prepared = _prepare_for(style, data, uniq)
    prepared.extreme_snap = float(extreme_snap)
    draw = _RENDERERS[style]
    for start in range(0, len(uniq), _CHUNK):
        stop = min(start + _CHUNK, len(uniq))
        draw(prepared, start, stop, imgs[start:stop])
        if progress is not None:
            progress(stop - start)
    if len(uniq) == len(ids) and np.array_equal(uniq, ids):
        return imgs
    return imgs[inverse.reshape(-1)]


def render_chunks(
    data: MarketData,
    account_ids: Sequence[str] | np.ndarray | None = None,
    *,
    style: str = "fraudlens",
    chunk: int = _CHUNK,
) -> Iterator[tuple[int, np.ndarray]]:
    """Render one image per account, a chunk of accounts at a time.

    Yields ``(start, images)``: the images of ``account_ids[start : start +
    len(images)]``, the same pixels :func:`render_batch` draws, so a consumer (the CNN's
    scoring) can work on one chunk while the next is drawn. The data are prepared once
    for all the chunks. Accounts given unsorted or more than once are rendered whole
    first (:func:`render_batch`), then handed out in chunks.
    """
    if style not in STYLES:
        raise ConfigError(f"unknown image style {style!r}; choose one of {sorted(STYLES)}")
    chunk = max(1, int(chunk))
    ids = data.account_ids if account_ids is None else np.asarray(account_ids, dtype=str)
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
        imgs = render_batch(data, ids, style=style)
        for start in range(0, len(ids), chunk):
            yield start, imgs[start : start + chunk]
        return
    prepared = _prepare_for(style, data, ids)
    draw = _RENDERERS[style]
    for start in range(0, len(ids), chunk):
        stop = min(start + chunk, len(ids))
        imgs = _canvas(style, stop - start)
        draw(prepared, start, stop, imgs)
        yield start, imgs


def panels(style: str = "fraudlens") -> tuple[tuple[int, int], ...]:
    """The row bands ``(first, stop)`` of a style's panels, top to bottom.

    A vertical flip of one panel swaps high and low prices in it; augmentation flips
    each panel on its own.
    """
    if style not in STYLES:
        raise ConfigError(f"unknown image style {style!r}; choose one of {sorted(STYLES)}")
    height = STYLES[style][0]
    if style in _TWO_PANEL:
        return ((0, _FL.price_rows), (_FL.price_rows, height))
    return ((0, height),)


def render_account(data: MarketData, account_id: str, *, style: str = "fraudlens") -> np.ndarray:
    """Render one account's image, uint8 ``(height, width, 3)``.

    Raises
    ------
    DataError
        If the account has no trades in ``data``.
    """
    if not (data.trades["account_id"].astype(str) == str(account_id)).any():
        raise DataError(
            f"account {cut(repr(account_id), 80)} has no trades to draw", column="account_id"
        )
    return render_batch(data, [str(account_id)], style=style)[0]


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 ``(height, width, 3)`` image as PNG; return the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    # whole or not at all, and an OSError names the path (Pillow's full-disk error
    # names no file)
    write_binary(path, lambda f: picture.save(f, format="PNG"))
    return path
