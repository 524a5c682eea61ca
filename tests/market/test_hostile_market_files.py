"""Hostile market files: every one is refused with exit code 2 and one line naming the
file, row and column, never a traceback (dates the nanosecond clock cannot hold, ids that
break the id rule, ids that are lists, a header of a million columns, a folder)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.errors import DataError
from fraudlens.market.data import load_klines, load_trades, validate_trades
from fraudlens.market.simulate import simulate

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    data = simulate(6, seed=4, n_symbols=1, days=1)
    folder = tmp_path_factory.mktemp("hostile-market")
    data.klines.to_csv(folder / "klines.csv", index=False)
    return data.klines, data.trades, folder


def _pairs(folder: Path, trades: Path, klines: Path | None = None) -> str:
    """``market pairs`` on the files (it reads and validates them, no model needed);
    the one error line it printed."""
    res = runner.invoke(
        app,
        [
            "market",
            "pairs",
            "--klines",
            str(klines or folder / "klines.csv"),
            "--trades",
            str(trades),
            "--out",
            str(folder / "pairs.csv"),
        ],
    )
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())
    # A progress line may come first; the error is the last thing printed.
    assert "error: " in text, text
    return text[text.index("error: ") :]


def _with(trades: pd.DataFrame, column: str, value: object, row: int = 2) -> pd.DataFrame:
    out = trades.copy()
    out[column] = pd.Series(
        [value if i == row else v for i, v in enumerate(out[column])], index=out.index, dtype=object
    )
    return out


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31", "2262-04-12T00:00:00"])
def test_dates_out_of_range_name_row_and_column(files: tuple, ts: str) -> None:
    klines, trades, folder = files
    path = folder / "trades_far.csv"
    _with(trades, "ts", ts).to_csv(path, index=False)
    text = _pairs(folder, path)
    assert "row 3" in text and "'ts'" in text and "outside the dates" in text, text
    kpath = folder / "klines_far.csv"
    far = klines.copy().astype({"ts": object})
    far.loc[4, "ts"] = ts
    far.to_csv(kpath, index=False)
    text = _pairs(folder, folder / "trades_far.csv", klines=kpath)
    assert "klines_far.csv, row 5" in text and "'ts'" in text, text


def test_parquet_microsecond_dates_out_of_range(files: tuple, tmp_path: Path) -> None:
    _, trades, folder = files
    t = trades.copy()
    t["ts"] = t["ts"].dt.tz_localize(None).astype("datetime64[us]")
    t.loc[3, "ts"] = pd.Timestamp("9999-01-01")
    path = tmp_path / "trades.parquet"
    t.to_parquet(path)
    text = _pairs(folder, path)
    assert "row 4" in text and "'ts'" in text and "9999-01-01" in text, text


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("account_id", "x" * 65, "at most 64"),
        ("account_id", "a\u202eb", "invisible formatting character"),
        ("trade_id", "t\x00", "control character"),
        ("symbol", "S" * 33, "at most 32"),
    ],
)
def test_ids_follow_the_id_rule(files: tuple, column: str, value: str, words: str) -> None:
    _, trades, folder = files
    path = folder / f"trades_{column}.csv"
    _with(trades, column, value).to_csv(path, index=False)
    text = _pairs(folder, path)
    assert "row 3" in text and f"'{column}'" in text and words in text, text


def test_list_ids_in_parquet_are_refused(files: tuple, tmp_path: Path) -> None:
    _, trades, folder = files
    t = trades.copy()
    t["account_id"] = [[1, 2]] * len(t)
    path = tmp_path / "trades.parquet"
    t.to_parquet(path)
    text = _pairs(folder, path)
    assert "row 1" in text and "'account_id'" in text and "text or a number" in text, text


def test_records_with_wrong_types_are_data_errors(files: tuple) -> None:
    # What a JSON body brings: dicts, lists and booleans where ids belong.
    _, trades, _ = files
    for value in ({"a": 1}, [1, 2], True):
        with pytest.raises(DataError, match="text or a number") as info:
            validate_trades(_with(trades, "trade_id", value), "trades")
        assert info.value.row == 3 and info.value.column == "trade_id"


def test_price_times_quantity_must_be_finite(files: tuple) -> None:
    _, trades, folder = files
    path = folder / "trades_huge.csv"
    _with(trades, "price", 1e308).to_csv(path, index=False)
    text = _pairs(folder, path)
    assert "row 3" in text and "too large to add up" in text, text


@pytest.mark.parametrize("column", ["quantity", "price"])
def test_an_integer_beyond_the_float_range_is_named(files: tuple, column: str) -> None:
    """``1`` and 400 zeros in a CSV column of integers: read_csv gives it as a Python
    int, which pandas' to_numeric refused with an OverflowError (a traceback from
    ``market score``)."""
    klines, trades, folder = files
    path = folder / f"trades_digits_{column}.csv"
    whole = trades.assign(**{column: trades[column].round().clip(lower=1).astype("int64")})
    _with(whole, column, 10**400).to_csv(path, index=False)
    text = _pairs(folder, path)
    assert "row 3" in text and f"'{column}'" in text, text
    assert "a number of 401 digits is too large" in text, text
    kpath = folder / "klines_digits.csv"
    far = klines.assign(volume=klines["volume"].round().astype("int64")).astype({"volume": object})
    far.loc[4, "volume"] = 10**400
    far.to_csv(kpath, index=False)
    with pytest.raises(DataError, match="401 digits is too large") as info:
        load_klines(kpath)
    assert info.value.row == 5 and info.value.column == "volume"


@pytest.mark.parametrize(("column", "value"), [("quantity", 1e306), ("price", 1e305)])
def test_a_finite_product_past_the_bound_is_refused(files: tuple, column: str, value: float):
    """A product that is finite alone but whose sums over an account could overflow
    (a quantity of 1e306 at a price below 1: 1e300 to 1e306, finite) is refused too."""
    _, trades, _ = files
    trades = _with(_with(trades, "price", 1e-3), "quantity", 1e-3)
    with pytest.raises(DataError, match="at most 1e\\+303") as info:
        validate_trades(_with(trades, column, value), "trades")
    assert info.value.row == 3 and info.value.column == "quantity"
    # At the bound it is taken.
    validate_trades(_with(trades, column, 1e303), "trades")


def test_a_header_of_a_million_columns_is_refused_unread(files: tuple) -> None:
    _, trades, folder = files
    path = folder / "trades_wide.csv"
    lines = trades.to_csv(index=False).splitlines()
    path.write_text(lines[0] + "," * 1_000_000 + "\n" + "\n".join(lines[1:]) + "\n")
    text = _pairs(folder, path)
    assert "row 0" in text and "1,000,007 columns" in text, text
    with pytest.raises(DataError, match="at most 1,024"):
        load_trades(path)


def test_a_folder_is_not_a_file(files: tuple) -> None:
    _, _, folder = files
    (folder / "dir.csv").mkdir(exist_ok=True)
    with pytest.raises(DataError, match="is a folder, not a file"):
        load_klines(folder / "dir.csv")


def test_output_at_a_folder_is_one_line(files: tuple, tmp_path: Path) -> None:
    _, trades, folder = files
    path = tmp_path / "trades.csv"
    trades.to_csv(path, index=False)
    out = tmp_path / "out.csv"
    out.mkdir()
    res = runner.invoke(
        app,
        [
            "market",
            "pairs",
            "--klines",
            str(folder / "klines.csv"),
            "--trades",
            str(path),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 2, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert f"error: cannot use {out}" in text and "Traceback" not in text, text


def _pairs_to(files: tuple, out: Path) -> Any:
    _, trades, folder = files
    path = folder / "trades_ok.csv"
    if not path.exists():
        trades.to_csv(path, index=False)
    args = ["--klines", str(folder / "klines.csv"), "--trades", str(path), "--out", str(out)]
    return runner.invoke(app, ["market", "pairs", *args])


def test_a_full_disk_keeps_the_old_output_and_is_one_line(
    files: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills half-way through writing ``--out``: the file there before is kept
    whole (it had been cut to the half written) and the error is one line naming it (it
    had been an OSError traceback: a full disk's error names no file)."""
    out = tmp_path / "pairs.csv"
    out.write_text("the old results\n")
    _pairs_to(files, tmp_path / "warm-up.csv")  # (writes the trades file)
    (tmp_path / "warm-up.csv").unlink()
    real = pd.DataFrame.to_csv

    def full_disk(self: pd.DataFrame, path_or_buf: Any = None, **kwargs: Any) -> None:
        text = real(self, None, **kwargs)
        if isinstance(path_or_buf, str | os.PathLike):
            with open(path_or_buf, "w") as f:
                f.write(text[: len(text) // 2])
        else:
            path_or_buf.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    res = _pairs_to(files, out)
    monkeypatch.undo()
    assert res.exit_code == 2, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert f"error: cannot use {out}: No space left on device" in text, text
    assert out.read_text() == "the old results\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # Written whole when the disk has room, with the mode a file written in place gets.
    out.chmod(0o640)
    res = _pairs_to(files, out)
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("account_id,counterparty,")
    assert out.stat().st_mode & 0o777 == 0o640
    new = tmp_path / "new.csv"
    assert _pairs_to(files, new).exit_code == 0
    mask = os.umask(0o022)
    os.umask(mask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~mask
    # Through a link, the linked file is written and the link kept.
    link = tmp_path / "latest.csv"
    link.symlink_to(new)
    new.write_text("older\n")
    assert _pairs_to(files, link).exit_code == 0
    assert link.is_symlink() and new.read_text().startswith("account_id,counterparty,")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_output_to_a_full_device_is_one_line(files: tuple, tmp_path: Path) -> None:
    res = _pairs_to(files, Path("/dev/full"))
    assert res.exit_code == 2, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert "error: cannot use /dev/full: No space left on device" in text, text
    assert Path("/dev/full").is_char_device()  # written to, not replaced


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_picture_to_a_full_device_is_one_line(files: tuple) -> None:
    """``market render`` saves through Pillow, whose full-disk error names no file: it
    had been a traceback (exit code 1)."""
    _, trades, folder = files
    path = folder / "trades_ok.csv"
    trades.to_csv(path, index=False)
    account = str(trades["account_id"].iloc[0])
    args = ["--klines", str(folder / "klines.csv"), "--trades", str(path), "--account", account]
    res = runner.invoke(app, ["market", "render", *args, "--out", "/dev/full"])
    assert res.exit_code == 2, res.output + repr(res.exception)
    # (it had said "error: cannot write: ...", naming no file)
    assert " ".join(res.output.split()) == "error: cannot use /dev/full: No space left on device"


def test_a_picture_is_written_whole_or_not_at_all(
    files: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``market render --out`` had Pillow write the file in place: a full disk half-way
    left half a PNG where the old picture was, with an error naming no file. It is now
    written beside and renamed over, as every other output: the old picture stays, the
    error names it, and no temporary file is left."""
    from PIL import Image

    _, trades, folder = files
    path = folder / "trades_ok.csv"
    trades.to_csv(path, index=False)
    account = str(trades["account_id"].iloc[0])
    args = ["--klines", str(folder / "klines.csv"), "--trades", str(path), "--account", account]
    out = tmp_path / "account.png"
    out.write_bytes(b"the old picture")
    real = Image.Image.save

    def full_disk(self: Any, fp: Any, format: Any = None, **kw: Any) -> None:
        fp.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    res = runner.invoke(app, ["market", "render", *args, "--out", str(out)])
    monkeypatch.setattr(Image.Image, "save", real)
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert " ".join(res.output.split()) == f"error: cannot use {out}: No space left on device"
    assert out.read_bytes() == b"the old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["account.png"]
    res = runner.invoke(app, ["market", "render", *args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"\x89PNG")
    folder_out = tmp_path / "a-folder.png"
    folder_out.mkdir()
    res = runner.invoke(app, ["market", "render", *args, "--out", str(folder_out)])
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert f"error: cannot use {folder_out}" in " ".join(res.output.split())


def test_a_missing_column_lists_a_few_found_ones(tmp_path: Path) -> None:
    """The "(found: ...)" list had named every column of the header in full: 1,000 names of
    900 characters made a 900 KB error line."""
    path = tmp_path / "trades.csv"
    names = [f"c{i}_" + "x" * 900 for i in range(1000)]
    path.write_text(",".join(names) + "\n" + ",".join(["1"] * 1000) + "\n")
    with pytest.raises(DataError, match="missing columns 'trade_id', 'account_id'") as info:
        load_trades(path)
    text = str(info.value)
    assert len(text) < 2000, len(text)
    assert "(found: 'c0_xxx" in text and "... (1,000 columns))" in text, text[-300:]
