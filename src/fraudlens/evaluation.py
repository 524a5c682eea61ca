"""Binary-classification metrics and plots shared by market and cards reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fraudlens._io import atomic_write, write_binary
from fraudlens.scoring import flag

__all__ = [
    "binary_metrics",
    "plot_curves",
    "recall_at_fpr",
    "threshold_for",
    "threshold_sweep",
    "write_json",
]


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float = 0.01) -> float:
    """Highest recall reachable with a false-positive rate at or below ``fpr``.

    The threshold is set strictly above the ``ceil``-th highest negative score, so ties
    between negatives and positives count against the detector.
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    neg = np.sort(score[~y])[::-1]
    pos = score[y]
    if len(pos) == 0:
        return float("nan")
    if len(neg) == 0:
        return 1.0
    allowed = int(np.floor(fpr * len(neg)))  # negatives we may let through
    cut = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(pos > cut))


def threshold_for(
    y: np.ndarray,
    score: np.ndarray,
    *,
    target_recall: float | None = None,
    target_fpr: float | None = None,
) -> float:
    """Choose a decision threshold: for a target recall, a target FPR, or the best F1.

    With no target the threshold maximises F1. Scores strictly above the threshold are
    flagged.
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    if target_fpr is not None:
        neg = np.sort(score[~y])[::-1]
        allowed = int(np.floor(target_fpr * len(neg)))
        return float(neg[allowed]) if allowed < len(neg) else float(np.min(score) - 1e-12)
    if target_recall is not None:
        pos = np.sort(score[y])
        k = int(np.floor((1.0 - target_recall) * len(pos)))
        k = min(max(k, 0), len(pos) - 1)
        return float(np.nextafter(pos[k], -np.inf))
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y, score)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thr) else 0
    return float(np.nextafter(thr[best], -np.inf)) if len(thr) else 0.5


def threshold_sweep(
    y: np.ndarray, score: np.ndarray, thresholds: Sequence[float] | None = None
) -> list[dict[str, float]]:
    """Precision, recall, F1 and FPR at each threshold (default 0.1 .. 0.9)."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    rows = []
    for t in thresholds if thresholds is not None else np.round(np.arange(0.1, 1.0, 0.1), 2):
        pred = flag(score, t)
        tp = int(np.sum(pred & y))
        fp = int(np.sum(pred & ~y))
        fn = int(np.sum(~pred & y))
        tn = int(np.sum(~pred & ~y))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        rows.append(
            {
                "threshold": float(t),
                "precision": p,
                "recall": r,
                "f1": 2 * p * r / (p + r) if p + r else 0.0,
                "fpr": fp / (fp + tn) if fp + tn else 0.0,
                "flagged": tp + fp,
            }
        )
    return rows


def binary_metrics(
    y: np.ndarray,
    score: np.ndarray,
    threshold: float,
    *,
    groups: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The standard report for one scored, labelled set.

    Returns ROC AUC, average precision, accuracy, balanced accuracy, Cohen's kappa,
    recall at 1 % FPR, the confusion matrix at ``threshold``, per-class precision /
    recall / F1, a threshold sweep and, when ``groups`` (e.g. the simulator's ``kind``)
    is given, the share flagged per group.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(y).astype(np.int8)
    score = np.asarray(score, dtype=np.float64)
    pred = flag(score, threshold).astype(np.int8)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=[0, 1], zero_division=0
    )
    out: dict[str, Any] = {
        "n": len(y),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, score)) if both else float("nan"),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else float("nan"),
        "cohen_kappa": float(cohen_kappa_score(y, pred)),
        "recall_at_1pct_fpr": recall_at_fpr(y, score, 0.01),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "per_class": {
            name: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(("normal", "fraud"))
        },
        "threshold_sweep": threshold_sweep(y, score),
    }
    if groups is not None:
        g = np.array(groups, dtype=object)  # (a copy: blanks are renamed below)
        # A missing kind (a labels file with a blank cell) is a group of its own: NaN is
        # equal to nothing, so its rows had made an empty group and a NaN mean (a
        # ValueError traceback from `market evaluate`).
        blank = np.fromiter((v is None or v != v for v in g), dtype=bool, count=len(g))
        g[blank] = "(none)"
        by: dict[str, Any] = {}
        for kind in sorted(set(g.tolist()), key=str):
            m = g == kind
            by[str(kind)] = {
                "n": int(m.sum()),
                "label": round(float(y[m].mean())),
                "flagged_share": float(pred[m].mean()),
                "mean_score": float(score[m].mean()),
            }
        out["by_kind"] = by
    return out


def save_figure(fig: Any, path: Path) -> Path:
    """Write a Matplotlib figure to ``path`` (format from its suffix, PNG by default),
    whole or not at all, and close the figure; return ``path``.

    The picture is written beside ``path`` and renamed over it (:func:`write_binary`): a
    crash or a full disk leaves the old picture, and an OSError names ``path`` (a full
    disk's error from the image writer names no file).
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        write_binary(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path


def plot_curves(y: np.ndarray, score: np.ndarray, out_dir: Path, title: str = "") -> list[Path]:
    """Write ``roc.png`` and ``pr.png`` into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y).astype(np.int8)
    paths = []
    fpr, tpr, _ = roc_curve(y, score)
    fig, ax = plt.subplots(figsize=(4.5, 4.0), dpi=110)
    ax.plot(fpr, tpr, lw=1.8, label=f"AUC {roc_auc_score(y, score):.4f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.axvline(0.01, c="tab:red", lw=0.8, ls=":", label="1% FPR")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC {title}".strip())
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / "roc.png"))
    prec, rec, _ = precision_recall_curve(y, score)
    fig, ax = plt.subplots(figsize=(4.5, 4.0), dpi=110)
    ax.plot(rec, prec, lw=1.8, label=f"AP {average_precision_score(y, score):.4f}")
    ax.axhline(y.mean(), ls="--", c="grey", lw=0.8, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall {title}".strip())
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / "pr.png"))
    return paths


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented JSON (NaN becomes null) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not np.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    atomic_write(path, json.dumps(clean(obj), indent=2))
    return path
