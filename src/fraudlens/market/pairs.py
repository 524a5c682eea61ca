"""Counterparty linkage and value moved: mirrored trades, account pairs, round trips.

A thief who controls a stolen account moves value out of it by trading against an
account of their own: the stolen account buys at a bar's high what the receiving account
sells, and sells at the low what it buys back. On the book this leaves *mirrored* trades:
two accounts on opposite sides of the same symbol, at the same price and quantity, at
(nearly) the same time. Three levels of evidence are read from a trade table:

:func:`find_pairs`
    mirrored trade matches, one row per matched buy/sell, each trade in at most one
    match (greedy, nearest in time first).
:func:`account_pairs`
    one row per ordered ``(account, counterparty)``: the matches between them, the
    round trips those matches make, and the value moved between the two.
:func:`account_evidence`
    one row per account, for every account in the table: the value its own matched round
    trips moved (whether or not the counterparty is in the data), its strongest mirror
    partner and how much of its trading is mirrored. The feature detector, the scores
    table, the service and the risk events read these columns.

Terms
-----
round trip
    a buy and a sell of the same symbol and the same quantity by one account. Its
    *value lost* is ``(buy price - sell price) x quantity`` in the quote currency:
    positive when the account bought dearer than it sold (value moved out of it),
    negative when it gained. *Value moved* is the magnitude of the net value lost.
equal price / quantity
    prices (per symbol) and quantities are grouped into levels: sorted, a value more
    than ``tol x value`` above the previous one starts a new level. With the default
    relative tolerance of 1e-9, far below any instrument's tick from 1e-8 (coins quoted
    in BTC) to 1e5, a level is one price as written, whatever float noise a database
    or a computation added.

Matching is greedy in a fixed total order of candidate edges (time gap, then distance
in the ``(group, ts, input row)`` order, then position): the closest pair is matched
first, then the closest among the rest, and so on. It is computed in rounds that each
accept every edge that is the best remaining edge of both its trades; such an edge is
the one the sequential greedy would take, so the result equals it. Each round is a few
vectorised passes over the remaining trades (no Python loop per trade); realistic books
settle in a handful of rounds. A chain of trades at one price whose time gaps grow
monotonically would settle one pair per round: when rounds stop making progress, the
rest goes to the same greedy run one edge at a time (a heap and union-finds, about
``n log n``), which tests check against the rounds and against brute force.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from fraudlens.market.data import BAR, _bar_positions

__all__ = [
    "DEFAULT_MAX_GAP",
    "DEFAULT_PRICE_TOL",
    "DEFAULT_QTY_TOL",
    "EVIDENCE_COLUMNS",
    "EVIDENCE_DESCRIPTIONS",
    "MATCH_COLUMNS",
    "MIN_MATCHED",
    "PAIR_COLUMNS",
    "ROUND_TRIP_COLUMNS",
    "account_evidence",
    "account_pairs",
    "find_pairs",
    "mirrored_mask",
    "round_trips",
]

#: Two legs of one execution carry the same timestamp; a minute also covers books that
#: stamp each side when it is booked.
DEFAULT_MAX_GAP: Final = pd.Timedelta(seconds=60)
#: Relative tolerance for "equal price" (see the module docstring).
DEFAULT_PRICE_TOL: Final = 1e-9
#: Relative tolerance for "equal quantity".
DEFAULT_QTY_TOL: Final = 1e-9
#: Fewest mirrored trades with one partner for it to be named the counterparty: one
#: mirrored round trip. A single coincidental fill at a popular price is not enough.
MIN_MATCHED: Final = 2

#: Columns of :func:`find_pairs`.
MATCH_COLUMNS: Final = (
    "symbol",
    "price",
    "quantity",
    "buy_trade_id",
    "sell_trade_id",
    "buy_account",
    "sell_account",
    "buy_ts",
    "sell_ts",
    "gap_seconds",
    "buy_row",
    "sell_row",
)

#: Columns of :func:`account_pairs`.
PAIR_COLUMNS: Final = (
    "account_id",
    "counterparty",
    "n_matched",
    "n_round_trips",
    "value_lost",
    "value_moved",
    "symbols",
    "first_ts",
    "last_ts",
    "trade_ids",
    "counterparty_trade_ids",
)

#: Columns of :func:`round_trips`.
ROUND_TRIP_COLUMNS: Final = (
    "account_id",
    "symbol",
    "quantity",
    "buy_price",
    "sell_price",
    "value_lost",
    "buy_trade_id",
    "sell_trade_id",
    "buy_ts",
    "sell_ts",
    "buy_row",
    "sell_row",
)

#: What each column of :func:`account_evidence` holds.
EVIDENCE_DESCRIPTIONS: Final[dict[str, str]] = {
    "value_moved": "|value_lost|: value the account's own round trips moved, quote currency",
    "value_lost": "sum of (buy - sell) x quantity over the account's own round trips "
    "(> 0: moved out of the account, < 0: into it)",
    "n_round_trips": "own round trips: equal-quantity buy/sell legs in the same or adjacent bars",
    "round_trip_share": "share of the account's trades that are a round-trip leg",
    "n_trades": "trades of the account",
    "n_mirrored": "trades of the account matched by a mirror trade of another account",
    "mirrored_share": "n_mirrored / n_trades",
    "n_counterparties": "accounts with at least one mirror trade against this one",
    "counterparty": "the strongest mirror partner (most value moved, then most matches) "
    "with at least MIN_MATCHED matches; None if none",
    "counterparty_n_matched": "mirrored trades with the counterparty",
    "counterparty_round_trips": "round trips made of trades mirrored by the counterparty",
    "counterparty_value_lost": "value the account lost to the counterparty through them",
    "counterparty_value_moved": "|counterparty_value_lost|",
}
#: Column order of :func:`account_evidence`.
EVIDENCE_COLUMNS: Final[tuple[str, ...]] = tuple(EVIDENCE_DESCRIPTIONS)

_NO_LIMIT: Final = np.iinfo(np.int64).max // 4
#: Vectorised matching rounds before a slow-settling remainder goes to the sequential
#: greedy (module-level so tests can force either path).
_FAST_ROUNDS = 16


# ---------------------------------------------------------------------------------------
# array helpers
# ---------------------------------------------------------------------------------------
def _group_order(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices sorting by ``group`` then ``value``, ties in input order."""
    order = np.argsort(value, kind="stable")
    return order[np.argsort(group[order], kind="stable")]


def _dense(key: np.ndarray) -> np.ndarray:
    """Dense ids ``0..k-1`` of the distinct values of an integer key."""
    codes, _ = pd.factorize(key)
    return np.asarray(codes, dtype=np.int64)


def _combine(*codes: np.ndarray) -> np.ndarray:
    """Dense ids of the distinct tuples of non-negative integer codes."""
    out = codes[0].astype(np.int64)
    for c in codes[1:]:
        c = c.astype(np.int64)
        span = int(c.max(initial=0)) + 1
        out = _dense(out * span + c) if len(out) else out
    return out


def _levels(group: np.ndarray, value: np.ndarray, rel_tol: float) -> np.ndarray:
    """Dense level ids: values per group within ``rel_tol`` of the previous one share it."""
    n = len(value)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = _group_order(group, value)
    g, v = group[order], value[order]
    new = np.r_[True, (g[1:] != g[:-1]) | (v[1:] - v[:-1] > rel_tol * np.abs(v[1:]))]
    out = np.empty(n, dtype=np.int64)
    out[order] = np.cumsum(new) - 1
    return out


def _sorted_codes(column: Any) -> tuple[np.ndarray, Any]:
    """``pd.factorize(column.astype(str), sort=True)``: int64 codes into the sorted
    distinct values. A column of strings needs no ``astype(str)`` copy, and a short one
    is coded by :func:`fraudlens.market._bars._factorize` without pandas' fixed cost.
    ``column`` is a Series or a pandas string array (``features._text``)."""
    from fraudlens.market._bars import _factorize

    if pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        codes, uniques = _factorize(column, sort=True)
        if not bool((codes < 0).any()):  # a missing value takes astype(str) below
            return np.asarray(codes, dtype=np.int64), uniques
    if not isinstance(column, pd.Series):
        column = pd.Series(column, copy=False)
    codes, uniques = pd.factorize(column.astype(str), sort=True)
    return np.asarray(codes, dtype=np.int64), uniques


def _side_index(trades: pd.DataFrame) -> np.ndarray:
    from fraudlens._isin import equals
    from fraudlens.market.features import _SHORT_SIDES, _array

    values = _array(trades, "side")
    if isinstance(values.dtype, pd.StringDtype) and len(values) <= _SHORT_SIDES:
        # a few values: compared in Python (pyarrow's compute calls cost more)
        sides = values.tolist()
        if all(v == "buy" or v == "sell" for v in sides):
            return np.fromiter((v == "buy" for v in sides), dtype=bool, count=len(sides))
    side = trades["side"]
    is_buy = equals(side, "buy")
    if not bool((is_buy | equals(side, "sell")).all()):
        # frames that skipped validation ("BUY", " sell")
        norm = side.astype(str).str.strip().str.lower()
        is_buy = (norm == "buy").to_numpy(dtype=bool)
        bad = ~is_buy & (norm != "sell").to_numpy(dtype=bool)
        if bad.any():
            i = int(bad.argmax())
            raise ValueError(f"row {i + 1}: unknown side {side.iloc[i]!r} (expected buy or sell)")
    return is_buy


def _ts_ns(s: pd.Series) -> np.ndarray:
    return s.to_numpy("datetime64[ns]").astype(np.int64)


def _to_utc(ns: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(ns, utc=True)).astype("datetime64[ns, UTC]")


def _nearest(
    n: int, is_side: np.ndarray, group: np.ndarray, account: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """For every position, the nearest element of ``is_side`` to its left and right.

    With ``account``, elements of the position's own account are skipped: the result is
    the nearest element whose account differs (in the same group, when one exists). -1 /
    ``n`` mean none.
    """
    idx = np.arange(n)
    left = np.maximum.accumulate(np.where(is_side, idx, -1))
    right = np.minimum.accumulate(np.where(is_side, idx, n)[::-1])[::-1]
    if account is None:
        return left, right
    members = np.flatnonzero(is_side)
    m = len(members)
    if m == 0:
        return left, right
    ga, aa = group[members], account[members]
    change = (ga[1:] != ga[:-1]) | (aa[1:] != aa[:-1])
    k = np.arange(m)
    run_first = np.maximum.accumulate(np.where(np.r_[True, change], k, 0))
    run_last = np.minimum.accumulate(np.where(np.r_[change, True], k, m - 1)[::-1])[::-1]
    before = np.where(run_first > 0, members[np.maximum(run_first - 1, 0)], -1)
    after = np.where(run_last < m - 1, members[np.minimum(run_last + 1, m - 1)], n)
    rank = np.cumsum(is_side) - 1  # rank among members, valid at member positions
    has_l = left >= 0
    own_l = has_l & (account[np.where(has_l, left, 0)] == account)
    left = np.where(own_l, before[rank[np.where(has_l, left, 0)]], left)
    has_r = right < n
    own_r = has_r & (account[np.where(has_r, right, 0)] == account)
    right = np.where(own_r, after[rank[np.where(has_r, right, n - 1)]], right)
    return left, right


def _eligible(
    j: np.ndarray,
    me: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    a: np.ndarray | None,
    limit: int,
) -> np.ndarray:
    """Which candidates ``j`` (-1 / n: none) can match the elements ``me``."""
    inside = (j >= 0) & (j < len(g))
    jj = np.where(inside, j, 0)
    good = inside & (g[jj] == g[me]) & (np.abs(v[jj] - v[me]) <= limit)
    if a is not None:
        good &= a[jj] != a[me]
    return good


def _best_partners(
    g: np.ndarray,
    t: np.ndarray,
    b: np.ndarray,
    v: np.ndarray,
    a: np.ndarray | None,
    pos: np.ndarray,
    limit: int,
) -> np.ndarray:
    """Each element's best eligible partner (index, -1 if none) in the edge order."""
    n = len(g)
    best = np.full(n, -1, dtype=np.int64)
    for side in (True, False):
        me = np.flatnonzero(b == side)
        left, right = _nearest(n, b != side, g, a)
        lo, ro = left[me], right[me]
        okl, okr = _eligible(lo, me, g, v, a, limit), _eligible(ro, me, g, v, a, limit)
        lo_s, ro_s = np.where(okl, lo, 0), np.where(okr, ro, 0)
        gap_l, gap_r = t[me] - t[lo_s], t[ro_s] - t[me]
        dist_l, dist_r = pos[me] - pos[lo_s], pos[ro_s] - pos[me]
        # ties in gap and distance go left (the smaller lower end)
        take_l = okl & (~okr | (gap_l < gap_r) | ((gap_l == gap_r) & (dist_l <= dist_r)))
        best[me] = np.where(take_l, lo, np.where(okr, ro, -1))
    return best


def _match_line(
    group: np.ndarray,
    ts: np.ndarray,
    is_buy: np.ndarray,
    near: np.ndarray,
    limit: int,
    account: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching of buys with sells, nearest in time first.

    Parameters
    ----------
    group
        Integer key: only a buy and a sell of the same group can match.
    ts
        int64 time of each element; the edge cost is ``|ts_buy - ts_sell|``.
    is_buy
        Side of each element.
    near, limit
        An edge also needs ``|near_buy - near_sell| <= limit``; ``near`` must not
        decrease with ``ts`` inside a group (the time itself, or a bar number).
    account
        If given, a buy and a sell of the same account never match.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Input indices of the matched buys and of their sells, in the order matched.

    Notes
    -----
    Edges are ordered by ``(gap, |p_b - p_s|, min(p_b, p_s))`` where ``p`` is the
    position in the ``(group, ts, input index)`` order, a strict total order. On a time
    line the best edge of an element is to its nearest eligible partner on the left or
    on the right, so each round looks at two candidates per element, accepts the edges
    that are the best of both ends, and drops matched elements and elements with no
    eligible partner left (removing elements only moves partners further away).
    """
    order = _group_order(group, ts)
    g, t, b, v = group[order], ts[order], is_buy[order], near[order]
    a = account[order] if account is not None else None
    pos = np.arange(len(order))
    out_b: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    rounds = 0
    while len(g):
        n = len(g)
        rounds += 1
        last = len(out_b[-1]) if out_b else 0
        if rounds > _FAST_ROUNDS and 64 * last < n:
            # a long chain of ever wider gaps settles one pair per round: finish the
            # remaining elements with the sequential greedy instead
            sb, ss = _match_sequential(g, t, b, v, limit, a, pos)
            out_b.append(pos[sb])
            out_s.append(pos[ss])
            break
        best = _best_partners(g, t, b, v, a, pos, limit)
        buys = np.flatnonzero(b & (best >= 0))
        mutual = buys[best[best[buys]] == buys]
        sells = best[mutual]
        out_b.append(pos[mutual])
        out_s.append(pos[sells])
        keep = best >= 0
        keep[mutual] = False
        keep[sells] = False
        g, t, b, v, pos = g[keep], t[keep], b[keep], v[keep], pos[keep]
        if a is not None:
            a = a[keep]
    if not out_b:
        e = np.zeros(0, dtype=np.int64)
        return e, e
    return order[np.concatenate(out_b)], order[np.concatenate(out_s)]


class _Alive:
    """Nearest still-alive member at or before / after a rank (union-find, path halving)."""

    def __init__(self, m: int) -> None:
        self.left = list(range(m + 1))  # slot r + 1 stands for rank r; slot 0 = none
        self.right = list(range(m + 1))  # slot r stands for rank r; slot m = none

    def kill(self, r: int) -> None:
        self.left[r + 1] = r
        self.right[r] = r + 1

    def at_or_before(self, r: int) -> int:
        par = self.left
        x = r + 1
        while par[x] != x:
            par[x] = par[par[x]]
            x = par[x]
        return x - 1

    def at_or_after(self, r: int) -> int:
        par = self.right
        x = r
        while par[x] != x:
            par[x] = par[par[x]]
            x = par[x]
        return x


class _Runs:
    """Runs of one (group, account) among a side's members, as ranks; a union-find whose
    roots hold each run's lowest and highest rank. Two runs of one account merge when the
    last alive member between them is matched."""

    def __init__(self, first: list[int], last: list[int]) -> None:
        self.parent = list(first)
        self.lo = list(first)
        self.hi = list(last)

    def find(self, r: int) -> int:
        par = self.parent
        while par[r] != r:
            par[r] = par[par[r]]
            r = par[r]
        return r

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[ry] = rx
            self.lo[rx] = min(self.lo[rx], self.lo[ry])
            self.hi[rx] = max(self.hi[rx], self.hi[ry])


def _match_sequential(
    g: np.ndarray,
    t: np.ndarray,
    b: np.ndarray,
    v: np.ndarray,
    limit: int,
    a: np.ndarray | None,
    p: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The greedy of :func:`_match_line`, one edge at a time (for what the rounds leave).

    Elements are sorted by ``(group, ts, input index)``; ``p`` holds their positions
    for the edge order's tie-breaks. Returns indices into the elements. A
    heap holds each element's best edge when it was last computed; an element's best
    only gets worse as others are matched, so the smallest entry whose two ends are
    alive and whose partner is still its best is the smallest edge left.
    """
    import heapq

    n = len(g)
    gl, tl, bl, vl, pl = g.tolist(), t.tolist(), b.tolist(), v.tolist(), p.tolist()
    al = a.tolist() if a is not None else None
    members = {side: np.flatnonzero(b == side).tolist() for side in (True, False)}
    rank = np.empty(n, dtype=np.int64)
    for side in (True, False):
        rank[b == side] = np.arange(int((b == side).sum()))
    # rank of the last member of each side at or before every position
    before = {side: (np.cumsum(b == side) - 1).tolist() for side in (True, False)}
    alive = {side: _Alive(len(members[side])) for side in (True, False)}
    # first / last rank of each run of one (group, account) among a side's members
    run_first: dict[bool, list[int]] = {}
    run_last: dict[bool, list[int]] = {}
    for side in (True, False):
        mem = np.asarray(members[side], dtype=np.int64)
        m = len(mem)
        if m == 0:
            run_first[side], run_last[side] = [], []
            continue
        change = g[mem][1:] != g[mem][:-1]
        if a is not None:
            change |= a[mem][1:] != a[mem][:-1]
        k = np.arange(m)
        run_first[side] = np.maximum.accumulate(np.where(np.r_[True, change], k, 0)).tolist()
        run_last[side] = np.minimum.accumulate(np.where(np.r_[change, True], k, m - 1)[::-1])[
            ::-1
        ].tolist()
    runs = {side: _Runs(run_first[side], run_last[side]) for side in (True, False)}
    done = [False] * n

    def partner(i: int, step: int) -> int:
        side = not bl[i]
        mem, live, run = members[side], alive[side], runs[side]
        m = len(mem)
        r = before[side][i] if step < 0 else before[side][i] + 1
        while True:
            r = live.at_or_before(r) if step < 0 else live.at_or_after(r)
            if r < 0 or r >= m:
                return -1
            j = mem[r]
            if gl[j] != gl[i]:
                return -1
            if al is None or al[j] != al[i]:
                return j if abs(vl[j] - vl[i]) <= limit else -1
            # skip the partner's run of the element's own account: the member beyond it
            # is of another account (the runs merge as members between them are matched)
            root = run.find(r)
            r = run.lo[root] - 1 if step < 0 else run.hi[root] + 1

    def kill(i: int) -> None:
        side = bl[i]
        mem, live = members[side], alive[side]
        r = int(rank[i])
        live.kill(r)
        if al is None:
            return
        lo, hi = live.at_or_before(r - 1), live.at_or_after(r + 1)
        if lo >= 0 and hi < len(mem):
            x, y = mem[lo], mem[hi]
            if gl[x] == gl[y] and al[x] == al[y]:
                runs[side].union(lo, hi)

    def best(i: int) -> tuple[int, int, int, int] | None:
        lo, hi = partner(i, -1), partner(i, 1)
        cands = []
        for j in (lo, hi):
            if j >= 0:
                cands.append((abs(tl[i] - tl[j]), abs(pl[i] - pl[j]), min(pl[i], pl[j]), j))
        return min(cands) if cands else None

    heap: list[tuple[int, int, int, int, int]] = []
    for i in range(n):
        e = best(i)
        if e is not None:
            heap.append((*e[:3], i, e[3]))
    heapq.heapify(heap)
    out_b: list[int] = []
    out_s: list[int] = []
    while heap:
        *_, i, j = heapq.heappop(heap)
        if done[i]:
            continue
        if done[j]:
            e = best(i)
            if e is not None:
                heapq.heappush(heap, (*e[:3], i, e[3]))
            continue
        done[i] = done[j] = True
        kill(i)
        kill(j)
        bi, si = (i, j) if bl[i] else (j, i)
        out_b.append(bi)
        out_s.append(si)
    return np.asarray(out_b, dtype=np.int64), np.asarray(out_s, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# shared preparation
# ---------------------------------------------------------------------------------------
class _Book:
    """A trade table as integer arrays (one pass of factorising and sorting)."""

    def __init__(self, trades: pd.DataFrame, price_tol: float, qty_tol: float) -> None:
        if price_tol < 0 or qty_tol < 0:
            raise ValueError("price_tol and qty_tol must be >= 0")
        from fraudlens.market.features import _floats, _ns, _text

        self.trades = trades
        self.n = len(trades)
        # the string arrays, not a Series each (pandas' fixed cost per column)
        self.acct, self.account_ids = _sorted_codes(_text(trades, "account_id"))
        self.sym, self.symbols = _sorted_codes(_text(trades, "symbol"))
        self.is_buy = _side_index(trades)
        # the columns' arrays without a Series each (pandas' fixed cost per column)
        self.price = _floats(trades, "price")
        self.qty = _floats(trades, "quantity")
        self.ts = _ns(trades, "ts").astype(np.int64)
        self.price_level = _levels(self.sym, self.price, price_tol)
        self.qty_level = _levels(np.zeros(self.n, dtype=np.int64), self.qty, qty_tol)

    def mirrors(self, max_gap: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
        """Matched (buy, sell) row indices of mirrored trades."""
        gap = int(pd.Timedelta(max_gap).value)
        if gap < 0:
            raise ValueError("max_gap must be >= 0")
        if self.n == 0:
            e = np.zeros(0, dtype=np.int64)
            return e, e
        group = _combine(self.price_level, self.qty_level)
        return _match_line(group, self.ts, self.is_buy, self.ts, gap, account=self.acct)

    def own_round_trips(self, bar_no: np.ndarray, adjacent: int) -> tuple[np.ndarray, np.ndarray]:
        """(buy, sell) row indices of each account's equal-quantity round trips."""
        if self.n == 0:
            e = np.zeros(0, dtype=np.int64)
            return e, e
        group = _combine(self.acct, self.sym, self.qty_level)
        return _match_line(group, self.ts, self.is_buy, bar_no, adjacent)

    def bar_numbers(self, klines: pd.DataFrame | None, bar: pd.Timedelta) -> np.ndarray:
        """Each trade's bar as a number of bars since the epoch (its own time if no bar)."""
        bar_ns = int(pd.Timedelta(bar).value)
        start = self.ts.copy()
        if klines is not None and len(klines) and self.n:
            from fraudlens.market.features import _is_sorted, _ns, _traded_symbols_only

            # the store's bars are those of the traded symbols: no copy when all are kept
            # (a few bars: a set lookup per bar, less than pyarrow's is_in of the symbols)
            k = _traded_symbols_only(klines, self.trades, self.symbols)
            # bars from the store come sorted: a stable sort would change nothing
            if not _is_sorted(k):
                k = k.sort_values(["symbol", "ts"], kind="stable")
            if not k.index.equals(pd.RangeIndex(len(k))):
                k = k.reset_index(drop=True)
            rows = _bar_positions(self.trades, k, pd.Timedelta(bar))
            has = rows >= 0
            start = np.where(has, _ns(k, "ts").astype(np.int64)[np.where(has, rows, 0)], self.ts)
        return np.floor_divide(start, bar_ns)


def _trade_ids(trades: pd.DataFrame) -> np.ndarray:
    return trades["trade_id"].astype(str).to_numpy(dtype=object)


def _match_frame(book: _Book, bi: np.ndarray, si: np.ndarray) -> pd.DataFrame:
    order = np.lexsort((bi, np.minimum(book.ts[bi], book.ts[si])))
    bi, si = bi[order], si[order]
    ids = _trade_ids(book.trades)
    acc = np.asarray(book.account_ids, dtype=object)
    sym = np.asarray(book.symbols, dtype=object)
    return pd.DataFrame(
        {
            "symbol": pd.Series(sym[book.sym[bi]], dtype=object),
            "price": book.price[bi],
            "quantity": book.qty[bi],
            "buy_trade_id": pd.Series(ids[bi], dtype=object),
            "sell_trade_id": pd.Series(ids[si], dtype=object),
            "buy_account": pd.Series(acc[book.acct[bi]], dtype=object),
            "sell_account": pd.Series(acc[book.acct[si]], dtype=object),
            "buy_ts": _to_utc(book.ts[bi]),
            "sell_ts": _to_utc(book.ts[si]),
            "gap_seconds": np.abs(book.ts[bi] - book.ts[si]) / 1e9,
            "buy_row": bi.astype(np.int64),
            "sell_row": si.astype(np.int64),
        },
        columns=list(MATCH_COLUMNS),
    )


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def find_pairs(
    trades: pd.DataFrame,
    *,
    max_gap: pd.Timedelta | str = DEFAULT_MAX_GAP,
    price_tol: float = DEFAULT_PRICE_TOL,
    qty_tol: float = DEFAULT_QTY_TOL,
) -> pd.DataFrame:
    """Mirrored trade matches: one account's buy against another's sell.

    A buy and a sell mirror each other when they are of the same symbol, at equal price
    and quantity (within the relative tolerances), at most ``max_gap`` apart, and of
    different accounts. Each trade is in at most one match: the closest in time first
    (see the module docstring for the exact, deterministic order).

    Parameters
    ----------
    trades
        The trades contract: ``trade_id, account_id, symbol, ts, side, price,
        quantity`` (as the loaders of :mod:`fraudlens.market.data` return it).
    max_gap
        Largest time between the two legs.
    price_tol, qty_tol
        Relative tolerances for equal price and quantity (0 = exact).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MATCH_COLUMNS`, one row per match, ordered by the earlier leg's
        time: ``symbol, price, quantity`` (of the buy), the two trade ids, accounts and
        times, ``gap_seconds``, and ``buy_row`` / ``sell_row``, the positions of the two
        legs in ``trades``.
    """
    book = _Book(trades, price_tol, qty_tol)
    bi, si = book.mirrors(pd.Timedelta(max_gap))
    return _match_frame(book, bi, si)


def mirrored_mask(
    trades: pd.DataFrame,
    *,
    max_gap: pd.Timedelta | str = DEFAULT_MAX_GAP,
    price_tol: float = DEFAULT_PRICE_TOL,
    qty_tol: float = DEFAULT_QTY_TOL,
) -> np.ndarray:
    """Which rows of ``trades`` are mirrored by another account's trade (:func:`find_pairs`).

    Returns
    -------
    numpy.ndarray
        Boolean, one per row of ``trades`` in its row order.
    """
    book = _Book(trades, price_tol, qty_tol)
    bi, si = book.mirrors(pd.Timedelta(max_gap))
    out = np.zeros(len(trades), dtype=bool)
    out[bi] = True
    out[si] = True
    return out


def round_trips(
    trades: pd.DataFrame,
    klines: pd.DataFrame | None = None,
    *,
    bar: pd.Timedelta = BAR,
    adjacent: int = 1,
    qty_tol: float = DEFAULT_QTY_TOL,
) -> pd.DataFrame:
    """Each account's own round trips: equal-quantity buy/sell legs in near bars.

    A buy and a sell of one account, symbol and quantity whose bars are at most
    ``adjacent`` bars apart (1: the same or the next bar) make a round trip; each trade
    is in at most one, the closest in time first.

    Parameters
    ----------
    trades
        The trades contract.
    klines
        The bars (the trade's bar is the one containing it); without them, or for a
        trade no bar contains, bars are ``bar``-long slots from the epoch.
    bar
        Bar length.
    adjacent
        Largest distance between the legs' bars, in bars.
    qty_tol
        Relative tolerance for equal quantity.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ROUND_TRIP_COLUMNS`; ``value_lost = (buy_price - sell_price) x
        quantity``.
    """
    book = _Book(trades, 0.0, qty_tol)
    bi, si = book.own_round_trips(book.bar_numbers(klines, bar), adjacent)
    order = np.lexsort((bi, np.minimum(book.ts[bi], book.ts[si])))
    bi, si = bi[order], si[order]
    ids = _trade_ids(trades)
    acc = np.asarray(book.account_ids, dtype=object)
    sym = np.asarray(book.symbols, dtype=object)
    q = np.minimum(book.qty[bi], book.qty[si])
    return pd.DataFrame(
        {
            "account_id": pd.Series(acc[book.acct[bi]], dtype=object),
            "symbol": pd.Series(sym[book.sym[bi]], dtype=object),
            "quantity": q,
            "buy_price": book.price[bi],
            "sell_price": book.price[si],
            "value_lost": (book.price[bi] - book.price[si]) * q,
            "buy_trade_id": pd.Series(ids[bi], dtype=object),
            "sell_trade_id": pd.Series(ids[si], dtype=object),
            "buy_ts": _to_utc(book.ts[bi]),
            "sell_ts": _to_utc(book.ts[si]),
            "buy_row": bi.astype(np.int64),
            "sell_row": si.astype(np.int64),
        },
        columns=list(ROUND_TRIP_COLUMNS),
    )


class _PairStats:
    """Per unordered account pair: matches, mirrored round trips and value lost."""

    def __init__(self, book: _Book, bi: np.ndarray, si: np.ndarray, max_hold: int) -> None:
        n_acc = len(book.account_ids)
        ab, as_ = book.acct[bi], book.acct[si]
        self.lo = np.minimum(ab, as_)
        self.hi = np.maximum(ab, as_)
        key = self.lo * max(n_acc, 1) + self.hi
        codes, uniq = pd.factorize(key)
        self.code = np.asarray(codes, dtype=np.int64)
        self.n = len(uniq)
        uniq = np.asarray(uniq, dtype=np.int64)
        self.pair_lo = uniq // max(n_acc, 1)
        self.pair_hi = uniq % max(n_acc, 1)
        self.n_matched = np.bincount(self.code, minlength=self.n).astype(np.int64)
        # the lower account's leg of each match: buy when the lower account bought
        lo_bought = ab == self.lo
        self.lo_leg = np.where(lo_bought, bi, si)
        self.hi_leg = np.where(lo_bought, si, bi)
        leg = self.lo_leg
        group = _combine(self.code, book.sym[leg], book.qty_level[leg])
        rb, rs = _match_line(group, book.ts[leg], lo_bought, book.ts[leg], max_hold)
        q = np.minimum(book.qty[leg[rb]], book.qty[leg[rs]])
        lost = (book.price[leg[rb]] - book.price[leg[rs]]) * q
        # value the lower account lost to the higher one
        self.lo_lost = np.bincount(self.code[rb], weights=lost, minlength=self.n)
        self.n_round_trips = np.bincount(self.code[rb], minlength=self.n).astype(np.int64)


def account_pairs(
    trades: pd.DataFrame,
    *,
    max_gap: pd.Timedelta | str = DEFAULT_MAX_GAP,
    price_tol: float = DEFAULT_PRICE_TOL,
    qty_tol: float = DEFAULT_QTY_TOL,
    max_hold: pd.Timedelta | str | None = None,
) -> pd.DataFrame:
    """Account pairs whose trades mirror each other, with the value moved between them.

    Every pair appears twice, once from each side, so all of an account's
    counterparties are its rows. Mirrored round trips pair the account's matched buys
    with its matched sells of the same symbol and quantity against the same
    counterparty, closest in time first.

    Parameters
    ----------
    trades
        The trades contract.
    max_gap, price_tol, qty_tol
        As in :func:`find_pairs`.
    max_hold
        Longest time between the two legs of a mirrored round trip (None: any time in
        the data).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PAIR_COLUMNS`, sorted by ``value_moved`` then ``n_matched``
        (largest first), then account and counterparty: ``n_matched`` mirrored trades,
        ``n_round_trips``, ``value_lost`` (what the account lost to the counterparty
        through those round trips, quote currency; the counterparty's row has the
        opposite sign), ``value_moved = |value_lost|``, ``symbols`` (``;``-joined),
        ``first_ts`` / ``last_ts`` of the matched trades, and the matched ``trade_ids``
        of each side (``;``-joined, in time order).
    """
    book = _Book(trades, price_tol, qty_tol)
    bi, si = book.mirrors(pd.Timedelta(max_gap))
    hold = _NO_LIMIT if max_hold is None else int(pd.Timedelta(max_hold).value)
    st = _PairStats(book, bi, si, hold)
    acc = np.asarray(book.account_ids, dtype=object)
    ids = _trade_ids(trades)
    sym = np.asarray(book.symbols, dtype=object)

    # per pair, matched trades in time order: ids of each side and symbols
    order = np.lexsort((st.lo_leg, book.ts[st.lo_leg], st.code))
    code_o = st.code[order]
    first_ts = np.full(st.n, np.iinfo(np.int64).max)
    last_ts = np.full(st.n, np.iinfo(np.int64).min)
    both_ts = np.minimum(book.ts[bi], book.ts[si])
    np.minimum.at(first_ts, st.code, both_ts)
    np.maximum.at(last_ts, st.code, np.maximum(book.ts[bi], book.ts[si]))
    frame = pd.DataFrame(
        {
            "code": code_o,
            "lo_id": ids[st.lo_leg[order]],
            "hi_id": ids[st.hi_leg[order]],
            "sym": sym[book.sym[st.lo_leg[order]]],
        }
    )
    grouped = frame.groupby("code", sort=True)
    lo_ids = grouped["lo_id"].agg(";".join).reindex(range(st.n)).to_numpy(dtype=object)
    hi_ids = grouped["hi_id"].agg(";".join).reindex(range(st.n)).to_numpy(dtype=object)
    syms = (
        grouped["sym"]
        .agg(lambda s: ";".join(sorted(set(s))))
        .reindex(range(st.n))
        .to_numpy(dtype=object)
    )
    out = pd.DataFrame(
        {
            "account_id": np.r_[acc[st.pair_lo], acc[st.pair_hi]],
            "counterparty": np.r_[acc[st.pair_hi], acc[st.pair_lo]],
            "n_matched": np.r_[st.n_matched, st.n_matched],
            "n_round_trips": np.r_[st.n_round_trips, st.n_round_trips],
            "value_lost": np.r_[st.lo_lost, -st.lo_lost],
            "value_moved": np.r_[np.abs(st.lo_lost), np.abs(st.lo_lost)],
            "symbols": np.r_[syms, syms],
            "first_ts": _to_utc(np.r_[first_ts, first_ts]),
            "last_ts": _to_utc(np.r_[last_ts, last_ts]),
            "trade_ids": np.r_[lo_ids, hi_ids],
            "counterparty_trade_ids": np.r_[hi_ids, lo_ids],
        },
        columns=list(PAIR_COLUMNS),
    )
    for col in ("account_id", "counterparty", "symbols", "trade_ids", "counterparty_trade_ids"):
        out[col] = out[col].astype(object)
    out = out.sort_values(
        ["value_moved", "n_matched", "account_id", "counterparty"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    return out.reset_index(drop=True)


def account_evidence(
    trades: pd.DataFrame,
    klines: pd.DataFrame | None = None,
    *,
    bar: pd.Timedelta = BAR,
    adjacent: int = 1,
    max_gap: pd.Timedelta | str = DEFAULT_MAX_GAP,
    price_tol: float = DEFAULT_PRICE_TOL,
    qty_tol: float = DEFAULT_QTY_TOL,
    min_matched: int = MIN_MATCHED,
) -> pd.DataFrame:
    """Per-account value moved and counterparty evidence, for every account.

    ``value_moved`` comes from the account's own round trips (:func:`round_trips`), so
    it is there whether or not the other side of the trades is in the data. The
    counterparty columns come from mirrored trades (:func:`find_pairs`) with other
    accounts in ``trades``; mirrored round trips with a counterparty pair matched buys
    and sells with no time limit (the data is the scoring window).

    Parameters
    ----------
    trades
        The trades contract (normally one scoring window of many accounts: the more of
        the book it holds, the more counterparties are found).
    klines
        The bars of the traded symbols (see :func:`round_trips`; optional).
    bar, adjacent
        Bar length and the largest bar distance of a round trip's legs.
    max_gap, price_tol, qty_tol
        As in :func:`find_pairs`.
    min_matched
        Fewest mirrored trades with one partner for it to be named ``counterparty``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``account_id`` (sorted; every account of ``trades``), columns
        :data:`EVIDENCE_COLUMNS` (see :data:`EVIDENCE_DESCRIPTIONS`): floats for values
        and shares, int64 counts, ``counterparty`` as ``str`` or ``None``.
    """
    acc, cols = _evidence_arrays(
        trades,
        klines,
        bar=bar,
        adjacent=adjacent,
        max_gap=max_gap,
        price_tol=price_tol,
        qty_tol=qty_tol,
        min_matched=min_matched,
    )
    out = pd.DataFrame(cols, columns=list(EVIDENCE_COLUMNS))
    out.index = pd.Index(acc, name="account_id", dtype=object)
    return out


def _evidence_arrays(
    trades: pd.DataFrame,
    klines: pd.DataFrame | None = None,
    *,
    bar: pd.Timedelta = BAR,
    adjacent: int = 1,
    max_gap: pd.Timedelta | str = DEFAULT_MAX_GAP,
    price_tol: float = DEFAULT_PRICE_TOL,
    qty_tol: float = DEFAULT_QTY_TOL,
    min_matched: int = MIN_MATCHED,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`account_evidence` as arrays: the sorted account ids (object) and one
    column per :data:`EVIDENCE_COLUMNS` name (``counterparty`` a Series of objects),
    in the ids' order."""
    book = _Book(trades, price_tol, qty_tol)
    n_acc = len(book.account_ids)
    acc = np.asarray(book.account_ids, dtype=object)

    rb, rs = book.own_round_trips(book.bar_numbers(klines, bar), adjacent)
    q = np.minimum(book.qty[rb], book.qty[rs])
    lost = np.bincount(
        book.acct[rb], weights=(book.price[rb] - book.price[rs]) * q, minlength=n_acc
    )
    n_rt = np.bincount(book.acct[rb], minlength=n_acc)
    n_trades = np.bincount(book.acct, minlength=n_acc)

    bi, si = book.mirrors(pd.Timedelta(max_gap))
    st = _PairStats(book, bi, si, _NO_LIMIT)
    n_mirrored = np.bincount(np.r_[book.acct[bi], book.acct[si]], minlength=n_acc)

    # both directions of every pair, then the strongest partner per account
    who = np.r_[st.pair_lo, st.pair_hi]
    other = np.r_[st.pair_hi, st.pair_lo]
    p_matched = np.r_[st.n_matched, st.n_matched]
    p_rt = np.r_[st.n_round_trips, st.n_round_trips]
    p_lost = np.r_[st.lo_lost, -st.lo_lost]
    n_cp = np.bincount(who, minlength=n_acc)
    cand = np.flatnonzero(p_matched >= min_matched)
    # best first: most value moved, most matches, smallest counterparty id (codes are
    # in sorted id order)
    rank = np.lexsort((other[cand], -p_matched[cand], -np.abs(p_lost[cand]), who[cand]))
    cand = cand[rank]
    first = np.r_[True, who[cand][1:] != who[cand][:-1]] if len(cand) else np.zeros(0, bool)
    top = cand[first]
    counterparty = np.full(n_acc, None, dtype=object)
    cp_matched = np.zeros(n_acc, dtype=np.int64)
    cp_rt = np.zeros(n_acc, dtype=np.int64)
    cp_lost = np.zeros(n_acc, dtype=np.float64)
    counterparty[who[top]] = acc[other[top]]
    cp_matched[who[top]] = p_matched[top]
    cp_rt[who[top]] = p_rt[top]
    cp_lost[who[top]] = p_lost[top]

    with np.errstate(divide="ignore", invalid="ignore"):
        rt_share = np.where(n_trades > 0, 2.0 * n_rt / n_trades, 0.0)
        m_share = np.where(n_trades > 0, n_mirrored / n_trades, 0.0)
    return acc, {
        "value_moved": np.abs(lost),
        "value_lost": lost + 0.0,  # no negative zero
        "n_round_trips": n_rt.astype(np.int64),
        "round_trip_share": rt_share,
        "n_trades": n_trades.astype(np.int64),
        "n_mirrored": n_mirrored.astype(np.int64),
        "mirrored_share": m_share,
        "n_counterparties": n_cp.astype(np.int64),
        "counterparty": pd.Series(counterparty, dtype=object),
        "counterparty_n_matched": cp_matched,
        "counterparty_round_trips": cp_rt,
        "counterparty_value_lost": cp_lost + 0.0,
        "counterparty_value_moved": np.abs(cp_lost),
    }
