"""``bench/_http.py`` builds its request from the model's own features, so it works with
any card registry (the quickstart's, trained on raw transactions), not only ULB's."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from _http import ULB_SAMPLE, http_latency, request_row, serve_in_thread  # noqa: E402


def _train(data: Path, models: Path, *extra: str) -> None:
    res = CliRunner().invoke(
        app,
        ["cards", "train", "--data", str(data), "-m", str(models), "--detector", "xgboost", *extra],
    )
    assert res.exit_code == 0, res.output


def _post_row(models: Path, row: str) -> dict[str, object]:
    from fraudlens.service.app import create_app

    server, thread, url = serve_in_thread(create_app(models_dir=models))
    try:
        return http_latency(
            url, row, 5, warmup=1, headers={"X-Model": "xgboost", "Accept": "text/csv"}
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_row_from_a_raw_transaction_registry(tmp_path: Path) -> None:
    data = tmp_path / "cards"
    res = CliRunner().invoke(
        app, ["cards", "simulate", "--out", str(data), "--customers", "80", "--days", "30"]
    )
    assert res.exit_code == 0, res.output
    models = tmp_path / "models"
    _train(data / "transactions.csv", models)
    names = Registry(models).get("cards-xgboost").metadata["feature_names"]
    assert "Amount" not in names and "V1" not in names  # not ULB's columns
    # Default: the model's own training file.
    row = request_row(str(models), "xgboost")
    assert len(row.split(",")) == len(names)
    out = _post_row(models, row)
    assert out["n"] == 5
    assert 0.0 <= float(str(out["sample"]).strip()) <= 1.0
    # The ULB sample cannot feed this model: the error names the missing features.
    if Path(ULB_SAMPLE).is_file():
        with pytest.raises(SystemExit, match="does not give cards-xgboost:v0001's features"):
            request_row(str(models), "xgboost", ULB_SAMPLE)


def test_row_from_a_ulb_registry(tmp_path: Path) -> None:
    if not Path(ULB_SAMPLE).is_file():
        pytest.skip(f"ULB sample not found at {ULB_SAMPLE}")
    small = tmp_path / "ulb.csv"
    pd.read_csv(ULB_SAMPLE).to_csv(small, index=False)
    models = tmp_path / "models"
    _train(small, models)
    small.unlink()  # the training file is gone: the ULB sample is the fallback
    row = request_row(str(models), "xgboost")
    first = pd.read_csv(ULB_SAMPLE, nrows=1)
    names = Registry(models).get("cards-xgboost").metadata["feature_names"]
    assert [float(v) for v in row.split(",")] == pytest.approx(first[names].iloc[0].tolist())
    assert float(str(_post_row(models, row)["sample"]).strip()) >= 0.0
