"""The handbook protocol as a benchmark: weeks, figures, the handbook's own weeks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.cards.benchmark import (
    HANDBOOK_STARTS,
    PUBLISHED,
    default_starts,
    plot_benchmark,
    run_handbook,
)
from fraudlens.cards.data import time_split, validate_frame
from fraudlens.cards.detectors import LogisticDetector
from fraudlens.cards.evaluate import card_precision_at_k
from fraudlens.cards.simulate import simulate
from fraudlens.errors import DataError


def _table(days: int, origin: str = "2026-04-01") -> object:
    df = simulate(
        300, 600, days, seed=9, compromised_terminals_per_day=1, compromised_customers_per_day=1
    )
    df = df.drop(columns=["scenario", "tx_time_seconds", "tx_time_days"])
    df["ts"] = df["ts"] - df["ts"].min().normalize() + pd.Timestamp(origin, tz="UTC")
    return validate_frame(df, "raw", "<sim>")


def test_weeks_match_the_protocol_by_hand(tmp_path: Path) -> None:
    table = _table(60)
    starts = default_starts(table, weeks=2)
    last = table.time.max().normalize()  # type: ignore[union-attr]
    assert starts == [last - pd.Timedelta(days=27), last - pd.Timedelta(days=20)]
    res = run_handbook(table, LogisticDetector, starts, model="logistic")
    assert [w.train_start for w in res.weeks] == [str(s.date()) for s in starts]
    # Week 2 by hand: the same split, a fresh model, the same figures.
    from sklearn.metrics import average_precision_score, roc_auc_score

    train, test = time_split(table, start=starts[1])
    det = LogisticDetector().fit(
        table.X.iloc[train], table.y[train], time_order=table.time.iloc[train].to_numpy()
    )
    s = det.decision_function(table.X.iloc[test])
    w = res.weeks[1]
    assert (w.train_rows, w.test_rows) == (len(train), len(test))
    assert w.average_precision == pytest.approx(average_precision_score(table.y[test], s))
    assert w.roc_auc == pytest.approx(roc_auc_score(table.y[test], s))
    cp = card_precision_at_k(table.frame.iloc[test], s, 100)["mean"]
    assert w.card_precision_at_100 == pytest.approx(cp)
    assert res.mean["average_precision"] == pytest.approx(
        np.mean([x.average_precision for x in res.weeks])
    )
    # Fewer than 37 days before week 1: its window features are not complete.
    assert any("37 days" in note for note in res.warnings)
    files = plot_benchmark(res, tmp_path, "logistic | sim")
    assert all(f.stat().st_size > 5000 for f in files)
    d = res.to_dict()
    assert d["published"] == PUBLISHED and "curve" not in d["weeks"][0]


def test_the_handbooks_own_weeks_when_the_data_cover_them() -> None:
    table = _table(80, origin="2018-07-01")
    assert [str(s.date()) for s in default_starts(table)] == list(HANDBOOK_STARTS)
    short = _table(30, origin="2018-07-01")
    with pytest.raises(DataError, match=r"single class|21 days"):
        run_handbook(short, LogisticDetector, ["2018-07-25"], model="x")


@pytest.mark.parametrize("k", [100, 50])
def test_card_precision_is_reported_under_its_own_k(tmp_path: Path, k: int) -> None:
    """`cards benchmark --k 50` had stored precision@50 as `card_precision@100` in
    report.json and drawn it beside the handbook's published precision@100."""
    from fraudlens.cards.benchmark import BenchmarkResult, Week

    weeks = [
        Week("2026-04-01", 100, 5, 100, 4, 0.9, 0.6, 0.25, 1.0),
        Week("2026-04-08", 100, 5, 100, 4, 0.8, 0.5, 0.35, 1.0),
    ]
    result = BenchmarkResult(model="m", data="d", weeks=weeks, k=k)
    report = result.to_dict()
    assert report["mean"][f"card_precision@{k}"] == pytest.approx(0.30)
    assert [w[f"card_precision_at_{k}"] for w in report["weeks"]] == [0.25, 0.35]
    if k != 100:
        assert "card_precision@100" not in report["mean"]
        assert all("card_precision_at_100" not in w for w in report["weeks"])
    files = plot_benchmark(result, tmp_path, "m | d")
    assert all(f.stat().st_size > 5000 for f in files)
