"""Per-account features read directly from trades and their 5-minute bars.

An account takeover shows up as **repeated matched round trips at the opposite extremes
of volatile bars**: the stolen account buys at one end of a wide bar and sells the same
quantity at the other end (in the same bar or the next), again and again, so value
moves to whoever took the other side. Legitimate traders make each of those marks on
their own: market makers buy the low and sell the high of quiet bars, market orders in
a bar a few ticks wide fill at its edges, a momentum trader stopped out once buys one
bar's high and sells the next bar's low. What sets the threat apart, in terms that hold
on any market, is the combination, and every feature below is relative so that it
reads the same at any price level:

- the bar's **range relative to its symbol-day** (over the day's median range) and in
  **ticks** (:mod:`fraudlens.market._bars`), rather than in currency;
- **equal-quantity round trips in the same or adjacent bars**, and how far each leg sits
  from its bar's extreme;
- the round trip's **price gap relative to the day's typical bar** (value moved, scale
  free) and **repetition** (two or more such round trips against one stop-out);
- the account's **share of the bar's volume**;
- **one other account on the other side of both legs** of the account's extreme round
  trips (the thief's own account mirroring a stolen one, or the other way round), read
  against a *book* (:class:`TradeBook`) that does not depend on which accounts are
  scored together: every trade of the input data in batch scoring, the trades the store
  holds in the real-time worker. A trade is mirrored by an account of the book that has
  a trade of the same symbol on the other side, at the same price and quantity (within
  relative tolerances) and at most a minute apart: a test of each pair of trades on its
  own (no greedy matching, whose result depends on every other trade), so an account's
  features depend on its own trades, the bars and the book's trades that mirror its
  trades only, and its score is the same alone, in a chunk, with the whole file or from
  the store. A market maker that internalises client flow is on the other side of single
  fills of many clients, not of both legs of one client's extreme round trips.

Everything is vectorised over all trades at once (sorts, ``searchsorted`` and
``np.bincount``); there is no Python loop per account or per trade.

Terms used in names and docstrings:

``pos``
    where a fill sits in its bar's range, ``(price - low) / (high - low)``, clipped to
    ``[0, 1]``; 0.5 when the bar has no range or no bar was found.
``leg``
    an account's fills on one side, in one bar, in one third of the bar's range (low,
    middle or high): a parent order cut into several fills is one leg.
``round trip``
    a buy leg matched with a sell leg of the same account and symbol in the same bar or
    a neighbouring one (each leg used once, the most extreme pairing first).
``ext``
    how close both legs sit to opposite extremes of their own bars: for buy-low /
    sell-high (``fwd``) ``min(1 - buy_pos, sell_pos)``, for buy-high / sell-low
    (``rev``) ``min(buy_pos, 1 - sell_pos)``; 1 = both exactly at the extremes.
``gap``
    the price gap between the two legs over the symbol-day's median bar range (how much
    value a unit moved, relative to an ordinary bar).
``strong``
    a round trip with ``ext >= 0.75`` (both legs within a quarter of the range from
    their extremes), ``gap >= 1.25`` (clearly more than an ordinary bar's range apart)
    and at least one leg in a bar wider than the day's median: a market maker's round
    trip across quiet bars never is one, not even when its legs straddle two of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from fraudlens._isin import equals, isin
from fraudlens.market._bars import (
    BarContext,
    _arrow_strings,
    _factorize,
    _int_order,
    bar_context,
)
from fraudlens.market._columns import _array, _floats, _ns, _text
from fraudlens.market.data import FEW_BARS, MarketData, _bar_positions
from fraudlens.market.pairs import DEFAULT_MAX_GAP, DEFAULT_PRICE_TOL, DEFAULT_QTY_TOL

__all__ = [
    "FEATURE_DESCRIPTIONS",
    "FEATURE_NAMES",
    "STRONG_EXT",
    "STRONG_GAP",
    "TradeBook",
    "account_features",
    "trade_level_frame",
]

#: A round trip is "strong" when both legs are within a quarter of the range from
#: opposite extremes ...
STRONG_EXT: Final = 0.75
#: ... and the legs are a quarter more than the symbol-day's median bar range apart.
STRONG_GAP: Final = 1.25
#: Float slack for comparisons of a range with the day's median range.
_EPS: Final = 1e-6
#: A fill within this share of the range from a bar end is "at the edge".
_EDGE: Final = 0.1
#: Largest share of its bar's volume a fill (or leg) counts as: a larger one (a quantity
#: of 1e300 in a bar of 1,000) is counted as this, which float32 features hold, instead
#: of overflowing to infinity. A share above 1 is a fill its bar's volume cannot hold.
_MAX_SHARE: Final = 1e30
#: Legs are fills of one side in one third of the bar: below this, above 1 - this, or between.
_ZONE: Final = 1.0 / 3.0
#: Bars ranked this high (or better) by range within their symbol-day are "top" bars.
_TOP_BARS: Final = 10
#: A bar at least this many ticks wide can show where in it a fill sits.
_WIDE_TICKS: Final = 4
#: Neighbouring bars further apart than this many bar lengths are not adjacent.
_ADJ_MAX_BARS: Final = 2.5
#: The strongest round trips' ext is read up to this: a leg exactly at its bar's high or
#: low and one within a tenth of the range of it are the same evidence (a thief's fill
#: may set the bar's extreme or sit a tick inside it), and the simulator's normal
#: accounts sit exactly on quiet bars' edges more often than its thieves, a difference
#: of that simulator, not of the threat, which the model would otherwise learn. (The
#: features are named ``rt1_ext90`` ...: a model trained on the uncapped ``rt1_ext`` of
#: earlier versions is refused when it is loaded rather than fed values it never saw.)
_RT_EXT_CAP: Final = 0.9
#: Round trips whose legs are looked up in the book: ext and gap at least these.
_MIRROR_EXT: Final = 0.6
_MIRROR_GAP: Final = 0.75

#: What each feature measures, per account (terms: see the module docstring).
FEATURE_DESCRIPTIONS: Final[dict[str, str]] = {
    # activity
    "log_trades": "log(1 + number of fills)",
    "n_bars": "distinct bars traded in",
    "trades_per_bar": "fills per bar traded in",
    "n_symbols": "distinct symbols traded (computed; the default feature detector ignores it)",
    "buy_share": "share of fills that are buys",
    "no_bar_share": "share of fills no bar of their symbol contains",
    "legs_per_bar": "legs per bar traded in",
    "fills_per_leg": "fills per leg (orders cut into pieces)",
    # where fills sit, in bars wide enough to tell
    "wide_share": f"share of fills in bars at least {_WIDE_TICKS} ticks wide",
    "pos_std": "standard deviation of pos over fills in wide bars",
    "mid_share": "share of fills in wide bars with 0.25 < pos < 0.75",
    "edge_share": "share of fills in wide bars within 10 % of the range from an end",
    "edge_fav_share": "buys near the low plus sells near the high, over fills (wide bars)",
    "edge_unfav_share": "buys near the high plus sells near the low, over fills (wide bars)",
    "wick_share": "share of fills priced exactly at a wide bar's high or low",
    # the bars the account trades in
    "rel_mean": "mean log2(range / day's median range) of the fills' bars",
    "rel_max": "largest log2(range / day's median range) of a fill's bar",
    "quiet_share": "share of fills in bars no wider than the day's median",
    "top_share": "share of fills in one of the day's 10 widest bars",
    "pct_min": "best amplitude percentile (0 = widest bar of the day) traded in",
    "ticks_mean": "mean log2(1 + range in ticks) of the fills' bars",
    "ticks_min": "smallest log2(1 + range in ticks) of a fill's bar",
    "vol_share_mean": "geometric mean of fill size over its bar's volume (missing without volume)",
    "vol_share_max": "largest fill size over its bar's volume",
    "size_cv": "coefficient of variation of fill sizes",
    # round trips
    "n_rt": "round trips (any pos)",
    "rt_fill_share": "share of fills in a round trip",
    "rt_eq_share": "share of round trips whose legs have equal quantity",
    "rt_adjacent_share": "share of round trips with legs in neighbouring bars",
    "n_rt_ext": "round trips with ext >= 0.75",
    "n_rt_ext_quiet": "round trips with ext >= 0.75 in bars no wider than the day's median",
    "n_strong": "strong round trips (ext >= 0.75 and gap >= 1.25)",
    "n_strong_eq": "strong round trips with equal quantities",
    "n_strong_fwd": "strong buy-low / sell-high round trips",
    "n_strong_rev": "strong buy-high / sell-low round trips",
    "n_strong_bars": "distinct bars holding a strong round trip's buy leg",
    "n_strong_hi": "round trips with ext >= 0.9 and gap >= 2",
    "n_strong_loose": "round trips with ext >= 0.6 and gap >= 0.75",
    "n_strong_top": "strong round trips whose narrower bar is in the day's widest tenth",
    "n_strong_pure": "strong round trips whose bars hold no other leg of the account",
    "strong_crowd": "mean number of the account's other legs in strong round trips' bars",
    "n_rt_wide": "round trips with gap >= 1.25, at any pos",
    "strong_share_wide": "strong round trips over round trips with gap >= 1.25",
    "ext_mean_wide": "mean ext of round trips with gap >= 1.25 (0 if none)",
    "strong_gap_sum": "sum of gap over strong round trips (value moved, in ordinary bars)",
    "strong_pnl_sign": "mean sign of strong round trips' gain (+1 all gains, -1 all losses)",
    "strong_adjacent_share": "share of strong round trips with legs in neighbouring bars",
    "strong_vol_share_max": "largest leg size over its bar's volume among strong round trips",
    # the two strongest round trips (ranked by ext + gap + equal size), the second to tell a
    # repeated pattern from a single stop-out
    "rt1_ext90": f"ext of the strongest round trip, at most {_RT_EXT_CAP} (0 if none)",
    "rt1_gap": "log2(1 + gap) of the strongest round trip",
    "rt1_rel": "log2 range / day's median range of its narrower bar",
    "rt1_ticks": "log2(1 + range in ticks) of its narrower bar",
    "rt1_pct": "amplitude percentile of its narrower bar (0 = widest)",
    "rt1_eq": "1 if its legs have equal quantity",
    "rt2_ext90": f"ext of the second strongest round trip, at most {_RT_EXT_CAP} (0 if none)",
    "rt2_gap": "log2(1 + gap) of the second strongest",
    "rt2_rel": "log2 range / day's median range of its narrower bar",
    "rt2_ticks": "log2(1 + range in ticks) of its narrower bar",
    "rt2_pct": "amplitude percentile of its narrower bar",
    "rt2_eq": "1 if its legs have equal quantity",
    "rt3_ext90": f"ext of the third strongest round trip, at most {_RT_EXT_CAP} (0 if none)",
    "rt3_gap": "log2(1 + gap) of the third strongest",
    # the other side in the book (round trips with ext >= 0.6 and gap >= 0.75 only; a
    # round trip is pair-mirrored by an account that mirrors a fill of each of its legs)
    "mirror_pair_share": (
        "round-trip value (both legs' notional) pair-mirrored by the one account that "
        "pair-mirrors most of it, over all of the account's round-trip value"
    ),
    "n_mirror_pair_strong": "strong round trips pair-mirrored by that one account",
    "mirror_pair_ext": "mean ext of the round trips that one account pair-mirrors (0 if none)",
    "n_mirror_accounts": "distinct accounts mirroring a fill of those round trips",
}

#: Column order of :func:`account_features` (stable; a saved model records it).
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(FEATURE_DESCRIPTIONS)
#: The feature frame's columns, built once (``pd.Index`` of the names costs more than a
#: small batch's features); each frame takes a copy, so no frame shares it.
_FEATURE_INDEX: Final = pd.Index(list(FEATURE_NAMES))


# ---------------------------------------------------------------------------------------
# small vectorised helpers
# ---------------------------------------------------------------------------------------
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


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / b, 0.0)


def _gmax(codes: np.ndarray, values: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, -np.inf)
    if len(codes):
        np.maximum.at(out, codes, values)
    out[np.isneginf(out)] = fill
    return out


def _gmin(codes: np.ndarray, values: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, np.inf)
    if len(codes):
        np.minimum.at(out, codes, values)
    out[np.isposinf(out)] = fill
    return out


def _first_per_group(group: np.ndarray, score: np.ndarray, n_groups: int) -> np.ndarray:
    """Index of the highest ``score`` in each group present (ties: the lowest index).

    Two passes of ``ufunc.at``, no sort: the matching calls this on every round.
    """
    best = np.full(n_groups, -np.inf)
    np.maximum.at(best, group, score)
    at_best = np.flatnonzero(score >= best[group])
    first = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(first, group[at_best], at_best)
    return first[first < np.iinfo(np.int64).max]


# ---------------------------------------------------------------------------------------
# the book an account's mirror evidence is read against
# ---------------------------------------------------------------------------------------
_EMPTY_HITS: Final = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object))
_NO_HITS: Final = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _buys(side: pd.Series) -> np.ndarray:
    is_buy = equals(side, "buy")
    if not bool((is_buy | equals(side, "sell")).all()):
        # tolerate frames that skipped validation (e.g. "BUY", " sell")
        is_buy = (side.astype(str).str.strip().str.lower() == "buy").to_numpy(dtype=bool)
    return is_buy


#: Longest side column :func:`_frame_buys` compares in Python rather than with pyarrow
#: (two compute calls of about 25 us each, however short the column).
_SHORT_SIDES: Final = 256


def _frame_buys(frame: pd.DataFrame) -> np.ndarray:
    """``_buys(frame["side"])``."""
    values = _array(frame, "side")
    if isinstance(values.dtype, pd.StringDtype) and len(values) <= _SHORT_SIDES:
        sides = values.tolist()
        # a missing value (None or NaN) equals neither, as in ``equals``
        is_buy = np.fromiter((v == "buy" for v in sides), dtype=bool, count=len(sides))
        if all(v == "buy" or v == "sell" for v in sides):
            return is_buy
    return _buys(frame["side"])


class TradeBook:
    """The trades an account's mirror evidence is read against.

    A trade of the book *mirrors* a given trade when it belongs to another account, has
    the same symbol and the other side, a price and a quantity within ``price_tol`` and
    ``qty_tol`` (relative to the given trade's) and a time at most ``max_gap`` away: the
    box of :meth:`fraudlens.store.Store.mirror_candidates`, tested for each pair of trades
    on its own. So what mirrors a trade depends only on the book's trades in its box, and
    any book holding those gives the same answer.

    Parameters
    ----------
    trades
        Trades held in memory (the trades contract): the whole input in batch scoring,
        the batch's windows in the real-time worker.
    fetch
        Called with trades whose mirrors are wanted; returns further trades that may
        mirror them (a superset is fine: trades the book holds already, by
        ``trade_id``, are dropped), e.g. :meth:`fraudlens.store.Store.mirror_candidates`.
        Each trade is asked about once; what came back is kept (:meth:`candidates` hands
        it to the counterparty evidence).
    max_gap, price_tol, qty_tol
        As in :func:`fraudlens.market.pairs.find_pairs`.
    """

    def __init__(
        self,
        trades: pd.DataFrame,
        fetch: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
        *,
        max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
        price_tol: float = DEFAULT_PRICE_TOL,
        qty_tol: float = DEFAULT_QTY_TOL,
    ) -> None:
        self.trades = trades
        self.fetch = fetch
        self.max_gap = pd.Timedelta(max_gap)
        self.price_tol = float(price_tol)
        self.qty_tol = float(qty_tol)
        self._fetched: list[pd.DataFrame] = []
        self._asked: set[str] = set()
        self._index: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # a book crosses processes (Ray) without its index or its fetch callable
        state = dict(self.__dict__)
        state["_index"] = None
        state.pop("_all", None)
        state.pop("_known", None)
        if state["fetch"] is not None:
            state["trades"] = self.all_trades()
            state["fetch"], state["_fetched"], state["_asked"] = None, [], set()
        return state

    def _ask(self, trades: pd.DataFrame) -> None:
        if self.fetch is None or trades.empty:
            return
        # a set lookup per id: pandas' isin against a set builds its hash table again
        # on every call, which cost more than the rest of a small batch's ask
        asked = self._asked
        ids = [str(t) for t in _array(trades, "trade_id").tolist()]
        if not asked or asked.isdisjoint(ids):
            # nothing of these asked yet (the feature pass's first ask): no test per id
            asked.update(ids)
            got = self.fetch(trades)
        else:
            new = np.fromiter((t not in asked for t in ids), dtype=bool, count=len(ids))
            if not new.any():
                return
            asked.update(t for t, n in zip(ids, new.tolist(), strict=True) if n)
            got = self.fetch(trades if bool(new.all()) else trades[new])
        got = self._unseen(got)
        if len(got):
            self._fetched.append(got)
            self._index = None

    def _unseen(self, got: pd.DataFrame) -> pd.DataFrame:
        """The fetched trades the book does not hold yet (by ``trade_id``), each once: a
        fetch may return trades of the held accounts, some of them held already."""
        if got.empty:
            return got
        known = self.__dict__.get("_known")
        if known is None:
            known = {str(t) for t in _array(self.trades, "trade_id").tolist()}
            self._known = known
        ids = [str(t) for t in _array(got, "trade_id").tolist()]
        keep = np.zeros(len(ids), dtype=bool)
        for i, t in enumerate(ids):
            if t not in known:
                known.add(t)
                keep[i] = True
        return got if bool(keep.all()) else got[keep]

    def all_trades(self) -> pd.DataFrame:
        """The trades held, and those fetched so far (each once)."""
        if not self._fetched:
            return self.trades
        # the index and the candidates each read it: one concat per fetch, not per read
        kept = self.__dict__.get("_all")
        if kept is not None and kept[0] == len(self._fetched):
            return kept[1]
        from fraudlens.market.data import TRADE_COLUMNS

        cols = list(TRADE_COLUMNS)
        out = pd.concat(
            [_columns_of(self.trades, cols), *(_columns_of(f, cols) for f in self._fetched)],
            ignore_index=True,
        )
        self._all = (len(self._fetched), out)
        return out

    def candidates(self, trades: pd.DataFrame) -> pd.DataFrame:
        """The book's trades that mirror one of ``trades``, each once, in book order: the
        other side as counterparty evidence takes it (``context_trades`` of
        :func:`fraudlens.scoring.market_evidence`)."""
        old = self._index
        if old is None or trades.empty:
            _, rows = self._hits(trades)
            return self.all_trades().iloc[np.unique(rows)]
        # The book is built (the feature pass searched it): the trades this ask fetches
        # are searched in a book of their own instead of the whole book's index built
        # again (a pair mirrors or not on its own, so the hits are the same; 7 ms of a
        # batch of 500 in the worker). Rows of the fetched part follow the book's.
        held = self.all_trades()
        n_fetched = len(self._fetched)
        self._ask(trades)
        if len(self._fetched) == n_fetched:
            self._index = old
            _, rows = self._hits(trades)
            return held.iloc[np.unique(rows)]
        if len(self._fetched) != n_fetched + 1:  # pragma: no cover - one ask, one fetch
            _, rows = self._hits(trades)
            return self.all_trades().iloc[np.unique(rows)]
        got = self._fetched[-1]
        part = TradeBook(got, max_gap=self.max_gap, price_tol=self.price_tol, qty_tol=self.qty_tol)
        # the trades read once for both searches
        q = _Query.of(trades)
        rows = np.unique(
            np.r_[self._hits_in(old, q)[1], part._hits_in(part._built(), q)[1] + len(held)]
        )
        from fraudlens.market.data import TRADE_COLUMNS

        cols = list(TRADE_COLUMNS)
        split = int(np.searchsorted(rows, len(held)))
        out = pd.concat(
            [
                _columns_of(held, cols).iloc[rows[:split]],
                _columns_of(got, cols).iloc[rows[split:] - len(held)],
            ],
            ignore_index=True,
        )
        # the labels the whole book's rows have (its rows are numbered from 0)
        out.index = pd.Index(rows)
        return out

    def _built(self) -> dict[str, Any]:
        if self._index is not None:
            return self._index
        book = self.all_trades()
        sym_codes, syms = _factorize(_text(book, "symbol"))
        # account codes in id order: ties between mirroring accounts go to the smaller id
        acct_codes, accts = _factorize(_text(book, "account_id"), sort=True)
        ts = _ns(book, "ts").view(np.int64)
        price = _floats(book, "price")
        qty = _floats(book, "quantity")
        # Cells of (symbol, side, price, quantity) as written: a query's price and
        # quantity windows are looked up among the book's distinct prices and quantities
        # (usually one of each, or none), so only trades that pass both tests are ever
        # read. Within a cell, trades sit in buckets of at least max_gap: a mirror is in
        # its trade's bucket or a neighbouring one.
        p_code, prices = _value_codes(price)
        q_code, qtys = _value_codes(qty)
        cells = _TupleCodes(
            [p_code, np.asarray(sym_codes, dtype=np.int64) * 2 + _frame_buys(book), q_code],
            [len(prices) + 1, 2 * len(syms) + 2, len(qtys) + 1],
        )
        width = max(int(self.max_gap.value), 1)
        t0 = int(ts.min(initial=0))
        t1 = int(ts.max(initial=0))
        while cells.n * ((t1 - t0) // width + 3) >= 2**62:  # keys must fit in int64
            width *= 2
        bucket = (ts - t0) // width + 1  # 1 .. n_buckets - 2: one spare on each side
        n_buckets = (t1 - t0) // width + 3
        key = cells.ids * n_buckets + bucket
        order = _int_order(key, cells.n * n_buckets)
        self._index = {
            "order": order,
            "key": key[order],
            "cells": cells,
            "prices": prices,
            "qtys": qtys,
            "t0": t0,
            "width": width,
            "n_buckets": n_buckets,
            # object indexes: their values are the same strings, and pandas does not
            # infer a dtype for them (twice the cost of the rest on a small batch's book)
            "syms": pd.Index(syms, dtype=object),
            "accts": pd.Index(accts, dtype=object),
            "acct": np.asarray(acct_codes, dtype=np.int64),
            "ts": ts,
        }
        return self._index

    def mirrors(self, trades: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Every (row position in ``trades``, account id) such that a trade of that
        account in the book mirrors the trade at that row (a pair per mirroring trade)."""
        at, rows = self._hits(trades)
        if len(at) == 0:
            return _EMPTY_HITS
        ix = self._built()
        return at, np.asarray(ix["accts"].take(ix["acct"][rows]), dtype=object)

    def _hits(self, trades: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(row position in ``trades``, row in :meth:`all_trades`) of every mirroring
        pair."""
        if trades.empty:
            return _NO_HITS
        self._ask(trades)
        return self._hits_in(self._built(), trades)

    def _hits_in(
        self, ix: dict[str, Any], trades: pd.DataFrame | _Query
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_hits` against the built index ``ix`` (no ask); ``trades`` may be
        given as their :class:`_Query` (read once for several indexes)."""
        if len(ix["key"]) == 0:
            return _NO_HITS
        q = trades if isinstance(trades, _Query) else _Query.of(trades)
        return self._hits_arrays(
            q.codes_in(ix, "syms"),
            q.is_buy,
            q.price,
            q.qty,
            q.ts,
            q.codes_in(ix, "accts"),
            ix,
        )

    def _hits_arrays(
        self,
        sym: np.ndarray,
        is_buy: np.ndarray,
        price: np.ndarray,
        qty: np.ndarray,
        ts: np.ndarray,
        acct: np.ndarray,
        ix: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_hits` on arrays: ``sym`` and ``acct`` are codes in the built index's
        ``syms`` and ``accts`` (-1 when the book has none), after :meth:`_ask`; ``ix``
        is that index (the book's own when None)."""
        ix = self._built() if ix is None else ix
        known = np.flatnonzero((sym >= 0) & np.isfinite(price) & np.isfinite(qty))
        if len(known) == 0 or len(ix["key"]) == 0:
            return _NO_HITS
        p_lo, n_p = _window(ix["prices"], price[known], self.price_tol)
        q_lo, n_q = _window(ix["qtys"], qty[known], self.qty_tol)
        # each (price, quantity) of the book within both windows: nearly always one
        combos = np.maximum(n_p, 0) * np.maximum(n_q, 0)
        sel = np.flatnonzero(combos)
        if len(sel) == 0:
            return _NO_HITS
        if bool((combos[sel] == 1).all()):
            q_at, p_code, q_code = known[sel], p_lo[sel], q_lo[sel]
        else:
            reps = combos[sel]
            each = np.repeat(sel, reps)
            off = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
            q_at = known[each]
            p_code = p_lo[each] + off // n_q[each]
            q_code = q_lo[each] + off % n_q[each]
        cell = ix["cells"].lookup([p_code, sym[q_at] * 2 + ~is_buy[q_at], q_code])
        bucket = (ts[q_at] - ix["t0"]) // ix["width"] + 1
        b_lo = np.maximum(bucket - 1, 0)
        b_hi = np.minimum(bucket + 1, ix["n_buckets"] - 1)
        on = np.flatnonzero((cell >= 0) & (b_lo <= b_hi))
        if len(on) == 0:
            return _NO_HITS
        q_at, cell = q_at[on], cell[on]
        base = cell * ix["n_buckets"]
        lo = np.searchsorted(ix["key"], base + b_lo[on], side="left")
        n = np.searchsorted(ix["key"], base + b_hi[on], side="right") - lo
        total = int(n.sum())
        if total == 0:
            return _NO_HITS
        at = np.repeat(q_at, n)
        rows = ix["order"][np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(total)]
        ok = (np.abs(ix["ts"][rows] - ts[at]) <= self.max_gap.value) & (
            ix["acct"][rows] != acct[at]
        )
        return at[ok], rows[ok]


def _window(values: np.ndarray, v: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """First position and count of the sorted distinct ``values`` within ``tol x |v|`` of
    each of ``v``. A value found as written whose neighbours lie outside its window is
    its own window (one binary search); the rest are searched."""
    span = tol * np.abs(v)
    m = len(values)
    # ``index.get_indexer(v)`` for the distinct sorted values: a binary search and an
    # equality test cost less than pandas' hash lookup on a few values
    if m:
        lo = np.searchsorted(values, v, side="left")
        at = np.minimum(lo, m - 1)
        lo = np.where((lo < m) & (values[at] == v), lo, -1).astype(np.int64)
    else:
        lo = np.full(len(v), -1, dtype=np.int64)
    n = np.ones(len(v), dtype=np.int64)
    at = np.maximum(lo, 0)
    search = (
        (lo < 0)
        | ((lo > 0) & (values[np.maximum(at - 1, 0)] >= v - span))
        | ((lo < m - 1) & (values[np.minimum(at + 1, m - 1)] <= v + span))
    )
    s = np.flatnonzero(search)
    if len(s):
        lo[s] = np.searchsorted(values, v[s] - span[s], side="left")
        n[s] = np.searchsorted(values, v[s] + span[s], side="right") - lo[s]
    return lo, n


def _value_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``values`` in their sorted distinct values, and those values (a hash
    pass and a sort of the distinct values only); NaN gets the code after the last."""
    codes, uniques = pd.factorize(values, sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes >= 0, codes, len(uniques)), np.asarray(uniques, dtype=np.float64)


@dataclass
class _Query:
    """Trades whose mirrors are searched, as the search reads them: the columns' arrays
    and the symbols' and accounts' codes in their own distinct values, looked up in
    each index searched (not factorized again per index)."""

    is_buy: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    ts: np.ndarray
    text: dict[str, tuple[np.ndarray, Any]]

    @classmethod
    def of(cls, trades: pd.DataFrame) -> _Query:
        return cls(
            _frame_buys(trades),
            _floats(trades, "price"),
            _floats(trades, "quantity"),
            _ns(trades, "ts").view(np.int64),
            {
                "syms": _factorize(_text(trades, "symbol")),
                "accts": _factorize(_text(trades, "account_id")),
            },
        )

    def codes_in(self, ix: dict[str, Any], name: str) -> np.ndarray:
        """Position of each symbol (``name`` ``"syms"``) or account (``"accts"``) in
        the built index's ``ix[name]`` (-1 if absent): one lookup per distinct value."""
        codes, uniques = self.text[name]
        where = _get_indexer(ix, name, uniques)
        return np.where(codes >= 0, where[np.maximum(codes, 0)], -1).astype(np.int64)


#: Most values :func:`_get_indexer` looks up one by one in a dict of the index's strings.
_FEW_LOOKUPS: Final = 512


def _get_indexer(ix: dict[str, Any], name: str, values: Any) -> np.ndarray:
    """``ix[name].get_indexer(values)`` (int64) for a built index's ``syms`` or
    ``accts`` (distinct values): a few strings are looked up in a dict of the index's
    strings (built once per index, kept in ``ix``), which costs less than pandas' fixed
    cost per call."""
    index = ix[name]
    if len(values) <= _FEW_LOOKUPS:
        table = ix.get(name + "_table", False)
        if table is False:
            keys = index.tolist()
            table = {k: i for i, k in enumerate(keys)}
            if len(table) != len(keys) or not all(type(k) is str for k in keys):
                table = None
            ix[name + "_table"] = table
        if table is not None:
            keys = values.tolist() if hasattr(values, "tolist") else list(values)
            if all(type(v) is str for v in keys):
                found = (table.get(v, -1) for v in keys)
                return np.fromiter(found, dtype=np.int64, count=len(keys))
    return np.asarray(index.get_indexer(values), dtype=np.int64)


class _TupleCodes:
    """Dense ids (in order of first appearance) of the distinct tuples of non-negative
    integer codes, and the id of further tuples (-1 for a tuple not among them).

    ``spans[i]`` bounds ``codes[i]``; codes are combined into one int64 key while the
    product of their spans fits, and made dense in between."""

    def __init__(self, codes: list[np.ndarray], spans: list[int]) -> None:
        self.spans = spans
        # (first code folded in next, uniques sorted, their ids)
        self.stages: list[tuple[int, np.ndarray, np.ndarray]] = []
        key = np.asarray(codes[0], dtype=np.int64)
        width = spans[0]
        for i in range(1, len(codes)):
            if width * spans[i] >= 2**62:
                inv, uniq = pd.factorize(key)
                self.stages.append((i, *_sorted_ids(uniq)))
                key, width = np.asarray(inv, dtype=np.int64), len(uniq)
            key = key * spans[i] + np.asarray(codes[i], dtype=np.int64)
            width *= spans[i]
        inv, uniq = pd.factorize(key)
        self.stages.append((len(codes), *_sorted_ids(uniq)))
        self.ids = np.asarray(inv, dtype=np.int64)
        self.n = len(uniq)

    def lookup(self, codes: list[np.ndarray]) -> np.ndarray:
        key = np.asarray(codes[0], dtype=np.int64)
        i = 1
        for stop, uniq, ids in self.stages:
            for j in range(i, stop):
                key = key * self.spans[j] + np.asarray(codes[j], dtype=np.int64)
            i = stop
            # a binary search; an absent tuple gets -1, and a negative key matches
            # nothing in later stages
            if len(uniq):
                at = np.minimum(np.searchsorted(uniq, key), len(uniq) - 1)
                key = np.where(uniq[at] == key, ids[at], -1)
            else:
                key = np.full(len(key), -1, dtype=np.int64)
        return key


def _sorted_ids(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct int64 keys sorted, and each one's position in ``uniq``."""
    uniq = np.asarray(uniq, dtype=np.int64)
    order = np.argsort(uniq, kind="stable")
    return uniq[order], order.astype(np.int64)


# ---------------------------------------------------------------------------------------
# trades, legs and round trips
# ---------------------------------------------------------------------------------------
@dataclass
class _Trades:
    """Trades joined to bars, as flat arrays in the trades' row order."""

    acct: np.ndarray
    account_ids: np.ndarray
    is_buy: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    ts: np.ndarray
    sym: np.ndarray
    symbols: np.ndarray  # the symbol of each code of ``sym``
    bar_row: np.ndarray
    has_bar: np.ndarray
    pos: np.ndarray
    wick: np.ndarray
    rel: np.ndarray  # bar range / day median (1 when unknown)
    ticks: np.ndarray
    rank: np.ndarray
    pct: np.ndarray  # (rank - 1) / bars in day
    n_day: np.ndarray
    vol_share: np.ndarray  # qty / bar volume, NaN without volume
    amp: np.ndarray  # the bar's range
    median: np.ndarray  # the symbol-day's median range
    tick: np.ndarray
    bar_volume: np.ndarray  # NaN without volume
    bar_symbol: np.ndarray  # symbol code of each row of the k-lines (not of each trade)
    leg: np.ndarray  # leg id of each fill (-1 without a bar); ids follow the leg key order
    mirrored: np.ndarray  # the fill is mirrored by another account
    first_of_bar: np.ndarray  # one fill per (account, bar)
    first_of_sym: np.ndarray  # one fill per (account, symbol)


@dataclass
class _Legs:
    acct: np.ndarray
    row: np.ndarray
    buy: np.ndarray
    qty: np.ndarray
    pos: np.ndarray  # size-weighted
    price: np.ndarray  # size-weighted
    n_fills: np.ndarray
    mirrored: np.ndarray  # any fill of the leg mirrored
    first: np.ndarray  # one fill of the leg
    in_bar: np.ndarray  # legs of the account in the leg's bar (itself included)
    run: np.ndarray  # dense id of the leg's (account, bar), in leg order


@dataclass
class _RoundTrips:
    """Matched buy/sell legs and what each round trip looks like."""

    buy: np.ndarray  # leg ids
    sell: np.ndarray
    acct: np.ndarray
    ext: np.ndarray
    fwd: np.ndarray  # bool: buy low / sell high
    gap: np.ndarray  # price gap / day's median range
    rel: np.ndarray  # narrower bar's range / day median
    rel_max: np.ndarray  # wider bar's range / day median
    ticks: np.ndarray  # narrower bar's range in ticks
    pct: np.ndarray  # narrower bar's amplitude percentile
    eq: np.ndarray  # equal quantities
    adjacent: np.ndarray
    pnl: np.ndarray  # (sell - buy) x min(qty)
    value: np.ndarray  # notional of both legs
    vol_share: np.ndarray  # larger leg's share of its bar's volume
    mirrored: np.ndarray  # a leg mirrored by another account

    @property
    def strong(self) -> np.ndarray:
        return (
            (self.ext >= STRONG_EXT - _EPS)
            & (self.gap >= STRONG_GAP - _EPS)
            & (self.rel_max > 1.0 + _EPS)
        )


def _columns_of(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``frame[cols]``; the frame itself when those are its columns already, in that
    order (a column selection copies every column: about 0.1 ms for a small window)."""
    return frame if frame.columns.tolist() == cols else frame[cols]


def _sorted_klines(klines: pd.DataFrame) -> pd.DataFrame:
    """K-lines in the row order ``_bar_positions`` numbers its rows by."""
    if _is_sorted(klines):
        # The store hands bars over sorted already: a sort is the costliest step of a
        # small window, so check first (a linear scan) and skip it.
        index = klines.index
        if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
            return klines
        return klines.reset_index(drop=True)
    return klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _is_sorted(klines: pd.DataFrame) -> bool:
    """Whether ``klines`` are ordered by ``(symbol, ts)``."""
    n = len(klines)
    if n < 2:
        return True
    same = _arrow_sorted(_text(klines, "symbol"), n)
    if same is False:
        return False
    if same is None:  # not pyarrow strings without missing values
        try:
            if n < FEW_BARS:  # a string compare per row costs less than hashing
                codes = np.asarray(_array(klines, "symbol"), dtype=object)
            else:  # codes in sorted symbol order
                codes = np.asarray(pd.factorize(klines["symbol"], sort=True)[0])
                if bool((codes < 0).any()):
                    return False  # a missing symbol: let the sort decide
            if not bool((codes[1:] >= codes[:-1]).all()):
                return False
        except TypeError:  # mixed types: let the sort decide
            return False
        same = codes[1:] == codes[:-1]
    ts = _ns(klines, "ts")
    return bool((ts[1:][same] >= ts[:-1][same]).all())


def _arrow_sorted(column: Any, n: int) -> np.ndarray | bool | None:
    """For a pyarrow string column of ``n >= 2`` values without missing ones: False if a
    value sorts before the one above it, else whether each value equals the one above
    (from the second on); None for any other column. Each neighbour pair is compared in
    pyarrow: UTF-8 bytes compare in code-point order, Python's str order, and no
    dictionary of the values is built."""
    arrow = _arrow_strings(column)
    if arrow is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.chunk(0) if arrow.num_chunks == 1 else arrow.combine_chunks()
    above, below = arrow.slice(0, n - 1), arrow.slice(1)
    if not pc.all(pc.less_equal(above, below)).as_py():
        return False
    return np.asarray(pc.equal(above, below).to_numpy(zero_copy_only=False), dtype=bool)


def _traded_symbols_only(
    klines: pd.DataFrame, trades: pd.DataFrame, traded: Any = None
) -> pd.DataFrame:
    """The k-lines of the symbols in ``trades`` (whole days are kept for day statistics);
    ``traded`` are those symbols when the caller has them."""
    keep = None
    if traded is not None and len(klines) < FEW_BARS:
        # a few bars and symbols: a set lookup per bar costs less than pyarrow's is_in
        symbols = _array(klines, "symbol")
        wanted = list(traded)
        if isinstance(symbols.dtype, pd.StringDtype) and all(type(x) is str for x in wanted):
            found = set(wanted)
            names = symbols.tolist()
            keep = np.fromiter((x in found for x in names), dtype=bool, count=len(names))
    if keep is None:
        keep = isin(klines["symbol"], pd.unique(trades["symbol"]) if traded is None else traded)
    return klines if bool(keep.all()) else klines[keep]


def _traded_sorted_klines(
    klines: pd.DataFrame, trades: pd.DataFrame, traded: Any
) -> tuple[pd.DataFrame, tuple[np.ndarray, Any] | None]:
    """``_sorted_klines(_traded_symbols_only(klines, trades, traded))``, and, for many
    k-lines, the codes of their symbols (``pd.factorize(k["symbol"], sort=True)``'s
    order, not necessarily dense) with the symbols they stand for: one hash of the
    symbols serves the selection, the order check, the bar search and the bar context,
    which hashed them once each. None when the k-lines are few, hold a missing symbol
    or needed a sort (each step then reads the symbols itself)."""

    def plain() -> tuple[pd.DataFrame, tuple[np.ndarray, Any] | None]:
        return _sorted_klines(_traded_symbols_only(klines, trades, traded)), None

    if len(klines) < FEW_BARS:
        return plain()
    try:
        codes, names = pd.factorize(klines["symbol"], sort=True)
    except TypeError:  # symbols that do not compare: let the sort decide
        return plain()
    codes = np.asarray(codes, dtype=np.int64)
    if bool((codes < 0).any()):
        return plain()
    # which symbols were traded: a set lookup per symbol (a few dozen) for text
    name_list = list(names)
    traded_list = list(traded)
    if all(isinstance(x, str) for x in name_list + traded_list):
        wanted = set(traded_list)
        keep_name = np.fromiter((x in wanted for x in name_list), dtype=bool, count=len(name_list))
    else:
        keep_name = isin(pd.Series(names), traded)
    keep = keep_name[codes]
    k = klines
    if not bool(keep.all()):
        k, codes = klines[keep], codes[keep]
    if len(k) >= 2:
        if not bool((codes[1:] >= codes[:-1]).all()):
            return _sorted_klines(k), None
        ts = _ns(k, "ts")
        same = codes[1:] == codes[:-1]
        if not bool((ts[1:][same] >= ts[:-1][same]).all()):
            return _sorted_klines(k), None
    index = k.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        k = k.reset_index(drop=True)
    return k, (codes, names)


def _mark_mirrors(trades: pd.DataFrame, tr: _Trades, legs: _Legs, rt: _RoundTrips) -> None:
    """Mark fills, legs and round trips that another account's trade mirrors.

    A mirror is :func:`fraudlens.market.pairs.mirrored_mask`'s: same symbol, opposite
    side, equal price and quantity, close in time. Only legs of round trips that are at
    least loosely extreme (``ext >= 0.6``, ``gap >= 0.75``) are looked at: the other side
    of such a round trip is such a round trip too, and the book's ordinary trades are
    left out of the search.
    """
    loose = (rt.ext >= 0.6) & (rt.gap >= 0.75)
    if not loose.any():
        return
    leg_on = np.zeros(len(legs.buy), dtype=bool)
    leg_on[rt.buy[loose]] = True
    leg_on[rt.sell[loose]] = True
    fills = np.flatnonzero((tr.leg >= 0) & leg_on[np.maximum(tr.leg, 0)])
    # A mirror has the same symbol, price and size on the other side: keep only fills
    # whose (symbol, price, size) appears on both sides (cheap, and a superset), then
    # let the linkage apply its own rules to those.
    if len(fills) < 2:
        return
    p_code = pd.factorize(tr.price[fills])[0].astype(np.int64)
    q_code = pd.factorize(tr.qty[fills])[0].astype(np.int64)
    n_f = len(fills) + 1
    code = pd.factorize((tr.sym[fills] * n_f + p_code) * n_f + q_code)[0].astype(np.int64)
    buys = np.bincount(code, weights=tr.is_buy[fills])
    sells = np.bincount(code, weights=~tr.is_buy[fills])
    fills = fills[(buys[code] > 0) & (sells[code] > 0)]
    if len(np.unique(tr.acct[fills])) < 2:
        return
    from fraudlens.market.pairs import mirrored_mask

    sub = trades.iloc[fills].reset_index(drop=True)
    tr.mirrored[fills] = np.asarray(mirrored_mask(sub), dtype=bool)
    hit = tr.leg[tr.mirrored]
    legs.mirrored[hit[hit >= 0]] = True
    rt.mirrored[:] = legs.mirrored[rt.buy] | legs.mirrored[rt.sell]


def _trade_arrays(
    trades: pd.DataFrame,
    k: pd.DataFrame,
    bar: pd.Timedelta,
    *,
    ctx: BarContext | None = None,
    bar_row: np.ndarray | None = None,
    symbols: tuple[np.ndarray, Any] | None = None,
    k_symbols: tuple[np.ndarray, Any] | None = None,
) -> _Trades:
    """Flat arrays for ``trades``; ``k`` are the k-lines sorted by ``(symbol, ts)``,
    ``ctx`` their :func:`~fraudlens.market._bars.bar_context`, ``bar_row`` each
    trade's row in ``k`` and ``symbols`` ``pd.factorize(trades["symbol"])`` (each
    computed when not given); ``k_symbols`` the codes of ``k``'s symbols in sorted
    order and what they stand for (:func:`_traded_sorted_klines`), when known."""
    n = len(trades)
    if symbols is None:
        symbols = _factorize(_text(trades, "symbol"))
    if bar_row is None:
        bar_row = np.asarray(
            _bar_positions(trades, k, bar, symbols=symbols, k_symbols=k_symbols), dtype=np.int64
        )
    has_bar = bar_row >= 0
    safe = np.where(has_bar, bar_row, 0)
    acct_col = _text(trades, "account_id")
    if acct_col.dtype == object or not pd.api.types.is_string_dtype(acct_col.dtype):
        acct_col = trades["account_id"].astype(str)  # strings need no copy
    acct_codes, account_ids = _factorize(acct_col, sort=True)
    acct = np.asarray(acct_codes, dtype=np.int64)
    is_buy = _frame_buys(trades)
    price = _floats(trades, "price")
    qty = _floats(trades, "quantity") if "quantity" in trades else np.ones(n)
    ts = _ns(trades, "ts").astype(np.int64)
    if ctx is None:
        dense = None
        if k_symbols is not None and len(k):
            # sorted k-lines: a symbol's rows are one run, runs in symbol order
            k_codes = k_symbols[0]
            dense = np.cumsum(np.r_[0, k_codes[1:] != k_codes[:-1]])
        ctx = bar_context(k, symbol_codes=dense)
    every_bar = bool(has_bar.all())  # usual: each row's own value, nothing to fill in

    def pick(a: np.ndarray, missing: float) -> np.ndarray:
        if len(a) == 0:
            return np.full(n, missing)
        return a[safe] if every_bar else np.where(has_bar, a[safe], missing)

    if len(k):
        high = pick(_floats(k, "high"), np.nan)
        low = pick(_floats(k, "low"), np.nan)
    else:
        high = low = np.full(n, np.nan)

    amp = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = np.where(has_bar & (amp > 0), (price - low) / amp, 0.5)
    pos = np.clip(np.nan_to_num(pos, nan=0.5), 0.0, 1.0)
    tol = 1e-9 * np.abs(price)
    wick = has_bar & (amp > 0) & ((np.abs(price - high) <= tol) | (np.abs(price - low) <= tol))
    rel = pick(ctx.rel, 1.0)
    ticks = pick(ctx.ticks, 0.0)
    rank = pick(ctx.rank, np.nan)
    n_day = pick(ctx.n_day, np.nan)
    pct = (
        _ratio(rank - 1.0, n_day)
        if every_bar
        else np.where(has_bar, _ratio(rank - 1.0, n_day), 1.0)
    )
    volume = pick(ctx.volume, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vol_share = np.where(volume > 0, np.minimum(qty / volume, _MAX_SHARE), np.nan)
    # symbols as text (the raw codes' distinct values, each once)
    raw_codes, raw_names = symbols
    if isinstance(_array(trades, "symbol").dtype, pd.StringDtype):  # text already, each once
        name_codes, names = np.arange(len(raw_names)), raw_names
    else:
        name_codes, names = pd.factorize(pd.Index(raw_names).astype(str))
    name_codes = np.asarray(name_codes, dtype=np.int64)
    sym = (
        np.where(raw_codes >= 0, name_codes[np.maximum(raw_codes, 0)], -1)
        if len(name_codes)
        else np.full(n, -1, dtype=np.int64)
    )
    # Legs: (account, bar, side, third of the range). One sort by that key serves every
    # grouping below: bars of an account, symbols of an account (a symbol's bars are
    # contiguous rows), legs, and the legs sharing a bar. Fills without a bar get the
    # spare row len(k), after every real one.
    zone = np.where(pos <= _ZONE, 0, np.where(pos >= 1.0 - _ZONE, 2, 1))
    n_rows = len(k) + 1
    row = np.where(has_bar, bar_row, len(k))
    inner = (row * 2 + is_buy) * 3 + zone
    leg_key = acct * (6 * n_rows) + inner
    order = _int_order(leg_key, len(account_ids) * 6 * n_rows)
    key_s = leg_key[order]
    new_leg = np.r_[True, key_s[1:] != key_s[:-1]] if n else np.zeros(0, dtype=bool)
    bar_s = key_s // 6
    new_bar = np.r_[True, bar_s[1:] != bar_s[:-1]] if n else np.zeros(0, dtype=bool)
    first_of_bar = np.zeros(n, dtype=bool)
    first_of_bar[order[new_bar]] = True
    sym_s = sym[order]
    acct_s = acct[order]
    new_sym = (
        np.r_[True, (acct_s[1:] != acct_s[:-1]) | (sym_s[1:] != sym_s[:-1])]
        if n
        else np.zeros(0, dtype=bool)
    )
    first_of_sym = np.zeros(n, dtype=bool)
    first_of_sym[order[new_sym]] = True
    leg_sorted = np.cumsum(new_leg) - 1
    leg = np.empty(n, dtype=np.int64)
    leg[order] = leg_sorted
    # no-bar fills form the last legs of each account: drop them, renumber densely
    if not has_bar.all():
        real = np.zeros(int(leg_sorted[-1]) + 1 if n else 0, dtype=bool)
        real[leg[has_bar]] = True
        remap = np.cumsum(real) - 1
        leg = np.where(has_bar, remap[leg], -1)
    return _Trades(
        acct=acct,
        account_ids=np.asarray(account_ids, dtype=object),
        is_buy=is_buy,
        price=price,
        qty=qty,
        ts=ts,
        sym=sym,
        symbols=np.asarray(names, dtype=object),
        bar_row=bar_row,
        has_bar=has_bar,
        pos=pos,
        wick=wick,
        rel=rel,
        ticks=ticks,
        rank=rank,
        pct=pct,
        n_day=n_day,
        vol_share=vol_share,
        amp=np.nan_to_num(amp),
        median=pick(ctx.median_amp, 0.0),
        tick=pick(ctx.tick, np.nan),
        bar_symbol=ctx.symbol,
        bar_volume=volume,
        leg=leg,
        mirrored=np.zeros(n, dtype=bool),  # filled in by _mark_mirrors
        first_of_bar=first_of_bar & has_bar,
        first_of_sym=first_of_sym,
    )


def _leg_sum_order(tr: _Trades, sel: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``sel`` with the fills of each leg of several fills in one fixed order (by price,
    then quantity). Floating-point sums depend on the order of their terms, and a leg's
    price and position are sums over its fills: summed in the input's row order, the
    same book in another row order could move a last bit, and with it a round trip
    across a threshold (a gap of exactly two median ranges, say)."""
    multi = np.bincount(g)[g] > 1
    if not multi.any():
        return sel
    m = sel[multi]
    return np.r_[sel[~multi], m[np.lexsort((tr.qty[m], tr.price[m], g[multi]))]]


def _legs(tr: _Trades) -> _Legs:
    sel = np.flatnonzero(tr.leg >= 0)
    g = tr.leg[sel]
    n = int(g.max()) + 1 if len(g) else 0
    first = np.zeros(n, dtype=np.int64)
    first[g[::-1]] = sel[::-1]
    sel = _leg_sum_order(tr, sel, g)
    g = tr.leg[sel]
    q = tr.qty[sel]
    qty = np.bincount(g, weights=q, minlength=n)
    acct = tr.acct[first]
    row = tr.bar_row[first]
    # leg ids follow (account, row, side, zone): legs of one bar are a run
    if n:
        new = np.r_[True, (acct[1:] != acct[:-1]) | (row[1:] != row[:-1])]
        run = np.cumsum(new) - 1
        in_bar = np.bincount(run).astype(np.float64)[run]
    else:
        run = np.zeros(0, dtype=np.int64)
        in_bar = np.zeros(0)
    return _Legs(
        acct=acct,
        row=row,
        buy=tr.is_buy[first],
        qty=qty,
        pos=_ratio(np.bincount(g, weights=q * tr.pos[sel], minlength=n), qty),
        price=_ratio(np.bincount(g, weights=q * tr.price[sel], minlength=n), qty),
        n_fills=np.bincount(g, minlength=n).astype(np.float64),
        mirrored=np.zeros(n, dtype=bool),
        first=first,
        in_bar=in_bar,
        run=run,
    )


def _round_trips(tr: _Trades, legs: _Legs, k: pd.DataFrame, bar: pd.Timedelta) -> _RoundTrips:
    """Match buy legs with sell legs of the same account in the same or a neighbouring bar.

    Each buy leg has at most nine candidates (three zones in each of three bars). The
    matching is greedy, most extreme pair first, in a few vectorised rounds: every free
    buy leg proposes its best free candidate, every sell leg accepts its best proposal.
    """
    n_rows = len(k) + 1
    b_idx = np.flatnonzero(legs.buy)
    s_idx = np.flatnonzero(~legs.buy)
    empty = np.zeros(0)
    if len(b_idx) == 0 or len(s_idx) == 0:
        e_i = np.zeros(0, dtype=np.int64)
        e_b = np.zeros(0, dtype=bool)
        return _RoundTrips(e_i, e_i, e_i, empty, e_b, empty, empty, empty, empty, empty, e_b,
                           e_b, empty, empty, empty, e_b)  # fmt: skip
    k_sym = tr.bar_symbol  # each bar's symbol code (equal codes: same symbol)
    k_ts = _ns(k, "ts").astype(np.int64)
    # Legs follow (account, row, side, zone) and sells come before buys in a bar, so the
    # sell legs of a bar (a run of legs.run) are a block of s_idx: up to three (one per
    # zone), from the block's start. The bar a step away is the next or previous run when
    # that run holds the same account's neighbouring row.
    n_runs = int(legs.run[-1]) + 1
    run_key = np.empty(n_runs, dtype=np.int64)
    run_key[legs.run] = legs.acct * n_rows + legs.row
    n_sell = np.bincount(legs.run[s_idx], minlength=n_runs)
    sell_at = np.cumsum(n_sell) - n_sell  # the run's first sell leg's position in s_idx
    cb_parts, cs_parts, adj_parts = [], [], []
    b_run = legs.run[b_idx]
    b_key = run_key[b_run]
    for step in (-1, 0, 1):
        if step:
            r = b_run + step
            there = (r >= 0) & (r < n_runs)
            r = np.where(there, r, 0)
            there &= run_key[r] == b_key + step
            n_here = np.where(there, n_sell[r], 0)
        else:
            r, n_here = b_run, n_sell[b_run]
        for z in range(3):
            # the key's sell legs are those from the run's first sell on
            ok = n_here > z
            if not ok.any():
                continue
            bi = b_idx[ok]
            si = s_idx[sell_at[r[ok]] + z]
            if step:
                rb, rs = legs.row[bi], legs.row[si]
                same = (k_sym[rb] == k_sym[rs]) & (
                    np.abs(k_ts[rb] - k_ts[rs]) <= _ADJ_MAX_BARS * bar.value
                )
                bi, si = bi[same], si[same]
            cb_parts.append(bi)
            cs_parts.append(si)
            adj_parts.append(np.full(len(bi), step != 0))
    cb = np.concatenate(cb_parts) if cb_parts else np.zeros(0, dtype=np.int64)
    cs = np.concatenate(cs_parts) if cs_parts else np.zeros(0, dtype=np.int64)
    adj = np.concatenate(adj_parts) if adj_parts else np.zeros(0, dtype=bool)
    pb, ps = legs.pos[cb], legs.pos[cs]
    e_fwd = np.minimum(1.0 - pb, ps)
    e_rev = np.minimum(pb, 1.0 - ps)
    ext = np.maximum(e_fwd, e_rev)
    qb, qs = legs.qty[cb], legs.qty[cs]
    eq = np.abs(qb - qs) <= 1e-9 * np.maximum(qb, qs)
    score = ext + 0.25 * eq - 0.05 * adj

    # greedy matching in rounds
    free_b = np.ones(len(legs.buy), dtype=bool)
    free_s = np.ones(len(legs.buy), dtype=bool)
    keep = np.zeros(len(cb), dtype=bool)
    alive = np.ones(len(cb), dtype=bool)
    for _ in range(4):
        alive &= free_b[cb] & free_s[cs]
        if not alive.any():
            break
        cand = np.flatnonzero(alive)
        n_legs = len(legs.buy)
        best_b = cand[_first_per_group(cb[cand], score[cand], n_legs)]
        best = best_b[_first_per_group(cs[best_b], score[best_b], n_legs)]
        keep[best] = True
        free_b[cb[best]] = False
        free_s[cs[best]] = False
    sel = np.flatnonzero(keep)
    cb, cs, adj = cb[sel], cs[sel], adj[sel]
    e_fwd, ext, eq = e_fwd[sel], ext[sel], eq[sel]
    fwd = e_fwd >= ext - 1e-12
    # bar context of each leg, through one of its fills
    fb, fs = legs.first[cb], legs.first[cs]
    median = np.maximum(tr.median[fb], tr.median[fs])
    gap_abs = np.abs(legs.price[cs] - legs.price[cb])
    tick = np.fmax(tr.tick[fb], tr.tick[fs])
    with np.errstate(divide="ignore", invalid="ignore"):
        # a day whose median bar is flat: count the gap in ticks instead
        gap = np.where(median > 0, gap_abs / median, np.where(tick > 0, gap_abs / tick, 0.0))
    q = np.minimum(legs.qty[cb], legs.qty[cs])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share_b = np.minimum(legs.qty[cb] / tr.bar_volume[fb], _MAX_SHARE)
        share_s = np.minimum(legs.qty[cs] / tr.bar_volume[fs], _MAX_SHARE)
    return _RoundTrips(
        buy=cb,
        sell=cs,
        acct=legs.acct[cb],
        ext=ext,
        fwd=fwd,
        gap=np.nan_to_num(gap),
        rel=np.minimum(tr.rel[fb], tr.rel[fs]),
        rel_max=np.maximum(tr.rel[fb], tr.rel[fs]),
        ticks=np.minimum(tr.ticks[fb], tr.ticks[fs]),
        pct=np.maximum(tr.pct[fb], tr.pct[fs]),
        eq=eq,
        adjacent=adj,
        pnl=(legs.price[cs] - legs.price[cb]) * q,
        value=legs.price[cb] * legs.qty[cb] + legs.price[cs] * legs.qty[cs],
        vol_share=np.fmax(share_b, share_s),
        mirrored=legs.mirrored[cb] | legs.mirrored[cs],
    )


@dataclass
class _PairMirrors:
    """Round trips both of whose legs one account of the book mirrors. Mirroring
    accounts are codes that follow the order of their ids."""

    rt: np.ndarray  # round-trip index (a round trip may appear once per such account)
    other: np.ndarray  # that account's code
    hit_acct: np.ndarray  # (account code, mirroring account code) of every mirrored fill
    hit_other: np.ndarray


def _pair_mirrors(
    trades: pd.DataFrame, tr: _Trades, legs: _Legs, rt: _RoundTrips, book: TradeBook
) -> _PairMirrors:
    """Look up the legs of the loosely extreme round trips in ``book``."""
    none = _PairMirrors(*(np.zeros(0, dtype=np.int64),) * 4)
    loose = (rt.ext >= _MIRROR_EXT - _EPS) & (rt.gap >= _MIRROR_GAP - _EPS)
    if not loose.any():
        return none
    leg_on = np.zeros(len(legs.buy), dtype=bool)
    leg_on[rt.buy[loose]] = True
    leg_on[rt.sell[loose]] = True
    fills = np.flatnonzero((tr.leg >= 0) & leg_on[np.maximum(tr.leg, 0)])
    # the book is searched with the arrays at hand (no frame of the fills, no strings)
    if book.fetch is not None:
        book._ask(trades.iloc[fills])
    ix = book._built()
    at, rows = book._hits_arrays(
        _get_indexer(ix, "syms", tr.symbols)[tr.sym[fills]],
        tr.is_buy[fills],
        tr.price[fills],
        tr.qty[fills],
        tr.ts[fills],
        _get_indexer(ix, "accts", tr.account_ids)[tr.acct[fills]],
    )
    if len(at) == 0:
        return none
    f = fills[at]
    # the book's account codes follow the ids' order; keep that order, densely
    o_uniq, o_code = np.unique(ix["acct"][rows], return_inverse=True)
    o_code = o_code.astype(np.int64).ravel()
    n_o = len(o_uniq)
    keys = np.unique(tr.leg[f] * n_o + o_code)
    leg_of, o_of = keys // n_o, keys % n_o
    buy_rt = np.full(len(legs.buy), -1, dtype=np.int64)
    buy_rt[rt.buy[loose]] = np.flatnonzero(loose)
    r = buy_rt[leg_of]
    on_buy = r >= 0
    r, o = r[on_buy], o_of[on_buy]
    both = np.isin(rt.sell[r] * n_o + o, keys)
    return _PairMirrors(rt=r[both], other=o[both], hit_acct=tr.acct[f], hit_other=o_code)


def _mirror_features(
    f: dict[str, np.ndarray], rt: _RoundTrips, pm: _PairMirrors, n_acc: int
) -> None:
    f["n_mirror_accounts"] = np.zeros(n_acc)
    if len(pm.hit_acct):
        h_code = pm.hit_other
        span = int(h_code.max()) + 1
        pairs = np.unique(pm.hit_acct * span + h_code)
        f["n_mirror_accounts"] = np.bincount(pairs // span, minlength=n_acc).astype(np.float64)
    f["mirror_pair_share"] = np.zeros(n_acc)
    f["n_mirror_pair_strong"] = np.zeros(n_acc)
    f["mirror_pair_ext"] = np.zeros(n_acc)
    if len(pm.rt) == 0:
        return
    total = np.bincount(rt.acct, weights=rt.value, minlength=n_acc)
    # in round-trip order, as ``total`` adds them: a share of 1 is exactly 1 (bincount
    # adds in input order; a model may split at 1.0)
    by_rt = np.argsort(pm.rt, kind="stable")
    pm = _PairMirrors(pm.rt[by_rt], pm.other[by_rt], pm.hit_acct, pm.hit_other)
    # per (account, mirroring account): value, strong round trips, ext; codes in id
    # order, so ties go to the smaller id whoever else is in the data
    o_code = pm.other
    span = int(o_code.max()) + 1
    groups, inv = np.unique(rt.acct[pm.rt] * span + o_code, return_inverse=True)
    value = np.bincount(inv, weights=rt.value[pm.rt])
    strong = np.bincount(inv, weights=rt.strong[pm.rt].astype(np.float64))
    ext = np.bincount(inv, weights=rt.ext[pm.rt])
    count = np.bincount(inv).astype(np.float64)
    g_acct, g_other = groups // span, groups % span
    # each account's one mirroring account: most value, then the smaller id
    order = np.lexsort((g_other, -value, g_acct))
    first = order[np.r_[True, g_acct[order][1:] != g_acct[order][:-1]]]
    a = g_acct[first]
    f["mirror_pair_share"][a] = np.minimum(_ratio(value[first], total[a]), 1.0)
    f["n_mirror_pair_strong"][a] = strong[first]
    f["mirror_pair_ext"][a] = ext[first] / count[first]


# ---------------------------------------------------------------------------------------
# per-account aggregates
# ---------------------------------------------------------------------------------------
def _top3(rt: _RoundTrips, n_acc: int) -> list[np.ndarray]:
    """Round-trip indices of each account's 1st, 2nd and 3rd strongest (-1 if none)."""
    out = [np.full(n_acc, -1, dtype=np.int64) for _ in range(3)]
    cand = np.flatnonzero(rt.ext >= 0.5)  # weaker ones never make an account's top
    if len(cand) == 0:
        return out
    strength = rt.ext[cand] + np.minimum(rt.gap[cand], 4.0) / 4.0 + 0.25 * rt.eq[cand]
    acct = rt.acct[cand]
    # Each account's strongest, ties to the lower index, three times over (no sort; the
    # strengths are compared as they are, so an account's own code cannot change how two
    # nearly equal ones compare, or scores would depend on who else is scored).
    none = np.iinfo(np.int64).max
    for r in range(3):
        best = np.full(n_acc, -np.inf)
        np.maximum.at(best, acct, strength)
        at_best = np.flatnonzero((strength >= best[acct]) & (strength > -np.inf))
        first = np.full(n_acc, none)
        np.minimum.at(first, acct[at_best], at_best)
        has = np.flatnonzero(first < none)
        out[r][has] = cand[first[has]]
        if r < 2:
            if r == 0:
                strength = strength.copy()
            strength[first[has]] = -np.inf  # taken
    return out


def _features(tr: _Trades, legs: _Legs, rt: _RoundTrips, pm: _PairMirrors) -> pd.DataFrame:
    return pd.DataFrame(
        _feature_block(tr, legs, rt, pm),
        columns=_FEATURE_INDEX.copy(),
        index=pd.Index(tr.account_ids, name="account_id"),
    )


def _feature_block(tr: _Trades, legs: _Legs, rt: _RoundTrips, pm: _PairMirrors) -> np.ndarray:
    """:func:`_features`' values: float32, one row per account of ``tr.account_ids``,
    one column per :data:`FEATURE_NAMES` name (what the scorer reads, without a frame)."""
    n_acc = len(tr.account_ids)
    acct = tr.acct

    def count(mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        w = weights
        if mask is not None:
            w = mask.astype(np.float64) if w is None else np.where(mask, w, 0.0)
        return np.bincount(acct, weights=w, minlength=n_acc).astype(np.float64)

    def per_rt(mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        w = weights
        if mask is not None:
            w = mask.astype(np.float64) if w is None else np.where(mask, w, 0.0)
        return np.bincount(rt.acct, weights=w, minlength=n_acc).astype(np.float64)

    f: dict[str, np.ndarray] = {}
    n_tr = count()
    hb = tr.has_bar
    f["log_trades"] = np.log1p(n_tr)
    n_bars = count(tr.first_of_bar)
    f["n_bars"] = n_bars
    f["trades_per_bar"] = _ratio(count(hb), n_bars)
    f["n_symbols"] = count(tr.first_of_sym)
    f["buy_share"] = _ratio(count(tr.is_buy), n_tr)
    f["no_bar_share"] = _ratio(count(~hb), n_tr)
    n_legs = np.bincount(legs.acct, minlength=n_acc).astype(np.float64)
    f["legs_per_bar"] = _ratio(n_legs, n_bars)
    f["fills_per_leg"] = _ratio(count(hb), n_legs)

    wide = hb & (tr.ticks >= _WIDE_TICKS)
    n_wide = count(wide)
    pos = tr.pos
    f["wide_share"] = _ratio(n_wide, n_tr)
    mean = _ratio(count(wide, pos), n_wide)
    f["pos_std"] = np.sqrt(np.maximum(_ratio(count(wide, pos * pos), n_wide) - mean**2, 0.0))
    f["mid_share"] = _ratio(count(wide & (pos > 0.25) & (pos < 0.75)), n_wide)
    lo_edge = wide & (pos <= _EDGE)
    hi_edge = wide & (pos >= 1.0 - _EDGE)
    f["edge_share"] = _ratio(count(lo_edge | hi_edge), n_wide)
    fav = (tr.is_buy & lo_edge) | (~tr.is_buy & hi_edge)
    unfav = (tr.is_buy & hi_edge) | (~tr.is_buy & lo_edge)
    f["edge_fav_share"] = _ratio(count(fav), n_tr)
    f["edge_unfav_share"] = _ratio(count(unfav), n_tr)
    f["wick_share"] = _ratio(count(wide & tr.wick), n_tr)

    n_hb = count(hb)
    lrel = np.log2(np.clip(tr.rel, 1.0 / 64, 64.0))
    f["rel_mean"] = np.where(n_hb > 0, _ratio(count(hb, lrel), n_hb), 0.0)
    f["rel_max"] = _gmax(acct[hb], lrel[hb], n_acc, 0.0)
    f["quiet_share"] = _ratio(count(hb & (tr.rel <= 1.0 + _EPS)), n_tr)
    f["top_share"] = _ratio(count(hb & (tr.rank <= _TOP_BARS)), n_tr)
    f["pct_min"] = _gmin(acct[hb], tr.pct[hb], n_acc, 1.0)
    lt = np.log2(1.0 + tr.ticks)
    f["ticks_mean"] = np.where(n_hb > 0, _ratio(count(hb, lt), n_hb), 0.0)
    f["ticks_min"] = _gmin(acct[hb], lt[hb], n_acc, 0.0)
    has_vs = np.isfinite(tr.vol_share) & (tr.vol_share > 0)
    n_vs = count(has_vs)
    log_vs = np.log(np.where(has_vs, tr.vol_share, 1.0))
    f["vol_share_mean"] = np.where(n_vs > 0, np.exp(_ratio(count(has_vs, log_vs), n_vs)), np.nan)
    vs = np.where(np.isfinite(tr.vol_share), tr.vol_share, -np.inf)
    f["vol_share_max"] = _gmax(acct, vs, n_acc, np.nan)
    f["vol_share_max"][np.isneginf(f["vol_share_max"])] = np.nan
    f["size_cv"] = _size_cv(acct, tr.qty, n_tr, n_acc)

    n_rt = per_rt()
    f["n_rt"] = n_rt
    fills_in = (
        np.bincount(rt.acct, weights=legs.n_fills[rt.buy] + legs.n_fills[rt.sell], minlength=n_acc)
        if len(rt.acct)
        else np.zeros(n_acc)
    )
    f["rt_fill_share"] = _ratio(fills_in, n_tr)
    f["rt_eq_share"] = _ratio(per_rt(rt.eq), n_rt)
    f["rt_adjacent_share"] = _ratio(per_rt(rt.adjacent), n_rt)
    ext_ok = rt.ext >= STRONG_EXT - _EPS
    f["n_rt_ext"] = per_rt(ext_ok)
    f["n_rt_ext_quiet"] = per_rt(ext_ok & (rt.rel <= 1.0 + _EPS))
    strong = rt.strong
    n_strong = per_rt(strong)
    f["n_strong"] = n_strong
    f["n_strong_eq"] = per_rt(strong & rt.eq)
    f["n_strong_fwd"] = per_rt(strong & rt.fwd)
    f["n_strong_rev"] = per_rt(strong & ~rt.fwd)
    # distinct (account, bar) of strong round trips' buy legs: mark their runs
    n_runs = int(legs.run[-1]) + 1 if len(legs.run) else 0
    s_run = np.zeros(n_runs, dtype=bool)
    s_run[legs.run[rt.buy[strong]]] = True
    run_acct = np.zeros(n_runs, dtype=np.int64)
    run_acct[legs.run] = legs.acct
    f["n_strong_bars"] = np.bincount(run_acct[s_run], minlength=n_acc).astype(np.float64)
    f["n_strong_hi"] = per_rt((rt.ext >= 0.9) & (rt.gap >= 2.0))
    f["n_strong_loose"] = per_rt((rt.ext >= 0.6) & (rt.gap >= 0.75))
    f["n_strong_top"] = per_rt(strong & (rt.pct <= 0.1))
    # Other legs in a strong round trip's bars: a thief's legs stand alone in their
    # bars; the most extreme pairs picked out of dense fills at random prices do not.
    legs_in_bar = legs.in_bar
    same_bar = legs.row[rt.buy] == legs.row[rt.sell] if len(rt.buy) else np.zeros(0, bool)
    others = np.where(
        same_bar,
        legs_in_bar[rt.buy] - 2,
        legs_in_bar[rt.buy] + legs_in_bar[rt.sell] - 2,
    ) if len(rt.buy) else np.zeros(0)  # fmt: skip
    f["n_strong_pure"] = per_rt(strong & (others <= 0))
    f["strong_crowd"] = _ratio(per_rt(strong, others), n_strong)
    wide_rt = rt.gap >= STRONG_GAP - _EPS
    n_rt_wide = per_rt(wide_rt)
    f["n_rt_wide"] = n_rt_wide
    f["strong_share_wide"] = _ratio(n_strong, n_rt_wide)
    f["ext_mean_wide"] = _ratio(per_rt(wide_rt, rt.ext), n_rt_wide)
    f["strong_gap_sum"] = per_rt(strong, np.minimum(rt.gap, 20.0))
    f["strong_pnl_sign"] = _ratio(per_rt(strong, np.sign(rt.pnl)), n_strong)
    f["strong_adjacent_share"] = _ratio(per_rt(strong & rt.adjacent), n_strong)
    vs_rt = np.where(strong & np.isfinite(rt.vol_share), rt.vol_share, -np.inf)
    svm = _gmax(rt.acct, vs_rt, n_acc, np.nan)
    svm[np.isneginf(svm)] = np.nan
    f["strong_vol_share_max"] = svm

    tops = _top3(rt, n_acc)
    for r, idx in enumerate(tops[:2], start=1):
        has = idx >= 0
        j = np.where(has, idx, 0)

        def take(
            a: np.ndarray, fill: float, has: np.ndarray = has, j: np.ndarray = j
        ) -> np.ndarray:
            if len(a) == 0:
                return np.full(n_acc, fill)
            return np.where(has, a[j], fill)

        f[f"rt{r}_ext90"] = np.minimum(take(rt.ext, 0.0), _RT_EXT_CAP)
        f[f"rt{r}_gap"] = np.log2(1.0 + np.minimum(take(rt.gap, 0.0), 64.0))
        f[f"rt{r}_rel"] = np.log2(np.clip(take(rt.rel, 1.0), 1.0 / 64, 64.0))
        f[f"rt{r}_ticks"] = np.log2(1.0 + take(rt.ticks, 0.0))
        f[f"rt{r}_pct"] = take(rt.pct, 1.0)
        f[f"rt{r}_eq"] = take(rt.eq.astype(np.float64), 0.0)
    has3 = tops[2] >= 0
    j3 = np.where(has3, tops[2], 0)
    f["rt3_ext90"] = (
        np.where(has3, np.minimum(rt.ext[j3], _RT_EXT_CAP), 0.0) if len(rt.ext) else np.zeros(n_acc)
    )
    f["rt3_gap"] = (
        np.where(has3, np.log2(1.0 + np.minimum(rt.gap[j3], 64.0)), 0.0)
        if len(rt.gap)
        else np.zeros(n_acc)
    )

    _mirror_features(f, rt, pm, n_acc)

    # One float32 block: a frame built from ~70 separate columns costs more than the
    # features themselves on the real-time worker's small batches.
    block = np.empty((n_acc, len(FEATURE_NAMES)), dtype=np.float32)
    for col, name in enumerate(FEATURE_NAMES):
        block[:, col] = f[name]
    return block


def _size_cv(acct: np.ndarray, qty: np.ndarray, n_tr: np.ndarray, n_acc: int) -> np.ndarray:
    """Each account's coefficient of variation of its fill sizes (0 without fills).

    From the sums of the sizes and of their squares; an account whose sums do not fit a
    float (sizes beyond ~1e154) gets it from its sizes divided by its largest, which
    leaves the ratio as it is and keeps every sum at most its number of fills."""

    def cv(q: np.ndarray) -> np.ndarray:
        mean = _ratio(np.bincount(acct, weights=q, minlength=n_acc), n_tr)
        sq = _ratio(np.bincount(acct, weights=q * q, minlength=n_acc), n_tr)
        return _ratio(np.sqrt(np.maximum(sq - mean**2, 0.0)), mean)

    with np.errstate(over="ignore", invalid="ignore"):
        out = cv(qty)
    big = ~np.isfinite(out)
    if big.any():
        largest = _gmax(acct, qty, n_acc, 1.0)
        out[big] = cv(qty / largest[acct])[big]
    return out


def _analyse(data: MarketData) -> tuple[_Trades, _Legs, _RoundTrips, _PairMirrors]:
    return _analyse_bars(data)[1:]


def _analyse_bars(
    data: MarketData,
) -> tuple[pd.DataFrame, _Trades, _Legs, _RoundTrips, _PairMirrors]:
    """:func:`_analyse`, with the k-lines it read first (the traded symbols' k-lines
    sorted by ``(symbol, ts)``)."""
    # one factorisation of the trades' symbols serves the bars' selection and search
    symbols = _factorize(_text(data.trades, "symbol"))
    k, k_symbols = _traded_sorted_klines(data.klines, data.trades, symbols[1])
    tr = _trade_arrays(data.trades, k, data.bar, symbols=symbols, k_symbols=k_symbols)
    legs = _legs(tr)
    rt = _round_trips(tr, legs, k, data.bar)
    pm = _pair_mirrors(data.trades, tr, legs, rt, data.the_book())
    return k, tr, legs, rt, pm


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def account_features(data: MarketData) -> pd.DataFrame:
    """One row of float32 features per account, in ``data.account_ids`` order.

    Parameters
    ----------
    data
        Trades and the k-lines of what they traded (whole UTC days: a bar is read against
        its symbol-day). Trades outside every bar still count in the activity features
        (``no_bar_share``) but take no part in the bar features. The ``mirror_*``
        features read ``data.book`` (``data.trades`` when None): pass the same book to
        score accounts alone or in chunks as with all of them.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``account_id``; columns :data:`FEATURE_NAMES`, all ``float32``
        (``vol_share_*`` are NaN when the k-lines carry no volume).
    """
    if len(data.trades) == 0:
        return pd.DataFrame(
            {name: np.zeros(0, dtype=np.float32) for name in FEATURE_NAMES},
            index=pd.Index([], name="account_id", dtype=object),
        )
    return _features(*_analyse(data))


def trade_level_frame(data: MarketData) -> pd.DataFrame:
    """Every trade joined to its bar, with its place in the bar and its round trip.

    Parameters
    ----------
    data
        Trades and k-lines.

    Returns
    -------
    pandas.DataFrame
        The trades (same row order) plus:

        ``bar_row, bar_ts, bar_open, bar_high, bar_low, bar_close``
            the bar (as :func:`~fraudlens.market.data.attach_bars`; -1 / NaN if none).
        ``pos``
            position in the bar's range (0 = low, 1 = high).
        ``wick``
            the fill is priced exactly at the bar's high or low.
        ``amp_rank`` / ``bars_in_day``
            the bar's range rank within its symbol-day (1 = widest) and the day's bars.
        ``rel`` / ``ticks``
            the bar's range over the day's median range, and in ticks.
        ``rt_partner``
            row position of a fill of the opposite leg of the fill's round trip (-1 if
            none); ``rt_ext``, ``rt_gap``, ``rt_forward`` (buy low / sell high),
            ``rt_adjacent``, ``rt_equal_qty`` and ``rt_strong`` describe that round trip.
        ``mirrored``
            the fill is a leg of an extreme round trip and another account in ``data``
            took the other side of it.
    """
    base = data.trades.reset_index(drop=True)
    n = len(base)
    k = _sorted_klines(data.klines)
    if n == 0:
        tr_cols: dict[str, Any] = {}
        return base.assign(**tr_cols)
    tr = _trade_arrays(base, k, data.bar)
    legs = _legs(tr)
    rt = _round_trips(tr, legs, k, data.bar)
    _mark_mirrors(base, tr, legs, rt)
    cols: dict[str, Any] = {}
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
    cols["amp_rank"] = tr.rank
    cols["bars_in_day"] = tr.n_day
    cols["rel"] = tr.rel
    cols["ticks"] = tr.ticks
    # each fill -> its leg -> the leg's round trip -> the other leg's first fill
    leg_rt = np.full(len(legs.buy), -1, dtype=np.int64)
    leg_other = np.full(len(legs.buy), -1, dtype=np.int64)
    r = np.arange(len(rt.buy))
    leg_rt[rt.buy] = r
    leg_rt[rt.sell] = r
    leg_other[rt.buy] = legs.first[rt.sell]
    leg_other[rt.sell] = legs.first[rt.buy]
    fill_rt = np.where(tr.leg >= 0, leg_rt[np.maximum(tr.leg, 0)], -1)
    in_rt = fill_rt >= 0
    j = np.maximum(fill_rt, 0)
    cols["rt_partner"] = np.where(in_rt, leg_other[np.maximum(tr.leg, 0)], -1)

    def per(a: np.ndarray, fill: Any) -> np.ndarray:
        if len(a) == 0:
            return np.full(n, fill)
        return np.where(in_rt, a[j], fill)

    cols["rt_ext"] = per(rt.ext, np.nan)
    cols["rt_gap"] = per(rt.gap, np.nan)
    cols["rt_forward"] = per(rt.fwd, False).astype(bool)
    cols["rt_adjacent"] = per(rt.adjacent, False).astype(bool)
    cols["rt_equal_qty"] = per(rt.eq, False).astype(bool)
    cols["rt_strong"] = per(rt.strong, False).astype(bool)
    cols["mirrored"] = tr.mirrored
    extra = pd.DataFrame(cols, index=base.index)
    return pd.concat([base.drop(columns=list(cols), errors="ignore"), extra], axis=1)


def equal_size_legs(
    trades: pd.DataFrame,
    k: pd.DataFrame,
    bar: pd.Timedelta,
    ctx: BarContext,
    bar_row: np.ndarray,
) -> np.ndarray:
    """Per fill (rows of ``trades``): it belongs to a round trip whose two legs have the
    same size. ``k`` sorted by ``(symbol, ts)`` with its ``ctx``, ``bar_row`` each
    trade's row in ``k``; used by the renderer."""
    if len(trades) == 0:
        return np.zeros(0, dtype=bool)
    tr = _trade_arrays(trades, k, bar, ctx=ctx, bar_row=bar_row)
    legs = _legs(tr)
    rt = _round_trips(tr, legs, k, bar)
    leg_eq = np.zeros(len(legs.buy), dtype=bool)
    leg_eq[rt.buy[rt.eq]] = True
    leg_eq[rt.sell[rt.eq]] = True
    return np.where(tr.leg >= 0, leg_eq[np.maximum(tr.leg, 0)], False)
