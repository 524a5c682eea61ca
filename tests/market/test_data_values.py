"""Market values that parse but mean nothing: timestamps written as words pandas reads as
the time of reading (``now``, ``today``) in files and JSON records, and NaN among the
numbers of JSON records (it had been reported as missing). Each is a DataError naming
the file, row and column; the CLI says so in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.errors import DataError
from fraudlens.market.data import load_klines, load_trades, validate_klines, validate_trades
from fraudlens.market.simulate import simulate

KLINES_CSV = """symbol,ts,open,high,low,close,volume
AAA,2026-03-02T14:30:00Z,10.0,10.5,9.8,10.2,1000
AAA,2026-03-02T14:35:00Z,10.2,10.4,10.0,10.1,800
AAA,2026-03-02T14:40:00Z,10.1,10.3,9.9,10.0,900
"""

TRADES_CSV = """trade_id,account_id,symbol,ts,side,price,quantity
000001,000123,AAA,2026-03-02T14:31:10Z,buy,10.1,5
000002,000123,AAA,2026-03-02T14:36:00Z,sell,10.3,5
"""


def _with(text: str, row: int, column: str, value: str) -> str:
    lines = text.strip("\n").split("\n")
    cells = lines[row].split(",")
    cells[lines[0].split(",").index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("word", ["now", "today"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clock_words_in_files(tmp_path: Path, word: str, fmt: str) -> None:
    for name, text, load in (
        ("klines", KLINES_CSV, load_klines),
        ("trades", TRADES_CSV, load_trades),
    ):
        path = tmp_path / f"{name}.{fmt}"
        csv = tmp_path / f"{name}.csv"
        csv.write_text(_with(text, 2, "ts", word))
        if fmt == "parquet":
            pd.read_csv(csv, dtype=str).to_parquet(path)
        with pytest.raises(DataError) as info:
            load(path)
        err = info.value
        assert (err.file, err.row, err.column) == (str(path), 2, "ts")
        assert f"'{word}' is a word read as the time of reading" in str(err)


def test_clock_words_in_records() -> None:
    data = simulate(4, seed=0, days=1)
    for frame, check in ((data.klines, validate_klines), (data.trades, validate_trades)):
        records = frame.assign(ts=frame["ts"].map(pd.Timestamp.isoformat)).astype(object)
        records.loc[3, "ts"] = "today"
        with pytest.raises(DataError) as info:
            check(records, "records")
        assert (info.value.row, info.value.column) == (4, "ts")


def test_timestamps_with_digits_still_parse(tmp_path: Path) -> None:
    """Short ISO-8601 forms (a date alone, a year and month) are no words."""
    path = tmp_path / "k.csv"
    path.write_text(_with(_with(KLINES_CSV, 1, "ts", "2026-03-02"), 2, "ts", "2026-03-03"))
    k = load_klines(path)
    assert k["ts"].iloc[0] == pd.Timestamp("2026-03-02", tz="UTC")


def test_nan_among_record_numbers_is_not_finite() -> None:
    """JSON records: null is missing, NaN and Infinity are numbers that are not finite."""
    data = simulate(4, seed=0, days=1)
    trades = data.trades.copy()
    trades["price"] = trades["price"].astype(object)
    trades.loc[2, "price"] = float("nan")
    with pytest.raises(DataError) as info:
        validate_trades(trades, "trades")
    assert (info.value.row, info.value.column) == (3, "price")
    assert info.value.reason == "nan is not a finite number"
    trades.loc[1, "price"] = None
    with pytest.raises(DataError) as info:
        validate_trades(trades, "trades")
    assert (info.value.row, info.value.reason) == (2, "missing price")
    klines = data.klines.copy()
    klines["volume"] = klines["volume"].astype(object)
    klines.loc[0, "volume"] = np.float64("inf")
    with pytest.raises(DataError) as info:
        validate_klines(klines, "klines")
    assert (info.value.row, info.value.column) == (1, "volume")
    assert info.value.reason == "inf is not a finite number"


def test_the_cli_names_file_row_and_column(tmp_path: Path) -> None:
    klines = tmp_path / "klines.csv"
    klines.write_text(_with(KLINES_CSV, 3, "ts", "now"))
    trades = tmp_path / "trades.csv"
    trades.write_text(TRADES_CSV)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudlens.cli",
            "market",
            "render",
            "--klines",
            str(klines),
            "--trades",
            str(trades),
            "--account",
            "000123",
            "--out",
            str(tmp_path / "a.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0, out
    assert f"file {klines}, row 3, column 'ts'" in out, out
    assert "'now' is a word read as the time of reading" in out
    assert "Traceback" not in out
    assert not (tmp_path / "a.png").exists()
