"""A missing optional dependency gives one line naming the extra and the pip command
(exit 2), never a traceback, on every CLI path that reaches one."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from _cli import run_cli

from fraudlens._optional import EXTRAS, install_command, missing_dependency, require
from fraudlens.errors import ConfigError, FraudlensError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT_EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]


def test_every_mapped_module_names_a_real_extra() -> None:
    for module, (extra, _package, _purpose) in EXTRAS.items():
        assert extra in PYPROJECT_EXTRAS, (module, extra)


def test_require_imports_or_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json").dumps([1]) == "[1]"
    monkeypatch.setitem(sys.modules, "ray", None)  # "not installed" for the import system
    with pytest.raises(MissingDependencyError) as err:
        require("ray", feature="fraudlens market score")
    exc = err.value
    assert isinstance(exc, FraudlensError) and isinstance(exc, ImportError)
    assert (exc.module, exc.extra) == ("ray", "ray")
    assert str(exc).startswith("fraudlens market score needs Ray, which is not installed")
    assert "'ray' extra" in str(exc) and install_command("ray") in str(exc)
    # An explicit extra wins for a module the table does not know.
    monkeypatch.setitem(sys.modules, "some_plugin", None)
    with pytest.raises(MissingDependencyError, match="'cloud' extra"):
        require("some_plugin", extra="cloud")
    # A module no extra provides is a bug: the original error stays.
    with pytest.raises(ModuleNotFoundError):
        require("some_plugin")


def test_missing_dependency_finds_the_import_error_behind_a_wrapper() -> None:
    try:
        try:
            raise ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
        except ModuleNotFoundError:
            raise ConfigError("cannot open database postgresql+psycopg://h/db") from None
    except ConfigError as exc:
        found = missing_dependency(exc, feature="fraudlens db upgrade")
    assert found is not None and found.extra == "store"
    assert missing_dependency(ModuleNotFoundError("x", name="not_an_extra")) is None


def test_install_command_is_this_interpreters_pip() -> None:
    cmd = install_command("ray")
    assert re.search(r"python[0-9.]* -m pip install ", cmd)
    assert "[ray]" in cmd


def _assert_one_line_error(proc: object, extra: str, package: str) -> None:
    rc, err = proc.returncode, proc.stderr  # type: ignore[attr-defined]
    assert rc == 2, (rc, err, proc.stdout)  # type: ignore[attr-defined]
    assert "Traceback" not in err and "Traceback" not in proc.stdout  # type: ignore[attr-defined]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    line = lines[0]
    assert f"needs {package}, which is not installed" in line
    assert f"add the '{extra}' extra with " in line
    assert re.search(r"-m pip install .*\[" + extra + r"\]'?$", line), line
    assert extra in PYPROJECT_EXTRAS


def test_ray_engine(market_dir: Path, market_models: Path, tmp_path: Path) -> None:
    proc = run_cli(
        [
            "market", "score",
            "--klines", str(market_dir / "klines.csv"),
            "--trades", str(market_dir / "trades.csv"),
            "--out", str(tmp_path / "s.csv"),
            "-m", str(market_models),
            "--engine", "ray",
        ],
        block=["ray"],
    )  # fmt: skip
    _assert_one_line_error(proc, "ray", "Ray")
    assert "fraudlens market score needs Ray" in proc.stderr
    assert not (tmp_path / "s.csv").exists()


def test_cnn_training_without_torch(market_dir: Path, tmp_path: Path) -> None:
    proc = run_cli(
        ["market", "train", "--data", str(market_dir), "-m", str(tmp_path / "m"),
         "--detector", "cnn", "--epochs", "1"],
        block=["torch"],
    )  # fmt: skip
    _assert_one_line_error(proc, "train", "PyTorch")


@pytest.mark.parametrize(
    ("url", "blocked", "package"),
    [
        ("sqlite:///{tmp}/x.db", ["sqlalchemy"], "SQLAlchemy"),
        ("postgresql://127.0.0.1:1/test", ["psycopg"], "psycopg"),
        ("mysql://root@127.0.0.1:1/test", ["pymysql"], "PyMySQL"),
    ],
)
def test_store_and_database_drivers(
    url: str, blocked: list[str], package: str, tmp_path: Path
) -> None:
    proc = run_cli(["db", "upgrade", "--db", url.format(tmp=tmp_path)], block=blocked)
    _assert_one_line_error(proc, "store", package)


@pytest.mark.parametrize(
    ("queue", "blocked", "package"),
    [
        ("redis://127.0.0.1:1/0", ["redis"], "redis-py"),
        ("sqs://checks?region=us-east-1", ["boto3", "botocore"], "boto3"),
    ],
)
def test_queues(queue: str, blocked: list[str], package: str) -> None:
    proc = run_cli(["enqueue", "acct-1", "--queue", queue], block=blocked)
    _assert_one_line_error(proc, "queues", package)


@pytest.mark.parametrize(("blocked", "package"), [("uvicorn", "uvicorn"), ("fastapi", "FastAPI")])
def test_serve(blocked: str, package: str, market_models: Path) -> None:
    proc = run_cli(["serve", "-m", str(market_models), "--port", "1"], block=[blocked])
    _assert_one_line_error(proc, "serve", package)


def test_worker_metrics(market_models: Path, tmp_path: Path) -> None:
    proc = run_cli(
        ["worker", "--queue", f"sqlite:///{tmp_path / 'q.db'}",
         "--db", f"sqlite:///{tmp_path / 'db.db'}", "-m", str(market_models),
         "--metrics-port", "0", "--idle-exit", "0.1"],
        block=["prometheus_client"],
    )  # fmt: skip
    _assert_one_line_error(proc, "serve", "prometheus-client")


def test_s3_sink(market_models: Path) -> None:
    proc = run_cli(
        ["cards", "process", "--source", "generate", "--sink", "s3://bucket/scores",
         "-m", str(market_models), "--limit", "1"],
        block=["s3fs"],
    )  # fmt: skip
    _assert_one_line_error(proc, "cloud", "s3fs")


def test_smote_oversampling(card_file: Path, tmp_path: Path) -> None:
    proc = run_cli(
        ["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
         "--detector", "logistic", "--oversample", "smote", "--split", "random"],
        block=["imblearn"],
    )  # fmt: skip
    _assert_one_line_error(proc, "imbalance", "imbalanced-learn")
