"""Card data contracts: loaders, validation and train/test splits.

Three kinds of table are accepted (CSV or Parquet, with a header row):

- ``ulb``: the ULB / Worldline table ``Time, V1..V28, Amount`` with label ``Class``;
- ``raw``: raw transactions ``transaction_id, ts, customer_id, terminal_id, amount`` with an
  optional ``label``; their features come from
  :func:`fraudlens.cards.features.transaction_features`. The Fraud Detection Handbook's
  column names (``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT,
  TX_FRAUD``) are read as these;
- ``features``: any numeric feature table with a label column (``Class``, ``label``,
  ``is_fraud`` or ``isFraud`` unless named), optional ``transaction_id`` and ``ts``
  columns. Row identifiers are set aside, never features: a column named ``id`` or
  ``index`` (any case) and the ``Unnamed: N`` columns a saved pandas index leaves.

A path may be a file or a folder of files of one table (e.g. one file a day), read in
name order. Pickle files (``.pkl``) can run code when loaded: they are read only when the
caller says it trusts them (``trust_pickle=True``, the CLI's ``--trust-pickle``).

Labels may be blank: a blank label is *unknown* (not yet investigated). Such rows are
kept for scoring and for the window features (where an unknown label counts as not yet
fraud), and left out of training and of every metric; :attr:`CardTable.known` marks them.

Bad input raises :class:`~fraudlens.errors.DataError` naming the file, the 1-based data row
(the header is row 0) and the column. Where several cells are bad, the one in the earliest
row is named (the leftmost column on ties).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudlens._csvread import (
    NO_DATA_ROWS,
    READ_ERRORS,
    check_header,
    read_csv,
    read_error,
    read_parquet,
)
from fraudlens._echo import cut
from fraudlens._ids import bad_ids, id_problem
from fraudlens._io import missing
from fraudlens._time import utc, utc_series
from fraudlens.cards import _categories
from fraudlens.errors import ConfigError, DataError
from fraudlens.market.data import TS_MAX, TS_MIN, _clock_words

__all__ = [
    "HANDBOOK_COLUMNS",
    "KINDS",
    "LABEL_CANDIDATES",
    "RAW_COLUMNS",
    "TABLE_SUFFIXES",
    "ULB_FEATURES",
    "CardTable",
    "describe_columns",
    "holdout_split",
    "load_table",
    "random_split",
    "read_csv_rows",
    "read_frame",
    "redo_holdout",
    "row_id_column",
    "time_split",
    "time_split_hours",
    "validate_frame",
    "with_history",
]

#: The ULB table's feature columns, in the order models see them.
ULB_FEATURES: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
#: Raw transaction columns (``label`` is optional on input).
RAW_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "ts",
    "customer_id",
    "terminal_id",
    "amount",
    "label",
)
#: Label column names looked for, in order, when none is given.
LABEL_CANDIDATES: tuple[str, ...] = ("Class", "label", "is_fraud", "isFraud")
#: Table kinds.
KINDS: tuple[str, ...] = ("ulb", "features", "raw")
#: The Fraud Detection Handbook's raw column names and the raw contract's names for them.
HANDBOOK_COLUMNS: dict[str, str] = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "ts",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "label",
}
#: File name endings read as tables (pickle only when trusted).
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet", ".pq")
_PICKLE_SUFFIXES = (".pkl", ".pickle")

_NONNEGATIVE = frozenset({"Amount", "amount"})
# Columns of a feature table that identify rows and are no features: ``id`` / ``index``
# in any case, ``Unnamed: 0`` (the column a pandas index saved with the rows gets) and
# names that end in an id word (``TransactionID``, ``user_id``, ``Account Id``). A row
# number learned as a feature ranks whatever order the file was written in (a table
# sorted by class gives a perfect, meaningless model), and an id's number says nothing
# of the row.
_ROW_ID_NAMES = frozenset({"id", "index"})
_UNNAMED = re.compile(r"Unnamed: \d+")
# ``..._id``, ``...-id``, ``... id`` (any case), or ``ID`` / ``Id`` after a lower-case
# letter or digit (``TransactionID``, ``accountId``); not ``paid`` or ``valid``.
_ID_SUFFIX = re.compile(r".*([_\- .](id|ID|Id|iD)|[a-z0-9](ID|Id))")


def row_id_column(name: str) -> bool:
    """Whether a feature table's column ``name`` identifies rows (set aside, no feature)."""
    name = name.strip()
    return (
        name.lower() in _ROW_ID_NAMES
        or _UNNAMED.fullmatch(name) is not None
        or _ID_SUFFIX.fullmatch(name) is not None
    )


_DAY_S = 86_400.0


@dataclass
class CardTable:
    """A validated card table: features, labels and what is needed to split it.

    Attributes
    ----------
    X
        Features in a stable column order, index 0..n-1: numbers (float32 or float64),
        and the text columns named in ``text`` as they were given.
    y
        Labels (int8, 1 = fraud; 0 where unknown), or None for an unlabelled table.
    kind
        ``"ulb"``, ``"features"`` or ``"raw"``.
    ids
        ``transaction_id`` when the table has one.
    time
        Seconds (ULB ``Time``) or UTC timestamps (``ts``), for time splits.
    frame
        The validated source rows (for raw tables: with parsed ``ts``, ``customer_id``,
        ``terminal_id``).
    label_column
        Name of the label column in the source, if any.
    source
        Where the rows came from (a path, or a name such as ``"<request>"``).
    known
        Boolean mask of rows whose label is known (blank labels are unknown), or None
        for an unlabelled table.
    history_rows
        Raw tables: rows of a label history the window features were computed with
        (see :func:`with_history`), 0 without one.
    set_aside
        Feature tables: columns set aside as row identifiers (:func:`row_id_column`).
    text
        Feature tables: text columns, kept as text in ``X`` for the model to encode
        (:mod:`fraudlens.cards._categories`).
    time_column
        Feature tables: the column of the table's own that timed it (``ts`` and ``Time``
        excepted), or None.
    """

    X: pd.DataFrame
    y: np.ndarray | None
    kind: str
    ids: pd.Series | None = None
    time: pd.Series | None = None
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    label_column: str | None = None
    source: str = "<memory>"
    known: np.ndarray | None = None
    history_rows: int = 0
    set_aside: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    time_column: str | None = None

    def __len__(self) -> int:
        return len(self.X)

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in model order."""
        return [str(c) for c in self.X.columns]

    @property
    def n_frauds(self) -> int:
        """Number of rows labelled fraud (0 when unlabelled)."""
        return 0 if self.y is None else int(self.y.sum())

    @property
    def labelled(self) -> np.ndarray:
        """Positions of the rows with a known label (none for an unlabelled table)."""
        if self.y is None:
            return np.zeros(0, dtype=np.int64)
        if self.known is None:
            return np.arange(len(self.y), dtype=np.int64)
        return np.flatnonzero(self.known).astype(np.int64)

    @property
    def n_unknown(self) -> int:
        """Rows whose label is blank (unknown)."""
        if self.y is None or self.known is None:
            return 0
        return int(len(self.known) - self.known.sum())

    def subset(self, idx: np.ndarray | Sequence[int]) -> CardTable:
        """The rows at positions ``idx`` (e.g. from :func:`time_split`), re-indexed 0..k-1."""
        pos = np.asarray(idx, dtype=np.int64)

        def take(s: Any) -> Any:
            return None if s is None else s.iloc[pos].reset_index(drop=True)

        return CardTable(
            X=take(self.X),
            y=None if self.y is None else self.y[pos],
            kind=self.kind,
            ids=take(self.ids),
            time=take(self.time),
            frame=take(self.frame) if len(self.frame) else self.frame,
            label_column=self.label_column,
            source=self.source,
            known=None if self.known is None else self.known[pos],
            history_rows=self.history_rows,
            set_aside=self.set_aside,
            text=self.text,
            time_column=self.time_column,
        )


# --------------------------------------------------------------------------- reading


def _is_pickle(p: Path) -> bool:
    return p.name.lower().endswith(_PICKLE_SUFFIXES)


# Values an id cell may hold and be hashed as is.
_ID_SCALARS = (str, bytes, int, float, np.generic)
# Largest magnitude a card value may have (the models' 32-bit floats).
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _read_one(p: Path, trust_pickle: bool) -> pd.DataFrame:
    name = p.name.lower()
    if _is_pickle(p):
        if not trust_pickle:
            raise DataError(
                "a pickle file can run code when it is read: convert it to Parquet or CSV, "
                "or pass --trust-pickle (trust_pickle=True) if you trust where it came from",
                file=str(p),
            )
        try:
            # Read only at the caller's explicit word (see the module docstring).
            return pd.read_pickle(p)
        except Exception as exc:  # an unpickler can raise anything
            raise DataError(f"cannot read the pickle file: {exc}", file=str(p)) from None
    check_header(p)  # (a Parquet file's footer: see fraudlens._csvread.check_parquet)
    try:
        if name.endswith((".parquet", ".pq")):
            return read_parquet(p)
        return read_csv(p, low_memory=False)
    except READ_ERRORS as exc:
        # ValueError covers an empty file, bytes that are not UTF-8 and a bad Parquet file
        # (pyarrow's ArrowInvalid), the others a corrupt or truncated compressed file; the
        # wording is the market loader's.
        raise read_error(p, exc) from None


def _table_files(folder: Path, trust_pickle: bool) -> list[Path]:
    entries = sorted(f for f in folder.iterdir() if f.is_file())
    files = [f for f in entries if f.name.lower().endswith(TABLE_SUFFIXES)]
    pickles = [f for f in entries if _is_pickle(f)]
    if pickles and trust_pickle:
        files = sorted([*files, *pickles])
    elif pickles and not files:
        # Name the first one: its error says how to proceed.
        return pickles[:1]
    if not files:
        raise DataError(
            f"no table files in the folder (expected {', '.join(TABLE_SUFFIXES)})",
            file=str(folder),
        )
    return files


def read_frame(
    path: str | PathLike[str], *, trust_pickle: bool = False
) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """Read a table file, or every table file of a folder (in name order) as one table.

    Parameters
    ----------
    path
        A ``.csv`` (optionally ``.gz``) or ``.parquet`` file, or a folder of them.
    trust_pickle
        Also read ``.pkl`` files. Unpickling runs code from the file: only for files the
        caller trusts.

    Returns
    -------
    (pandas.DataFrame, list of (str, int))
        The rows, and per file its path and number of rows, in row order (to name the
        file and row of a problem).

    Raises
    ------
    DataError
        Naming the file of an unreadable, empty or (untrusted) pickle file.
    """
    p = Path(path)
    if p.is_dir():
        files = _table_files(p, trust_pickle)
    elif p.is_file():
        files = [p]
    elif p.exists():  # a pipe or a device (or a link to one): not read, it may never end
        raise DataError("not a regular file", file=str(p))
    else:
        raise DataError(missing(p, "no such file or folder"), file=str(p))
    frames = []
    parts = []
    for f in files:
        df = _read_one(f, trust_pickle)
        if len(df) == 0:
            raise DataError(NO_DATA_ROWS, file=str(f))
        frames.append(df.reset_index(drop=True))
        parts.append((str(f), len(df)))
    first = [str(c) for c in frames[0].columns]
    for f, df in zip(files[1:], frames[1:], strict=True):
        if [str(c) for c in df.columns] != first:
            raise DataError(
                f"its columns differ from those of the folder's first file {files[0].name} "
                f"({', '.join(first[:6])}, ...)",
                file=str(f),
            )
    if len(frames) > 1:
        # pandas concatenates a bool column with a numeric one as numbers (True as 1.0):
        # keep the booleans as objects so validation sees and names them.
        mixed = {
            c
            for c in frames[0].columns
            if len({pd.api.types.is_bool_dtype(df[c].dtype) for df in frames}) > 1
        }
        frames = [
            df.astype({c: object for c in mixed if pd.api.types.is_bool_dtype(df[c].dtype)})
            for df in frames
        ]
    out = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return out, parts


def _locate(exc: DataError, parts: list[tuple[str, int]]) -> DataError:
    """``exc`` with its row given inside the file it came from (for a folder's files)."""
    if len(parts) < 2 or exc.row is None:
        return exc
    row = exc.row
    for name, n in parts:
        if row <= n:
            return DataError(exc.reason, file=name, row=row, column=exc.column)
        row -= n
    return exc


def load_table(
    path: str | PathLike[str],
    *,
    label: str | None = None,
    kind: str = "auto",
    require_label: bool = False,
    trust_pickle: bool = False,
    time_column: str | None = None,
    time_unit: float = 1.0,
    drop: Sequence[str] = (),
    drop_strict: bool = True,
    time_of_day: bool = False,
) -> CardTable:
    """Read and validate a card table from CSV or Parquet (a file or a folder of files).

    Parameters
    ----------
    path
        A ``.csv`` (optionally compressed, e.g. ``.csv.gz``) or ``.parquet`` file, or a
        folder of such files (one table in parts, e.g. one file a day).
    label
        Label column. By default the first present of ``Class``, ``label`` and ``is_fraud``
        (``label`` first for raw transactions).
    kind
        ``"auto"`` (detect), ``"ulb"``, ``"raw"`` or ``"features"``.
    require_label
        Raise when there is no label column, or no row with a known label (for training
        and evaluation).
    trust_pickle
        Also read ``.pkl`` files (see :func:`read_frame`).
    time_column, time_unit, time_of_day
        Feature tables: the column that times the rows, and whether its hour of the day
        is a feature (see :func:`validate_frame`).
    drop, drop_strict
        Feature tables: columns that are not read at all (see :func:`validate_frame`).

    Returns
    -------
    CardTable

    Raises
    ------
    DataError
        Naming file, row and column of the first problem.
    """
    df, parts = read_frame(path, trust_pickle=trust_pickle)
    try:
        return validate_frame(
            df,
            kind,
            str(path),
            label,
            require_label=require_label,
            time_column=time_column,
            time_unit=time_unit,
            drop=drop,
            drop_strict=drop_strict,
            time_of_day=time_of_day,
        )
    except DataError as exc:
        raise _locate(exc, parts) from None


# --------------------------------------------------------------------------- validation


def _show(value: Any) -> str:
    """A cell value as users wrote it: ``'abc'``, ``10``, not ``np.int64(10)``; cut to
    60 characters (a cell can hold megabytes), as the market loader shows it."""
    if isinstance(value, np.generic):
        value = value.item()
    return cut(repr(value), 60)


# A check: (column, mask of bad rows, message for a bad row position).
_Problem = tuple[str, np.ndarray, Callable[[int], str]]


def _detect_kind(columns: pd.Index) -> str:
    cols = set(map(str, columns))
    if set(ULB_FEATURES) <= cols:
        return "ulb"
    # The raw contract's customer and terminal ids are no features: a table with either is
    # raw transactions, and one that lacks another raw column is refused naming it (a raw
    # file without its amount column, or without its customer_id, had been trained on as
    # a feature table, ids and all).
    if set(RAW_COLUMNS[:-1]) <= cols or {"customer_id", "terminal_id"} & cols:
        return "raw"
    return "features"


def _numeric(
    df: pd.DataFrame,
    col: str,
    problems: list[_Problem],
    *,
    nonnegative: bool = False,
    hint: str = "",
    blank_ok: bool = False,
) -> pd.Series:
    """``df[col]`` as float64, recording non-numeric, missing (unless ``blank_ok``: NaN),
    infinite and negative cells (``hint`` follows the message of a non-numeric cell)."""
    s = df[col]
    raw = s
    if pd.api.types.is_bool_dtype(s.dtype) or _is_datetime(s.dtype):
        # True/False is no amount or feature value (pandas reads a column of them as bool);
        # nor is a date or time (a Parquet timestamp column had been read as its count of
        # microseconds or nanoseconds since 1970).
        num = pd.Series(np.nan, index=s.index, dtype=np.float64)
        non_numeric = s.notna().to_numpy()
    elif pd.api.types.is_numeric_dtype(s.dtype):
        num = s.astype(np.float64)
        non_numeric = np.zeros(len(s), dtype=bool)
    else:
        num = pd.to_numeric(s, errors="coerce").astype(np.float64)
        non_numeric = (num.isna() & s.notna()).to_numpy()
        if pd.api.types.infer_dtype(s, skipna=True) not in ("string", "floating", "integer"):
            # Mixed cells (a folder of files, a Parquet object column): to_numeric takes
            # True for 1; a boolean is refused like any other non-number.
            flags = np.fromiter(
                (isinstance(v, bool | np.bool_) for v in s.astype(object)),
                dtype=bool,
                count=len(s),
            )
            non_numeric = non_numeric | flags
            num = num.mask(flags)
    v = num.to_numpy()
    missing = np.isnan(v) & ~non_numeric
    problems.append((col, non_numeric, lambda i: f"not a number: {_show(raw.iloc[i])}{hint}"))
    if not blank_ok:
        problems.append((col, missing, lambda i: "missing value"))
    problems.append((col, np.isinf(v), lambda i: f"infinite value: {_show(raw.iloc[i])}"))
    # The models compute in 32-bit floats, where a larger number is infinite.
    with np.errstate(invalid="ignore"):
        huge = np.isfinite(v) & (np.abs(v) > _FLOAT32_MAX)
    problems.append(
        (col, huge, lambda i: f"value {_show(raw.iloc[i])} is too large (at most 3.4e+38 in size)")
    )
    if nonnegative:
        with np.errstate(invalid="ignore"):
            neg = v < 0
        problems.append((col, neg, lambda i: f"negative amount: {v[i]:g}"))
    return num


def _is_datetime(dtype: Any) -> bool:
    return (
        isinstance(dtype, pd.DatetimeTZDtype)
        or pd.api.types.is_datetime64_dtype(dtype)
        or (pd.api.types.is_timedelta64_dtype(dtype))
    )


def _raise_first(problems: list[_Problem], columns: Sequence[str], source: str) -> None:
    """Raise for the bad cell in the earliest row (leftmost column on ties), if any."""
    best: tuple[int, int, str, Callable[[int], str]] | None = None
    col_pos = {c: k for k, c in enumerate(columns)}
    for col, mask, msg in problems:
        if not mask.any():
            continue
        row = int(np.argmax(mask))
        rank = (row, col_pos.get(col, len(col_pos)))
        if best is None or rank < best[:2]:
            best = (rank[0], rank[1], col, msg)
    if best is not None:
        row, _, col, msg = best
        raise DataError(msg(row), file=source, row=row + 1, column=col)


def _check_ids(s: pd.Series, col: str, problems: list[_Problem]) -> None:
    """Record the cells of an id column that break the id rule (:mod:`fraudlens._ids`).

    Whole column at once: integers (the reference's ids) always pass; text goes through
    :func:`fraudlens._ids.bad_ids` (pyarrow's compute kernels), so a million ids cost a
    fraction of a second. Missing cells are reported as missing elsewhere.
    """
    if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype):
        return
    if pd.api.types.is_bool_dtype(s.dtype):
        problems.append((col, s.notna().to_numpy(), lambda i: f"{col} must be text, not a boolean"))
        return
    text = s.astype(object)
    bad = bad_ids(text)
    kinds = pd.api.types.infer_dtype(text, skipna=True)
    if kinds not in ("string", "empty"):
        # Mixed cells (a folder of files, a Parquet object column): numbers pass, other
        # objects (booleans, lists, bytes) do not.
        other = np.fromiter(
            (
                isinstance(v, bool | np.bool_)
                or not isinstance(v, str | int | float | np.integer | np.floating)
                for v in text
            ),
            dtype=bool,
            count=len(text),
        )
        bad |= other & text.notna().to_numpy()
    # (elementwise: a Parquet list cell compared to "" is an array, not a truth value)
    empty = np.fromiter((isinstance(v, str) and v == "" for v in text), bool, len(text))
    bad |= empty

    def message(i: int) -> str:
        value = text.iloc[i]
        if isinstance(value, str):
            return f"{col} {id_problem(value)}"
        return f"{col} must be text or an integer, not {type(value).__name__}"

    problems.append((col, bad, message))


def _parse_ts(s: pd.Series, problems: list[_Problem], col: str = "ts") -> pd.Series:
    """Timestamps as ``datetime64[ns, UTC]`` (no zone means UTC), recording bad cells."""
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        out = utc_series(s)
    elif pd.api.types.is_numeric_dtype(s.dtype):
        bad = s.notna().to_numpy()
        problems.append(
            (col, bad, lambda i: f"expected an ISO-8601 timestamp, got {_show(s.iloc[i])}")
        )
        out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    else:
        out = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        # "now" and "today" (the time of reading to pandas) are no timestamps: the market
        # loader's rule.
        out = out.where(~_clock_words(s.astype(str), out), pd.NaT)
        unparseable = (out.isna() & s.notna()).to_numpy()
        problems.append((col, unparseable, lambda i: f"unparseable timestamp: {_show(s.iloc[i])}"))
    # Compared in the parsed unit, before the nanosecond cast that would overflow.
    far = ((out < TS_MIN) | (out >= TS_MAX)).to_numpy(dtype=bool, na_value=False)
    shown = out  # the parsed values, for the message (``out`` is rebound below, not changed)
    problems.append(
        (
            col,
            far,
            lambda i: (
                f"timestamp {shown.iat[i].isoformat()} is outside the dates fraudlens "
                f"reads ({TS_MIN.date()} to {TS_MAX.date()})"
            ),
        )
    )
    out = out.where(~far, pd.NaT)
    out = out.astype("datetime64[ns, UTC]")
    problems.append((col, (out.isna() & s.isna()).to_numpy(), lambda i: "missing timestamp"))
    return out


def _label(df: pd.DataFrame, col: str, problems: list[_Problem]) -> pd.Series:
    """Labels as float64: 0, 1, or NaN where the cell is blank (unknown)."""
    s = df[col]
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype(np.int8)
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = s.astype(np.float64)
        bad = (num.notna() & ~num.isin((0.0, 1.0))).to_numpy()
    else:
        text = s.astype("string").str.strip()
        blank = (text.isna() | (text == "")).to_numpy(dtype=bool)
        num = pd.to_numeric(text.where(~blank), errors="coerce").astype(np.float64)
        bad = ~blank & ~num.isin((0.0, 1.0)).to_numpy()
    problems.append(
        (col, bad, lambda i: f"label must be 0, 1 or blank (unknown), got {_show(df[col].iloc[i])}")
    )
    return num


def _handbook_names(df: pd.DataFrame) -> pd.DataFrame:
    """The handbook's raw column names as the raw contract's (when it is not there)."""
    cols = set(map(str, df.columns))
    needed = {k for k, v in HANDBOOK_COLUMNS.items() if v in RAW_COLUMNS[1:5]}
    if needed <= cols and not set(HANDBOOK_COLUMNS.values()) & cols:
        return df.rename(columns=HANDBOOK_COLUMNS)
    return df


def validate_frame(
    df: pd.DataFrame,
    kind: str = "auto",
    source: str = "<input>",
    label: str | None = None,
    *,
    require_label: bool = False,
    time_column: str | None = None,
    time_unit: float = 1.0,
    drop: Sequence[str] = (),
    drop_strict: bool = True,
    time_of_day: bool = False,
) -> CardTable:
    """Validate an in-memory table and build its :class:`CardTable`.

    This is what :func:`load_table` runs after reading; the service calls it on request
    bodies. Checks are vectorised per column.

    Parameters
    ----------
    df
        The rows, one column per field.
    kind
        ``"auto"``, ``"ulb"``, ``"raw"`` or ``"features"``.
    source
        Name used in error messages (file path or e.g. ``"<request>"``).
    label
        Label column (see :func:`load_table` for the default).
    require_label
        Raise when there is no label column, or no row with a known label.
    time_column
        Feature tables: the column that times the rows for time splits, instead of
        ``ts`` or ``Time``: numbers (``time_unit`` seconds each: a step of hours is
        3600) or date-times. It is no feature. :data:`AUTO_TIME` (``"auto"``): the one
        column of date-times with times of day in a feature table without ``ts``, if
        there is one (:func:`_find_time_column`); the table's ``time_column`` says which.
    time_unit
        Seconds per unit of a numeric ``time_column``.
    drop
        Feature tables: columns that are neither features nor checked, as if the table
        did not hold them (a card holder's name or address, which lets a model remember
        the cards that had fraud rather than learn what fraud looks like). Naming the
        label, the time column, ``ts`` or ``transaction_id`` is an error.
    drop_strict
        Whether a ``drop`` column the table lacks is an error (training), or is skipped
        (scoring rows that may come without it).
    time_of_day
        Add the feature ``<time_column> (hour of day)`` (:data:`HOUR_OF_DAY`): the time of
        day of ``time_column`` in hours, 0 to 24, as its date-times are written (UTC for
        those with a zone), or a numeric column's seconds modulo a day (so seconds since
        a midnight).

    Returns
    -------
    CardTable

    Raises
    ------
    DataError
        Missing columns, non-numeric values (booleans included), infinite features,
        blank features outside a feature table (where a blank is a missing value the
        model reads), negative amounts, labels other than 0, 1 or blank, unparseable
        timestamps, duplicate ``transaction_id``, ids that break the id rule
        (:mod:`fraudlens._ids`).
    """
    if kind not in (*KINDS, "auto"):
        raise DataError(f"unknown table kind {kind!r}; use auto, ulb, raw or features", file=source)
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    if kind in ("auto", "raw"):
        df = _handbook_names(df)
    if kind == "auto":
        kind = _detect_kind(df.columns)
    if len(df) == 0:
        raise DataError("no data rows", file=source)
    if time_column == AUTO_TIME:
        time_column = _find_time_column(df, kind, (label, *LABEL_CANDIDATES, *drop), source)
    if time_column is not None:
        if kind != "features":
            raise DataError(
                f"a time column is for feature tables; this is a {kind} table, timed by "
                f"{'its ts column' if kind == 'raw' else 'its Time column'}",
                file=source,
                column=time_column,
            )
        if time_column not in df.columns:
            raise DataError("time column not found", file=source, column=time_column)
        clock = f"{time_column}{HOUR_OF_DAY}"
        if time_of_day and clock in df.columns:
            raise DataError(
                f"the table has a column {clock!r}, the name of the time of day feature",
                file=source,
                column=clock,
            )
    elif time_of_day:
        raise DataError(
            "the hour of the day is read from a time column: name one"
            if kind == "features"
            else f"the hour of the day of a time column is for feature tables; this is a "
            f"{kind} table",
            file=source,
        )

    if label is not None:
        if label not in df.columns:
            raise DataError("label column not found", file=source, column=label)
        label_col: str | None = label
    else:
        # Each contract's own name first, then the others.
        first = {"ulb": "Class", "raw": "label"}.get(kind, LABEL_CANDIDATES[0])
        default = (first, *(c for c in LABEL_CANDIDATES if c != first))
        label_col = next((c for c in default if c in df.columns), None)
    if require_label and label_col is None:
        raise DataError(
            f"no label column (expected one of {', '.join(LABEL_CANDIDATES)}, or name one)",
            file=source,
        )
    if drop:
        roles = {label_col: "label", time_column: "time"}
        df = _drop_columns(df, kind, source, drop, drop_strict, roles)

    required: tuple[str, ...] = {"ulb": ULB_FEATURES, "raw": RAW_COLUMNS[:-1]}.get(kind, ())
    for col in required:
        if col not in df.columns:
            raise DataError(
                f"missing column (a {kind} table needs {', '.join(required)})",
                file=source,
                column=col,
            )

    problems: list[_Problem] = []
    frame = df.copy()
    ids: pd.Series | None = None
    time: pd.Series | None = None

    if "transaction_id" in df.columns:
        tid = df["transaction_id"]
        problems.append(("transaction_id", tid.isna().to_numpy(), lambda i: "missing value"))
        key = tid
        if tid.dtype == object:
            # A Parquet list or struct cell is no id (_check_ids says so) and cannot be
            # hashed: looking for duplicates had ended in "unhashable type" (a TypeError).
            key = tid.map(lambda v: v if v is None or isinstance(v, _ID_SCALARS) else repr(v))
        dup = (key.duplicated(keep="first") & tid.notna()).to_numpy()
        codes = pd.factorize(key)[0]
        uniq, first_idx = np.unique(codes, return_index=True)
        first_row = first_idx[np.searchsorted(uniq, codes)]

        def dup_msg(i: int) -> str:
            return (
                f"duplicate transaction_id {_show(tid.iloc[i])} (first in row {first_row[i] + 1})"
            )

        problems.append(("transaction_id", dup, dup_msg))
        _check_ids(tid, "transaction_id", problems)
        ids = tid

    set_aside: tuple[str, ...] = ()
    if kind == "raw":
        for col in ("customer_id", "terminal_id"):
            problems.append((col, df[col].isna().to_numpy(), lambda i: "missing value"))
            _check_ids(df[col], col, problems)
        frame["ts"] = _parse_ts(df["ts"], problems)
        frame["amount"] = _numeric(df, "amount", problems, nonnegative=True)
        feature_cols: list[str] = []
    elif kind == "ulb":
        feature_cols = list(ULB_FEATURES)
    else:
        skip = {label_col, "transaction_id", "ts", time_column}
        set_aside = tuple(c for c in df.columns if c not in skip and row_id_column(c))
        feature_cols = [c for c in df.columns if c not in skip and c not in set_aside]
        if not feature_cols:
            aside = f" ({describe_columns(set_aside)} set aside as row ids)" if set_aside else ""
            raise DataError(f"no feature columns{aside}", file=source)
        if "ts" in df.columns:
            frame["ts"] = _parse_ts(df["ts"], problems)
        if time_column is not None:
            when = df[time_column]
            if _is_datetime(when.dtype) or _categories.mostly_text(when):
                frame[time_column] = _parse_ts(when, problems, time_column)
            else:
                seconds = _numeric(df, time_column, problems)
                frame[time_column] = seconds * float(time_unit)

    # A stray word in a column of numbers is a cell error like any other, said so.
    hint = NUMBERS_HINT if kind == "features" else ""
    text: list[str] = []
    for col in feature_cols:
        if kind == "features" and col not in _NONNEGATIVE and _categories.is_flags(df[col]):
            # A column of True/False (blanks allowed): two levels, read as text.
            frame[col] = _categories.flags_as_text(df[col])
            text.append(col)
            continue
        if kind == "features" and col not in _NONNEGATIVE and _categories.mostly_text(df[col]):
            # A text column (a transaction type, a card network): the model encodes it.
            text.append(col)
            continue
        # A feature table's blank number is a missing value the model reads as such
        # (its training median and a blank indicator: _categories.expand).
        frame[col] = _numeric(
            df,
            col,
            problems,
            nonnegative=col in _NONNEGATIVE,
            hint=hint,
            blank_ok=kind == "features",
        )
    if label_col is not None:
        frame[label_col] = _label(df, label_col, problems)

    _raise_first(problems, list(df.columns), source)

    y: np.ndarray | None = None
    known: np.ndarray | None = None
    if label_col is not None:
        v = frame[label_col].to_numpy(dtype=np.float64)
        is_known = ~np.isnan(v)
        if require_label and not is_known.any():
            raise DataError(
                "every label is blank (unknown); training and evaluation need known labels",
                file=source,
                column=label_col,
            )
        y = np.where(is_known, v, 0.0).astype(np.int8)
        known = None if is_known.all() else is_known
        frame[label_col] = y
    if kind == "raw":
        from fraudlens.cards.features import transaction_features

        # The terminal risk features read the labels from ``label``.
        named = frame if label_col in (None, "label") else frame.assign(label=frame[label_col])
        X = transaction_features(named)
        time = frame["ts"]
    else:
        X = frame[feature_cols].astype({c: np.float64 for c in feature_cols if c not in text})
        if time_column is not None:
            time = frame[time_column]
            if time_of_day:
                X[f"{time_column}{HOUR_OF_DAY}"] = hour_of_day(time)
        elif "ts" in frame.columns:
            time = frame["ts"]
        elif "Time" in frame.columns:
            time = frame["Time"]
    return CardTable(
        X=X.reset_index(drop=True),
        y=y,
        kind=kind,
        ids=ids,
        time=time,
        frame=frame,
        label_column=label_col,
        source=source,
        known=known,
        set_aside=set_aside,
        text=tuple(text),
        time_column=time_column,
    )


def with_history(table: CardTable, history: CardTable) -> CardTable:
    """Recompute a raw table's window features over a label history and its own rows.

    The customer and terminal windows of a transaction look back up to ``D + L`` days
    (37 by default); the terminal risk features count the *known* frauds there. Rows to
    score usually carry no labels, so without their past the risk features are all 0 and
    the counts short. ``history`` supplies that past: earlier raw transactions with their
    labels (blank where unknown).

    Parameters
    ----------
    table
        The raw rows to score.
    history
        Earlier raw rows with a label column. Rows whose ``transaction_id`` is also in
        ``table`` are dropped from the history (the table's row is the one scored).

    Returns
    -------
    CardTable
        ``table`` with its features recomputed and :attr:`CardTable.history_rows` set.

    Raises
    ------
    DataError
        When either table is not raw transactions or the history has no label column.
    """
    from fraudlens.cards.features import transaction_features

    if table.kind != "raw":
        raise DataError(
            "a label history only applies to raw transactions (window features)",
            file=table.source,
        )
    if history.kind != "raw":
        raise DataError("the history must be raw transactions", file=history.source)
    if history.y is None:
        raise DataError(
            "the history has no label column (label); it is there for its known frauds",
            file=history.source,
        )
    cols = list(RAW_COLUMNS[1:5])
    past = history.frame[cols].assign(label=history.y.astype(np.float64))
    if history.known is not None:
        past.loc[~history.known, "label"] = np.nan
    if table.ids is not None and history.ids is not None:
        # Ids are compared as text: one file may read them as numbers, another as strings.
        mine = set(table.ids.astype(str))
        past = past[~history.ids.astype(str).isin(mine).to_numpy()]
    now = table.frame[cols].assign(label=np.nan if table.y is None else table.y.astype(np.float64))
    if table.y is not None and table.known is not None:
        now.loc[~table.known, "label"] = np.nan
    both = pd.concat([past, now], ignore_index=True)
    X = transaction_features(both).iloc[len(past) :].reset_index(drop=True)
    return replace(table, X=X, history_rows=len(past))


#: What a feature table's "not a number" error adds: why the cell must be a number.
NUMBERS_HINT = (
    " (this column is mostly numbers, so every cell must be one; a column mostly of "
    "text is read as text levels)"
)

#: ``time_column`` value that looks for a column of date-times (:func:`_find_time_column`).
AUTO_TIME = "auto"


def _find_time_column(
    df: pd.DataFrame, kind: str, skip: Sequence[str | None], source: str
) -> str | None:
    """The feature table's one text column of date-times with times of day, or None.

    A column is one when every one of up to 1,000 evenly spaced non-blank cells is an
    ISO-8601 date-time and at least one of them is not at midnight (a column of dates,
    such as a birth date, times no transaction). A table with ``ts`` (or ``Time``) is
    timed by it, and other kinds by their own columns: None. Two such columns are
    refused (DataError naming them): which one times the rows is the user's to say.
    """
    if kind != "features" or "ts" in df.columns or "Time" in df.columns:
        return None
    found = []
    for col in df.columns:
        s = df[col]
        stamps = _is_datetime(s.dtype)
        if col in skip or row_id_column(col) or not (stamps or _categories.is_text(s)):
            continue
        values = _categories.spaced(s.dropna(), _categories.DATE_SAMPLE)
        if len(values) == 0 or not (stamps or _categories.mostly_text(values)):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = (
                utc_series(values)
                if stamps
                else pd.to_datetime(values.astype(str), errors="coerce", utc=True, format="ISO8601")
            )
        if parsed.isna().any() or (parsed == parsed.dt.normalize()).all():
            continue
        found.append(str(col))
    if len(found) > 1:
        raise DataError(
            f"columns {', '.join(found)} all hold date-times: name the one that times the "
            "rows with --time-column",
            file=source,
            column=found[0],
        )
    return found[0] if found else None


#: What the time-of-day feature of a time column is called after the column's name.
HOUR_OF_DAY = " (hour of day)"


def hour_of_day(time: pd.Series) -> np.ndarray:
    """Hours since midnight (0 to 24) of validated times: date-times as written (UTC for
    those with a zone), or seconds (since a midnight)."""
    if isinstance(time.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(time.dtype):
        since = time - time.dt.floor("D")
        return (since.dt.total_seconds() / 3600.0).to_numpy(dtype=np.float64)
    return np.mod(time.to_numpy(dtype=np.float64), _DAY_S) / 3600.0


def one_timestamp(value: Any, max_length: int = 64) -> pd.Timestamp | None:
    """One ISO-8601 text as a UTC timestamp (no zone means UTC, as the loader reads
    them), else None: also for a text longer than ``max_length``, a word pandas reads as
    the time of reading (``"now"``, ``"today"``: no digit) and a time outside the dates
    fraudlens reads."""
    if not isinstance(value, str) or len(value) > max_length:
        return None
    if not any(ch.isdigit() for ch in value):
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if pd.isna(ts):
        return None
    ts = utc(ts)
    return ts if TS_MIN <= ts < TS_MAX else None


def with_clock(
    record: dict[str, Any], clock: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """A record (one row as a mapping) with the hour of the day of ``clock``'s time
    column (``cards train --time-of-day``) added as its feature, when the record has the
    time column and not the feature; and why it cannot be (None if it can).

    The time is an ISO-8601 date-time (UTC for one with a zone) or a number of the
    clock's unit (seconds since a midnight), as :func:`hour_of_day` reads a column.
    """
    if clock is None:
        return record, None
    col = str(clock["column"])
    name = f"{col}{HOUR_OF_DAY}"
    if name in record or col not in record:
        return record, None
    value = record[col]
    hours: float | None = None
    when: Any = None
    if isinstance(value, str):
        when = one_timestamp(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value) * float(clock["unit"])
        except OverflowError:  # an int past 1e308
            seconds = math.inf
        when = seconds if math.isfinite(seconds) else None
    if when is not None:
        hours = float(hour_of_day(pd.Series([when]))[0])
    if hours is None:
        return record, (
            f"{col!r}: {_show(value)} is no ISO-8601 date-time or number (the model reads "
            f"its hour of the day, {name!r})"
        )
    return {**record, name: hours}, None


def _drop_columns(
    df: pd.DataFrame,
    kind: str,
    source: str,
    drop: Sequence[str],
    strict: bool,
    roles: dict[str | None, str],
) -> pd.DataFrame:
    """``df`` without the ``drop`` columns (see :func:`validate_frame`); ``roles`` names
    the columns that cannot be dropped (the label, the time column) and what they are."""
    if kind != "features":
        raise DataError(
            f"dropping columns is for feature tables; this is a {kind} table, whose "
            "features are fixed",
            file=source,
            column=str(drop[0]),
        )
    roles = {**roles, "ts": "time", "transaction_id": "id"}
    for col in drop:
        if col in roles:
            raise DataError(
                f"cannot drop {col!r}: it is the table's {roles[col]} column, not a feature",
                file=source,
                column=col,
            )
        if strict and col not in df.columns:
            raise DataError(
                f"column to drop not found (the table has {describe_columns(df.columns)})",
                file=source,
                column=col,
            )
    return df.drop(columns=[c for c in drop if c in df.columns])


def describe_columns(names: Sequence[str], limit: int = 40) -> str:
    """``names`` joined for a message (the middle elided past ``limit`` names)."""
    names = [str(n) for n in names]
    if len(names) > limit:
        names = [*names[: limit - 2], "...", names[-1]]
    return ", ".join(names)


def read_csv_rows(text: str, n_features: int, names: Sequence[str] | None = None) -> np.ndarray:
    """Parse headerless CSV rows (SageMaker ``text/csv``): one line per record.

    Parameters
    ----------
    text
        Lines of ``n_features`` comma-separated numbers, in the model's feature order.
        Blank lines are skipped (row numbers still count them).
    n_features
        Number of values each line must hold.
    names
        The columns those values stand for, in order; named in the error for a line
        with the wrong number of values.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(rows, n_features)``.

    Raises
    ------
    DataError
        Naming the 1-based line (``row``) and value position (``column``, 1-based) of the
        first wrong field count, non-number or non-finite value.
    """
    lines = text.splitlines()
    line_no = [k + 1 for k, line in enumerate(lines) if line.strip()]
    if not line_no:
        raise DataError("no rows in the CSV body")
    fields = [lines[k - 1].split(",") for k in line_no]
    counts = np.fromiter((len(f) for f in fields), dtype=np.int64, count=len(fields))
    wrong = np.flatnonzero(counts != n_features)
    if len(wrong):
        j = int(wrong[0])
        which = f" ({describe_columns(names)})" if names else ""
        raise DataError(
            f"expected {n_features} comma-separated values{which}, got {int(counts[j])}",
            row=line_no[j],
        )
    tokens = pd.Series([t for f in fields for t in f], dtype=object).str.strip()
    values = pd.to_numeric(tokens, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.argmax(bad))
        r, c = divmod(k, n_features)
        what = (
            "missing value" if tokens.iloc[k] == "" else f"not a finite number: {tokens.iloc[k]!r}"
        )
        raise DataError(what, row=line_no[r], column=str(c + 1))
    return values.reshape(len(fields), n_features)


# --------------------------------------------------------------------------- splits


def _require_time(table: CardTable) -> pd.Series:
    if table.time is None:
        raise DataError("the table has no time column (Time or ts) to split on", file=table.source)
    return table.time


def _day_numbers(time: pd.Series) -> tuple[np.ndarray, pd.Timestamp | None]:
    """Day index of each row, and the origin timestamp (None for numeric seconds)."""
    if isinstance(time.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(time.dtype):
        origin = time.min().normalize()
        days = ((time - origin) // pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
        return days, origin
    return np.floor(time.to_numpy(dtype=np.float64) / _DAY_S), None


def time_split(
    table: CardTable,
    *,
    train_days: float = 7,
    gap_days: float = 7,
    test_days: float = 7,
    start: str | pd.Timestamp | float | None = None,
    drop_known_frauds: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Handbook-style split by day: ``train_days`` to train, a gap, ``test_days`` to test.

    Day numbers are whole calendar days: ``Time // 86400`` for seconds (ULB), days since
    the midnight before the first ``ts`` for timestamps. The gap stands for the label
    delay: frauds of the last ``gap_days`` are not yet known when testing starts.

    Parameters
    ----------
    table
        A table with :attr:`CardTable.time`.
    train_days, gap_days, test_days
        Lengths of the three periods, in days.
    start
        First training day: a date for timestamp tables, a day number for ``Time`` in
        seconds. Default: the first day with data.
    drop_known_frauds
        As the handbook does, drop from each test day the transactions of customers that
        already had a fraud known by then (on a day from ``start`` to ``gap_days`` before
        the test day). Applies to raw tables with labels only.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted row positions (int64) of the training and test rows.
    """
    days, origin = _day_numbers(_require_time(table))
    if start is None:
        s = float(np.nanmin(days))
    elif origin is not None:
        ts = utc(pd.Timestamp(start))
        # In Python's datetimes: pandas' difference of two timestamps overflows past 292
        # years (three windows of 36,500 days, or a start centuries from the data).
        s = float((ts.normalize().to_pydatetime() - origin.to_pydatetime()).days)
    else:
        s = float(start)  # type: ignore[arg-type]
    test_start = s + train_days + gap_days
    train = (days >= s) & (days < s + train_days)
    test = (days >= test_start) & (days < test_start + test_days)
    frame = table.frame
    if drop_known_frauds and table.y is not None and "customer_id" in frame.columns:
        fraud = (table.y == 1) & (days >= s)
        cust = frame["customer_id"].to_numpy()
        first = pd.Series(days[fraud]).groupby(cust[fraud]).min()
        first_fraud = pd.Series(cust).map(first).to_numpy(dtype=np.float64)
        known = first_fraud < days - gap_days
        test &= ~known
    return np.flatnonzero(train).astype(np.int64), np.flatnonzero(test).astype(np.int64)


def _is_timestamp(time: pd.Series) -> bool:
    return isinstance(time.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        time.dtype
    )


def holdout_split(
    table: CardTable,
    *,
    test_seconds: float,
    gap_seconds: float = 0.0,
    train_seconds: float | None = None,
    test_end: Any = None,
    drop_known_frauds: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Deployment split: a held-out window at the end, a gap before it, training before that.

    Windows are half-open, ``[start, end)``. Only rows with a known label are returned.

    Parameters
    ----------
    table
        A labelled table with :attr:`CardTable.time` (timestamps, or seconds as ULB's
        ``Time``).
    test_seconds, gap_seconds
        Lengths of the held-out window and of the gap before it (the label delay).
    train_seconds
        Length of the training window; None: every labelled row before the gap.
    test_end
        End of the held-out window (exclusive): a timestamp (or ISO text), or seconds for
        a ``Time`` column. Default: the end of the latest labelled row's day for raw
        transactions (so that windows are whole days, as in the handbook), else the end
        of its hour.
    drop_known_frauds
        Raw transactions with whole-day windows: leave out of each held-out day the
        customers with a fraud known by then (see :func:`time_split`), as the handbook
        does.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, dict)
        Training and held-out row positions, and a description of the windows (to record
        and to redo the split).

    Raises
    ------
    DataError
        When the table has no time column or labels, or a window holds no labelled row.
    """
    time = _require_time(table)
    if table.y is None:
        raise DataError("a held-out split needs labels", file=table.source)
    if test_seconds <= 0 or gap_seconds < 0 or (train_seconds is not None and train_seconds <= 0):
        raise ConfigError("window lengths must be positive (the gap may be 0)")
    labelled = np.zeros(len(table), dtype=bool)
    labelled[table.labelled] = True
    stamp = _is_timestamp(time)
    desc: dict[str, Any] = {"method": "holdout", "unit": "timestamp" if stamp else "seconds"}
    if stamp:
        t = utc_series(time)
        latest = t[labelled].max()
        if test_end is None:
            unit = "D" if table.kind == "raw" else "h"
            end = latest.floor(unit) + pd.Timedelta(1, unit=unit)
        else:
            # (microseconds: a window of a century before an end near 1677 or 2262 is past
            # what a timestamp in nanoseconds holds)
            end = utc(pd.Timestamp(test_end)).as_unit("us")
            _check_test_end(end, t, test_seconds, table.source)
        test_start = end - pd.Timedelta(seconds=test_seconds)
        train_end = test_start - pd.Timedelta(seconds=gap_seconds)
        train_start = (
            t.min() if train_seconds is None else train_end - pd.Timedelta(seconds=train_seconds)
        )
        whole_days = all(x == x.normalize() for x in (end, test_start, train_end)) and (
            train_seconds is None or train_start == train_start.normalize()
        )
        if table.kind == "raw" and whole_days and drop_known_frauds:
            first_day = t.min().normalize() if train_seconds is None else train_start
            day = pd.Timedelta(days=1)
            train, test = time_split(
                table,
                train_days=(train_end - first_day) / day,
                gap_days=(test_start - train_end) / day,
                test_days=(end - test_start) / day,
                start=first_day,
            )
            desc["known_frauds_removed"] = True
            train = train[labelled[train]]
            test = test[labelled[test]]
        else:
            v = t
            train_m = (v >= train_start) & (v < train_end)
            test_m = (v >= test_start) & (v < end)
            train = np.flatnonzero(train_m.to_numpy() & labelled)
            test = np.flatnonzero(test_m.to_numpy() & labelled)
        shown = [train_start, train_end, test_start, end]
        desc.update(
            dict(
                zip(
                    ("train_start", "train_end", "test_start", "test_end"),
                    map(str, shown),
                    strict=True,
                )
            )
        )
    else:
        v = time.to_numpy(dtype=np.float64)
        latest = float(np.max(v[labelled]))
        end = (
            float(np.floor(latest / 3600.0) * 3600.0 + 3600.0)
            if test_end is None
            else float(test_end)
        )
        test_start = end - test_seconds
        train_end = test_start - gap_seconds
        train_start = float(np.min(v)) if train_seconds is None else train_end - train_seconds
        train = np.flatnonzero((v >= train_start) & (v < train_end) & labelled)
        test = np.flatnonzero((v >= test_start) & (v < end) & labelled)
        desc.update(
            train_start=train_start, train_end=train_end, test_start=test_start, test_end=end
        )
    desc.update(
        train_seconds=train_seconds,
        gap_seconds=gap_seconds,
        test_seconds=test_seconds,
        train_rows=len(train),
        test_rows=len(test),
    )
    for what, idx in (("training", train), ("held-out", test)):
        if len(idx) == 0:
            raise DataError(
                f"the {what} window holds no labelled rows ({desc['train_start']} .. "
                f"{desc['train_end']} to train, {desc['test_start']} .. {desc['test_end']} "
                "held out); change the window lengths or --test-end",
                file=table.source,
            )
    return train.astype(np.int64), test.astype(np.int64), desc


def _check_test_end(end: pd.Timestamp, t: pd.Series, test_seconds: float, source: Any) -> None:
    """Refuse a held-out window ending at ``end`` that holds no moment of the data: before
    the first row, or starting after the last one. Such an end, given centuries from the
    data (year 1, 1700, 5000), had ended in pandas' OutOfBoundsDatetime."""
    first, last = t.min(), t.max()
    # compared in seconds: a difference of timestamps overflows past 292 years
    if end.timestamp() <= first.timestamp() or end.timestamp() - test_seconds > last.timestamp():
        raise DataError(
            f"the held-out window ending at {end} holds no labelled rows: the data run from "
            f"{first} to {last}; change --test-end",
            file=source,
        )


def redo_holdout(table: CardTable, desc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The split :func:`holdout_split` described by ``desc`` (e.g. from a model's metadata)."""
    train, test, _ = holdout_split(
        table,
        test_seconds=float(desc["test_seconds"]),
        gap_seconds=float(desc["gap_seconds"]),
        train_seconds=None if desc.get("train_seconds") is None else float(desc["train_seconds"]),
        test_end=desc["test_end"],
        drop_known_frauds=bool(desc.get("known_frauds_removed", True)),
    )
    return train, test


def time_split_hours(
    table: CardTable,
    train_hours: float,
    test_hours: float | None = None,
    gap_hours: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split by hours from the first row: e.g. train on ULB's first 16 hours, test on the rest.

    Parameters
    ----------
    table
        A table with :attr:`CardTable.time`.
    train_hours
        Training rows: time in ``[t0, t0 + train_hours)``, ``t0`` the earliest time.
    test_hours
        Test rows: the ``test_hours`` after the gap; None = everything after the gap.
    gap_hours
        Hours left out between training and test.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted row positions (int64) of the training and test rows.
    """
    time = _require_time(table)
    if isinstance(time.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(time.dtype):
        h = ((time - time.min()) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
    else:
        t = time.to_numpy(dtype=np.float64)
        h = (t - np.nanmin(t)) / 3600.0
    train = h < train_hours
    test = h >= train_hours + gap_hours
    if test_hours is not None:
        test &= h < train_hours + gap_hours + test_hours
    return np.flatnonzero(train).astype(np.int64), np.flatnonzero(test).astype(np.int64)


def random_split(
    table: CardTable, test_size: float = 0.1, seed: int = 0, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test split (the reference's 90/10), stratified on the label by default.

    Parameters
    ----------
    table
        Any table.
    test_size
        Share of rows in the test set (of each class when stratified), in (0, 1).
    seed
        Random seed.
    stratify
        Keep the fraud rate equal in both parts (ignored without labels).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted row positions (int64) of the training and test rows.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError("test_size must be between 0 and 1")
    rng = np.random.default_rng(seed)
    n = len(table)
    if stratify and table.y is not None:
        groups = [np.flatnonzero(table.y == v) for v in np.unique(table.y)]
    else:
        groups = [np.arange(n)]
    test_parts = []
    for g in groups:
        k = round(test_size * len(g))
        test_parts.append(rng.permutation(g)[:k])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    train = np.setdiff1d(np.arange(n, dtype=np.int64), test)
    return train, test
