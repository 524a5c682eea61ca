"""``cards train --drop COL``: feature-table columns that are not read at all (a card
holder's name or address, or a column of junk), recorded with the model so that scoring
and evaluation skip them too. Before, every column of a feature table was a feature."""

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


def _table(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    notes = rng.normal(size=n).round(3).astype(object)
    notes[7] = "unknown"  # one word in a column of numbers: refused when it is read
    return pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=n, freq="1min").astype(str),
            "amount": (rng.lognormal(3.0, 1.0, n) * np.where(fraud, 3.0, 1.0)).round(2),
            "holder": rng.choice([f"holder {i}" for i in range(40)], n),
            "notes": notes,
            "label": fraud.astype(int),
        }
    )


def test_dropped_columns_are_neither_features_nor_checked() -> None:
    df = _table(50)
    with pytest.raises(DataError) as err:
        validate_frame(df, "features")
    assert (err.value.row, err.value.column) == (8, "notes")
    table = validate_frame(df, "features", drop=["notes", "holder"])
    assert table.feature_names == ["amount"]
    # Scoring rows that come without a dropped column is no error (drop_strict=False).
    t2 = validate_frame(df.drop(columns="notes"), "features", drop=["notes"], drop_strict=False)
    assert t2.feature_names == ["amount", "holder"]


@pytest.mark.parametrize(
    ("drop", "message", "column"),
    [
        (["nope"], "column to drop not found (the table has ts, amount, holder", "nope"),
        (["label"], "cannot drop 'label': it is the table's label column", "label"),
        (["ts"], "cannot drop 'ts': it is the table's time column", "ts"),
    ],
)
def test_bad_drops_name_the_column(drop: list[str], message: str, column: str) -> None:
    with pytest.raises(DataError) as err:
        validate_frame(_table(20), "features", "t.csv", drop=drop)
    assert message in err.value.reason and err.value.column == column
    assert err.value.file == "t.csv"


def test_only_feature_tables_drop_columns() -> None:
    ulb = pd.DataFrame({"Time": [0.0], **{f"V{i}": [0.0] for i in range(1, 29)}, "Amount": [1.0]})
    with pytest.raises(DataError, match="dropping columns is for feature tables; this is a ulb"):
        validate_frame(ulb, "auto", drop=["V1"])


def test_cli_trains_without_the_dropped_columns_and_scores_without_them(tmp_path: Path) -> None:
    data = tmp_path / "book.csv"
    _table().to_csv(data, index=False)
    runner = CliRunner()
    models = tmp_path / "m"
    base = ["cards", "train", "--data", str(data), "-m", str(models)]
    res = runner.invoke(app, base)
    assert res.exit_code == 2 and "row 8" in res.output and "notes" in res.output
    res = runner.invoke(app, [*base, "--drop", "notes,holder"])
    assert res.exit_code == 0, res.output
    assert "dropped, not read: notes, holder" in " ".join(res.output.split())
    meta = json.loads((models / "cards-xgboost" / "v0001" / "metadata.json").read_text())
    assert meta["dropped_columns"] == ["notes", "holder"]
    assert meta["feature_names"] == ["amount"]
    # The same file, junk and all, scores and evaluates: the model's dropped columns are
    # skipped there too.
    out = tmp_path / "scores.csv"
    res = runner.invoke(app, ["cards", "score", "-d", str(data), "-m", str(models), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == 2400
    res = runner.invoke(
        app, ["cards", "evaluate", "-d", str(data), "-m", str(models), "-o", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    # Rows without the dropped columns score as well.
    bare = tmp_path / "bare.csv"
    _table().drop(columns=["notes", "holder"]).to_csv(bare, index=False)
    res = runner.invoke(app, ["cards", "score", "-d", str(bare), "-m", str(models), "-o", str(out)])
    assert res.exit_code == 0, res.output
    # --drop repeated adds names; a name the file lacks is refused before training.
    res = runner.invoke(app, [*base, "--drop", "notes", "--drop", "nope"])
    assert res.exit_code == 2 and "column to drop not found" in " ".join(res.output.split())
