"""Loaders, validation, file round trips and the reference importer."""

from __future__ import annotations

import gzip
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _reference_format import BUYS, SELLS, write_reference  # type: ignore[import-not-found]
from fraudlens.errors import DataError
from fraudlens.market.data import (
    MarketData,
    attach_bars,
    import_reference,
    load_klines,
    load_labels,
    load_market,
    load_market_files,
    load_trades,
    validate_klines,
    validate_labels,
    validate_trades,
    write_market,
)
from fraudlens.market.simulate import simulate

KLINES_CSV = """symbol,ts,open,high,low,close,volume
AAA,2026-03-02T14:30:00Z,10.0,10.5,9.8,10.2,1000
AAA,2026-03-02T14:35:00Z,10.2,10.4,10.0,10.1,800
AAA,2026-03-02T14:40:00Z,10.1,10.3,9.9,10.0,900
BBB,2026-03-02T14:30:00Z,200.0,201.0,199.0,200.5,50
"""

TRADES_CSV = """trade_id,account_id,symbol,ts,side,price,quantity
000001,000123,AAA,2026-03-02T14:31:10Z,buy,10.1,5
000002,000123,AAA,2026-03-02T14:36:00Z,sell,10.3,5
000003,000777,BBB,2026-03-02T14:34:59.999Z,BUY,200.2,1
000004,000777,AAA,2026-03-02T14:44:00Z,Sell,10.0,2
"""

LABELS_CSV = """account_id,label,kind
000123,0,normal
000777,1,takeover
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _edit(text: str, row: int, column: str, value: str) -> str:
    """Replace one cell of a small CSV (row 1 = first data row)."""
    lines = text.strip("\n").split("\n")
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _expect(exc: pytest.ExceptionInfo[DataError], file: Path, row: int | None, column: str) -> None:
    err = exc.value
    assert err.file == str(file)
    assert err.row == row
    assert err.column == column
    text = str(err)
    assert str(file) in text
    assert (f"row {row}" in text) if row is not None else ("row" not in text.split(":")[0])
    assert repr(column) in text


# --------------------------------------------------------------------- happy path


def test_load_valid_files_normalises_types(tmp_path: Path) -> None:
    k = load_klines(_write(tmp_path / "klines.csv", KLINES_CSV))
    t = load_trades(_write(tmp_path / "trades.csv", TRADES_CSV), klines=k)
    lab = load_labels(_write(tmp_path / "labels.csv", LABELS_CSV))
    assert str(k["ts"].dtype) == "datetime64[ns, UTC]"
    assert str(t["ts"].dtype) == "datetime64[ns, UTC]"
    assert k["high"].dtype == np.float64 and t["quantity"].dtype == np.float64
    # Leading zeros of ids survive; side is lower-cased.
    assert t["trade_id"].tolist() == ["000001", "000002", "000003", "000004"]
    assert t["account_id"].iloc[0] == "000123"
    assert t["side"].tolist() == ["buy", "sell", "buy", "sell"]
    assert t["ts"].iloc[2] == pd.Timestamp("2026-03-02T14:34:59.999Z")
    assert lab["label"].tolist() == [0, 1] and lab["label"].dtype == np.int64
    assert lab["kind"].tolist() == ["normal", "takeover"]


def test_timestamps_without_zone_are_utc_and_offsets_convert() -> None:
    df = pd.read_csv(pd.io.common.StringIO(KLINES_CSV), dtype={"ts": str})
    df.loc[0, "ts"] = "2026-03-02 14:30:00"
    df.loc[3, "ts"] = "2026-03-02T09:30:00-05:00"
    k = validate_klines(df)
    assert k["ts"].iloc[0] == pd.Timestamp("2026-03-02T14:30:00Z")
    assert k["ts"].iloc[3] == pd.Timestamp("2026-03-02T14:30:00Z")


def test_load_market_folder_and_files(tmp_path: Path) -> None:
    _write(tmp_path / "klines.csv", KLINES_CSV)
    _write(tmp_path / "trades.csv", TRADES_CSV)
    _write(tmp_path / "labels.csv", LABELS_CSV)
    data = load_market(tmp_path, require_labels=True)
    assert data.account_ids.tolist() == ["000123", "000777"]
    assert data.y().tolist() == [0, 1]
    # Sorted: k-lines by (symbol, ts), trades by ts.
    assert data.trades["ts"].is_monotonic_increasing
    same = load_market_files(tmp_path / "klines.csv", tmp_path / "trades.csv")
    assert same.labels is None
    pd.testing.assert_frame_equal(same.trades, data.trades)


def test_load_market_missing_file(tmp_path: Path) -> None:
    _write(tmp_path / "klines.csv", KLINES_CSV)
    with pytest.raises(DataError, match="no trades file") as exc:
        load_market(tmp_path)
    assert exc.value.file == str(tmp_path)
    _write(tmp_path / "trades.csv", TRADES_CSV)
    with pytest.raises(DataError, match="no labels file"):
        load_market(tmp_path, require_labels=True)


def test_load_market_unlabelled_account(tmp_path: Path) -> None:
    _write(tmp_path / "klines.csv", KLINES_CSV)
    _write(tmp_path / "trades.csv", TRADES_CSV)
    _write(tmp_path / "labels.csv", "account_id,label\n000123,0\n")
    assert load_market(tmp_path).labels is not None
    with pytest.raises(DataError, match="1 account with trades has no label") as exc:
        load_market(tmp_path, require_labels=True)
    assert exc.value.column == "account_id"
    # y() of data loaded without requiring labels: "1 account has", "2 accounts have".
    data = load_market(tmp_path)
    with pytest.raises(ValueError, match=r"^1 account has no label, e\.g\. \['000777'\]$"):
        data.y()
    _write(tmp_path / "labels.csv", "account_id,label\n999999,1\n")
    with pytest.raises(ValueError, match=r"^2 accounts have no label, e\.g\. "):
        load_market(tmp_path).y()


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_write_and_load_round_trip(tmp_path: Path, fmt: str) -> None:
    data = simulate(60, seed=4, n_symbols=6, days=2)
    paths = write_market(data, tmp_path, fmt=fmt)
    assert set(paths) == {"klines", "trades", "labels"}
    assert all(p.is_file() and p.name.endswith(fmt) for p in paths.values())
    if fmt == "csv":
        first = paths["trades"].read_text().splitlines()[1]
        # ISO-8601 in UTC with a Z.
        assert "T" in first.split(",")[3] and first.split(",")[3].endswith("Z")
    back = load_market(tmp_path, require_labels=True)
    pd.testing.assert_frame_equal(back.klines, data.klines)
    pd.testing.assert_frame_equal(back.trades, data.trades)
    pd.testing.assert_frame_equal(back.labels, data.labels)


def test_two_formats_in_one_folder_is_ambiguous(tmp_path: Path) -> None:
    data = simulate(12, seed=1, n_symbols=3, days=1)
    write_market(data, tmp_path, fmt="csv")
    write_market(data, tmp_path, fmt="parquet")
    with pytest.raises(DataError, match="more than one klines file"):
        load_market(tmp_path)


# --------------------------------------------------------------------- errors


def test_error_high_below_low(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", _edit(KLINES_CSV, 2, "high", "9.5"))
    with pytest.raises(DataError, match="below low") as exc:
        load_klines(path)
    _expect(exc, path, 2, "high")


def test_error_open_outside_range_and_negative_volume(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", _edit(KLINES_CSV, 3, "open", "10.9"))
    with pytest.raises(DataError, match="outside") as exc:
        load_klines(path)
    _expect(exc, path, 3, "open")
    path = _write(tmp_path / "k2.csv", _edit(KLINES_CSV, 4, "volume", "-1"))
    with pytest.raises(DataError, match="volume must be >= 0") as exc:
        load_klines(path)
    _expect(exc, path, 4, "volume")


def test_error_unparseable_timestamp(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", _edit(KLINES_CSV, 3, "ts", "03/02/2026 2pm"))
    with pytest.raises(DataError, match="cannot parse") as exc:
        load_klines(path)
    _expect(exc, path, 3, "ts")
    assert "03/02/2026 2pm" in str(exc.value)


@pytest.mark.parametrize("value", ["1772434800000", "1772434800", "1772434800.5"])
def test_an_epoch_time_is_refused_with_what_to_write_instead(tmp_path: Path, value: str) -> None:
    """Exchange exports often carry epoch numbers (seconds or milliseconds); they are not
    read in a guessed unit, and the error says so, with the ISO-8601 form to write."""
    path = _write(tmp_path / "k.csv", _edit(KLINES_CSV, 2, "ts", value))
    with pytest.raises(DataError, match="is a number, not an ISO-8601 timestamp") as exc:
        load_klines(path)
    _expect(exc, path, 2, "ts")
    assert value in str(exc.value) and "epoch times are not read" in str(exc.value)
    # the same hint where the column arrives as numbers (Parquet, JSON records)
    k = load_klines(_write(tmp_path / "ok.csv", KLINES_CSV)).copy()
    k["ts"] = k["ts"].astype("int64") // 10**6
    with pytest.raises(DataError, match="epoch times are not read") as exc:
        validate_klines(k, "k.parquet")
    assert (exc.value.row, exc.value.column) == (1, "ts")


def test_error_duplicate_bar(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.csv", _edit(KLINES_CSV, 3, "ts", "2026-03-02T14:30:00Z"))
    with pytest.raises(DataError, match="duplicate bar") as exc:
        load_klines(path)
    _expect(exc, path, 3, "ts")
    assert "rows 1 and 3" in str(exc.value)


def test_error_price_not_positive(tmp_path: Path) -> None:
    k = load_klines(_write(tmp_path / "k.csv", KLINES_CSV))
    path = _write(tmp_path / "t.csv", _edit(TRADES_CSV, 2, "price", "0"))
    with pytest.raises(DataError, match="price must be > 0") as exc:
        load_trades(path, klines=k)
    _expect(exc, path, 2, "price")
    path = _write(tmp_path / "t2.csv", _edit(TRADES_CSV, 3, "price", "abc"))
    with pytest.raises(DataError, match="not a finite number") as exc:
        load_trades(path)
    _expect(exc, path, 3, "price")
    path = _write(tmp_path / "t3.csv", _edit(TRADES_CSV, 4, "quantity", "-2"))
    with pytest.raises(DataError, match="quantity must be > 0") as exc:
        load_trades(path)
    _expect(exc, path, 4, "quantity")


def test_error_unknown_side(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", _edit(TRADES_CSV, 3, "side", "hold"))
    with pytest.raises(DataError, match="unknown side 'hold'") as exc:
        load_trades(path)
    _expect(exc, path, 3, "side")


def test_error_trade_without_bar(tmp_path: Path) -> None:
    k = load_klines(_write(tmp_path / "k.csv", KLINES_CSV))
    # BBB has a single bar 14:30-14:35; 14:35:00 is already outside it.
    path = _write(tmp_path / "t.csv", _edit(TRADES_CSV, 3, "ts", "2026-03-02T14:35:00Z"))
    # the k-lines file is named too: the missing bar may be its fault
    k_csv = re.escape(str(tmp_path / "k.csv"))
    with pytest.raises(DataError, match=f"no 5-minute bar of symbol 'BBB' in {k_csv} ") as exc:
        load_trades(path, klines=k)
    _expect(exc, path, 3, "ts")
    path = _write(tmp_path / "t2.csv", _edit(TRADES_CSV, 4, "symbol", "ZZZ"))
    with pytest.raises(DataError, match=f"'ZZZ' has no k-lines in {k_csv}") as exc:
        load_trades(path, klines=k)
    _expect(exc, path, 4, "symbol")


def test_error_duplicate_trade_ids_names_both_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", _edit(TRADES_CSV, 4, "trade_id", "000002"))
    with pytest.raises(DataError, match="duplicate trade_id") as exc:
        load_trades(path)
    _expect(exc, path, 4, "trade_id")
    assert "rows 2 and 4" in str(exc.value)


def test_error_missing_column(tmp_path: Path) -> None:
    text = "\n".join(",".join(line.split(",")[:-1]) for line in TRADES_CSV.splitlines())
    path = _write(tmp_path / "t.csv", text + "\n")
    with pytest.raises(DataError, match="missing column 'quantity'") as exc:
        load_trades(path)
    # A missing column is a header problem, not a row's: no row is named.
    _expect(exc, path, None, "quantity")


def test_error_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.csv", _edit(LABELS_CSV, 2, "label", "2"))
    with pytest.raises(DataError, match="label must be 0 or 1") as exc:
        load_labels(path)
    _expect(exc, path, 2, "label")
    path = _write(tmp_path / "l2.csv", _edit(LABELS_CSV, 2, "account_id", "000123"))
    with pytest.raises(DataError, match="duplicate account_id") as exc:
        load_labels(path)
    _expect(exc, path, 2, "account_id")


def test_first_offending_row_is_reported() -> None:
    df = pd.read_csv(pd.io.common.StringIO(TRADES_CSV), dtype=str)
    df.loc[3, "side"] = "hold"
    df.loc[1, "quantity"] = "0"
    with pytest.raises(DataError) as exc:
        validate_trades(df, "frame")
    assert exc.value.row == 2 and exc.value.column == "quantity"


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unsupported file type"):
        load_klines(_write(tmp_path / "k.json", "{}"))
    with pytest.raises(DataError, match="file not found"):
        load_klines(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["klines.csv", "klines"])
def test_a_folder_or_missing_path_is_named_as_such(tmp_path: Path, name: str) -> None:
    # A folder given as a file, or a path that does not exist, is said to be one, whatever
    # its name ends with (both had been "unsupported file type" without a suffix).
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder, not a file") as exc:
        load_klines(folder)
    assert exc.value.file == str(folder)
    with pytest.raises(DataError, match="file not found"):
        load_klines(tmp_path / "missing" / name)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        load_klines(fifo)


def test_a_row_with_more_values_than_the_header_names_its_row(tmp_path: Path) -> None:
    lines = TRADES_CSV.splitlines()
    lines[3] += ",extra"
    path = _write(tmp_path / "trades.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="8 values, but the header row names 7 columns") as exc:
        load_trades(path)
    assert (exc.value.file, exc.value.row) == (str(path), 3)


@pytest.mark.parametrize(("kept", "said"), [(6, "6 values,"), (3, "3 values,"), (1, "1 value,")])
def test_a_row_with_fewer_values_than_the_header_names_its_row(
    tmp_path: Path, kept: int, said: str
) -> None:
    # pandas filled the missing values in as empty: it had been "row 2, column
    # 'account_id': missing account_id" (or the row's last column missing).
    lines = TRADES_CSV.splitlines()
    lines[2] = ",".join(lines[2].split(",")[:kept])
    path = _write(tmp_path / "trades.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{said} but the header row names 7 columns") as exc:
        load_trades(path)
    assert (exc.value.file, exc.value.row, exc.value.column) == (str(path), 2, None)
    assert "missing" not in exc.value.reason.replace("is missing", "")


def test_short_rows_are_counted_as_pandas_counts_them(tmp_path: Path) -> None:
    # Blank lines (and lines of blanks) are no rows; a quoted line break stays in its row;
    # an empty last value is a value. The short row is the fourth data row.
    header, *rows = TRADES_CSV.splitlines()
    quoted = rows[0].replace("000001", '"0000\n01"', 1)
    text = "\n".join([header, "", quoted, "   ", rows[1], "\t", rows[2], "000004,000777"]) + "\n"
    path = tmp_path / "trades.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError, match="2 values, but the header row names 7 columns") as exc:
        load_trades(path)
    assert exc.value.row == 4
    # With that row whole, the file is read (and its first row refused for the line break
    # in its id, as before); without the line break, it loads.
    whole = text.replace("000004,000777\n", rows[3] + "\n")
    path.write_bytes(gzip.compress(whole.encode()))
    with pytest.raises(DataError, match="control character") as exc:
        load_trades(path)
    assert (exc.value.row, exc.value.column) == (1, "trade_id")
    path.write_bytes(gzip.compress(whole.replace('"0000\n01"', "000001").encode()))
    assert len(load_trades(path)) == 4


def test_a_file_where_the_data_folder_belongs_is_named(tmp_path: Path) -> None:
    file = _write(tmp_path / "klines.csv", "symbol,ts\n")
    with pytest.raises(DataError, match="is a file, not a folder") as exc:
        load_market(file)
    assert exc.value.file == str(file)
    with pytest.raises(DataError, match="folder not found"):
        load_market(tmp_path / "nope")


def test_validation_is_vectorised() -> None:
    data = simulate(300, seed=2, n_symbols=8, days=2)
    t = data.trades
    reps = -(-300_000 // len(t))
    big = pd.concat([t] * reps, ignore_index=True)
    big["trade_id"] = np.arange(len(big)).astype(str)
    start = time.perf_counter()
    out = validate_trades(big, klines=data.klines)
    elapsed = time.perf_counter() - start
    assert len(out) == len(big)
    assert elapsed < 8.0, f"validating {len(big)} trades took {elapsed:.1f} s"


def test_validate_labels_accepts_bool_and_float() -> None:
    out = validate_labels(pd.DataFrame({"account_id": [1, 2], "label": [True, 0.0]}))
    assert out["account_id"].tolist() == ["1", "2"]
    assert out["label"].tolist() == [1, 0]


# --------------------------------------------------------------------- reference


def _reference_files(root: Path) -> tuple[Path, Path, Path]:
    return write_reference(
        root,
        {"buy_COIN_hacker_1.csv": BUYS, "u42.csv": "2022-01-04 19:36:10,229.0\n"},
        {"sell_COIN_hacker_1.csv": SELLS, "u42.csv": ""},  # header only: no sells
    )


def test_import_reference(tmp_path: Path) -> None:
    kl, buy, sell = _reference_files(tmp_path)
    data = import_reference(kl, buy, sell, labels={"COIN_hacker_1": 1, "u42": 0})
    k = data.klines
    assert k["symbol"].unique().tolist() == ["COIN"]
    assert k["ts"].is_monotonic_increasing
    assert k["ts"].iloc[0] == pd.Timestamp("2022-01-04T19:30:00Z")
    np.testing.assert_allclose(k["open"], (k["high"] + k["low"]) / 2)
    np.testing.assert_allclose(k["close"], k["open"])
    assert (k["volume"] == 0).all()
    assert data.account_ids.tolist() == ["COIN_hacker_1", "u42"]
    t = data.trades
    assert len(t) == 5 and (t["quantity"] == 1).all()
    assert t["trade_id"].is_unique
    assert set(t.loc[t["account_id"] == "COIN_hacker_1", "side"]) == {"buy", "sell"}
    assert data.y().tolist() == [1, 0]
    joined = attach_bars(t, k)
    assert (joined["bar_row"] >= 0).all()
    # Deterministic ids.
    again = import_reference(kl, buy, sell)
    assert again.trades["trade_id"].tolist() == t["trade_id"].tolist()
    assert again.labels is None


def test_import_reference_errors_name_file_and_row(tmp_path: Path) -> None:
    kl, buy, sell = _reference_files(tmp_path)
    bad = sell / "sell_COIN_hacker_1.csv"
    bad.write_text("time,price\n2022-01-04 19:30:00,228.9\n2022-01-04 21:00:00,231.3\n")
    with pytest.raises(DataError, match="no 5-minute bar") as exc:
        import_reference(kl, buy, sell)
    _expect(exc, bad, 2, "time")
    bad.write_text("time,price\n2022-01-04 19:30:00,-1\n")
    with pytest.raises(DataError, match="price must be > 0") as exc:
        import_reference(kl, buy, sell)
    _expect(exc, bad, 1, "price")
    kl.write_text("time,high,low\n2022-01-04 19:30:00,229.0,226.0\nnot a time,230,228\n")
    with pytest.raises(DataError, match="cannot parse") as exc:
        import_reference(kl, buy, sell)
    _expect(exc, kl, 2, "time")
    kl.write_text("time,high,low\n2022-01-04 19:30:00,225.0,226.0\n")
    with pytest.raises(DataError, match="below low") as exc:
        import_reference(kl, buy, sell)
    _expect(exc, kl, 1, "high")


def test_import_reference_refuses_a_date_whose_day_and_month_could_swap(
    tmp_path: Path,
) -> None:
    """Other formats were read by pandas' guess: in one file 04/01/2022 was 1 April
    (month first) and 13/01/2022 was 13 January (day first), without a word."""
    kl, buy, sell = _reference_files(tmp_path)
    bad = buy / "u42.csv"
    bad.write_text("time,price\n04/01/2022 19:36:10,229.0\n")
    with pytest.raises(DataError, match="could be day/month or month/day") as exc:
        import_reference(kl, buy, sell)
    _expect(exc, bad, 1, "time")
    # a day past 12 leaves one reading (here no bar holds 2022-01-13)
    bad.write_text("time,price\n13/01/2022 19:36:10,229.0\n")
    with pytest.raises(DataError, match="no 5-minute bar"):
        import_reference(kl, buy, sell)
    # day and month alike, and ISO-8601, are read as before
    bad.write_text("time,price\n04/04/2022 19:36:10,229.0\n")
    with pytest.raises(DataError, match="no 5-minute bar"):
        import_reference(kl, buy, sell)
    bad.write_text("time,price\n2022-01-04 19:36:10,229.0\n")
    assert len(import_reference(kl, buy, sell).trades) == 5


@pytest.mark.parametrize(
    ("name", "says"),
    [
        # a valid 60-character account id, but its trade ids <account>:buy:<row> are not
        ("a" * 60, "has 60 characters; at most 58 leave room for the trade ids"),
        ("a" * 200, "has 200 characters; at most 58 leave room"),
        ("a\u200bb", "contains an invisible formatting character (U+200B at position 2)"),
    ],
)
def test_import_reference_names_a_file_name_that_makes_no_account_id(
    tmp_path: Path, name: str, says: str
) -> None:
    """The account id and the trade ids come from the file name: one too long was refused
    as "row 1, column 'trade_id'", a column the reference files do not have."""
    kl, buy, sell = _reference_files(tmp_path)
    bad = buy / f"buy_{name}.csv"
    bad.write_text("time,price\n2022-01-04 19:36:10,229.0\n")
    with pytest.raises(DataError) as exc:
        import_reference(kl, buy, sell)
    assert (exc.value.file, exc.value.row, exc.value.column) == (str(bad), None, "account_id")
    assert "the account id is the file name" in exc.value.reason
    assert says in exc.value.reason and "rename the file" in exc.value.reason


@pytest.mark.parametrize("other", ["COIN_hacker_1.csv", "BUY_COIN_hacker_1.csv"])
def test_import_reference_names_two_files_of_one_account(tmp_path: Path, other: str) -> None:
    """buy_X.csv and X.csv are both account X: their trade ids collided, reported as
    "duplicate trade_id 'X:buy:1': rows 1 and 4", rows of the joined trades, not of a file."""
    kl, buy, sell = _reference_files(tmp_path)
    (buy / other).write_text((buy / "buy_COIN_hacker_1.csv").read_text())
    with pytest.raises(DataError) as exc:
        import_reference(kl, buy, sell)
    assert exc.value.column == "account_id" and exc.value.row is None
    assert f"{other} and buy_COIN_hacker_1.csv are both account 'COIN_hacker_1'" in str(
        exc.value
    ) or f"buy_COIN_hacker_1.csv and {other} are both account 'COIN_hacker_1'" in str(exc.value)


def test_marketdata_helpers_on_loaded_data(tmp_path: Path) -> None:
    _write(tmp_path / "klines.csv", KLINES_CSV)
    _write(tmp_path / "trades.csv", TRADES_CSV)
    _write(tmp_path / "labels.csv", LABELS_CSV)
    data = load_market(tmp_path)
    sub = data.subset(["000777"])
    assert isinstance(sub, MarketData)
    assert sub.account_ids.tolist() == ["000777"]
    kinds = data.label_column("kind")
    assert kinds is not None and kinds.tolist() == ["normal", "takeover"]


def test_attach_bars_with_no_klines_leaves_every_trade_unmatched() -> None:
    from fraudlens.market.data import KLINE_COLUMNS, attach_bars

    trades = pd.DataFrame(
        {
            "trade_id": ["t1"],
            "account_id": ["a"],
            "symbol": ["X"],
            "ts": pd.to_datetime(["2026-03-02T14:31:00Z"]),
            "side": ["buy"],
            "price": [10.0],
            "quantity": [1.0],
        }
    )
    klines = pd.DataFrame({c: [] for c in KLINE_COLUMNS})
    klines["ts"] = pd.to_datetime(klines["ts"], utc=True)
    out = attach_bars(trades, klines)
    assert out["bar_row"].tolist() == [-1]
    assert out["bar_high"].isna().all() and out["bar_ts"].isna().all()


def test_a_boolean_is_no_price_in_any_loader() -> None:
    """A bool column (Parquet) or a ``true`` among numbers (JSON records) is refused with
    its row and column, where it had been read as 1; labels keep True/False as 1/0."""
    data = simulate(4, seed=0, days=1)
    trades = data.trades.copy()
    trades["price"] = trades["price"].astype(object)
    trades.loc[1, "price"] = True
    with pytest.raises(DataError) as info:
        validate_trades(trades, "t.json")
    assert (info.value.row, info.value.column) == (2, "price")
    assert "true is a boolean" in str(info.value)
    klines = data.klines.copy()
    klines["volume"] = True
    with pytest.raises(DataError) as info:
        validate_klines(klines, "k.parquet")
    assert (info.value.row, info.value.column) == (1, "volume")


def test_a_delimiter_ending_every_row_is_read_as_if_absent(tmp_path: Path) -> None:
    # pandas took the extra first value of each row as the index and shifted every column
    # ("row 1, column 'ts': cannot parse 'buy' as an ISO-8601 timestamp").
    plain = load_trades(_write(tmp_path / "plain.csv", TRADES_CSV))
    lines = TRADES_CSV.splitlines()
    trailing = [lines[0], *(line + "," for line in lines[1:] if line)]
    got = load_trades(_write(tmp_path / "trailing.csv", "\n".join(trailing) + "\n"))
    pd.testing.assert_frame_equal(got, plain)


def test_an_extra_value_in_the_first_row_names_that_row(tmp_path: Path) -> None:
    lines = TRADES_CSV.splitlines()
    lines[1] += ",extra"
    path = _write(tmp_path / "trades.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="8 values, but the header row names 7 columns") as exc:
        load_trades(path)
    assert (exc.value.file, exc.value.row) == (str(path), 1)
    # Only a later row with the extra value: that row, not the first.
    lines = TRADES_CSV.splitlines()
    lines[1] += ","
    lines[3] += ",extra"
    path = _write(tmp_path / "later.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="8 values, but the header row names 7 columns") as exc:
        load_trades(path)
    assert exc.value.row == 3
