"""A fourth, independent account generator for the real-bar check (``--sets fourth``).

Written from the behaviour catalogue and the data contract only (klines, trades and
labels columns), without reading fraudlens's simulator or the alt and blind generators.
``FourthGenerator(klines, seed).run(n_accounts)`` returns ``(trades, labels)`` in the
data contract (labels carry ``kind``). Half the accounts (rounded down) are takeovers.

Parametrisation (its own, on purpose not the obvious one):

Bars and sessions
- tick of a symbol-day: the largest 1, 2, 2.5, 5 x 10^k on which 99 % of its opens,
  highs, lows and closes lie (1e-6 relative tolerance); prices are snapped to it and
  clipped into the bar; "at the high/low" means the bar's own high/low value.
- relative range rr = bar range / median range of the bar's UTC day (positive ranges).
- an account lives in one session: the UTC day of a symbol (80 %) or a 24 h window
  starting 4-22 h into that day, running past midnight (20 %, when the next day exists).
  Symbol-days with fewer than 48 bars are skipped.
- volatile bars: rr >= max(1.6, the session's 90 % quantile of rr) and at least 4 ticks
  wide (fallback: the session's widest bars); quiet bars: 2 ticks wide or more and rr at
  most the session's 45 % quantile; narrow bars: 1 tick wide or more, rr <= 0.6.
- adjacent legs: bar i and the next bar (exactly 5 minutes later), the two extremes used
  at least 1.6 day-median ranges apart. A thief's round trips never share or touch a bar
  (a busy owner's own fills may).
- timestamps: bar start + Beta(1.3, 1.6) x 299.999 s, millisecond resolution; a tenth
  of the accounts fill at the bar's first second (stamped at open + 0-999 ms).
- quantity: account notional in USD lognormal (median 6,000, sigma 1.1, clipped
  150-600,000), quote unit worth 10,000 USD for *_BTC, 1,000 for *_ETH, 1 otherwise;
  at most a quarter of the symbol-day's median bar volume (then 10-25 % of it) when the
  instrument has volume; rounded to two significant digits (round lots); small fills and
  DCA keep odd sizes (four significant digits); splits are integer shares of 1/100 of
  the leg.
- account ids are random hex strings (nothing in an id tells the kind).

Normal kinds (label 0), equal shares:
- swing: 1-3 positions (a fifth short), entry anywhere in a random bar, exit 1-10 h
  later, exit size 60-100 % of the entry.
- daytrader: 3-10 round trips by market orders in narrow bars (buy at the ask = bar high,
  sell at the bid = bar low), exit 1-12 bars later in another narrow bar, equal sizes.
- market_maker: 20-150 round trips, equal sizes, bought at the low and sold at the high of
  quiet bars (either order in the bar; 15 % across two adjacent quiet bars).
- scalper: 6-40 round trips within 20 % of the extremes of bars with rr <= 1.2, winning;
  a fifth of them losing (bought near the high, sold near the low) in narrow bars only.
- momentum_long / momentum_short: one entry within 12 % of the breakout extreme of a
  volatile bar, stopped out at the opposite extreme of the same bar or the next bar
  (one losing round trip); 30 % also have 1-2 unrelated small trades.
- volume_chaser: 4-15 trades in the session's top-5 % volume bars (top range when the
  instrument has no volume), sides at random, sizes 0.5-2x.
- small_fills: 40-250 fills of 0.5-5 % of the notional anywhere in the bars.
- dca: 4-24 buys at a fixed interval of 1-6 h, same notional each time, odd quantities.
- multi_symbol: swing and daytrader trades on 2-3 symbols of the same day (falls back to
  one symbol when no other symbol has that day).
- lucky: 1-2 winning round trips in volatile bars, bought 15-40 % and sold 60-90 % up the
  range (a third short), exit in the same bar or 1-6 bars later, exit size 50-90 %.
- hedger: 2-6 pairs, buy and sell equal sizes 1-10 min apart at 40-60 % of the bar range.

Takeover kinds (label 1), equal shares:
- wick: 3-6 round trips at the exact extremes of volatile bars, buy at the high and sell
  at the low (value leaves the victim), either order within the bar.
- adjacent: 3-5 round trips whose legs are in adjacent bars (buy at bar i's high, sell at
  bar i+1's low, or sell at i's low and buy back at i+1's high).
- rough: 3-6 round trips, each fill up to a quarter of the bar's range inside the
  extreme; half in adjacent bars.
- two_rt: exactly two round trips (exact or rough, same bar or adjacent).
- split: 3-5 round trips, each leg split into 2-6 fills 0.2-20 s apart on the extreme
  and up to 2 ticks inside it.
- busy_owner: the day of a normal owner (swing, daytrader, scalper, market_maker,
  small_fills, volume_chaser, dca or hedger) with 2-4 thief round trips (exact or rough,
  same bar or adjacent), sized 1-3x the owner's notional.
- multi_symbol_to: 1-3 round trips on each of 2 symbols of the same day (at least 3).
- beneficiary: mirrors a victim of the kinds above in the same book: same symbol,
  opposite side, equal quantity and price, 0-20 s later in the same bar; 40 % also have
  1-4 ordinary trades of their own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

NORMAL_KINDS = (
    "swing", "daytrader", "market_maker", "scalper", "momentum_long", "momentum_short",
    "volume_chaser", "small_fills", "dca", "multi_symbol", "lucky", "hedger",
)  # fmt: skip
TAKEOVER_KINDS = (
    "wick", "adjacent", "rough", "two_rt", "split", "busy_owner", "multi_symbol_to",
    "beneficiary",
)  # fmt: skip
OWNER_KINDS = (
    "swing", "daytrader", "scalper", "market_maker", "small_fills", "volume_chaser", "dca",
    "hedger",
)  # fmt: skip

BAR_NS = 300 * 10**9
DAY_NS = 86_400 * 10**9
_STEPS = (5.0, 2.5, 2.0, 1.0)


def _tick(values: np.ndarray) -> float:
    """Largest 1/2/2.5/5 x 10^k on which 99 % of the values lie."""
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) == 0:
        return 1e-8
    top = math.floor(math.log10(float(v.max()))) + 1
    for k in range(top, top - 16, -1):
        for m in _STEPS:
            step = m * 10.0**k
            q = v / step
            ok = np.abs(q - np.round(q)) <= 1e-6 * np.maximum(q, 1.0)
            if ok.mean() >= 0.99:
                return step
    return 10.0 ** (top - 16)


def _quote_usd(symbol: str) -> float:
    s = symbol.upper()
    if s.endswith("BTC"):
        return 10_000.0
    if s.endswith("ETH"):
        return 1_000.0
    return 1.0


def _round_lot(q: float, digits: int = 2) -> float:
    if q <= 0 or not math.isfinite(q):
        return 0.0
    e = math.floor(math.log10(q)) - (digits - 1)
    lot = 10.0**e
    return float(round(max(round(q / lot), 1) * lot, -e))  # no float noise in the digits


class FourthGenerator:
    """Accounts on real bars; ``run(n)`` -> ``(trades, labels)``."""

    def __init__(self, klines: pd.DataFrame, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        self.k = k
        self.sym = k["symbol"].astype(str).to_numpy()
        ts = pd.to_datetime(k["ts"], utc=True)
        self.t = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        self.hi = k["high"].to_numpy(dtype=float)
        self.lo = k["low"].to_numpy(dtype=float)
        self.op = k["open"].to_numpy(dtype=float)
        self.cl = k["close"].to_numpy(dtype=float)
        vol = k["volume"].to_numpy(dtype=float) if "volume" in k else np.zeros(len(k))
        self.vol = np.nan_to_num(vol)
        self.rng_ = self.hi - self.lo
        day = self.t // DAY_NS
        self.day = day
        n = len(k)
        self.tick = np.ones(n)
        self.rr = np.ones(n)
        self.med = np.ones(n)
        self.vmed = np.zeros(n)
        self.days: dict[tuple[str, int], np.ndarray] = {}
        for (s, d), idx in pd.Series(np.arange(n)).groupby([self.sym, day]):
            ix = idx.to_numpy()
            vals = np.concatenate([self.op[ix], self.hi[ix], self.lo[ix], self.cl[ix]])
            self.tick[ix] = _tick(vals)
            pos = self.rng_[ix][self.rng_[ix] > 0]
            med = float(np.median(pos)) if len(pos) else 1.0
            self.rr[ix] = self.rng_[ix] / med
            self.med[ix] = med
            vpos = self.vol[ix][self.vol[ix] > 0]
            self.vmed[ix] = float(np.median(vpos)) if len(vpos) else 0.0
            self.days[(str(s), int(d))] = ix
        self.rticks = np.round(self.rng_ / self.tick)
        nxt = np.zeros(n, dtype=bool)
        nxt[:-1] = (self.sym[1:] == self.sym[:-1]) & (self.t[1:] - self.t[:-1] == BAR_NS)
        self.has_next = nxt
        self.pool = [key for key, ix in self.days.items() if len(ix) >= 48]
        if not self.pool:
            raise ValueError("no symbol-day with 48 bars or more")
        self.by_day: dict[int, list[str]] = {}
        for s, d in self.pool:
            self.by_day.setdefault(d, []).append(s)
        self.rows: list[tuple] = []
        self.labels: list[tuple[str, int, str]] = []
        self._tid = 0
        self._used_ids: set[str] = set()
        self._stolen: list = []

    # ------------------------------------------------------------------ helpers
    def _new_id(self) -> str:
        while True:
            a = "".join(self.rng.choice(list("0123456789abcdef"), 12))
            if a not in self._used_ids:
                self._used_ids.add(a)
                return a

    def _session(self, key: tuple[str, int], cross: bool | None = None) -> np.ndarray:
        s, d = key
        ix = self.days[key]
        if cross is None:
            cross = self.rng.random() < 0.2
        if cross and (s, d + 1) in self.days:
            start = d * DAY_NS + int(self.rng.uniform(4, 22) * 3600) * 10**9
            both = np.concatenate([ix, self.days[(s, d + 1)]])
            both = both[(self.t[both] >= start) & (self.t[both] < start + DAY_NS)]
            if len(both) >= 48:
                return both
        return ix

    def _alongside(self, symbol: str, ses: np.ndarray) -> np.ndarray:
        """Bars of ``symbol`` inside the time span of session ``ses`` (one 24 h window)."""
        t0, t1 = int(self.t[ses[0]]), int(self.t[ses[-1]])
        d = t0 // DAY_NS
        parts = [self.days[(symbol, x)] for x in (d, d + 1) if (symbol, x) in self.days]
        ix = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return ix[(self.t[ix] >= t0) & (self.t[ix] <= t1)]

    def _volatile(self, ses: np.ndarray, n: int) -> np.ndarray:
        rr = self.rr[ses]
        cut = max(1.6, float(np.quantile(rr, 0.9)))
        c = ses[(rr >= cut) & (self.rticks[ses] >= 4)]
        if len(c) < n:
            wide = ses[self.rticks[ses] >= 4]
            if len(wide) == 0:
                wide = ses
            c = wide[np.argsort(-self.rr[wide])[: max(n, 3)]]
        return c

    def _quiet(self, ses: np.ndarray) -> np.ndarray:
        rr = self.rr[ses]
        c = ses[(self.rticks[ses] >= 2) & (rr <= np.quantile(rr, 0.45))]
        if len(c) < 5:
            c = ses[self.rticks[ses] >= 2]
        return c if len(c) else ses[self.rng_[ses] > 0]

    def _narrow(self, ses: np.ndarray) -> np.ndarray:
        c = ses[(self.rticks[ses] >= 1) & (self.rr[ses] <= 0.6)]
        if len(c) < 5:
            c = ses[self.rticks[ses] >= 1]
        return c if len(c) else ses

    def _adjacent(self, ses: np.ndarray, n: int) -> list[tuple[int, int, bool]]:
        """(i, i+1, buy_first) with the extremes used >= 1.6 median ranges apart."""
        ses_set = ses[self.has_next[ses]]
        ses_set = ses_set[np.isin(ses_set + 1, ses)]
        if len(ses_set) == 0:
            return []
        i = ses_set
        med = self.med[i]
        gap_bs = (self.hi[i] - self.lo[i + 1]) / med  # buy at i's high, sell at i+1's low
        gap_sb = (self.hi[i + 1] - self.lo[i]) / med  # sell at i's low, buy at i+1's high
        out: list[tuple[int, int, bool]] = []
        cand = [(int(a), True) for a in i[gap_bs >= 1.6]] + [
            (int(a), False) for a in i[gap_sb >= 1.6]
        ]
        if len(cand) < n:
            best = np.argsort(-np.maximum(gap_bs, gap_sb))[: max(n, 3)]
            cand = [(int(i[b]), bool(gap_bs[b] >= gap_sb[b])) for b in best]
        used: set[int] = set()
        for p in self.rng.permutation(len(cand)):
            a, bf = cand[int(p)]
            if len(out) == n or {a - 1, a, a + 1, a + 2} & used:
                continue  # round trips of one account never share or touch a bar
            out.append((a, a + 1, bf))
            used |= {a, a + 1}
        return out

    def _time(self, b: int, lo: float = 0.0, hi: float = 1.0, at_open: bool = False) -> int:
        if at_open:
            return int(self.t[b] + self.rng.integers(0, 1000) * 10**6)
        u = lo + (hi - lo) * float(self.rng.beta(1.3, 1.6))
        return int(self.t[b] + int(u * 299_999) * 10**6)

    def _two_times(self, b: int, at_open: bool) -> tuple[int, int]:
        if at_open:
            t0 = self._time(b, at_open=True)
            return t0, t0 + int(self.rng.integers(1, 60_000)) * 10**6
        a, c = sorted(self.rng.uniform(0, 1, 2))
        t0 = int(self.t[b] + int(a * 299_999) * 10**6)
        t1 = int(self.t[b] + int(c * 299_999) * 10**6)
        return t0, min(max(t1, t0 + 10**6), int(self.t[b]) + BAR_NS - 1)

    def _px(self, b: int, frac: float) -> float:
        """Price at ``frac`` of the bar's range above its low, on the tick."""
        if frac <= 0:
            return float(self.lo[b])
        if frac >= 1:
            return float(self.hi[b])
        tk = self.tick[b]
        p = round((self.lo[b] + frac * self.rng_[b]) / tk) * tk
        return float(min(max(p, self.lo[b]), self.hi[b]))

    def _qty(self, notional_usd: float, b: int, digits: int = 2) -> float:
        q = notional_usd / _quote_usd(self.sym[b]) / max(self.cl[b], 1e-300)
        cap = 0.25 * self.vmed[b]
        if cap > 0 and q > cap:  # no account is most of an ordinary bar's volume
            q = cap * float(self.rng.uniform(0.4, 1.0))
        return _round_lot(q, digits)

    def _notional(self) -> float:
        return float(np.clip(self.rng.lognormal(math.log(6000), 1.1), 150, 600_000))

    def _emit(self, acct: str, fills: list[tuple[int, int, str, float, float]]) -> None:
        for b, ts, side, price, qty in fills:
            if qty <= 0:
                continue
            ts = min(max(ts, int(self.t[b])), int(self.t[b]) + BAR_NS - 10**6)
            ts -= ts % 10**6  # millisecond stamps
            self._tid += 1
            self.rows.append((f"f4-{self._tid:07d}", acct, self.sym[b], ts, side, price, qty))

    # ------------------------------------------------------------ normal kinds
    def _swing(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        fills = []
        for _ in range(int(self.rng.integers(1, 4))):
            e = int(self.rng.integers(0, max(1, len(ses) // 2)))
            x = min(len(ses) - 1, e + int(self.rng.integers(12, 121)))
            b0, b1 = int(ses[e]), int(ses[x])
            q = self._qty(notional, b0)
            short = self.rng.random() < 0.2
            s0, s1 = ("sell", "buy") if short else ("buy", "sell")
            q1 = _round_lot(q * self.rng.uniform(0.6, 1.0))
            fills.append(
                (b0, self._time(b0, at_open=at_open), s0, self._px(b0, self.rng.random()), q)
            )
            fills.append(
                (b1, self._time(b1, at_open=at_open), s1, self._px(b1, self.rng.random()), q1)
            )
        return fills

    def _daytrader(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        nar = self._narrow(ses)
        pos = {int(b): j for j, b in enumerate(ses)}
        fills = []
        for _ in range(int(self.rng.integers(3, 11))):
            b0 = int(self.rng.choice(nar))
            j = pos[b0]
            later = nar[(nar > b0)]
            later = later[[pos[int(x)] - j <= 12 for x in later]] if len(later) else later
            b1 = (
                int(later[0])
                if len(later) and self.rng.random() < 0.3
                else (int(self.rng.choice(later)) if len(later) else b0)
            )
            q = self._qty(notional, b0)
            long = self.rng.random() < 0.6
            for b, side in ((b0, "buy" if long else "sell"), (b1, "sell" if long else "buy")):
                px = float(self.hi[b]) if side == "buy" else float(self.lo[b])
                fills.append((b, self._time(b, at_open=at_open), side, px, q))
            if b0 == b1:  # keep the entry before the exit inside one bar
                t0, t1 = self._two_times(b0, at_open)
                fills[-2] = (*fills[-2][:1], t0, *fills[-2][2:])
                fills[-1] = (*fills[-1][:1], t1, *fills[-1][2:])
        return fills

    def _market_maker(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        qb = self._quiet(ses)
        sset = set(int(x) for x in ses)
        q = self._qty(notional * self.rng.uniform(0.3, 1.0), int(qb[0]))
        fills = []
        n = int(self.rng.integers(20, 151))
        for b in self.rng.choice(qb, size=n, replace=len(qb) < n):
            b = int(b)
            qq = q if self.rng.random() < 0.8 else _round_lot(q * self.rng.uniform(0.5, 2))
            if (
                self.rng.random() < 0.15
                and self.has_next[b]
                and (b + 1) in sset
                and self.hi[b + 1] > self.lo[b]
            ):
                fills.append((b, self._time(b), "buy", float(self.lo[b]), qq))
                fills.append((b + 1, self._time(b + 1), "sell", float(self.hi[b + 1]), qq))
                continue
            t0, t1 = self._two_times(b, at_open)
            sides = ("buy", "sell") if self.rng.random() < 0.5 else ("sell", "buy")
            for tt, sd in zip((t0, t1), sides, strict=True):
                px = float(self.lo[b]) if sd == "buy" else float(self.hi[b])
                fills.append((b, tt, sd, px, qq))
        return fills

    def _scalper(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        ok = ses[(self.rr[ses] <= 1.2) & (self.rticks[ses] >= 2)]
        if len(ok) == 0:
            ok = ses
        nar = self._narrow(ses)
        fills = []
        q = self._qty(notional, int(ok[0]))
        for _ in range(int(self.rng.integers(6, 41))):
            losing = self.rng.random() < 0.2
            b = int(self.rng.choice(nar if losing else ok))
            t0, t1 = self._two_times(b, at_open)
            lo_f, hi_f = self.rng.uniform(0, 0.2), self.rng.uniform(0.8, 1.0)
            if losing:
                buy, sell = self._px(b, hi_f), self._px(b, lo_f)
            else:
                buy, sell = self._px(b, lo_f), self._px(b, hi_f)
            if self.rng.random() < 0.5:
                fills += [(b, t0, "buy", buy, q), (b, t1, "sell", sell, q)]
            else:
                fills += [(b, t0, "sell", sell, q), (b, t1, "buy", buy, q)]
        return fills

    def _momentum(self, ses: np.ndarray, notional: float, at_open: bool, long: bool) -> list:
        vb = self._volatile(ses, 1)
        b = int(self.rng.choice(vb))
        q = self._qty(notional, b)
        f = self.rng.uniform(0.88, 1.0) if long else self.rng.uniform(0.0, 0.12)
        entry = self._px(b, f)
        nxt = b + 1 if self.has_next[b] else b
        same = self.rng.random() < 0.5 or nxt == b
        if long:
            stop_b = b if same or self.lo[nxt] >= entry else nxt
            stop = float(self.lo[stop_b])
            e_side, x_side = "buy", "sell"
        else:
            stop_b = b if same or self.hi[nxt] <= entry else nxt
            stop = float(self.hi[stop_b])
            e_side, x_side = "sell", "buy"
        if stop_b == b:
            t0, t1 = self._two_times(b, at_open)
        else:
            t0, t1 = self._time(b, at_open=at_open), self._time(stop_b, at_open=at_open)
        fills = [(b, t0, e_side, entry, q), (stop_b, t1, x_side, stop, q)]
        if self.rng.random() < 0.3:
            for _ in range(int(self.rng.integers(1, 3))):
                o = int(self.rng.choice(ses))
                fills.append(
                    (
                        o,
                        self._time(o),
                        str(self.rng.choice(["buy", "sell"])),
                        self._px(o, self.rng.random()),
                        _round_lot(q * 0.2),
                    )
                )
        return fills

    def _volume_chaser(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        v = self.vol[ses]
        key = v if v.max() > 0 else self.rng_[ses]
        top = ses[key >= np.quantile(key, 0.95)]
        fills = []
        for _ in range(int(self.rng.integers(4, 16))):
            b = int(self.rng.choice(top))
            q = self._qty(notional * self.rng.uniform(0.5, 2.0), b)
            fills.append(
                (
                    b,
                    self._time(b, at_open=at_open),
                    str(self.rng.choice(["buy", "sell"])),
                    self._px(b, self.rng.random()),
                    q,
                )
            )
        return fills

    def _small_fills(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        fills = []
        bias = self.rng.uniform(0.3, 0.7)
        for _ in range(int(self.rng.integers(40, 251))):
            b = int(self.rng.choice(ses))
            q = self._qty(notional * self.rng.uniform(0.005, 0.05), b, digits=4)
            side = "buy" if self.rng.random() < bias else "sell"
            fills.append(
                (b, self._time(b, at_open=at_open), side, self._px(b, self.rng.random()), q)
            )
        return fills

    def _dca(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        every = int(self.rng.integers(12, 73))  # 1-6 h in bars
        start = int(self.rng.integers(0, every))
        per = notional * self.rng.uniform(0.1, 0.4)
        fills = []
        for j in range(start, len(ses), every)[:24]:
            b = int(ses[j])
            px = float(self.op[b]) if self.rng.random() < 0.5 else self._px(b, self.rng.random())
            px = min(max(px, self.lo[b]), self.hi[b])
            q = _round_lot(per / _quote_usd(self.sym[b]) / px, 4)
            fills.append((b, self._time(b, 0, 0.2, at_open), "buy", px, q))
        return fills

    def _lucky(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        vb = self._volatile(ses, 2)
        pos = {int(b): j for j, b in enumerate(ses)}
        fills = []
        for b in self.rng.choice(vb, size=int(self.rng.integers(1, 3)), replace=len(vb) < 2):
            b = int(b)
            j = pos[b]
            x = int(ses[min(len(ses) - 1, j + int(self.rng.integers(0, 7)))])
            q = self._qty(notional, b)
            q1 = _round_lot(q * self.rng.uniform(0.5, 0.9))
            if q1 == q:
                q1 = _round_lot(q * 0.5)
            short = self.rng.random() < 1 / 3
            lo_f, hi_f = self.rng.uniform(0.15, 0.4), self.rng.uniform(0.6, 0.9)
            if x == b:
                t0, t1 = self._two_times(b, at_open)
            else:
                t0, t1 = self._time(b), self._time(x)
            if short:
                fills += [
                    (b, t0, "sell", self._px(b, hi_f), q),
                    (x, t1, "buy", self._px(x, lo_f), q1),
                ]
            else:
                fills += [
                    (b, t0, "buy", self._px(b, lo_f), q),
                    (x, t1, "sell", self._px(x, hi_f), q1),
                ]
        return fills

    def _hedger(self, ses: np.ndarray, notional: float, at_open: bool) -> list:
        fills = []
        for _ in range(int(self.rng.integers(2, 7))):
            j = int(self.rng.integers(0, len(ses) - 2))
            b0 = int(ses[j])
            b1 = int(ses[j + int(self.rng.integers(0, 3))])
            q = self._qty(notional, b0)
            first = "buy" if self.rng.random() < 0.5 else "sell"
            second = "sell" if first == "buy" else "buy"
            t0 = self._time(b0, 0, 0.5)
            t1 = t0 + int(self.rng.uniform(60, 600)) * 10**9
            if b1 == b0 or t1 >= self.t[b1] + BAR_NS or t1 < self.t[b1]:
                b1 = b0 if t1 < self.t[b0] + BAR_NS else b1
                t1 = min(max(t1, int(self.t[b1])), int(self.t[b1]) + BAR_NS - 1)
            fills.append((b0, t0, first, self._px(b0, self.rng.uniform(0.4, 0.6)), q))
            fills.append((b1, t1, second, self._px(b1, self.rng.uniform(0.4, 0.6)), q))
        return fills

    def _normal(self, kind: str, ses: np.ndarray, notional: float, at_open: bool) -> list:
        if kind == "momentum_long":
            return self._momentum(ses, notional, at_open, True)
        if kind == "momentum_short":
            return self._momentum(ses, notional, at_open, False)
        return getattr(self, f"_{kind}")(ses, notional, at_open)

    # ---------------------------------------------------------- takeover legs
    def _steal(
        self,
        ses: np.ndarray,
        n: int,
        notional: float,
        *,
        rough: str = "exact",
        adjacent: float = 0.0,
        split: bool = False,
    ) -> list:
        """n round trips moving value out: bought dear (at/near a high), sold cheap.

        The thief's fills are also appended to ``self._stolen`` (what a beneficiary
        mirrors; a busy owner's own fills are not mirrored).
        """
        fills: list = []
        n_adj = int(self.rng.binomial(n, adjacent)) if adjacent < 1 else n
        adj = self._adjacent(ses, n_adj) if n_adj else []
        used = {b for a, _, _ in adj for b in (a - 1, a, a + 1, a + 2)}
        vol = self._volatile(ses, n - len(adj))
        same: list[int] = []
        for b in self.rng.permutation(vol):
            if len(same) < n - len(adj) and not {int(b) - 1, int(b), int(b) + 1} & used:
                same.append(int(b))
                used.add(int(b))
        for b in ses[np.argsort(-self.rr[ses], kind="stable")]:  # few volatile bars left:
            if len(same) < n - len(adj) and not {int(b) - 1, int(b), int(b) + 1} & used:
                same.append(int(b))  # the session's next widest bars
                used.add(int(b))
        while len(same) < n - len(adj):  # a session too short to keep them apart
            same.append(int(self.rng.choice(vol)))
        legs: list[tuple[int, int, bool]] = [
            *adj,
            *((int(b), int(b), bool(self.rng.random() < 0.5)) for b in same),
        ]
        for b0, b1, buy_first in legs:
            is_rough = rough == "rough" or (rough == "mixed" and self.rng.random() < 0.5)
            u = (lambda: self.rng.uniform(0, 0.25)) if is_rough else (lambda: 0.0)
            bb, sb = (b0, b1) if buy_first else (b1, b0)  # bar of the buy, bar of the sell
            buy = self._px(bb, 1.0 - u()) if is_rough else float(self.hi[bb])
            sell = self._px(sb, u()) if is_rough else float(self.lo[sb])
            if sell >= buy:
                buy, sell = float(self.hi[bb]), float(self.lo[sb])
            q = self._qty(notional, b0)
            if b0 == b1:
                t0, t1 = self._two_times(b0, False)
            else:
                t0, t1 = self._time(b0), self._time(b1)
            tb, ts_ = (t0, t1) if buy_first else (t1, t0)
            for bar, tt, side, px in ((bb, tb, "buy", buy), (sb, ts_, "sell", sell)):
                if not split:
                    fills.append((bar, tt, side, px, q))
                    continue
                k = int(self.rng.integers(2, 7))
                shares = self.rng.multinomial(100 - k, np.ones(k) / k) + 1
                t_run = tt
                for sh in shares:
                    off = int(self.rng.integers(0, 3)) * self.tick[bar]
                    p = px - off if side == "buy" else px + off
                    p = float(min(max(p, self.lo[bar]), self.hi[bar])) if off else px
                    fills.append((bar, t_run, side, p, _round_lot(q * sh / 100, 4)))
                    t_run += int(self.rng.uniform(0.2, 20) * 10**9)
        self._stolen += fills
        return fills

    def _takeover(self, kind: str, key: tuple[str, int], ses: np.ndarray, notional: float) -> list:
        if kind == "wick":
            return self._steal(ses, int(self.rng.integers(3, 7)), notional)
        if kind == "adjacent":
            return self._steal(ses, int(self.rng.integers(3, 6)), notional, adjacent=1.0)
        if kind == "rough":
            return self._steal(
                ses, int(self.rng.integers(3, 7)), notional, rough="rough", adjacent=0.5
            )
        if kind == "two_rt":
            return self._steal(ses, 2, notional, rough="mixed", adjacent=0.4)
        if kind == "split":
            return self._steal(
                ses, int(self.rng.integers(3, 6)), notional, split=True, adjacent=0.3
            )
        if kind == "busy_owner":
            owner = str(self.rng.choice(OWNER_KINDS))
            fills = self._normal(owner, ses, notional, self.rng.random() < 0.1)
            return fills + self._steal(
                ses,
                int(self.rng.integers(2, 5)),
                notional * self.rng.uniform(1, 3),
                rough="mixed",
                adjacent=0.3,
            )
        if kind == "multi_symbol_to":
            others = [s for s in self.by_day.get(key[1], []) if s != key[0]]
            if not others:
                return self._steal(ses, int(self.rng.integers(3, 6)), notional)
            o = str(self.rng.choice(others))
            n1 = int(self.rng.integers(1, 4))
            n2 = max(int(self.rng.integers(1, 4)), 3 - n1)
            other = self._alongside(o, ses)
            if len(other) < 48:
                return self._steal(ses, n1 + n2, notional, rough="mixed")
            return self._steal(ses, n1, notional, rough="mixed") + self._steal(
                other, n2, notional, rough="mixed"
            )
        raise ValueError(kind)

    # -------------------------------------------------------------------- run
    def run(self, n_accounts: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        n1 = n_accounts // 2
        n0 = n_accounts - n1
        kinds0 = [NORMAL_KINDS[i % len(NORMAL_KINDS)] for i in range(n0)]
        kinds1 = [TAKEOVER_KINDS[i % len(TAKEOVER_KINDS)] for i in range(n1)]
        self.rng.shuffle(kinds0)
        self.rng.shuffle(kinds1)
        victims: list[tuple[str, list]] = []
        n_benef = sum(k == "beneficiary" for k in kinds1)
        for kind in kinds0:
            key = self.pool[int(self.rng.integers(len(self.pool)))]
            acct = self._new_id()
            ses = self._session(key)
            at_open = self.rng.random() < 0.1
            if kind == "multi_symbol":
                others = [s for s in self.by_day.get(key[1], []) if s != key[0]]
                fills = self._swing(ses, self._notional(), at_open)
                syms = (
                    list(
                        self.rng.choice(
                            others,
                            size=min(len(others), int(self.rng.integers(1, 3))),
                            replace=False,
                        )
                    )
                    if others
                    else []
                )
                for s in syms:
                    f = self._swing if self.rng.random() < 0.5 else self._daytrader
                    other = self._alongside(str(s), ses)
                    if len(other) >= 12:
                        fills += f(other, self._notional(), at_open)
            else:
                fills = self._normal(kind, ses, self._notional(), at_open)
            self._emit(acct, fills)
            self.labels.append((acct, 0, kind))
        for kind in kinds1:
            if kind == "beneficiary":
                continue
            key = self.pool[int(self.rng.integers(len(self.pool)))]
            acct = self._new_id()
            ses = self._session(key)
            self._stolen = []
            fills = self._takeover(kind, key, ses, self._notional())
            self._emit(acct, fills)
            self.labels.append((acct, 1, kind))
            victims.append((acct, self._stolen))
        order = self.rng.permutation(len(victims))[:n_benef]
        for vi in order:
            _, vf = victims[int(vi)]
            acct = self._new_id()
            fills = []
            for b, ts, side, px, q in vf:
                room = int(self.t[b]) + BAR_NS - 10**6 - ts
                lag = int(self.rng.integers(0, 20_000)) * 10**6
                tt = (
                    ts + lag
                    if lag <= room
                    else ts + int(self.rng.integers(0, max(room, 0) // 10**6 + 1)) * 10**6
                )
                fills.append((b, tt, "sell" if side == "buy" else "buy", px, q))
            if self.rng.random() < 0.4 and fills:
                b0 = fills[0][0]
                lo_t, hi_t = min(f[1] for f in fills), max(f[1] for f in fills)
                sym_ix = self.days[(self.sym[b0], int(self.day[b0]))]
                sym_ix = sym_ix[(self.t[sym_ix] >= lo_t - BAR_NS) & (self.t[sym_ix] <= hi_t)]
                sym_ix = sym_ix if len(sym_ix) else np.array([b0])
                for _ in range(int(self.rng.integers(1, 5))):
                    b = int(self.rng.choice(sym_ix))
                    fills.append(
                        (
                            b,
                            self._time(b),
                            str(self.rng.choice(["buy", "sell"])),
                            self._px(b, self.rng.random()),
                            self._qty(self._notional() * 0.3, b),
                        )
                    )
            self._emit(acct, fills)
            self.labels.append((acct, 1, "beneficiary"))
        trades = pd.DataFrame(
            self.rows,
            columns=["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"],
        )
        trades["ts"] = pd.to_datetime(trades["ts"], utc=True)
        trades = trades.sort_values(["ts", "trade_id"], kind="stable").reset_index(drop=True)
        labels = pd.DataFrame(self.labels, columns=["account_id", "label", "kind"])
        labels = labels[labels["account_id"].isin(trades["account_id"])].reset_index(drop=True)
        return trades, labels
