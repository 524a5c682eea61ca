"""``cards train --time-column COL --time-of-day``: the model also reads the hour of the
day of the table's time column, as the feature ``COL (hour of day)``, built the same way
by every path that scores files (``cards score``, ``cards evaluate``, ``cards process``).
Before, the time column was no feature at all, and a model could not learn that fraud
comes at night."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlens.cards.data import hour_of_day, validate_frame
from fraudlens.cli import app
from fraudlens.errors import DataError


def _nightly(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Purchases over 20 days; fraud only between 22:00 and 04:00, with ordinary amounts,
    so the hour is the only evidence."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-03-01")
    when = start + pd.to_timedelta(np.sort(rng.uniform(0, 20 * 86_400, n)), unit="s")
    hour = when.hour.to_numpy()
    night = (hour >= 22) | (hour < 4)
    fraud = night & (rng.random(n) < 0.35)
    return pd.DataFrame(
        {
            "when": when.strftime("%Y-%m-%d %H:%M:%S"),
            "amount": rng.lognormal(3.0, 1.0, n).round(2),
            "category": rng.choice(["grocery", "travel", "fuel"], n),
            "is_fraud": fraud.astype(int),
        }
    )


def test_hour_of_day_of_date_times_and_of_seconds() -> None:
    ts = pd.Series(pd.to_datetime(["2026-03-01 00:00:00", "2026-03-02 13:30:00"], utc=True))
    np.testing.assert_allclose(hour_of_day(ts), [0.0, 13.5])
    np.testing.assert_allclose(
        hour_of_day(pd.Series([3600.0 * 25, 86_400.0 * 3 + 90.0])), [1.0, 0.025]
    )
    df = pd.DataFrame({"step": [1, 26, 47], "amount": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    table = validate_frame(df, "features", time_column="step", time_unit=3600.0, time_of_day=True)
    assert table.feature_names == ["amount", "step (hour of day)"]
    np.testing.assert_allclose(table.X["step (hour of day)"], [1.0, 2.0, 23.0])


def test_time_of_day_needs_a_time_column_and_its_name_free() -> None:
    df = _nightly(20)
    with pytest.raises(DataError, match="read from a time column: name one"):
        validate_frame(df, "features", time_of_day=True)
    ulb = pd.DataFrame({"Time": [0.0], **{f"V{i}": [0.0] for i in range(1, 29)}, "Amount": [1.0]})
    with pytest.raises(DataError, match="is for feature tables; this is a ulb table"):
        validate_frame(ulb, "auto", time_of_day=True)
    taken = df.assign(**{"when (hour of day)": 1.0})
    with pytest.raises(DataError, match="the name of the time of day feature") as err:
        validate_frame(taken, "features", time_column="when", time_of_day=True)
    assert err.value.column == "when (hour of day)"
    # Without the flag the time column is no feature at all.
    assert validate_frame(df, "features", time_column="when").feature_names == [
        "amount",
        "category",
    ]


def test_cli_model_reads_the_hour_and_every_file_path_builds_it(tmp_path: Path) -> None:
    data = tmp_path / "nightly.csv"
    _nightly().to_csv(data, index=False)
    later = tmp_path / "later.csv"
    _nightly(1500, seed=1).to_csv(later, index=False)
    runner = CliRunner()
    base = ["cards", "train", "--data", str(data), "--time-column", "when"]
    aps = {}
    for flag in ([], ["--time-of-day"]):
        models = tmp_path / ("tod" if flag else "plain")
        res = runner.invoke(app, [*base, "-m", str(models), *flag])
        assert res.exit_code == 0, res.output
        out = tmp_path / f"{models.name}-report"
        res = runner.invoke(
            app, ["cards", "evaluate", "-d", str(later), "-m", str(models), "-o", str(out)]
        )
        assert res.exit_code == 0, res.output
        aps[models.name] = json.loads((out / "report.json").read_text())["metrics"][
            "average_precision"
        ]
    # The hour is the only evidence: without it the model ranks at about the base rate.
    assert aps["tod"] > 0.25 > aps["plain"] + 0.1, aps
    models = tmp_path / "tod"
    own = json.loads((models / "cards-xgboost" / "v0001" / "detector.json").read_text())
    assert own["clock"] == {"column": "when", "unit": 1.0}
    assert "when (hour of day)" in own["feature_names"]
    scores = tmp_path / "scores.csv"
    res = runner.invoke(
        app, ["cards", "score", "-d", str(later), "-m", str(models), "-o", str(scores), "--explain"]
    )
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(scores)
    assert len(scored) == 1500 and scored["reasons"].str.contains("when \\(hour of day\\)").any()
    # The processor's file source builds the feature too, and scores as `cards score` does.
    sink = tmp_path / "sink"
    res = runner.invoke(
        app,
        ["cards", "process", "--source", f"file:{later}", "--sink", str(sink), "-m", str(models)],
    )
    assert res.exit_code == 0, res.output
    written = pd.concat(pd.read_csv(p) for p in sorted(sink.rglob("scores-*.csv")))
    assert len(written) == 1500
    np.testing.assert_allclose(np.sort(written["score"]), np.sort(scored["score"]), rtol=1e-5)
    # A file without the time column cannot give the model its hour.
    bare = tmp_path / "bare.csv"
    _nightly(50, seed=2).drop(columns="when").to_csv(bare, index=False)
    res = runner.invoke(
        app, ["cards", "score", "-d", str(bare), "-m", str(models), "-o", str(scores)]
    )
    assert res.exit_code == 2 and "time column not found" in res.output


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Any]:
    """A registry whose models read the hour of the day of ``when``; and rows to score."""
    from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector
    from fraudlens.registry import Registry

    root = tmp_path_factory.mktemp("clocked")
    table = validate_frame(_nightly(1500), "features", time_column="when", time_of_day=True)
    det = XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False, n_jobs=1)
    det.fit(table.X, table.y)
    det.clock_ = {"column": "when", "unit": 1.0}
    Registry(root).save(det)
    Registry(root).save(AnomalyDetector(n_estimators=20, refit=False).fit(table.X, table.y))
    return root, _nightly(8, seed=3), det


def _expected(det: Any, rows: pd.DataFrame) -> np.ndarray:
    X = validate_frame(rows, "features", time_column="when", time_of_day=True).X
    return np.asarray(det.decision_function(X))


def test_the_service_takes_the_hour_or_the_raw_time(
    clocked: tuple[Path, pd.DataFrame, Any],
) -> None:
    from fastapi.testclient import TestClient

    from fraudlens.service import create_app

    root, rows, det = clocked
    expected = _expected(det, rows)
    raw = rows.drop(columns="is_fraud").to_dict("records")
    hours = validate_frame(rows, "features", time_column="when", time_of_day=True).X
    with TestClient(create_app(models_dir=root, check_seconds=0.0)) as client:
        # The feature by its name, as for any feature ...
        res = client.post("/v1/cards/score", json={"data": hours.astype(object).to_dict("records")})
        assert res.status_code == 200, res.text
        np.testing.assert_allclose(
            res.json()["fraud_classifier"]["pred_proba"], expected, rtol=1e-6
        )
        # ... or the raw time, whose hour of the day the service reads.
        res = client.post("/v1/cards/score", json={"data": raw})
        assert res.status_code == 200, res.text
        np.testing.assert_allclose(
            res.json()["fraud_classifier"]["pred_proba"], expected, rtol=1e-6
        )
        for bad in ("x", "now", True, None, "9" * 300, 10**400, [1], {"a": 1}):
            res = client.post("/v1/cards/score", json={"data": [{**raw[0], "when": bad}]})
            assert res.status_code == 422, (bad, res.text)
            # (long text, lists and objects are refused by the request's schema first)
            if bad in ("x", "now", True, None):
                assert "when (hour of day)" in res.text, (bad, res.text)
        gone = {k: v for k, v in raw[0].items() if k != "when"}
        res = client.post("/v1/cards/score", json={"data": [gone]})
        assert res.status_code == 422 and "when (hour of day)" in res.text


def test_queued_records_carry_the_raw_time(
    clocked: tuple[Path, pd.DataFrame, Any], tmp_path: Path
) -> None:
    import csv

    from fraudlens.processor import process
    from fraudlens.queues import open_queue

    root, rows, det = clocked
    expected = _expected(det, rows)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_queue(url, name="card-events") as q:
        for i, rec in enumerate(rows.drop(columns="is_fraud").to_dict("records")):
            q.send({"record": {**rec, "transaction_id": f"q{i}"}})
        q.send({"record": {**rec, "when": "yesterday", "transaction_id": "bad"}})
        q.send({"record": {**rec, "when": 10**400, "transaction_id": "huge"}})
    stats = process(f"queue:{url}", tmp_path / "sink", root, batch_size=4)
    assert stats.records == 8 and stats.dead_lettered == 2
    got: dict[str, float] = {}
    for f in sorted(p for p in (tmp_path / "sink").rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            got.update((r["transaction_id"], float(r["score"])) for r in csv.DictReader(fh))
    np.testing.assert_allclose([got[f"q{i}"] for i in range(8)], expected, rtol=1e-6)
    with open_queue(url, name="card-events") as q:
        reasons = [d["reason"] for d in q.dead_letters()]
    assert any("'when'" in r and "hour of the day" in r for r in reasons), reasons
