"""Card detectors: quality floors on real and simulated data, persistence, thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cards_data import sim, ulb
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudlens.cards._iforest import FlatForest
from fraudlens.cards.data import validate_frame
from fraudlens.cards.detectors import (
    AnomalyDetector,
    LogisticDetector,
    XGBoostDetector,
    parse_threshold_strategy,
)
from fraudlens.errors import ConfigError, DataError
from fraudlens.registry import Registry


def _fit_eval(det, table, train, test):  # type: ignore[no-untyped-def]
    det.fit(table.X.iloc[train], table.y[train])
    score = det.decision_function(table.X.iloc[test])
    y = table.y[test]
    return roc_auc_score(y, score), average_precision_score(y, score), score


# ------------------------------------------------------------------ quality floors


@pytest.mark.slow
def test_logistic_on_real_ulb_later_hours() -> None:
    table, train, test = ulb()
    auc, ap, _ = _fit_eval(LogisticDetector(), table, train, test)
    assert auc > 0.88
    assert ap > 0.65


@pytest.mark.slow
def test_logistic_reference_uses_sgd_and_reaches_a_floor() -> None:
    det = LogisticDetector.reference()
    assert det.solver == "sgd" and det.class_weight is None and det.threshold_strategy is None
    table, train, test = ulb()
    auc, ap, _ = _fit_eval(det, table, train, test)
    assert auc > 0.88
    assert ap > 0.65
    assert det.threshold_ == 0.5


@pytest.mark.slow
def test_xgboost_default_on_real_ulb_later_hours() -> None:
    table, train, test = ulb()
    det = XGBoostDetector()
    auc, ap, _ = _fit_eval(det, table, train, test)
    assert auc > 0.9
    assert ap > 0.7
    # The validation tail chose the threshold: it is not XGBoost's 0.5 by accident.
    assert det.fit_info_["threshold_source"].startswith("f1 on validation tail")


@pytest.mark.slow
def test_xgboost_reference_preset_on_simulated_cards() -> None:
    det = XGBoostDetector.reference()
    params = det.get_params()
    assert (params["max_depth"], params["learning_rate"], params["n_estimators"]) == (5, 0.2, 100)
    assert (params["gamma"], params["min_child_weight"], params["subsample"]) == (4.0, 6.0, 0.8)
    table, train, test = sim()
    auc, ap, _ = _fit_eval(det, table, train, test)
    y = table.y[train]
    assert det.fit_info_["positive_weight"] == pytest.approx(np.sqrt((y == 0).sum() / y.sum()))
    assert auc > 0.72
    assert ap > 0.2


@pytest.mark.slow
def test_anomaly_detector_finds_ulb_frauds_without_labels() -> None:
    table, train, test = ulb()
    det = AnomalyDetector(n_estimators=100)
    det.fit(table.X.iloc[train])  # no labels at all
    score = det.decision_function(table.X.iloc[test])
    assert roc_auc_score(table.y[test], score) > 0.85
    assert score.min() > 0.0 and score.max() <= 1.0
    # Without labels the threshold flags the top 1 % of the validation tail.
    assert det.fit_info_["threshold_source"].startswith("top 1.00%")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["smote", "random"])
def test_oversampling_adds_fraud_rows_and_still_learns(method: str) -> None:
    table, train, test = sim()
    det = LogisticDetector(oversample=method, threshold_strategy=None)
    auc, _, _ = _fit_eval(det, table, train, test)
    assert det.fit_info_["n_fit"] == 2 * int((table.y[train] == 0).sum())
    assert det.fit_info_["positive_weight"] == pytest.approx(1.0)
    assert auc > 0.75


# ------------------------------------------------------------------ persistence


@pytest.mark.slow
@pytest.mark.parametrize(
    "det",
    [
        LogisticDetector(),
        XGBoostDetector(n_estimators=40, early_stopping_rounds=None, n_jobs=1),
        AnomalyDetector(n_estimators=30, max_features=0.7),
    ],
    ids=["logistic", "xgboost", "anomaly"],
)
def test_registry_round_trip_gives_identical_scores(det, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table, train, test = sim()
    det.fit(table.X.iloc[train], table.y[train])
    before = det.decision_function(table.X.iloc[test])
    reg = Registry(tmp_path)
    mv = reg.save(det, metrics={"x": 1.0}, data_digest="abc")
    files = set(mv.metadata["files"])
    assert "detector.json" in files
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    loaded = reg.load(det.name)
    after = loaded.decision_function(table.X.iloc[test])
    assert np.array_equal(before, after)
    assert loaded.threshold_ == det.threshold_
    assert loaded.feature_names_ == det.feature_names_
    assert loaded.get_params() == det.get_params()
    assert np.array_equal(loaded.predict(table.X.iloc[test]), det.predict(table.X.iloc[test]))


def test_isolation_forest_numpy_scorer_equals_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6))
    X[:30] *= 6.0
    X_new = rng.normal(size=(5000, 6)) * 2.0
    for kwargs in ({}, {"max_features": 0.5}, {"max_samples": 64, "n_estimators": 13}):
        forest = IsolationForest(random_state=4, **kwargs).fit(X)
        flat = FlatForest.from_sklearn(forest)
        np.testing.assert_allclose(
            flat.score_samples(X_new), forest.score_samples(X_new), rtol=0, atol=1e-9
        )


def test_isolation_forest_arrays_survive_npz_without_pickle(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(800, 4))
    forest = IsolationForest(n_estimators=20, max_features=0.75, random_state=0).fit(X)
    FlatForest.from_sklearn(forest).save(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    flat = FlatForest.load(tmp_path / "f.npz")
    np.testing.assert_allclose(flat.score_samples(X), forest.score_samples(X), rtol=0, atol=1e-9)


def test_anomaly_detector_raw_score_is_scikit_learns_score_samples() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 5))
    det = AnomalyDetector(n_estimators=25, max_samples=256, threshold_strategy=None).fit(X)
    forest = IsolationForest(n_estimators=25, max_samples=256, max_features=0.5, random_state=0)
    forest.fit(X)
    np.testing.assert_allclose(det.raw_score(X), forest.score_samples(X), rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        det.decision_function(X), -forest.score_samples(X), rtol=0, atol=1e-9
    )


# ------------------------------------------------------------------ thresholds


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "check"),
    [
        (("recall", 0.8), lambda y, p: p[y == 1].mean() >= 0.8),
        ("recall:0.6", lambda y, p: p[y == 1].mean() >= 0.6),
        (("fpr", 0.01), lambda y, p: p[y == 0].mean() <= 0.01),
        ("fpr:0.05", lambda y, p: p[y == 0].mean() <= 0.05),
    ],
)
def test_threshold_strategy_hits_its_target_on_the_validation_tail(strategy, check) -> None:  # type: ignore[no-untyped-def]
    table, train, _ = sim()
    det = LogisticDetector(threshold_strategy=strategy, refit=False, validation_fraction=0.3)
    det.fit(table.X.iloc[train], table.y[train])
    n_val = det.fit_info_["n_validation"]
    tail = train[-n_val:]
    y = table.y[tail]
    assert y.sum() >= 10
    flagged = det.predict(table.X.iloc[tail]).astype(bool)
    assert check(y, flagged)
    # ... and not trivially: flagging everything or nothing would not be chosen.
    assert 0 < flagged.sum() < len(flagged)


@pytest.mark.slow
def test_f1_threshold_is_the_best_f1_on_the_validation_tail() -> None:
    table, train, _ = sim()
    det = LogisticDetector(threshold_strategy="f1", refit=False)
    det.fit(table.X.iloc[train], table.y[train])
    tail = train[-det.fit_info_["n_validation"] :]
    y = table.y[tail].astype(bool)
    score = det.decision_function(table.X.iloc[tail])

    def f1(t: float) -> float:
        p = score > t
        tp = (p & y).sum()
        return 2 * tp / (p.sum() + y.sum())

    best = f1(det.threshold_)
    assert best > 0.3
    for t in np.quantile(score, np.linspace(0.5, 0.999, 60)):
        assert f1(float(t)) <= best + 1e-12


def test_parse_threshold_strategy() -> None:
    assert parse_threshold_strategy("f1") == ("f1", None)
    assert parse_threshold_strategy("recall:0.8") == ("recall", 0.8)
    assert parse_threshold_strategy(["fpr", 0.01]) == ("fpr", 0.01)
    assert parse_threshold_strategy("0.7") == ("fixed", 0.7)
    assert parse_threshold_strategy("none") is None
    with pytest.raises(ConfigError, match="unknown threshold strategy"):
        parse_threshold_strategy("precision:0.9")
    with pytest.raises(ConfigError):
        parse_threshold_strategy(("recall", 1.5))


# ------------------------------------------------------------------ input checks


@pytest.fixture(scope="module")
def small_logistic() -> tuple[LogisticDetector, object]:
    table, train, _ = sim()
    det = LogisticDetector(threshold_strategy=None).fit(table.X.iloc[train], table.y[train])
    return det, table.X.iloc[train[:200]].reset_index(drop=True)


def test_missing_feature_column_names_the_column(small_logistic) -> None:  # type: ignore[no-untyped-def]
    det, X = small_logistic
    with pytest.raises(DataError, match="feature column") as err:
        det.decision_function(X.drop(columns=["terminal_id_risk_7day_window"]))
    assert err.value.column == "terminal_id_risk_7day_window"


def test_columns_are_matched_by_name_not_position(small_logistic) -> None:  # type: ignore[no-untyped-def]
    det, X = small_logistic
    shuffled = X[list(reversed(X.columns))].assign(extra=1.0)
    assert np.array_equal(det.decision_function(shuffled), det.decision_function(X))


def test_array_of_wrong_width_is_rejected(small_logistic) -> None:  # type: ignore[no-untyped-def]
    det, X = small_logistic
    with pytest.raises(DataError, match=f"expected {X.shape[1]} feature columns"):
        det.decision_function(X.to_numpy()[:, :-1])
    assert np.array_equal(det.decision_function(X.to_numpy()), det.decision_function(X))


def test_non_finite_value_names_row_and_column(small_logistic) -> None:  # type: ignore[no-untyped-def]
    det, X = small_logistic
    bad = X.copy()
    bad.loc[7, "tx_amount"] = np.nan
    with pytest.raises(DataError) as err:
        det.decision_function(bad)
    assert (err.value.row, err.value.column) == (8, "tx_amount")


def test_supervised_detector_needs_labels_with_fraud() -> None:
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(DataError, match="labels are required"):
        LogisticDetector().fit(X)
    with pytest.raises(DataError, match="no fraud"):
        XGBoostDetector().fit(X, np.zeros(50))
    with pytest.raises(DataError, match="not 0 or 1"):
        LogisticDetector().fit(X, np.full(50, 2))


def test_unfitted_detector_says_so() -> None:
    with pytest.raises(ConfigError, match="not fitted"):
        XGBoostDetector().decision_function(np.zeros((1, 3)))


# ------------------------------------------------------------------ validation protocol


def test_eval_set_chooses_threshold_and_rounds_and_refit_keeps_them() -> None:
    table, train, test = sim()
    assert table.y is not None
    det = XGBoostDetector(n_estimators=120, n_jobs=1)
    det.fit(table.X.iloc[train], table.y[train], eval_set=(table.X.iloc[test], table.y[test]))
    info = det.fit_info_
    assert info["validation"] == "eval_set" and info["n_validation"] == len(test)
    # Every training row was fitted (no tail held out of X).
    assert info["n_fit"] == len(train)
    best = info["best_rounds"]
    assert 20 <= best <= 120 and info["rounds"] == best
    curve = info["rounds_curve"]["average_precision"]
    assert len(curve) == 12 and max(curve) > 0.3
    # The threshold is the best F1 on the eval set's scores.
    from fraudlens.evaluation import threshold_for

    score = det.decision_function(table.X.iloc[test])
    assert det.threshold_ == threshold_for(table.y[test], score)
    # Refit on every row: same threshold and rounds, more rows.
    rows = np.r_[train, test]
    threshold = det.threshold_
    det.refit_on(table.X.iloc[rows], table.y[rows])
    assert det.threshold_ == threshold
    assert det.booster_.num_boosted_rounds() == best
    assert det.fit_info_["refit_rows"] == len(rows)
    assert det.fit_info_["refit_positives"] == int(table.y[rows].sum())
    assert not np.array_equal(det.decision_function(table.X.iloc[test]), score)


def test_rounds_are_chosen_on_the_validation_curve_and_reference_keeps_all() -> None:
    table, train, _ = sim()
    assert table.y is not None
    det = XGBoostDetector(n_estimators=200, n_jobs=1).fit(table.X.iloc[train], table.y[train])
    curve = np.asarray(det.fit_info_["rounds_curve"]["average_precision"])
    best = det.fit_info_["best_rounds"]
    # The kept rounds sit at the peak of the curve averaged over 5 points.
    smooth = np.convolve(np.pad(curve, (2, 2), mode="edge"), np.ones(5) / 5, mode="valid")
    assert best == max(20, 10 * (int(np.argmax(smooth)) + 1))
    ref = XGBoostDetector.reference().fit(table.X.iloc[train], table.y[train])
    assert ref.booster_.num_boosted_rounds() == 100 and "best_rounds" not in ref.fit_info_


def test_time_of_day_reads_later_days_at_the_same_hours() -> None:
    table, train, _ = ulb()
    assert table.y is not None
    X = table.X.iloc[train]
    det = XGBoostDetector(n_estimators=60, n_jobs=1, time_of_day="Time")
    det.fit(X, table.y[train])
    day2 = X.assign(Time=X["Time"] + 86_400.0)
    before = X.copy()
    np.testing.assert_array_equal(det.decision_function(day2), det.decision_function(X))
    arr = X.to_numpy()
    det.decision_function(arr)
    # The caller's data are not changed in place.
    pd.testing.assert_frame_equal(X, before)
    np.testing.assert_array_equal(arr, before.to_numpy())
    assert det.model_feature_names_[0] == "Time (hour of day)"
    # Without it, a later day reads as past the end of the training hours.
    plain = XGBoostDetector(n_estimators=60, n_jobs=1, time_of_day=None).fit(X, table.y[train])
    assert not np.array_equal(plain.decision_function(day2), plain.decision_function(X))
    # The default, "auto", ignores Time for the ULB table's columns, and nothing else.
    auto = XGBoostDetector(n_estimators=60, n_jobs=1).fit(X, table.y[train])
    assert (auto.time_of_day_, auto.ignored_) == (None, ["Time"])
    other = XGBoostDetector(n_estimators=5, n_jobs=1).fit(X.drop(columns="V1"), table.y[train])
    assert (other.time_of_day_, other.ignored_) == (None, [])
    with pytest.raises(DataError, match="time_of_day"):
        XGBoostDetector(n_estimators=5, time_of_day="When").fit(X, table.y[train])


def test_time_of_day_survives_the_registry(tmp_path: Path) -> None:
    table, train, test = ulb()
    assert table.y is not None
    det = LogisticDetector(time_of_day="Time").fit(table.X.iloc[train], table.y[train])
    assert det.time_of_day_ == "Time"
    reg = Registry(tmp_path)
    reg.save(det, metrics={}, data_digest=None)
    loaded = reg.load("cards-logistic")
    assert loaded.time_of_day_ == "Time"
    X = table.X.iloc[test]
    later = X.assign(Time=X["Time"] + 3 * 86_400.0)
    np.testing.assert_array_equal(loaded.decision_function(later), det.decision_function(X))


def test_auto_ignores_ulb_time_and_it_survives_the_registry(tmp_path: Path) -> None:
    """On a ULB table the default reads Time as 0: a row scores the same at any time, its
    explanation gives Time nothing, and a stored model keeps ignoring it."""
    table, train, test = ulb()
    assert table.y is not None
    X = table.X.iloc[train]
    before = X.copy()
    det = XGBoostDetector(n_estimators=60, n_jobs=1).fit(X, table.y[train])
    pd.testing.assert_frame_equal(X, before)  # the caller's data are not changed
    Xt = table.X.iloc[test]
    moved = Xt.assign(Time=Xt["Time"] * 7.0 + 86_400.0)
    day2 = X.assign(Time=X["Time"] + 86_400.0)
    np.testing.assert_array_equal(det.decision_function(day2), det.decision_function(X))
    np.testing.assert_array_equal(det.decision_function(moved), det.decision_function(Xt))
    np.testing.assert_array_equal(
        det.decision_function(moved.to_numpy()), det.decision_function(Xt)
    )
    assert det.model_feature_names_[0] == "Time (ignored)"
    # The same model with Time as given does depend on it (the test is not vacuous).
    plain = XGBoostDetector(n_estimators=60, n_jobs=1, time_of_day=None).fit(X, table.y[train])
    assert not np.array_equal(plain.decision_function(day2), plain.decision_function(X))
    reg = Registry(tmp_path)
    reg.save(det, metrics={}, data_digest=None)
    loaded = reg.load("cards-xgboost")
    assert loaded.ignored_ == ["Time"]
    np.testing.assert_array_equal(loaded.decision_function(moved), det.decision_function(Xt))
    # Models stored before the ignored columns existed ignore none.
    meta = tmp_path / "cards-xgboost"
    for f in meta.rglob("detector.json"):
        doc = json.loads(f.read_text())
        doc.pop("ignored")
        f.write_text(json.dumps(doc))
    assert reg.load("cards-xgboost").ignored_ == []


def test_a_model_trained_on_a_row_id_asks_to_be_trained_again() -> None:
    """A model fitted before row ids were set aside needs its ``id`` column, which
    feature tables no longer carry as a feature: the error says why, not just 'missing'."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"id": np.arange(200.0), "f1": rng.normal(size=200)})
    y = (X["f1"] > 0.5).to_numpy().astype(int)
    det = LogisticDetector(threshold_strategy=None).fit(X, y)
    table = validate_frame(X.assign(Class=y))
    assert "id" not in table.X.columns
    with pytest.raises(DataError, match="trained with the row id 'id' as a feature") as err:
        det.decision_function(table.X)
    assert err.value.column == "id"
