"""Metrics in fraudlens.evaluation against hand-computed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudlens.evaluation import binary_metrics, plot_curves, recall_at_fpr, threshold_for


def test_recall_at_fpr_counts_ties_against_the_detector() -> None:
    neg = np.linspace(0.0, 0.99, 100)  # 100 negatives, 1 % FPR lets one through
    pos = np.array([0.985, 0.99, 0.995, 1.0])
    y = np.r_[np.zeros(100), np.ones(4)]
    s = np.r_[neg, pos]
    # The cut sits at the 2nd-highest negative (0.98): positives above it count.
    assert recall_at_fpr(y, s, 0.01) == pytest.approx(1.0)
    s2 = np.r_[neg, np.array([0.5, 0.6, 0.995, 1.0])]
    assert recall_at_fpr(y, s2, 0.01) == pytest.approx(0.5)
    assert recall_at_fpr(y, s2, 0.0) == pytest.approx(0.5)  # must beat the top negative 0.99


def test_threshold_targets() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(1000), np.ones(100)].astype(int)
    s = np.r_[rng.normal(0, 1, 1000), rng.normal(2, 1, 100)]
    t = threshold_for(y, s, target_fpr=0.05)
    assert np.mean(s[y == 0] > t) <= 0.05
    t = threshold_for(y, s, target_recall=0.8)
    assert np.mean(s[y == 1] > t) >= 0.8
    t = threshold_for(y, s)
    m = binary_metrics(y, s, t)
    assert m["per_class"]["fraud"]["f1"] > 0.5


def test_binary_metrics_confusion_and_groups() -> None:
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([0.1, 0.7, 0.8, 0.4, 0.9])
    m = binary_metrics(y, s, 0.5, groups=["a", "a", "b", "b", "c"])
    assert m["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["by_kind"]["b"]["flagged_share"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(5 / 6)


def test_plot_curves_writes_pngs(tmp_path) -> None:
    y = np.array([0, 1] * 20)
    s = np.linspace(0, 1, 40)
    paths = plot_curves(y, s, tmp_path)
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plot_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plots (``roc.png``, ``pr.png``, the sample grids, the sweeps) had Matplotlib write
    in place: a full disk half-way left half a PNG over the last evaluation's and an
    error naming no file. The old picture now stays, the error names the file, no
    temporary file is left and the figure is closed."""
    import errno

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    (tmp_path / "roc.png").write_bytes(b"the old curve")
    real = Figure.savefig

    def full_disk(self: Figure, fname: Any, **kw: Any) -> None:
        fname.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    y = np.array([0, 1, 0, 1, 1, 0])
    with pytest.raises(OSError) as info:
        plot_curves(y, np.linspace(0, 1, 6), tmp_path)
    assert info.value.filename == str(tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes() == b"the old curve"
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]
    assert plt.get_fignums() == []
    monkeypatch.setattr(Figure, "savefig", real)
    paths = plot_curves(y, np.linspace(0, 1, 6), tmp_path)
    assert [p.read_bytes()[:4] for p in paths] == [b"\x89PNG"] * 2
