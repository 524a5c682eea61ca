"""Compressed table files that decompress to far more than they hold (decompression
bombs) are refused by both loaders while they are being decompressed, in constant memory,
with one DataError naming the file; ordinary compressed files still load. A 1 MB gzip
file of 1 GB of NUL bytes used to make pandas abort the process (std::bad_alloc)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudlens import _csvread
from fraudlens.cards.data import load_table
from fraudlens.errors import DataError
from fraudlens.market.data import load_klines

KLINES = b"symbol,ts,open,high,low,close,volume\n"
CARDS = b"Time,V1,Amount,Class\n"


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The limits scaled down 64 times, so the bombs are a few megabytes.
    monkeypatch.setattr(_csvread, "EXPANSION_FLOOR", 1 << 20, raising=False)


def _write(path: Path, head: bytes, filler: bytes, n: int) -> Path:
    """``head`` then ``filler`` ``n`` times, compressed by the file's suffix."""
    data = head + filler * n
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".bz2":
        path.write_bytes(bz2.compress(data))
    elif path.suffix == ".xz":
        path.write_bytes(lzma.compress(data, preset=1))
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(path.stem, data)
    return path


LOADERS: dict[str, tuple[Callable[[Path], Any], bytes]] = {
    "market": (load_klines, KLINES),
    "cards": (load_table, CARDS),
}


@pytest.mark.parametrize(
    ("loader", "suffix"),
    [(loader, suffix) for loader in ("market", "cards") for suffix in (".gz", ".bz2", ".zip")],
)
def test_a_bomb_is_refused_while_it_is_decompressed(tmp_path: Path, loader: str, suffix: str):
    load, head = LOADERS[loader]
    # 4 MB of blank lines: a thousand times its compressed size.
    path = _write(tmp_path / f"bomb.csv{suffix}", head, b"\n", 4 << 20)
    with pytest.raises(DataError, match="decompression bomb") as info:
        load(path)
    assert info.value.file == str(path)


def test_an_endless_row_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "nul.csv.gz", KLINES, b"\0", 3 << 20)
    with pytest.raises(DataError, match="a row longer than 1,048,576 bytes"):
        load_klines(path)


def test_a_file_over_the_decompressed_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_csvread, "MAX_DECOMPRESSED_BYTES", 1 << 20, raising=False)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"Time": np.arange(40_000.0), "V1": rng.normal(size=40_000)})
    df["Amount"], df["Class"] = 10.0, 0
    path = tmp_path / "cards.csv.gz"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="decompress it first or convert it to Parquet"):
        load_table(path)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_compressed_market_files_load_as_the_plain_ones(tmp_path: Path, suffix: str) -> None:
    from fraudlens.market.data import load_market, write_market
    from fraudlens.market.simulate import simulate

    plain, packed = tmp_path / "plain", tmp_path / "packed"
    write_market(simulate(30, seed=4), plain)
    packed.mkdir()
    for name in ("klines", "trades", "labels"):
        _write(packed / f"{name}.csv{suffix}", b"", (plain / f"{name}.csv").read_bytes(), 1)
    a, b = load_market(plain), load_market(packed)
    pd.testing.assert_frame_equal(a.klines, b.klines)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.labels, b.labels)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_ordinary_compressed_files_load(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    n = 60_000  # 2.5 MB of CSV, past the (scaled) floor, compressing about 3 times
    df = pd.DataFrame({"Time": np.arange(float(n)), "V1": rng.normal(size=n)})
    df["Amount"], df["Class"] = rng.gamma(2.0, 40.0, n).round(2), [0, 1] * (n // 2)
    path = tmp_path / f"cards.csv{suffix}"
    _write(path, b"", df.to_csv(index=False).encode(), 1)
    assert len(load_table(path)) == n


def _parquet_bomb(path: Path, rows: int) -> Path:
    """A Parquet file of ``rows`` equal values in a dictionary-encoded column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int8)), ["A"])
    pq.write_table(pa.table({"Time": column}), path, compression="zstd")
    return path


def test_a_parquet_bomb_is_refused_from_its_footer(tmp_path: Path) -> None:
    """A 561 KB file of 200 million such rows kept load_table busy past two minutes and
    5 GB; at the scaled limits, 4 million rows in a few kilobytes."""
    path = _parquet_bomb(tmp_path / "bomb.parquet", 4_000_000)
    assert path.stat().st_size < 50_000
    with pytest.raises(DataError, match="decompression bomb") as info:
        load_table(path)
    assert info.value.file == str(path)
    with pytest.raises(DataError, match="4,000,000 rows x 1 columns"):
        _csvread.check_header(path)
    # The market loader too (a 1.5 MB file of 50 million bars took `market score` to a
    # MemoryError traceback after 57 s and 9.3 GB).
    with pytest.raises(DataError, match="decompression bomb"):
        load_klines(path)


def test_ordinary_parquet_files_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 200_000  # 6.4 MB of float64 cells, past the (scaled) floor
    df = pd.DataFrame({"Time": np.arange(float(n)), "V1": rng.normal(size=n)})
    df["Amount"], df["Class"] = rng.gamma(2.0, 40.0, n).round(2), [0, 1] * (n // 2)
    path = tmp_path / "cards.parquet"
    df.to_parquet(path)
    assert len(load_table(path)) == n


def test_the_card_processor_file_source_refuses_bombs(tmp_path: Path) -> None:
    from fraudlens.processor import _read_any

    gz = _write(tmp_path / "bomb.csv.gz", CARDS, b"\n", 4 << 20)
    parquet = _parquet_bomb(tmp_path / "bomb.parquet", 4_000_000)
    for path in (gz, parquet):
        with pytest.raises(DataError, match="decompression bomb"):
            _read_any(str(path))


def _damaged(path: Path, data: bytes, damage: str) -> Path:
    """``data`` compressed by ``path``'s suffix, then cut short or overwritten past its
    first bytes (so the file still starts like one of its kind)."""
    _write(path, b"", data, 1)
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        path.write_bytes(raw[:12] + bytes(range(256)) * 4)
    return path


_DAMAGED_CASES = [
    (loader, suffix, damage)
    for loader in ("market", "cards")
    for suffix in (".gz", ".bz2", ".xz", ".zip")
    for damage in ("truncated", "corrupt")
]


@pytest.mark.parametrize(("loader", "suffix", "damage"), _DAMAGED_CASES)
def test_a_damaged_compressed_file_is_one_data_error(
    tmp_path: Path, loader: str, suffix: str, damage: str
) -> None:
    """A truncated or corrupt compressed file had ended in EOFError, zlib.error,
    LZMAError or BadZipFile tracebacks (and "Aborted!" with exit code 1 from the CLI,
    which takes EOFError for Ctrl-D)."""
    load, head = LOADERS[loader]
    row = b"A,2025-01-01T00:00:00Z,1,1,1,1,1\n" if loader == "market" else b"0,0.5,10,0\n"
    path = _damaged(tmp_path / f"damaged.csv{suffix}", head + row * 20_000, damage)
    with pytest.raises(DataError, match="cannot read the file") as info:
        load(path)
    assert info.value.file == str(path)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_the_card_processor_file_source_reports_damaged_files(tmp_path: Path, damage: str) -> None:
    from fraudlens.processor import _read_any

    path = _damaged(tmp_path / "damaged.csv.gz", CARDS + b"0,0.5,10,0\n" * 20_000, damage)
    with pytest.raises(DataError, match="cannot read the file"):
        _read_any(str(path))


def test_the_cli_reports_a_truncated_file_in_one_line(tmp_path: Path) -> None:
    klines = tmp_path / "klines.csv"
    klines.write_bytes(KLINES + b"A,2025-01-01T00:00:00Z,1,1,1,1,1\n")
    trades = _damaged(
        tmp_path / "trades.csv.gz",
        b"trade_id,account_id,symbol,ts,side,price,quantity\n"
        + b"".join(b"t%d,a1,A,2025-01-01T00:01:00Z,buy,1,1\n" % i for i in range(20_000)),
        "truncated",
    )
    args = ["--klines", str(klines), "--trades", str(trades), "--out", str(tmp_path / "p.csv")]
    res = subprocess.run(
        [sys.executable, "-m", "fraudlens", "market", "pairs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "1000", "TERM": "dumb"},
    )
    assert res.returncode == 2, res.stderr[-2000:]
    # (the progress bar aside)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, res.stderr[-2000:]
    assert errors[0].startswith(f"error: file {trades}: cannot read the file: ")
    assert "Traceback" not in res.stderr and "Aborted" not in res.stderr


@pytest.mark.parametrize("loader", ["market", "cards"])
@pytest.mark.parametrize("where", ["header", "row"])
def test_a_long_field_that_is_not_utf8_is_not_repeated(
    tmp_path: Path, loader: str, where: str
) -> None:
    """The error had quoted the whole field holding the bad byte (twice for a header):
    a 100,000-byte field gave a 200 KB line. It shows the bytes around the bad one."""
    load, head = LOADERS[loader]
    field = b"a" * 100_000 + b"\xff" + b"b" * 10
    path = tmp_path / "latin.csv"
    if where == "header":
        path.write_bytes(head.rstrip(b"\n") + b"," + field + b"\n")
    else:
        path.write_bytes(head + b",".join([field] * len(head.split(b","))) + b"\n")
    shown = "'..." + "a" * 30 + "\ufffd" + "b" * 10 + "'"
    with pytest.raises(DataError, match=f"not UTF-8 text: byte 0xFF in {re.escape(shown)}") as info:
        load(path)
    assert len(str(info.value)) < 400, str(info.value)[:500]
    assert info.value.row == (0 if where == "header" else 1)
