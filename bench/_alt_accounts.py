"""An independent account generator, for judging generalisation on real bars.

fraudlens's own simulator (``fraudlens.market.simulate``) is what the detectors train
on. Judging them on accounts drawn by the same code would only show that they learned
that code. This module draws the same catalogue of behaviours (the normal look-alikes
and the takeover variants) from a separate implementation with its own choices:

- bar pools by thresholds on the range relative to the symbol-day (volatile: at least
  twice the day's median range; quiet: at most its 40 % quantile) instead of top-k
  lists;
- round-lot sizes, its own counts and spreads of round trips, its own timing (a third of
  the accounts stamp every fill at its bar's open);
- market makers with more round trips in narrower bars, momentum traders in the very
  widest bars, market-order traders only in bars of at most three ticks.

It is used by ``bench/market_real.py`` only; nothing in the package imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NORMAL = (
    "casual",
    "swing",
    "daytrader",
    "scalper",
    "limit",
    "volatile",
    "edge",
    "market_maker",
    "momentum",
    "volume_chaser",
    "small_fills",
)
TAKEOVER = (
    "to_reference",
    "to_reverse",
    "to_wick",
    "to_subtle",
    "to_rough",
    "to_two",
    "to_adjacent",
    "to_split",
    "to_busy_owner",
    "to_multi",
    "beneficiary",
)
_DAY = 86_400 * 10**9


@dataclass
class _Book:
    acct: list[int] = field(default_factory=list)
    row: list[int] = field(default_factory=list)
    off_s: list[float] = field(default_factory=list)
    sell: list[bool] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    qty: list[float] = field(default_factory=list)


class AltGenerator:
    """Accounts on given k-lines (sorted by symbol, ts), kinds from ``NORMAL``/``TAKEOVER``."""

    def __init__(self, klines: pd.DataFrame, seed: int) -> None:
        from fraudlens.market._bars import bar_context

        self.k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        self.rng = np.random.default_rng(seed)
        ctx = bar_context(self.k)
        self.ctx = ctx
        self.high = self.k["high"].to_numpy(float)
        self.low = self.k["low"].to_numpy(float)
        self.vol = np.nan_to_num(self.k["volume"].to_numpy(float))
        self.ts = self.k["ts"].to_numpy("datetime64[ns]").astype(np.int64)
        g = ctx.day_group
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        ends = np.r_[starts[1:], len(g)]
        amp = self.high - self.low
        ok = [
            i
            for i, (a, b) in enumerate(zip(starts, ends, strict=True))
            if b - a >= 40 and np.count_nonzero(amp[a:b] > 0) >= 20
        ]
        self.sd = [(int(starts[i]), int(ends[i])) for i in ok]
        self.book = _Book()
        self.legs: dict[int, list[int]] = {}
        self.bar_open: dict[int, bool] = {}
        self.multi_ok = True

    # ---------------------------------------------------------------- pools
    def rows(self, sd: tuple[int, int]) -> np.ndarray:
        return np.arange(sd[0], sd[1])

    def volatile(self, sd: tuple[int, int]) -> np.ndarray:
        r = self.rows(sd)
        rel = self.ctx.rel[r]
        pool = r[rel >= 2.0]
        if len(pool) < 3:
            pool = r[np.argsort(-(self.high[r] - self.low[r]), kind="stable")[:8]]
        return pool

    def widest(self, sd: tuple[int, int], k: int) -> np.ndarray:
        r = self.rows(sd)
        return r[np.argsort(-(self.high[r] - self.low[r]), kind="stable")[:k]]

    def quiet(self, sd: tuple[int, int]) -> np.ndarray:
        r = self.rows(sd)
        amp = self.high[r] - self.low[r]
        moving = r[amp > 0]
        cut = np.quantile(amp[amp > 0], 0.4)
        pool = moving[(self.high[moving] - self.low[moving]) <= cut]
        return pool if len(pool) else moving

    def narrow(self, sd: tuple[int, int]) -> np.ndarray:
        r = self.rows(sd)
        t = self.ctx.ticks[r]
        pool = r[(t >= 1) & (t <= 3)]
        return pool if len(pool) >= 2 else self.quiet(sd)

    def busy(self, sd: tuple[int, int], n: int) -> np.ndarray:
        r = self.rows(sd)
        w = self.vol[r] + 1e-9 + 0.1 * self.vol[r].mean()
        return self.rng.choice(r, n, p=w / w.sum())

    def next_row(self, row: np.ndarray, sd: tuple[int, int]) -> np.ndarray:
        return np.where(row + 1 < sd[1], row + 1, row - 1)

    # ---------------------------------------------------------------- prices, sizes
    def price_at(self, row: int, pos: float) -> float:
        lo, hi = self.low[row], self.high[row]
        t = self.ctx.tick[row]
        n = round((hi - lo) / t) if t > 0 else 0
        p = lo + round(pos * n) * t
        dec = max(0, int(np.ceil(-np.log10(t))) + 2) if t > 0 else 10
        return float(min(max(round(p, dec), lo), hi))

    def lot(self, row: int) -> float:
        rng = self.rng
        px = (self.high[row] + self.low[row]) / 2
        notional = float(np.exp(rng.normal(np.log(4000.0), 0.9)))
        q = notional / px
        if q >= 100:
            return float(max(100, round(q / 100) * 100))
        if q >= 10:
            return float(round(q / 10) * 10)
        return float(f"{q:.2g}")

    def add(self, a: int, row: int, sell: bool, pos: float, qty: float, off: float | None = None):
        rng = self.rng
        b = self.book
        b.acct.append(a)
        b.row.append(int(row))
        if self.bar_open.get(a, False):
            o = 0.0
        else:
            o = float(rng.uniform(0, 299.0)) if off is None else off
        b.off_s.append(o)
        b.sell.append(bool(sell))
        b.price.append(self.price_at(int(row), float(np.clip(pos, 0, 1))))
        b.qty.append(qty)
        return len(b.acct) - 1

    def trip(self, a, row_b, row_s, pos_b, pos_s, qty, buy_first=True, split=0, gap_s=None):
        rng = self.rng
        o1 = float(rng.uniform(0, 240))
        o2 = o1 + (float(rng.uniform(0, 50)) if gap_s is None else gap_s)
        if row_b != row_s:
            o2 = float(rng.uniform(0, 299))
        ob, os_ = (o1, min(o2, 299.0)) if buy_first else (min(o2, 299.0), o1)
        idx = []
        for row, sell, pos, off in ((row_b, False, pos_b, ob), (row_s, True, pos_s, os_)):
            if split:
                k = int(rng.integers(3, 9))
                w = rng.dirichlet(np.ones(k) * 2)
                parts = [float(f"{qty * x:.3g}") for x in w[:-1]]
                last = qty - sum(parts)
                if last <= 0 or min(parts) <= 0:
                    parts, last = [], qty
                for p in [*parts, last]:
                    jit = abs(float(rng.normal(0, 0.02)))
                    idx.append(self.add(a, row, sell, pos + (jit if pos < 0.5 else -jit), p,
                                        min(off + float(rng.uniform(0, 20)), 299.0)))  # fmt: skip
            else:
                idx.append(self.add(a, row, sell, pos, qty, off))
        return idx

    # ---------------------------------------------------------------- kinds
    def kind(self, a: int, kind: str, sd: tuple[int, int], victims: list[int]) -> None:
        rng = self.rng
        r = rng.random
        if kind == "casual":
            for row in self.busy(sd, int(rng.integers(1, 6))):
                self.add(a, row, r() < 0.5, r(), self.lot(row))
        elif kind == "swing":
            rows = np.sort(self.busy(sd, int(rng.integers(2, 7))))
            h = len(rows) // 2
            for i, row in enumerate(rows):
                self.add(a, row, i >= h, r(), self.lot(row))
        elif kind == "daytrader":
            for _ in range(int(rng.integers(4, 21))):
                row = self.busy(sd, 1)[0]
                exit_row = min(row + int(rng.integers(0, 20)), sd[1] - 1)
                q = self.lot(row)
                self.trip(a, row, exit_row, r(), r(), q, buy_first=r() < 0.7)
        elif kind == "scalper":
            for _ in range(int(rng.integers(3, 21))):
                row = self.busy(sd, 1)[0]
                c = float(rng.uniform(0.3, 0.7))
                d = float(rng.uniform(-0.08, 0.12))
                self.trip(a, row, row, c, c + d, self.lot(row))
        elif kind == "limit":
            rows = np.unique(self.busy(sd, int(rng.integers(2, 10))))
            for row in rows:
                sell = r() < 0.5
                self.add(a, row, sell, 1.0 if sell else 0.0, self.lot(row))
        elif kind == "volatile":
            pool = self.volatile(sd)
            for row in rng.choice(pool, int(rng.integers(3, 12))):
                self.add(a, row, r() < 0.5, r(), self.lot(row))
        elif kind == "edge":
            pool = self.narrow(sd)
            for _ in range(int(rng.integers(3, 26))):
                row = int(rng.choice(pool))
                other = row if r() < 0.6 else int(self.next_row(np.array([row]), sd)[0])
                self.trip(a, row, other, 1.0, 0.0, self.lot(row), buy_first=r() < 0.5)
        elif kind == "market_maker":
            pool = self.quiet(sd)
            q = self.lot(int(pool[0]))
            for _ in range(int(rng.integers(10, 81))):
                row = int(rng.choice(pool))
                other = row if r() < 0.85 else int(self.next_row(np.array([row]), sd)[0])
                self.trip(a, row, other, 0.0, 1.0, q, buy_first=r() < 0.5)
        elif kind == "momentum":
            row = int(rng.choice(self.widest(sd, 10)))
            other = row if r() < 0.5 else int(self.next_row(np.array([row]), sd)[0])
            hi = 1.0 - float(rng.uniform(0, 0.08))
            lo = float(rng.uniform(0, 0.08))
            long = r() < 0.5
            # long: buy high first, sell low later; short: sell low first, buy high later
            self.trip(a, row, other, hi, lo, self.lot(row), buy_first=long, gap_s=60.0)
            for row2 in self.busy(sd, int(rng.integers(0, 4))):
                self.add(a, row2, r() < 0.5, r(), self.lot(row2))
        elif kind == "volume_chaser":
            rows = self.rows(sd)
            pool = rows[np.argsort(-self.vol[rows], kind="stable")[:15]]
            for row in rng.choice(pool, int(rng.integers(3, 13))):
                self.add(a, row, r() < 0.5, r(), self.lot(row))
        elif kind == "small_fills":
            n = int(rng.integers(40, 301))
            start = self.busy(sd, 1)[0]
            sell = r() < 0.5
            q = self.lot(start) / 20
            for i in range(n):
                row = min(start + i // int(rng.integers(2, 6)), sd[1] - 1)
                if r() < 0.1:
                    sell = not sell
                self.add(a, row, sell, r(), float(f"{q * rng.uniform(0.5, 1.5):.3g}"))
        elif kind == "beneficiary":
            b = self.book
            for v in victims:
                for i in self.legs.get(v, []):
                    # the other side of the victim's fill: same bar, time, price and size
                    b.acct.append(a)
                    b.row.append(b.row[i])
                    b.off_s.append(b.off_s[i])
                    b.sell.append(not b.sell[i])
                    b.price.append(b.price[i])
                    b.qty.append(b.qty[i])
            for row in self.busy(sd, int(rng.integers(0, 4))):
                self.add(a, row, r() < 0.5, r(), self.lot(row))
        else:
            self.takeover(a, kind, sd)

    def takeover(self, a: int, kind: str, sd: tuple[int, int]) -> None:
        rng = self.rng
        r = rng.random
        pool = self.volatile(sd)
        n = int(rng.integers(2, 7))
        width = 0.08
        adjacent = False
        split = 0
        low_first = r() < 0.5  # victim buys low (reference) or buys high (SEC cases)
        if kind == "to_reference":
            low_first, width = True, 0.09
            pool = self.widest(sd, 10)
        elif kind == "to_reverse":
            low_first = False
        elif kind == "to_wick":
            width = 0.0
        elif kind == "to_subtle":
            n = int(rng.integers(2, 4))
            pool = self.widest(sd, 20)
        elif kind == "to_rough":
            width = 0.25
        elif kind == "to_two":
            n = 2
            width = 0.15
        elif kind == "to_adjacent":
            adjacent = True
        elif kind == "to_split":
            split = 1
        elif kind == "to_busy_owner":
            n = int(rng.integers(2, 5))
            for sub in ("daytrader", "market_maker", "scalper", "edge")[: int(rng.integers(1, 3))]:
                self.kind(a, sub, sd, [])
        elif kind == "to_multi":
            # one or two here; two when no other symbol trades that day
            n = int(rng.integers(1, 3)) if self.multi_ok else 2
        legs: list[int] = []
        for _ in range(n):
            row = int(rng.choice(pool))
            other = int(self.next_row(np.array([row]), sd)[0]) if adjacent else row
            edge = 0.01 if kind == "to_subtle" else 0.0
            near_lo = float(rng.uniform(edge, max(width, 0.15 if kind == "to_subtle" else width)))
            near_hi = 1.0 - float(
                rng.uniform(edge, max(width, 0.15 if kind == "to_subtle" else width))
            )
            pb, ps = (near_lo, near_hi) if low_first else (near_hi, near_lo)
            legs += self.trip(a, row, other, pb, ps, self.lot(row), buy_first=r() < 0.5,
                              split=split, gap_s=0.0 if r() < 0.5 else None)  # fmt: skip
        self.legs[a] = legs

    # ---------------------------------------------------------------- assembly
    def run(self, n_accounts: int, fraud_share: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = self.rng
        n_fraud = round(n_accounts * fraud_share)
        kinds = np.r_[
            np.resize(rng.permutation(TAKEOVER), n_fraud),
            np.resize(rng.permutation(NORMAL), n_accounts - n_fraud),
        ]
        kinds = kinds[rng.permutation(n_accounts)]
        # several accounts per symbol-day: ~6 each
        n_sd = max(1, min(len(self.sd), n_accounts // 6))
        chosen = rng.choice(len(self.sd), n_sd, replace=False)
        home = rng.choice(chosen, n_accounts)
        for a in range(n_accounts):
            self.bar_open[a] = bool(rng.random() < 0.33)
        order = [i for i in range(n_accounts) if kinds[i] != "beneficiary"]
        order += [i for i in range(n_accounts) if kinds[i] == "beneficiary"]
        free: list[int] = []
        for a in order:
            sd = self.sd[int(home[a])]
            victims: list[int] = []
            if kinds[a] == "beneficiary":
                if not free:
                    free = [v for v in self.legs if kinds[v] != "beneficiary"]
                    rng.shuffle(free)
                if free and rng.random() < 0.85:
                    victims = [free.pop()]
                    sd = self.sd[int(home[victims[0]])]  # cover trades on the victim's day
                else:
                    self.takeover(a, "to_reverse", sd)
                    continue
            if kinds[a] == "to_multi":
                others = [i for i, s in enumerate(self.sd) if s != sd and
                          (self.ts[s[0]] // _DAY) == (self.ts[sd[0]] // _DAY)]  # fmt: skip
                self.multi_ok = bool(others)
                self.kind(a, str(kinds[a]), sd, victims)
                first_legs = self.legs.get(a, [])
                for j in rng.choice(others, min(2, len(others)), replace=False) if others else []:
                    self.takeover(a, "to_multi", self.sd[int(j)])
                    first_legs += self.legs.get(a, [])
                self.legs[a] = first_legs
                continue
            self.kind(a, str(kinds[a]), sd, victims)
        b = self.book
        rows = np.asarray(b.row)
        ts = self.ts[rows] + (np.asarray(b.off_s) * 1e9).astype(np.int64)
        trades = pd.DataFrame(
            {
                "trade_id": [f"x-{i:08d}" for i in range(len(rows))],
                "account_id": [f"u{a:05d}" for a in b.acct],
                "symbol": self.k["symbol"].to_numpy()[rows],
                "ts": pd.to_datetime(ts, utc=True),
                "side": np.where(b.sell, "sell", "buy"),
                "price": b.price,
                "quantity": b.qty,
            }
        ).sort_values("ts", kind="stable")
        labels = pd.DataFrame(
            {
                "account_id": [f"u{a:05d}" for a in range(n_accounts)],
                "label": [1 if k in TAKEOVER else 0 for k in kinds],
                "kind": kinds,
            }
        )
        labels = labels[labels["account_id"].isin(set(trades["account_id"]))]
        return trades.reset_index(drop=True), labels.reset_index(drop=True)
