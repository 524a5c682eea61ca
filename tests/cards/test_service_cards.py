"""Card scoring over HTTP: rows as objects, top reasons, the column list in width errors,
and reasons in the sink's records (service and processor)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cards_data import ULB_DAY1
from fastapi.testclient import TestClient

from fraudlens.cards.explain import explain
from fraudlens.registry import Registry
from fraudlens.service import create_app

pytestmark = pytest.mark.slow

NAMES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]


@pytest.fixture(scope="module")
def ulb() -> pd.DataFrame:
    if not ULB_DAY1.is_file():
        pytest.skip(f"the ULB day-1 file is not at {ULB_DAY1}")
    return pd.read_csv(ULB_DAY1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, ulb: pd.DataFrame) -> Path:
    from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector

    root = tmp_path_factory.mktemp("models")
    X, y = ulb[NAMES], ulb["Class"].to_numpy()
    reg = Registry(root)
    reg.save(AnomalyDetector(n_estimators=20).fit(X))
    reg.save(XGBoostDetector(n_estimators=60, n_jobs=1, time_of_day="Time").fit(X, y))
    return root


@pytest.fixture(scope="module")
def client(models: Path) -> Iterator[TestClient]:
    with TestClient(create_app(models_dir=models, check_seconds=0.0)) as c:
        yield c


def _sample(ulb: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([ulb[ulb["Class"] == 1].head(3), ulb[ulb["Class"] == 0].head(3)])


def test_rows_as_objects_score_like_csv(client: TestClient, ulb: pd.DataFrame) -> None:
    rows = _sample(ulb)
    records = rows[NAMES].to_dict(orient="records")
    # Extra keys (here the label) are ignored; keys in any order.
    records = [{"Class": 1, **dict(reversed(list(r.items())))} for r in records]
    by_object = client.post("/v1/cards/score", json={"data": records})
    assert by_object.status_code == 200, by_object.text
    text = "\n".join(",".join(repr(float(v)) for v in r) for r in rows[NAMES].to_numpy())
    by_csv = client.post("/v1/cards/score", json={"data": text}).json()
    assert by_object.json()["fraud_classifier"] == by_csv["fraud_classifier"]
    assert by_object.json()["anomaly_detector"] == by_csv["anomaly_detector"]
    # A missing feature is named, with its row.
    del records[1]["V14"]
    r = client.post("/v1/cards/score", json={"data": records})
    assert r.status_code == 422
    body = json.dumps(r.json())
    assert "V14" in body and "missing feature" in body
    r = client.post("/v1/cards/score", json={"data": [{"V1": "x"}]})
    assert r.status_code == 422


def test_explain_gives_the_top_reasons(client: TestClient, ulb: pd.DataFrame, models: Path) -> None:
    rows = _sample(ulb)
    payload = {"data": rows[NAMES].to_numpy().tolist(), "explain": True, "top": 2}
    r = client.post("/v1/cards/score", json=payload)
    assert r.status_code == 200, r.text
    reasons = r.json()["fraud_classifier"]["reasons"]
    assert len(reasons) == 6
    det = Registry(models).load("cards-xgboost")
    want = explain(det, rows[NAMES], top=2)
    for got, exp in zip(reasons, want, strict=True):
        assert [g["feature"] for g in got] == [e["feature"] for e in exp]
        np.testing.assert_allclose(
            [g["contribution"] for g in got], [e["contribution"] for e in exp], rtol=1e-6
        )
    plain = client.post("/v1/cards/score", json={"data": payload["data"]}).json()
    assert "reasons" not in plain["fraud_classifier"]


def test_wrong_width_names_the_columns(client: TestClient, ulb: pd.DataFrame) -> None:
    row = ",".join(repr(float(v)) for v in ulb[NAMES].iloc[0].to_numpy()[:-1])
    r = client.post("/invocations", content=row, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422
    text = json.dumps(r.json())
    assert "expected 30 comma-separated values (Time, V1, V2" in text and "Amount" in text
    assert "got 29" in text
    r = client.post("/v1/cards/score", json={"data": [[1.0, 2.0]]})
    assert r.status_code == 422 and "Time, V1" in json.dumps(r.json())


def test_sink_records_carry_reasons(models: Path, ulb: pd.DataFrame, tmp_path: Path) -> None:
    from fraudlens.sinks import open_sink

    rows = _sample(ulb)
    sink = open_sink(tmp_path / "sink", timer=False)
    with TestClient(create_app(models_dir=models, sink=sink)) as c:
        meta = [{"transaction_id": f"t{i}"} for i in range(6)]
        payload = {"data": rows[NAMES].to_numpy().tolist(), "metadata": meta, "explain": True}
        r = c.post("/v1/cards/score", json=payload)
        assert r.status_code == 200
    (obj,) = list((tmp_path / "sink").rglob("*.csv"))
    with open(obj, newline="") as f:
        records = list(csv.DictReader(f))
    assert [json.loads(rec["reasons"]) for rec in records] == r.json()["fraud_classifier"][
        "reasons"
    ]


def test_processor_records_explain_flagged_rows(
    models: Path, ulb: pd.DataFrame, tmp_path: Path
) -> None:
    from fraudlens.processor import process

    rows = ulb.drop(columns="Class").iloc[::10]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    stats = process(
        f"file:{tmp_path / 'rows.csv'}", str(tmp_path / "sink"), models, handle_signals=False
    )
    assert stats.records == len(rows) and 0 < stats.flagged < len(rows) // 10
    records = []
    for obj in (tmp_path / "sink").rglob("*.csv"):
        with open(obj, newline="") as f:
            records += list(csv.DictReader(f))
    flagged = [r for r in records if r["prediction"] == "1"]
    assert len(flagged) == stats.flagged
    # Flagged records carry the classifier's reasons (a flagged row whose score is
    # below the model's base rate has no positive contribution to list: none here).
    det = Registry(models).load("cards-xgboost")
    assert all(json.loads(r["reasons"]) for r in flagged)
    assert all(not r.get("reasons") for r in records if r["prediction"] == "0")
    assert {g["feature"] for r in flagged for g in json.loads(r["reasons"])} <= {
        *det.model_feature_names_
    }
