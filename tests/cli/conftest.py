"""Shared fixtures of the CLI tests: a small simulated market folder and a registry
with a feature detector trained on it (through the CLI itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudlens.cli import app


@pytest.fixture(scope="session")
def market_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-market") / "data"
    res = CliRunner().invoke(
        app, ["market", "simulate", "--out", str(out), "--accounts", "80", "--seed", "5"]
    )
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="session")
def market_models(tmp_path_factory: pytest.TempPathFactory, market_dir: Path) -> Path:
    models = tmp_path_factory.mktemp("cli-models") / "models"
    res = CliRunner().invoke(
        app, ["market", "train", "--data", str(market_dir), "--model-dir", str(models)]
    )
    assert res.exit_code == 0, res.output
    return models


@pytest.fixture(scope="session")
def card_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-cards")
    res = CliRunner().invoke(
        app, ["cards", "simulate", "--out", str(out), "--customers", "60", "--days", "25"]
    )
    assert res.exit_code == 0, res.output
    return out / "transactions.csv"
