"""Hostile card files: values too large for the models' 32-bit floats and a header of a
million columns are refused with one DataError naming the file (and the row and column),
never a crash in the model or gigabytes of memory."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.cards.data import load_table
from fraudlens.errors import DataError


def _table(n: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cols = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
    df = pd.DataFrame(rng.normal(size=(n, len(cols))), columns=cols)
    df["Time"] = np.arange(n, dtype=float)
    df["Amount"] = 10.0
    df["Class"] = [0, 1] * (n // 2)
    return df


@pytest.mark.parametrize("value", [1e308, -1e39])
def test_values_beyond_float32_name_row_and_column(tmp_path: Path, value: float) -> None:
    df = _table()
    df.loc[4, "V3"] = value
    path = tmp_path / "cards.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="too large") as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 5, "V3")
    df.loc[4, "V3"] = float(np.finfo(np.float32).max)
    df.to_csv(path, index=False)
    assert len(load_table(path)) == 20


def test_a_header_of_a_million_columns_is_refused_unread(tmp_path: Path) -> None:
    lines = _table().to_csv(index=False).splitlines()
    path = tmp_path / "wide.csv"
    path.write_text(lines[0] + "," * 1_000_000 + "\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match="at most 1,024") as info:
        load_table(path)
    assert info.value.row == 0


def _raw(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "ts": pd.date_range("2024-04-01", periods=n, freq="h").astype(str),
            "customer_id": [f"c{i % 3}" for i in range(n)],
            "terminal_id": [f"m{i % 2}" for i in range(n)],
            "amount": 12.5,
            "label": 0,
        }
    )


@pytest.mark.parametrize("column", ["transaction_id", "customer_id", "terminal_id"])
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("ab\x01c", "control character (U+0001 at position 3)"),
        ("x" * 100_000, "has 100000 characters; at most 64"),
        ("\u202eevil", "invisible formatting character"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ids_follow_the_id_rule(
    tmp_path: Path, column: str, value: str, words: str, suffix: str
) -> None:
    df = _raw()
    df.loc[5, column] = value
    path = tmp_path / f"raw{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    with pytest.raises(DataError, match=re.escape(words)) as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 6, column)
    assert len(str(info.value)) < 300  # the value is not repeated


@pytest.mark.parametrize(
    ("value", "words"),
    [
        # read by pandas as the time of reading: the rows had been stamped with it
        ("now", "unparseable timestamp: 'now'"),
        ("today", "unparseable timestamp: 'today'"),
        # past the nanosecond clock: an OutOfBoundsDatetime traceback
        ("3000-01-01", "timestamp 3000-01-01T00:00:00+00:00 is outside the dates"),
        ("0001-01-01T00:00:00Z", "is outside the dates fraudlens reads"),
        ("1899-12-31T23:59:59Z", "is outside the dates fraudlens reads (1900-01-01 to 2200"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_timestamps_a_clock_word_or_out_of_range_are_named(
    tmp_path: Path, value: str, words: str, suffix: str
) -> None:
    df = _raw()
    df.loc[5, "ts"] = value
    if suffix == ".parquet" and value[0].isdigit():
        # a timestamp column, in microseconds: the dates it holds are past the clock too
        df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]"
        )
    path = tmp_path / f"raw{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    with pytest.raises(DataError, match=re.escape(words)) as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 6, "ts")
    df.loc[5, "ts"] = "2199-12-31T23:59:59Z"  # the last second read
    df["ts"] = df["ts"].astype(str)
    df.to_csv(tmp_path / "late.csv", index=False)
    assert len(load_table(tmp_path / "late.csv")) == 8


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("amount", "9" * 100_000 + "x", "not a number: '999"),
        ("ts", "2" * 100_000, "unparseable timestamp: '222"),
        ("label", "1" * 100_000, "label must be 0, 1 or blank (unknown), got '111"),
    ],
)
def test_a_huge_bad_cell_is_named_not_repeated(
    tmp_path: Path, column: str, value: str, words: str
) -> None:
    """The error had repeated the whole cell: a 100 KB line for a 100 KB value."""
    df = _raw().astype({column: object})
    df.loc[5, column] = value
    path = tmp_path / "raw.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=re.escape(words)) as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 6, column)
    assert len(str(info.value)) < 300 and str(info.value).endswith("...")


def test_integer_ids_still_load(tmp_path: Path) -> None:
    df = _raw()
    df["transaction_id"] = range(100, 108)
    df["customer_id"] = 7
    path = tmp_path / "raw.csv"
    df.to_csv(path, index=False)
    assert len(load_table(path)) == 8
    df["customer_id"] = df["customer_id"].astype(object)
    df.loc[2, "customer_id"] = ""  # a missing cell in a CSV: named as missing
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="missing value") as info:
        load_table(path)
    assert (info.value.row, info.value.column) == (3, "customer_id")


def test_a_column_named_twice_is_refused_naming_both(tmp_path: Path) -> None:
    """pandas renamed the second column ``Time.1`` and the table loaded."""
    text = _table().to_csv(index=False).replace("Time,V1,", "Time,Time,", 1)
    path = tmp_path / "dup.csv"
    path.write_text(text)
    with pytest.raises(DataError, match="columns 1 and 2 are both named 'Time'") as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 0, "Time")


def test_a_parquet_column_named_twice_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = _table()
    arrays = [pa.array(df[c]) for c in df.columns] + [pa.array(df["V5"])]
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays(arrays, names=[*df.columns, "V5"]), path)
    with pytest.raises(DataError, match="columns 6 and 32 are both named 'V5'"):
        load_table(path)


def test_booleans_in_a_numeric_column_are_refused(tmp_path: Path) -> None:
    """A column of True/False (read as bool) or a True among numbers (a folder of files)
    was taken as 1.0."""
    df = _table()
    df["Amount"] = True
    path = tmp_path / "bool.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="not a number: True") as info:
        load_table(path)
    assert (info.value.row, info.value.column) == (1, "Amount")
    folder = tmp_path / "parts"
    folder.mkdir()
    _table().to_parquet(folder / "a.parquet")
    df.iloc[:4].to_parquet(folder / "b.parquet")
    with pytest.raises(DataError, match="not a number: True") as info:
        load_table(folder)
    assert (info.value.file, info.value.row, info.value.column) == (
        str(folder / "b.parquet"),
        1,
        "Amount",
    )


@pytest.mark.parametrize("name", ["cards.json", "cards.txt", "cards"])
def test_an_unsupported_file_type_names_the_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _table().to_json(path, orient="records")
    with pytest.raises(DataError, match=r"unsupported file type; expected CSV .* or Parquet"):
        load_table(path)


@pytest.mark.parametrize("kind", ["json", "parquet", "gzip"])
def test_content_that_is_not_csv_is_named(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "cards.csv"
    if kind == "json":
        _table().to_json(path, orient="records")
    elif kind == "parquet":
        _table().to_parquet(path)
    else:
        _table().to_csv(path, index=False, compression="gzip")
    with pytest.raises(DataError, match=f"(?i)not CSV text: the file .*{kind[:4]}"):
        load_table(path)


def test_a_row_with_more_values_than_the_header_names_its_row(tmp_path: Path) -> None:
    # It had been pandas' "Error tokenizing data. C error: Expected 31 fields in line 8,
    # saw 32", with no row named.
    path = tmp_path / "cards.csv"
    lines = _table().to_csv(index=False).splitlines()
    lines[7] += ",9"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_table(path)
    assert (info.value.file, info.value.row) == (str(path), 7)
    assert "32 values, but the header row names 31 columns (line 8 of the file)" in str(info.value)


def test_a_row_with_fewer_values_than_the_header_names_its_row(tmp_path: Path) -> None:
    # A row that lost its last value (the label) had been read as unlabelled; one that
    # lost more, as "missing value" in its last column.
    path = tmp_path / "cards.csv"
    text = _table().to_csv(index=False)
    lines = text.splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 7, None)
    assert "30 values, but the header row names 31 columns" in str(info.value)
    # An empty label (unknown) is a value: that file reads.
    lines = text.splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0] + ","
    path.write_text("\n".join(lines) + "\n")
    table = load_table(path)
    assert len(table.X) == 20 and table.known is not None and int((~table.known).sum()) == 1


def test_a_delimiter_ending_every_row_is_read_as_if_absent(tmp_path: Path) -> None:
    # pandas took each row's first value as the index and shifted every column left.
    plain, trailing = tmp_path / "plain.csv", tmp_path / "trailing.csv"
    text = _table().to_csv(index=False)
    plain.write_text(text)
    lines = text.splitlines()
    trailing.write_text("\n".join([lines[0], *(line + "," for line in lines[1:])]) + "\n")
    a, b = load_table(plain), load_table(trailing)
    pd.testing.assert_frame_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)


def test_an_extra_value_in_the_first_row_names_that_row(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    lines = _table().to_csv(index=False).splitlines()
    lines[1] += ",9"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="32 values, but the header row names 31 columns") as info:
        load_table(path)
    assert (info.value.file, info.value.row) == (str(path), 1)
