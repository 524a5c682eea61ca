"""Candidates weighed against the default XGBoost on validation data only, not adopted:
seed bagging, ``max_delta_step``, monotone constraints, the validation tail and smoothing
that choose the rounds, a pairwise rank objective, more rounds for the refit.

- ``bag K``: the mean log-odds of K default models that differ only in their seed (row
  and column subsampling, 0.8 each); each member chooses its own rounds. The same as one
  booster holding every member's trees with their leaves divided by K, so it scores at
  the cost of all members' trees together.
- ``max_delta_step 1``: XGBoost's cap on each leaf's step, suggested for imbalance.
- ``monotone``: scores may only rise with the amount, the terminal's known-fraud risk
  (1, 7 and 30 days), its known frauds over 30 days and the amount over the customer's
  own means and baseline (raw transactions only: ULB's table has none of these names).
- ``smoothing 100``: the validation curve that chooses the rounds (its average
  precision every 10 rounds, already the metric instead of log loss) averaged over 100
  rounds instead of 50.
- ``validation 0.2`` and ``0.4``: the latest 20 % or 40 % of the training rows choose
  the rounds instead of 30 % (the model is then refitted on every row either way).
- ``rank:pairwise``: a pairwise ranking objective, one group (scores are margins; only
  their order is measured here).
- ``refit rounds x1.43``: the refit on every row keeps 1 / 0.7 times the rounds chosen
  on validation (it sees that many times the rows they were chosen with) instead of the
  same number.

Data: the handbook's 8 prequential weeks training from 2018-05-16 to 07-04 (every test
week ends by 2018-07-24; never its test weeks from 2018-07-25), figures over all 8 and
over the last 4 (from 06-13); ULB's first day, hours 16-24 held out and the expanding
2-hour blocks from hour 8 pooled. Every candidate is fitted with each seed; a bag of K
uses seeds ``(K i, ..., K i + K - 1)`` for its i-th replicate and is compared with the
single models of the same seeds. A paired bootstrap (rows of each test week resampled,
the same rows for both) gives the spread of the mean AP difference.

What it gave (AP over the 4 weeks from 06-13 / the 8 from 05-16; paired bootstrap of the
gain, s.d.; ULB AP hours 16-24 / expanding): the default (seeds 0-5) 0.7656 / 0.7652,
ULB 0.8255 / 0.8436; bag 2 +0.0007 (0.0001) / +0.0006 (0.0001), ULB 0.8253 / 0.8454;
bag 3 +0.0009 (0.0001) / +0.0009 (0.0001), ULB 0.8254 / 0.8460; card precision@100 flat
(0.3043 / 0.3106 against 0.3043 / 0.3103). A bag scores at the cost of all its trees:
on the last validation week's model 1.94 million transactions/s alone (150 trees), 1.15
million with 2 (240), 1.00 million with 3 (290), two threads at load 1.6-3, against the
1 million target. Monotone +0.0000 (0.0005) / +0.0008 (0.0004); max_delta_step 1 -0.0014
(0.0007) / -0.0011 (0.0006); smoothing 100 -0.0001 (0.0003) / -0.0002 (0.0001);
validation 0.4 +0.0005 (0.0002) / +0.0005 (0.0002) but ULB expanding 0.8421 against
0.8449 (seeds 0-2); validation 0.2 -0.0003 (0.0004) / +0.0002 (0.0003); rank:pairwise
AP 0.48 / 0.45, card precision 0.26 / 0.24 (seeds 0-1 only, 4-7 minutes a seed). The
default, bag, monotone and speed figures are this script's (``--candidates bag,mono``);
the others are the same fits from its first draft, with other bootstrap resamples.
Refit rounds x1.43 (``--candidates rscale --seeds 3 --cand-seeds 3 --speed-rows 0``):
+0.0002 (0.0003) / -0.0007 (0.0003), card precision 0.3046 / 0.3108, ULB 0.8244 /
0.8453 against the default's 0.8246 / 0.8449 (seeds 0-2): no gain.

Run: python bench/_cards_bagging.py --handbook simulated-data-raw/data --trust-pickle
     [--ulb ulb_creditcard_day1.csv]
     [--candidates bag,mds,mono,smooth,val2,val4,pairwise,rscale]
     [--seeds 6] [--bootstrap 100] [--speed-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudlens.cards.detectors import XGBoostDetector

STARTS = tuple(
    str(d.date()) for d in pd.date_range("2018-05-16", "2018-07-04", freq="7D")
)  # 8 validation weeks; the last 4 are bench/cards.py's VALID_STARTS
ULB_DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/ulb_creditcard_day1.csv"

MONOTONE_UP = (
    "tx_amount",
    "terminal_id_risk_1day_window",
    "terminal_id_risk_7day_window",
    "terminal_id_risk_30day_window",
    "terminal_id_nb_fraud_30day_window",
    "customer_id_amount_to_avg_1day_window",
    "customer_id_amount_to_avg_7day_window",
    "customer_id_amount_to_avg_30day_window",
    "customer_id_amount_to_baseline_30day_window",
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Variant(XGBoostDetector):
    """The default XGBoost with extra booster parameters or monotone constraints."""

    def __init__(
        self,
        *,
        extra: dict[str, Any] | None = None,
        monotone: tuple[str, ...] = (),
        refit_scale: float = 1.0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.extra = dict(extra or {})
        self.monotone = monotone
        self.refit_scale = refit_scale

    def _prepare_refit(self) -> None:
        super()._prepare_refit()
        self._refit_rounds = max(1, round(self._refit_rounds * self.refit_scale))

    def _params(self, pos_weight: float, n_rows: int) -> dict[str, Any]:
        params = super()._params(pos_weight, n_rows)
        params.update(self.extra)
        if self.monotone:
            up = set(self.monotone)
            signs = ",".join("1" if n in up else "0" for n in self.model_feature_names_)
            params["monotone_constraints"] = f"({signs})"
        return params


CANDIDATES: dict[str, dict[str, Any]] = {
    "max_delta_step 1": {"extra": {"max_delta_step": 1.0}},
    "monotone": {"monotone": MONOTONE_UP},
    "smoothing 100": {"early_stopping_rounds": 100},
    "validation 0.2": {"validation_fraction": 0.2},
    "validation 0.4": {"validation_fraction": 0.4},
    "rank:pairwise": {"extra": {"objective": "rank:pairwise"}},
    # The refit sees 1 / (1 - 0.3) times the rows the rounds were chosen with.
    "refit rounds x1.43": {"refit_scale": 1 / 0.7},
}
SHORT = {
    "mds": "max_delta_step 1",
    "mono": "monotone",
    "smooth": "smoothing 100",
    "val2": "validation 0.2",
    "val4": "validation 0.4",
    "pairwise": "rank:pairwise",
    "rscale": "refit rounds x1.43",
}


def merged_booster(boosters: list[Any]) -> Any:
    """One booster scoring the mean margin of ``boosters`` (same data, same base score):
    every member's trees, leaf values divided by their number."""
    import xgboost as xgb

    k = len(boosters)
    docs = [json.loads(b.save_raw("json")) for b in boosters]
    trees = []
    for doc in docs:
        for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
            leaf = [c == -1 for c in tree["left_children"]]
            tree["split_conditions"] = [
                v / k if is_leaf else v
                for v, is_leaf in zip(tree["split_conditions"], leaf, strict=True)
            ]
            tree["base_weights"] = [v / k for v in tree["base_weights"]]
            tree["id"] = len(trees)
            trees.append(tree)
    out = docs[0]
    model = out["learner"]["gradient_booster"]["model"]
    model["trees"] = trees
    model["tree_info"] = [0] * len(trees)
    model["iteration_indptr"] = list(range(len(trees) + 1))
    model["gbtree_model_param"]["num_trees"] = str(len(trees))
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(out).encode()))
    return booster


def _margins(det: XGBoostDetector, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(
        det.booster_.inplace_predict(det._matrix(X), predict_type="margin"), dtype=np.float64
    )


def _fit_scores(
    make: Any, X: pd.DataFrame, y: np.ndarray, splits: list[tuple[str, Any, Any, Any]]
) -> dict[str, np.ndarray]:
    out = {}
    for name, train, test, order in splits:
        det = make().fit(X.iloc[train], y[train], time_order=order)
        out[name] = _margins(det, X.iloc[test])
    return out


def _bags(by_seed: dict[int, dict[str, np.ndarray]], k: int) -> list[dict[str, np.ndarray]]:
    seeds = sorted(by_seed)
    reps = [seeds[i : i + k] for i in range(0, len(seeds) - k + 1, k)]
    return [
        {s: np.mean([by_seed[m][s] for m in rep], axis=0) for s in by_seed[rep[0]]} for rep in reps
    ]


def _handbook_figures(
    hb: Any, tests: dict[str, np.ndarray], scores: dict[str, np.ndarray], weeks: tuple[str, ...]
) -> np.ndarray:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fraudlens.cards.evaluate import card_precision_at_k

    figs = []
    for w in weeks:
        y, s = hb.y[tests[w]], scores[w]
        cp = card_precision_at_k(hb.frame.iloc[tests[w]], s, 100, label="label")["mean"]
        figs.append([roc_auc_score(y, s), average_precision_score(y, s), float(cp)])
    return np.mean(figs, axis=0)


def ap_gain_bootstrap(
    y_by_week: dict[str, np.ndarray],
    a: list[dict[str, np.ndarray]],
    b: list[dict[str, np.ndarray]],
    weeks: tuple[str, ...],
    n: int,
) -> np.ndarray:
    """Paired bootstrap of the mean-over-weeks AP gain ``mean(b) - mean(a)``: each week's
    rows resampled (the same rows for every model), ``a`` and ``b`` lists of scores by
    week (one entry a seed or a bag). Also used by ``_cards_outliers.py``."""
    from sklearn.metrics import average_precision_score as ap

    rng = np.random.default_rng(12345)
    diffs = np.zeros(n)
    for w in weeks:
        y = y_by_week[w]
        for i in range(n):
            idx = rng.integers(0, len(y), len(y))
            gain = np.mean([ap(y[idx], s[w][idx]) for s in b]) - np.mean(
                [ap(y[idx], s[w][idx]) for s in a]
            )
            diffs[i] += gain / len(weeks)
    return diffs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    from fraudlens.cards.data import load_table, time_split

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--handbook", type=Path, required=True)
    ap.add_argument("--trust-pickle", action="store_true")
    ap.add_argument("--ulb", type=Path, default=ULB_DEFAULT)
    ap.add_argument("--candidates", default="bag,mds,mono,smooth,val2,val4,pairwise")
    ap.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 of the default")
    ap.add_argument("--cand-seeds", type=int, default=3, help="seeds of the other candidates")
    ap.add_argument("--bags", default="2,3")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--speed-rows", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    wanted = args.candidates.split(",")
    bag_sizes = [int(k) for k in args.bags.split(",")] if "bag" in wanted else []
    cands = {SHORT[c]: CANDIDATES[SHORT[c]] for c in wanted if c in SHORT}

    hb = load_table(args.handbook, kind="raw", require_label=True, trust_pickle=args.trust_pickle)
    assert hb.y is not None and hb.time is not None
    splits = []
    for start in STARTS:
        train, test = time_split(hb, start=start)
        train, test = train[np.isin(train, hb.labelled)], test[np.isin(test, hb.labelled)]
        splits.append((start, train, test, hb.time.iloc[train].to_numpy()))
    tests = {s[0]: s[2] for s in splits}
    y_week = {w: hb.y[t] for w, t in tests.items()}

    ulb = load_table(args.ulb, require_label=True) if args.ulb.is_file() else None
    u_splits: list[tuple[str, Any, Any, Any]] = []
    if ulb is not None:
        assert ulb.y is not None
        hours = ulb.X["Time"].to_numpy() / 3600.0
        u_splits = [("held", np.flatnonzero(hours < 16), np.flatnonzero(hours >= 16), None)]
        u_splits += [
            (
                f"block {h}",
                np.flatnonzero(hours < h),
                np.flatnonzero((hours >= h) & (hours < h + 2)),
                None,
            )
            for h in range(8, 24, 2)
        ]

    def fit_all(name: str, kw: dict[str, Any], seeds: int) -> tuple[dict[int, Any], dict[int, Any]]:
        hbs, ulbs = {}, {}
        for seed in range(seeds):
            t0 = time.perf_counter()
            hbs[seed] = _fit_scores(
                lambda seed=seed: _Variant(time_of_day=None, random_state=seed, n_jobs=1, **kw),
                hb.X,
                hb.y,
                splits,
            )
            if ulb is not None and not kw.get("monotone"):
                ulbs[seed] = _fit_scores(
                    lambda seed=seed: _Variant(
                        time_of_day="Time", random_state=seed, n_jobs=1, **kw
                    ),
                    ulb.X,
                    ulb.y,
                    u_splits,
                )
            log(f"  {name} seed {seed}: {time.perf_counter() - t0:.0f} s")
        return hbs, ulbs

    results: dict[
        str, tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], list[int]]
    ] = {}
    base_hb, base_ulb = fit_all("default", {}, args.seeds)
    results["default"] = (list(base_hb.values()), list(base_ulb.values()), list(base_hb))
    for k in bag_sizes:
        if args.seeds >= k:
            n_rep = args.seeds // k
            results[f"bag {k}"] = (
                _bags(base_hb, k),
                _bags(base_ulb, k) if base_ulb else [],
                list(range(n_rep * k)),
            )
    for name, kw in cands.items():
        c_hb, c_ulb = fit_all(name, kw, args.cand_seeds)
        results[name] = (list(c_hb.values()), list(c_ulb.values()), list(c_hb))

    out: dict[str, Any] = {}
    print(
        "| candidate | seeds | AP 4 weeks | AP 8 weeks | card P@100 4 / 8 "
        "| AP gain 4 / 8 (bootstrap s.d.) | ULB AP 16-24 h / expanding |"
    )
    for name, (h, u, seeds) in results.items():
        f4 = np.mean([_handbook_figures(hb, tests, s, STARTS[4:]) for s in h], axis=0)
        f8 = np.mean([_handbook_figures(hb, tests, s, STARTS) for s in h], axis=0)
        row: dict[str, Any] = {"seeds": seeds, "4_weeks": f4.tolist(), "8_weeks": f8.tolist()}
        gains = ""
        if name != "default":
            same = [base_hb[s] for s in seeds]
            b4 = ap_gain_bootstrap(y_week, same, h, STARTS[4:], args.bootstrap)
            b8 = ap_gain_bootstrap(y_week, same, h, STARTS, args.bootstrap)
            row["ap_gain"] = {"4_weeks": [b4.mean(), b4.std()], "8_weeks": [b8.mean(), b8.std()]}
            gains = f"{b4.mean():+.4f} ({b4.std():.4f}) / {b8.mean():+.4f} ({b8.std():.4f})"
        ulb_txt = "n/a"
        if u and ulb is not None:
            assert ulb.y is not None
            held = np.mean([average_precision_score(ulb.y[u_splits[0][2]], s["held"]) for s in u])
            y_exp = np.concatenate([ulb.y[t] for _, _, t, _ in u_splits[1:]])
            exp = np.mean(
                [
                    average_precision_score(
                        y_exp, np.concatenate([s[n] for n, _, _, _ in u_splits[1:]])
                    )
                    for s in u
                ]
            )
            row["ulb"] = {"held_ap": held, "expanding_ap": exp}
            ulb_txt = f"{held:.4f} / {exp:.4f}"
        out[name] = row
        print(
            f"| {name} | {seeds[0]}-{seeds[-1]} | {f4[1]:.4f} | {f8[1]:.4f} | "
            f"{f4[2]:.4f} / {f8[2]:.4f} | {gains} | {ulb_txt} |",
            flush=True,
        )
    if bag_sizes and args.speed_rows:
        out["speed"] = _speed(hb, splits, max(bag_sizes), args.speed_rows)
    return out


def _speed(hb: Any, splits: list[Any], k: int, rows: int) -> dict[str, float]:
    """Batch scoring of one default model and of merged bags (two threads)."""
    _, train, _, order = splits[-1]
    dets = [
        XGBoostDetector(time_of_day=None, random_state=s).fit(
            hb.X.iloc[train], hb.y[train], time_order=order
        )
        for s in range(k)
    ]
    big = np.tile(hb.X.iloc[train].to_numpy(np.float64), (-(-rows // len(train)), 1))[:rows]
    out = {}
    for n in range(1, k + 1):
        booster = dets[0].booster_ if n == 1 else merged_booster([d.booster_ for d in dets[:n]])
        booster.set_param({"nthread": 2})
        best = min(_timed(booster, big) for _ in range(3))
        out[f"bag {n}"] = rows / best
        trees = booster.num_boosted_rounds()
        log(f"  scoring, {n} model(s), {trees} trees: {rows / best:,.0f} tx/s")
    return out


def _timed(booster: Any, X: np.ndarray) -> float:
    t0 = time.perf_counter()
    booster.inplace_predict(X)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
