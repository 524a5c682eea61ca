"""The service scores card rows with text values for a model trained on a feature table
with text columns (a transaction type), through /v1/cards/score and /invocations, the
same as the model scores them itself; a model that reads numbers only refuses text with
a 422 naming the row and column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from _text_book import book_table as _book  # type: ignore[import-not-found]
from fraudlens.cards.data import validate_frame
from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector
from fraudlens.registry import Registry
from fraudlens.service import create_app

FEATURES = ["step", "type", "amount", "oldbalanceOrg", "newbalanceOrig", "network"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object]]:
    root = tmp_path_factory.mktemp("text-models")
    table = validate_frame(_book(3000, seed=8), "features")
    det = XGBoostDetector(n_estimators=40, early_stopping_rounds=None, refit=False, n_jobs=1)
    det.fit(table.X, table.y)
    Registry(root).save(det)
    Registry(root).save(AnomalyDetector(n_estimators=30, refit=False).fit(table.X, table.y))
    with TestClient(create_app(models_dir=root, check_seconds=0.0)) as c:
        yield c, det


def test_rows_with_text_are_scored_as_the_model_scores_them(
    served: tuple[TestClient, XGBoostDetector],
) -> None:
    client, det = served
    rows = _book(6, seed=9)
    assert det.feature_names_ == FEATURES
    expected = det.decision_function(validate_frame(rows, "features").X)
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in rows[FEATURES].astype(object).to_dict("records")
    ]
    as_objects = client.post("/v1/cards/score", json={"data": records, "explain": True})
    assert as_objects.status_code == 200, as_objects.text
    body = as_objects.json()["fraud_classifier"]
    assert len(as_objects.json()["anomaly_detector"]["score"]) == 6
    np.testing.assert_allclose(body["pred_proba"], expected, rtol=1e-6)
    assert any(r["feature"].startswith(("type", "network")) for rs in body["reasons"] for r in rs)
    as_lists = client.post(
        "/v1/cards/score", json={"data": [[r[n] for n in FEATURES] for r in records]}
    )
    assert as_lists.status_code == 200, as_lists.text
    np.testing.assert_allclose(
        as_lists.json()["fraud_classifier"]["pred_proba"], expected, rtol=1e-6
    )
    csv = "\n".join(
        ",".join("" if v is None else str(v) for v in (r[n] for n in FEATURES)) for r in records
    )
    r = client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["score"] for p in r.json()["predictions"]], expected, rtol=1e-6)


def test_bad_rows_for_a_text_model_are_named(served: tuple[TestClient, XGBoostDetector]) -> None:
    client, _ = served
    row = [3, "TRANSFER", "lots", 10.0, 0.0, "visa"]
    r = client.post("/v1/cards/score", json={"data": [row]})
    assert r.status_code == 422 and "amount" in r.text and "not a number" in r.text, r.text
    # A request is no file, and a model's numeric column takes numbers whatever the
    # other rows hold (the file loader's "mostly numbers" hint had been repeated here).
    good = [3, "TRANSFER", 5.0, 10.0, 0.0, "visa"]
    for body in ({"data": [good, row, good]}, {"data": [row]}):
        r = client.post("/v1/cards/score", json=body)
        reason = r.json()["detail"]["reason"]
        assert "<request>" not in r.text and "mostly" not in reason, r.text
        assert reason == "not a number: 'lots' (the model reads numbers in this column)", reason
    r = client.post("/v1/cards/score", json={"data": [[3, "x" * 300, 1.0, 1.0, 0.0, "visa"]]})
    assert r.status_code == 422 and "at most 256" in r.text, r.text
    # The same bound for text sent as CSV (it had been taken, and read as a rare level).
    r = client.post(
        "/invocations",
        content=f"3,{'x' * 300},1.0,1.0,0.0,visa",
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 422 and "text of 300 characters (at most 256)" in r.text, r.text
    assert r.json()["detail"]["column"] == "type"
    r = client.post(
        "/invocations", content="3,TRANSFER,1.0,1.0", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 422 and "expected 6 comma-separated values" in r.text, r.text


def test_a_numeric_model_refuses_text_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    y = (X["a"] > 1.0).astype(int).to_numpy()
    Registry(tmp_path).save(
        XGBoostDetector(n_estimators=10, early_stopping_rounds=None, refit=False).fit(X, y)
    )
    with TestClient(create_app(models_dir=tmp_path, check_seconds=0.0)) as c:
        r = c.post("/v1/cards/score", json={"data": [[1.0, "2", 3.0]], "model": "fraud_classifier"})
        assert r.status_code == 422, r.text
        assert "not a number (this model reads numbers only" in r.text and "2 (b)" in r.text
        ok = c.post(
            "/v1/cards/score", json={"data": [[1.0, 2.0, 3.0]], "model": "fraud_classifier"}
        )
        assert ok.status_code == 200, ok.text


def test_blanks_for_a_model_trained_with_blanks(tmp_path: Path) -> None:
    """JSON null and an empty CSV value are blanks for a column that had blanks in
    training (scored as the model scores them); elsewhere a blank is a 422 naming it."""
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    X.loc[rng.random(600) < 0.2, "b"] = np.nan
    y = ((X["a"] > 1.0) | X["b"].isna() & (X["c"] > 0.5)).astype(int).to_numpy()
    det = XGBoostDetector(n_estimators=20, early_stopping_rounds=None, refit=False).fit(X, y)
    Registry(tmp_path).save(det)
    rows = [[1.5, None, 0.2], [0.1, 0.3, 0.9]]
    expected = det.decision_function(pd.DataFrame(rows, columns=["a", "b", "c"], dtype=float))
    with TestClient(create_app(models_dir=tmp_path, check_seconds=0.0)) as c:
        r = c.post("/v1/cards/score", json={"data": rows, "model": "fraud_classifier"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["fraud_classifier"]["pred_proba"], expected, rtol=1e-6)
        r = c.post(
            "/invocations", content="1.5,,0.2\n0.1,0.3,0.9", headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(
            [p["score"] for p in r.json()["predictions"]], expected, rtol=1e-6
        )
        r = c.post(
            "/v1/cards/score", json={"data": [[1.0, 0.0, None]], "model": "fraud_classifier"}
        )
        assert r.status_code == 422 and "no blank in this column" in r.text, r.text
        assert r.json()["detail"]["column"] == "3 (c)"


def test_json_flags_for_a_model_trained_on_flags(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    present = rng.random(800) < 0.7
    X = pd.DataFrame({"card_present": present, "amount": rng.lognormal(3.0, 1.0, 800)})
    y = (~present & (rng.random(800) < 0.4)).astype(int)
    table = validate_frame(X.assign(label=y), "features")
    det = XGBoostDetector(n_estimators=20, early_stopping_rounds=None, refit=False)
    Registry(tmp_path).save(det.fit(table.X, table.y))
    with TestClient(create_app(models_dir=tmp_path, check_seconds=0.0)) as c:
        body = {"data": [[False, 20.0], [True, 20.0]], "model": "fraud_classifier"}
        r = c.post("/v1/cards/score", json=body)
        assert r.status_code == 200, r.text
        want = det.decision_function(
            pd.DataFrame({"card_present": ["False", "True"], "amount": [20.0, 20.0]})
        )
        np.testing.assert_allclose(r.json()["fraud_classifier"]["pred_proba"], want, rtol=1e-6)
        # A flag where the model reads a number is named.
        r = c.post("/v1/cards/score", json={"data": [[True, True]], "model": "fraud_classifier"})
        assert r.status_code == 422 and r.json()["detail"]["column"] == "amount", r.text
