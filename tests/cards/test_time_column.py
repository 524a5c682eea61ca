"""``cards train --time-column``: a feature table timed by a column of its own (a step in
hours, seconds since a start, date-times) is split in time by it, and the column is no
feature. Before, such a table could only be split at random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlens.cards.data import validate_frame
from fraudlens.cli import app
from fraudlens.errors import DataError


def _steps(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    return pd.DataFrame(
        {
            "step": np.sort(rng.integers(1, 721, n)),  # hours over 30 days
            "amount": rng.lognormal(3.0, 1.0, n) * np.where(fraud, 2.5, 1.0),
            "f": rng.normal(size=n) + fraud,
            "isFraud": fraud.astype(int),
        }
    )


def test_a_time_column_times_the_rows_and_is_no_feature() -> None:
    df = _steps(10)
    table = validate_frame(df, "features", time_column="step", time_unit=3600.0)
    assert table.feature_names == ["amount", "f"]
    assert table.time is not None
    np.testing.assert_allclose(table.time.to_numpy(), df["step"].to_numpy() * 3600.0)
    dated = df.assign(when=pd.date_range("2026-01-01", periods=10, freq="h").astype(str))
    t2 = validate_frame(dated, "features", time_column="when")
    assert str(t2.time.dtype).startswith("datetime64") and "when" not in t2.feature_names
    with pytest.raises(DataError, match="time column not found") as err:
        validate_frame(df, "features", time_column="TransactionDT")
    assert err.value.column == "TransactionDT"
    with pytest.raises(DataError) as err:
        validate_frame(df.assign(step=["x"] + [1] * 9), "features", time_column="step")
    assert (err.value.row, err.value.column) == (1, "step")
    ulb = pd.DataFrame({"Time": [0.0], **{f"V{i}": [0.0] for i in range(1, 29)}, "Amount": [1.0]})
    with pytest.raises(DataError, match="time column is for feature tables"):
        validate_frame(ulb, "ulb", time_column="Time")


def test_cli_splits_a_feature_table_by_its_time_column(tmp_path: Path) -> None:
    data = tmp_path / "steps.csv"
    _steps().to_csv(data, index=False)
    runner = CliRunner()
    models = tmp_path / "m"
    res = runner.invoke(app, ["cards", "train", "--data", str(data), "-m", str(models)])
    assert res.exit_code == 2 and "needs a Time or ts column" in " ".join(res.output.split())
    res = runner.invoke(
        app,
        [
            *("cards", "train", "--data", str(data), "-m", str(models)),
            *("--time-column", "step", "--time-unit", "hours"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    # The last third of the 720 hours held out, whole hours.
    assert "windows: train 1 h .. 481 h, held out 481 h .. 721 h" in out
    meta = json.loads((models / "cards-xgboost" / "v0001" / "metadata.json").read_text())
    assert meta["time_column"] == "step" and meta["time_unit"] == "hours"
    assert meta["feature_names"] == ["amount", "f"]
    # evaluate redoes the same split by the same column.
    res = runner.invoke(
        app, ["cards", "evaluate", "-d", str(data), "-m", str(models), "-o", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["metrics"]["n"] == meta["metrics"]["validation"]["rows"]
    assert report["metrics"]["roc_auc"] == pytest.approx(meta["metrics"]["validation"]["roc_auc"])


def _dated(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A card table as public ones come: a column of transaction date-times, a birth date
    (dates only), no ts."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    when = pd.Timestamp("2026-02-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 30 * 86_400, n)), "s"
    )
    return pd.DataFrame(
        {
            "trans_date_trans_time": when.strftime("%Y-%m-%d %H:%M:%S"),
            "amt": (rng.lognormal(3.0, 1.0, n) * np.where(fraud, 3.0, 1.0)).round(2),
            "dob": rng.choice(["1960-05-01", "1975-11-23", "1990-02-14", "2001-07-30"], n),
            "is_fraud": fraud.astype(int),
        }
    )


def test_auto_finds_the_one_column_of_date_times() -> None:
    df = _dated(40)
    table = validate_frame(df, "features", time_column="auto")
    assert table.time_column == "trans_date_trans_time"
    assert table.feature_names == ["amt", "dob"]  # dates only: a birth date times nothing
    assert table.time is not None and str(table.time.dtype).startswith("datetime64")
    # Parquet-style date-times (a datetime column) as well.
    typed = df.assign(trans_date_trans_time=pd.to_datetime(df["trans_date_trans_time"]))
    assert validate_frame(typed, "features", time_column="auto").time_column == (
        "trans_date_trans_time"
    )
    # None to find: no time column, as before.
    assert (
        validate_frame(
            df.drop(columns="trans_date_trans_time"), "features", time_column="auto"
        ).time
        is None
    )
    # A table with ts is timed by it.
    with_ts = df.rename(columns={"trans_date_trans_time": "ts"})
    assert validate_frame(with_ts, "features", time_column="auto").time_column is None
    with_time = df.assign(Time=np.arange(40.0))
    timed = validate_frame(with_time, "features", time_column="auto")
    assert timed.time_column is None and timed.time is not None and timed.time.name == "Time"
    # Two columns of date-times: which one times the rows is the user's to say.
    two = df.assign(posted=df["trans_date_trans_time"])
    with pytest.raises(DataError, match="trans_date_trans_time, posted all hold date-times"):
        validate_frame(two, "features", "t.csv", time_column="auto")


def test_cli_times_a_table_by_its_column_of_date_times(tmp_path: Path) -> None:
    data = tmp_path / "dated.csv"
    _dated().to_csv(data, index=False)
    models = tmp_path / "m"
    runner = CliRunner()
    res = runner.invoke(app, ["cards", "train", "--data", str(data), "-m", str(models)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "timed by its column of date-times 'trans_date_trans_time'" in out
    assert "held out 2026-02-21" in out  # the last third of 30 days, whole hours
    meta = json.loads((models / "cards-xgboost" / "v0001" / "metadata.json").read_text())
    assert meta["time_column"] == "trans_date_trans_time" and meta["feature_names"] == [
        "amt",
        "dob",
    ]
    res = runner.invoke(
        app, ["cards", "evaluate", "-d", str(data), "-m", str(models), "-o", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["metrics"]["n"] == meta["metrics"]["validation"]["rows"]
