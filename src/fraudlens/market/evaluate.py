"""The market evaluation report: metrics, curves, a per-kind breakdown and the errors.

:func:`evaluate_market` scores labelled accounts and writes ``report.json`` (metrics
overall and per ``kind``), ``scores.csv``, ``roc.png``, ``pr.png``, ``by_kind.png`` and
``samples.png``: a grid of the accounts the model got wrong at its threshold (false
positives, then false negatives, each tile with its kind, account, symbol, time window
and score) beside a few it got right, with a colour key. Every plot's title names the
model, its version and the data it was evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlens._echo import cut
from fraudlens._io import write_csv
from fraudlens.evaluation import binary_metrics, plot_curves, save_figure, write_json
from fraudlens.market.data import MarketData, window

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = ["error_samples", "evaluate_market", "plot_by_kind", "sample_grid"]

#: Characters of a kind shown in a plot or table (the report and scores.csv keep it whole).
KIND_CHARS = 40

# Accounts per scoring call: bounds the CNN's image memory on large test sets.
_CHUNK = 4096

#: What the colours of the ``"fraudlens"`` image mean (the grid's key).
COLOUR_KEY: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("buy, leg of an equal-size round trip", (1.0, 0.0, 0.0)),
    ("buy, other", (150 / 255, 0.0, 0.0)),
    ("sell, leg of an equal-size round trip", (0.0, 1.0, 0.0)),
    ("sell, other", (0.0, 150 / 255, 0.0)),
    ("bar (top: price; bottom: range of a day-wide bar)", (0.0, 0.0, 1.0)),
    ("bar of a quiet or few-tick bar (bottom panel)", (0.0, 0.0, 0.25)),
)


def error_samples(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    per_row: int = 8,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Positions of accounts to show: errors first, at the given threshold.

    Returns ``{"false positive", "false negative", "true positive", "true negative"}``
    -> positions (into ``y``): the false positives with the highest scores, the false
    negatives with the lowest, and a random few of each correct class (fewer when the
    errors fill the rows).
    """
    from fraudlens.scoring import flag

    y = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    flagged = flag(s, threshold)
    fp = np.flatnonzero(flagged & (y == 0))
    fn = np.flatnonzero(~flagged & (y == 1))
    rng = np.random.default_rng(seed)
    out = {
        "false positive": fp[np.argsort(-s[fp], kind="stable")][:per_row],
        "false negative": fn[np.argsort(s[fn], kind="stable")][:per_row],
    }
    for name, mask in (
        ("true positive", flagged & (y == 1)),
        ("true negative", ~flagged & (y == 0)),
    ):
        pool = np.flatnonzero(mask)
        k = min(len(pool), max(2, per_row // 2))
        out[name] = np.sort(rng.choice(pool, k, replace=False)) if k else pool
    return out


def _window_text(trades: pd.DataFrame) -> dict[str, str]:
    """Per account: its symbols and its trades' time span (UTC), for tile titles."""
    if len(trades) == 0:
        return {}
    g = trades.groupby("account_id", sort=False)
    first = g["ts"].min()
    last = g["ts"].max()
    syms = g["symbol"].agg(
        lambda s: ",".join(sorted(set(map(str, s)))[:2]) + ("+" if s.nunique() > 2 else "")
    )
    out = {}
    for acct in first.index:
        a, b = first[acct], last[acct]
        span = f"{a:%m-%d %H:%M}" + (f"-{b:%H:%M}" if a.date() == b.date() else f"-{b:%m-%d %H:%M}")
        out[str(acct)] = f"{syms[acct]} {span}"
    return out


def sample_grid(
    data: MarketData,
    out: Path,
    *,
    scores: pd.Series | None = None,
    threshold: float = 0.5,
    per_class: int = 8,
    seed: int = 0,
    style: str = "fraudlens",
    title: str = "",
) -> Path:
    """Write a PNG grid of rendered accounts, the model's errors first.

    With ``scores`` (indexed by account id): one row each of false positives (normal
    accounts scored above ``threshold``, highest first), false negatives (takeovers at
    or below it, lowest first), and a few true positives and true negatives; a row with
    no account says so. Without scores: one row of takeovers and one of normal accounts,
    one per ``kind`` first. Each tile shows the account's kind, id, symbols, time window
    (UTC) and score; a colour key explains the image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from fraudlens.market.render import render_batch

    rng = np.random.default_rng(seed)
    ids = data.account_ids
    y = data.y()
    kinds = data.label_column("kind")
    rows: list[tuple[str, list[str]]] = []
    if scores is not None:
        s = scores.reindex(ids).to_numpy(dtype=np.float64)
        picks = error_samples(y, s, threshold, per_row=per_class, seed=seed)
        for name in ("false positive", "false negative", "true positive", "true negative"):
            rows.append((name, [str(a) for a in ids[picks[name]]]))
    else:
        for label, name in ((1, "takeover"), (0, "normal")):
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
            rows.append((name, chosen[: max(per_class, len(chosen))]))
    ncols = max(1, max(len(r) for _, r in rows))
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(2.3 * ncols, 1.75 * len(rows) + 1.2), dpi=110, squeeze=False
    )
    kind_of = dict(zip(ids, kinds, strict=True)) if kinds is not None else {}
    where = _window_text(data.trades)
    score_of = scores if scores is not None else pd.Series(dtype=float)
    for r, (name, chosen) in enumerate(rows):
        images = render_batch(data, chosen, style=style) if chosen else np.zeros((0, 1, 1, 3))
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c == 0:
                ax.text(
                    -0.04, 0.5, f"{name}\n({len(chosen)} shown)" if chosen else f"{name}\n(none)",
                    transform=ax.transAxes, ha="right", va="center", fontsize=7, rotation=90,
                )  # fmt: skip
            if c >= len(chosen):
                continue
            acct = chosen[c]
            ax.imshow(images[c], interpolation="nearest", aspect="auto")
            kind = str(kind_of.get(acct, name)).replace("takeover_", "T:").replace("normal_", "N:")
            kind = cut(kind, KIND_CHARS)
            line = f"{kind} {acct[-6:]}\n{where.get(acct, '')}"
            if scores is not None:
                line += f"\nscore {float(score_of.get(acct, float('nan'))):.3f}"
            ax.set_title(line, fontsize=5.5)
    handles = [Patch(color=col, label=lab) for lab, col in COLOUR_KEY]
    if style == "fraudlens-gap":
        gap_key = (
            "bars of a round trip across two bars (bottom): as bright as a bar as wide as its gap"
        )
        handles.append(Patch(color=(0.0, 0.0, 1.0), label=gap_key))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=6, frameon=False)
    head = f"errors at threshold {threshold:.3f}" if scores is not None else "samples"
    fig.suptitle(f"{title}: {head}".strip(": "), fontsize=8)
    fig.tight_layout(rect=(0.02, 0.08, 1.0, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out)


def plot_by_kind(by_kind: dict[str, Any], out: Path, title: str = "") -> Path:
    """Bar chart of the share flagged per simulated kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(by_kind)
    share = [by_kind[k]["flagged_share"] for k in names]
    colors = ["tab:red" if by_kind[k]["label"] == 1 else "tab:blue" for k in names]
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(names) + 1.4), dpi=110)
    # Each kind on its own row, its name cut: kinds of 100,000 characters had held the
    # layout for minutes (and two names cut alike must not share a bar).
    ax.barh(range(len(names)), share, color=colors)
    ax.set_yticks(range(len(names)), labels=[cut(str(k), KIND_CHARS) for k in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share flagged (red: takeover kinds, blue: normal kinds)")
    if title:
        ax.set_title(title, fontsize=8)
    for i, s in enumerate(share):
        ax.text(min(s + 0.01, 0.9), i, f"{s:.3f}", va="center", fontsize=7)
    ax.invert_yaxis()
    fig.tight_layout()
    return save_figure(fig, out)


def evaluate_market(
    detector: Detector,
    data: MarketData,
    out_dir: Path,
    *,
    window_hours: float | None = 24.0,
    threshold: float | None = None,
    progress: Callable[[int], None] | None = None,
    samples: bool = True,
    data_name: str = "",
) -> dict[str, Any]:
    """Score labelled accounts and write the report into ``out_dir``.

    Files: ``report.json`` (all metrics, per ``kind`` when the labels have one),
    ``scores.csv``, ``roc.png``, ``pr.png``, ``by_kind.png`` (when labels have ``kind``),
    ``samples.png`` (the errors at the threshold). ``data_name`` (e.g. the data
    folder) goes into every plot's title beside the model's name and version. Returns
    the report dict.
    """
    from fraudlens.scoring import score_market

    out_dir.mkdir(parents=True, exist_ok=True)
    if window_hours is not None:
        data = window(data, window_hours)
    result = score_market(detector, data, threshold=threshold, chunk_size=_CHUNK, progress=progress)
    scores = result.frame()
    y = data.y()
    kinds = data.label_column("kind")
    thr = result.threshold
    groups = None if kinds is None else kinds.tolist()
    report = binary_metrics(y, result.scores, thr, groups=groups)
    model = str(result.model)
    report["model"] = model
    report["model_threshold"] = result.model_threshold
    report["data"] = data_name
    title = f"{model} on {data_name}" if data_name else model
    files = {"scores": "scores.csv"}
    frame = scores.assign(label=y)
    if kinds is not None:
        frame["kind"] = kinds
    write_csv(frame, out_dir / "scores.csv")
    for p in plot_curves(y, scores["score"].to_numpy(), out_dir, title=title):
        files[p.stem] = p.name
    if "by_kind" in report:
        files["by_kind"] = plot_by_kind(
            report["by_kind"], out_dir / "by_kind.png", title=f"{title}, threshold {thr:.3f}"
        ).name
    if samples:
        s = scores.set_index("account_id")["score"]
        style = str(getattr(detector, "style", "fraudlens"))
        files["samples"] = sample_grid(
            data, out_dir / "samples.png", scores=s, threshold=thr, title=title, style=style
        ).name
    report["files"] = files
    write_json(report, out_dir / "report.json")
    return report
