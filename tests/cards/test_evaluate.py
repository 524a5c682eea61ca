"""Card evaluation report: card precision@k and the report folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cards_data import sim, ulb
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudlens.cards.detectors import LogisticDetector
from fraudlens.cards.evaluate import card_precision_at_k, evaluate_cards
from fraudlens.errors import DataError


def _frame() -> tuple[pd.DataFrame, np.ndarray]:
    rows = [
        # day 1: A fraud, B normal, C fraud (two transactions, one normal), D normal
        ("2026-05-01 09:00", "A", 1, 0.9),
        ("2026-05-01 10:00", "B", 0, 0.8),
        ("2026-05-01 11:00", "C", 1, 0.7),
        ("2026-05-01 12:00", "C", 0, 0.1),
        ("2026-05-01 13:00", "D", 0, 0.2),
        # day 2: A fraud again, C fraud, B normal
        ("2026-05-02 09:00", "A", 1, 0.95),
        ("2026-05-02 10:00", "C", 1, 0.6),
        ("2026-05-02 11:00", "B", 0, 0.5),
    ]
    frame = pd.DataFrame(rows, columns=["ts", "customer_id", "label", "score"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame, frame.pop("score").to_numpy()


def test_card_precision_blocks_cards_found_on_earlier_days() -> None:
    frame, scores = _frame()
    out = card_precision_at_k(frame, scores, k=2)
    # Day 1: top 2 cards are A (fraud) and B -> 1/2. A is then blocked, so day 2 ranks
    # C (fraud) and B -> 1/2.
    assert [d["precision"] for d in out["per_day"]] == [0.5, 0.5]
    assert [d["day"] for d in out["per_day"]] == ["2026-05-01", "2026-05-02"]
    assert [d["compromised_cards"] for d in out["per_day"]] == [2, 1]
    assert out["mean"] == 0.5


def test_card_precision_can_keep_known_cards() -> None:
    frame, scores = _frame()
    out = card_precision_at_k(frame, scores, k=2, remove_detected=False)
    assert [d["precision"] for d in out["per_day"]] == [0.5, 1.0]
    assert out["mean"] == 0.75


def test_card_precision_uses_each_cards_best_score_of_the_day() -> None:
    frame, scores = _frame()
    # C's normal transaction gets the top score of day 1; the card is compromised that
    # day, so it counts as a hit.
    scores = scores.copy()
    scores[3] = 0.99
    out = card_precision_at_k(frame, scores, k=1)
    assert out["per_day"][0]["precision"] == 1.0


def test_card_precision_checks_its_input() -> None:
    frame, scores = _frame()
    with pytest.raises(DataError, match="needs this column") as err:
        card_precision_at_k(frame.drop(columns=["customer_id"]), scores, 2)
    assert err.value.column == "customer_id"
    with pytest.raises(DataError, match="expected 8 scores"):
        card_precision_at_k(frame, scores[:-1], 2)


@pytest.mark.slow
def test_report_on_simulated_transactions(tmp_path: Path) -> None:
    table, train, test = sim()
    det = LogisticDetector().fit(table.X.iloc[train], table.y[train])
    report = evaluate_cards(det, table, test, tmp_path / "rep", k=50, title="sim")
    files = ["report.json", "roc.png", "pr.png", "threshold_sweep.png", "confusion.png"]
    for name in files:
        assert (tmp_path / "rep" / name).stat().st_size > 1000
    for name in files[1:]:
        with Image.open(tmp_path / "rep" / name) as img:
            assert img.width > 300 and img.height > 300
            # Not a blank canvas: plots hold many distinct colours.
            assert len(img.convert("RGB").getcolors(1 << 20) or []) > 20
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    m = saved["metrics"]
    score = det.decision_function(table.X.iloc[test])
    y = table.y[test]
    assert m["n"] == len(test) and m["positives"] == int(y.sum())
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score))
    assert m["average_precision"] == pytest.approx(average_precision_score(y, score))
    assert m["roc_auc"] > 0.8
    cp = card_precision_at_k(table.frame.iloc[test], score, 50)
    assert m["card_precision@50"] == pytest.approx(cp["mean"])
    assert len(m["card_precision_at_k"]["per_day"]) == 7
    assert 0.0 < m["card_precision@50"] <= 1.0
    cm = m["confusion_matrix"]
    assert sum(cm.values()) == len(test)
    assert saved["model"]["threshold"] == det.threshold_
    assert report["metrics"]["roc_auc"] == m["roc_auc"]


@pytest.mark.slow
def test_report_on_real_ulb_has_no_card_precision(tmp_path: Path) -> None:
    table, train, test = ulb()
    det = LogisticDetector().fit(table.X.iloc[train], table.y[train])
    report = evaluate_cards(det, table, test, tmp_path)
    assert not any(k.startswith("card_precision") for k in report["metrics"])
    assert report["metrics"]["roc_auc"] > 0.88
    assert report["data"]["rows"] == len(test)


def test_report_needs_labels_of_both_classes(tmp_path: Path) -> None:
    table, train, _ = sim()
    det = LogisticDetector(threshold_strategy=None).fit(table.X.iloc[train], table.y[train])
    normal = train[table.y[train] == 0][:100]
    with pytest.raises(DataError, match="only label 0"):
        evaluate_cards(det, table, normal, tmp_path)
    unlabelled = table.subset(train[:100])
    unlabelled.y = None
    with pytest.raises(DataError, match="needs labels"):
        evaluate_cards(det, unlabelled, None, tmp_path)


def test_single_feature_auc_matches_scikit_learn_in_either_direction() -> None:
    """The leak check's per-column AUC (ranks, 64 columns at a time, rows thinned past
    ``max_rows`` with every fraud kept) against scikit-learn's, folded to >= 0.5."""
    from fraudlens.cards.evaluate import single_feature_auc

    rng = np.random.default_rng(0)
    n = 3_000
    y = (rng.random(n) < 0.1).astype(int)
    X = pd.DataFrame(rng.normal(size=(n, 70)), columns=[f"c{i}" for i in range(70)])
    X["c5"] += 2.0 * y
    X["c69"] = np.round(-y + rng.random(n) * 0.1, 1)  # ties, and the label reversed
    got = single_feature_auc(X, y)
    for col in ("c0", "c5", "c69"):
        auc = roc_auc_score(y, X[col])
        assert got[col] == pytest.approx(max(auc, 1 - auc), abs=1e-12)
    assert got["c69"] == pytest.approx(1.0)
    thinned = single_feature_auc(X, y, max_rows=1_000)
    assert thinned["c69"] == pytest.approx(1.0) and 0.5 <= thinned["c0"] < 0.6
    assert single_feature_auc(X, np.zeros(n, dtype=int)) == {}
