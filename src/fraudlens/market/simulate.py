"""Synthetic market data: 5-minute bars, normal accounts and account takeovers.

Two generators:

- :func:`simulate`: accounts of many normal and takeover kinds (see :data:`KINDS`)
  placed on bars, either the built-in bar generator's (:func:`generate_bars`) or a
  user's own k-lines (``klines=``, the way a firm trains before it has labels).
  Several accounts share each symbol-day, as in a real book.
- :func:`simulate_reference`: the reference system's own recipe (one symbol, 80 bars,
  takeover round trips at the extremes of the top-10 bars, normal accounts with one
  buy and one sell at random), kept to compare with the way the reference trained.

The built-in bars come from a model of the trading inside each bar: a random number of
prints (more when the market is active and volatile), each at the efficient price plus
a bid/ask bounce, rounded to the instrument's tick. That gives what real 5-minute bars
show: heavy-tailed returns, volatility clustering, volume tied to range, bars only a
few ticks wide and bars with no range at all where the tick is coarse, gaps between
sessions and missing bars in thin markets, price levels from 1e-7 (coins quoted in
BTC) to 1e5, 24 h and session markets (:func:`fraudlens.market._bars.bar_statistics`
measures these facts for real and simulated bars alike).

Every trade lies inside a bar of its symbol, within that bar's ``[low, high]``, on the
symbol's tick. Output is deterministic for a given ``seed`` and set of arguments.
How the accounts behave is set by :class:`Behaviour`; its defaults are the training
parametrisation, and an independent one can be passed to build evaluation data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from fraudlens.errors import DataError
from fraudlens.market._bars import bar_context
from fraudlens.market.data import BAR, MAX_TRADE_MAGNITUDE, MarketData, validate_klines

__all__ = [
    "DEFAULT_KIND_WEIGHTS",
    "KINDS",
    "REFERENCE_KINDS",
    "Behaviour",
    "generate_bars",
    "simulate",
    "simulate_reference",
]

#: Account kinds of :func:`simulate` and their label (1 = takeover pattern).
KINDS: dict[str, int] = {
    "normal_casual": 0,
    "normal_daytrader": 0,
    "normal_edge": 0,
    "normal_limit": 0,
    "normal_market_maker": 0,
    "normal_momentum": 0,
    "normal_scalper": 0,
    "normal_small_fills": 0,
    "normal_swing": 0,
    "normal_volatile": 0,
    "normal_volume_chaser": 0,
    "beneficiary": 1,
    "takeover_adjacent": 1,
    "takeover_mixed": 1,
    "takeover_multi": 1,
    "takeover_reference": 1,
    "takeover_reverse": 1,
    "takeover_rough": 1,
    "takeover_split": 1,
    "takeover_subtle": 1,
    "takeover_two": 1,
    "takeover_wick": 1,
}

#: Default relative weight of each kind within its label: the look-alikes that are hard
#: to tell from a takeover (and the takeover hidden in a busy day) are drawn more often.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    **dict.fromkeys(KINDS, 1.0),
    "normal_casual": 0.5,
    "normal_swing": 0.5,
    "normal_limit": 0.7,
    "normal_edge": 1.3,
    "normal_market_maker": 1.3,
    "normal_momentum": 2.5,
    "normal_scalper": 1.5,
    "normal_small_fills": 1.5,
    "normal_volatile": 1.3,
    "takeover_mixed": 1.5,
}

#: Account kinds of :func:`simulate_reference` and their label.
REFERENCE_KINDS: dict[str, int] = {"ref_normal": 0, "ref_takeover": 1}

_BAR_NS = 5 * 60 * 10**9
_NS_PER_MS = 10**6
_DAY_NS = 86_400 * 10**9
#: The reference skips bars whose amplitude / low is below this.
_REF_MIN_AMPLITUDE = 0.005


# =========================================================================== behaviour


@dataclass(frozen=True)
class Behaviour:
    """How simulated accounts behave. The defaults are the training parametrisation.

    Ranges are ``(low, high)``, inclusive for counts. Bar pools are read within the
    account's symbol-day: "top ``k``" are its ``k`` widest bars, a "quiet" bar is one
    whose range is at most the ``quiet_quantile`` of the day's ranges.

    Attributes
    ----------
    takeover_top
        Takeover bars are drawn from the day's top ``k`` widest bars, ``k`` drawn from
        this tuple per account ...
    takeover_floor
        ... those beyond the day's 10 widest only while at least this many times the
        day's median bar range (a volatile bar, if not one of the very widest).
    subtle_top
        The wider pool of ``takeover_subtle`` (and of rough round trips).
    extreme_band
        A takeover leg lies within this share of its bar's range from the extreme.
    subtle_band
        ``(edge, width)`` of ``takeover_subtle``: legs 1-15 % of the range inside.
    rough_band
        Legs of ``takeover_rough`` lie anywhere within this share of the extreme.
    round_trips
        Matched round trips of a takeover (``takeover_two`` always makes two).
    split_parts
        Fills each leg of ``takeover_split`` is cut into.
    beneficiary_victims
        Victims whose matched trades one beneficiary mirrors.
    beneficiary_cover
        Ordinary trades a beneficiary makes besides the mirrored ones.
    busy_owner_trades
        The owner's own trades around a ``takeover_mixed`` thief's round trips.
    busy_owner_kinds
        Normal kinds whose day of trading a ``takeover_mixed`` thief's round trips may
        hide in (the owner's day is then one such account's day, the round trips in the
        widest bars of the hours it traded, or of its day) ...
    busy_owner_kind_share
        ... for this share of ``takeover_mixed`` accounts.
    busy_owner_overnight
        Share of ``takeover_mixed`` accounts whose owner trades from the last hours of one
        day into the first hours of the next (``busy_owner_overnight_trades`` trades), the
        round trips falling after midnight (a day of one of ``busy_owner_kinds`` when the
        symbol drawn has no bars the day before).
    mixed_adjacent
        Share of the takeovers that can have adjacent legs (two, rough, split, mixed, a
        beneficiary's victim elsewhere) whose round trips mix same-bar and adjacent ones.
    adjacent_span
        Adjacent legs may sit in two ordinary neighbouring bars whose used extremes (the
        high of one, the low of the other) lie at least this many of the day's median
        bar ranges apart ...
    adjacent_ordinary
        ... for this share of ``takeover_adjacent`` accounts and of the adjacent round
        trips of ``takeover_two``.
    same_ts
        Share of same-bar round trips whose two legs share a timestamp.
    unequal_legs
        Share of takeover round trips whose sell leg is not the size of the buy leg.
    bar_start_share
        Share of accounts whose fills are all stamped at their bar's start (the way the
        reference's data is written), for every kind alike.
    quiet_quantile
        Market makers and spread scalpers trade in bars at most this quantile wide.
    mm_round_trips
        Round trips of a market maker.
    mm_adjacent
        Share of a market maker's round trips whose legs sit in neighbouring bars.
    mm_moderate
        A market maker keeps quoting when bars widen: a share of its round trips, drawn
        per account from this range, sit in bars ``mm_moderate_range`` times the day's
        median bar range wide ...
    mm_moderate_range
        ... (those bars) ...
    mm_moderate_band
        ... their legs within this share of the range from the bar's ends (bought near
        the low, sold near the high).
    scalper_edge_share
        Share of scalpers who trade near the ends of ordinary bars (limit orders resting
        about the day's typical bar edges), not near the middle of busy ones.
    scalper_ordinary
        Their bars' range as a multiple of the day's median bar range ...
    scalper_edge_band
        ... their legs within this share of the range from the bar's ends ...
    scalper_losing
        ... and the share of their round trips lost (bought near the high, sold near the
        low), drawn per account from this range.
    edge_max_ticks
        Market-order traders' bars are at most this many ticks wide (when the day has
        such bars).
    edge_round_trips
        Round trips of a market-order edge trader.
    momentum_top
        A momentum trader's entry bar is among the day's top ``k`` widest bars, ``k``
        drawn from this tuple per account.
    momentum_band
        Entry and stop lie within this share of the range from the extremes.
    momentum_next_bar
        Share of stop-outs that land in the bar after the entry.
    momentum_extra
        Unrelated ordinary trades a momentum trader also makes that day.
    chaser_trades
        Fills of a volume chaser (in the day's highest-volume bars).
    small_fills
        Fills of a many-small-fills account.
    internalised_share
        Share of market makers who take the other side of one of another normal
        account's trades (a broker internalising client flow: a legitimate mirror).
    size_share
        Median fill size as a share of the symbol-day's median bar volume.
    size_sigma
        Log-normal spread of fill sizes.
    """

    takeover_top: tuple[int, ...] = (5, 10, 10, 15, 25, 40)
    takeover_floor: float = 1.5
    subtle_top: int = 20
    extreme_band: float = 0.10
    subtle_band: tuple[float, float] = (0.01, 0.15)
    rough_band: float = 0.3
    round_trips: tuple[int, int] = (2, 8)
    split_parts: tuple[int, int] = (2, 5)
    beneficiary_victims: tuple[int, int] = (1, 2)
    beneficiary_cover: tuple[int, int] = (0, 6)
    busy_owner_trades: tuple[int, int] = (6, 160)
    busy_owner_kinds: tuple[str, ...] = (
        "normal_daytrader",
        "normal_edge",
        "normal_limit",
        "normal_market_maker",
        "normal_scalper",
        "normal_small_fills",
        "normal_volatile",
        "normal_volume_chaser",
    )
    busy_owner_kind_share: float = 0.4
    busy_owner_overnight: float = 0.2
    busy_owner_overnight_trades: tuple[int, int] = (8, 60)
    mixed_adjacent: float = 0.25
    adjacent_span: float = 1.6
    adjacent_ordinary: float = 0.4
    same_ts: float = 0.4
    unequal_legs: float = 0.1
    bar_start_share: float = 0.15
    quiet_quantile: float = 0.6
    mm_round_trips: tuple[int, int] = (4, 40)
    mm_adjacent: float = 0.2
    mm_moderate: tuple[float, float] = (0.0, 0.4)
    mm_moderate_range: tuple[float, float] = (1.0, 2.0)
    mm_moderate_band: float = 0.2
    scalper_edge_share: float = 0.5
    scalper_ordinary: tuple[float, float] = (0.6, 1.3)
    scalper_edge_band: float = 0.2
    scalper_losing: tuple[float, float] = (0.1, 0.35)
    edge_max_ticks: int = 4
    edge_round_trips: tuple[int, int] = (2, 15)
    momentum_top: tuple[int, ...] = (5, 10, 20)
    momentum_band: float = 0.12
    momentum_next_bar: float = 0.5
    momentum_extra: tuple[int, int] = (0, 5)
    chaser_trades: tuple[int, int] = (4, 16)
    small_fills: tuple[int, int] = (30, 250)
    internalised_share: float = 0.3
    size_share: float = 0.02
    size_sigma: float = 1.1

    def with_(self, **changes: Any) -> Behaviour:
        """A copy with some parameters changed."""
        return replace(self, **changes)


# =========================================================================== bars


@dataclass(frozen=True)
class _Instrument:
    """One simulated instrument's market and price level."""

    name: str
    market: str  # equity | future | crypto_usd | crypto_btc
    price: float
    tick: float
    daily_vol: float
    activity: float  # mean prints per bar at average volatility
    half_spread_bp: float
    print_size: float  # mean size of one print (volume units)
    integer_volume: bool


def _nice_tick(x: float) -> float:
    """Round ``x`` down to ``{1, 2, 2.5, 5} x 10^k``."""
    exp = np.floor(np.log10(x))
    for m in (5.0, 2.5, 2.0, 1.0):
        if m * 10.0**exp <= x:
            return float(m * 10.0**exp)
    return float(10.0**exp)


def _symbol_names(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = "".join(rng.choice(letters, int(rng.integers(3, 5))).tolist())
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _instruments(rng: np.random.Generator, n: int) -> list[_Instrument]:
    """A mix of markets: US equities, futures, crypto quoted in USD and in BTC."""
    markets = np.array(["equity", "future", "crypto_usd", "crypto_btc"])
    if n >= 4:
        pick = np.resize(rng.permutation(np.repeat(markets, [7, 3, 6, 4])), n)
        pick[:4] = markets  # every market at least once
        pick = rng.permutation(pick)
    else:
        pick = rng.choice(markets, n, p=[0.35, 0.15, 0.3, 0.2])
    base = _symbol_names(rng, n)
    out = []
    for b, m in zip(base, pick, strict=True):
        if m == "equity":
            # mostly $3-600; some low-priced stocks trade a cent or two a bar
            lo_px, hi_px = (0.5, 3.0) if rng.random() < 0.15 else (3.0, 600.0)
            price = float(np.exp(rng.uniform(np.log(lo_px), np.log(hi_px))))
            tick = 0.01 if price >= 1.0 else 0.0001
            out.append(
                _Instrument(
                    b, "equity", price, tick, float(np.exp(rng.normal(np.log(0.02), 0.4))),
                    float(np.exp(rng.uniform(np.log(4), np.log(120)))),
                    float(rng.uniform(1.0, 8.0)), float(rng.choice([100.0, 200.0, 300.0])), True,
                )
            )  # fmt: skip
        elif m == "future":
            price = float(np.exp(rng.uniform(np.log(800.0), np.log(40_000.0))))
            tick = _nice_tick(price * float(np.exp(rng.uniform(np.log(4e-5), np.log(4e-4)))))
            out.append(
                _Instrument(
                    f"{b}F", "future", price, tick, float(rng.uniform(0.006, 0.016)),
                    float(np.exp(rng.uniform(np.log(20), np.log(200)))),
                    0.0, float(rng.integers(1, 6)), True,
                )
            )  # fmt: skip
        elif m == "crypto_usd":
            price = float(np.exp(rng.uniform(np.log(2e-3), np.log(1.2e5))))
            tick = _nice_tick(price * 10.0 ** -rng.uniform(3.3, 6.5))
            out.append(
                _Instrument(
                    f"{b}-USD", "crypto_usd", price, tick,
                    float(np.exp(rng.normal(np.log(0.04), 0.35))),
                    float(np.exp(rng.uniform(np.log(3), np.log(150)))),
                    float(rng.uniform(0.5, 10.0)), 500.0 / price, False,
                )
            )  # fmt: skip
        else:
            price = float(np.exp(rng.uniform(np.log(2e-7), np.log(0.1))))
            out.append(
                _Instrument(
                    f"{b}-BTC", "crypto_btc", price, 1e-8,
                    float(np.exp(rng.normal(np.log(0.045), 0.35))),
                    float(np.exp(rng.uniform(np.log(2), np.log(80)))),
                    float(rng.uniform(2.0, 20.0)), 0.01 / price, False,
                )
            )  # fmt: skip
    return out


def _sessions(market: str, start: pd.Timestamp, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar start times (ns) and a session index for every bar of ``days`` calendar days."""
    ts: list[np.ndarray] = []
    sess: list[np.ndarray] = []
    for d in range(days):
        date = (start + pd.Timedelta(days=d)).date()
        if market.startswith("crypto"):
            t0 = pd.Timestamp(date, tz="UTC").value
            n = 288
        elif market == "equity":
            if pd.Timestamp(date).weekday() >= 5:
                continue
            t0 = pd.Timestamp(f"{date} 09:30", tz="America/New_York").value
            n = 78
        else:  # a European futures session, 08:00-22:00 Frankfurt
            if pd.Timestamp(date).weekday() >= 5:
                continue
            t0 = pd.Timestamp(f"{date} 08:00", tz="Europe/Berlin").value
            n = 168
        ts.append(t0 + np.arange(n, dtype=np.int64) * _BAR_NS)
        sess.append(np.full(n, d, dtype=np.int64))
    if not ts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ts), np.concatenate(sess)


def _intraday_profile(market: str, ts: np.ndarray) -> np.ndarray:
    """Relative volatility by time of day: U-shaped in sessions, a mild cycle in 24 h."""
    if market.startswith("crypto"):
        hours = (ts % _DAY_NS) / 3.6e12
        return 1.0 + 0.3 * np.cos(2 * np.pi * (hours - 15.0) / 24.0)
    # position within the session, 0..1 (sessions are contiguous runs of bars)
    new = np.r_[True, np.diff(ts) != _BAR_NS]
    start = np.maximum.accumulate(np.where(new, np.arange(len(ts)), 0))
    run = np.diff(np.r_[np.flatnonzero(new), len(ts)])
    x = (np.arange(len(ts)) - start + 0.5) / np.repeat(run, run)
    return 0.6 + 1.4 * np.exp(-x / 0.07) + 0.6 * np.exp(-(1 - x) / 0.05) + 0.3 * (2 * x - 1) ** 2


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series with marginal standard deviation ``sd``.

    ``y[t] = phi y[t-1] + e[t]`` solved blockwise in closed form
    (``y[t] = phi^t (y0 + sum e[s] phi^-s)``), blocks short enough that ``phi^-s``
    stays finite.
    """
    if n == 0:
        return np.zeros(0)
    e = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    e[0] = rng.normal(0.0, sd)
    out = np.empty(n)
    block = max(1, int(30.0 / max(-np.log(phi), 1e-9)))  # phi^-block <= e^30
    prev = 0.0
    for a in range(0, n, block):
        seg = e[a : a + block]
        powers = phi ** np.arange(1, len(seg) + 1)
        out[a : a + len(seg)] = powers * (prev + np.cumsum(seg / powers))
        prev = out[a + len(seg) - 1]
    return out


def _symbol_bars(
    rng: np.random.Generator, inst: _Instrument, start: pd.Timestamp, days: int
) -> pd.DataFrame | None:
    """One instrument's bars from a model of the prints inside each bar."""
    ts, sess = _sessions(inst.market, start, days)
    n = len(ts)
    if n == 0:
        return None
    per_day = 288 if inst.market.startswith("crypto") else (78 if inst.market == "equity" else 168)
    prof = _intraday_profile(inst.market, ts)
    # Volatility clusters over minutes and over days (two AR(1) factors), on top of a
    # per-day level and the intraday profile.
    log_vol = _ar1(rng, n, 0.95, 0.45) + _ar1(rng, n, 0.995, 0.4)
    day_level = np.exp(rng.normal(0.0, 0.25, days))[sess]
    vol_factor = prof * np.exp(log_vol - 0.5 * (0.45**2 + 0.4**2)) * day_level
    sigma = inst.daily_vol / np.sqrt(per_day) * vol_factor
    # Bars busier when volatile; thin markets leave some 5-minute slots without prints.
    lam = inst.activity * vol_factor**1.2 * np.exp(rng.normal(0.0, 0.3, n))
    prints = rng.poisson(np.minimum(lam, 400.0))
    keep = prints > 0
    ts, sess, sigma, prints = ts[keep], sess[keep], sigma[keep], prints[keep]
    n = len(ts)
    if n == 0:
        return None
    # Heavy tails: a Student-t scale per bar (df 3..5) and rare jumps.
    df_t = float(rng.uniform(3.5, 6.0))
    t_scale = np.sqrt(df_t / rng.chisquare(df_t, n) * (df_t - 2) / df_t)
    jump = (rng.random(n) < 0.001) * rng.normal(0.0, 4.0, n)
    bar_sd = sigma * t_scale
    # Each bar's efficient-price increments are spread over its prints.
    bar_of = np.repeat(np.arange(n), prints)
    steps = rng.standard_normal(len(bar_of)) * (bar_sd / np.sqrt(prints))[bar_of]
    first = np.r_[0, np.cumsum(prints)[:-1]]
    steps[first] += jump * sigma
    # Overnight and weekend gaps at the first print of each session.
    if not inst.market.startswith("crypto"):
        new_sess = np.r_[True, sess[1:] != sess[:-1]]
        gap_at = first[new_sess]
        steps[gap_at[1:]] += rng.normal(0.0, 0.35 * inst.daily_vol, len(gap_at) - 1)
    log_p = np.log(inst.price) + np.cumsum(steps)
    eff = np.exp(log_p)
    half = np.maximum(0.5 * inst.tick, eff * inst.half_spread_bp * 1e-4)
    bounce = np.where(rng.random(len(eff)) < 0.5, -half, half)
    px = np.maximum(np.rint((eff + bounce) / inst.tick), 1.0) * inst.tick
    ends = np.cumsum(prints) - 1
    o, c = px[first], px[ends]
    h = np.maximum.reduceat(px, first)
    lo = np.minimum.reduceat(px, first)
    size = rng.exponential(inst.print_size, len(px)) * np.exp(rng.normal(0, 0.5, len(px)))
    v = np.add.reduceat(size, first)
    v = np.maximum(np.round(v), 1.0) if inst.integer_volume else np.round(v, 4)
    dec = max(0, int(np.ceil(-np.log10(inst.tick))) + 2)
    return pd.DataFrame(
        {
            "symbol": inst.name,
            "ts": ts,
            "open": np.round(o, dec),
            "high": np.round(h, dec),
            "low": np.round(lo, dec),
            "close": np.round(c, dec),
            "volume": v,
        }
    )


def generate_bars(
    n_symbols: int = 40, *, days: int = 5, start: str = "2026-03-02", seed: int = 0
) -> pd.DataFrame:
    """Simulated 5-minute k-lines of ``n_symbols`` instruments over ``days`` calendar days.

    Parameters
    ----------
    n_symbols
        Instruments: about a third US equities (09:30-16:00 New York, weekdays; ticks of
        0.01 or 0.0001), futures (08:00-22:00 Frankfurt, weekdays; a tick of 0.4-4 basis
        points, so most bars are a few ticks wide), crypto quoted in USD (24 h; 2e-3 to
        1.2e5) and crypto quoted in BTC (24 h; 2e-7 to 0.1 BTC on a 1e-8 tick, so the
        cheapest show many bars of zero or one tick).
    days
        Calendar days from ``start`` (UTC).
    start
        First day, ``YYYY-MM-DD``.
    seed
        Random seed.

    Returns
    -------
    pandas.DataFrame
        The k-lines contract, sorted by ``(symbol, ts)``.
    """
    if n_symbols < 1 or days < 1:
        raise ValueError("n_symbols and days must be >= 1")
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    t0 = (t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")).normalize()
    parts = []
    for inst in _instruments(rng, n_symbols):
        bars = _symbol_bars(rng, inst, t0, days)
        if bars is not None:
            # Some feeds (indices, CFDs) carry no volume at all.
            if rng.random() < 0.08:
                bars["volume"] = 0.0
            parts.append(bars)
    if not parts:
        raise ValueError("no bars in that period (equities and futures do not trade at weekends)")
    k = pd.concat(parts, ignore_index=True)
    k["ts"] = pd.to_datetime(k["ts"].to_numpy(), utc=True).astype("datetime64[ns, UTC]")
    k["symbol"] = k["symbol"].astype(str)
    return k.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


# =========================================================================== market view


class _Market:
    """The k-lines as the account generator sees them, per symbol-day."""

    def __init__(
        self, klines: pd.DataFrame, bar: pd.Timedelta, tick: Mapping[str, float] | None
    ) -> None:
        k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        self.k = k
        self.bar_ms = int(bar / pd.Timedelta(milliseconds=1))
        self.names = np.asarray(pd.factorize(k["symbol"], sort=True)[1], dtype=object)
        ctx = bar_context(k)
        self.sym = ctx.symbol
        self.ts = k["ts"].to_numpy("datetime64[ns]").astype(np.int64)
        self.low = k["low"].to_numpy(dtype=np.float64).copy()
        self.high = k["high"].to_numpy(dtype=np.float64).copy()
        self.volume = np.nan_to_num(k["volume"].to_numpy(dtype=np.float64))
        self.tick = ctx.tick.copy()
        if tick:
            for s, t in tick.items():
                self.tick[k["symbol"].to_numpy() == s] = float(t)
        self.tick = np.where(np.isfinite(self.tick) & (self.tick > 0), self.tick, 1e-8)
        self.med_vol = ctx.median_volume
        day = self.ts // _DAY_NS
        group = ctx.day_group
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], len(group)]
        self.sd_start, self.sd_end = starts, ends
        self.sd_sym = self.sym[starts]
        self.sd_day = day[starts]
        amp = self.high - self.low
        # Bars of each symbol-day, widest first (zero-range bars last).
        spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
        self.by_amp = [a + np.argsort(-amp[a:b], kind="stable") for a, b in spans]
        self.sd_of = {
            (int(s), int(d)): i
            for i, (s, d) in enumerate(zip(self.sd_sym, self.sd_day, strict=True))
        }
        # Each symbol-day's median bar range (of the bars with a range when most have none).
        med = np.array([np.median(amp[a:b]) for a, b in spans])
        med_moving = np.array(
            [np.median(amp[a:b][amp[a:b] > 0]) if (amp[a:b] > 0).any() else 0.0 for a, b in spans]
        )
        self.med_amp = np.where(med > 0, med, med_moving)
        n_bars = ends - starts
        moving = np.array([np.count_nonzero(amp[a:b] > 0) for a, b in spans])
        self.usable = np.flatnonzero((n_bars >= 12) & (moving >= 6))
        if len(self.usable) == 0:
            self.usable = np.flatnonzero(moving >= 2)
        if len(self.usable) == 0:
            raise DataError(
                "the k-lines have no symbol-day with at least two bars of some range; "
                "accounts need bars to trade in",
                column="high",
            )
        self.ext_high = np.zeros(len(k))
        self.ext_low = np.zeros(len(k))
        # Where traders are busy: the bar's volume, or its range where a feed has none.
        has_vol = np.bincount(group, weights=self.volume, minlength=len(starts)) > 0
        self.activity = np.where(has_vol[group], self.volume, self.high - self.low + self.tick)

    # ------------------------------------------------------------------ bar pools
    def bars(self, sd: int) -> np.ndarray:
        return np.arange(self.sd_start[sd], self.sd_end[sd])

    def top(self, sd: int, k: int, floor: float = 0.0) -> np.ndarray:
        """The ``k`` widest bars with a range (at least one); beyond the 10 widest only
        those at least ``floor`` times the day's median bar range."""
        order = self.by_amp[sd]
        moving = order[self.high[order] > self.low[order]]
        if not len(moving):
            return order[:1]
        return self.floored(sd, moving[: max(k, 1)], floor)

    def floored(self, sd: int, widest: np.ndarray, floor: float) -> np.ndarray:
        """``widest`` (bars widest first) past its 10th only while at least ``floor``
        times the median bar range of symbol-day ``sd``."""
        if floor <= 0 or len(widest) <= 10:
            return widest
        amp = self.high[widest] - self.low[widest]
        keep = (np.arange(len(widest)) < 10) | (amp >= floor * self.med_amp[sd])
        return widest[keep]

    def span_pairs(self, sd: int, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbouring bars ``(a, a + 1)`` of a symbol-day whose high in one and low in
        the other lie at least ``span`` median bar ranges apart: ``(a, high_first)``
        pairs, ``high_first`` saying the high is ``a``'s (the low ``a + 1``'s)."""
        b = self.bars(sd)
        i, j = b[:-1], b[1:]
        thr = span * self.med_amp[sd]
        s1 = (self.high[i] - self.low[j] >= thr) & (thr > 0)
        s2 = (self.high[j] - self.low[i] >= thr) & (thr > 0)
        first = np.r_[i[s1], i[s2]]
        high_first = np.r_[np.ones(int(s1.sum()), bool), np.zeros(int(s2.sum()), bool)]
        return first, first + 1, high_first

    def ranged(self, sd: int, lo: float, hi: float) -> np.ndarray:
        """Bars of symbol-day ``sd`` with a range of ``lo`` to ``hi`` times the day's
        median bar range (at least one tick)."""
        b = self.bars(sd)
        amp = self.high[b] - self.low[b]
        med = self.med_amp[sd]
        return b[(amp > 0) & (amp >= lo * med) & (amp <= hi * med)]

    def quiet(self, sd: int, quantile: float) -> np.ndarray:
        """Bars with a range of at least one tick and at most the ``quantile`` range."""
        b = self.bars(sd)
        amp = self.high[b] - self.low[b]
        moving = amp > 0
        if not moving.any():
            return b
        cut = np.quantile(amp[moving], quantile)
        pool = b[moving & (amp <= cut)]
        return pool if len(pool) else b[moving]

    def narrow(self, sd: int, max_ticks: int) -> np.ndarray:
        """Bars 1..``max_ticks`` ticks wide (the quiet half when there are too few)."""
        b = self.bars(sd)
        t = np.rint((self.high[b] - self.low[b]) / self.tick[b])
        pool = b[(t >= 1) & (t <= max_ticks)]
        return pool if len(pool) >= 3 else self.quiet(sd, 0.5)

    def neighbour(self, bar: np.ndarray) -> np.ndarray:
        """The next bar of the same symbol-day (the previous one for a day's last bar)."""
        nxt = bar + 1
        ok = (nxt < len(self.ts)) & (self.sym[np.minimum(nxt, len(self.ts) - 1)] == self.sym[bar])
        ok &= (self.ts[np.minimum(nxt, len(self.ts) - 1)] // _DAY_NS) == (self.ts[bar] // _DAY_NS)
        return np.where(ok, nxt, np.maximum(bar - 1, 0))


# =========================================================================== fills


@dataclass
class _Fills:
    """Fills as column chunks; prices are kept as positions in the bar's range."""

    acct: list[np.ndarray] = field(default_factory=list)
    bar: list[np.ndarray] = field(default_factory=list)
    off: list[np.ndarray] = field(default_factory=list)
    sell: list[np.ndarray] = field(default_factory=list)
    pos: list[np.ndarray] = field(default_factory=list)
    qty: list[np.ndarray] = field(default_factory=list)
    n: int = 0

    def add(
        self,
        acct: int,
        bar: np.ndarray,
        off: np.ndarray,
        sell: np.ndarray,
        pos: np.ndarray,
        qty: np.ndarray,
    ) -> np.ndarray:
        """Append fills; return their global indices."""
        k = len(bar)
        idx = np.arange(self.n, self.n + k)
        if k == 0:
            return idx
        self.acct.append(np.full(k, acct, dtype=np.int64))
        self.bar.append(np.asarray(bar, dtype=np.int64))
        self.off.append(np.asarray(off, dtype=np.int64))
        self.sell.append(np.asarray(sell, dtype=bool))
        self.pos.append(np.asarray(pos, dtype=np.float64))
        self.qty.append(np.asarray(qty, dtype=np.float64))
        self.n += k
        return idx

    def columns(self) -> dict[str, np.ndarray]:
        return {
            "acct": np.concatenate(self.acct),
            "bar": np.concatenate(self.bar),
            "off": np.concatenate(self.off),
            "sell": np.concatenate(self.sell),
            "pos": np.concatenate(self.pos),
            "qty": np.concatenate(self.qty),
        }


class _Accounts:
    """Generates every account kind on a shared market."""

    def __init__(self, m: _Market, rng: np.random.Generator, beh: Behaviour, n_accounts: int):
        self.m = m
        self.rng = rng
        self.b = beh
        self.out = _Fills()
        # Several accounts share each symbol-day: draw the active ones (about four
        # accounts or more each), weighted towards popular symbols.
        n_sd = len(m.usable)
        n_active = int(np.clip(n_accounts // 4, 1, n_sd))
        pop = 1.0 / (1.0 + rng.permutation(len(m.names))) ** 0.6
        w = pop[m.sd_sym[m.usable]]
        self.active = rng.choice(m.usable, n_active, replace=False, p=w / w.sum())
        self.active_w = pop[m.sd_sym[self.active]]
        self.active_w = self.active_w / self.active_w.sum()
        by_day: dict[int, list[int]] = {}
        for i in m.usable:
            by_day.setdefault(int(m.sd_day[i]), []).append(int(i))
        self.day_sds = {d: np.asarray(v, dtype=np.int64) for d, v in by_day.items()}
        # Matched legs of each takeover (for beneficiaries), and mirrorable normal fills.
        self.matched: dict[int, list[np.ndarray]] = {}
        self.stamp_start: dict[int, bool] = {}

    # ------------------------------------------------------------------ helpers
    def pick(self, n_sym: int = 1) -> list[int]:
        """Symbol-days of one UTC day: a primary one and up to ``n_sym - 1`` more."""
        rng = self.rng
        first = int(rng.choice(self.active, p=self.active_w))
        if n_sym <= 1:
            return [first]
        others = self.day_sds[int(self.m.sd_day[first])]
        others = others[others != first]
        if len(others) == 0:
            return [first]
        extra = rng.choice(others, min(n_sym - 1, len(others)), replace=False)
        return [first, *(int(x) for x in extra)]

    def busy(self, sd: int, n: int, first: float = 0.0, last: float = 1.0) -> np.ndarray:
        """``n`` bars of a symbol-day drawn in proportion to volume (+1 so flat days work)."""
        a, b = int(self.m.sd_start[sd]), int(self.m.sd_end[sd])
        lo = a + int((b - a) * first)
        hi = max(lo + 1, a + int(np.ceil((b - a) * last)))
        act = self.m.activity[lo:hi]
        cum = np.cumsum(act + 1e-12 + 0.05 * act.mean())
        idx = np.searchsorted(cum, self.rng.random(n) * cum[-1], side="right")
        return lo + np.minimum(idx, hi - lo - 1)

    def qty(self, n: int, bars: np.ndarray) -> np.ndarray:
        """Fill sizes: a share of the symbol-day's typical bar volume (or a notional)."""
        rng = self.rng
        m = self.m
        share = self.b.size_share * np.exp(rng.normal(0.0, self.b.size_sigma, n))
        med = m.med_vol[bars]
        mid = (m.high[bars] + m.low[bars]) / 2
        notional = 5000.0 * np.exp(rng.normal(0.0, self.b.size_sigma, n))
        q = np.where(np.isfinite(med) & (med > 0), share * np.nan_to_num(med), notional / mid)
        return _round_qty(q)

    def offsets(self, acct: int, n: int) -> np.ndarray:
        if self.stamp_start.get(acct, False):
            return np.zeros(n, dtype=np.int64)
        return self.rng.integers(0, self.m.bar_ms, n)

    def singles(
        self,
        acct: int,
        bars: np.ndarray,
        pos: np.ndarray | None = None,
        sell: np.ndarray | None = None,
    ) -> np.ndarray:
        n = len(bars)
        rng = self.rng
        s = rng.random(n) < 0.5 if sell is None else sell
        p = rng.random(n) if pos is None else pos
        return self.out.add(acct, bars, self.offsets(acct, n), s, p, self.qty(n, bars))

    def trips(
        self,
        acct: int,
        bar_a: np.ndarray,
        bar_b: np.ndarray,
        buy_pos: np.ndarray,
        sell_pos: np.ndarray,
        *,
        buy_first: np.ndarray,
        same_ts: float,
        qty: np.ndarray | None = None,
        split: tuple[int, int] | None = None,
        sell_share: np.ndarray | None = None,
    ) -> np.ndarray:
        """Round trips: a buy and a sell of the same total size; ``bar_a`` holds the first leg.

        ``sell_share`` scales the sell leg (1 = the same size as the buy). Returns the
        indices of every fill made (both legs).
        """
        rng = self.rng
        n = len(bar_a)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        bar_ms = self.m.bar_ms
        q = self.qty(n, bar_a) if qty is None else qty
        q_sell = q if sell_share is None else _round_qty(q * sell_share)
        if self.stamp_start.get(acct, False):
            off_a = np.zeros(n, dtype=np.int64)
            off_b = np.zeros(n, dtype=np.int64)
        else:
            off_a = rng.integers(0, bar_ms, n)
            same_bar = bar_a == bar_b
            later = off_a + rng.integers(1000, max(bar_ms // 2, 1001), n)
            off_b = np.where(same_bar, np.minimum(later, bar_ms - 1), rng.integers(0, bar_ms, n))
            off_b = np.where(same_bar & (rng.random(n) < same_ts), off_a, off_b)
        buy_bar = np.where(buy_first, bar_a, bar_b)
        sell_bar = np.where(buy_first, bar_b, bar_a)
        buy_off = np.where(buy_first, off_a, off_b)
        sell_off = np.where(buy_first, off_b, off_a)
        if split is None:
            return self.out.add(
                acct,
                np.r_[buy_bar, sell_bar],
                np.r_[buy_off, sell_off],
                np.r_[np.zeros(n, bool), np.ones(n, bool)],
                np.r_[buy_pos, sell_pos],
                np.r_[q, q_sell],
            )
        idx = []
        for i in range(n):
            for b_, o_, s_, p_, qq in (
                (buy_bar[i], buy_off[i], False, buy_pos[i], q[i]),
                (sell_bar[i], sell_off[i], True, sell_pos[i], q_sell[i]),
            ):
                k = int(rng.integers(split[0], split[1] + 1))
                parts = _split_qty(rng, float(qq), k)
                k = len(parts)
                # Child fills of one order: close in price to the parent's level and
                # seconds apart, in the same bar.
                jitter = np.abs(rng.normal(0.0, 0.03, k)) * (1 if p_ < 0.5 else -1)
                offs = np.minimum(o_ + np.sort(rng.integers(0, 30_000, k)), bar_ms - 1)
                if self.stamp_start.get(acct, False):
                    offs = np.zeros(k, dtype=np.int64)
                idx.append(
                    self.out.add(
                        acct,
                        np.full(k, b_),
                        offs,
                        np.full(k, s_),
                        np.clip(p_ + jitter, 0.0, 1.0),
                        parts,
                    )
                )
        return np.concatenate(idx)

    def extreme_trips(
        self,
        acct: int,
        bars: np.ndarray,
        *,
        band: tuple[float, float],
        victim_buys_low: np.ndarray | bool,
        adjacent: bool | np.ndarray = False,
        split: tuple[int, int] | None = None,
        same_ts: float | None = None,
    ) -> np.ndarray:
        """Matched round trips at opposite extremes of ``bars`` (or of a bar and its
        neighbour when ``adjacent``, for all or per round trip); legs
        ``band[0]..band[1]`` of the range inside."""
        rng = self.rng
        n = len(bars)
        edge, width = band
        near_low = rng.uniform(edge, width, n)
        near_high = 1.0 - rng.uniform(edge, width, n)
        low_side = np.broadcast_to(np.asarray(victim_buys_low), (n,))
        buy = np.where(low_side, near_low, near_high)
        sell = np.where(low_side, near_high, near_low)
        first = rng.random(n) < 0.5
        adj = np.broadcast_to(np.asarray(adjacent, dtype=bool), (n,))
        other = np.where(adj, self.m.neighbour(bars), bars)
        # Sometimes the victim sells back less than it bought (or the reverse).
        uneven = rng.random(n) < self.b.unequal_legs
        share = np.where(uneven, rng.uniform(0.5, 0.95, n), 1.0)
        share = np.where(uneven & (rng.random(n) < 0.5), 1.0 / share, share)
        idx = self.trips(
            acct,
            bars,
            other,
            buy,
            sell,
            buy_first=first,
            same_ts=self.b.same_ts if same_ts is None else same_ts,
            split=split,
            sell_share=share,
        )
        self.matched.setdefault(acct, []).append(idx)
        return idx

    def previous_day(self, acct: int, sds: list[int]) -> None:
        """Some owners also traded a little the day before."""
        rng = self.rng
        if rng.random() >= 0.1:
            return
        m = self.m
        key = (int(m.sd_sym[sds[0]]), int(m.sd_day[sds[0]]) - 1)
        prev = m.sd_of.get(key)
        if prev is None:
            return
        self.singles(acct, self.busy(prev, int(rng.integers(1, 4))))

    def distinct(self, pool: np.ndarray, n: int) -> np.ndarray:
        """``n`` bars of ``pool``, all different while the pool lasts: two round trips in
        one bar would read as one (their legs merge)."""
        if n <= len(pool):
            return self.rng.choice(pool, n, replace=False)
        return np.r_[self.rng.permutation(pool), self.rng.choice(pool, n - len(pool))]

    def takeover_pool(self, sd: int, wide: bool = False) -> np.ndarray:
        k = self.b.subtle_top if wide else int(self.rng.choice(self.b.takeover_top))
        return self.m.top(sd, k, self.b.takeover_floor)

    def n_trips(self) -> int:
        lo, hi = self.b.round_trips
        return int(self.rng.integers(lo, hi + 1))

    def direction(self, n: int) -> np.ndarray:
        """The victim's side: one direction per account most of the time."""
        rng = self.rng
        d = rng.random() < 0.5
        if rng.random() < 0.8:
            return np.full(n, d)
        return rng.random(n) < 0.5

    def adjacency(self, n: int, share: float) -> np.ndarray:
        """Which of ``n`` round trips have their legs in neighbouring bars: all of them
        for ``share`` of accounts, a mix of same-bar and adjacent ones for
        ``mixed_adjacent`` of them (at least one of each), else none."""
        rng = self.rng
        u = rng.random()
        if u < share:
            return np.ones(n, dtype=bool)
        if u < share + self.b.mixed_adjacent and n >= 2:
            adj = rng.random(n) < 0.5
            adj[:2] = (True, False)
            return rng.permutation(adj)
        return np.zeros(n, dtype=bool)

    def span_trips(self, acct: int, sd: int, n: int, band: float) -> np.ndarray | None:
        """``n`` round trips with adjacent legs in neighbouring bars (ordinary ones too)
        whose used extremes lie ``adjacent_span`` median ranges apart; the legs within
        ``band`` of the range of their bar's extreme. None when the day has no such pair."""
        rng = self.rng
        a, b, high_first = self.m.span_pairs(sd, self.b.adjacent_span)
        if len(a) < min(n, 2):
            return None
        pick = self.distinct(np.arange(len(a)), min(n, len(a)))
        a, b, high_first = a[pick], b[pick], high_first[pick]
        n = len(pick)
        hi_pos = 1.0 - rng.uniform(0.0, band, n)
        lo_pos = rng.uniform(0.0, band, n)
        buys_high = ~self.direction(n)
        # the victim buys the high and sells the low (or buys the low, sells the high)
        buy_bar = np.where(buys_high == high_first, a, b)
        buy_pos = np.where(buys_high, hi_pos, lo_pos)
        sell_pos = np.where(buys_high, lo_pos, hi_pos)
        uneven = rng.random(n) < self.b.unequal_legs
        share = np.where(uneven, rng.uniform(0.5, 0.95, n), 1.0)
        idx = self.trips(
            acct,
            a,
            b,
            buy_pos,
            sell_pos,
            buy_first=buy_bar == a,
            same_ts=0.0,
            sell_share=share,
        )
        self.matched.setdefault(acct, []).append(idx)
        return idx

    # ------------------------------------------------------------------ normal kinds
    def normal_casual(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(1 if rng.random() < 0.8 else 2)
        n = int(rng.integers(1, 5))
        bars = np.concatenate([self.busy(int(s), 1) for s in rng.choice(sds, n)])
        self.singles(acct, np.sort(bars))
        self.previous_day(acct, sds)

    def normal_swing(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        for sd in sds:
            nb, ns = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            buys = np.sort(self.busy(sd, nb, 0.0, 0.6))
            sells = np.sort(self.busy(sd, ns, 0.4, 1.0))
            b = np.r_[buys, sells]
            self.singles(acct, b, sell=np.r_[np.zeros(nb, bool), np.ones(ns, bool)])
        self.previous_day(acct, sds)

    def _daytrade(self, acct: int, sds: list[int], n_trades: int) -> None:
        rng = self.rng
        n_trips = n_trades // 2
        sd_of = rng.choice(sds, n_trips)
        first = np.empty(n_trips, dtype=np.int64)
        second = np.empty(n_trips, dtype=np.int64)
        for sd in np.unique(sd_of):
            msk = sd_of == sd
            k = int(msk.sum())
            i = self.busy(int(sd), k)
            gap = np.where(rng.random(k) < 0.25, 0, rng.integers(1, 12, k))
            first[msk] = i
            second[msk] = np.minimum(i + gap, int(self.m.sd_end[sd]) - 1)
        self.trips(
            acct,
            first,
            second,
            rng.random(n_trips),
            rng.random(n_trips),
            buy_first=rng.random(n_trips) < 0.75,
            same_ts=0.05,
        )
        if n_trades % 2:
            self.singles(acct, self.busy(int(rng.choice(sds)), 1))

    def normal_daytrader(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 4)))
        self._daytrade(acct, sds, int(rng.integers(10, 51)))
        self.previous_day(acct, sds)

    def _scalps(self, acct: int, sd: int, n: int) -> None:
        """Round trips inside one bar near its middle, a small gain or loss each."""
        rng = self.rng
        top = self.m.top(sd, 20)
        bars = np.where(rng.random(n) < 0.3, rng.choice(top, n), self.busy(sd, n))
        long = rng.random(n) < 0.7
        spread = np.abs(rng.normal(0.03, 0.04, n))
        lo_leg = rng.uniform(0.25, 0.75 - 0.06, n)
        hi_leg = np.clip(lo_leg + spread, 0.25, 0.8)
        win = rng.random(n) < 0.6
        first_pos = np.where(win, lo_leg, hi_leg)
        second_pos = np.where(win, hi_leg, lo_leg)
        self.trips(
            acct,
            bars,
            bars,
            np.where(long, first_pos, second_pos),
            np.where(long, second_pos, first_pos),
            buy_first=long,
            same_ts=0.1,
        )

    def _edge_scalps(self, acct: int, sd: int, n: int) -> None:
        """Round trips near the two ends of ordinary bars (about the day's median
        range), most of them won (bought near the low, sold near the high), some lost."""
        rng = self.rng
        m = self.m
        pool = m.ranged(sd, *self.b.scalper_ordinary)
        if len(pool) < 3:
            pool = m.quiet(sd, 0.8)
        act = m.activity[pool] + 1e-12 + 0.05 * m.activity[pool].mean()
        bars = rng.choice(pool, n, p=act / act.sum())
        other = np.where(rng.random(n) < 0.1, m.neighbour(bars), bars)
        band = self.b.scalper_edge_band
        near_low = rng.uniform(0.0, band, n) * (rng.random(n) >= 0.2)
        near_high = 1.0 - rng.uniform(0.0, band, n) * (rng.random(n) >= 0.2)
        lose = rng.random(n) < rng.uniform(*self.b.scalper_losing)
        q = self.qty(1, bars[:1])[0] * np.ones(n) if rng.random() < 0.5 else None
        self.trips(
            acct,
            bars,
            other,
            np.where(lose, near_high, near_low),
            np.where(lose, near_low, near_high),
            buy_first=rng.random(n) < 0.6,
            same_ts=0.05,
            qty=q,
        )

    def _spread_capture(self, acct: int, sd: int, n: int, adjacent: float) -> np.ndarray:
        """Equal-size round trips at the two edges of quiet bars (buy low, sell high)."""
        rng = self.rng
        pool = self.m.quiet(sd, self.b.quiet_quantile)
        bars = rng.choice(pool, n)
        other = np.where(rng.random(n) < adjacent, self.m.neighbour(bars), bars)
        # at the bid and the ask: the bar's edge, or a tick inside in wider quiet bars
        t = np.maximum(np.rint((self.m.high[bars] - self.m.low[bars]) / self.m.tick[bars]), 1)
        inside = (rng.random(n) < 0.25) / t
        buy_pos = np.clip(inside, 0, 0.5)
        sell_pos = np.clip(1.0 - (rng.random(n) < 0.25) / t, 0.5, 1.0)
        q = self.qty(1, bars[:1])[0] * np.ones(n) if rng.random() < 0.7 else None
        return self.trips(
            acct,
            bars,
            other,
            buy_pos,
            sell_pos,
            buy_first=rng.random(n) < 0.5,
            same_ts=0.1,
            qty=q,
        )

    def normal_scalper(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        n = int(rng.integers(6, 31))
        n_quiet = int(rng.binomial(n, 0.4))
        if rng.random() < self.b.scalper_edge_share:
            n_quiet = int(rng.binomial(n, 0.15))
            self._edge_scalps(acct, sds[0], n - n_quiet)
        else:
            self._scalps(acct, sds[0], n - n_quiet)
        if n_quiet:
            self._spread_capture(acct, int(rng.choice(sds)), n_quiet, 0.1)
        self.previous_day(acct, sds)

    def normal_market_maker(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        lo, hi = self.b.mm_round_trips
        for sd in sds:
            n = int(rng.integers(lo, hi + 1))
            n_mod = int(rng.binomial(n, rng.uniform(*self.b.mm_moderate)))
            if n - n_mod:
                self._spread_capture(acct, sd, n - n_mod, self.b.mm_adjacent)
            if n_mod:
                self._moderate_capture(acct, sd, n_mod)
        self.previous_day(acct, sds)

    def _moderate_capture(self, acct: int, sd: int, n: int) -> None:
        """A market maker's round trips in bars wider than the day's median (its quotes
        still standing as the bar widens): bought near the low, sold near the high."""
        rng = self.rng
        m = self.m
        pool = m.ranged(sd, *self.b.mm_moderate_range)
        if not len(pool):
            return
        bars = rng.choice(pool, n)
        other = np.where(rng.random(n) < self.b.mm_adjacent, m.neighbour(bars), bars)
        band = self.b.mm_moderate_band
        self.trips(
            acct,
            bars,
            other,
            rng.uniform(0.0, band, n),
            1.0 - rng.uniform(0.0, band, n),
            buy_first=rng.random(n) < 0.5,
            same_ts=0.1,
        )

    def normal_limit(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        for sd in sds:
            n = int(rng.integers(2, 9))
            pool = np.unique(np.r_[rng.choice(self.m.top(sd, 20), n), self.busy(sd, n)])
            chosen = rng.choice(pool, min(n, len(pool)), replace=False)  # distinct bars
            k = len(chosen)
            sell = rng.random(k) < 0.5
            at_edge = rng.random(k) < 0.7
            pos = np.where(at_edge, np.where(sell, 1.0, 0.0), rng.random(k))
            self.singles(acct, chosen, pos=pos, sell=sell)
        self.previous_day(acct, sds)

    def normal_volatile(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        n = int(rng.integers(4, 13))
        top = np.concatenate([self.m.top(sd, 20) for sd in sds])
        n_pairs = int(rng.binomial(n // 2, 0.5))
        if n_pairs:
            pb = rng.choice(top, n_pairs)
            self.trips(
                acct,
                pb,
                np.where(rng.random(n_pairs) < 0.3, self.m.neighbour(pb), pb),
                rng.random(n_pairs),
                rng.random(n_pairs),
                buy_first=rng.random(n_pairs) < 0.6,
                same_ts=0.05,
            )
        self.singles(acct, rng.choice(top, n - 2 * n_pairs))
        self.previous_day(acct, sds)

    def normal_edge(self, acct: int) -> None:
        """Market orders in bars a few ticks wide: buys at the ask (the bar's high),
        sells at the bid (its low), in and out again, a spread lost per round trip."""
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        lo, hi = self.b.edge_round_trips
        for sd in sds:
            n = int(rng.integers(lo, hi + 1))
            pool = self.m.narrow(sd, self.b.edge_max_ticks)
            act = self.m.activity[pool] + 1e-12
            bars = rng.choice(pool, n, p=act / act.sum())
            gap = np.where(rng.random(n) < 0.5, 0, 1)
            other = np.where(gap == 1, self.m.neighbour(bars), bars)
            self.trips(
                acct,
                bars,
                other,
                np.ones(n),
                np.zeros(n),
                buy_first=rng.random(n) < 0.6,
                same_ts=0.0,
            )
            k = int(rng.integers(0, 4))
            if k:
                sb = rng.choice(pool, k)
                sell = rng.random(k) < 0.5
                self.singles(acct, sb, pos=np.where(sell, 0.0, 1.0), sell=sell)
        self.previous_day(acct, sds)

    def normal_momentum(self, acct: int) -> None:
        """One losing round trip: a breakout entry at one extreme of a volatile bar,
        stopped out at the other extreme of that bar or the next."""
        rng = self.rng
        sds = self.pick(1)
        sd = sds[0]
        entry = rng.choice(self.m.top(sd, int(rng.choice(self.b.momentum_top))), 1)
        stop = self.m.neighbour(entry) if rng.random() < self.b.momentum_next_bar else entry
        band = self.b.momentum_band
        hi_pos = 1.0 - rng.uniform(0.0, band, 1)
        lo_pos = rng.uniform(0.0, band, 1)
        long = bool(rng.random() < 0.5)
        # a long buys the high and sells the low; a short sells the low and buys back high
        self.trips(acct, entry, stop, hi_pos, lo_pos, buy_first=np.array([long]), same_ts=0.0)
        lo, hi = self.b.momentum_extra
        k = int(rng.integers(lo, hi + 1))
        if k:
            self.singles(acct, self.busy(sd, k))
        self.previous_day(acct, sds)

    def normal_volume_chaser(self, acct: int) -> None:
        """Trades in the day's highest-volume bars (often its most volatile)."""
        rng = self.rng
        sds = self.pick(int(rng.integers(1, 3)))
        lo, hi = self.b.chaser_trades
        n = int(rng.integers(lo, hi + 1))
        pools = []
        for sd in sds:
            b = self.m.bars(sd)
            pools.append(b[np.argsort(-self.m.activity[b], kind="stable")[:12]])
        pool = np.concatenate(pools)
        n_trips = int(rng.binomial(n // 2, 0.6))
        if n_trips:
            a = rng.choice(pool, n_trips)
            other = np.where(rng.random(n_trips) < 0.4, self.m.neighbour(a), a)
            # market orders: often at the edge in narrow bars, anywhere in wide ones
            t = np.rint((self.m.high[a] - self.m.low[a]) / self.m.tick[a])
            edge = (t <= 3) & (rng.random(n_trips) < 0.8)
            bp = np.where(edge, 1.0, rng.random(n_trips))
            sp = np.where(edge, 0.0, rng.random(n_trips))
            self.trips(acct, a, other, bp, sp, buy_first=rng.random(n_trips) < 0.6, same_ts=0.0)
        if n - 2 * n_trips > 0:
            self.singles(acct, rng.choice(pool, n - 2 * n_trips))
        self.previous_day(acct, sds)

    def normal_small_fills(self, acct: int) -> None:
        """Many small fills: parent orders worked in slices, or a grid of resting orders."""
        rng = self.rng
        sds = self.pick(1)
        sd = sds[0]
        lo, hi = self.b.small_fills
        n = int(rng.integers(lo, hi + 1))
        style = rng.random()
        if style < 0.25:
            # sliced parent orders: runs of same-side fills over consecutive bars
            n_par = int(rng.integers(2, 7))
            sizes = rng.multinomial(n - n_par, np.ones(n_par) / n_par) + 1
            for k in sizes:
                b0 = int(self.busy(sd, 1)[0])
                bars = np.minimum(
                    b0 + np.sort(rng.integers(0, max(2, k // 3), k)), self.m.sd_end[sd] - 1
                )
                sell = np.full(k, rng.random() < 0.5)
                q = self.qty(k, bars) / max(4.0, k / 2)
                self.out.add(acct, bars, self.offsets(acct, k), sell, rng.random(k), _round_qty(q))
        elif style < 0.45:
            # a grid: buy orders below the start price, sell orders above, filled as the
            # price crosses them (both sides can fill in one wide bar)
            bars = np.sort(self.busy(sd, n))
            mid = (self.m.high[bars] + self.m.low[bars]) / 2
            ref = float(np.median(mid))
            sell = mid > ref
            flip = rng.random(n) < 0.25
            sell = np.where(flip, ~sell, sell)
            q = np.full(n, float(self.qty(1, bars[:1])[0]) / 5)
            self.out.add(acct, bars, self.offsets(acct, n), sell, rng.random(n), _round_qty(q))
        else:
            # a bot trading both ways through busy stretches (often the day's most
            # volatile), several fills a bar at any price, sides in runs
            per_bar = float(rng.uniform(1.0, 6.0))
            n_bars = max(2, int(n / per_bar))
            a = int(self.busy(sd, 1)[0])
            start = np.minimum(a + np.arange(n_bars), self.m.sd_end[sd] - 1)
            bars = np.sort(rng.choice(start, n))
            flip = rng.random(n) < float(rng.uniform(0.1, 0.5))
            sell = (np.cumsum(flip) % 2).astype(bool)
            if rng.random() < 0.3:
                q = np.full(n, float(self.qty(1, bars[:1])[0]) / 8)
            else:
                q = self.qty(n, bars) / 8
            self.out.add(acct, bars, self.offsets(acct, n), sell, rng.random(n), _round_qty(q))
        self.previous_day(acct, sds)

    # ------------------------------------------------------------------ takeover kinds
    def takeover_reference(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(1)
        sd = sds[0]
        top = self.m.top(sd, 10)
        amp = self.m.high[top] - self.m.low[top]
        ok = top[amp / self.m.low[top] >= _REF_MIN_AMPLITUDE]
        pool = ok if len(ok) >= 2 else top
        bars = rng.choice(pool, int(rng.integers(2, 9)))
        self.extreme_trips(acct, bars, band=(0.0, 0.09), victim_buys_low=True, same_ts=1.0)
        self.previous_day(acct, sds)

    def takeover_reverse(self, acct: int) -> None:
        sds = self.pick(1)
        bars = self.distinct(self.takeover_pool(sds[0]), self.n_trips())
        self.extreme_trips(acct, bars, band=(0.0, self.b.extreme_band), victim_buys_low=False)
        self.previous_day(acct, sds)

    def takeover_wick(self, acct: int, widen: bool) -> None:
        rng = self.rng
        sds = self.pick(1)
        bars = self.distinct(self.takeover_pool(sds[0]), int(rng.integers(2, 7)))
        if widen:
            # The matched trades print outside the market and become the bar's wicks.
            ext = rng.uniform(0.02, 0.5, (2, len(bars)))
            np.maximum.at(self.m.ext_high, bars, ext[0])
            np.maximum.at(self.m.ext_low, bars, ext[1])
        self.extreme_trips(acct, bars, band=(0.0, 0.0), victim_buys_low=self.direction(len(bars)))
        self.previous_day(acct, sds)

    def takeover_subtle(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(1)
        pool = self.takeover_pool(sds[0], wide=True)
        bars = rng.choice(pool, min(int(rng.integers(2, 4)), len(pool)), replace=False)
        self.extreme_trips(
            acct, bars, band=self.b.subtle_band, victim_buys_low=self.direction(len(bars))
        )
        self.previous_day(acct, sds)

    def takeover_rough(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(1)
        pool = self.takeover_pool(sds[0], wide=bool(rng.random() < 0.3))
        n = self.n_trips()
        bars = self.distinct(pool, n)
        self.extreme_trips(
            acct,
            bars,
            band=(0.0, self.b.rough_band),
            victim_buys_low=self.direction(n),
            adjacent=self.adjacency(n, 0.2),
        )
        self.previous_day(acct, sds)

    def takeover_two(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(1)
        pool = self.takeover_pool(sds[0])
        bars = rng.choice(pool, 2, replace=len(pool) < 2)
        band = (0.0, self.b.extreme_band if rng.random() < 0.7 else self.b.rough_band)
        adjacent = self.adjacency(2, 0.2)
        if adjacent.any() and rng.random() < self.b.adjacent_ordinary:
            # the adjacent round trip(s) in any neighbouring bars far enough apart
            made = self.span_trips(acct, sds[0], int(adjacent.sum()), band[1])
            if made is not None:
                bars, adjacent = bars[~adjacent], adjacent[~adjacent]
        if len(bars):
            self.extreme_trips(
                acct, bars, band=band, victim_buys_low=self.direction(len(bars)), adjacent=adjacent
            )
        self.previous_day(acct, sds)

    def takeover_adjacent(self, acct: int) -> None:
        sds = self.pick(1)
        n = self.n_trips()
        if self.rng.random() < self.b.adjacent_ordinary:
            made = self.span_trips(acct, sds[0], n, self.b.extreme_band)
            if made is not None:
                self.previous_day(acct, sds)
                return
        bars = self.distinct(self.takeover_pool(sds[0]), n)
        self.extreme_trips(
            acct,
            bars,
            band=(0.0, self.b.extreme_band),
            victim_buys_low=self.direction(n),
            adjacent=True,
        )
        self.previous_day(acct, sds)

    def takeover_split(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(1)
        n = int(rng.integers(2, 7))
        bars = self.distinct(self.takeover_pool(sds[0]), n)
        self.extreme_trips(
            acct,
            bars,
            band=(0.0, self.b.extreme_band),
            victim_buys_low=self.direction(n),
            adjacent=self.adjacency(n, 0.2),
            split=self.b.split_parts,
        )
        self.previous_day(acct, sds)

    def takeover_mixed(self, acct: int) -> None:
        """The thief's round trips inside a busy owner's own day of trading: a day of one
        of the normal kinds, a day that runs past midnight, or one of the owner styles
        below (day trading, spread capture, scalps, market orders)."""
        rng = self.rng
        u = rng.random()
        b = self.b
        if u < b.busy_owner_overnight and self._overnight_owner(acct):
            return
        if u < b.busy_owner_overnight + b.busy_owner_kind_share and b.busy_owner_kinds:
            sd, span = self._owner_day(acct, str(rng.choice(list(b.busy_owner_kinds))))
            pool = self.takeover_pool(sd)
            if rng.random() < 0.5:
                # the round trips in the widest bars of the hours the owner traded
                wide = self.m.floored(sd, self._widest(span, len(pool)), self.b.takeover_floor)
                pool = wide if len(wide) >= 2 else pool
            self._mixed_trips(acct, pool)
            return
        sds = self.pick(int(rng.integers(1, 3)))
        lo, hi = self.b.busy_owner_trades
        n_own = int(rng.integers(lo, hi + 1))
        style = rng.random()
        if style < 0.45:
            self._daytrade(acct, sds, n_own)
        elif style < 0.65:
            self._spread_capture(acct, sds[0], max(n_own // 2, 2), self.b.mm_adjacent)
        elif style < 0.8:
            self._scalps(acct, sds[0], max(n_own // 2, 2))
        else:
            pool = self.m.narrow(sds[0], self.b.edge_max_ticks)
            k = max(n_own // 2, 2)
            bars = rng.choice(pool, k)
            self.trips(
                acct,
                bars,
                bars,
                np.ones(k),
                np.zeros(k),
                buy_first=rng.random(k) < 0.6,
                same_ts=0.0,
            )
        self._mixed_trips(acct, self.takeover_pool(sds[0]))
        self.previous_day(acct, sds)

    def _mixed_trips(self, acct: int, pool: np.ndarray) -> None:
        """A ``takeover_mixed`` thief's 2-4 round trips in bars of ``pool``."""
        rng = self.rng
        n = int(rng.integers(2, 5))
        bars = self.distinct(pool, n)
        band = (0.0, self.b.extreme_band if rng.random() < 0.7 else self.b.rough_band)
        self.extreme_trips(
            acct,
            bars,
            band=band,
            victim_buys_low=self.direction(n),
            adjacent=self.adjacency(n, 0.15),
        )

    def _widest(self, bars: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` widest bars of ``bars`` that have a range."""
        amp = self.m.high[bars] - self.m.low[bars]
        moving = bars[amp > 0]
        return moving[np.argsort(-(self.m.high[moving] - self.m.low[moving]), kind="stable")][:k]

    def _owner_day(self, acct: int, kind: str) -> tuple[int, np.ndarray]:
        """Trade a day of the normal ``kind`` for ``acct``; return the symbol-day holding
        most of those fills and the bars from its first to its last fill there."""
        chunks = len(self.out.bar)
        getattr(self, kind)(acct)
        if len(self.out.bar) == chunks:  # pragma: no cover - every normal kind trades
            sd = self.pick(1)[0]
            return sd, self.m.bars(sd)
        bars = np.concatenate(self.out.bar[chunks:])
        sd_of_bar = np.searchsorted(self.m.sd_start, bars, side="right") - 1
        sd = int(np.bincount(sd_of_bar).argmax())
        own = bars[sd_of_bar == sd]
        return sd, np.arange(int(own.min()), int(own.max()) + 1)

    def _overnight_owner(self, acct: int) -> bool:
        """An owner trading from the last 4 h of one day into the first 6 h of the next
        (less when that would not fit in 24 h), the thief's round trips after midnight.
        False (nothing made) when the symbol drawn has no bars the day before."""
        rng = self.rng
        m = self.m
        sd = self.pick(1)[0]
        prev = m.sd_of.get((int(m.sd_sym[sd]), int(m.sd_day[sd]) - 1))
        if prev is None:
            return False
        hour = 3600 * 10**9
        late = m.bars(prev)
        late = late[m.ts[late] >= m.ts[late[-1]] - 4 * hour]
        early = m.bars(sd)
        # six hours into the day, all within one day's scoring window (a session market
        # closes hours before midnight)
        end = min(m.ts[early[0]] + 6 * hour, m.ts[late[0]] + 22 * hour)
        early = early[m.ts[early] < max(end, m.ts[early[0]] + 1)]
        own = np.r_[late, early]
        lo, hi = self.b.busy_owner_overnight_trades
        n_own = int(rng.integers(lo, hi + 1))
        if rng.random() < 0.5:
            # single fills at any price, often small (a worked order, a grid)
            bars = np.sort(rng.choice(own, n_own))
            q = self.qty(n_own, bars) / (rng.uniform(2.0, 12.0) if rng.random() < 0.6 else 1.0)
            sell = rng.random(n_own) < 0.5
            self.out.add(acct, bars, self.offsets(acct, n_own), sell, rng.random(n_own),
                         _round_qty(q))  # fmt: skip
        else:
            # round trips in the same or a nearby bar at any price
            k = max(n_own // 2, 1)
            first = rng.choice(own, k)
            at = np.searchsorted(own, first)
            second = own[np.minimum(at + rng.integers(0, 4, k), len(own) - 1)]
            self.trips(
                acct,
                first,
                second,
                rng.random(k),
                rng.random(k),
                buy_first=rng.random(k) < 0.6,
                same_ts=0.05,
            )
        # the widest bars of those hours, or of the day's first 22 h when fewer than two
        # of them are wider than the day's median bar
        k = int(rng.choice(self.b.takeover_top))
        day = m.bars(sd)
        for bars in (early, day[m.ts[day] < m.ts[late[0]] + 22 * hour]):
            pool = m.floored(sd, self._widest(bars, k), self.b.takeover_floor)
            amp = m.high[pool] - m.low[pool]
            if np.count_nonzero(amp > np.median(m.high[day] - m.low[day])) >= 2:
                break
        self._mixed_trips(acct, pool if len(pool) >= 2 else self.takeover_pool(sd))
        return True

    def takeover_multi(self, acct: int) -> None:
        rng = self.rng
        sds = self.pick(int(rng.integers(2, 4)))
        low_side = bool(rng.random() < 0.5)
        per = rng.integers(1, 4, len(sds))
        if per.sum() < 3:
            per[0] += 3 - per.sum()
        for sd, k in zip(sds, per, strict=True):
            bars = self.distinct(self.takeover_pool(sd), int(k))
            self.extreme_trips(
                acct, bars, band=(0.0, self.b.extreme_band), victim_buys_low=low_side
            )
        self.previous_day(acct, sds)

    def beneficiary(self, acct: int, victims: list[int], view: _FillView | None) -> None:
        """The thief's own account: the other side of each of its victims' matched trades."""
        rng = self.rng
        if victims and view is not None:
            idx = np.concatenate([np.concatenate(self.matched[v]) for v in victims])
            bars = view.c["bar"][idx]
            self.out.add(
                acct,
                bars,
                view.c["off"][idx],
                ~view.c["sell"][idx],
                view.c["pos"][idx],
                view.c["qty"][idx],
            )
            b0 = int(bars[0])
            sd = self.m.sd_of[(int(self.m.sym[b0]), int(self.m.ts[b0] // _DAY_NS))]
        else:
            # a victim outside this book: the mirror of a takeover's round trips
            sd = self.pick(1)[0]
            n = self.n_trips()
            bars = self.distinct(self.takeover_pool(sd), n)
            self.extreme_trips(
                acct,
                bars,
                band=(0.0, self.b.extreme_band),
                victim_buys_low=self.direction(n),
                adjacent=self.adjacency(n, 0.2),
            )
        lo, hi = self.b.beneficiary_cover
        k = int(rng.integers(lo, hi + 1))
        if k:
            self.singles(acct, self.busy(int(sd), k))


class _FillView:
    """The fills made so far as flat columns (to mirror some of them)."""

    def __init__(self, f: _Fills) -> None:
        self.c = f.columns()


def _round_qty(q: np.ndarray) -> np.ndarray:
    """Whole units from 20 up, else four significant digits; never zero."""
    q = np.asarray(q, dtype=np.float64)
    whole = q >= 20
    mag = 10.0 ** (np.floor(np.log10(np.maximum(q, 1e-12))) - 3)
    small = np.round(q / mag) * mag
    out = np.where(whole, np.round(q), small)
    # float noise from the scaling: keep the representation short
    dec = np.clip(3 - np.floor(np.log10(np.maximum(q, 1e-12))), 0, 12).astype(np.int64)
    for d in np.unique(dec[~whole]):
        sel = ~whole & (dec == d)
        out[sel] = np.round(out[sel], int(d))
    return np.maximum(out, 1e-8)


def _split_qty(rng: np.random.Generator, total: float, k: int) -> np.ndarray:
    """Cut ``total`` into at most ``k`` positive parts that sum to it exactly."""
    if k <= 1:
        return np.array([total])
    if total >= 20 and float(total).is_integer():
        # choice(n) draws the same numbers as choice(arange(n)) without building the
        # range: a quantity of billions of units must not allocate billions of ints.
        cuts = np.sort(1 + rng.choice(int(total) - 1, min(k - 1, int(total) - 1), replace=False))
        return np.diff(np.r_[0, cuts, int(total)]).astype(np.float64)
    parts = _round_qty(total * rng.dirichlet(np.ones(k)))[:-1]
    last = float(f"{total - parts.sum():.12g}")
    if last <= 0 or (parts <= 0).any():
        return np.array([total])
    return np.r_[parts, last]


# =========================================================================== assembly


def _account_ids(n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.array([f"acct-{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _apply_wicks(m: _Market) -> None:
    """Widen the bars where matched trades printed beyond the market."""
    hit = np.flatnonzero((m.ext_high > 0) | (m.ext_low > 0))
    if len(hit) == 0:
        return
    amp = m.high[hit] - m.low[hit]
    t = m.tick[hit]
    up = np.ceil(m.ext_high[hit] * amp / t) * t
    down = np.minimum(np.ceil(m.ext_low[hit] * amp / t) * t, np.floor(0.5 * m.low[hit] / t) * t)
    m.high[hit] = m.high[hit] + up
    m.low[hit] = np.where(m.low[hit] - down > 0, m.low[hit] - down, m.low[hit])


def _decimals(tick: np.ndarray) -> np.ndarray:
    return np.clip(np.ceil(-np.log10(tick)).astype(np.int64) + 2, 0, 12)


def _internalise(gen: _Accounts, kinds: np.ndarray, fills: _Fills) -> None:
    """Market makers who took the other side of another normal account's fill."""
    rng = gen.rng
    mm = np.flatnonzero(kinds == "normal_market_maker")
    if len(mm) == 0:
        return
    c = fills.columns()
    normal_other = np.isin(
        kinds[c["acct"]],
        ["normal_edge", "normal_daytrader", "normal_casual", "normal_volume_chaser"],
    )
    cand = np.flatnonzero(normal_other)
    if len(cand) == 0:
        return
    for a in mm[rng.random(len(mm)) < gen.b.internalised_share]:
        k = int(rng.integers(1, 4))
        pick = rng.choice(cand, k)
        gen.out.add(
            int(a), c["bar"][pick], c["off"][pick], ~c["sell"][pick], c["pos"][pick], c["qty"][pick]
        )


def _finish(
    m: _Market,
    f: _Fills,
    account_ids: np.ndarray,
    kinds: np.ndarray,
    labels: np.ndarray,
    bar: pd.Timedelta,
) -> MarketData:
    """Turn positions into tick prices and build sorted frames."""
    c = f.columns()
    acct, bars, off, sell = c["acct"], c["bar"], c["off"], c["sell"]
    pos = np.clip(c["pos"], 0.0, 1.0)
    lo, hi, tick = m.low[bars], m.high[bars], m.tick[bars]
    n_ticks = np.rint((hi - lo) / tick)
    price = lo + np.rint(pos * n_ticks) * tick
    dec = _decimals(tick)
    for d in np.unique(dec):
        sel = dec == d
        price[sel] = np.round(price[sel], int(d))
    # Exactly at the extreme means exactly the bar's printed high or low.
    price = np.clip(np.where(pos <= 0.0, lo, np.where(pos >= 1.0, hi, price)), lo, hi)
    ts = m.ts[bars] + off * _NS_PER_MS
    order = np.lexsort((sell, acct, ts))
    n = len(order)
    width = max(9, len(str(n)))
    trades = pd.DataFrame(
        {
            "trade_id": pd.Series([f"t-{i:0{width}d}" for i in range(1, n + 1)], dtype=str),
            "account_id": pd.Series(account_ids[acct[order]], dtype=str),
            "symbol": pd.Series(m.names[m.sym[bars[order]]], dtype=str),
            "ts": pd.to_datetime(ts[order], utc=True).astype("datetime64[ns, UTC]"),
            "side": pd.Series(np.where(sell[order], "sell", "buy"), dtype=str),
            "price": price[order],
            "quantity": c["qty"][order],
        }
    )
    lab = pd.DataFrame(
        {
            "account_id": pd.Series(account_ids, dtype=str),
            "label": labels.astype(np.int64),
            "kind": pd.Series(kinds, dtype=str),
        }
    )
    k = m.k.copy()
    k["high"] = m.high
    k["low"] = m.low
    lab = lab.sort_values("account_id").reset_index(drop=True)
    return MarketData(k, trades, lab, bar)


def _infer_bar(klines: pd.DataFrame) -> pd.Timedelta:
    """The most common step between a symbol's consecutive bars (5 minutes if unclear)."""
    k = klines.sort_values(["symbol", "ts"], kind="stable")
    ts = k["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    same = k["symbol"].to_numpy()[1:] == k["symbol"].to_numpy()[:-1]
    d = np.diff(ts)[same]
    d = d[d > 0]
    if len(d) == 0:
        return BAR
    vals, counts = np.unique(d, return_counts=True)
    return pd.Timedelta(int(vals[np.argmax(counts)]), unit="ns")


def simulate(
    n_accounts: int,
    *,
    seed: int = 0,
    fraud_share: float = 0.5,
    n_symbols: int = 40,
    start: str = "2026-03-02",
    days: int = 5,
    klines: pd.DataFrame | None = None,
    tick_size: float | Mapping[str, float] | None = None,
    behaviour: Behaviour | None = None,
    kinds: Mapping[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> MarketData:
    """Simulate the trades of normal and taken-over accounts on bars.

    Parameters
    ----------
    n_accounts
        Number of accounts. Each trades on one UTC day (about one in ten also the day
        before) in one to three symbols; about four or more share each symbol-day used.
    seed
        Random seed; the same arguments give the same data.
    fraud_share
        Share of takeover accounts (label 1). Kinds are mixed evenly within each label.
    n_symbols, start, days
        The built-in bars (:func:`generate_bars`), when ``klines`` is not given.
    klines
        The user's own k-lines (the contract's columns, any symbols and days): accounts
        are placed on them instead; the bars come back unchanged.
    tick_size
        The tick, one for all symbols or per symbol; by default derived from the prices
        of each symbol-day (:func:`fraudlens.market._bars.estimate_tick`).
    behaviour
        The accounts' parameters; default :class:`Behaviour` ``()``.
    kinds
        Relative weights of kinds within their label (default
        :data:`DEFAULT_KIND_WEIGHTS`; ``{name: 1.0 for name in KINDS}`` mixes them
        evenly). Unknown names raise ``ValueError``.
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
    Takeover kinds (label 1) make matched round trips (a buy and a sell of the same
    size) at opposite extremes of volatile bars (among the day's 5 to 40 widest, those
    past the 10th at least 1.5 times the day's median range), the victim buying high and selling low
    (as in the SEC's intrusion cases) or buying low and selling high (the reference's
    recipe):

    - ``takeover_reference``: the reference recipe: 2-8 round trips among the 10 widest
      bars of the day (amplitude / low >= 0.5 % where there are such bars), buy at low +
      0-9 % of the range, sell at low + 90-99 %.
    - ``takeover_reverse``: buy near the high and sell near the low.
    - ``takeover_wick``: prints exactly at the bars' high and low (on built-in bars they
      lie beyond the market and become the wicks).
    - ``takeover_subtle``: 2-3 round trips 1-15 % inside the extremes, top-20 bars.
    - ``takeover_rough``: legs anywhere within 30 % of the bar's range from its extremes
      (``Behaviour.rough_band``, 0.3).
    - ``takeover_two``: exactly two round trips (both same-bar, both adjacent or one
      of each).
    - ``takeover_adjacent``: the two legs in neighbouring bars, each at its own bar's
      extreme; the bars volatile ones or any two ordinary ones whose used extremes lie
      1.6 median bar ranges apart.
    - ``takeover_split``: each leg cut into several fills.
    - ``takeover_mixed``: 2-4 round trips inside a busy owner's own day of trading: the
      owner's day trading, spread capture, scalps or market orders, a day of another
      normal kind (many small fills, scalper, market maker, ...) or a day that runs
      past midnight (see :class:`Behaviour`).
    - ``takeover_multi``: round trips spread over 2-3 symbols.
    - ``beneficiary``: the thief's account, taking the other side of each matched trade
      of one or two victims in the book (or of a victim elsewhere).

    Normal kinds (label 0): ``normal_casual`` (1-4 trades), ``normal_swing`` (buys,
    then sells later), ``normal_daytrader`` (10-50 trades, round trips over a few
    bars), ``normal_scalper`` (same-bar round trips near the middle of busy bars and at
    the edges of quiet ones, or near the two ends of ordinary bars, some of them lost),
    ``normal_limit`` (limit fills at a bar's extreme, never matched in that bar),
    ``normal_volatile`` (trades anywhere in the day's volatile
    bars), ``normal_market_maker`` (equal-size round trips buying the low and selling
    the high of quiet bars, and, for up to 40 % of an account's round trips, near the
    ends of bars 1-2 day-medians wide, its quotes standing as the bar widened; some also
    take the other side of another client's trade),
    ``normal_edge`` (market orders at the ask and bid of bars a few ticks wide),
    ``normal_momentum`` (one losing round trip: in at one extreme of a volatile bar,
    stopped out at the other extreme of that bar or the next), ``normal_volume_chaser``
    (trades in the day's highest-volume bars) and ``normal_small_fills`` (dozens of
    small fills: sliced orders or a grid).
    """
    if n_accounts < 1:
        raise ValueError("n_accounts must be >= 1")
    if not 0.0 <= fraud_share <= 1.0:
        raise ValueError("fraud_share must be between 0 and 1")
    beh = behaviour or Behaviour()
    rng = np.random.default_rng(seed)
    if klines is None:
        k = generate_bars(n_symbols, days=days, start=start, seed=int(rng.integers(2**31)))
        bar = BAR
        widen = True
    else:
        k = (
            validate_klines(klines)
            if not isinstance(klines["ts"].dtype, pd.DatetimeTZDtype)
            else klines
        )
        bar = _infer_bar(k)
        widen = False
    ticks: Mapping[str, float] | None
    if isinstance(tick_size, Mapping):
        ticks = tick_size
    elif tick_size is not None:
        ticks = dict.fromkeys(k["symbol"].astype(str).unique(), float(tick_size))
    else:
        ticks = None
    market = _Market(k, bar, ticks)
    gen = _Accounts(market, rng, beh, n_accounts)

    weights = dict(DEFAULT_KIND_WEIGHTS) if kinds is None else dict(kinds)
    unknown = sorted(set(weights) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known: {sorted(KINDS)}")
    n_fraud = round(n_accounts * fraud_share)
    kind_arr = np.concatenate(
        [
            _spread_kinds(rng, weights, 1, n_fraud),
            _spread_kinds(rng, weights, 0, n_accounts - n_fraud),
        ]
    ).astype(object)
    kind_arr = kind_arr[rng.permutation(n_accounts)]
    labels = np.array([KINDS[str(x)] for x in kind_arr], dtype=np.int64)
    for i in range(n_accounts):
        gen.stamp_start[i] = bool(rng.random() < beh.bar_start_share)

    every = max(1, n_accounts // 200)
    done = 0
    ben = [i for i, x in enumerate(kind_arr) if x == "beneficiary"]
    for i, kind in enumerate(kind_arr):
        if kind == "beneficiary":
            continue
        if kind == "takeover_wick":
            gen.takeover_wick(i, widen)
        else:
            getattr(gen, str(kind))(i)
        if progress is not None and ((i + 1) % every == 0):
            progress(i + 1 - done)
            done = i + 1
    # Beneficiaries mirror victims made above: each victim has at most one.
    if ben:
        view = _FillView(gen.out)
        free = [v for v in gen.matched if kind_arr[v] != "beneficiary"]
        rng.shuffle(free)
        lo, hi = beh.beneficiary_victims
        for b in ben:
            take = min(int(rng.integers(lo, hi + 1)), len(free))
            # about one beneficiary in five trades with a victim outside this book
            if rng.random() < 0.2:
                take = 0
            victims, free = free[:take], free[take:]
            gen.beneficiary(b, victims, view if victims else None)
    _internalise(gen, kind_arr, gen.out)
    if progress is not None and n_accounts > done:
        progress(n_accounts - done)
    if widen:
        _apply_wicks(market)
    data = _finish(market, gen.out, _account_ids(n_accounts), kind_arr, labels, bar)
    _check_trade_sizes(data.trades)
    return data


def _check_trade_sizes(trades: pd.DataFrame) -> None:
    """DataError (column ``high``) when a trade's price x quantity is past what a trades
    file may hold: bars priced near 1e300 had given trades that the loaders then refused
    (``market train`` on the folder ``market simulate --klines`` had just written)."""
    with np.errstate(over="ignore"):
        value = trades["price"].to_numpy() * trades["quantity"].to_numpy()
    if len(value) and not np.max(value) <= MAX_TRADE_MAGNITUDE:
        raise DataError(
            f"prices up to {trades['price'].max():g} leave no room for the accounts' "
            f"quantities: a trade's price x quantity would reach {np.max(value):g}, past "
            f"the {MAX_TRADE_MAGNITUDE:g} a trades file may hold; give smaller prices",
            column="high",
        )


def _spread_kinds(
    rng: np.random.Generator, weights: Mapping[str, float], label: int, n: int
) -> np.ndarray:
    """``n`` kinds of one label in proportion to ``weights`` (evenly when equal)."""
    names = sorted(k for k, v in KINDS.items() if v == label and weights.get(k, 0.0) > 0)
    if n == 0:
        return np.array([], dtype=object)
    if not names:
        raise ValueError(f"no kind with label {label} has a positive weight")
    w = np.array([weights[k] for k in names], dtype=np.float64)
    counts = np.floor(n * w / w.sum()).astype(int)
    rest = n - counts.sum()
    if rest:
        counts[rng.choice(len(names), rest, replace=False, p=w / w.sum())] += 1
    return rng.permutation(np.repeat(np.array(names, dtype=object), counts))


# =========================================================================== reference


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
    # A volatile session: redraw (deterministically) until enough bars pass the 0.5 % rule.
    while True:
        sigma = 0.06 / np.sqrt(n) * np.exp(rng.normal(0.0, 0.3, n))
        r = sigma * rng.standard_t(4, n) / np.sqrt(2.0)
        c = float(rng.uniform(120.0, 200.0)) * np.exp(np.cumsum(r))
        o = c * np.exp(-r)
        up = sigma * np.abs(rng.standard_normal(n)) * 0.8
        dn = sigma * np.abs(rng.standard_normal(n)) * 0.8
        o, c = np.round(o, 2), np.round(c, 2)
        h = np.round(np.maximum(o, c) * np.exp(up), 2)
        lo = np.round(np.minimum(o, c) * np.exp(-dn), 2)
        h = np.maximum(h, lo + 0.01)
        amp = h - lo
        top10 = np.argsort(-amp, kind="stable")[:10]
        ok = top10[amp[top10] / lo[top10] >= _REF_MIN_AMPLITUDE]
        if len(ok) >= 4:
            break
    k = pd.DataFrame(
        {
            "symbol": "COIN",
            "ts": pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]"),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": np.round(5e6 / c * (0.5 + np.abs(r) / sigma)),
        }
    )
    market = _Market(k, BAR, {"COIN": 0.01})
    n_fraud = round(n_accounts * 0.5)
    is_fraud = rng.permutation(np.r_[np.ones(n_fraud, bool), np.zeros(n_accounts - n_fraud, bool)])
    f = _Fills()
    for i, fraud in enumerate(is_fraud):
        if fraud:
            kk = int(rng.integers(2, 9))
            b = rng.choice(ok, kk)
            f.add(
                i,
                np.r_[b, b],
                np.zeros(2 * kk, dtype=np.int64),
                np.r_[np.zeros(kk, bool), np.ones(kk, bool)],
                np.r_[rng.uniform(0.0, 0.09, kk), rng.uniform(0.90, 0.99, kk)],
                np.ones(2 * kk),
            )
        else:
            f.add(
                i,
                rng.integers(0, n, 2),
                np.zeros(2, dtype=np.int64),
                np.array([False, True]),
                rng.random(2),
                np.ones(2),
            )
    kinds = np.where(is_fraud, "ref_takeover", "ref_normal").astype(object)
    return _finish(market, f, _account_ids(n_accounts), kinds, is_fraud.astype(np.int64), BAR)
