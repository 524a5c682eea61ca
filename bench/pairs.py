"""Pair-linkage benchmark: counterparty linkage and value moved at the scale of a book.

Run:  python bench/pairs.py [--accounts 100000] [--per-symbol 20] [--repeat 3]

Generates one UTC day of a brokerage book: about ``accounts / per-symbol`` symbols (24 h
coins and 6.5 h equity sessions, price levels from 1e-8 to 1e5, ticks of about five
significant digits), each account trading one to three symbols (ordinary traders, busy
market makers with equal-quantity round trips, and, for ``--mirrored`` of the accounts,
takeover victims whose round trips at the bars' extremes are mirrored by a beneficiary
account). Then times, on the whole book in one call each:

- ``find_pairs`` (mirrored trade matches),
- ``account_pairs`` (the pairs table, strings and all),
- ``account_evidence`` (value moved, counterparty: what the feature detector reads),

and reports accounts/s and trades/s (best of ``--repeat``), plus how many of the planted
victim/beneficiary pairs ``account_evidence`` names as each other's counterparty. The
last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd

_DAY = pd.Timestamp("2026-03-02", tz="UTC")
_BAR_NS = 5 * 60 * 10**9


def make_book(
    n_accounts: int,
    per_symbol: int = 20,
    mirrored: float = 0.02,
    seed: int = 0,
    tick_rel: float = 1e-4,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A generated one-day book: ``(klines, trades, planted)``.

    ``planted`` lists the ``victim, beneficiary`` pairs whose trades mirror each other.
    ``tick_rel`` is the tick relative to the price (a power of ten near it): 1e-4 gives
    bars tens of ticks wide, 1e-3 bars a few ticks wide (many fills share a price, so
    chance mirrors are common). Everything is vectorised so that generating 100,000
    accounts takes seconds.
    """
    rng = np.random.default_rng(seed)
    n_sym = max(1, n_accounts // per_symbol)
    crypto = rng.random(n_sym) < 0.4
    level = 10.0 ** rng.uniform(-8, 5, n_sym)
    tick = 10.0 ** np.round(np.log10(level * tick_rel))
    n_bars = np.where(crypto, 288, 78)
    first_bar = np.where(crypto, 0, (14 * 60 + 30) // 5)
    sym_start = np.r_[0, np.cumsum(n_bars)[:-1]]
    total = int(n_bars.sum())
    k_sym = np.repeat(np.arange(n_sym), n_bars)
    k_idx = np.arange(total) - np.repeat(sym_start, n_bars)
    k_ts = _DAY.value + (first_bar[k_sym] + k_idx) * _BAR_NS
    # heavy-tailed returns, volatility clustering kept simple: a per-bar scale
    vol = 0.002 * np.exp(rng.normal(0, 0.5, total))
    ret = rng.standard_t(3, total) * vol
    logp = np.log(level[k_sym]) + np.cumsum(ret) - np.repeat(np.cumsum(ret)[sym_start], n_bars)
    close = np.exp(logp)
    open_ = np.r_[close[0], close[:-1]]
    open_[sym_start] = close[sym_start]
    wick = np.abs(rng.normal(0, 1, (2, total))) * vol * close
    t = tick[k_sym]
    high = np.ceil((np.maximum(open_, close) + wick[0]) / t) * t
    low = np.maximum(np.floor((np.minimum(open_, close) - wick[1]) / t) * t, t)
    open_ = np.clip(np.round(open_ / t) * t, low, high)
    close = np.clip(np.round(close / t) * t, low, high)
    klines = pd.DataFrame(
        {
            "symbol": pd.Series(np.char.add("S", np.arange(n_sym).astype(str))[k_sym]),
            "ts": pd.to_datetime(k_ts, utc=True),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.gamma(2.0, 1000.0, total),
        }
    )

    # ordinary accounts: 1-3 symbols each, a few trades per symbol
    acct_syms = rng.integers(1, 4, n_accounts)
    a_of = np.repeat(np.arange(n_accounts), acct_syms)
    s_of = rng.integers(0, n_sym, len(a_of))
    maker = rng.random(n_accounts) < 0.05
    per = np.where(maker[a_of], rng.integers(10, 40, len(a_of)), rng.integers(1, 8, len(a_of)))
    ta = np.repeat(a_of, per)
    ts_ = np.repeat(s_of, per)
    m = len(ta)
    bar = sym_start[ts_] + rng.integers(0, n_bars[ts_])
    t_ts = k_ts[bar] + rng.integers(0, _BAR_NS, m)
    span = high[bar] - low[bar]
    price = low[bar] + rng.random(m) * span
    price = np.clip(np.round(price / t[bar]) * t[bar], low[bar], high[bar])
    qty = rng.choice([1.0, 2.0, 5.0, 10.0, 25.0, 100.0, 0.5, 0.01], m)
    side = np.where(rng.random(m) < 0.5, "buy", "sell")
    # market makers: every other fill is the same quantity the other way, same bar
    mk = maker[ta]
    same = (ta[1:] == ta[:-1]) & (ts_[1:] == ts_[:-1])
    prev = np.r_[False, same & mk[1:] & (np.arange(1, m) % 2 == 1)]
    qty[prev] = qty[np.flatnonzero(prev) - 1]
    side[prev] = np.where(side[np.flatnonzero(prev) - 1] == "buy", "sell", "buy")
    bar[prev] = bar[np.flatnonzero(prev) - 1]
    t_ts[prev] = k_ts[bar[prev]] + rng.integers(0, _BAR_NS, int(prev.sum()))
    price[prev] = np.clip(
        np.round((low[bar[prev]] + rng.random(int(prev.sum())) * span[bar[prev]]) / t[bar[prev]])
        * t[bar[prev]],
        low[bar[prev]],
        high[bar[prev]],
    )

    # planted takeovers: victim buys at the bar's high from the beneficiary and sells
    # back at the low of the same or the next bar
    n_pairs = int(n_accounts * mirrored / 2)
    perm = rng.permutation(n_accounts)[: 2 * n_pairs]
    victim, benef = perm[:n_pairs], perm[n_pairs:]
    rts = rng.integers(2, 7, n_pairs)
    pv = np.repeat(victim, rts)
    pb = np.repeat(benef, rts)
    ps = np.repeat(rng.integers(0, n_sym, n_pairs), rts)
    r = len(pv)
    b1 = sym_start[ps] + rng.integers(0, n_bars[ps] - 1)
    # the sell leg sits in the same bar or, when its low is below this bar's high, the next
    b2 = np.where((rng.random(r) < 0.5) & (low[b1 + 1] < high[b1]), b1 + 1, b1)
    q = rng.choice([1.0, 10.0, 100.0, 0.1], r) * 3.0
    t1 = k_ts[b1] + rng.integers(0, _BAR_NS, r)
    t2 = np.maximum(k_ts[b2] + rng.integers(0, _BAR_NS, r), t1 + 1)
    legs = {
        "a": np.r_[pv, pb, pv, pb],
        "s": np.r_[ps, ps, ps, ps],
        "t": np.r_[t1, t1, t2, t2],
        "side": np.r_[["buy"] * r, ["sell"] * r, ["sell"] * r, ["buy"] * r],
        "p": np.r_[high[b1], high[b1], low[b2], low[b2]],
        "q": np.r_[q, q, q, q],
    }
    acc_all = np.r_[ta, legs["a"]]
    trades = pd.DataFrame(
        {
            "trade_id": np.char.add("T", np.arange(len(acc_all)).astype(str)),
            "account_id": np.char.add("A", acc_all.astype(str)),
            "symbol": np.char.add("S", np.r_[ts_, legs["s"]].astype(str)),
            "ts": pd.to_datetime(np.r_[t_ts, legs["t"]], utc=True),
            "side": np.r_[side, legs["side"]],
            "price": np.r_[price, legs["p"]],
            "quantity": np.r_[qty, legs["q"]],
        }
    )
    for col in ("trade_id", "account_id", "symbol", "side"):
        trades[col] = trades[col].astype(str)
    trades = trades.sort_values(["ts", "account_id", "trade_id"], kind="stable")
    planted = pd.DataFrame(
        {
            "victim": np.char.add("A", victim.astype(str)),
            "beneficiary": np.char.add("A", benef.astype(str)),
        }
    )
    return klines, trades.reset_index(drop=True), planted


def _best(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--per-symbol", type=int, default=20, help="accounts per symbol-day")
    ap.add_argument("--mirrored", type=float, default=0.02, help="share of accounts in pairs")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--tick-rel", type=float, default=1e-4, help="tick / price (1e-3: bars a few ticks wide)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from fraudlens.market.pairs import account_evidence, account_pairs, find_pairs

    t0 = time.perf_counter()
    klines, trades, planted = make_book(
        args.accounts, args.per_symbol, args.mirrored, args.seed, args.tick_rel
    )
    gen_s = time.perf_counter() - t0
    n_acc = trades["account_id"].nunique()
    n_tr = len(trades)
    print(
        f"book: {n_acc:,} accounts, {n_tr:,} trades, {klines['symbol'].nunique():,} symbols, "
        f"{len(klines):,} bars, {len(planted):,} planted pairs (generated in {gen_s:.1f} s)"
    )
    figures: dict = {
        "accounts": int(n_acc),
        "trades": int(n_tr),
        "symbols": int(klines["symbol"].nunique()),
        "bars": len(klines),
        "planted_pairs": len(planted),
        "tick_rel": args.tick_rel,
        "cpu_count": os.cpu_count(),
    }
    matches, s_match = _best(lambda: find_pairs(trades), args.repeat)
    pairs, s_pairs = _best(lambda: account_pairs(trades), args.repeat)
    ev, s_ev = _best(lambda: account_evidence(trades, klines), args.repeat)
    for name, secs in (
        ("find_pairs", s_match),
        ("account_pairs", s_pairs),
        ("account_evidence", s_ev),
    ):
        figures[f"{name}_seconds"] = round(secs, 3)
        figures[f"{name}_accounts_per_s"] = round(n_acc / secs)
        figures[f"{name}_trades_per_s"] = round(n_tr / secs)
    cp = ev["counterparty"]
    found_v = (cp.reindex(planted["victim"]).to_numpy() == planted["beneficiary"].to_numpy()).mean()
    found_b = (cp.reindex(planted["beneficiary"]).to_numpy() == planted["victim"].to_numpy()).mean()
    others = ~ev.index.isin(np.r_[planted["victim"], planted["beneficiary"]])
    figures["matches"] = len(matches)
    figures["pair_rows"] = len(pairs)
    figures["planted_victims_linked"] = round(float(found_v), 4)
    figures["planted_beneficiaries_linked"] = round(float(found_b), 4)
    figures["other_accounts_with_counterparty"] = int(cp[others].notna().sum())
    figures["other_accounts"] = int(others.sum())

    print(f"{'step':<18} {'seconds':>8} {'accounts/s':>12} {'trades/s':>12}")
    for name in ("find_pairs", "account_pairs", "account_evidence"):
        print(
            f"{name:<18} {figures[name + '_seconds']:>8.2f} "
            f"{figures[name + '_accounts_per_s']:>12,} {figures[name + '_trades_per_s']:>12,}"
        )
    print(
        f"matches {len(matches):,}; pair rows {len(pairs):,}; planted victims linked "
        f"{found_v:.3f}, beneficiaries linked {found_b:.3f}; other accounts given a "
        f"counterparty: {figures['other_accounts_with_counterparty']:,} of "
        f"{figures['other_accounts']:,}"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
