"""The market evaluation's plots with hostile kinds in the labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraudlens.market import evaluate


def test_by_kind_plot_cuts_long_kinds_and_keeps_each_on_its_own_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Kinds are the labels file's text: 200 kinds of 100,000 characters held the
    layout of by_kind.png for minutes (`market evaluate` past a 120 s limit), and the
    names are now cut; two kinds cut alike keep a bar each."""
    import matplotlib.pyplot as plt

    shown: dict[str, Any] = {}

    def keep(fig: Any, out: Path) -> Path:
        shown["fig"], shown["ax"] = fig, fig.axes[0]
        return out

    monkeypatch.setattr(evaluate, "save_figure", keep)
    by_kind = {
        "a" * 2000 + "1": {"flagged_share": 0.25, "label": 1},
        "a" * 2000 + "2": {"flagged_share": 0.75, "label": 0},
        "normal_casual": {"flagged_share": 0.0, "label": 0},
    }
    evaluate.plot_by_kind(by_kind, tmp_path / "by_kind.png")
    # (save_figure closes the figure; this stand-in leaves it to the test, which must,
    # or a later test that counts open figures finds this one)
    request.addfinalizer(lambda: plt.close(shown["fig"]))
    ax = shown["ax"]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 3 and labels[2] == "normal_casual"
    assert all(len(text) <= 40 for text in labels), [len(t) for t in labels]
    rows = sorted(round(p.get_y() + p.get_height() / 2, 6) for p in ax.patches)
    assert rows == [0.0, 1.0, 2.0]
    assert sorted(round(p.get_width(), 6) for p in ax.patches) == [0.0, 0.25, 0.75]
