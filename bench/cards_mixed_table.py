"""Text columns and blanks in a card feature table: what reading them is worth.

A feature table of the user's own (CSV or Parquet, a label column) is scored by pooled
stratified k-fold cross-validation, twice per model:

- as fraudlens reads it: text columns encoded, blank numbers as the training median
  plus a blank indicator (``fraudlens.cards._categories``);
- as such a table had to be given before: text columns dropped, blank numbers filled
  with the column's median.

Nothing is chosen here: both arms use the models' defaults. Nothing ships data: the
table is one the user fetched.

Run:  python bench/cards_mixed_table.py --data TABLE.csv [--folds 5] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from fraudlens.cards.data import load_table
from fraudlens.cards.detectors import LogisticDetector, XGBoostDetector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="A feature table with a label.")
    ap.add_argument("--label", default=None, help="Label column (default: as cards train).")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()

    table = load_table(args.data, kind="features", label=args.label, require_label=True)
    assert table.y is not None
    X, y = table.X, table.y
    numeric = [c for c in X.columns if c not in table.text]
    before = X[numeric].fillna(X[numeric].median())
    blanks = [c for c in numeric if X[c].isna().any()]
    print(
        f"{args.data.name}: {len(X):,} rows, {int(y.sum()):,} frauds; text columns: "
        f"{', '.join(table.text) or 'none'}; numeric columns with blanks: "
        f"{', '.join(blanks) or 'none'}; set aside: {', '.join(table.set_aside) or 'none'}"
    )
    print(f"pooled {args.folds}-fold cross-validation, seeds {args.seeds}\n")
    print(f"{'model':<10} {'table as':<34} {'AP (per seed)':<28} ROC AUC")
    for name, cls in (("xgboost", XGBoostDetector), ("logistic", LogisticDetector)):
        for arm, data in (
            ("read (text encoded, blanks kept)", X),
            ("before (text dropped, median)", before),
        ):
            aps, aucs = [], []
            for seed in args.seeds:
                pooled = np.zeros(len(y))
                folds = StratifiedKFold(args.folds, shuffle=True, random_state=seed)
                for train, test in folds.split(data, y):
                    det = cls().fit(data.iloc[train], y[train])
                    pooled[test] = det.decision_function(data.iloc[test])
                aps.append(average_precision_score(y, pooled))
                aucs.append(roc_auc_score(y, pooled))
            each = "/".join(f"{v:.4f}" for v in aps)
            print(f"{name:<10} {arm:<34} {np.mean(aps):.4f} ({each}){'':<4} {np.mean(aucs):.4f}")


if __name__ == "__main__":
    main()
