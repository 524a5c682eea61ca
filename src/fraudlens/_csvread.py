"""One wording for table files that cannot be read: empty, header only, not UTF-8.

The market and card loaders (and everything built on them: ``fraudlens db load``, the
CLI's ``--data`` options) raise these same :class:`~fraudlens.errors.DataError` messages,
so a user sees one sentence for one problem whichever command read the file.

Compressed CSV files (``.gz``, ``.bz2``, ``.xz``, ``.zip``) are checked before pandas
reads them (:func:`check_header` calls :func:`check_expansion`): a small file can hold an
endless stream (a 1 MB gzip file of 1 GB of NUL bytes made pandas abort the whole process
with ``std::bad_alloc`` after 43 s and 4.3 GB). The file is decompressed once as a stream,
in constant memory, and refused as soon as it has grown past
:data:`MAX_EXPANSION` times the compressed bytes read so far (beyond the first
:data:`EXPANSION_FLOOR` bytes), past :data:`MAX_DECOMPRESSED_BYTES` in all, or holds a
row longer than :data:`MAX_ROW_BYTES`. Ordinary CSV compresses 3 to 40 times; a bomb,
about 1,000 times, so it is refused after its first 64 MB (a fraction of a second).

Parquet files are held to the same limits (:func:`check_parquet`, from their footer alone,
before any column is read): their rows x columns x 8 bytes, the least pandas will take
for them, may not pass :data:`MAX_EXPANSION` times the file's size beyond
:data:`EXPANSION_FLOOR`, nor :data:`MAX_DECOMPRESSED_BYTES`. A 561 KB Parquet file of
200 million dictionary-encoded rows kept the card loader busy for over two minutes and
5 GB before.

:func:`check_header` also refuses what is not a table file of a supported kind before
pandas reads it: a name without a supported suffix (:data:`TABLE_FORMATS`; a ``.json``
file used to be read as CSV and reported as "no data rows"), content that is clearly
something else (JSON, Parquet or compressed bytes under a CSV name, NUL bytes in the
header), and a header naming a column twice (pandas would rename the second ``Time.1``
and read on), naming both positions.

:func:`read_csv` is pandas' reader for the loaders, except that data rows holding more
values than the header names columns are never read shifted: pandas takes the extra
leading values as the row index when the first data row has them, and every column then
holds its left neighbour's values ("row 1, column 'ts': cannot parse 'buy'"). A
delimiter at the end of the rows (empty values past the header) is read as if it were
not there; a value past the header is refused, naming its row. A row holding fewer
values than the header names columns is refused too, naming its row and both counts:
pandas fills the missing values in as empty, so the loaders had reported the row's last
column as missing ("missing account_id"), or read a row that lost its label as unlabelled.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from fraudlens.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EMPTY_FILE",
    "EXPANSION_FLOOR",
    "MAX_COLUMNS",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_EXPANSION",
    "MAX_ROW_BYTES",
    "NO_DATA_ROWS",
    "READ_ERRORS",
    "TABLE_FORMATS",
    "check_columns",
    "check_expansion",
    "check_header",
    "check_parquet",
    "read_csv",
    "read_error",
    "read_parquet",
    "undecodable",
]

#: The file holds nothing at all (not even a header row).
EMPTY_FILE = "the file is empty (no header row, no data rows)"
#: The file holds a header row and nothing else.
NO_DATA_ROWS = "no data rows (the file has only a header row)"


#: Most columns a table file may have. A header of a million commas is a one-megabyte
#: file that pandas would turn into a million columns for every row (gigabytes).
MAX_COLUMNS = 1024
# Longest header row read looking for its end.
_HEADER_BYTES = 1 << 20
#: Longest row of a compressed table file (checked while it is decompressed).
MAX_ROW_BYTES = 1 << 20
#: Most times its compressed size a compressed table file may grow to when decompressed
#: (counted against the compressed bytes read so far).
MAX_EXPANSION = 200
#: Decompressed bytes a compressed file may reach before :data:`MAX_EXPANSION` applies.
EXPANSION_FLOOR = 64 << 20
#: Most bytes a compressed table file may decompress to: decompress a larger one first
#: (or convert it to Parquet).
MAX_DECOMPRESSED_BYTES = 4 << 30
# Suffixes of the compressed files pandas reads by name and this module checks.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", *(f".csv{c}" for c in _COMPRESSED))
#: The table files the loaders read, in words (for error messages).
TABLE_FORMATS = "CSV (.csv, or .csv.gz, .csv.bz2, .csv.xz, .csv.zip) or Parquet (.parquet, .pq)"
# What a corrupt or truncated compressed file raises while it is read: a bad gzip
# stream is zlib.error, a truncated one EOFError, neither of them an OSError.
_DECOMPRESS_ERRORS = (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)
#: What reading a table file (pandas or pyarrow, through a decompressor) raises for a file
#: that cannot be read: the loaders turn these into :func:`read_error`'s DataError.
READ_ERRORS = (ValueError, *_DECOMPRESS_ERRORS)
# Leading bytes of files that are not CSV text, and what they are.
_MAGIC = (
    (b"PAR1", "a Parquet file; name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed; name it .csv.gz"),
    (b"BZh", "bzip2-compressed; name it .csv.bz2"),
    (b"\xfd7zXZ\x00", "xz-compressed; name it .csv.xz"),
    (b"PK\x03\x04", "a ZIP archive; name it .csv.zip"),
)


class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read from it (the compressed bytes)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


def _open_binary(path: Path, counter: _Counting | None = None) -> BinaryIO:
    """``path`` opened for reading its decompressed bytes (a CSV file as is).

    With ``counter``, the compressed bytes are read through it (:func:`check_expansion`).
    """
    name = path.name.lower()
    if not name.endswith(_COMPRESSED):
        return open(path, "rb")
    if name.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        try:
            infos = archive.infolist()
            if len(infos) != 1:
                # pandas reads a ZIP archive of one file and reports the rest itself.
                raise zipfile.BadZipFile(f"a ZIP archive of {len(infos)} files")
            if counter is not None:
                # A member is read through the archive: its compressed size stands for
                # the compressed bytes read.
                counter.count = infos[0].compress_size
            return cast(BinaryIO, archive.open(infos[0]))
        finally:
            archive.close()  # the member stays readable until it is closed
    raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed with the stream below
    source: BinaryIO = raw
    if counter is not None:
        counter.raw = raw
        source = cast(BinaryIO, counter)
    try:
        if name.endswith(".gz"):
            return cast(BinaryIO, gzip.GzipFile(fileobj=source, mode="rb"))
        if name.endswith(".bz2"):
            return cast(BinaryIO, bz2.BZ2File(source, "rb"))
        return cast(BinaryIO, lzma.LZMAFile(source, "rb"))
    except BaseException:
        raw.close()
        raise


def check_expansion(path: str | Path) -> None:
    """Refuse a compressed table file that decompresses to far more than it holds.

    Decompresses the file as a stream, once, in constant memory (see the module
    documentation for the limits). Files that are not compressed, or that cannot be read
    (pandas reports those in its own words), pass.

    Raises
    ------
    DataError
        Naming the file, how far it was read and which limit it passed.
    """
    p = Path(path)
    if not p.name.lower().endswith(_COMPRESSED):
        return
    counter = _Counting(cast(BinaryIO, None))
    total = 0
    line = 0  # bytes since the last line break
    try:
        stream = _open_binary(p, counter)
    except _DECOMPRESS_ERRORS:
        return
    try:
        with stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                cut = chunk.rfind(b"\n")
                line = line + len(chunk) if cut < 0 else len(chunk) - cut - 1
                if line > MAX_ROW_BYTES:
                    raise DataError(
                        f"a row longer than {MAX_ROW_BYTES:,} bytes (after {total:,} "
                        "decompressed bytes): not a table file",
                        file=str(p),
                    )
                if total > MAX_DECOMPRESSED_BYTES:
                    raise DataError(
                        f"decompresses to more than {MAX_DECOMPRESSED_BYTES:,} bytes; "
                        "decompress it first or convert it to Parquet",
                        file=str(p),
                    )
                if total > EXPANSION_FLOOR and total > MAX_EXPANSION * counter.count:
                    raise DataError(
                        f"decompresses to more than {MAX_EXPANSION} times its size "
                        f"({counter.count:,} compressed bytes gave {total:,}): a "
                        "decompression bomb, not a table file",
                        file=str(p),
                    )
    except _DECOMPRESS_ERRORS:
        return  # a corrupt or truncated file: pandas says so in its own words


def undecodable(path: str | Path) -> DataError:
    """The error for a CSV file that is not UTF-8, naming the first bad value's place.

    The file is read again with undecodable bytes kept as surrogates, and parsed as CSV
    (quoted fields with line breaks count as one row), to find the first field holding
    one: its row (the header is row 0) and its column name.

    Parameters
    ----------
    path
        The CSV file (``.gz`` compressed or not).

    Returns
    -------
    DataError
        Naming the file, row and column, the offending byte and the fix.
    """
    p = Path(path)
    with _open_binary(p) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        header: list[str] = []
        for row_no, fields in enumerate(csv.reader(text)):
            if row_no == 0:
                header = fields
            for col_no, value in enumerate(fields):
                bad = next((ch for ch in value if "\udc80" <= ch <= "\udcff"), None)
                if bad is None:
                    continue
                shown = _around(value, value.index(bad))
                if row_no > 0 and col_no < len(header):
                    column = header[col_no].strip()[:80]
                else:
                    column = shown if row_no == 0 else f"#{col_no + 1}"
                return DataError(
                    f"the file is not UTF-8 text: byte 0x{ord(bad) - 0xDC00:02X} in "
                    f"{shown!r}; save the file as UTF-8",
                    file=str(p),
                    row=row_no,
                    column=column,
                )
    # pandas found a bad byte this scan did not (it should not happen); still say what.
    return DataError("the file is not UTF-8 text; save the file as UTF-8", file=str(p))


def _around(value: str, at: int, reach: int = 30) -> str:
    """``value`` (undecodable bytes as U+FFFD, blanks stripped) cut to ``reach``
    characters either side of position ``at``, with ``...`` where it was cut: a field
    can hold a megabyte."""
    lo, hi = max(0, at - reach), at + reach
    part = value[lo:hi].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return ("..." if lo else "") + part.strip() + ("..." if hi < len(value) else "")


def check_parquet(path: str | Path) -> None:
    """Refuse a Parquet file whose footer declares far more cells than the file holds.

    Reads the footer only. A file pyarrow cannot read passes (the loader reports it).

    Raises
    ------
    DataError
        Naming the file, its rows and columns, and the limit passed.
    """
    p = Path(path)
    try:
        import pyarrow.parquet as pq

        meta = pq.read_metadata(p)
        size = p.stat().st_size
    except Exception:  # any reader error is the loader's to report, in its words
        return
    rows, columns = int(meta.num_rows), int(meta.num_columns)
    try:
        names = meta.schema.to_arrow_schema().names
    except Exception:  # an unusual schema: the loader reports what it cannot read
        names = []
    check_columns(names[: MAX_COLUMNS + 1], str(p))
    if columns > MAX_COLUMNS:
        raise DataError(
            f"the file has {columns:,} columns; at most {MAX_COLUMNS:,} are read", file=str(p)
        )
    least = rows * max(columns, 1) * 8  # bytes pandas needs at the least
    if least > MAX_DECOMPRESSED_BYTES or (least > EXPANSION_FLOOR and least > MAX_EXPANSION * size):
        raise DataError(
            f"{rows:,} rows x {columns:,} columns in a file of {size:,} bytes would take at "
            f"least {least:,} bytes to read (limits: {MAX_EXPANSION} times the file's size, "
            f"{MAX_DECOMPRESSED_BYTES:,} bytes); a decompression bomb, or split the file",
            file=str(p),
        )


def check_header(path: str | Path, max_columns: int = MAX_COLUMNS) -> None:
    """Refuse a CSV file whose header row has more than ``max_columns`` columns, or is
    longer than a megabyte, or a compressed one that decompresses to far more than it
    holds (:func:`check_expansion`), before pandas reads it. A Parquet file (``.parquet``,
    ``.pq``) is checked by :func:`check_parquet` instead.

    Raises
    ------
    DataError
        Naming the file and the header row (row 0).
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(_PARQUET):
        check_parquet(p)
        return
    if not name.endswith(_CSV):
        raise DataError(f"unsupported file type; expected {TABLE_FORMATS}", file=str(p))
    check_expansion(p)
    try:
        with _open_binary(p) as raw:
            head = raw.readline(_HEADER_BYTES + 1)
    except _DECOMPRESS_ERRORS:
        return  # pandas reports the unreadable file in its own words
    _check_content(p, head)
    if len(head) > _HEADER_BYTES:
        raise DataError(
            f"the header row is longer than {_HEADER_BYTES:,} bytes", file=str(p), row=0
        )
    text = head.decode("utf-8", "replace")
    # A quoted header field may hold a line break; then the rough count below is low,
    # which only lets pandas read the file as before.
    try:
        names = next(csv.reader([text.rstrip("\r\n")]), [])
    except csv.Error:  # a field longer than the csv module takes
        names = text.split(",")
    if len(names) > max_columns:
        raise DataError(
            f"the header row has {len(names):,} columns; at most {max_columns:,} are read",
            file=str(p),
            row=0,
        )
    check_columns(names, str(p))


def _check_content(p: Path, head: bytes) -> None:
    """Refuse a file named CSV whose first line is clearly not CSV text."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"not CSV text: the file is {what}", file=str(p))
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"{") or (start.startswith(b"[") and start[1:].lstrip()[:1] in b'{["'):
        raise DataError(
            f"not CSV text: the file looks like JSON; expected {TABLE_FORMATS}", file=str(p)
        )
    if b"\x00" in head:
        raise DataError("not CSV text: the header row holds NUL bytes", file=str(p), row=0)


def check_columns(names: list[str], file: str | None = None) -> None:
    """Refuse a header that names a column twice (blanks and a byte-order mark aside).

    pandas reads such a file and renames the second ``Time.1``, so a loader would take
    the first and quietly ignore the other.

    Raises
    ------
    DataError
        Naming the file, the header row (row 0), the column and both positions (1-based).
    """
    seen: dict[str, int] = {}
    for k, raw in enumerate(names):
        key = str(raw).strip().lstrip("\ufeff").strip()
        if not key:
            continue  # unnamed columns are numbered by pandas ("Unnamed: 3")
        if key in seen:
            raise DataError(
                f"duplicate column name: columns {seen[key] + 1} and {k + 1} are both "
                f"named {key[:80]!r}",
                file=file,
                row=0,
                column=key[:80],
            )
        seen[key] = k


def read_error(path: str | Path, exc: BaseException) -> DataError:
    """The :class:`DataError` for a table file pandas (or pyarrow) failed to read.

    Parameters
    ----------
    path
        The file.
    exc
        What the reader raised: an empty file, bytes that are not UTF-8, a malformed CSV
        or Parquet file, an OS error.
    """
    import pandas as pd

    if isinstance(exc, DataError):  # already in these words (read_csv's)
        return exc
    if isinstance(exc, pd.errors.EmptyDataError):
        return DataError(EMPTY_FILE, file=str(path))
    if isinstance(exc, UnicodeDecodeError):
        return undecodable(path)
    if isinstance(exc, pd.errors.ParserError):
        # A row with more values than the header has columns: named by its row, as every
        # other bad row is (it had been pandas' "Error tokenizing data. C error: Expected
        # 7 fields in line 8, saw 8").
        found = _RAGGED.search(str(exc))
        if found is not None:
            expected, line, saw = (int(g) for g in found.groups())
            return DataError(
                f"{saw} values, but the header row names {expected} columns (line {line} "
                "of the file)",
                file=str(path),
                row=line - 1,
            )
        found = _UNCLOSED.search(str(exc))
        if found is not None:
            # (it had been pandas' "Error tokenizing data. C error: EOF inside string
            # starting at row 1", with no row of the loaders' numbering)
            return DataError(
                "a quoted value is never closed: the file ends before its closing quote",
                file=str(path),
                row=int(found.group(1)),
            )
    return DataError(f"cannot read the file: {exc}", file=str(path))


def read_parquet(path: str | Path) -> pd.DataFrame:
    """``pandas.read_parquet(path)``, also for a file whose pandas metadata does not match
    its columns.

    A file written from pandas records each column's pandas type; when a column holds
    something else (a struct or a list where the metadata says text), pandas' cast to that
    type raised pyarrow's ArrowNotImplementedError, which no loader caught (a traceback,
    exit code 1). Such a file is read again without the metadata, so the loaders'
    validation names the row and column of the first value of the wrong kind.

    Raises
    ------
    DataError
        Naming the file, when pyarrow cannot read it either way.
    ValueError, OSError
        As ``pandas.read_parquet`` (see :func:`read_error`).
    """
    import pandas as pd
    import pyarrow as pa

    try:
        out: pd.DataFrame = pd.read_parquet(path)
        return out
    except pa.ArrowException as exc:
        if isinstance(exc, OSError | MemoryError):
            raise
        first = exc
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pandas(ignore_metadata=True)
    except (pa.ArrowException, ValueError, TypeError):
        raise read_error(path, first) from None


# pandas' C parser on a quote never closed (its rows counted from the header row, 0).
_UNCLOSED = re.compile(r"EOF inside string starting at row (\d+)")
# pandas' C parser on a row with more fields than the header.
_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv(path: str | Path, **kwargs: object) -> pd.DataFrame:
    """``pandas.read_csv(path, **kwargs)``, with rows longer than the header read right.

    When the first data row holds more values than the header names columns, pandas reads
    the extra leading values as the index and shifts every column. Here the file is read
    with ``index_col=False``: empty values past the header's columns (a delimiter ending
    each row, as some exports write) are dropped, and the first row with a value there is
    refused.

    Raises
    ------
    DataError
        Naming the file and that row.
    pandas.errors.ParserError, ValueError, ...
        As ``pandas.read_csv`` (see :func:`read_error`).
    """
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        # pandas warns (and drops them) only when a value past the header is not empty.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            out: pd.DataFrame = pd.read_csv(path, index_col=False, **kwargs)  # type: ignore[call-overload]
        except pd.errors.ParserWarning:
            pass
        else:
            _check_short_rows(path, out, kwargs)
            return out
    # Read as pandas would by default to find the row: the extra values shift each row
    # right, so the last columns hold the values past the header's.
    shifted = pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    extra = shifted.index.nlevels
    n_cols = len(shifted.columns)
    past = shifted.iloc[:, n_cols - extra :].notna().any(axis=1).to_numpy()
    row = int(past.argmax()) + 1 if past.any() else 1
    raise DataError(
        f"{n_cols + extra} values, but the header row names {n_cols} columns",
        file=str(path),
        row=row,
    )


# read_csv options under which the csv module's rows are not pandas' rows.
_OTHER_DIALECT = frozenset(
    {
        "usecols",
        "nrows",
        "skiprows",
        "skipfooter",
        "header",
        "sep",
        "delimiter",
        "comment",
        "quotechar",
        "quoting",
        "escapechar",
        "lineterminator",
        "skip_blank_lines",
        "chunksize",
        "iterator",
    }
)


def _check_short_rows(path: str | Path, df: pd.DataFrame, kwargs: dict[str, object]) -> None:
    """Refuse the first data row of ``path`` holding fewer values than its header names
    columns (pandas read it with the missing values empty).

    Such a row leaves its last column empty, so the file is only scanned (as CSV, in
    constant memory, up to the last such row) when ``df``'s last column has an empty
    value; a file without one costs nothing. Rows are counted as pandas counts them:
    blank lines skipped, a quoted value's line breaks inside its row.
    """
    if df.shape[1] < 2 or kwargs.keys() & _OTHER_DIALECT:
        return  # a reading this scan would not count the same way
    empty = df.iloc[:, -1].isna().to_numpy()
    if not empty.any():
        return
    last = len(empty) - int(empty[::-1].argmax())  # 1-based row of the last empty value
    expected = df.shape[1]
    row = 0
    fields: list[str] = []
    try:
        with _open_binary(Path(path)) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            line = [""]  # the last line the csv module read

            def lines() -> Iterator[str]:
                for line[0] in text:
                    yield line[0]

            skip = bool(kwargs.get("skipinitialspace", False))
            reader = csv.reader(lines(), skipinitialspace=skip)
            if next(reader, None) is None:
                return
            for fields in reader:
                if len(fields) <= 1 and not line[0].strip(" \t\r\n"):
                    continue  # a blank line, or one of blanks: pandas skips it
                row += 1
                if row > last:
                    return
                if len(fields) < expected and empty[row - 1]:
                    break
            else:
                return
    except (csv.Error, *_DECOMPRESS_ERRORS):  # pandas read what the csv module cannot
        return
    n = len(fields)
    raise DataError(
        f"{n} value{'' if n == 1 else 's'}, but the header row names {expected} columns "
        "(a value or a delimiter is missing)",
        file=str(path),
        row=row,
    )
