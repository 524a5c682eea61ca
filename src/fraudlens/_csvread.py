"""One wording for table files that cannot be read: empty, header only, not UTF-8.

The market and card loaders (and everything built on them: ``fraudlens db load``, the
CLI's ``--data`` options) raise these same :class:`~fraudlens.errors.DataError` messages,
so a user sees one sentence for one problem whichever command read the file.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import BinaryIO, cast

from fraudlens.errors import DataError

__all__ = ["EMPTY_FILE", "MAX_COLUMNS", "NO_DATA_ROWS", "check_header", "read_error", "undecodable"]

#: The file holds nothing at all (not even a header row).
EMPTY_FILE = "the file is empty (no header row, no data rows)"
#: The file holds a header row and nothing else.
NO_DATA_ROWS = "no data rows (the file has only a header row)"


#: Most columns a table file may have. A header of a million commas is a one-megabyte
#: file that pandas would turn into a million columns for every row (gigabytes).
MAX_COLUMNS = 1024
# Longest header row read looking for its end.
_HEADER_BYTES = 1 << 20


def _open_binary(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


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
                shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                if row_no > 0 and col_no < len(header):
                    column = header[col_no].strip()
                else:
                    column = shown.strip() if row_no == 0 else f"#{col_no + 1}"
                return DataError(
                    f"the file is not UTF-8 text: byte 0x{ord(bad) - 0xDC00:02X} in "
                    f"{shown.strip()!r}; save the file as UTF-8",
                    file=str(p),
                    row=row_no,
                    column=column,
                )
    # pandas found a bad byte this scan did not (it should not happen); still say what.
    return DataError("the file is not UTF-8 text; save the file as UTF-8", file=str(p))


def check_header(path: str | Path, max_columns: int = MAX_COLUMNS) -> None:
    """Refuse a CSV file whose header row has more than ``max_columns`` columns, or is
    longer than a megabyte, before pandas reads it.

    Raises
    ------
    DataError
        Naming the file and the header row (row 0).
    """
    p = Path(path)
    with _open_binary(p) as raw:
        try:
            head = raw.readline(_HEADER_BYTES + 1)
        except (OSError, EOFError, gzip.BadGzipFile):
            return  # pandas reports the unreadable file in its own words
    if len(head) > _HEADER_BYTES:
        raise DataError(
            f"the header row is longer than {_HEADER_BYTES:,} bytes", file=str(p), row=0
        )
    text = head.decode("utf-8", "replace")
    # A quoted header field may hold a line break; then the rough count below is low,
    # which only lets pandas read the file as before.
    try:
        n = len(next(csv.reader([text.rstrip("\r\n")]), []))
    except csv.Error:  # a field longer than the csv module takes
        n = text.count(",") + 1
    if n > max_columns:
        raise DataError(
            f"the header row has {n:,} columns; at most {max_columns:,} are read",
            file=str(p),
            row=0,
        )


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

    if isinstance(exc, pd.errors.EmptyDataError):
        return DataError(EMPTY_FILE, file=str(path))
    if isinstance(exc, UnicodeDecodeError):
        return undecodable(path)
    return DataError(f"cannot read the file: {exc}", file=str(path))
