"""``fraudlens cards``: simulate -> train -> evaluate -> score, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cards_data import ULB_DAY1
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.registry import Registry

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, ["cards", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cards-cli")
    out = _run(
        "simulate", "--out", str(root / "sim"), "--customers", "300", "--days", "30", "--seed", "1"
    )
    assert "transactions" in out
    return root


@pytest.mark.slow
def test_simulate_train_evaluate_score_round_trip(workspace: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    tx = pd.read_csv(data)
    assert list(tx.columns[:6]) == [
        "transaction_id",
        "ts",
        "customer_id",
        "terminal_id",
        "amount",
        "label",
    ]
    assert len(tx) > 5000 and 0 < tx["label"].mean() < 0.1
    models = workspace / "models"

    out = _run(
        "train",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--preset",
        "reference",
    )
    assert "roc_auc" in out and "cards-xgboost" in out
    _run("train", "--data", str(data), "-m", str(models), "--detector", "anomaly")
    reg = Registry(models)
    assert reg.defaults()["cards"] == "cards-anomaly"  # the last one trained
    meta = reg.get("cards-xgboost").metadata
    assert meta["split"]["protocol"] == "handbook 7/7/7"
    assert meta["params"]["n_estimators"] == 100 and meta["preset"] == "reference"
    assert meta["metrics"]["roc_auc"] > 0.6
    assert meta["data_hash"]

    report_dir = workspace / "report"
    out = _run(
        "evaluate",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--out",
        str(report_dir),
    )
    assert "report.json" in out
    report = json.loads((report_dir / "report.json").read_text())
    for name in ("roc.png", "pr.png", "threshold_sweep.png", "confusion.png"):
        assert (report_dir / name).stat().st_size > 1000
    # Evaluated on the test part of the training split, so the figures match training's.
    assert report["metrics"]["roc_auc"] == pytest.approx(meta["metrics"]["roc_auc"])
    assert report["data"]["rows"] == meta["metrics"]["test_rows"]
    assert "card_precision@100" in report["metrics"]

    # Score a shuffled copy: the output keeps the input order, row for row.
    shuffled = tx.sample(frac=1.0, random_state=5)
    shuffled.to_csv(workspace / "shuffled.csv", index=False)
    scores_csv = workspace / "scores.csv"
    _run(
        "score",
        "--data",
        str(workspace / "shuffled.csv"),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--out",
        str(scores_csv),
    )
    scores = pd.read_csv(scores_csv)
    assert list(scores.columns) == [
        "transaction_id",
        "score",
        "flagged",
        "model",
        "threshold",
        "anomaly_score",
        "anomaly_model",
    ]
    assert set(scores["model"]) == {"cards-xgboost:v0001"}
    assert set(scores["anomaly_model"]) == {"cards-anomaly:v0001"}
    assert scores["transaction_id"].tolist() == shuffled["transaction_id"].tolist()
    det = reg.load("cards-xgboost")
    assert np.array_equal(
        scores["flagged"].to_numpy(), (scores["score"] > det.threshold_).astype(int).to_numpy()
    )
    assert set(scores["threshold"]) == {det.threshold_}
    assert scores["anomaly_score"].between(0, 1).all()

    # The same rows in file order score the same (features do not depend on row order).
    _run(
        "score",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--out",
        str(workspace / "s2.csv"),
    )
    ordered = pd.read_csv(workspace / "s2.csv").set_index("transaction_id")
    same = np.isclose(
        ordered.loc[scores["transaction_id"], "score"].to_numpy(), scores["score"].to_numpy()
    )
    assert same.mean() > 0.999


@pytest.mark.slow
def test_anomaly_model_alone_gives_no_extra_column(workspace: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    models = workspace / "only-anomaly"
    _run(
        "train",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "anomaly",
        "--threshold",
        "fpr:0.02",
    )
    _run("score", "--data", str(data), "-m", str(models), "--out", str(workspace / "a.csv"))
    scores = pd.read_csv(workspace / "a.csv")
    assert list(scores.columns) == ["transaction_id", "score", "flagged", "model", "threshold"]
    assert 0.0 < scores["flagged"].mean() < 0.1


@pytest.mark.slow
def test_train_on_real_ulb_uses_the_first_16_hours(tmp_path: Path) -> None:
    if not ULB_DAY1.is_file():
        pytest.skip(f"the ULB day-1 file is not at {ULB_DAY1}")
    out = _run(
        "train",
        "--data",
        str(ULB_DAY1),
        "-m",
        str(tmp_path),
        "--detector",
        "logistic",
        "--threshold",
        "recall:0.8",
    )
    assert "average_precision" in out
    meta = Registry(tmp_path).get("cards-logistic").metadata
    assert meta["split"]["train_hours"] == 16.0
    assert meta["metrics"]["roc_auc"] > 0.88
    _run("score", "--data", str(ULB_DAY1), "-m", str(tmp_path), "--out", str(tmp_path / "s.csv"))
    scores = pd.read_csv(tmp_path / "s.csv")
    # The ULB table has no transaction ids.
    assert list(scores.columns) == ["score", "flagged", "model", "threshold"]
    assert len(scores) == 26_325


def test_bad_options_and_bad_rows_exit_with_a_message(workspace: Path, tmp_path: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    result = runner.invoke(
        app,
        ["cards", "train", "--data", str(data), "-m", str(tmp_path), "--threshold", "precision:2"],
    )
    assert result.exit_code == 2
    assert "unknown threshold strategy" in result.output

    result = runner.invoke(
        app, ["cards", "train", "--data", str(data), "-m", str(tmp_path), "--detector", "forest"]
    )
    assert result.exit_code == 2 and "unknown detector" in result.output

    bad = pd.read_csv(data, nrows=50, dtype={"amount": str})
    bad.loc[9, "amount"] = "lots"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(
        app,
        [
            "cards",
            "score",
            "--data",
            str(tmp_path / "bad.csv"),
            "-m",
            str(tmp_path),
            "--out",
            str(tmp_path / "x.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "no model" in result.output  # nothing trained in this registry yet

    result = runner.invoke(
        app, ["cards", "train", "--data", str(tmp_path / "bad.csv"), "-m", str(tmp_path)]
    )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "row 10" in text and "'amount'" in text
