"""A feature table's column of ISO-8601 dates (a birth date, the day an account opened)
is read as one number, days since 1970-01-01, by every scoring path. Before, it was read
as text levels: its 20 commonest dates, so a date the training rows never held meant
nothing to the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraudlens.cards import _categories
from fraudlens.cards.data import validate_frame
from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector
from fraudlens.errors import DataError
from fraudlens.registry import Registry


def _born(n: int, seed: int, days: np.ndarray) -> pd.DataFrame:
    """Purchases whose fraud rate rises with the holder's age; birth dates drawn from
    ``days`` (days since 1970)."""
    rng = np.random.default_rng(seed)
    born = rng.choice(days, n)
    old = born < -5000  # born before 1956
    fraud = rng.random(n) < np.where(old, 0.3, 0.02)
    dob = pd.to_datetime(born, unit="D").strftime("%Y-%m-%d").to_numpy().astype(object)
    dob[rng.random(n) < 0.03] = None  # not collected
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, n).round(2),
            "dob": dob,
            "is_fraud": fraud.astype(int),
        }
    )


def test_dates_are_told_from_text_and_read_as_days() -> None:
    assert _categories.is_dates(pd.Series(["1988-03-09", "2001-12-31", None]))
    assert _categories.is_dates(pd.Series(["2026-01-02T10:00:00Z", "2026-01-03 11:30:00"]))
    assert not _categories.is_dates(pd.Series(["PAYMENT", "1988-03-09"]))
    assert not _categories.is_dates(pd.Series(["visa", "mc"]))
    days = _categories.as_days(pd.Series(["1970-01-02", None, "1969-12-31 12:00:00"]), "dob")
    np.testing.assert_allclose(days, [1.0, np.nan, -0.5])
    with pytest.raises(DataError, match="not a date: 'soon'") as err:
        _categories.as_days(pd.Series(["1970-01-02", "soon"]), "dob")
    assert (err.value.row, err.value.column) == (2, "dob")


def test_a_model_reads_birth_dates_it_never_saw_by_their_order(tmp_path: Path) -> None:
    # Training and scoring rows hold disjoint birth dates: as levels they say nothing.
    pool = np.arange(-12_000, 12_000)
    train = _born(6000, 0, pool[::2])
    later = _born(3000, 1, pool[1::2])
    table = validate_frame(train, "features")
    det = XGBoostDetector(n_estimators=60, early_stopping_rounds=None, refit=False, n_jobs=1)
    det.fit(table.X, table.y)
    assert det.dates_ == ["dob"] and "dob" not in det.categories_
    assert "dob (blank)" in det.model_feature_names_  # blanks are read as missing values
    X_later = validate_frame(later, "features").X
    scores = det.decision_function(X_later)
    assert roc_auc_score(later["is_fraud"], scores) > 0.8
    # Stored and loaded, the model reads them the same way.
    Registry(tmp_path).save(det)
    again = Registry(tmp_path).load("cards-xgboost")
    assert again.dates_ == ["dob"]
    np.testing.assert_allclose(again.decision_function(X_later), scores, rtol=1e-6)
    with pytest.raises(DataError, match="not a date") as err:
        det.decision_function(X_later.assign(dob=["tomorrow"] * len(X_later)))
    assert (err.value.row, err.value.column) == (1, "dob")


def test_the_service_takes_dates_as_text(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fraudlens.service import create_app

    table = validate_frame(_born(3000, 2, np.arange(-12_000, 12_000)), "features")
    det = XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False, n_jobs=1)
    Registry(tmp_path).save(det.fit(table.X, table.y))
    Registry(tmp_path).save(AnomalyDetector(n_estimators=20, refit=False).fit(table.X, table.y))
    rows = [{"amount": 12.5, "dob": "1941-06-01"}, {"amount": 80.0, "dob": None}]
    expected = det.decision_function(pd.DataFrame(rows))
    with TestClient(create_app(models_dir=tmp_path, check_seconds=0.0)) as client:
        res = client.post("/v1/cards/score", json={"data": rows})
        assert res.status_code == 200, res.text
        got = res.json()["fraud_classifier"]["pred_proba"]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        for dob in ("June", 6000):  # a number is no date either (never a 500)
            res = client.post("/v1/cards/score", json={"data": [{"amount": 1.0, "dob": dob}]})
            assert res.status_code == 422 and "not a date" in res.text and "dob" in res.text
