"""The hostile-file sweep of tests/cli/test_hostile_files.py: a fixed list of cases (one
command, one hostile variant of one of its input files) and a runner that builds the
valid inputs, writes each variant and runs the command in-process (Typer's CliRunner).

The runner is meant to run in a child process (``python _hostile_files.py OUT``) with a
memory limit: each case gets :data:`CASE_SECONDS` (an alarm), and its result is appended
to OUT as one JSON line before the next starts, so a case that kills the process is
still known by name.

Every variant derives from a small valid file, by a seeded generator where it draws
random bytes. A variant is either one the command must refuse (``refuse``: exit code 2,
one error line naming the file) or one it may take or refuse (``either``: exit code 0 or
2; a formula-like id, a byte-order mark, a duplicated row). Neither may end in a
traceback, any other exit code, or the alarm.
"""

from __future__ import annotations

import decimal
import io
import json
import os
import random
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Seconds a case may take before it counts as a hang.
CASE_SECONDS = 30
#: Bytes of address space the child may use (a variant that makes a loader allocate
#: without bound ends in MemoryError, a failure of its case, not in the machine's swap).
MEMORY_LIMIT = 6 << 30
SEED = 20261201

Rows = list[list[str]]


@dataclass(frozen=True)
class Table:
    """A valid CSV table and the roles of its columns (None: no such column)."""

    name: str  # file stem: klines, trades, labels, transactions, ulb, ids
    columns: tuple[str, ...]
    num: str  # a float column
    ids: str  # a text id column
    ts: str | None = None
    side: str | None = None
    high_low: tuple[str, str] | None = None


TABLES = {
    "klines": Table(
        "klines",
        ("symbol", "ts", "open", "high", "low", "close", "volume"),
        num="close",
        ids="symbol",
        ts="ts",
        high_low=("high", "low"),
    ),
    "trades": Table(
        "trades",
        ("trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"),
        num="price",
        ids="account_id",
        ts="ts",
        side="side",
    ),
    "labels": Table("labels", ("account_id", "label"), num="label", ids="account_id"),
    "transactions": Table(
        "transactions",
        ("transaction_id", "ts", "customer_id", "terminal_id", "amount", "label"),
        num="amount",
        ids="customer_id",
        ts="ts",
    ),
    "ulb": Table(
        "ulb",
        ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"),
        num="Amount",
        ids="Time",
    ),
    "features": Table(
        "features", ("transaction_id", "f1", "f2", "f3", "label"), num="f2", ids="transaction_id"
    ),
}


@dataclass(frozen=True)
class Variant:
    name: str
    expect: str  # "refuse", "either" or "accept" (the valid file: exit code 0)
    suffix: str  # ".csv", ".csv.gz", ".parquet" or "" (a folder)
    # (valid header and rows, table roles, seeded random, path) -> writes the file
    write: Callable[[list[str], Rows, Table, random.Random, Path], None] = field(repr=False)


def _csv(header: list[str], rows: Rows) -> bytes:
    out = io.StringIO()
    for r in [header, *rows]:
        out.write(",".join(r) + "\n")
    # (a lone surrogate stands for a byte that is not UTF-8: "\udce9" for 0xE9)
    return out.getvalue().encode("utf-8", "surrogateescape")


def _cell(col_of: Callable[[Table], str | None], value: str, row: int = 1):
    """Write the valid table with ``value`` in row ``row`` (1-based) of a column."""

    def write(header: list[str], rows: Rows, t: Table, rng: random.Random, path: Path) -> None:
        col = col_of(t) or t.num
        rows = [list(r) for r in rows]
        rows[row - 1][header.index(col)] = value
        path.write_bytes(_csv(header, rows))

    write.cell = True  # type: ignore[attr-defined]
    return write


def _bytes(make: Callable[[list[str], Rows, random.Random], bytes]):
    def write(header: list[str], rows: Rows, t: Table, rng: random.Random, path: Path) -> None:
        path.write_bytes(make(header, rows, rng))

    return write


def _high_below_low(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    rows = [list(r) for r in rows]
    if t.high_low is None:  # no such pair: a negative value instead
        rows[1][header.index(t.num)] = "-5"
    else:
        hi, lo = (header.index(c) for c in t.high_low)
        rows[1][hi], rows[1][lo] = "1", "2"
    p.write_bytes(_csv(header, rows))


def _duplicate_row(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    p.write_bytes(_csv(header, [rows[0], *rows]))


def _duplicate_column(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    k = header.index(t.num)
    p.write_bytes(_csv([*header, header[k]], [[*r, r[k]] for r in rows]))


def _folder(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    """A folder of mixed files: the table in two parts (CSV and Parquet), a text file,
    a JSON file, binary garbage named .csv and a sub-folder."""
    import pandas as pd

    p.mkdir()
    half = len(rows) // 2
    (p / f"{t.name}-1.csv").write_bytes(_csv(header, rows[:half]))
    frame = pd.read_csv(io.BytesIO(_csv(header, rows[half:])))
    frame.to_parquet(p / f"{t.name}-2.parquet")
    (p / "README.txt").write_text("notes\n")
    (p / "x.json").write_text('{"a": 1}\n')
    (p / "zz.csv").write_bytes(rng.randbytes(2048))
    (p / "sub").mkdir()
    (p / "sub" / f"{t.name}.csv").write_bytes(_csv(header, rows))


def _zip_two(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    import zipfile

    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.csv", _csv(header, rows))
        z.writestr("b.csv", _csv(header, rows))


def _endless(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    """A FIFO serving the header then the rows again and again (up to 64 MB): a reader
    that reads it to its end would never stop on a real endless source."""
    import threading

    os.mkfifo(p)
    block = _csv([], rows * 50)[1:]

    def feed() -> None:
        try:
            with open(p, "wb") as f:
                f.write(_csv(header, []))
                for _ in range((64 << 20) // len(block)):
                    f.write(block)
        except OSError:  # the reader stopped early
            pass

    threading.Thread(target=feed, daemon=True).start()


def _dev_zero(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    """A link to /dev/zero: endless NUL bytes under a table file's name."""
    p.symlink_to("/dev/zero")


CSV_VARIANTS = [
    Variant("valid", "accept", ".csv", _bytes(lambda h, r, g: _csv(h, r))),
    Variant("empty", "refuse", ".csv", _bytes(lambda h, r, g: b"")),
    Variant("header-only", "refuse", ".csv", _bytes(lambda h, r, g: _csv(h, []))),
    Variant("garbage", "refuse", ".csv", _bytes(lambda h, r, g: g.randbytes(4096))),
    Variant(
        "utf16", "refuse", ".csv", _bytes(lambda h, r, g: _csv(h, r).decode().encode("utf-16"))
    ),
    Variant("bom", "either", ".csv", _bytes(lambda h, r, g: b"\xef\xbb\xbf" + _csv(h, r))),
    Variant("latin1", "refuse", ".csv", _cell(lambda t: t.ids, "caf\udce9")),
    Variant("nul", "refuse", ".csv", _cell(lambda t: t.num, "1\x002")),
    Variant("one-mb-line", "refuse", ".csv", _bytes(lambda h, r, g: b"a," * (1 << 19))),
    Variant("not-gzip", "refuse", ".csv.gz", _bytes(lambda h, r, g: _csv(h, r))),
    Variant("nan", "refuse", ".csv", _cell(lambda t: t.num, "NaN")),
    Variant("inf", "refuse", ".csv", _cell(lambda t: t.num, "inf")),
    Variant("-inf", "refuse", ".csv", _cell(lambda t: t.num, "-inf")),
    Variant("1e308", "either", ".csv", _cell(lambda t: t.num, "1e308")),
    Variant("negative", "either", ".csv", _cell(lambda t: t.num, "-3")),
    Variant("zero", "either", ".csv", _cell(lambda t: t.num, "0")),
    Variant("text-number", "refuse", ".csv", _cell(lambda t: t.num, "abc")),
    Variant("huge-int", "either", ".csv", _cell(lambda t: t.num, "9" * 40)),
    Variant("high-below-low", "either", ".csv", _high_below_low),
    Variant("year-1", "refuse", ".csv", _cell(lambda t: t.ts, "0001-01-01T00:00:00Z")),
    Variant("year-9999", "refuse", ".csv", _cell(lambda t: t.ts, "9999-12-31T23:59:59Z")),
    Variant("epoch-negative", "either", ".csv", _cell(lambda t: t.ts, "-1")),
    Variant("epoch-s", "either", ".csv", _cell(lambda t: t.ts, "1772409600")),
    Variant("epoch-ns", "either", ".csv", _cell(lambda t: t.ts, "1772409600000000000")),
    Variant("duplicate-row", "either", ".csv", _duplicate_row),
    Variant("duplicate-column", "refuse", ".csv", _duplicate_column),
    Variant("side-hold", "either", ".csv", _cell(lambda t: t.side, "hold")),
    Variant("formula-id", "either", ".csv", _cell(lambda t: t.ids, "=1+1")),
    Variant("huge-int-id", "either", ".csv", _cell(lambda t: t.ids, "9" * 40)),
    Variant("folder", "either", "", _folder),
    Variant("unclosed-quote", "refuse", ".csv", _cell(lambda t: t.num, '"12')),
    Variant("quoted-newline", "refuse", ".csv", _cell(lambda t: t.num, '"1\n2"')),
    Variant("1e400", "refuse", ".csv", _cell(lambda t: t.num, "1e400")),
    Variant("empty-id", "refuse", ".csv", _cell(lambda t: t.ids, "")),
    Variant("control-id", "refuse", ".csv", _cell(lambda t: t.ids, "a\x01b")),
    Variant("long-id", "refuse", ".csv", _cell(lambda t: t.ids, "x" * 5000)),
    Variant("ts-nat", "refuse", ".csv", _cell(lambda t: t.ts, "NaT")),
    Variant("ts-feb-30", "refuse", ".csv", _cell(lambda t: t.ts, "2026-02-30T00:00:00Z")),
    Variant("ts-offset", "either", ".csv", _cell(lambda t: t.ts, "2026-03-02T00:20:06+14:00")),
    Variant("short-row", "refuse", ".csv", _bytes(lambda h, r, g: _csv(h, [r[0][:1], *r[1:]]))),
    Variant("cr-only", "either", ".csv", _bytes(lambda h, r, g: _csv(h, r).replace(b"\n", b"\r"))),
    Variant(
        "blank-lines", "either", ".csv", _bytes(lambda h, r, g: _csv(h, r).replace(b"\n", b"\n\n"))
    ),
    Variant("not-xz", "refuse", ".csv.xz", _bytes(lambda h, r, g: g.randbytes(512))),
    Variant("zip-two", "refuse", ".csv.zip", _zip_two),
    Variant("txt-suffix", "refuse", ".txt", _bytes(lambda h, r, g: _csv(h, r))),
    Variant("endless-pipe", "refuse", ".csv", _endless),
    Variant("dev-zero", "refuse", ".csv", _dev_zero),
    Variant("one-mb-word", "refuse", ".csv", _bytes(lambda h, r, g: b"a" * (1 << 20))),
    Variant("nul-file", "refuse", ".csv", _bytes(lambda h, r, g: b"\0" * (1 << 20))),
]


# -------------------------------------------------------------------------- Parquet


def _parquet(change: Callable[[Any, Table], Any]):
    """Write the valid table as Parquet through pyarrow after ``change(arrow_table, t)``."""

    def write(header: list[str], rows: Rows, t: Table, rng: random.Random, path: Path) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = pd.read_csv(io.BytesIO(_csv(header, rows)))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(change(table, t), path)

    return write


def _set(col_of: Callable[[Table], str | None], make: Callable[[Any], Any]):
    """Replace a column by ``make(old column)`` (an Arrow array)."""

    def change(table: Any, t: Table) -> Any:
        col = col_of(t) or t.num
        k = table.schema.get_field_index(col)
        return table.set_column(k, col, make(table.column(col).combine_chunks()))

    return change


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _floats_with(value: float):
    def make(old: Any) -> Any:
        values = old.to_pylist()
        values[0] = value
        return _pa().array([float(v) if v is not None else None for v in values], _pa().float64())

    return make


def _truncated(header: list[str], rows: Rows, t: Table, rng: random.Random, p: Path) -> None:
    _parquet(lambda a, t: a)(header, rows, t, rng, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _parquet_duplicate_column(table: Any, t: Table) -> Any:
    return table.append_column(t.num, table.column(t.num))


def _struct_last(table: Any, t: Table) -> Any:
    """A struct in the file's last column (an optional one, such as labels' kind)."""
    name = table.column_names[-1]
    cells = _pa().array([{"a": 1}] * table.num_rows)
    return table.set_column(table.num_columns - 1, name, cells)


def _year_one(old: Any) -> Any:
    pa = _pa()
    return pa.array([-62135596800_000_000] * len(old), pa.timestamp("us", tz="UTC"))


def _year_9999(old: Any) -> Any:
    pa = _pa()
    return pa.array([253402300799_000_000] * len(old), pa.timestamp("us", tz="UTC"))


PARQUET_VARIANTS = [
    Variant("parquet-valid", "either", ".parquet", _parquet(lambda a, t: a)),
    Variant("parquet-truncated", "refuse", ".parquet", _truncated),
    Variant("parquet-garbage", "refuse", ".parquet", _bytes(lambda h, r, g: g.randbytes(4096))),
    Variant("parquet-no-rows", "refuse", ".parquet", _parquet(lambda a, t: a.slice(0, 0))),
    Variant(
        "parquet-string-float",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.num, lambda o: _pa().array(["abc"] + ["1.5"] * (len(o) - 1)))),
    ),
    Variant(
        "parquet-list",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.num, lambda o: _pa().array([[1.0, 2.0]] * len(o)))),
    ),
    Variant(
        "parquet-struct",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.ids, lambda o: _pa().array([{"a": 1}] * len(o)))),
    ),
    Variant(
        "parquet-dictionary",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.ids, lambda o: o.cast(_pa().string()).dictionary_encode())),
    ),
    Variant(
        "parquet-nan",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.num, _floats_with(float("nan")))),
    ),
    Variant(
        "parquet-inf",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.num, _floats_with(float("inf")))),
    ),
    Variant(
        "parquet-uint64",
        "either",
        ".parquet",
        _parquet(
            _set(lambda t: t.num, lambda o: _pa().array([2**64 - 1] * len(o), _pa().uint64()))
        ),
    ),
    Variant(
        "parquet-bool",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.num, lambda o: _pa().array([True] * len(o)))),
    ),
    Variant(
        "parquet-binary-id",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.ids, lambda o: _pa().array([b"\xff\x00"] * len(o)))),
    ),
    Variant("parquet-year-1", "refuse", ".parquet", _parquet(_set(lambda t: t.ts, _year_one))),
    Variant(
        "parquet-ts-int",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.ts, lambda o: _pa().array([1772409600] * len(o), _pa().int64()))),
    ),
    Variant(
        "parquet-ts-date",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.ts, lambda o: _pa().array([20513] * len(o), _pa().date32()))),
    ),
    Variant("parquet-duplicate-column", "refuse", ".parquet", _parquet(_parquet_duplicate_column)),
    Variant("parquet-struct-last", "refuse", ".parquet", _parquet(_struct_last)),
    Variant("parquet-year-9999", "refuse", ".parquet", _parquet(_set(lambda t: t.ts, _year_9999))),
    Variant(
        "parquet-ts-ns-naive",
        "either",
        ".parquet",
        _parquet(
            _set(
                lambda t: t.ts,
                lambda o: _pa().array([1772409600 * 10**9] * len(o), _pa().timestamp("ns")),
            )
        ),
    ),
    Variant(
        "parquet-float-dictionary",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.num, lambda o: o.cast(_pa().float64()).dictionary_encode())),
    ),
    Variant(
        "parquet-map",
        "refuse",
        ".parquet",
        _parquet(
            _set(
                lambda t: t.num,
                lambda o: _pa().array(
                    [[("a", 1)]] * len(o), _pa().map_(_pa().string(), _pa().int64())
                ),
            )
        ),
    ),
    Variant(
        "parquet-list-id",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.ids, lambda o: _pa().array([["a", "b"]] * len(o)))),
    ),
    Variant(
        "parquet-struct-ts",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.ts, lambda o: _pa().array([{"a": 1}] * len(o)))),
    ),
    Variant(
        "parquet-decimal",
        "either",
        ".parquet",
        _parquet(
            _set(
                lambda t: t.num,
                lambda o: _pa().array(
                    [decimal.Decimal("9" * 38)] * len(o), _pa().decimal128(38, 0)
                ),
            )
        ),
    ),
    Variant(
        "parquet-null-column",
        "refuse",
        ".parquet",
        _parquet(_set(lambda t: t.num, lambda o: _pa().nulls(len(o)))),
    ),
    Variant(
        "parquet-float16",
        "either",
        ".parquet",
        _parquet(_set(lambda t: t.num, lambda o: _pa().array(np.ones(len(o), "float16")))),
    ),
    Variant(
        "parquet-int-ids-null",
        "refuse",
        ".parquet",
        _parquet(
            _set(lambda t: t.ids, lambda o: _pa().array([None] + [7] * (len(o) - 1), _pa().int64()))
        ),
    ),
    Variant(
        "parquet-no-columns",
        "refuse",
        ".parquet",
        _parquet(lambda a, t: _pa().table({}).append_column("x", _pa().array([], _pa().int8()))),
    ),
]

ALL_VARIANTS = {v.name: v for v in [*CSV_VARIANTS, *PARQUET_VARIANTS]}
#: A few variants for commands whose loader the full sweep covers through another command.
CORE = (
    "valid",
    "empty",
    "garbage",
    "utf16",
    "nan",
    "text-number",
    "year-1",
    "duplicate-column",
    "not-gzip",
    "parquet-truncated",
    "parquet-string-float",
    "parquet-list",
    "parquet-year-1",
)


# -------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Target:
    """A command and which of its inputs is hostile."""

    name: str
    table: str  # key of TABLES: the file replaced
    argv: tuple[str, ...]  # {klines} {trades} {labels} {data} {tx} {ulb} {out} {models}...
    variants: tuple[str, ...]
    # the data folder a {data} placeholder means, when the hostile file goes in one
    folder: bool = False


FULL = tuple(ALL_VARIANTS)
#: The variants about reading a file rather than about its values.
READING = tuple(
    v
    for v in FULL
    if v.startswith("parquet-")
    or v
    in (
        "valid",
        "empty",
        "header-only",
        "garbage",
        "utf16",
        "bom",
        "latin1",
        "one-mb-line",
        "not-gzip",
        "folder",
        "unclosed-quote",
        "quoted-newline",
        "short-row",
        "cr-only",
        "blank-lines",
        "dev-zero",
        "not-xz",
        "zip-two",
        "txt-suffix",
        "endless-pipe",
        "duplicate-column",
    )
)
TARGETS = [
    Target(
        "market-score-klines",
        "klines",
        (
            "market",
            "score",
            "--klines",
            "{H}",
            "--trades",
            "{trades}",
            "--out",
            "{out}",
            "-m",
            "{market_models}",
        ),
        (
            *READING,
            "nan",
            "inf",
            "text-number",
            "high-below-low",
            "year-1",
            "epoch-s",
            "duplicate-row",
            "formula-id",
        ),  # (the value checks are the trades loader's: see market-score-trades)
    ),
    Target(
        "market-score-trades",
        "trades",
        (
            "market",
            "score",
            "--klines",
            "{klines}",
            "--trades",
            "{H}",
            "--out",
            "{out}",
            "-m",
            "{market_models}",
        ),
        FULL,
    ),
    Target(
        "market-evaluate-labels",
        "labels",
        ("market", "evaluate", "--data", "{D}", "-m", "{market_models}", "--out", "{out}"),
        (
            *CORE,
            "short-row",
            "formula-id",
            "folder",
            "parquet-struct",
            "parquet-list-id",
            "parquet-struct-last",
        ),
        folder=True,
    ),
    Target(
        "market-evaluate-trades",
        "trades",
        ("market", "evaluate", "--data", "{D}", "-m", "{market_models}", "--out", "{out}"),
        CORE,
        folder=True,
    ),
    Target(
        "market-train-klines",
        "klines",
        ("market", "train", "--data", "{D}", "-m", "{out}", "--detector", "features"),
        tuple(v for v in CORE if ALL_VARIANTS[v].expect == "refuse"),  # (none trains)
        folder=True,
    ),
    Target(
        "market-pairs-trades",
        "trades",
        ("market", "pairs", "--klines", "{klines}", "--trades", "{H}", "--out", "{out}"),
        CORE,
    ),
    Target(
        "market-pairs-klines",
        "klines",
        ("market", "pairs", "--klines", "{H}", "--trades", "{trades}", "--out", "{out}"),
        CORE,
    ),
    Target(
        "market-simulate-klines",
        "klines",
        ("market", "simulate", "--klines", "{H}", "--out", "{out}", "--accounts", "4"),
        CORE,
    ),
    Target(
        "db-load-trades",
        "trades",
        ("db", "load", "--klines", "{klines}", "--trades", "{H}", "--db", "{db}"),
        CORE,
    ),
    Target(
        "db-load-klines",
        "klines",
        ("db", "load", "--klines", "{H}", "--trades", "{trades}", "--db", "{db}"),
        CORE,
    ),
    Target(
        "cards-score",
        "transactions",
        ("cards", "score", "--data", "{H}", "--out", "{out}", "-m", "{cards_models}"),
        FULL,
    ),
    Target(
        "cards-score-history",
        "transactions",
        (
            "cards",
            "score",
            "--data",
            "{tx_late}",
            "--history",
            "{H}",
            "--out",
            "{out}",
            "-m",
            "{cards_models}",
        ),
        CORE,
    ),
    Target(
        "cards-train-ulb",
        "ulb",
        (
            "cards",
            "train",
            "--data",
            "{H}",
            "-m",
            "{out}",
            "--detector",
            "logistic",
            "--split",
            "random",
        ),
        FULL,
    ),
    Target(
        "cards-train-features",
        "features",
        (
            "cards",
            "train",
            "--data",
            "{H}",
            "-m",
            "{out}",
            "--detector",
            "logistic",
            "--split",
            "random",
        ),
        (
            *CORE,
            "inf",
            "formula-id",
            "huge-int",
            "duplicate-row",
            "parquet-bool",
            "parquet-struct",
            "parquet-list-id",
            "parquet-year-9999",
        ),
    ),
    Target(
        "cards-train",
        "transactions",
        ("cards", "train", "--data", "{H}", "-m", "{out}", "--detector", "logistic"),
        CORE,
    ),
    Target(
        "cards-evaluate",
        "transactions",
        ("cards", "evaluate", "--data", "{H}", "-m", "{cards_models}", "--out", "{out}"),
        CORE,
    ),
    Target(
        "cards-benchmark",
        "transactions",
        (
            "cards",
            "benchmark",
            "--data",
            "{H}",
            "--detector",
            "logistic",
            "--weeks",
            "1",
            "--out",
            "{out}",
        ),
        CORE,
    ),
    Target(
        "cards-process",
        "transactions",
        ("cards", "process", "--source", "file:{H}", "--sink", "{out}", "-m", "{cards_models}"),
        READING,
    ),
]

# enqueue --file reads one id a line (or a CSV with an account_id column): its own reader.
ENQUEUE_VARIANTS: dict[str, tuple[str, bytes]] = {
    "valid": ("accept", b"account_id\na1\na2\n"),
    "empty": ("either", b""),
    "garbage": ("refuse", random.Random(SEED).randbytes(4096)),
    "utf16": ("refuse", "account_id\na1\n".encode("utf-16")),
    "bom": ("either", b"\xef\xbb\xbfaccount_id\na1\n"),
    "latin1": ("refuse", b"account_id\ncaf\xe9\n"),
    "nul": ("refuse", b"account_id\na\x001\n"),
    "one-mb-line": ("refuse", b"a" * (1 << 20)),
    "formula-id": ("either", b"account_id\n=1+1\n"),
    "huge-int-id": ("either", b"9" * 40 + b"\n"),
    "duplicate-column": ("either", b"account_id,account_id\na1,a1\n"),
    "parquet-garbage": ("refuse", b"PAR1" + random.Random(SEED).randbytes(2048)),
}


def case_ids() -> list[str]:
    ids = [f"{t.name}:{v}" for t in TARGETS for v in t.variants]
    return [*ids, *(f"enqueue:{v}" for v in ENQUEUE_VARIANTS)]


#: Variants whose error names the row only: pandas stops at the quote, before columns.
ROW_ONLY = frozenset({"unclosed-quote"})


def bad_cell(case: str) -> bool:
    """Whether the case's file has one bad cell (in row 1): its refusal names the row
    (and the column, unless the variant is in :data:`ROW_ONLY`)."""
    target, variant = case.split(":", 1)
    v = ALL_VARIANTS.get(variant)
    return target != "enqueue" and v is not None and getattr(v.write, "cell", False)


#: Variants a target takes where the file kind refuses them elsewhere: a blank number in
#: a feature table is a missing value the card models read (median and indicator).
TARGET_ACCEPTS = {"cards-train-features": {"nan", "parquet-nan"}}


def expectation(case: str) -> str:
    target, variant = case.split(":", 1)
    if target == "enqueue":
        return ENQUEUE_VARIANTS[variant][0]
    if variant in TARGET_ACCEPTS.get(target, ()):
        return "accept"
    return ALL_VARIANTS[variant].expect


# -------------------------------------------------------------------------- runner


def _read_rows(path: Path) -> tuple[list[str], Rows]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def _build(base: Path) -> dict[str, Path]:
    """The valid inputs, and a market and a card model trained on them."""
    import numpy as np
    import pandas as pd
    from typer.testing import CliRunner

    from fraudlens.cli import app

    def cli(*argv: str) -> None:
        res = CliRunner().invoke(app, list(argv))
        assert res.exit_code == 0, (argv, res.output, res.exception)

    seed_dir = base / "seed"
    cli("market", "simulate", "--out", str(seed_dir), "--accounts", "2", "--seed", "3")
    k = pd.read_csv(seed_dir / "klines.csv")
    k = k[k["symbol"] == k["symbol"].iloc[0]].head(400)
    small = base / "small-klines.csv"
    k.to_csv(small, index=False)
    market = base / "market"
    cli(
        "market",
        "simulate",
        "--klines",
        str(small),
        "--out",
        str(market),
        "--accounts",
        "12",
        "--seed",
        "3",
    )
    cli(
        "market",
        "train",
        "--data",
        str(market),
        "-m",
        str(base / "market-models"),
        "--detector",
        "features",
    )
    cards = base / "cards"
    cli("cards", "simulate", "--out", str(cards), "--customers", "25", "--days", "22")
    tx = pd.read_csv(cards / "transactions.csv")[list(TABLES["transactions"].columns)]
    tx.to_csv(cards / "transactions.csv", index=False)
    tx.tail(40).to_csv(base / "tx-late.csv", index=False)
    cli(
        "cards",
        "train",
        "--data",
        str(cards / "transactions.csv"),
        "-m",
        str(base / "cards-models"),
        "--detector",
        "logistic",
    )
    rng = np.random.default_rng(SEED)
    n = 300
    ulb = pd.DataFrame(rng.normal(size=(n, 28)).round(4), columns=[f"V{i}" for i in range(1, 29)])
    ulb.insert(0, "Time", np.arange(n) * 60.0)
    ulb["Amount"] = rng.gamma(2.0, 30.0, n).round(2)
    ulb["Class"] = (rng.random(n) < 0.2).astype(int)
    ulb.to_csv(base / "ulb.csv", index=False)
    features = pd.DataFrame(
        {
            "transaction_id": [f"tx-{i}" for i in range(n)],
            **{f"f{k}": rng.normal(size=n).round(4) for k in (1, 2, 3)},
            "label": (rng.random(n) < 0.2).astype(int),
        }
    )
    features.to_csv(base / "features.csv", index=False)
    return {
        "klines": market / "klines.csv",
        "trades": market / "trades.csv",
        "labels": market / "labels.csv",
        "market": market,
        "market_models": base / "market-models",
        "transactions": cards / "transactions.csv",
        "tx_late": base / "tx-late.csv",
        "ulb": base / "ulb.csv",
        "features": base / "features.csv",
        "cards_models": base / "cards-models",
    }


class _HangError(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _HangError(f"no exit after {CASE_SECONDS} s")


def _run_case(case: str, inputs: dict[str, Path], work: Path) -> dict[str, Any]:
    from typer.testing import CliRunner

    from fraudlens.cli import app

    target_name, variant_name = case.split(":", 1)
    here = work / case.replace(":", "-")
    here.mkdir(parents=True)
    values = {k: str(v) for k, v in inputs.items()}
    values["out"] = str(here / "out")
    values["db"] = f"sqlite:///{here / 'store.db'}"
    if target_name == "enqueue":
        hostile = here / "ids.txt"
        hostile.write_bytes(ENQUEUE_VARIANTS[variant_name][1])
        argv = ["enqueue", "--file", str(hostile), "--queue", f"sqlite:///{here / 'q.db'}"]
    else:
        target = next(t for t in TARGETS if t.name == target_name)
        variant = ALL_VARIANTS[variant_name]
        table = TABLES[target.table]
        header, rows = _read_rows(inputs[target.table])
        rng = random.Random(f"{SEED}:{case}")
        if target.folder:
            folder = here / "data"
            shutil.copytree(inputs["market"], folder)
            (folder / f"{table.name}.csv").unlink()
            hostile = folder / f"{table.name}{variant.suffix}"
            values["D"] = str(folder)
        else:
            hostile = here / f"{table.name}{variant.suffix}"
        variant.write(header, rows, table, rng, hostile)
        values["H"] = str(hostile)
        argv = [a.format(**values) for a in target.argv]
    start = time.monotonic()
    signal.alarm(CASE_SECONDS)
    try:
        res = CliRunner().invoke(app, argv, catch_exceptions=True)
        code = res.exit_code
        output = res.output
        exc = res.exception
        tb = (
            "".join(traceback.format_exception(exc))
            if exc is not None and not isinstance(exc, SystemExit)
            else ""
        )
    except _HangError as hang:
        code, output, tb = -1, "", f"hang: {hang}"
    finally:
        signal.alarm(0)
    return {
        "case": case,
        "file": str(hostile),
        "argv": argv,
        "code": code,
        "output": output[-4000:],
        "traceback": tb[-6000:],
        "seconds": round(time.monotonic() - start, 3),
    }


def main(out: str, only: str | None = None) -> None:
    """Build the inputs and run every case (or those whose id contains ``only``),
    appending each result to ``out`` as a JSON line."""
    import resource
    import tempfile

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.environ.update(COLUMNS="1000", TERM="dumb")
    os.environ.pop("FORCE_COLOR", None)
    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory(prefix="hostile-files-") as tmp:
        base = Path(tmp)
        inputs = _build(base / "inputs")
        with open(out, "a", encoding="utf-8") as f:
            for case in case_ids():
                if only and only not in case:
                    continue
                f.write(json.dumps({"case": case, "started": True}) + "\n")
                f.flush()
                f.write(json.dumps(_run_case(case, inputs, base / "cases")) + "\n")
                f.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
