"""Real-bar check: detectors trained on fraudlens's simulator, judged on real bars.

Run:  python bench/market_real.py --klines /work/ext/klines/*.csv [--accounts 2600]

1. Train (or load with ``--model-dir``) both detectors exactly as the README's defaults
   do: ``fraudlens market simulate --accounts 8000 --seed 7`` (built-in bars), then
   ``fraudlens market train`` with default options.
2. Place accounts on the given real k-lines twice:
   - ``alt``: an independent generator (``bench/_alt_accounts.py``: its own code and
     parametrisation of the same behaviours), the honest generalisation check;
   - ``own``: fraudlens's own simulator on those bars (``simulate(klines=...)``), which
     shows what a firm gets when it trains on its own bars;
   - ``blind`` (only with ``--sets ... blind``): a third generator
     (``bench/_blind_accounts.py``), written without reading either of the others, with
     behaviour neither was tuned for (accounts across midnight, several symbols, 1-3
     trades, partial and split fills, momentum stops in the next bar, ...);
   - ``fourth`` (only with ``--sets ... fourth``): a fourth generator
     (``bench/_fourth_accounts.py``), also written from the behaviour catalogue and the
     data contract alone, with its own parametrisation (in its docstring);
   - ``fifth`` (only with ``--sets ... fifth``): a fifth generator
     (``bench/_fifth_accounts.py``), written from the behaviour catalogue and the data
     contract alone, with realistic rather than textbook values (fills a tick or two
     inside the extremes, thieves' cover trading, beneficiaries with their own trading,
     market makers matched against market-order takers; parameters in its docstring).
3. Report ROC AUC, recall at 1 % false-positive rate, and per kind the share flagged at
   the model's own threshold and at the risk-event threshold 0.9.

Models are chosen and thresholds set on the training data's validation split only;
the real-bar sets are never used to choose anything. The last line printed is a JSON
object with every figure. No third-party data lives in the repository: pass your own
k-lines files (``bench/_real_bars.py`` converts some public formats).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _quality(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    from fraudlens.evaluation import recall_at_fpr

    return {"roc_auc": float(roc_auc_score(y, s)), "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01)}


def _by_kind(kinds: np.ndarray, y: np.ndarray, s: np.ndarray, thr: float) -> pd.DataFrame:
    from fraudlens.scoring import flag

    df = pd.DataFrame({"kind": kinds, "label": y, "score": s})
    df["flag_model"] = flag(s, thr)
    df["flag_09"] = flag(s, 0.9)
    # the score at which 1 % of this set's normal accounts are flagged (for the
    # recall-at-1 %-FPR figure per kind; not an operating point)
    cut = float(np.quantile(s[y == 0], 0.99)) if (y == 0).any() else 1.0
    df["flag_1pct"] = s > cut
    out = df.groupby("kind").agg(
        label=("label", "first"),
        n=("score", "size"),
        flagged_model=("flag_model", "mean"),
        flagged_09=("flag_09", "mean"),
        flagged_at_1pct_fpr=("flag_1pct", "mean"),
        mean_score=("score", "mean"),
    )
    return out.sort_values(["label", "kind"])


def _by_feature(
    data, kinds: np.ndarray, y: np.ndarray, s: np.ndarray, feature: str
) -> pd.DataFrame:
    """Accounts of each kind by the value of one account feature (capped at 5), with the
    share above the risk-event threshold 0.9: ``n (share)`` per cell."""
    from fraudlens.market.features import FEATURE_NAMES, account_features

    if feature not in FEATURE_NAMES:
        raise SystemExit(f"--by: unknown feature {feature!r}; one of {', '.join(FEATURE_NAMES)}")
    f = account_features(data)
    value = np.minimum(np.round(f[feature].to_numpy(np.float64), 2), 5.0)
    df = pd.DataFrame({"kind": kinds, "label": y, "v": value, "hit": s > 0.9})
    g = df.groupby(["label", "kind", "v"])["hit"].agg(["size", "mean"])
    cell = g["size"].astype(str) + " (" + g["mean"].map("{:.3f}".format) + ")"
    return cell.unstack("v", fill_value="")


def _load_klines(paths: list[str]) -> pd.DataFrame:
    from fraudlens.market.data import load_klines

    parts = [load_klines(p) for p in paths]
    k = pd.concat(parts, ignore_index=True)
    return k.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _train(args: argparse.Namespace, model_dir: Path) -> None:
    """The README's defaults, through the CLI itself."""
    from typer.testing import CliRunner

    from fraudlens.cli import app

    runner = CliRunner()
    data = model_dir.parent / "train-data"
    steps = [
        ["market", "simulate", "--out", str(data), "--accounts", str(args.train_accounts),
         "--seed", str(args.train_seed)],
    ]  # fmt: skip
    for det in args.detectors:
        steps.append(
            ["market", "train", "--data", str(data), "--model-dir", str(model_dir),
             "--detector", det]
        )  # fmt: skip
    for cmd in steps:
        t0 = time.perf_counter()
        res = runner.invoke(app, cmd, catch_exceptions=False)
        print(f"$ fraudlens {' '.join(cmd)}  ({time.perf_counter() - t0:.1f} s)")
        print(res.output[-600:])
        if res.exit_code != 0:
            raise SystemExit(res.exit_code)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--klines", nargs="+", required=True, help="k-lines files (CSV/Parquet)")
    ap.add_argument("--accounts", type=int, default=2600)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--train-accounts", type=int, default=8000)
    ap.add_argument("--train-seed", type=int, default=7)
    ap.add_argument("--detectors", nargs="+", default=["features", "cnn"])
    ap.add_argument("--model-dir", type=Path, default=None, help="use models trained already")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fraudlens-real"))
    ap.add_argument(
        "--sets",
        nargs="+",
        default=["alt", "own"],
        choices=["alt", "own", "blind", "fourth", "fifth"],
    )
    ap.add_argument(
        "--by",
        default=None,
        metavar="FEATURE",
        help="also break each kind down by this account feature's value (for example "
        "n_strong_rev, the strong losing round trips the feature detector reads)",
    )
    args = ap.parse_args(argv)

    from _alt_accounts import AltGenerator
    from fraudlens.market.data import MarketData, validate_trades, window
    from fraudlens.market.simulate import simulate
    from fraudlens.registry import Registry

    model_dir = args.model_dir or args.work / "models"
    if args.model_dir is None:
        _train(args, model_dir)
    reg = Registry(model_dir)
    k = _load_klines(args.klines)
    fig: dict = {"klines": sorted(k["symbol"].unique().tolist()), "bars": len(k)}
    sets: dict[str, MarketData] = {}
    if "alt" in args.sets:
        trades, labels = AltGenerator(k, args.seed).run(args.accounts)
        trades = validate_trades(trades, klines=k)
        sets["alt"] = MarketData(k, trades, labels)
    if "own" in args.sets:
        sets["own"] = simulate(args.accounts, seed=args.seed + 1, klines=k)
    if "blind" in args.sets:
        from _blind_accounts import BlindGenerator

        trades, labels = BlindGenerator(k, args.seed + 2).run(args.accounts)
        trades = validate_trades(trades, klines=k)
        sets["blind"] = MarketData(k, trades, labels)
    if "fourth" in args.sets:
        from _fourth_accounts import FourthGenerator

        trades, labels = FourthGenerator(k, args.seed + 3).run(args.accounts)
        trades = validate_trades(trades, klines=k)
        sets["fourth"] = MarketData(k, trades, labels)
    if "fifth" in args.sets:
        from _fifth_accounts import FifthGenerator

        trades, labels = FifthGenerator(k, args.seed + 4).run(args.accounts)
        trades = validate_trades(trades, klines=k)
        sets["fifth"] = MarketData(k, trades, labels)
    pd.set_option("display.width", 200)
    for name, data in sets.items():
        data = window(data)
        y = data.y()
        kinds = data.label_column("kind")
        assert kinds is not None  # every account generator labels every account's kind
        n_sym = data.klines["symbol"].nunique()
        print(
            f"\n== set {name}: {len(y)} accounts, {int(y.sum())} takeover, "
            f"{len(data.trades):,} trades, {n_sym} symbols"
        )
        for det_name in args.detectors:
            det = reg.load(f"market-{det_name}")
            t0 = time.perf_counter()
            s = det.decision_function(data)
            secs = time.perf_counter() - t0
            q = _quality(y, s)
            tab = _by_kind(kinds, y, s, det.threshold_)
            print(f"-- {det_name} ({getattr(det, 'model_version_', det.name)}, threshold "
                  f"{det.threshold_:.3f}): ROC AUC {q['roc_auc']:.4f}, recall at 1 % FPR "
                  f"{q['recall_at_1pct_fpr']:.3f}  ({secs:.1f} s)")  # fmt: skip
            print(tab.round(3).to_string())
            fig[f"{name}/{det_name}"] = {**q, "by_kind": tab.round(4).to_dict(orient="index")}
            if args.by is not None:
                by = _by_feature(data, kinds, y, s, args.by)
                print(f"-- {det_name}, each kind by {args.by}: accounts (share above 0.9)")
                print(by.to_string())
    print(json.dumps(fig, sort_keys=True, default=float))
    return fig


if __name__ == "__main__":
    main()
