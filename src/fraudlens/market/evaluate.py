"""The market evaluation report: metrics, curves, per-kind breakdown and sample images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlens.evaluation import binary_metrics, plot_curves, write_json
from fraudlens.market.data import MarketData, window

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = ["evaluate_market", "plot_by_kind", "sample_grid"]

# Accounts per scoring call: bounds the CNN's image memory on large test sets.
_CHUNK = 4096


def sample_grid(
    data: MarketData,
    out: Path,
    *,
    per_class: int = 8,
    seed: int = 0,
    style: str = "fraudlens",
    scores: pd.Series | None = None,
) -> Path:
    """Write a PNG grid of rendered accounts: one row of ``per_class`` per class.

    With ``kind`` labels, one sample per kind is drawn first so every kind is seen.
    Each tile is titled with its kind and, when ``scores`` is given, its score.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fraudlens.market.render import render_batch

    rng = np.random.default_rng(seed)
    ids = data.account_ids
    y = data.y()
    kinds = data.label_column("kind")
    rows: list[list[str]] = []
    for label in (1, 0):
        pool = ids[y == label]
        chosen: list[str] = []
        if kinds is not None:
            k_pool = kinds[y == label]
            for k in sorted(set(k_pool.tolist()), key=str):
                chosen.append(str(rng.choice(pool[k_pool == k])))
        rest = np.setdiff1d(pool, chosen)
        extra = max(per_class - len(chosen), 0)
        if extra and len(rest):
            chosen += rng.choice(rest, size=min(extra, len(rest)), replace=False).tolist()
        rows.append(chosen[: max(per_class, len(chosen))])
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(2, ncols, figsize=(2.2 * ncols, 3.2), dpi=110, squeeze=False)
    kind_of = dict(zip(ids, kinds, strict=True)) if kinds is not None else {}
    for r, (name, chosen) in enumerate(zip(("takeover", "normal"), rows, strict=True)):
        images = render_batch(data, chosen, style=style) if chosen else np.zeros((0, 1, 1, 3))
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(chosen):
                continue
            ax.imshow(images[c], interpolation="nearest", aspect="auto")
            title = (
                str(kind_of.get(chosen[c], name))
                .replace("takeover_", "T:")
                .replace("normal_", "N:")
            )
            if scores is not None:
                title += f"\n{scores.get(chosen[c], float('nan')):.3f}"
            ax.set_title(title, fontsize=7)
    fig.suptitle("sample accounts: top row takeover, bottom row normal", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_by_kind(by_kind: dict[str, Any], out: Path) -> Path:
    """Bar chart of the share flagged per simulated kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(by_kind)
    share = [by_kind[k]["flagged_share"] for k in names]
    colors = ["tab:red" if by_kind[k]["label"] == 1 else "tab:blue" for k in names]
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(names) + 1.2), dpi=110)
    ax.barh(names, share, color=colors)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share flagged (red: takeover kinds, blue: normal kinds)")
    for i, s in enumerate(share):
        ax.text(min(s + 0.01, 0.9), i, f"{s:.3f}", va="center", fontsize=7)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def evaluate_market(
    detector: Detector,
    data: MarketData,
    out_dir: Path,
    *,
    window_hours: float | None = 24.0,
    threshold: float | None = None,
    progress: Callable[[int], None] | None = None,
    samples: bool = True,
) -> dict[str, Any]:
    """Score labelled accounts and write the report into ``out_dir``.

    Files: ``report.json`` (all metrics), ``scores.csv``, ``roc.png``, ``pr.png``,
    ``by_kind.png`` (when labels have ``kind``), ``samples.png`` (rendered accounts).
    Returns the report dict.
    """
    from fraudlens.scoring import score_market

    out_dir.mkdir(parents=True, exist_ok=True)
    if window_hours is not None:
        data = window(data, window_hours)
    result = score_market(detector, data, threshold=threshold, chunk_size=_CHUNK, progress=progress)
    scores = result.frame()
    y = data.y()
    kinds = data.label_column("kind")
    groups = None if kinds is None else kinds.tolist()
    report = binary_metrics(y, result.scores, result.threshold, groups=groups)
    report["model"] = result.model
    report["model_threshold"] = result.model_threshold
    files = {"scores": "scores.csv"}
    frame = scores.assign(label=y)
    if kinds is not None:
        frame["kind"] = kinds
    frame.to_csv(out_dir / "scores.csv", index=False)
    for p in plot_curves(y, scores["score"].to_numpy(), out_dir, title=report["model"]):
        files[p.stem] = p.name
    if "by_kind" in report:
        files["by_kind"] = plot_by_kind(report["by_kind"], out_dir / "by_kind.png").name
    if samples:
        s = scores.set_index("account_id")["score"]
        files["samples"] = sample_grid(data, out_dir / "samples.png", scores=s).name
    report["files"] = files
    write_json(report, out_dir / "report.json")
    return report
