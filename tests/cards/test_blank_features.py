"""Blank numbers in a card feature table (a device score not collected, a distance not
known): a missing value the card models read as the training median plus a blank
indicator, the same in every scoring path. Before, a blank cell of a feature table was
refused, so a public benchmark table with missing values could not be trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from fraudlens.cards.data import validate_frame
from fraudlens.cards.detectors import AnomalyDetector, LogisticDetector, XGBoostDetector
from fraudlens.cli import app
from fraudlens.errors import DataError
from fraudlens.registry import Registry


def _table(n: int, seed: int) -> pd.DataFrame:
    """Fraud shows in ``amount`` and in a device score that is blank far more often
    for fraud (the fraudster's device sends none)."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.06
    amount = rng.lognormal(3.5, 1.0, n) * np.where(fraud, 1.6, 1.0)
    device = rng.normal(size=n) + 0.3 * fraud
    device[rng.random(n) < np.where(fraud, 0.7, 0.1)] = np.nan
    return pd.DataFrame(
        {
            "amount": amount.round(2),
            "device_score": device,
            "hour": rng.integers(0, 24, n).astype(float),
            "label": fraud.astype(int),
        }
    )


def test_a_feature_table_may_hold_blank_numbers_but_ulb_may_not() -> None:
    table = validate_frame(_table(200, 0), "features")
    assert table.X["device_score"].isna().any()
    ulb = pd.DataFrame(
        {"Time": [0.0, 1.0], **{f"V{i}": [0.0, 1.0] for i in range(1, 29)}, "Amount": [1.0, None]}
    )
    with pytest.raises(DataError, match="missing value"):
        validate_frame(ulb.assign(Class=[0, 1]), "ulb")


@pytest.mark.parametrize("cls", [XGBoostDetector, LogisticDetector, AnomalyDetector])
def test_blanks_read_as_median_and_indicator(cls: type, tmp_path: Path) -> None:
    table = validate_frame(_table(3000, 1), "features")
    det = cls().fit(table.X, table.y)
    observed = table.X["device_score"].dropna()
    assert det.fill_ == {"device_score": pytest.approx(float(observed.median()))}
    assert det.model_feature_names_ == ["amount", "device_score", "device_score (blank)", "hour"]
    whole = det.decision_function(table.X)
    blank_row = int(np.flatnonzero(table.X["device_score"].isna())[0])
    for i in (0, blank_row):
        assert det.decision_function(table.X.iloc[[i]])[0] == pytest.approx(whole[i], rel=1e-9)
    # A blank where training had none is named, not guessed.
    odd = table.X.iloc[:2].assign(hour=[1.0, np.nan])
    with pytest.raises(DataError) as err:
        det.decision_function(odd)
    assert (err.value.row, err.value.column) == (2, "hour")
    assert "training rows had no blank in this column" in err.value.reason
    reg = Registry(tmp_path)
    reg.save(det)
    np.testing.assert_allclose(reg.load(det.name).decision_function(table.X), whole, rtol=1e-9)


def test_the_blank_indicator_carries_the_signal() -> None:
    """A blank device score is itself evidence of fraud here: reading it beats reading
    the same table with blanks filled by the median (no indicator)."""
    train, test = (
        validate_frame(_table(6000, 2), "features"),
        validate_frame(_table(4000, 3), "features"),
    )

    def filled(X: pd.DataFrame, median: float) -> pd.DataFrame:
        return X.fillna({"device_score": median})

    median = float(train.X["device_score"].median())
    with_blanks = LogisticDetector().fit(train.X, train.y)
    without = LogisticDetector().fit(filled(train.X, median), train.y)
    auc_with = roc_auc_score(test.y, with_blanks.decision_function(test.X))
    auc_without = roc_auc_score(test.y, without.decision_function(filled(test.X, median)))
    assert auc_with > auc_without + 0.03


def test_cli_trains_when_blanks_come_only_in_the_held_out_rows(tmp_path: Path) -> None:
    df = _table(3000, 4)
    df["ts"] = pd.date_range("2026-01-01", periods=len(df), freq="min")
    # Blanks only in the latest rows: the held-out window of a time split.
    df["late"] = np.where(np.arange(len(df)) > 2500, np.nan, 1.0)
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    runner = CliRunner()
    models = tmp_path / "m"
    res = runner.invoke(app, ["cards", "train", "--data", str(data), "-m", str(models)])
    assert res.exit_code == 0, res.output
    meta = json.loads((models / "cards-xgboost" / "v0001" / "detector.json").read_text())
    assert set(meta["fill"]) == {"device_score", "late"}
    out = tmp_path / "s.csv"
    res = runner.invoke(
        app, ["cards", "score", "--data", str(data), "-m", str(models), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == len(df)


def test_python_rows_of_mixed_types_read_as_the_cli_reads_them() -> None:
    """A frame built from records (an object column of numbers with None, a bool column)
    fitted directly: the numbers stay numbers with blanks, the flags become levels; and
    the same rows validated as a file would be score the same."""
    rng = np.random.default_rng(0)
    n = 500
    a = pd.Series(rng.normal(size=n)).astype(object)
    a[::10] = None
    X = pd.DataFrame({"a": a, "b": rng.normal(size=n), "flag": rng.random(n) < 0.5})
    y = (rng.random(n) < 0.2).astype(int)
    det = XGBoostDetector(n_estimators=10, early_stopping_rounds=None, refit=False).fit(X, y)
    assert list(det.categories_) == ["flag"] and list(det.fill_) == ["a"]
    validated = validate_frame(X.assign(label=y), "features").X
    np.testing.assert_allclose(
        det.decision_function(X), det.decision_function(validated), rtol=1e-12
    )
