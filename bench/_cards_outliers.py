"""Candidate weighed on the handbook's validation weeks, not adopted: the customer's
recent-outlier evidence (no labels needed).

A card stolen in the handbook's simulator has, for 14 days, a third of its transactions
at 5 times their amount; a genuine customer's large amount is usually alone. For each
transaction at time ``t``, over the customer's EARLIER transactions (time order, input
order among same-time rows; the current row left out), with each earlier row ``j``'s
ratio ``amount_j / base_j`` to its own baseline (the customer's mean amount over
``(t_j - B0, t_j - B1]``; ratio 0 without one) and "outlier" meaning a ratio over ``k``:

- ``customer_id_nb_prev_outlier_{w}day_window``: outliers in ``(t - w, t]``, w = 1, 7, 14;
- ``customer_id_share_prev_outlier_7day_window``: their share of the earlier rows of
  ``(t - 7, t]`` (0 without any);
- ``customer_id_max_prev_ratio_7day_window``: the largest ratio of those rows (0 without);
- ``customer_id_days_since_prev_outlier``: days since the latest earlier outlier, capped
  at 30.

Sums are exact (as in :mod:`fraudlens.cards.features`), so a row's values do not depend
on where the file starts once it has ``B0 + 14`` days of history (``B0 + 30`` for the
days since the latest outlier): 58 and 74 days with the default baseline ``(t - 44,
t - 14]``, which no compromise of 14 days that includes ``t_j`` can have inflated.

Each week's default XGBoost is fitted on the 33 default features with and without these
6, for each seed, on the validation weeks only (training from 2018-06-13 to 07-04 by
default; never the test weeks from 2018-07-25); a paired bootstrap (rows of each test
week resampled, the same rows for both, the mean over the weeks and seeds) gives the
spread of the AP difference.

Run: python bench/_cards_outliers.py --handbook simulated-data-raw/data --trust-pickle
     [--k 3 --base 44,14 --seeds 0,1,2 --starts 2018-06-13,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudlens.cards.features import (
    _NS_PER_DAY,
    _ExactSums,
    _GroupedTimes,
    _TimeRanks,
    _timestamps,
)

VALID_STARTS = ("2018-06-13", "2018-06-20", "2018-06-27", "2018-07-04")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _range_max(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(v[lo:hi])`` per query (0 where ``hi <= lo``), with a sparse table."""
    n = len(v)
    length = hi - lo
    top = int(length.max()) if n else 0
    levels = [v]
    while (1 << len(levels)) <= top:
        prev, half = levels[-1], 1 << (len(levels) - 1)
        nxt = prev.copy()
        nxt[: n - half] = np.maximum(prev[: n - half], prev[half:])
        levels.append(nxt)
    out = np.zeros(n)
    ok = length > 0
    ln = length[ok]
    lv = np.zeros(len(ln), dtype=np.int64)
    for k in range(1, len(levels)):
        lv += (ln >= (1 << k)).astype(np.int64)
    table = np.stack(levels)
    out[ok] = np.maximum(table[lv, lo[ok]], table[lv, hi[ok] - (1 << lv)])
    return out


def recent_outlier_features(
    frame: pd.DataFrame,
    k: float = 3.0,
    base: tuple[float, float] = (44.0, 14.0),
    windows: tuple[float, ...] = (1.0, 7.0, 14.0),
) -> pd.DataFrame:
    """The 6 candidate columns (module docstring), aligned to ``frame``'s rows."""
    t, _ = _timestamps(frame["ts"])
    amount = pd.to_numeric(frame["amount"]).to_numpy(np.float64)
    n = len(amount)
    ranks = _TimeRanks(t)
    cg = _GroupedTimes(pd.factorize(frame["customer_id"])[0].astype(np.int64), ranks)
    pos = np.arange(n, dtype=np.int64)
    a = amount[cg.order]
    top = float(np.max(np.abs(a))) if n else 0.0
    scale = float(np.ldexp(1.0, int(np.frexp(top)[1]))) if top > 0 else 1.0
    sums = _ExactSums(a / scale)

    def first_after(days: float) -> np.ndarray:
        return cg.first_at(ranks.rank(np.int64(round(days * _NS_PER_DAY)), strict=True))

    blo, bhi = first_after(base[0]), first_after(base[1])
    nb = bhi - blo
    mean = np.divide(sums.between(blo, bhi), nb, out=np.zeros(n), where=nb > 0) * scale
    ratio = np.divide(a, mean, out=np.zeros(n), where=mean > 0)
    large = ratio > k
    clarge = np.r_[0, np.cumsum(large)]
    out: dict[str, np.ndarray] = {}
    for w in windows:
        lo = first_after(w)
        nl = (clarge[pos] - clarge[lo]).astype(np.float64)
        out[f"customer_id_nb_prev_outlier_{w:g}day_window"] = nl
        if w == 7:
            cnt = pos - lo
            out["customer_id_share_prev_outlier_7day_window"] = np.divide(
                nl, cnt, out=np.zeros(n), where=cnt > 0
            )
            out["customer_id_max_prev_ratio_7day_window"] = _range_max(ratio, lo, pos)
    last = np.maximum.accumulate(np.where(large, pos, -1))
    prev_last = np.r_[-1, last[:-1]]
    ts = t[cg.order]
    since = (ts - ts[np.maximum(prev_last, 0)]) / _NS_PER_DAY
    out["customer_id_days_since_prev_outlier"] = np.where(
        prev_last >= cg.group_start, np.minimum(since, 30.0), 30.0
    )
    return pd.DataFrame(
        {c: cg.scatter(v).astype(np.float32) for c, v in out.items()}, index=frame.index
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from _cards_bagging import ap_gain_bootstrap  # type: ignore[import-not-found]
    from fraudlens.cards.data import load_table, time_split
    from fraudlens.cards.detectors import XGBoostDetector
    from fraudlens.cards.evaluate import card_precision_at_k

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--handbook", type=Path, required=True, help="the handbook's raw data")
    ap.add_argument("--trust-pickle", action="store_true")
    ap.add_argument("--k", type=float, default=3.0)
    ap.add_argument("--base", default="44,14", help="baseline window: days back B0,B1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--starts", default=",".join(VALID_STARTS))
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args(argv)
    starts = args.starts.split(",")
    if any(s >= "2018-07-25" for s in starts):
        ap.error("validation weeks only: training must start before 2018-07-25")
    seeds = [int(s) for s in args.seeds.split(",")]
    b0, b1 = (float(x) for x in args.base.split(","))

    hb = load_table(args.handbook, kind="raw", require_label=True, trust_pickle=args.trust_pickle)
    assert hb.y is not None and hb.time is not None
    t0 = time.perf_counter()
    extra = recent_outlier_features(hb.frame, k=args.k, base=(b0, b1)).reset_index(drop=True)
    log(f"{len(hb):,} rows: candidate features in {time.perf_counter() - t0:.1f} s")
    X = pd.concat([hb.X, extra], axis=1)
    sets = {"default": list(hb.X.columns), "with outliers": list(X.columns)}
    figs: dict[str, dict[int, list[list[float]]]] = {v: {s: [] for s in seeds} for v in sets}
    tests: list[tuple[np.ndarray, dict[str, dict[int, np.ndarray]]]] = []
    for start in starts:
        train, test = time_split(hb, start=start)
        order = hb.time.iloc[train].to_numpy()
        y_te = hb.y[test]
        scores: dict[str, dict[int, np.ndarray]] = {v: {} for v in sets}
        for seed in seeds:
            for v, cols in sets.items():
                det = XGBoostDetector(time_of_day=None, random_state=seed)
                det.fit(X.iloc[train][cols], hb.y[train], time_order=order)
                s = np.asarray(det.decision_function(X.iloc[test][cols]), dtype=np.float64)
                cp = card_precision_at_k(hb.frame.iloc[test], s, 100, label="label")
                f = [roc_auc_score(y_te, s), average_precision_score(y_te, s), cp["mean"]]
                figs[v][seed].append([float(x) for x in f])
                scores[v][seed] = s
                log(f"  {start} seed {seed} {v}: AUC {f[0]:.4f} AP {f[1]:.4f} CP {f[2]:.4f}")
        tests.append((y_te, scores))
    print(f"| features | seed | ROC AUC | AP | card P@100 |  (mean of {len(starts)} weeks)")
    for v in sets:
        for seed in seeds:
            m = np.mean(figs[v][seed], axis=0)
            print(f"| {v} | {seed} | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.4f} |")
        m = np.mean([np.mean(figs[v][s], axis=0) for s in seeds], axis=0)
        print(f"| {v} | mean | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.4f} |")
    weeks = tuple(starts)
    y_week = {w: y for w, (y, _) in zip(weeks, tests, strict=True)}

    def by_seed(variant: str) -> list[dict[str, np.ndarray]]:
        return [{w: sc[variant][s] for w, (_, sc) in zip(weeks, tests, strict=True)} for s in seeds]

    diffs = ap_gain_bootstrap(
        y_week, by_seed("default"), by_seed("with outliers"), weeks, args.bootstrap
    )
    print(
        f"paired bootstrap of the AP difference ({args.bootstrap} resamples): mean "
        f"{diffs.mean():+.4f}, s.d. {diffs.std():.4f}, share <= 0 {(diffs <= 0).mean():.2f}"
    )
    return {"figures": figs, "bootstrap": diffs.tolist()}


if __name__ == "__main__":
    main()
