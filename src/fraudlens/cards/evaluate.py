"""Evaluation report for card detectors: metrics, card precision@k and plots.

:func:`evaluate_cards` scores a labelled :class:`~fraudlens.cards.data.CardTable` (or a
part of it, e.g. the test rows of a time split) and writes a report folder::

    report.json          every metric (see below), the model and the data it saw
    roc.png, pr.png      ROC and precision-recall curves
    threshold_sweep.png  precision, recall, F1 and FPR for thresholds 0.01 .. 0.99 (a
                         logit scale: as fine near 0.01 and 0.99 as near 0.5) and the
                         model's own threshold
    confusion.png        the confusion matrix at the model's threshold

Plot titles name the model (``name:version``) and the data (file and rows).

Metrics come from :func:`fraudlens.evaluation.binary_metrics` (ROC AUC, average
precision, balanced accuracy, Cohen's kappa, recall at 1 % FPR, confusion matrix,
per-class precision / recall / F1, threshold sweep). For raw transactions, which name
the customer (card) of each transaction, the report adds the Fraud Detection Handbook's
**card precision@k** (:func:`card_precision_at_k`).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlens.errors import DataError
from fraudlens.evaluation import save_figure

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.cards.data import CardTable

__all__ = [
    "LEAK_AUC",
    "SWEEP_THRESHOLDS",
    "card_precision_at_k",
    "evaluate_cards",
    "single_feature_auc",
    "sweep_thresholds",
]

#: A feature that alone ranks held-out rows this well (ROC AUC, or 1 - AUC) is more
#: likely the label, or something known only after the fraud, than a signal.
LEAK_AUC = 0.995

#: Thresholds of the sweep, symmetric on the logit scale between 0.01 and 0.99.
SWEEP_THRESHOLDS: tuple[float, ...] = (
    0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
)  # fmt: skip


def sweep_thresholds(threshold: float | None = None) -> list[float]:
    """:data:`SWEEP_THRESHOLDS` plus the model's own ``threshold`` (if in (0, 1)), sorted."""
    out = set(SWEEP_THRESHOLDS)
    if threshold is not None and 0.0 < threshold < 1.0:
        out.add(round(float(threshold), 6))
    return sorted(out)


def single_feature_auc(
    X: pd.DataFrame, y: np.ndarray, *, max_rows: int = 200_000
) -> dict[str, float]:
    """ROC AUC of each column of ``X`` alone on labels ``y``, as ``max(AUC, 1 - AUC)``.

    How well one feature ranks the rows by itself, in either direction (ties counted
    half). A leak check: a column at :data:`LEAK_AUC` or above usually is the label in
    another form. Past ``max_rows`` rows every k-th row is read (every fraud kept).

    Returns
    -------
    dict
        Column name -> AUC in [0.5, 1]; empty when ``y`` holds one class.
    """
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    if len(X) > max_rows:
        keep = np.zeros(len(X), dtype=bool)
        keep[:: -(-len(X) // max_rows)] = True
        keep |= y
        X, y = X.iloc[np.flatnonzero(keep)], y[keep]
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0 or X.shape[1] == 0:
        return {}
    out: dict[str, float] = {}
    # 64 columns at a time: a wide table's ranks stay a few tens of MB.
    for lo in range(0, X.shape[1], 64):
        part = X.iloc[:, lo : lo + 64]
        ranks = rankdata(part.to_numpy(dtype=np.float64), axis=0)
        auc = (ranks[y].sum(axis=0) - n1 * (n1 + 1) / 2.0) / (n1 * n0)
        out.update((str(c), float(max(a, 1.0 - a))) for c, a in zip(part.columns, auc, strict=True))
    return out


def _days(ts: pd.Series) -> np.ndarray:
    """Calendar day of each timestamp (UTC), or ``seconds // 86400`` for numbers."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(ts.dtype):
        return ts.to_numpy().astype("datetime64[D]")
    return np.floor(pd.to_numeric(ts).to_numpy(dtype=np.float64) / 86_400.0)


def card_precision_at_k(
    frame: pd.DataFrame,
    scores: np.ndarray,
    k: int = 100,
    *,
    label: str = "label",
    remove_detected: bool = True,
) -> dict[str, Any]:
    """Card precision@k per day (Fraud Detection Handbook definition) and its mean.

    An investigator can check ``k`` cards a day. For each day, each customer (card) gets
    the highest score of its transactions that day; the ``k`` customers with the highest
    scores are checked; the day's card precision@k is the share of those ``k`` that had
    at least one fraudulent transaction that day. The result is averaged over days.

    Parameters
    ----------
    frame
        One row per transaction with ``ts`` (timestamps, or seconds), ``customer_id`` and
        the label column.
    scores
        One score per row of ``frame``; higher means more suspicious.
    k
        Cards checked per day.
    label
        Name of the 0/1 label column.
    remove_detected
        As in the handbook, a card found compromised (a fraudulent card among a day's
        top ``k``) is blocked, so its transactions on later days are left out of the
        ranking. With ``False`` such cards stay in and can be counted again. Cards whose
        fraud was known before the evaluated period are not removed here; drop them when
        splitting (see :func:`fraudlens.cards.data.time_split`).

    Returns
    -------
    dict
        ``{"k", "mean", "per_day": [{"day", "precision", "compromised_cards",
        "cards"}, ...]}``; ``mean`` is NaN when there are no days.

    Raises
    ------
    DataError
        When a column is missing or ``scores`` has the wrong length.
    """
    for col in ("ts", "customer_id", label):
        if col not in frame.columns:
            raise DataError("card precision@k needs this column", column=col)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(frame),):
        raise DataError(f"expected {len(frame)} scores, got shape {scores.shape}")
    if k < 1:
        raise ValueError("k must be at least 1")
    per_tx = pd.DataFrame(
        {
            "day": _days(frame["ts"]),
            "customer": frame["customer_id"].to_numpy(),
            "score": scores,
            "fraud": frame[label].to_numpy(dtype=np.int64),
        }
    )
    per_card = per_tx.groupby(["day", "customer"], sort=True).max().reset_index()
    blocked: set[Any] = set()
    rows = []
    for day, cards in per_card.groupby("day", sort=True):
        if remove_detected and blocked:
            cards = cards[~cards["customer"].isin(blocked)]
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.loc[top["fraud"] == 1, "customer"]
        if remove_detected:
            blocked.update(found.tolist())
        rows.append(
            {
                "day": int(day) if isinstance(day, float) else str(pd.Timestamp(day).date()),
                "precision": len(found) / k,
                "compromised_cards": int(cards["fraud"].sum()),
                "cards": len(cards),
            }
        )
    mean = float(np.mean([r["precision"] for r in rows])) if rows else float("nan")
    return {"k": int(k), "mean": mean, "per_day": rows}


def _wrap(title: str, width: int = 40) -> str:
    """A plot title broken into lines that fit the figure."""
    import textwrap

    return "\n".join(
        textwrap.fill(part, width, break_long_words=False) for part in title.split("\n")
    )


def _plot_sweep(sweep: list[dict[str, float]], threshold: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(5.6, 4.0), dpi=110)
    for key, style in (("precision", "-"), ("recall", "-"), ("f1", "--"), ("fpr", ":")):
        ax.plot(t, [r[key] for r in sweep], style, marker="o", ms=3, label=key)
    if 0.0 < threshold < 1.0:
        ax.axvline(threshold, c="grey", lw=0.8, label=f"model threshold {threshold:.3f}")
    if all(0.0 < x < 1.0 for x in t):
        ax.set_xscale("logit")
        ax.set_xticks([0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99])
        ax.set_xticklabels(["0.01", "0.05", "0.1", "0.3", "0.5", "0.7", "0.9", "0.95", "0.99"])
        ax.minorticks_off()
    ax.set(
        xlabel="threshold (logit scale)",
        ylabel="value",
        ylim=(-0.02, 1.02),
    )
    ax.set_title(f"Threshold sweep\n{title}".strip(), fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_confusion(cm: dict[str, int], threshold: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    # Row-normalised shading: the fraud row would be invisible on a shared scale.
    share = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{grid[i, j]:,}\n({share[i, j]:.1%})",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks([0, 1], ["normal", "fraud"])
    ax.set_yticks([0, 1], ["normal", "fraud"])
    ax.set(xlabel="predicted", ylabel="actual")
    ax.set_title(f"Confusion at {threshold:.3f}\n{title}".strip(), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def evaluate_cards(
    detector: Detector,
    table: CardTable,
    idx: np.ndarray | None = None,
    out_dir: str | PathLike[str] = "cards-report",
    *,
    k: int = 100,
    title: str = "",
    extra: dict[str, Any] | None = None,
    scores: np.ndarray | None = None,
    model_label: str | None = None,
) -> dict[str, Any]:
    """Score labelled rows, compute the card metrics and write the report folder.

    Parameters
    ----------
    detector
        A fitted card detector.
    table
        A labelled card table.
    idx
        Row positions to evaluate (e.g. the test part of a split); all rows by default.
        Rows whose label is blank (unknown) are left out.
    out_dir
        Folder for ``report.json``, ``roc.png``, ``pr.png``, ``threshold_sweep.png`` and
        ``confusion.png`` (created if needed).
    k
        Cards per day for card precision@k (raw transactions only).
    title
        Shown in the plot titles.
    extra
        Added to ``report.json`` as is (e.g. the split used).
    scores
        Scores of the rows at ``idx`` (in that order) computed beforehand, e.g. by the
        validation model before it was refitted; the detector then only lends its name
        and threshold.
    model_label
        ``name:version`` shown in the report (the detector's own by default).

    Returns
    -------
    dict
        The report: ``model``, ``data``, ``metrics`` (with ``card_precision_at_k`` for
        raw transactions) and ``files``.

    Raises
    ------
    DataError
        When the rows have no labels or only one class.
    """
    from fraudlens.evaluation import binary_metrics, plot_curves, threshold_sweep, write_json

    if table.y is None:
        raise DataError("evaluation needs labels; the table has no label column", file=table.source)
    rows = np.arange(len(table)) if idx is None else np.asarray(idx, dtype=np.int64)
    keep = np.ones(len(rows), dtype=bool) if table.known is None else table.known[rows]
    if scores is not None and len(scores) != len(rows):
        raise DataError(f"expected {len(rows)} scores, got {len(scores)}")
    part = table.subset(rows[keep])
    if len(part) == 0:
        raise DataError("no rows with a known label to evaluate", file=table.source)
    assert part.y is not None
    y = part.y.astype(np.int8)
    if y.min() == y.max():
        raise DataError(
            f"the evaluated rows hold only label {int(y[0])}; need both frauds and normal rows",
            file=table.source,
        )
    if scores is None:
        scores = np.asarray(detector.decision_function(part.X), dtype=np.float64)
    else:
        scores = np.asarray(scores, dtype=np.float64)[keep]
    threshold = float(detector.threshold_)
    metrics = binary_metrics(y, scores, threshold)
    metrics["threshold_sweep"] = threshold_sweep(y, scores, sweep_thresholds(threshold))
    frame = part.frame
    if {"ts", "customer_id"} <= set(frame.columns):
        label_col = part.label_column or "label"
        cp = card_precision_at_k(frame, scores, k, label=label_col)
        metrics["card_precision_at_k"] = cp
        metrics[f"card_precision@{k}"] = cp["mean"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = _wrap(title)
    # On a line of its own below the plot name ("ROC", "Precision-recall").
    plot_curves(y, scores, out, title="\n" + title)
    _plot_sweep(metrics["threshold_sweep"], threshold, out / "threshold_sweep.png", title)
    _plot_confusion(metrics["confusion_matrix"], threshold, out / "confusion.png", title)
    period = None
    if part.time is not None and len(part.time):
        period = {"start": str(part.time.min()), "end": str(part.time.max())}
    report: dict[str, Any] = {
        "model": {
            "name": detector.name,
            "version": model_label or getattr(detector, "model_version_", None),
            "threshold": threshold,
        },
        "data": {
            "source": table.source,
            "kind": table.kind,
            "rows": len(part),
            "frauds": int(y.sum()),
            "unknown_labels_left_out": int((~keep).sum()),
            "period": period,
        },
        "metrics": metrics,
        **(extra or {}),
    }
    files = {
        name: str(out / name)
        for name in ("report.json", "roc.png", "pr.png", "threshold_sweep.png", "confusion.png")
    }
    report["files"] = files
    write_json(report, out / "report.json")
    return report
