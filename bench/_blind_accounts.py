"""A third, blind account generator for the real-bar check (``bench/market_real.py``).

Written from the data contract and the behaviour catalogue of issue 9 only, without
reading fraudlens's simulator or ``bench/_alt_accounts.py``, so that it tests the
detectors on behaviour nobody tuned them for. Use::

    trades, labels = BlindGenerator(klines, seed).run(n_accounts)

``trades`` follows the trades contract (``trade_id, account_id, symbol, ts, side,
price, quantity``; every trade inside a bar of its symbol, price within the bar's
``[low, high]``, on the symbol-day's tick); ``labels`` is ``account_id, label, kind``.
Half the accounts (``n // 2``) are takeovers (label 1), the beneficiaries included.

Parameter choices (this generator's own):

- **Symbol-days.** An account is anchored on a symbol-day with at least 24 bars, drawn
  uniformly, so every symbol-day holds several accounts. The tick of a symbol-day is the
  largest 1/2/2.5/5 x 10^k step on which 99 % of its prices lie; every fill price is
  rounded to it and clipped into its bar. A bar's *relative range* is its range over
  the median range of its day's non-zero bars.
- **Quantities.** A per-symbol scale of 0.5 % of the median bar volume (10,000 quote
  units' worth when the bars carry no volume), times a per-account log-normal factor
  (sigma 1.0). Instruments priced at 50 or more trade whole units; others trade either
  round lots (1, 2, 2.5, 5 x 10^k) or fractional coin sizes (3 significant digits).
- **Times.** A fill's time is uniform inside its bar (to the millisecond), or, for a
  quarter of the accounts, whole seconds. Every account's trades lie within 24 h, so
  the scoring window (the 24 h that end at its latest trade) sees them all.
- **Partial fills.** Normal orders are split into 2-4 fills at the same price (or one
  tick inside), 0-20 s apart, with probability 0.15 (limit traders 0.3, market makers
  0.1, scalpers 0.05).

Normal kinds (label 0; weights in ``NORMAL_KINDS``):

- ``few_trades``: 1-3 orders anywhere in a day, uniform price in the bar.
- ``market_orders``: a day trader's 3-15 round trips by market order in narrow bars
  (at most 4 ticks or the day's median range): buys at the bar's high (ask), sells at
  its low (bid), held 1-24 bars; a third of them short first.
- ``market_maker``: quotes both sides 15-120 times a day in quiet bars (relative
  range <= 1, at least one tick): buy at the low, sell at the high, equal quote size,
  in the same bar (60 %) or the next; half sell first; a fifth of the quotes of another
  size.
- ``momentum_stopped``: one losing round trip: a buy within 15 % of the high of a
  breakout bar (top 30 % ranges of its day, new 1-hour high), stopped out within 15 %
  of the low of the same bar (when it closes in its lower half) or of the next bar;
  mirrored for short-sellers (40 %); 1.5 x the usual size; plus 0-4 unrelated trades.
- ``scalper``: 5-30 quick round trips of equal quantity in quiet bars, both fills
  uniform in the middle 60 % of the range, closed in the same or the next 2 bars.
- ``volume_chaser``: 3-12 trades in the day's 5 % busiest bars (widest when no
  volume), buying up bars and selling down bars (a fifth the other way), at uniform
  prices.
- ``small_fills``: 20-80 fills of 1-10 % of the account's size, random sides and bars.
- ``limit_trader``: resting limit orders: buys filled in the lower 20 % of a bar,
  sells in the upper 20 % of a later bar (2-40 bars on), unequal quantities, partial
  fills.
- ``overnight``: a position opened in the last 1-6 h of a day and closed in the first
  1-8 h of the next (trades on two UTC days), 2-8 trades, some scaling in.
- ``multi_symbol``: 2-10 random trades on each of 2-4 symbols trading that day.

Takeover kinds (label 1). A takeover's round trip moves value out of the victim: a buy
at (or near) a volatile bar's high and a sell of the same quantity at (or near) the
low; 30 % sell at the low first and buy back at the high. Volatile bars: relative range
>= 1.5 and at least 4 ticks (``rough``: >= 1.2; the day's widest tenth when there are
fewer than two); round-trip size 1-4 x the account's usual size.

- ``to_classic``: 3-6 round trips, both legs in one bar, within 5 % of the extremes;
  a fifth over two symbols.
- ``to_adjacent``: 2-5 round trips whose legs sit in adjacent bars (buy near bar i's
  high, sell near bar i+1's low, or reverse, whichever moves more), within 5 %; the
  two bars' extremes >= 1.5 median ranges apart (each bar alone may be ordinary; the
  widest tenth of such moves when none is).
- ``to_rough``: 2-5 round trips only roughly at the extremes (within 25 % of the range).
- ``to_two_trips``: exactly two round trips (four trades), within 10 %; 30 % with legs
  in adjacent bars.
- ``to_busy_owner``: 2-3 round trips (within 10 %) inside the owner's busy day (a
  ``market_orders``, ``small_fills``, ``scalper`` or ``limit_trader`` day, the round
  trips in the hours it traded when they hold three volatile bars); in 30 % of cases
  (when the next day has bars) the owner's 8-29 trades run from the last 4 h of one day
  into the first 6 h of the next, and the round trips fall after midnight.
- ``to_split``: 2-4 round trips whose legs are split into 2-6 fills, each within two
  ticks of the leg's price, 0.5-8 s apart.
- ``beneficiary``: the thief's own account: one fill on the other side of each of a
  victim's takeover fills, same symbol, price and quantity, 0-40 s away in the same
  bar; half of them also make 1-3 trades of their own. About 30 % of victims have
  their beneficiary in the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NORMAL_KINDS: dict[str, float] = {
    "few_trades": 0.11,
    "market_orders": 0.12,
    "market_maker": 0.13,
    "momentum_stopped": 0.14,
    "scalper": 0.09,
    "volume_chaser": 0.07,
    "small_fills": 0.08,
    "limit_trader": 0.09,
    "overnight": 0.09,
    "multi_symbol": 0.08,
}
TAKEOVER_KINDS: dict[str, float] = {
    "to_classic": 0.13,
    "to_adjacent": 0.13,
    "to_rough": 0.13,
    "to_two_trips": 0.13,
    "to_busy_owner": 0.13,
    "to_split": 0.13,
    "beneficiary": 0.22,
}
_BAR_NS = 300 * 10**9
_DAY_NS = 86400 * 10**9
_MIN_DAY_BARS = 24


def _tick_of(prices: np.ndarray) -> float:
    """Largest 1/2/2.5/5 x 10^k step on which 99 % of ``prices`` lie."""
    p = prices[np.isfinite(prices) & (prices > 0)]
    if len(p) == 0:
        return 1e-8
    top = int(np.floor(np.log10(p.max())))
    for k in range(top, -13, -1):
        for m in (5.0, 2.5, 2.0, 1.0):
            t = m * 10.0**k
            r = p / t
            on = np.abs(r - np.round(r)) <= 1e-6 + 1e-9 * np.abs(r)
            if on.mean() >= 0.99:
                return t
    return 10.0**-12


def _counts(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` over the weighted kinds."""
    names = list(weights)
    w = np.array([weights[k] for k in names], dtype=float)
    raw = n * w / w.sum()
    base = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - base))[: n - base.sum()]:
        base[i] += 1
    return dict(zip(names, base.tolist(), strict=True))


@dataclass
class _Sym:
    name: str
    ts: np.ndarray  # int64 ns bar starts
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    v: np.ndarray
    day: np.ndarray  # int day number of each bar
    tick: np.ndarray  # per bar (its day's tick)
    rel: np.ndarray  # range / day's median non-zero range
    med: np.ndarray  # that median range, per bar
    ticks: np.ndarray  # range in ticks
    vol_rank: np.ndarray  # volume (or range) percentile inside its day
    rng_rank: np.ndarray  # range percentile inside its day
    adjacent: np.ndarray  # bar i+1 starts 5 min after bar i
    qscale: float
    whole: bool  # trades whole units


@dataclass
class _Fill:
    sym: int
    bar: int
    sec: float  # seconds into the bar
    side: str
    price: float
    qty: float
    take: bool = False  # part of a takeover round trip (mirrored by a beneficiary)


class BlindGenerator:
    """Blind accounts on real k-lines (see the module docstring for the parameters)."""

    def __init__(self, klines: pd.DataFrame, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        #: account id -> a word on how it was made (diagnostics only; not in the labels)
        self.detail: dict[str, str] = {}
        self._note = ""
        k = klines.copy()
        k["ts"] = pd.to_datetime(k["ts"], utc=True)
        k = k.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        self.syms: list[_Sym] = []
        self.anchors: list[tuple[int, int]] = []  # (sym index, day)
        for name, g in k.groupby("symbol", sort=True):
            self.syms.append(self._symbol(str(name), g))
        for si, s in enumerate(self.syms):
            days, cnt = np.unique(s.day, return_counts=True)
            self.anchors += [
                (si, int(d)) for d, c in zip(days, cnt, strict=True) if c >= _MIN_DAY_BARS
            ]
        if not self.anchors:
            raise ValueError(f"no symbol-day with at least {_MIN_DAY_BARS} bars")

    # ----------------------------------------------------------------- bars
    @staticmethod
    def _symbol(name: str, g: pd.DataFrame) -> _Sym:
        ts = pd.DatetimeIndex(g["ts"]).as_unit("ns").asi8
        o, h, lo, c = (g[x].to_numpy(dtype=float) for x in ("open", "high", "low", "close"))
        v = g["volume"].to_numpy(dtype=float)
        day = ts // _DAY_NS
        n = len(ts)
        tick, rel, med_range, vr, rr = (np.zeros(n) for _ in range(5))
        rngs = h - lo
        for d in np.unique(day):
            m = day == d
            t = _tick_of(np.concatenate([o[m], h[m], lo[m], c[m]]))
            tick[m] = t
            nz = rngs[m][rngs[m] > 0]
            med = float(np.median(nz)) if len(nz) else t
            rel[m] = rngs[m] / med
            med_range[m] = med
            key = v[m] if v[m].max() > 0 else rngs[m]
            vr[m] = pd.Series(key).rank(pct=True).to_numpy()
            rr[m] = pd.Series(rngs[m]).rank(pct=True).to_numpy()
        adjacent = np.zeros(n, dtype=bool)
        adjacent[:-1] = np.diff(ts) == _BAR_NS
        pos = v[v > 0]
        price = float(np.median(c))
        qscale = 0.005 * float(np.median(pos)) if len(pos) else 10_000.0 / price
        return _Sym(name, ts, o, h, lo, c, v, day, tick, rel, med_range, rngs / tick, vr, rr,
                    adjacent, max(qscale, 1e-9), price >= 50)  # fmt: skip

    def _day_bars(self, si: int, day: int) -> np.ndarray:
        s = self.syms[si]
        a, b = np.searchsorted(s.day, [day, day + 1])
        return np.arange(a, b)

    def _bars_between(self, si: int, t0: int, t1: int) -> np.ndarray:
        s = self.syms[si]
        a, b = np.searchsorted(s.ts, [t0, t1])
        return np.arange(a, b)

    def _window(self, si: int, day: int, hours: float) -> np.ndarray:
        """Bars of a random ``hours`` long stretch of the symbol-day."""
        bars = self._day_bars(si, day)
        s = self.syms[si]
        span = int(hours * 3600e9)
        first, last = s.ts[bars[0]], s.ts[bars[-1]]
        if last - first <= span:
            return bars
        t0 = int(self.rng.integers(first, last - span + 1))
        out = self._bars_between(si, t0, t0 + span)
        return out if len(out) else bars

    # ------------------------------------------------------------- prices
    def _price(self, si: int, b: int, u: float) -> float:
        """Price at fraction ``u`` of bar ``b``'s range, on the tick, inside the bar."""
        s = self.syms[si]
        t = s.tick[b]
        p = s.lo[b] + float(np.clip(u, 0.0, 1.0)) * (s.h[b] - s.lo[b])
        p = float(f"{round(p / t) * t:.12g}")
        return float(min(max(p, s.lo[b]), s.h[b]))

    def _near(self, si: int, b: int, top: bool, within: float) -> float:
        d = self.rng.uniform(0.0, within)
        return self._price(si, b, 1.0 - d if top else d)

    def _sec(self, whole: bool) -> float:
        x = self.rng.uniform(0.0, 299.999)
        return float(np.floor(x)) if whole else round(x, 3)

    # -------------------------------------------------------------- sizes
    def _size_fn(self, si: int):
        """A per-account size drawer (its lot style fixed for the account)."""
        s = self.syms[si]
        base = s.qscale * float(np.exp(self.rng.normal(0.0, 1.0)))
        style = "int" if s.whole else ("round" if self.rng.random() < 0.5 else "frac")

        def draw(mult: float = 1.0, spread: float = 0.4) -> float:
            q = base * mult * float(np.exp(self.rng.normal(0.0, spread)))
            return self._lot(q, style)

        draw.style = style  # type: ignore[attr-defined]
        return draw

    @staticmethod
    def _lot(q: float, style: str) -> float:
        if style == "int":
            return float(max(1, round(q)))
        k = np.floor(np.log10(max(q, 1e-12)))
        if style == "round":
            m = q / 10.0**k
            nice = min((1.0, 2.0, 2.5, 5.0, 10.0), key=lambda x: abs(x - m))
            return float(f"{nice * 10.0**k:.12g}")
        return float(f"{q:.3g}")

    def _nudged(self, si: int, b: int, side: str, price: float, ticks: int) -> float:
        """``price`` moved ``ticks`` ticks into bar ``b`` (down for a buy, up for a
        sell), kept within the bar."""
        s = self.syms[si]
        p = price + s.tick[b] * ticks * (-1 if side == "buy" else 1)
        return float(min(max(float(f"{p:.12g}"), s.lo[b]), s.h[b]))

    @staticmethod
    def _later(sec: float, gap: float, whole: bool) -> float:
        """``gap`` seconds after ``sec`` within the bar (whole seconds when ``whole``)."""
        sec = min(299.999, round(sec + gap, 3))
        return float(np.floor(sec)) if whole else sec

    def _split_qty(self, q: float, parts: int, style: str) -> list[float]:
        if style == "int":
            q = int(q)
            parts = max(1, min(parts, q))
            if parts == 1:
                return [float(q)]
            cuts = np.sort(self.rng.choice(np.arange(1, q), parts - 1, replace=False))
            return [float(x) for x in np.diff(np.concatenate([[0], cuts, [q]]))]
        w = self.rng.dirichlet(np.ones(parts) * 2.0)
        qs = [float(f"{q * x:.6g}") for x in w[:-1]]
        last = q - sum(qs)
        if last <= q * 1e-6:
            return [q]
        return [*qs, float(f"{last:.12g}")]

    # ------------------------------------------------------------- orders
    def _order(self, out: list[_Fill], si: int, b: int, side: str, price: float, qty: float,
               whole: bool, p_split: float = 0.15, style: str = "frac",
               take: bool = False) -> None:  # fmt: skip
        """One order's fills: usually one, sometimes a partial-fill sequence."""
        sec = self._sec(whole)
        if self.rng.random() < p_split:
            parts = int(self.rng.integers(2, 5))
            for q in self._split_qty(qty, parts, style):
                p = price
                if self.rng.random() < 0.3:  # walks a tick into the bar
                    p = self._nudged(si, b, side, price, 1)
                out.append(_Fill(si, b, sec, side, p, q, take))
                sec = self._later(sec, float(self.rng.uniform(0.0, 20.0)), whole)
        else:
            out.append(_Fill(si, b, sec, side, price, qty, take))

    def _rand_trade(self, out: list[_Fill], si: int, bars: np.ndarray, size, whole: bool,
                    side: str | None = None) -> None:  # fmt: skip
        b = int(self.rng.choice(bars))
        side = side or ("buy" if self.rng.random() < 0.5 else "sell")
        self._order(out, si, b, side, self._price(si, b, self.rng.uniform()), size(), whole,
                    style=size.style)  # fmt: skip

    # ----------------------------------------------------- normal kinds
    def _few_trades(self, si, day, whole):
        out: list[_Fill] = []
        bars = self._day_bars(si, day)
        size = self._size_fn(si)
        for _ in range(int(self.rng.integers(1, 4))):
            self._rand_trade(out, si, bars, size, whole)
        return out

    def _market_orders(self, si, day, whole, hours=None):
        s = self.syms[si]
        bars = self._window(si, day, hours or self.rng.uniform(3, 12))
        med_ticks = np.median(s.ticks[bars])
        narrow = bars[(s.ticks[bars] >= 1) & ((s.ticks[bars] <= 4) | (s.ticks[bars] <= med_ticks))]
        if len(narrow) < 2:
            narrow = bars
        size = self._size_fn(si)
        out: list[_Fill] = []
        for _ in range(int(self.rng.integers(3, 16))):
            b = int(self.rng.choice(narrow))
            later = narrow[(narrow > b) & (narrow <= b + 24)]
            b2 = int(self.rng.choice(later)) if len(later) else b
            q = size()
            short = self.rng.random() < 1 / 3
            first, second = ("sell", "buy") if short else ("buy", "sell")
            for bb, side in ((b, first), (b2, second)):
                self._order(out, si, bb, side, s.h[bb] if side == "buy" else s.lo[bb], q,
                            whole, style=size.style)  # fmt: skip
        return out

    def _quiet(self, si, bars):
        s = self.syms[si]
        q = bars[(s.rel[bars] <= 1.0) & (s.ticks[bars] >= 1)]
        return q if len(q) >= 2 else bars

    def _market_maker(self, si, day, whole):
        s = self.syms[si]
        bars = self._window(si, day, self.rng.uniform(6, 23))
        quiet = self._quiet(si, bars)
        size = self._size_fn(si)
        quote = size(1.0, 0.0)
        out: list[_Fill] = []
        for _ in range(int(self.rng.integers(15, 121))):
            b = int(self.rng.choice(quiet))
            b2 = b + 1 if (self.rng.random() > 0.6 and s.adjacent[b] and b + 1 < len(s.ts)) else b
            q = quote if self.rng.random() > 0.2 else size(1.0, 0.0)
            legs = [(b, "buy", s.lo[b]), (b2, "sell", s.h[b2])]
            if self.rng.random() < 0.5:
                legs = [(b, "sell", s.h[b]), (b2, "buy", s.lo[b2])]
            for bb, side, p in legs:
                self._order(out, si, bb, side, float(p), q, whole, p_split=0.1, style=size.style)
        return out

    def _momentum_stopped(self, si, day, whole):
        s = self.syms[si]
        bars = self._day_bars(si, day)
        wide = bars[s.rng_rank[bars] >= 0.7]
        short = self.rng.random() < 0.4
        cands = []
        for b in wide:
            lo_hist = max(bars[0], b - 12)
            if b == lo_hist:
                continue
            if not short and s.h[b] > s.h[lo_hist:b].max():
                cands.append(b)
            if short and s.lo[b] < s.lo[lo_hist:b].min():
                cands.append(b)
        pool = np.array(cands) if cands else wide if len(wide) else bars
        size = self._size_fn(si)
        out: list[_Fill] = []
        for _ in range(30):
            b = int(self.rng.choice(pool))
            entry = self._near(si, b, top=not short, within=0.15)
            # stop in the same bar if it closed on the losing side, else the next bar
            same = (
                (s.c[b] < (s.h[b] + s.lo[b]) / 2)
                if not short
                else (s.c[b] > (s.h[b] + s.lo[b]) / 2)
            )
            b2 = b if (same or not s.adjacent[b] or b + 1 >= len(s.ts)) else b + 1
            stop = self._near(si, b2, top=short, within=0.15)
            if (not short and stop < entry) or (short and stop > entry):
                break
        else:
            return self._few_trades(si, day, whole)
        q = size(1.5)
        e_side, x_side = ("sell", "buy") if short else ("buy", "sell")
        sec = self._sec(whole)
        if b2 == b:  # stopped out later in the entry's bar
            sec = min(sec, 280.0)
        out.append(_Fill(si, b, sec, e_side, entry, q))
        sec2 = self._sec(whole) if b2 != b else sec + self.rng.uniform(1.0, 299.999 - sec)
        out.append(
            _Fill(si, b2, float(np.floor(sec2)) if whole else round(sec2, 3), x_side, stop, q)
        )
        for _ in range(int(self.rng.integers(0, 5))):
            self._rand_trade(out, si, bars, size, whole)
        return out

    def _scalper(self, si, day, whole):
        s = self.syms[si]
        bars = self._window(si, day, self.rng.uniform(2, 10))
        quiet = self._quiet(si, bars)
        size = self._size_fn(si)
        out: list[_Fill] = []
        for _ in range(int(self.rng.integers(5, 31))):
            b = int(self.rng.choice(quiet))
            b2 = min(b + int(self.rng.integers(0, 3)), len(s.ts) - 1)
            if s.day[b2] != s.day[b]:
                b2 = b
            q = size()
            first = "buy" if self.rng.random() < 0.6 else "sell"
            second = "sell" if first == "buy" else "buy"
            for bb, side in ((b, first), (b2, second)):
                p = self._price(si, bb, self.rng.uniform(0.2, 0.8))
                self._order(out, si, bb, side, p, q, whole, p_split=0.05, style=size.style)
        return out

    def _volume_chaser(self, si, day, whole):
        s = self.syms[si]
        bars = self._day_bars(si, day)
        busy = bars[s.vol_rank[bars] >= 0.95]
        busy = busy if len(busy) else bars
        size = self._size_fn(si)
        out: list[_Fill] = []
        for _ in range(int(self.rng.integers(3, 13))):
            b = int(self.rng.choice(busy))
            side = "buy" if s.c[b] >= s.o[b] else "sell"
            if self.rng.random() < 0.2:
                side = "sell" if side == "buy" else "buy"
            self._order(out, si, b, side, self._price(si, b, self.rng.uniform()), size(), whole,
                        style=size.style)  # fmt: skip
        return out

    def _small_fills(self, si, day, whole, hours=None):
        bars = self._window(si, day, hours or self.rng.uniform(2, 23))
        size = self._size_fn(si)
        out: list[_Fill] = []
        drift = self.rng.uniform(0.3, 0.7)
        for _ in range(int(self.rng.integers(20, 81))):
            b = int(self.rng.choice(bars))
            side = "buy" if self.rng.random() < drift else "sell"
            q = size(self.rng.uniform(0.01, 0.1), 0.3)
            out.append(
                _Fill(si, b, self._sec(whole), side, self._price(si, b, self.rng.uniform()), q)
            )
        return out

    def _limit_trader(self, si, day, whole, hours=None):
        bars = self._window(si, day, hours or self.rng.uniform(4, 23))
        size = self._size_fn(si)
        out: list[_Fill] = []
        for _ in range(int(self.rng.integers(2, 9))):
            b = int(self.rng.choice(bars))
            later = bars[(bars >= b + 2) & (bars <= b + 40)]
            q = size()
            self._order(out, si, b, "buy", self._price(si, b, self.rng.uniform(0, 0.2)), q, whole,
                        p_split=0.3, style=size.style)  # fmt: skip
            if len(later):
                b2 = int(self.rng.choice(later))
                q2 = size() if self.rng.random() < 0.6 else q
                self._order(out, si, b2, "sell", self._price(si, b2, self.rng.uniform(0.8, 1)), q2,
                            whole, p_split=0.3, style=size.style)  # fmt: skip
        return out

    def _overnight(self, si, day, whole):
        s = self.syms[si]
        mid = (day + 1) * _DAY_NS
        before = self._bars_between(si, mid - int(self.rng.uniform(1, 6) * 3600e9), mid)
        after = self._bars_between(si, mid, mid + int(self.rng.uniform(1, 8) * 3600e9))
        if not len(before) or not len(after):
            # a session market: the last hours of this day and the first of the next one
            nxt = s.day[s.day > day]
            bars = self._day_bars(si, day)
            if not len(nxt):
                return self._few_trades(si, day, whole)
            after_all = self._day_bars(si, int(nxt[0]))
            before = bars[s.ts[bars] >= s.ts[bars[-1]] - int(self.rng.uniform(1, 5) * 3600e9)]
            limit = s.ts[before[0]] + int(22.5 * 3600e9)
            after = after_all[s.ts[after_all] <= limit]
            if not len(after):
                return self._few_trades(si, day, whole)
        size = self._size_fn(si)
        out: list[_Fill] = []
        long = self.rng.random() < 0.7
        open_side, close_side = ("buy", "sell") if long else ("sell", "buy")
        n_in = int(self.rng.integers(1, 4))
        total = 0.0
        for _ in range(n_in):
            q = size()
            total += q
            b = int(self.rng.choice(before))
            self._order(out, si, b, open_side, self._price(si, b, self.rng.uniform()), q, whole,
                        style=size.style)  # fmt: skip
        n_out = int(self.rng.integers(1, 5))
        if size.style == "int":
            exits = self._split_qty(total, n_out, "int")
        else:
            exits = [float(f"{total / n_out:.6g}")] * n_out
        for q in exits:
            b = int(self.rng.choice(after))
            self._order(out, si, b, close_side, self._price(si, b, self.rng.uniform()), q, whole,
                        p_split=0.0)  # fmt: skip
        return out

    def _multi_symbol(self, si, day, whole):
        lo, hi = day * _DAY_NS, (day + 1) * _DAY_NS
        others = [j for j in range(len(self.syms)) if len(self._bars_between(j, lo, hi)) >= 12]
        self.rng.shuffle(others)
        chosen = [si, *[j for j in others if j != si][: int(self.rng.integers(1, 4))]]
        out: list[_Fill] = []
        for j in chosen:
            bars = self._bars_between(j, lo, hi)
            size = self._size_fn(j)
            for _ in range(int(self.rng.integers(2, 11))):
                self._rand_trade(out, j, bars, size, whole)
        return out

    # --------------------------------------------------- takeover kinds
    def _volatile(self, si, bars, rel_min=1.5):
        s = self.syms[si]
        v = bars[(s.rel[bars] >= rel_min) & (s.ticks[bars] >= 4)]
        if len(v) < 2:
            v = bars[s.rng_rank[bars] >= 0.9]
        return v if len(v) else bars

    def _round_trip(self, out, si, b, b2, q, within, whole, style, split=False,
                    reverse=None) -> None:  # fmt: skip
        """A value-losing round trip: buy near the high, sell near the low."""
        reverse = self.rng.random() < 0.3 if reverse is None else reverse
        p_buy = self._near(si, b2 if reverse else b, top=True, within=within)
        p_sell = self._near(si, b if reverse else b2, top=False, within=within)
        legs = [(b, "buy", p_buy), (b2, "sell", p_sell)]
        if reverse:  # sell at the low first, buy back at the high
            legs = [(b, "sell", p_sell), (b2, "buy", p_buy)]
        sec = self._sec(whole)
        for bb, side, p in legs:
            if split:
                for qq in self._split_qty(q, int(self.rng.integers(2, 7)), style):
                    pp = self._nudged(si, bb, side, p, int(self.rng.integers(0, 3)))
                    out.append(_Fill(si, bb, sec, side, pp, qq, True))
                    sec = self._later(sec, float(self.rng.uniform(0.5, 8.0)), whole)
            else:
                out.append(_Fill(si, bb, sec, side, p, q, True))
            # the second leg: later in the same bar, or anywhere in the next one
            sec = (self._later(sec, float(self.rng.uniform(1.0, 120.0)), whole) if b2 == b
                   else self._sec(whole))  # fmt: skip

    def _takeover(self, si, day, whole, n_trips, within, rel_min=1.5, adjacent=False,
                  split=False, bars=None, out=None, size=None):  # fmt: skip
        s = self.syms[si]
        bars = self._day_bars(si, day) if bars is None else bars
        size = size or self._size_fn(si)
        out = [] if out is None else out
        if adjacent:
            ok = bars[:-1][s.adjacent[bars[:-1]]]
            gap = np.maximum(s.h[ok] - s.lo[ok + 1], s.h[ok + 1] - s.lo[ok])
            pool = ok[gap >= 1.5 * s.med[ok]]
            pool = pool if len(pool) else ok[gap >= np.quantile(gap, 0.9)]
        else:
            pool = self._volatile(si, bars, rel_min)
        used: set[int] = set()
        for _ in range(n_trips):
            free = np.array([b for b in pool if b not in used]) if len(used) < len(pool) else pool
            b = int(self.rng.choice(free))
            used.add(b)
            q = size(self.rng.uniform(1.0, 4.0), 0.0)
            if adjacent:
                b2 = b + 1
                # the loss must run from one bar's high to the other's low
                reverse = bool(s.h[b + 1] - s.lo[b] > s.h[b] - s.lo[b + 1])
                self._round_trip(out, si, b, b2, q, within, whole, size.style, split, reverse)
            else:
                self._round_trip(out, si, b, b, q, within, whole, size.style, split)
        return out

    def _to_classic(self, si, day, whole):
        n = int(self.rng.integers(3, 7))
        out = self._takeover(si, day, whole, n, 0.05)
        if self.rng.random() < 0.2:
            lo, hi = day * _DAY_NS, (day + 1) * _DAY_NS
            others = [j for j in range(len(self.syms))
                      if j != si and len(self._bars_between(j, lo, hi)) >= 24]  # fmt: skip
            if others:
                j = int(self.rng.choice(others))
                self._takeover(j, day, whole, int(self.rng.integers(1, 3)), 0.05,
                               bars=self._bars_between(j, lo, hi), out=out)  # fmt: skip
        return out

    def _to_adjacent(self, si, day, whole):
        return self._takeover(si, day, whole, int(self.rng.integers(2, 6)), 0.05, adjacent=True)

    def _to_rough(self, si, day, whole):
        return self._takeover(si, day, whole, int(self.rng.integers(2, 6)), 0.25, rel_min=1.2)

    def _to_two_trips(self, si, day, whole):
        adjacent = self.rng.random() < 0.3
        return self._takeover(si, day, whole, 2, 0.10, adjacent=adjacent)

    def _to_split(self, si, day, whole):
        return self._takeover(si, day, whole, int(self.rng.integers(2, 5)), 0.05, split=True)

    def _to_busy_owner(self, si, day, whole):
        owner = self.rng.choice(["market_orders", "small_fills", "scalper", "limit_trader"])
        self._note = str(owner)
        out = getattr(self, f"_{owner}")(si, day, whole)
        if self.rng.random() < 0.3:
            nxt = self.syms[si].day[self.syms[si].day > day]
            if len(nxt) and int(nxt[0]) == day + 1:
                # the owner's day ran on past midnight: earlier trades were the day before
                first = self._day_bars(si, day + 1)
                late = self._day_bars(si, day)
                late = late[self.syms[si].ts[late] >= self.syms[si].ts[late[-1]] - 4 * 3600 * 10**9]
                end = min(self.syms[si].ts[first[0]] + 6 * 3600 * 10**9,
                          self.syms[si].ts[late[0]] + 22 * 3600 * 10**9)  # fmt: skip
                early = first[self.syms[si].ts[first] < end]
                size = self._size_fn(si)
                out = []
                self._note = "midnight"
                for _ in range(int(self.rng.integers(8, 30))):
                    self._rand_trade(out, si, np.concatenate([late, early]), size, whole)
                return self._takeover(si, day + 1, whole, int(self.rng.integers(2, 4)), 0.10,
                                      bars=early, out=out, size=size)  # fmt: skip
        bars = np.unique([f.bar for f in out])
        lo, hi = bars.min(), bars.max()
        day_bars = self._day_bars(si, day)
        inside = day_bars[(day_bars >= lo) & (day_bars <= hi)]
        s = self.syms[si]
        enough = (s.rel[inside] >= 1.5).sum() >= 3 if len(inside) else False
        return self._takeover(si, day, whole, int(self.rng.integers(2, 4)), 0.10,
                              bars=inside if enough else day_bars, out=out)  # fmt: skip

    # ------------------------------------------------------------ run
    def run(self, n_accounts: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_take = n_accounts // 2
        normal = _counts(n_accounts - n_take, NORMAL_KINDS)
        take = _counts(n_take, TAKEOVER_KINDS)
        # a beneficiary needs a victim of its own
        n_benef = min(take.pop("beneficiary"), n_take // 2)
        take["to_classic"] += n_take - n_benef - sum(take.values())
        plan = [(k, 0) for k, c in normal.items() for _ in range(c)]
        plan += [(k, 1) for k, c in take.items() for _ in range(c)]
        self.rng.shuffle(plan)  # type: ignore[arg-type]
        ids = [f"acct-{x:08x}" for x in self.rng.choice(2**32, n_accounts, replace=False)]
        accounts: list[tuple[str, int, str, list[_Fill]]] = []
        for (kind, label), aid in zip(plan, ids, strict=False):
            si, day = self.anchors[int(self.rng.integers(len(self.anchors)))]
            whole = self.rng.random() < 0.25
            self._note = ""
            fills = getattr(self, f"_{kind}")(si, day, whole)
            self.detail[aid] = self._note
            accounts.append((aid, label, kind, fills))
        victims = [i for i, a in enumerate(accounts) if a[1] == 1]
        chosen = self.rng.choice(victims, size=min(n_benef, len(victims)), replace=False)
        for vi, aid in zip(chosen, ids[len(plan) :], strict=False):
            accounts.append((aid, 1, "beneficiary", self._beneficiary(accounts[vi][3])))
        return self._frames(accounts)

    def _beneficiary(self, victim: list[_Fill]) -> list[_Fill]:
        out: list[_Fill] = []
        for f in victim:
            if not f.take:
                continue
            lo_off, hi_off = max(-40.0, -f.sec), min(40.0, 299.999 - f.sec)
            sec = round(f.sec + float(self.rng.uniform(lo_off, hi_off)), 3)
            side = "sell" if f.side == "buy" else "buy"
            out.append(_Fill(f.sym, f.bar, sec, side, f.price, f.qty))
        if self.rng.random() < 0.5 and out:
            si = out[0].sym
            day = int(self.syms[si].day[out[0].bar])
            bars = self._day_bars(si, day)
            size = self._size_fn(si)
            for _ in range(int(self.rng.integers(1, 4))):
                self._rand_trade(out, si, bars, size, False)
        return out

    def _frames(self, accounts) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = []
        for aid, _label, _kind, fills in accounts:
            for f in fills:
                s = self.syms[f.sym]
                ts = int(s.ts[f.bar]) + round(f.sec * 1e9)
                rows.append((aid, s.name, ts, f.side, f.price, f.qty))
        t = pd.DataFrame(rows, columns=["account_id", "symbol", "ts", "side", "price", "quantity"])
        t["ts"] = pd.to_datetime(t["ts"], utc=True)
        t = t.sort_values(["ts", "account_id"], kind="stable").reset_index(drop=True)
        t.insert(0, "trade_id", [f"bt{self.seed}-{i}" for i in range(len(t))])
        labels = pd.DataFrame(
            [(a, lab, k) for a, lab, k, _ in accounts], columns=["account_id", "label", "kind"]
        )
        return t, labels
