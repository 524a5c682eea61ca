"""A fifth, independent account generator for the real-bar check (``--sets fifth``).

Written from the behaviour catalogue (issue 9) and the data contract alone, without
reading fraudlens's simulator or the other bench generators. It places accounts on the
real 5-minute bars it is given and returns ``(trades, labels)`` in the contract
(``trades``: ``trade_id, account_id, symbol, ts, side, price, quantity``; ``labels``:
``account_id, label, kind``; label 1 = takeover victim or beneficiary, 0 = normal).
Deterministic per seed. The aim is what a real brokerage book looks like, not the
textbook recipe, so its parametrisation is deliberately its own:

- **Bars read per symbol-day** (UTC): tick = the largest 1, 2, 2.5 or 5 x 10^k step on
  which 99.5 % of the day's prices lie; a bar's width is read in ticks and relative to
  the day's median range (``rel``). "Volatile" = ``rel`` >= 1.5 (momentum: >= 1.8) and
  at least 4 ticks wide, drawn among the session's 25 widest such bars (momentum 15,
  lucky 20), weighted by ``rel`` (not only the day's widest few).
- **Sessions**: an account trades one symbol (or two) in a session of 2-22 h that starts
  at a random bar, so sessions cross UTC midnight when they happen to; the overnight
  takeover always does (start 17:00-23:59 UTC, or 14:00-17:00 on session markets). The
  symbol is drawn with weight sqrt(bars), so several accounts share each symbol-day.
- **Fills at extremes are not exact**: an "extreme" fill sits 0 / 1 / 2 ticks inside the
  bar's high or low with probability 0.55 / 0.30 / 0.15, at most 12 % of the bar's width
  in ticks. "Rough" fills lie 5-25 % of the range inside. Split legs: 2-6 fills at the
  extreme or one tick inside, 0.2-8 s apart, parts of the leg's quantity in odd lots.
- **Order in the bar follows the bar's direction**: in a falling bar the high comes
  first (buy at the high, then sell at the low), in a rising bar the low comes first
  (sell short at the low, buy back at the high). Times carry milliseconds.
- **Sizes**: odd lots (2-4 significant digits); notional per fill lognormal around
  0.2 BTC (coins quoted in BTC), 2,000 USDT, or 4 contracts on an index without volume;
  takeovers 4x that; market makers 0.6x, many-small-fills 0.05-0.2x; every fill capped
  at 15 % (normal) or 40 % (takeover) of its bar's volume when the bar has volume.
- **Labels**: half the accounts label 1: about 14 % of those are beneficiaries.
- Normal kinds (weights): ``market_maker`` (0.13; 15-120 round trips all session, 70 %
  in bars <= the day's median range at the bar's low / high or one tick in, 30 % in
  bars 1-2 medians wide within 20 % of the ends, 30 % closing in the next bar (8 % of
  these adverse losers in quiet bars), 15 % unequal quantities; 35 % of market-order takers
  are matched against a market maker of the same symbol in the book, the maker taking
  the other side of 30-60 % of their fills), ``momentum_stop`` (0.12; 1 / 2 / 3 losing round
  trips with probability 0.6 / 0.3 / 0.1, 60 % long: buy at the high of a volatile bar,
  stopped out at the low of the same (50 %) or the next bar; 40 % short mirror; plus
  0-4 ordinary trades),
  ``market_taker`` (0.11; 3-20 round trips held 0-24 bars, fills at the ask / bid =
  high / low of bars up to 4 ticks wide, anywhere on the paying side in wider bars),
  ``scalper`` (0.10; 10-50 round trips within 0-30 % of the ends of bars up to 1.5
  medians wide, exit 0-3 bars later, 35 % losers), ``swing`` (0.07; 1-4 round trips
  held 30 min-8 h, prices uniform in the bar, 30 % partial exits), ``volume_chaser``
  (0.05; buys in the upper half of the session's 10 busiest bars, sells later),
  ``small_fills`` (0.08; 3-10 bursts of 5-40 tiny fills), ``dca`` (0.05; 4-30 buys
  every 20-90 min, one partial sell 30 %), ``two_symbols`` (0.08; 5-25 ordinary trades
  on each of two symbols at the same hours), ``lucky`` (0.04; 1-2 winning round trips
  bought 5-30 % above the low and sold 5-30 % below the high of a volatile bar, the
  same or the next bar, plus 0-6 ordinary trades).
- Takeover kinds (victim accounts; weights): ``takeover_exact`` (0.20; 3-6 same-bar
  round trips in volatile bars over a 1-8 h session), ``takeover_adjacent`` (0.12; 2-5
  round trips whose legs sit in two neighbouring bars, the used extremes >= 1.5 day
  medians apart), ``takeover_rough`` (0.10; 3-6 round trips, fills 5-25 % inside),
  ``takeover_two`` (0.10; exactly two round trips, each same-bar or adjacent 50/50),
  ``takeover_split`` (0.10; 3-5 round trips with split legs), ``takeover_busy_owner``
  (0.12; 2-4 round trips, 30 % adjacent, inside the day of an owner trading as a
  market maker, scalper, market taker, many-small-fills, swing or DCA account),
  ``takeover_cover`` (0.10; 2-5 round trips plus 3-10 small ordinary cover round trips by
  the thief across the session), ``takeover_spread`` (0.08; 2-3 round trips on each of
  two symbols at the same hours, or 4-7 on one symbol over 12-22 h),
  ``takeover_overnight`` (0.08; 3-5 round trips on both sides of UTC midnight).
- ``beneficiary``: the thief's receiving account, the mirror of each matched takeover
  trade of 1 (75 %) or 2 (25 %) victims (same symbol, opposite side, price and
  quantity; the same timestamp 75 %, 0-2 s later otherwise), plus its own ordinary
  trading (45 % swing or scalper trades, 20 % market making, 35 % none). Cover trades
  and owners' own trades are never mirrored.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

_SEC = 10**9
_BAR = 300 * _SEC
_HOUR = 3600 * _SEC

_NORMAL = {
    "market_maker": 0.13,
    "momentum_stop": 0.12,
    "market_taker": 0.11,
    "scalper": 0.10,
    "swing": 0.07,
    "volume_chaser": 0.05,
    "small_fills": 0.08,
    "dca": 0.05,
    "two_symbols": 0.08,
    "lucky": 0.04,
}
_TAKEOVER = {
    "takeover_exact": 0.20,
    "takeover_adjacent": 0.12,
    "takeover_rough": 0.10,
    "takeover_two": 0.10,
    "takeover_split": 0.10,
    "takeover_busy_owner": 0.12,
    "takeover_cover": 0.10,
    "takeover_spread": 0.08,
    "takeover_overnight": 0.08,
}
_BENEFICIARY_SHARE = 0.14


def _tick_of(prices: np.ndarray) -> float:
    """Largest 1, 2, 2.5 or 5 x 10^k step on which 99.5 % of the prices lie."""
    p = prices[np.isfinite(prices) & (prices > 0)]
    if p.size == 0:
        return 1.0
    top = math.floor(math.log10(float(p.max())))
    for e in range(top, top - 16, -1):
        for m in (5.0, 2.5, 2.0, 1.0):
            t = m * 10.0**e
            r = p / t
            if np.mean(np.abs(r - np.round(r)) < 1e-5) >= 0.995:
                return t
    return 10.0 ** (top - 16)


class _Sym:
    """One symbol's bars as arrays, each bar read against its UTC day."""

    def __init__(self, name: str, k: pd.DataFrame) -> None:
        self.name = name
        self.ts = (k["ts"] - pd.Timestamp(0, tz="UTC")).to_numpy() // np.timedelta64(1, "ns")
        self.ts = self.ts.astype(np.int64)
        self.o = k["open"].to_numpy(float)
        self.h = k["high"].to_numpy(float)
        self.l = k["low"].to_numpy(float)
        self.c = k["close"].to_numpy(float)
        self.v = k["volume"].to_numpy(float)
        n = len(self.ts)
        day = self.ts // (24 * _HOUR)
        self.day = day
        self.tick = np.empty(n)
        self.med = np.empty(n)
        rng_ = self.h - self.l
        for d in np.unique(day):
            m = day == d
            t = _tick_of(np.concatenate([self.o[m], self.h[m], self.l[m], self.c[m]]))
            med = float(np.median(rng_[m]))
            if med <= 0:
                pos = rng_[m][rng_[m] > 0]
                med = float(pos.mean()) if pos.size else t
            self.tick[m] = t
            self.med[m] = max(med, t)
        self.nlo = np.round(self.l / self.tick).astype(np.int64)
        self.nhi = np.round(self.h / self.tick).astype(np.int64)
        self.rt = self.nhi - self.nlo
        self.rel = rng_ / self.med
        # next bar contiguous (exactly 5 minutes later)
        self.next_ok = np.zeros(n, bool)
        self.next_ok[:-1] = np.diff(self.ts) == _BAR
        self.hour = (self.ts // _HOUR) % 24
        if name.upper().endswith("BTC"):
            self.quote, self.notional = "BTC", 0.2
        elif "USD" in name.upper():
            self.quote, self.notional = "USD", 2000.0
        elif float(np.nanmax(self.v)) <= 0:
            self.quote, self.notional = "IDX", 4.0
        else:
            self.quote, self.notional = "OTHER", 2000.0


class FifthGenerator:
    """Accounts placed on real bars; ``run(n)`` -> ``(trades, labels)``."""

    def __init__(self, klines: pd.DataFrame, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        k = klines.copy()
        k["ts"] = pd.to_datetime(k["ts"], utc=True)
        k = k.sort_values(["symbol", "ts"], kind="stable")
        self.syms: dict[str, _Sym] = {}
        for name, g in k.groupby("symbol", sort=True):
            if len(g) >= 48:
                self.syms[str(name)] = _Sym(str(name), g.reset_index(drop=True))
        self.names = sorted(self.syms)
        w = np.array([math.sqrt(len(self.syms[s].ts)) for s in self.names])
        self.sym_w = w / w.sum()
        self.rows: list[tuple] = []
        self.info: dict[str, dict] = {}

    # ---- primitives -------------------------------------------------------------------
    def _pick_symbol(self) -> str:
        return self.names[int(self.rng.choice(len(self.names), p=self.sym_w))]

    def _session(
        self,
        hours: tuple[float, float],
        sym: str | None = None,
        start_hours: tuple[int, int] | None = None,
        at_ns: int | None = None,
        min_bars: int = 12,
    ) -> tuple[str, np.ndarray]:
        rng = self.rng
        for _ in range(200):
            s = sym or self._pick_symbol()
            S = self.syms[s]
            if at_ns is not None:
                i0 = int(np.searchsorted(S.ts, at_ns + int(rng.uniform(-1, 1) * _HOUR)))
                if i0 >= len(S.ts):
                    at_ns = None
                    continue
            elif start_hours is not None:
                ok = np.flatnonzero((S.hour >= start_hours[0]) & (S.hour < start_hours[1]))
                if ok.size == 0:
                    sym = None
                    start_hours = None
                    continue
                i0 = int(rng.choice(ok))
            else:
                i0 = int(rng.integers(0, len(S.ts)))
            end = S.ts[i0] + int(rng.uniform(*hours) * _HOUR)
            i1 = int(np.searchsorted(S.ts, end))
            if i1 - i0 >= min_bars:
                return s, np.arange(i0, i1)
        raise RuntimeError("no session found")

    def _peers(self, s: str, t: int) -> list[str]:
        """Other symbols with bars within an hour of ``t``."""
        out = []
        for x in self.names:
            if x == s:
                continue
            X = self.syms[x]
            i = int(np.searchsorted(X.ts, t - _HOUR))
            if i < len(X.ts) and X.ts[i] <= t + _HOUR:
                out.append(x)
        return out

    def _paired_session(
        self, hours: tuple[float, float], sym: str | None = None, at_ns: int | None = None
    ) -> tuple[str, np.ndarray, str]:
        """A session on a symbol that has another symbol trading at the same hours."""
        s, idx = self._session(hours, sym=sym, at_ns=at_ns)
        for _ in range(100):
            peers = self._peers(s, int(self.syms[s].ts[idx[0]]))
            if peers:
                return s, idx, str(self.rng.choice(peers))
            s, idx = self._session(hours)
        return s, idx, s

    def _secs(self, S: _Sym, j: int, lo: float, hi: float) -> int:
        x = self.rng.uniform(lo, hi) * (_BAR - 10**6)
        return int(S.ts[j] + (int(x) // 10**6) * 10**6)

    def _px(self, S: _Sym, j: int, n: int) -> float:
        t = S.tick[j]
        dec = max(0, -math.floor(math.log10(t)) + 2)
        p = round(n * t, dec)
        return float(min(max(p, S.l[j]), S.h[j]))

    def _inside(self, S: _Sym, j: int) -> int:
        k = int(self.rng.choice(3, p=[0.55, 0.30, 0.15]))
        return min(k, int(0.12 * S.rt[j]))

    def _hi(self, S: _Sym, j: int, k: int | None = None) -> float:
        return self._px(S, j, int(S.nhi[j]) - (self._inside(S, j) if k is None else k))

    def _lo(self, S: _Sym, j: int, k: int | None = None) -> float:
        return self._px(S, j, int(S.nlo[j]) + (self._inside(S, j) if k is None else k))

    def _frac(self, S: _Sym, j: int, f: float) -> float:
        return self._px(S, j, int(S.nlo[j]) + round(f * S.rt[j]))

    def _lot(self, S: _Sym, q: float, int_only: bool = False) -> float:
        if int_only or S.quote == "IDX":
            return float(max(1, round(q)))
        q = max(q, 1e-12)
        e = math.floor(math.log10(q)) - int(self.rng.integers(1, 4))
        lot = 10.0**e
        dec = max(0, -e)
        return float(max(round(round(q / lot) * lot, dec), round(lot, dec)))

    def _size(self, S: _Sym, j: int, scale: float = 1.0, cap: float = 0.15) -> float:
        rng = self.rng
        if S.quote == "IDX":
            return float(max(1, round(S.notional * scale * rng.lognormal(0, 0.8))))
        q = S.notional * scale * rng.lognormal(0, 0.9) / max(S.c[j], 1e-300)
        if S.v[j] > 0:
            q = min(q, cap * S.v[j])
        return self._lot(S, q)

    def _add(
        self, acct: str, S: _Sym, t: int, side: str, price: float, qty: float, m: bool = False
    ) -> None:
        self.rows.append((acct, S.name, int(t), side, float(price), float(qty), m))

    def _leg(
        self,
        acct: str,
        S: _Sym,
        j: int,
        side: str,
        price: float,
        q: float,
        t: int,
        matched: bool,
        split: int = 1,
    ) -> None:
        if split <= 1:
            self._add(acct, S, t, side, price, q, matched)
            return
        parts = self.rng.dirichlet(np.full(split, 2.0)) * q
        parts = [self._lot(S, p) for p in parts[:-1]]
        rest = q - sum(parts)
        if rest <= 0:
            parts, rest = [], q
        parts.append(rest)
        bar_end = S.ts[j] + _BAR - 10**6
        toward = -1 if side == "buy" else 1  # a tick inside the extreme
        for p in parts:
            px = price
            if self.rng.random() >= 0.6:
                px = self._px(S, j, round(price / S.tick[j]) + toward)
            self._add(acct, S, min(t, bar_end), side, px, float(p), matched)
            t += int(self.rng.uniform(0.2, 8.0) * 1000) * 10**6

    # ---- bar choices ------------------------------------------------------------------
    def _vol_bars(
        self, S: _Sym, idx: np.ndarray, n: int, min_rel: float = 1.5, top: int = 25
    ) -> np.ndarray:
        rel = S.rel[idx]
        ok = idx[(rel >= min_rel) & (S.rt[idx] >= 4)]
        if ok.size < n:
            ok = idx[S.rt[idx] >= 3]
            if ok.size < n:
                ok = idx
            order = np.argsort(-S.rel[ok], kind="stable")[: max(n, 3)]
            ok = ok[order]
        else:
            ok = ok[np.argsort(-S.rel[ok], kind="stable")[:top]]
        w = S.rel[ok] + 1e-9
        pick = self.rng.choice(ok, size=min(n, ok.size), replace=False, p=w / w.sum())
        return np.sort(pick)

    def _adj_pairs(self, S: _Sym, idx: np.ndarray, n: int) -> list[tuple[int, bool]]:
        """Bars j with j+1 contiguous whose used extremes lie >= 1.5 medians apart.

        Returns (j, falling): falling = buy at j's high, sell at j+1's low.
        """
        j = idx[:-1][S.next_ok[idx[:-1]]]
        if j.size == 0:
            return []
        fall = (S.h[j] - S.l[j + 1]) / S.med[j]
        rise = (S.h[j + 1] - S.l[j]) / S.med[j]
        gap = np.maximum(fall, rise)
        ok = gap >= 1.5
        if ok.sum() < n:
            ok = gap >= np.sort(gap)[-min(n, gap.size)]
        cj, cg, cf = j[ok], gap[ok], (fall >= rise)[ok]
        order = np.argsort(-cg, kind="stable")[:30]
        cj, cg, cf = cj[order], cg[order], cf[order]
        w = cg + 1e-9
        pick = self.rng.choice(cj.size, size=min(n, cj.size), replace=False, p=w / w.sum())
        return sorted((int(cj[i]), bool(cf[i])) for i in pick)

    # ---- takeover round trips ---------------------------------------------------------
    def _rt_same(
        self, acct: str, S: _Sym, j: int, q: float, rough: bool = False, split: int = 1
    ) -> None:
        rng = self.rng
        falling = S.c[j] < S.o[j] or (S.c[j] == S.o[j] and rng.random() < 0.5)
        if rough:
            pb = self._frac(S, j, 1.0 - rng.uniform(0.05, 0.25))
            ps = self._frac(S, j, rng.uniform(0.05, 0.25))
        else:
            pb, ps = self._hi(S, j), self._lo(S, j)
        t_first, t_second = self._secs(S, j, 0.0, 0.45), self._secs(S, j, 0.55, 0.97)
        if falling:
            self._leg(acct, S, j, "buy", pb, q, t_first, True, split)
            self._leg(acct, S, j, "sell", ps, q, t_second, True, split)
        else:
            self._leg(acct, S, j, "sell", ps, q, t_first, True, split)
            self._leg(acct, S, j, "buy", pb, q, t_second, True, split)

    def _rt_adj(self, acct: str, S: _Sym, j: int, falling: bool, q: float, split: int = 1) -> None:
        if falling:
            self._leg(
                acct, S, j, "buy", self._hi(S, j), q, self._secs(S, j, 0.3, 0.97), True, split
            )
            j2 = j + 1
            self._leg(
                acct, S, j2, "sell", self._lo(S, j2), q, self._secs(S, j2, 0.0, 0.7), True, split
            )
        else:
            self._leg(
                acct, S, j, "sell", self._lo(S, j), q, self._secs(S, j, 0.3, 0.97), True, split
            )
            j2 = j + 1
            self._leg(
                acct, S, j2, "buy", self._hi(S, j2), q, self._secs(S, j2, 0.0, 0.7), True, split
            )

    def _takeover_trips(
        self,
        acct: str,
        S: _Sym,
        idx: np.ndarray,
        n: int,
        adj_share: float = 0.0,
        rough: bool = False,
        split: tuple[int, int] = (1, 1),
    ) -> None:
        rng = self.rng
        q0 = self._size(S, int(idx[len(idx) // 2]), scale=4.0, cap=0.4)
        n_adj = int(rng.binomial(n, adj_share)) if adj_share < 1 else n
        n_same = n - n_adj
        used: set[int] = set()
        if n_same:
            for j in self._vol_bars(S, idx, n_same):
                q = self._size_like(S, int(j), q0)
                self._rt_same(acct, S, int(j), q, rough, int(rng.integers(split[0], split[1] + 1)))
                used.add(int(j))
        if n_adj:
            pairs = [p for p in self._adj_pairs(S, idx, n_adj + 2) if p[0] not in used]
            for j, falling in pairs[:n_adj]:
                q = self._size_like(S, j, q0)
                self._rt_adj(acct, S, j, falling, q, int(rng.integers(split[0], split[1] + 1)))

    def _size_like(self, S: _Sym, j: int, q0: float) -> float:
        q = q0 * self.rng.lognormal(0, 0.25)
        if S.v[j] > 0:
            q = min(q, 0.4 * S.v[j])
        return self._lot(S, q)

    # ---- ordinary trading -------------------------------------------------------------
    def _ordinary(self, acct: str, S: _Sym, idx: np.ndarray, n_rt: int, scale: float = 1.0) -> None:
        """Round trips held 30 min - 8 h at uniform prices (30 % partial exits)."""
        rng = self.rng
        for _ in range(n_rt):
            a = int(rng.integers(0, len(idx)))
            hold = int(rng.integers(6, 97))
            b = min(a + hold, len(idx) - 1)
            j1, j2 = int(idx[a]), int(idx[b])
            q = self._size(S, j1, scale)
            long = rng.random() < 0.7
            q2 = q if rng.random() < 0.7 else self._lot(S, q * rng.uniform(0.3, 0.9))
            s1, s2 = ("buy", "sell") if long else ("sell", "buy")
            self._add(acct, S, self._secs(S, j1, 0, 1), s1, self._frac(S, j1, rng.random()), q)
            if b > a or rng.random() < 0.5:
                t2 = self._secs(S, j2, 0, 1)
                if j2 == j1:
                    t2 = max(t2, self.rows[-1][2] + 10**9)
                    t2 = min(t2, S.ts[j2] + _BAR - 10**6)
                self._add(acct, S, t2, s2, self._frac(S, j2, rng.random()), q2)

    def _market_maker(self, acct: str, S: _Sym, idx: np.ndarray, n_rt: int | None = None) -> None:
        rng = self.rng
        n_rt = int(rng.integers(15, 121)) if n_rt is None else n_rt
        quiet = idx[S.rel[idx] <= 1.0]
        moderate = idx[(S.rel[idx] > 1.0) & (S.rel[idx] <= 2.0)]
        if quiet.size == 0:
            quiet = idx
        q0 = self._size(S, int(idx[0]), 0.6)
        for _ in range(n_rt):
            mod = moderate.size > 0 and rng.random() < 0.3
            j = int(rng.choice(moderate if mod else quiet))
            q = self._lot(S, q0 * rng.lognormal(0, 0.3))
            if S.v[j] > 0:
                q = self._lot(S, min(q, 0.15 * S.v[j]))
            q2 = q if rng.random() < 0.85 else self._lot(S, q * rng.uniform(0.3, 1.0))
            j2 = j + 1 if (S.next_ok[j] and rng.random() < 0.3) else j

            def edge(jj: int, mod: bool = mod) -> int:
                if mod:
                    return int(rng.uniform(0, 0.2) * S.rt[jj] + 0.5)
                return min(int(rng.random() < 0.3), int(0.25 * S.rt[jj]))

            if not mod and rng.random() < 0.08 and j2 != j:
                pb, ps = self._hi(S, j, edge(j)), self._lo(S, j2, edge(j2))  # run over
            else:
                pb, ps = self._lo(S, j, edge(j)), self._hi(S, j2, edge(j2))
            t1, t2 = self._secs(S, j, 0, 0.5), self._secs(S, j2, 0.5, 1.0)
            if rng.random() < 0.5:
                self._add(acct, S, t1, "buy", pb, q)
                self._add(acct, S, t2, "sell", ps, q2)
            else:  # the ask filled first
                self._add(acct, S, t1, "sell", ps if j2 == j else self._hi(S, j, edge(j)), q2)
                self._add(acct, S, t2, "buy", pb if j2 == j else self._lo(S, j2, edge(j2)), q)

    def _momentum_stop(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        for j in self._vol_bars(S, idx, n, min_rel=1.8, top=15):
            j = int(j)
            q = self._size(S, j)
            nxt = S.next_ok[j] and rng.random() < 0.5
            j2 = j + 1 if nxt else j
            k1, k2 = int(rng.integers(0, 3)), int(rng.integers(0, 3))
            k1, k2 = min(k1, int(0.12 * S.rt[j])), min(k2, int(0.12 * S.rt[j2]))
            t1 = self._secs(S, j, 0.0, 0.45)
            t2 = self._secs(S, j2, 0.55, 0.97) if not nxt else self._secs(S, j2, 0.0, 0.9)
            if rng.random() < 0.6:  # long breakout, stopped at the low
                self._add(acct, S, t1, "buy", self._hi(S, j, k1), q)
                self._add(acct, S, t2, "sell", self._lo(S, j2, k2), q)
            else:  # short breakdown, stopped at the high
                self._add(acct, S, t1, "sell", self._lo(S, j, k1), q)
                self._add(acct, S, t2, "buy", self._hi(S, j2, k2), q)
        extra = int(rng.integers(0, 5))
        if extra:
            self._ordinary(acct, S, idx, (extra + 1) // 2)

    def _market_taker(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        narrow = idx[S.rt[idx] <= 4]
        for _ in range(int(rng.integers(3, 21))):
            if narrow.size and rng.random() < 0.7:
                j = int(rng.choice(narrow))
            else:
                j = int(rng.choice(idx))
            pos = int(np.searchsorted(idx, j))
            hold = 0 if rng.random() < 0.2 else int(rng.integers(1, 25))
            j2 = int(idx[min(pos + hold, len(idx) - 1)])
            q = self._size(S, j)
            q2 = q if rng.random() < 0.8 else self._lot(S, q * rng.uniform(0.3, 1.0))

            def pay(jj: int, side: str) -> float:
                if S.rt[jj] <= 4:
                    return self._hi(S, jj, 0) if side == "buy" else self._lo(S, jj, 0)
                f = rng.uniform(0.5, 1.0) if side == "buy" else rng.uniform(0.0, 0.5)
                return self._frac(S, jj, f)

            s1, s2 = ("buy", "sell") if rng.random() < 0.7 else ("sell", "buy")
            t1 = self._secs(S, j, 0, 0.5 if j2 == j else 1)
            t2 = self._secs(S, j2, 0.5 if j2 == j else 0, 1)
            self._add(acct, S, t1, s1, pay(j, s1), q)
            self._add(acct, S, t2, s2, pay(j2, s2), q2)

    def _scalper(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        ok = idx[S.rel[idx] <= 1.5]
        if ok.size == 0:
            ok = idx
        q0 = self._size(S, int(idx[0]))
        for _ in range(int(rng.integers(10, 51))):
            j = int(rng.choice(ok))
            pos = int(np.searchsorted(idx, j))
            j2 = int(idx[min(pos + int(rng.integers(0, 4)), len(idx) - 1)])
            q = self._lot(S, q0 * rng.lognormal(0, 0.3))
            lo1, hi2 = rng.uniform(0, 0.3), 1 - rng.uniform(0, 0.3)
            win = rng.random() < 0.65
            long = rng.random() < 0.6
            if long:
                p1 = self._frac(S, j, lo1 if win else hi2)
                p2 = self._frac(S, j2, hi2 if win else lo1)
                s1, s2 = "buy", "sell"
            else:
                p1 = self._frac(S, j, hi2 if win else lo1)
                p2 = self._frac(S, j2, lo1 if win else hi2)
                s1, s2 = "sell", "buy"
            t1 = self._secs(S, j, 0, 0.5 if j2 == j else 1)
            t2 = self._secs(S, j2, 0.5 if j2 == j else 0, 1)
            self._add(acct, S, t1, s1, p1, q)
            self._add(acct, S, t2, s2, p2, q)

    def _volume_chaser(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        key = S.v[idx] if S.v[idx].max() > 0 else S.rel[idx]
        busy = idx[np.argsort(-key, kind="stable")[:10]]
        for j in rng.choice(busy, size=min(int(rng.integers(2, 7)), busy.size), replace=False):
            j = int(j)
            q = self._size(S, j)
            self._add(
                acct, S, self._secs(S, j, 0, 1), "buy", self._frac(S, j, rng.uniform(0.5, 1)), q
            )
            pos = int(np.searchsorted(idx, j))
            j2 = int(idx[min(pos + int(rng.integers(2, 41)), len(idx) - 1)])
            if j2 != j:
                q2 = q if rng.random() < 0.6 else self._lot(S, q * rng.uniform(0.3, 0.9))
                self._add(
                    acct, S, self._secs(S, j2, 0, 1), "sell", self._frac(S, j2, rng.random()), q2
                )

    def _small_fills(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        for _ in range(int(rng.integers(3, 11))):
            pos = int(rng.integers(0, len(idx)))
            side = "buy" if rng.random() < 0.55 else "sell"
            for _ in range(int(rng.integers(5, 41))):
                p2 = min(pos + int(rng.integers(0, 4)), len(idx) - 1)
                j = int(idx[p2])
                if rng.random() < 0.15:
                    side = "sell" if side == "buy" else "buy"
                q = self._size(S, j, rng.uniform(0.05, 0.2))
                self._add(acct, S, self._secs(S, j, 0, 1), side, self._frac(S, j, rng.random()), q)

    def _dca(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        pos, total = 0, 0.0
        for _ in range(int(rng.integers(4, 31))):
            if pos >= len(idx):
                break
            j = int(idx[pos])
            q = self._size(S, j, 0.5)
            total += q
            self._add(acct, S, self._secs(S, j, 0, 1), "buy", self._frac(S, j, rng.random()), q)
            pos += int(rng.integers(4, 19))
        if rng.random() < 0.3 and total > 0:
            j = int(idx[-1])
            q = self._lot(S, total * rng.uniform(0.2, 0.6))
            self._add(acct, S, self._secs(S, j, 0, 1), "sell", self._frac(S, j, rng.random()), q)

    def _lucky(self, acct: str, S: _Sym, idx: np.ndarray) -> None:
        rng = self.rng
        n = int(rng.integers(1, 3))
        for j in self._vol_bars(S, idx, n, min_rel=1.5, top=20):
            j = int(j)
            j2 = j + 1 if (S.next_ok[j] and rng.random() < 0.4) else j
            q = self._size(S, j)
            rising = S.c[j] >= S.o[j]
            if rising:
                self._add(
                    acct,
                    S,
                    self._secs(S, j, 0, 0.45),
                    "buy",
                    self._frac(S, j, rng.uniform(0.05, 0.3)),
                    q,
                )
                self._add(
                    acct,
                    S,
                    self._secs(S, j2, 0.55, 1),
                    "sell",
                    self._frac(S, j2, 1 - rng.uniform(0.05, 0.3)),
                    q,
                )
            else:
                self._add(
                    acct,
                    S,
                    self._secs(S, j, 0, 0.45),
                    "sell",
                    self._frac(S, j, 1 - rng.uniform(0.05, 0.3)),
                    q,
                )
                self._add(
                    acct,
                    S,
                    self._secs(S, j2, 0.55, 1),
                    "buy",
                    self._frac(S, j2, rng.uniform(0.05, 0.3)),
                    q,
                )
        m = int(rng.integers(0, 7))
        if m:
            self._ordinary(acct, S, idx, (m + 1) // 2)

    # ---- accounts ---------------------------------------------------------------------
    def _normal(self, acct: str, kind: str) -> None:
        rng = self.rng
        if kind == "market_maker":
            s, idx = self._session((8, 22), min_bars=40)
            self._market_maker(acct, self.syms[s], idx)
        elif kind == "momentum_stop":
            s, idx = self._session((3, 12))
            self._momentum_stop(acct, self.syms[s], idx)
        elif kind == "market_taker":
            s, idx = self._session((3, 14))
            self._market_taker(acct, self.syms[s], idx)
        elif kind == "scalper":
            s, idx = self._session((2, 10))
            self._scalper(acct, self.syms[s], idx)
        elif kind == "swing":
            s, idx = self._session((4, 20))
            self._ordinary(acct, self.syms[s], idx, int(rng.integers(1, 5)))
        elif kind == "volume_chaser":
            s, idx = self._session((4, 16))
            self._volume_chaser(acct, self.syms[s], idx)
        elif kind == "small_fills":
            s, idx = self._session((2, 12))
            self._small_fills(acct, self.syms[s], idx)
        elif kind == "dca":
            s, idx = self._session((6, 22), min_bars=40)
            self._dca(acct, self.syms[s], idx)
        elif kind == "two_symbols":
            s, idx, s2 = self._paired_session((4, 16))
            S = self.syms[s]
            self._ordinary(acct, S, idx, int(rng.integers(3, 13)))
            s2, idx2 = self._session((4, 16), sym=s2, at_ns=int(S.ts[idx[0]]))
            self._ordinary(acct, self.syms[s2], idx2, int(rng.integers(3, 13)))
        elif kind == "lucky":
            s, idx = self._session((3, 12))
            self._lucky(acct, self.syms[s], idx)
        else:
            raise ValueError(kind)
        self.info[acct]["symbol"] = s
        self.info[acct]["start"] = int(self.syms[s].ts[idx[0]])

    def _owner_day(self, acct: str, S: _Sym, idx: np.ndarray) -> str:
        rng = self.rng
        style = str(
            rng.choice(["market_maker", "scalper", "market_taker", "small_fills", "swing", "dca"])
        )
        if style == "market_maker":
            self._market_maker(acct, S, idx, int(rng.integers(10, 60)))
        elif style == "scalper":
            self._scalper(acct, S, idx)
        elif style == "market_taker":
            self._market_taker(acct, S, idx)
        elif style == "small_fills":
            self._small_fills(acct, S, idx)
        elif style == "swing":
            self._ordinary(acct, S, idx, int(rng.integers(2, 6)))
        else:
            self._dca(acct, S, idx)
        return style

    def _takeover(self, acct: str, kind: str, near: tuple[str, int] | None = None) -> None:
        rng = self.rng
        sym, at = (near[0], near[1]) if near else (None, None)

        def sess(h: tuple[float, float], **kw) -> tuple[str, np.ndarray]:
            return self._session(h, sym=sym, at_ns=at, **kw)

        if kind == "takeover_exact":
            s, idx = sess((1, 8))
            self._takeover_trips(acct, self.syms[s], idx, int(rng.integers(3, 7)))
        elif kind == "takeover_adjacent":
            s, idx = sess((2, 10))
            self._takeover_trips(acct, self.syms[s], idx, int(rng.integers(2, 6)), adj_share=1.0)
        elif kind == "takeover_rough":
            s, idx = sess((1, 8))
            self._takeover_trips(acct, self.syms[s], idx, int(rng.integers(3, 7)), rough=True)
        elif kind == "takeover_two":
            s, idx = sess((1, 8))
            self._takeover_trips(acct, self.syms[s], idx, 2, adj_share=0.5)
        elif kind == "takeover_split":
            s, idx = sess((1, 8))
            self._takeover_trips(acct, self.syms[s], idx, int(rng.integers(3, 6)), split=(2, 6))
        elif kind == "takeover_busy_owner":
            s, idx = sess((8, 20), min_bars=40)
            S = self.syms[s]
            self.info[acct]["owner"] = self._owner_day(acct, S, idx)
            a = int(rng.integers(0, max(1, len(idx) - 48)))
            sub = idx[a : a + int(rng.integers(12, 49))]
            self._takeover_trips(acct, S, sub, int(rng.integers(2, 5)), adj_share=0.3)
        elif kind == "takeover_cover":
            s, idx = sess((4, 14))
            S = self.syms[s]
            self._takeover_trips(acct, S, idx, int(rng.integers(2, 6)))
            self._ordinary(acct, S, idx, int(rng.integers(3, 11)), scale=0.3)
        elif kind == "takeover_spread":
            if rng.random() < 0.5:
                s, idx, s2 = self._paired_session((3, 8), sym=sym, at_ns=at)
                S = self.syms[s]
                self._takeover_trips(acct, S, idx, int(rng.integers(2, 4)))
                s2, idx2 = self._session((3, 8), sym=s2, at_ns=int(S.ts[idx[0]]))
                self._takeover_trips(acct, self.syms[s2], idx2, int(rng.integers(2, 4)))
            else:
                s, idx = sess((12, 22), min_bars=60)
                self._takeover_trips(acct, self.syms[s], idx, int(rng.integers(4, 8)))
        elif kind == "takeover_overnight":
            for _ in range(50):
                s = sym or self._pick_symbol()
                S = self.syms[s]
                hrs = (17, 24) if S.hour.min() < 6 else (14, 17)
                s, idx = self._session((14, 21), sym=s, start_hours=hrs, min_bars=30)
                days = S.day[idx]
                if (days == days.min()).sum() >= 6 and (days != days.min()).sum() >= 6:
                    break
            d0 = idx[days == days.min()]
            d1 = idx[days != days.min()]
            n = int(rng.integers(3, 6))
            n0 = max(1, n // 2)
            self._takeover_trips(acct, S, d0, n0)
            self._takeover_trips(acct, S, d1, n - n0)
        else:
            raise ValueError(kind)
        self.info[acct]["symbol"] = s
        self.info[acct]["start"] = int(self.syms[s].ts[idx[0]])

    def _beneficiary(self, acct: str, victims: list[str]) -> None:
        rng = self.rng
        vs = set(victims)
        mine = [r for r in self.rows if r[0] in vs and r[6]]
        for _, s, t, side, price, qty, _m in mine:
            S = self.syms[s]
            if rng.random() >= 0.75:
                j = int(np.searchsorted(S.ts, t, side="right") - 1)
                t = min(t + int(rng.uniform(0, 2000)) * 10**6, int(S.ts[j]) + _BAR - 10**6)
            self._add(acct, S, t, "sell" if side == "buy" else "buy", price, qty)
        s = self.info[victims[0]]["symbol"]
        S = self.syms[s]
        u = rng.random()
        if u < 0.65 and mine:
            t0 = min(r[2] for r in mine)
            s, idx = self._session((4, 14), sym=s, at_ns=t0 - 2 * _HOUR)
            if u < 0.2:
                self._market_maker(acct, S, idx, int(rng.integers(10, 50)))
            elif rng.random() < 0.5:
                self._ordinary(acct, S, idx, int(rng.integers(2, 10)))
            else:
                self._scalper(acct, S, idx)

    def _match_takers(self) -> None:
        """35 % of market takers: a market maker of the symbol takes some of their fills."""
        rng = self.rng
        makers: dict[str, list[str]] = {}
        for a, inf in self.info.items():
            if inf["kind"] == "market_maker":
                makers.setdefault(inf["symbol"], []).append(a)
        by_acct: dict[str, list[tuple]] = {}
        for r in self.rows:
            by_acct.setdefault(r[0], []).append(r)
        span = {a: (min(r[2] for r in rs), max(r[2] for r in rs)) for a, rs in by_acct.items()}
        for a, inf in self.info.items():
            if inf["kind"] != "market_taker" or rng.random() >= 0.35:
                continue
            t0, t1 = span[a]
            cands = [
                m for m in makers.get(inf["symbol"], []) if span[m][0] < t1 and span[m][1] > t0
            ]
            if not cands:
                continue
            mm = str(rng.choice(cands))
            m0, m1 = span[mm]
            share = rng.uniform(0.3, 0.6)
            for _, s, t, side, price, qty, _m in by_acct.get(a, []):
                if m0 <= t <= m1 and rng.random() < share:
                    S = self.syms[s]
                    self._add(mm, S, t, "sell" if side == "buy" else "buy", price, qty)

    def run(self, n_accounts: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = self.rng
        n = int(n_accounts)
        n1 = n // 2
        n_ben = max(1, round(n1 * _BENEFICIARY_SHARE)) if n1 >= 4 else 0
        n_vic = n1 - n_ben
        n0 = n - n1
        ids = [f"a{x:07d}" for x in rng.choice(9_000_000, size=n, replace=False) + 1_000_000]
        it = iter(ids)
        nk, nw = list(_NORMAL), np.array(list(_NORMAL.values()))
        tk, tw = list(_TAKEOVER), np.array(list(_TAKEOVER.values()))
        normal_kinds = rng.choice(nk, size=n0, p=nw / nw.sum())
        victim_kinds = list(rng.choice(tk, size=n_vic, p=tw / tw.sum()))
        # beneficiaries: 1 (75 %) or 2 (25 %) victims each, victims of one thief close by
        groups: list[list[int]] = []
        v = 0
        for _ in range(n_ben):
            m = 2 if rng.random() < 0.25 else 1
            if v + m > n_vic:
                m = n_vic - v
            if m <= 0:
                break
            groups.append(list(range(v, v + m)))
            v += m
        victim_ids = [next(it) for _ in range(n_vic)]
        done: set[int] = set()
        for g in groups:
            near = None
            for vi in g:
                a = victim_ids[vi]
                self.info[a] = {"kind": victim_kinds[vi], "label": 1}
                self._takeover(a, victim_kinds[vi], near)
                near = (self.info[a]["symbol"], self.info[a]["start"])
                done.add(vi)
            b = next(it)
            self.info[b] = {"kind": "beneficiary", "label": 1}
            self._beneficiary(b, [victim_ids[vi] for vi in g])
            self.info[b]["symbol"] = self.info[victim_ids[g[0]]]["symbol"]
        for vi, a in enumerate(victim_ids):
            if vi not in done:
                self.info[a] = {"kind": victim_kinds[vi], "label": 1}
                self._takeover(a, victim_kinds[vi])
        for kind in normal_kinds:
            a = next(it, None)
            if a is None:
                break
            self.info[a] = {"kind": str(kind), "label": 0}
            self._normal(a, str(kind))
        self._match_takers()
        t = pd.DataFrame(
            self.rows, columns=["account_id", "symbol", "ts", "side", "price", "quantity", "m"]
        ).drop(columns="m")
        t = t.sort_values(["ts", "account_id", "side"], kind="stable").reset_index(drop=True)
        t["ts"] = pd.to_datetime(t["ts"], utc=True)
        t.insert(0, "trade_id", [f"T{self.seed % 100000:05d}-{i:08d}" for i in range(len(t))])
        present = set(t["account_id"])
        labels = pd.DataFrame(
            [
                {"account_id": a, "label": inf["label"], "kind": inf["kind"]}
                for a, inf in self.info.items()
                if a in present
            ]
        ).sort_values("account_id", kind="stable")
        return t, labels.reset_index(drop=True)
