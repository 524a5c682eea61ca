"""Explanations of card scores: contributions add up to the model's log-odds; reasons."""

from __future__ import annotations

import numpy as np
import pytest
from _cards_data import sim, ulb

from fraudlens.cards.detectors import AnomalyDetector, LogisticDetector, XGBoostDetector
from fraudlens.cards.explain import contributions, explain, supports
from fraudlens.errors import ConfigError


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_xgboost_contributions_add_up_to_the_margin() -> None:
    table, train, test = sim()
    assert table.y is not None
    det = XGBoostDetector(n_estimators=80, n_jobs=1).fit(table.X.iloc[train], table.y[train])
    X = table.X.iloc[test[:500]]
    c = contributions(det, X)
    assert c.matrix.shape == (500, len(det.feature_names_)) and c.names == det.feature_names_
    import xgboost as xgb

    margin = det.booster_.predict(xgb.DMatrix(X.to_numpy(np.float64)), output_margin=True)
    np.testing.assert_allclose(c.matrix.sum(axis=1) + c.bias, margin, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        _logit(np.clip(det.decision_function(X), 1e-12, 1 - 1e-12)), margin, atol=1e-4
    )


def test_logistic_contributions_are_coefficient_times_standardised_value() -> None:
    table, train, test = sim()
    assert table.y is not None
    det = LogisticDetector().fit(table.X.iloc[train], table.y[train])
    X = table.X.iloc[test[:300]]
    c = contributions(det, X)
    x = X.to_numpy(np.float64)
    np.testing.assert_allclose(c.matrix, (x - det.mean_) / det.scale_ * det.coef_)
    # Compared as probabilities: near 0 or 1 the logit of a float64 probability amplifies
    # its last bit (a log-odds of 27 is only known to about 1e-4 from p).
    np.testing.assert_allclose(
        1.0 / (1.0 + np.exp(-(c.matrix.sum(axis=1) + c.bias))),
        det.decision_function(X),
        rtol=1e-9,
        atol=1e-15,
    )


def test_reasons_are_the_largest_positive_contributions() -> None:
    table, train, test = sim()
    assert table.y is not None
    det = XGBoostDetector(n_estimators=80, n_jobs=1).fit(table.X.iloc[train], table.y[train])
    X = table.X.iloc[test[:200]]
    c = contributions(det, X)
    rows = np.array([3, 10, 150])
    reasons = explain(det, X, rows=rows, top=3)
    assert len(reasons) == 200
    assert all(reasons[i] == [] for i in range(200) if i not in set(rows.tolist()))
    for r in rows:
        got = reasons[r]
        order = np.argsort(-c.matrix[r], kind="stable")
        want = [c.names[j] for j in order[:3] if c.matrix[r, j] > 0]
        assert [g["feature"] for g in got] == want
        assert all(g["contribution"] > 0 for g in got)
        for g in got:
            j = c.names.index(g["feature"])
            assert g["value"] == pytest.approx(float(X.iloc[r, j]))
    # The frauds a model flags are explained by something it learned.
    scores = det.decision_function(X)
    top = int(np.argmax(scores))
    assert explain(det, X, rows=[top], top=1)[top][0]["contribution"] > 1.0


def test_time_of_day_is_named_as_the_model_reads_it() -> None:
    table, train, test = ulb()
    assert table.y is not None
    det = XGBoostDetector(n_estimators=40, n_jobs=1, time_of_day="Time")
    det.fit(table.X.iloc[train], table.y[train])
    c = contributions(det, table.X.iloc[test[:50]])
    assert c.names[0] == "Time (hour of day)"
    assert (c.values[:, 0] >= 16).all() and (c.values[:, 0] < 24).all()


def test_the_anomaly_model_has_no_explanation() -> None:
    table, train, _ = sim()
    det = AnomalyDetector(n_estimators=10).fit(table.X.iloc[train])
    assert not supports(det)
    with pytest.raises(ConfigError, match="no per-feature explanation"):
        explain(det, table.X.iloc[:5])
