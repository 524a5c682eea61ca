"""Synthetic market data: 5-minute bars, normal accounts and account takeovers.

Two generators:

- :func:`simulate`: many symbols (US equities in their 09:30-16:00 New York session and
  24 h crypto pairs), realistic bars (U-shaped intraday volatility, volatility
  clustering, fat tails, jumps, wicks), and accounts of six normal and six takeover
  kinds (see :data:`KINDS`). The normal kinds include the hard negatives a detector
  meets in practice: limit orders filled at a bar's extreme, traders who are only
  active in the most volatile bars, and scalpers who buy and sell within one bar.
- :func:`simulate_reference`: the reference system's own recipe (one symbol, 80 bars,
  takeover round trips at the extremes of the top-10 bars, normal accounts with one
  buy and one sell at random), kept to compare with the way the reference trained.

Every trade lies inside a bar of its symbol and within that bar's ``[low, high]``.
Prices are rounded to a per-symbol tick of about five significant digits. Output is
deterministic for a given ``seed`` and set of arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraudlens.market.data import MarketData

__all__ = ["KINDS", "REFERENCE_KINDS", "simulate", "simulate_reference"]

#: Account kinds of :func:`simulate` and their label (1 = takeover pattern).
KINDS: dict[str, int] = {
    "normal_casual": 0,
    "normal_daytrader": 0,
    "normal_limit": 0,
    "normal_scalper": 0,
    "normal_swing": 0,
    "normal_volatile": 0,
    "takeover_mixed": 1,
    "takeover_multi": 1,
    "takeover_reference": 1,
    "takeover_reverse": 1,
    "takeover_subtle": 1,
    "takeover_wick": 1,
}

#: Account kinds of :func:`simulate_reference` and their label.
REFERENCE_KINDS: dict[str, int] = {"ref_normal": 0, "ref_takeover": 1}

_BAR_NS = 5 * 60 * 10**9
_BAR_MS = 5 * 60 * 1000
_NS_PER_MS = 10**6
_EQUITY_BARS = 78  # 09:30-16:00 New York
_CRYPTO_BARS = 288
#: The reference skips bars whose amplitude / low is below this.
_REF_MIN_AMPLITUDE = 0.005


# --------------------------------------------------------------------------- bars


@dataclass
class _Bars:
    """All bars of all symbols, sorted by (symbol, ts), plus per symbol-day indexes."""

    names: list[str]
    sym: np.ndarray
    ts: np.ndarray
    day: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    decimals: np.ndarray  # per bar
    crypto: np.ndarray  # per symbol
    n_days: int
    slices: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    top: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    ref_ok: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def index(self, top_k: int = 20) -> None:
        """Slice and amplitude ranking per (symbol, day)."""
        key = self.sym.astype(np.int64) * (self.n_days + 1) + self.day
        change = np.flatnonzero(np.diff(key)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(key)]])
        amp = self.high - self.low
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            sd = (int(self.sym[a]), int(self.day[a]))
            self.slices[sd] = (a, b)
            order = a + np.argsort(-amp[a:b], kind="stable")[:top_k]
            self.top[sd] = order
            t10 = order[:10]
            self.ref_ok[sd] = t10[amp[t10] / self.low[t10] >= _REF_MIN_AMPLITUDE]

    def frame(self) -> pd.DataFrame:
        names = np.asarray(self.names, dtype=object)
        return pd.DataFrame(
            {
                "symbol": pd.Series(names[self.sym], dtype=str),
                "ts": pd.to_datetime(self.ts, utc=True).astype("datetime64[ns, UTC]"),
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
            }
        )


def _tick_decimals(price: float) -> int:
    """Decimals giving a tick of about five significant digits."""
    return int(np.clip(4 - np.floor(np.log10(price)), 0, 8))


def _ohlcv(
    rng: np.random.Generator,
    *,
    p0: float,
    sigma: np.ndarray,
    gap_sd: np.ndarray,
    decimals: int,
    dollar_volume: float,
    profile: np.ndarray,
    integer_volume: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One symbol's bars from per-bar volatilities, in one vectorised pass.

    Returns are Student-t (df 4, fat tails) plus rare jumps; the gap at each session
    open is added between the previous close and the new open.
    """
    n = len(sigma)
    shocks = rng.standard_t(4, n) / np.sqrt(2.0)
    jumps = (rng.random(n) < 0.003) * rng.normal(0.0, 6.0, n)
    r = sigma * (shocks + jumps)
    gaps = gap_sd * rng.standard_normal(n)
    log_close = np.log(p0) + np.cumsum(r + gaps)
    log_open = log_close - r
    o, c = np.exp(log_open), np.exp(log_close)
    # Wicks scale with the bar's volatility; about one bar in ten closes (or opens) at
    # its extreme, and a rare spike leaves a long wick that reverts within the bar.
    up = sigma * np.abs(rng.standard_normal(n)) * 0.8 * (rng.random(n) > 0.1)
    dn = sigma * np.abs(rng.standard_normal(n)) * 0.8 * (rng.random(n) > 0.1)
    spike = (rng.random(n) < 0.004) * sigma * rng.uniform(2.0, 6.0, n)
    spike_up = rng.random(n) < 0.5
    up = up + np.where(spike_up, spike, 0.0)
    dn = dn + np.where(spike_up, 0.0, spike)
    h = np.maximum(o, c) * np.exp(up)
    lo = np.minimum(o, c) * np.exp(-dn)
    o, h, lo, c = (np.round(x, decimals) for x in (o, h, lo, c))
    tick = 10.0**-decimals
    h = np.round(np.maximum(h, lo + tick), decimals)
    vol = (
        dollar_volume
        / c
        * profile**1.3
        * (0.5 + np.abs(r) / sigma)
        * np.exp(rng.normal(0.0, 0.4, n))
    )
    vol = np.round(vol) if integer_volume else np.round(vol, 4)
    return o, h, lo, c, vol


def _equity_profile(n: int) -> np.ndarray:
    """U-shaped intraday volatility: high at the open, lower at midday, up at the close."""
    x = (np.arange(n) + 0.5) / n
    p = 0.55 + 1.6 * np.exp(-x / 0.06) + 0.6 * np.exp(-(1 - x) / 0.05) + 0.5 * (2 * x - 1) ** 2
    return p / np.sqrt(np.mean(p**2))


def _crypto_profile(n: int) -> np.ndarray:
    """Mild 24 h cycle peaking while US markets are open."""
    hours = (np.arange(n) * 5 + 2.5) / 60.0
    p = 1.0 + 0.3 * np.cos(2 * np.pi * (hours - 16.0) / 24.0)
    return p / np.sqrt(np.mean(p**2))


def _symbol_names(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        size = int(rng.integers(3, 5))
        name = "".join(rng.choice(letters, size).tolist())
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _make_bars(rng: np.random.Generator, n_symbols: int, start: pd.Timestamp, days: int) -> _Bars:
    n_crypto = 1 if n_symbols == 1 else int(np.clip(round(0.3 * n_symbols), 1, n_symbols - 1))
    is_crypto = np.zeros(n_symbols, dtype=bool)
    is_crypto[rng.choice(n_symbols, n_crypto, replace=False)] = True
    base_names = _symbol_names(rng, n_symbols)
    names = [f"{b}-USD" if c else b for b, c in zip(base_names, is_crypto, strict=True)]
    order = np.argsort(names)  # bars are sorted by symbol name
    names = [names[i] for i in order]
    is_crypto = is_crypto[order]

    dates = [start + pd.Timedelta(days=d) for d in range(days)]
    eq_days = [d for d, t in enumerate(dates) if t.weekday() < 5]
    eq_open = np.array(
        [
            pd.Timestamp(f"{dates[d].date()} 09:30", tz="America/New_York").tz_convert("UTC").value
            for d in eq_days
        ],
        dtype=np.int64,
    )
    step = np.arange(_EQUITY_BARS, dtype=np.int64) * _BAR_NS
    eq_ts = (eq_open[:, None] + step[None, :]).ravel()
    eq_day = np.repeat(np.asarray(eq_days, dtype=np.int64), _EQUITY_BARS)
    eq_first = np.tile(np.arange(_EQUITY_BARS) == 0, len(eq_days))
    eq_prof = np.tile(_equity_profile(_EQUITY_BARS), len(eq_days))
    cr_ts = start.value + np.arange(days * _CRYPTO_BARS, dtype=np.int64) * _BAR_NS
    cr_day = np.repeat(np.arange(days, dtype=np.int64), _CRYPTO_BARS)
    cr_prof = np.tile(_crypto_profile(_CRYPTO_BARS), days)

    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("sym", "ts", "day", "o", "h", "l", "c", "v", "dec")
    }
    for s in range(n_symbols):
        crypto = bool(is_crypto[s])
        if crypto:
            ts, day, prof, first = cr_ts, cr_day, cr_prof, np.zeros(len(cr_ts), dtype=bool)
            daily = float(np.clip(np.exp(rng.normal(np.log(0.035), 0.35)), 0.01, 0.12))
            per_day = _CRYPTO_BARS
        else:
            ts, day, prof, first = eq_ts, eq_day, eq_prof, eq_first
            daily = float(np.clip(np.exp(rng.normal(np.log(0.025), 0.4)), 0.008, 0.10))
            per_day = _EQUITY_BARS
        n = len(ts)
        if n == 0:
            continue
        p0 = float(np.exp(rng.uniform(np.log(1.0), np.log(5000.0))))
        # Volatility clusters: an AR(1) log-volatility factor plus a per-day level.
        phi, sd = 0.98, 0.35
        kernel = phi ** np.arange(min(n, 400))  # AR(1) impulse response, truncated
        noise = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n + len(kernel))
        log_vol = np.convolve(noise, kernel, mode="valid")[-n:]
        day_level = np.exp(rng.normal(0.0, 0.25, days))[day]
        sigma = daily / np.sqrt(per_day) * prof * np.exp(log_vol - sd**2 / 2) * day_level
        gap_sd = np.where(first, 0.3 * daily, 0.0)
        dec = _tick_decimals(p0)
        o, h, lo, c, v = _ohlcv(
            rng,
            p0=p0,
            sigma=sigma,
            gap_sd=gap_sd,
            decimals=dec,
            dollar_volume=float(np.exp(rng.uniform(np.log(2e4), np.log(2e6)))),
            profile=prof,
            integer_volume=not crypto,
        )
        for k, arr in (
            ("sym", np.full(n, s)),
            ("ts", ts),
            ("day", day),
            ("o", o),
            ("h", h),
            ("l", lo),
            ("c", c),
            ("v", v),
            ("dec", np.full(n, dec)),
        ):
            parts[k].append(arr)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    bars = _Bars(
        names=names,
        sym=cat["sym"].astype(np.int64),
        ts=cat["ts"].astype(np.int64),
        day=cat["day"].astype(np.int64),
        open=cat["o"],
        high=cat["h"],
        low=cat["l"],
        close=cat["c"],
        volume=cat["v"],
        decimals=cat["dec"].astype(np.int64),
        crypto=is_crypto,
        n_days=days,
    )
    bars.index()
    return bars


# --------------------------------------------------------------------------- accounts


@dataclass
class _Trades:
    """Trades as column chunks; prices are kept as positions in the bar's range."""

    acct: list[np.ndarray] = field(default_factory=list)
    bar: list[np.ndarray] = field(default_factory=list)
    off: list[np.ndarray] = field(default_factory=list)
    sell: list[np.ndarray] = field(default_factory=list)
    pos: list[np.ndarray] = field(default_factory=list)
    qty: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        acct: int,
        bar: np.ndarray,
        off: np.ndarray,
        sell: np.ndarray,
        pos: np.ndarray,
        qty: np.ndarray,
    ) -> None:
        n = len(bar)
        if n == 0:
            return
        self.acct.append(np.full(n, acct, dtype=np.int64))
        self.bar.append(np.asarray(bar, dtype=np.int64))
        self.off.append(np.asarray(off, dtype=np.int64))
        self.sell.append(np.asarray(sell, dtype=bool))
        self.pos.append(np.asarray(pos, dtype=np.float64))
        self.qty.append(np.asarray(qty, dtype=np.float64))


class _Accounts:
    """Generates every account kind on a shared set of bars."""

    def __init__(self, bars: _Bars, rng: np.random.Generator) -> None:
        self.b = bars
        self.rng = rng
        self.out = _Trades()
        n_sym = len(bars.names)
        # A few symbols draw most of the retail flow.
        pop = 1.0 / (1.0 + rng.permutation(n_sym)) ** 0.8
        self.pop = pop / pop.sum()
        self.day_syms: list[np.ndarray] = []
        self.ref_syms: list[np.ndarray] = []
        for d in range(bars.n_days):
            syms = np.array([s for s in range(n_sym) if (s, d) in bars.slices], dtype=np.int64)
            self.day_syms.append(syms)
            ok = np.array([s for s in syms if len(bars.ref_ok[(s, d)]) >= 2], dtype=np.int64)
            self.ref_syms.append(ok)
        self.days_any = np.array([d for d in range(bars.n_days) if len(self.day_syms[d])])
        self.days_ref = np.array([d for d in range(bars.n_days) if len(self.ref_syms[d])])
        # Wicks set by matched trades: extension of high / low, in units of the range.
        self.ext_high = np.zeros(len(bars.sym))
        self.ext_low = np.zeros(len(bars.sym))

    # ---------------------------------------------------------------- helpers

    def pick(self, n_sym: int, reference: bool = False) -> tuple[int, np.ndarray]:
        """A day and up to ``n_sym`` distinct symbols with bars that day."""
        rng = self.rng
        if reference and len(self.days_ref):
            d = int(rng.choice(self.days_ref))
            pool = self.ref_syms[d]
        else:
            d = int(rng.choice(self.days_any))
            pool = self.day_syms[d]
        # Weighted sampling without replacement: the k smallest Exp(1) / weight keys.
        keys = rng.exponential(size=len(pool)) / self.pop[pool]
        return d, pool[np.argsort(keys)[:n_sym]]

    def bars_of(self, s: int, d: int) -> np.ndarray:
        a, b = self.b.slices[(s, d)]
        return np.arange(a, b)

    def busy(self, s: int, d: int, n: int, first: float = 0.0, last: float = 1.0) -> np.ndarray:
        """``n`` bars of symbol ``s`` on day ``d``, drawn in proportion to bar volume.

        Retail activity follows volume, which is highest around the open, the close
        and big moves, so ordinary trades also land in volatile bars. ``first`` and
        ``last`` restrict the draw to that fraction of the day's bars.
        """
        a, b = self.b.slices[(s, d)]
        lo = a + int((b - a) * first)
        hi = max(lo + 1, a + int(np.ceil((b - a) * last)))
        cum = np.cumsum(self.b.volume[lo:hi] + 1e-9)
        idx = np.searchsorted(cum, self.rng.random(n) * cum[-1], side="right")
        return lo + np.minimum(idx, hi - lo - 1)

    def qty(self, n: int, bars: np.ndarray, takeover: bool) -> np.ndarray:
        """Order sizes from a notional (takeovers move somewhat larger amounts)."""
        mu = np.log(8000.0) if takeover else np.log(3000.0)
        notional = np.exp(self.rng.normal(mu, 1.0, n))
        mid = (self.b.high[bars] + self.b.low[bars]) / 2
        q = notional / mid
        crypto = self.b.crypto[self.b.sym[bars]]
        return np.where(crypto, np.maximum(np.round(q, 4), 1e-4), np.maximum(np.round(q), 1.0))

    def offsets(self, n: int) -> np.ndarray:
        return self.rng.integers(0, _BAR_MS, n)

    def singles(self, acct: int, bars: np.ndarray, pos: np.ndarray | None = None) -> None:
        """Unpaired trades at random positions and sides."""
        n = len(bars)
        rng = self.rng
        sell = rng.random(n) < 0.5
        p = rng.random(n) if pos is None else pos
        self.out.add(acct, bars, self.offsets(n), sell, p, self.qty(n, bars, False))

    def pairs(
        self,
        acct: int,
        bar_a: np.ndarray,
        bar_b: np.ndarray,
        buy_pos: np.ndarray,
        sell_pos: np.ndarray,
        *,
        buy_first: np.ndarray,
        same_ts: float,
        takeover: bool,
        gap_ms: int = _BAR_MS,
    ) -> None:
        """Round trips: a buy and a sell of the same size; ``bar_a`` holds the first leg.

        With probability ``same_ts`` both legs share a timestamp (only when in one bar);
        otherwise the second leg follows within ``gap_ms`` (inside its bar).
        """
        rng = self.rng
        n = len(bar_a)
        q = self.qty(n, bar_a, takeover)
        off_a = rng.integers(0, _BAR_MS, n)
        same_bar = bar_a == bar_b
        later = off_a + rng.integers(1000, max(gap_ms, 1001), n)
        off_b = np.where(same_bar, np.minimum(later, _BAR_MS - 1), rng.integers(0, _BAR_MS, n))
        off_b = np.where(same_bar & (rng.random(n) < same_ts), off_a, off_b)
        buy_bar = np.where(buy_first, bar_a, bar_b)
        sell_bar = np.where(buy_first, bar_b, bar_a)
        buy_off = np.where(buy_first, off_a, off_b)
        sell_off = np.where(buy_first, off_b, off_a)
        self.out.add(
            acct,
            np.concatenate([buy_bar, sell_bar]),
            np.concatenate([buy_off, sell_off]),
            np.r_[np.zeros(n, bool), np.ones(n, bool)],
            np.concatenate([buy_pos, sell_pos]),
            np.concatenate([q, q]),
        )

    def extreme_trips(
        self,
        acct: int,
        bars: np.ndarray,
        *,
        width: float,
        victim_buys_low: bool,
        same_ts: float,
        edge: float = 0.0,
        high_band: tuple[float, float] | None = None,
    ) -> None:
        """Matched round trips at opposite extremes of each bar.

        One leg lies at ``edge``..``width`` of the range above the low, the other as far
        below the high (or inside ``high_band``, as fractions of the range above the low).
        """
        rng = self.rng
        n = len(bars)
        near_low = rng.uniform(edge, width, n)
        lo_hi, hi_hi = high_band if high_band is not None else (1.0 - width, 1.0 - edge)
        near_high = rng.uniform(lo_hi, hi_hi, n)
        buy = near_low if victim_buys_low else near_high
        sell = near_high if victim_buys_low else near_low
        self.pairs(
            acct,
            bars,
            bars,
            buy,
            sell,
            buy_first=rng.random(n) < 0.5,
            same_ts=same_ts,
            takeover=True,
            gap_ms=20_000,
        )

    def previous_day(self, acct: int, day: int, syms: np.ndarray) -> None:
        """Some owners also traded a little the day before."""
        rng = self.rng
        if day == 0 or rng.random() >= 0.1:
            return
        cands = [s for s in syms if (s, day - 1) in self.b.slices]
        if not cands:
            return
        self.singles(acct, self.busy(int(rng.choice(cands)), day - 1, int(rng.integers(1, 4))))

    # ---------------------------------------------------------------- normal kinds

    def normal_casual(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(1 if rng.random() < 0.8 else 2)
        n = int(rng.integers(1, 5))
        bars = np.concatenate([self.busy(int(s), d, 1) for s in rng.choice(syms, n)])
        self.singles(acct, np.sort(bars))
        self.previous_day(acct, d, syms)

    def normal_swing(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(1, 3)))
        for s in syms:
            nb, ns = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            buys = np.sort(self.busy(int(s), d, nb, 0.0, 0.6))
            sells = np.sort(self.busy(int(s), d, ns, 0.4, 1.0))
            b = np.concatenate([buys, sells])
            sell = np.r_[np.zeros(nb, bool), np.ones(ns, bool)]
            n = len(b)
            self.out.add(acct, b, self.offsets(n), sell, rng.random(n), self.qty(n, b, False))
        self.previous_day(acct, d, syms)

    def _daytrade(self, acct: int, day: int, syms: np.ndarray, n_trades: int) -> None:
        rng = self.rng
        n_trips = n_trades // 2
        sym_of = rng.choice(syms, n_trips)
        first = np.empty(n_trips, dtype=np.int64)
        second = np.empty(n_trips, dtype=np.int64)
        for s in np.unique(sym_of):
            m = sym_of == s
            bars = self.bars_of(int(s), day)
            i = self.busy(int(s), day, int(m.sum())) - bars[0]
            gap = np.where(rng.random(int(m.sum())) < 0.25, 0, rng.integers(1, 12, int(m.sum())))
            first[m] = bars[i]
            second[m] = bars[np.minimum(i + gap, len(bars) - 1)]
        self.pairs(
            acct,
            first,
            second,
            rng.random(n_trips),
            rng.random(n_trips),
            buy_first=rng.random(n_trips) < 0.8,
            same_ts=0.05,
            takeover=False,
            gap_ms=120_000,
        )
        if n_trades % 2:
            self.singles(acct, self.busy(int(rng.choice(syms)), day, 1))

    def normal_daytrader(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(1, 4)))
        self._daytrade(acct, d, syms, int(rng.integers(10, 51)))
        self.previous_day(acct, d, syms)

    def normal_scalper(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(1, 3)))
        n = int(rng.integers(6, 31))
        sym_of = rng.choice(syms, n)
        bars = np.empty(n, dtype=np.int64)
        for s in np.unique(sym_of):
            m = sym_of == s
            k = int(m.sum())
            pool = np.where(
                rng.random(k) < 0.4,
                rng.choice(self.b.top[(int(s), d)], k),
                self.busy(int(s), d, k),
            )
            bars[m] = pool
        # Near the middle of the bar with a small spread, long or short.
        long = rng.random(n) < 0.7
        spread = np.abs(rng.normal(0.02, 0.02, n))
        lo_leg = rng.uniform(0.3, 0.7 - 0.06, n)
        hi_leg = np.clip(lo_leg + spread, 0.3, 0.7)
        win = rng.random(n) < 0.6
        first_pos = np.where(win, lo_leg, hi_leg)
        second_pos = np.where(win, hi_leg, lo_leg)
        buy_pos = np.where(long, first_pos, second_pos)
        sell_pos = np.where(long, second_pos, first_pos)
        self.pairs(
            acct,
            bars,
            bars,
            buy_pos,
            sell_pos,
            buy_first=long,
            same_ts=0.2,
            takeover=False,
            gap_ms=120_000,
        )
        self.previous_day(acct, d, syms)

    def normal_limit(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(1, 3)))
        for s in syms:
            top = self.b.top[(int(s), d)]
            n = int(rng.integers(2, 7))
            # Limit orders are hit most often when the price swings: half in volatile bars.
            pool = np.unique(np.concatenate([rng.choice(top, n), self.busy(int(s), d, n)]))
            chosen = rng.choice(pool, min(n, len(pool)), replace=False)  # distinct bars
            k = len(chosen)
            sell = rng.random(k) < 0.5
            at_edge = rng.random(k) < 0.6
            pos = np.where(at_edge, np.where(sell, 1.0, 0.0), rng.random(k))
            self.out.add(acct, chosen, self.offsets(k), sell, pos, self.qty(k, chosen, False))
        self.previous_day(acct, d, syms)

    def normal_volatile(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(1, 3)))
        n = int(rng.integers(4, 13))
        top10 = np.concatenate([self.b.top[(int(s), d)][:10] for s in syms])
        rest = np.concatenate([self.b.top[(int(s), d)][10:] for s in syms])
        if len(rest) == 0:
            rest = top10

        def draw(k: int) -> np.ndarray:
            return np.where(rng.random(k) < 0.7, rng.choice(top10, k), rng.choice(rest, k))

        n_pairs = int(rng.binomial(n // 2, 0.5))
        if n_pairs:
            pb = draw(n_pairs)
            self.pairs(
                acct,
                pb,
                pb,
                rng.random(n_pairs),
                rng.random(n_pairs),
                buy_first=rng.random(n_pairs) < 0.6,
                same_ts=0.05,
                takeover=False,
                gap_ms=120_000,
            )
        self.singles(acct, draw(n - 2 * n_pairs))
        self.previous_day(acct, d, syms)

    # ---------------------------------------------------------------- takeover kinds

    def takeover_reference(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(1, reference=True)
        s = int(syms[0])
        pool = self.b.ref_ok[(s, d)]
        if len(pool) == 0:  # no bar passes the 0.5 % rule anywhere: use the top 10
            pool = self.b.top[(s, d)][:10]
        bars = rng.choice(pool, int(rng.integers(2, 9)))
        self.extreme_trips(
            acct, bars, width=0.09, victim_buys_low=True, same_ts=1.0, high_band=(0.90, 0.99)
        )
        self.previous_day(acct, d, syms)

    def takeover_reverse(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(1)
        s = int(syms[0])
        bars = rng.choice(self.b.top[(s, d)][:10], int(rng.integers(2, 9)))
        self.extreme_trips(acct, bars, width=0.10, victim_buys_low=False, same_ts=0.7)
        self.previous_day(acct, d, syms)

    def takeover_wick(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(1)
        s = int(syms[0])
        bars = rng.choice(self.b.top[(s, d)][:10], int(rng.integers(2, 7)))
        # The matched trades print outside the market and so become the bar's wicks.
        ext = rng.uniform(0.02, 0.5, (2, len(bars)))
        np.maximum.at(self.ext_high, bars, ext[0])
        np.maximum.at(self.ext_low, bars, ext[1])
        self.extreme_trips(
            acct, bars, width=0.0, victim_buys_low=bool(rng.random() < 0.5), same_ts=0.7
        )
        self.previous_day(acct, d, syms)

    def takeover_subtle(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(1)
        s = int(syms[0])
        bars = rng.choice(self.b.top[(s, d)][:20], int(rng.integers(2, 4)), replace=False)
        self.extreme_trips(
            acct,
            bars,
            width=0.15,
            victim_buys_low=bool(rng.random() < 0.5),
            same_ts=0.6,
            edge=0.01,
        )
        self.previous_day(acct, d, syms)

    def takeover_mixed(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(1, 3)))
        self._daytrade(acct, d, syms, int(rng.integers(5, 31)))
        s = int(syms[0])
        bars = rng.choice(self.b.top[(s, d)][:10], int(rng.integers(2, 5)))
        self.extreme_trips(
            acct, bars, width=0.10, victim_buys_low=bool(rng.random() < 0.5), same_ts=0.7
        )
        self.previous_day(acct, d, syms)

    def takeover_multi(self, acct: int) -> None:
        rng = self.rng
        d, syms = self.pick(int(rng.integers(2, 4)))
        low_side = bool(rng.random() < 0.5)
        per = rng.integers(1, 4, len(syms))
        if per.sum() < 3:
            per[0] += 3 - per.sum()
        for s, k in zip(syms, per, strict=True):
            bars = rng.choice(self.b.top[(int(s), d)][:10], int(k))
            self.extreme_trips(acct, bars, width=0.10, victim_buys_low=low_side, same_ts=0.7)
        self.previous_day(acct, d, syms)


# --------------------------------------------------------------------------- assembly


def _account_ids(n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.array([f"acct-{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _apply_wicks(b: _Bars, ext_high: np.ndarray, ext_low: np.ndarray) -> None:
    """Widen the bars where matched trades printed beyond the market."""
    hit = np.flatnonzero((ext_high > 0) | (ext_low > 0))
    if len(hit) == 0:
        return
    rng_ = b.high[hit] - b.low[hit]
    scale = 10.0 ** b.decimals[hit]
    new_high = np.round((b.high[hit] + ext_high[hit] * rng_) * scale) / scale
    down = np.minimum(ext_low[hit] * rng_, 0.5 * b.low[hit])
    new_low = np.round((b.low[hit] - down) * scale) / scale
    b.high[hit] = np.maximum(b.high[hit], new_high)
    b.low[hit] = np.minimum(b.low[hit], np.where(new_low > 0, new_low, b.low[hit]))


def _finish(
    b: _Bars,
    t: _Trades,
    account_ids: np.ndarray,
    kinds: np.ndarray,
    labels: np.ndarray,
) -> MarketData:
    """Turn positions into tick prices and build sorted, validated-shape frames."""
    acct = np.concatenate(t.acct)
    bar = np.concatenate(t.bar)
    off = np.concatenate(t.off)
    sell = np.concatenate(t.sell)
    pos = np.clip(np.concatenate(t.pos), 0.0, 1.0)
    qty = np.concatenate(t.qty)
    lo, hi = b.low[bar], b.high[bar]
    scale = 10.0 ** b.decimals[bar]
    price = np.clip(np.round((lo + pos * (hi - lo)) * scale) / scale, lo, hi)
    # Exactly at the extreme means exactly the bar's printed high or low.
    price = np.where(pos <= 0.0, lo, np.where(pos >= 1.0, hi, price))
    ts = b.ts[bar] + off * _NS_PER_MS
    order = np.lexsort((sell, acct, ts))
    n = len(order)
    names = np.asarray(b.names, dtype=object)
    width = max(9, len(str(n)))
    trades = pd.DataFrame(
        {
            "trade_id": pd.Series([f"t-{i:0{width}d}" for i in range(1, n + 1)], dtype=str),
            "account_id": pd.Series(account_ids[acct[order]], dtype=str),
            "symbol": pd.Series(names[b.sym[bar[order]]], dtype=str),
            "ts": pd.to_datetime(ts[order], utc=True).astype("datetime64[ns, UTC]"),
            "side": pd.Series(np.where(sell[order], "sell", "buy"), dtype=str),
            "price": price[order],
            "quantity": qty[order],
        }
    )
    lab = pd.DataFrame(
        {
            "account_id": pd.Series(account_ids, dtype=str),
            "label": labels.astype(np.int64),
            "kind": pd.Series(kinds, dtype=str),
        }
    )
    lab = lab.sort_values("account_id").reset_index(drop=True)
    return MarketData(b.frame(), trades, lab)


def _progress_every(n: int) -> int:
    return max(1, n // 200)


def simulate(
    n_accounts: int,
    *,
    seed: int = 0,
    fraud_share: float = 0.5,
    n_symbols: int = 40,
    start: str = "2026-03-02",
    days: int = 5,
    progress: Callable[[int], None] | None = None,
) -> MarketData:
    """Simulate bars and the trades of normal and taken-over accounts.

    Parameters
    ----------
    n_accounts
        Number of accounts. Each trades on one day (about one in ten also the day
        before) in one to three symbols.
    seed
        Random seed; the same arguments give the same data.
    fraud_share
        Share of takeover accounts (label 1). Kinds are mixed evenly within each label.
    n_symbols
        Number of symbols: about 70 % US equities (bars in the 09:30-16:00 New York
        session on weekdays, 78 per day, in UTC) and 30 % crypto pairs (``XXX-USD``,
        288 bars per UTC day). Price levels are log-uniform from about $1 to $5,000.
    start
        First calendar day (UTC), ``YYYY-MM-DD``.
    days
        Number of calendar days.
    progress
        Called as generation goes on with the number of accounts generated since the
        previous call (the calls add up to ``n_accounts``).

    Returns
    -------
    MarketData
        K-lines sorted by ``(symbol, ts)``, trades sorted by ``ts`` with unique ids
        ``t-000000001``..., labels ``account_id, label, kind`` sorted by account.

    Notes
    -----
    Takeover kinds (label 1) make matched round trips, a buy and a sell in the same
    bar, at opposite extremes of volatile bars:

    - ``takeover_reference``: the reference recipe: among the 10 highest-amplitude bars
      of the symbol's day, skipping bars with amplitude / low < 0.5 %; 2-8 round trips,
      buy at low + 0-9 % of the range, sell at low + 90-99 %, same timestamp.
    - ``takeover_reverse``: the real-world direction: the victim buys near the high and
      sells near the low (within 10 % of the range), top-10 bars.
    - ``takeover_wick``: the matched prints lie beyond the market and become the bar's
      high and low (the bars are widened to them), either direction.
    - ``takeover_subtle``: 2-3 round trips within 1-15 % of the extremes, top-20 bars.
    - ``takeover_mixed``: 2-4 round trips hidden in 5-30 ordinary trades of the owner.
    - ``takeover_multi``: round trips spread over 2-3 symbols.

    Normal kinds (label 0): ``normal_casual`` (1-4 trades), ``normal_swing`` (buys, then
    sells later in the day), ``normal_daytrader`` (10-50 trades, round trips over a few
    bars, sometimes within one), ``normal_scalper`` (6-30 same-bar round trips at
    30-70 % of the range), ``normal_limit`` (limit fills at a bar's low for buys or high
    for sells, never matched by an opposite fill in that bar) and ``normal_volatile``
    (4-12 trades at random positions in the day's 20 most volatile bars).
    """
    if n_accounts < 1:
        raise ValueError("n_accounts must be >= 1")
    if not 0.0 <= fraud_share <= 1.0:
        raise ValueError("fraud_share must be between 0 and 1")
    if n_symbols < 1 or days < 1:
        raise ValueError("n_symbols and days must be >= 1")
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    bars = _make_bars(rng, n_symbols, t0.normalize(), days)
    gen = _Accounts(bars, rng)

    n_fraud = round(n_accounts * fraud_share)
    fraud_kinds = sorted(k for k, v in KINDS.items() if v == 1)
    normal_kinds = sorted(k for k, v in KINDS.items() if v == 0)
    kinds = np.concatenate(
        [
            np.resize(rng.permutation(fraud_kinds), n_fraud),
            np.resize(rng.permutation(normal_kinds), n_accounts - n_fraud),
        ]
    ).astype(object)
    kinds = kinds[rng.permutation(n_accounts)]
    labels = np.array([KINDS[k] for k in kinds], dtype=np.int64)

    every = _progress_every(n_accounts)
    done = 0
    for i, kind in enumerate(kinds):
        getattr(gen, kind)(i)
        if progress is not None and ((i + 1) % every == 0 or i + 1 == n_accounts):
            progress(i + 1 - done)
            done = i + 1
    _apply_wicks(bars, gen.ext_high, gen.ext_low)
    return _finish(bars, gen.out, _account_ids(n_accounts), kinds, labels)


def simulate_reference(n_accounts: int, *, seed: int = 0) -> MarketData:
    """The reference system's own data recipe, for comparison.

    One crypto-like symbol ``COIN`` with 80 five-minute bars in one day. Half the
    accounts (``ref_takeover``) follow the reference hacker recipe: 2-8 round trips in
    bars drawn (with repetition) from the 10 highest-amplitude bars whose
    amplitude / low is at least 0.5 %, buy at low + 0-9 % of the range and sell at
    low + 90-99 %, both at the bar's timestamp. The other half (``ref_normal``) hold
    exactly one buy and one sell, each at a uniformly random price in a random bar.
    Quantities are 1.

    Parameters
    ----------
    n_accounts
        Number of accounts.
    seed
        Random seed.

    Returns
    -------
    MarketData
        With labels ``account_id, label, kind``.
    """
    if n_accounts < 1:
        raise ValueError("n_accounts must be >= 1")
    rng = np.random.default_rng(seed)
    n = 80
    start = pd.Timestamp("2026-03-02T14:30:00Z").value
    ts = start + np.arange(n, dtype=np.int64) * _BAR_NS
    flat = np.ones(n)
    # A volatile session: redraw (deterministically) until enough bars pass the 0.5 % rule.
    while True:
        daily = 0.06
        sigma = daily / np.sqrt(n) * np.exp(rng.normal(0.0, 0.3, n))
        o, h, lo, c, v = _ohlcv(
            rng,
            p0=float(rng.uniform(120.0, 200.0)),
            sigma=sigma,
            gap_sd=np.zeros(n),
            decimals=2,
            dollar_volume=5e6,
            profile=flat,
            integer_volume=True,
        )
        amp = h - lo
        top10 = np.argsort(-amp, kind="stable")[:10]
        ok = top10[amp[top10] / lo[top10] >= _REF_MIN_AMPLITUDE]
        if len(ok) >= 4:
            break
    bars = _Bars(
        names=["COIN"],
        sym=np.zeros(n, dtype=np.int64),
        ts=ts,
        day=np.zeros(n, dtype=np.int64),
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        decimals=np.full(n, 2, dtype=np.int64),
        crypto=np.array([True]),
        n_days=1,
    )
    n_fraud = round(n_accounts * 0.5)
    is_fraud = rng.permutation(np.r_[np.ones(n_fraud, bool), np.zeros(n_accounts - n_fraud, bool)])
    t = _Trades()
    for i, fraud in enumerate(is_fraud):
        if fraud:
            k = int(rng.integers(2, 9))
            b = rng.choice(ok, k)
            buy = rng.uniform(0.0, 0.09, k)
            sell = rng.uniform(0.90, 0.99, k)
            t.add(
                i,
                np.r_[b, b],
                np.zeros(2 * k, dtype=np.int64),
                np.r_[np.zeros(k, bool), np.ones(k, bool)],
                np.r_[buy, sell],
                np.ones(2 * k),
            )
        else:
            b = rng.integers(0, n, 2)
            t.add(
                i,
                b,
                np.zeros(2, dtype=np.int64),
                np.array([False, True]),
                rng.random(2),
                np.ones(2),
            )
    kinds = np.where(is_fraud, "ref_takeover", "ref_normal").astype(object)
    return _finish(bars, t, _account_ids(n_accounts), kinds, is_fraud.astype(np.int64))
