"""Card data contracts: loaders, validation and train/test splits.

Three kinds of table are accepted (CSV or Parquet, with a header row):

- ``ulb``: the ULB / Worldline table ``Time, V1..V28, Amount`` with label ``Class``;
- ``raw``: raw transactions ``transaction_id, ts, customer_id, terminal_id, amount`` with an
  optional ``label``; their features come from
  :func:`fraudlens.cards.features.transaction_features`;
- ``features``: any numeric feature table with a label column (``Class``, ``label`` or
  ``is_fraud`` unless named), optional ``transaction_id`` and ``ts`` columns.

Bad input raises :class:`~fraudlens.errors.DataError` naming the file, the 1-based data row
(the header is row 0) and the column. Where several cells are bad, the one in the earliest
row is named (the leftmost column on ties).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudlens._csvread import NO_DATA_ROWS, read_error
from fraudlens.errors import DataError

__all__ = [
    "KINDS",
    "LABEL_CANDIDATES",
    "RAW_COLUMNS",
    "ULB_FEATURES",
    "CardTable",
    "load_table",
    "random_split",
    "read_csv_rows",
    "time_split",
    "time_split_hours",
    "validate_frame",
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
LABEL_CANDIDATES: tuple[str, ...] = ("Class", "label", "is_fraud")
#: Table kinds.
KINDS: tuple[str, ...] = ("ulb", "features", "raw")

_NONNEGATIVE = frozenset({"Amount", "amount"})
_DAY_S = 86_400.0


@dataclass
class CardTable:
    """A validated card table: features, labels and what is needed to split it.

    Attributes
    ----------
    X
        Numeric features (float32 or float64) in a stable column order, index 0..n-1.
    y
        Labels (int8, 1 = fraud), or None for an unlabelled table.
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
    """

    X: pd.DataFrame
    y: np.ndarray | None
    kind: str
    ids: pd.Series | None = None
    time: pd.Series | None = None
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    label_column: str | None = None
    source: str = "<memory>"

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
        )


# --------------------------------------------------------------------------- reading


def _read(path: str | PathLike[str]) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file", file=str(p))
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        return pd.read_csv(p, low_memory=False)
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        # ValueError covers an empty file, bytes that are not UTF-8 and a bad Parquet file
        # (pyarrow's ArrowInvalid); the wording is the market loader's.
        raise read_error(p, exc) from None


def load_table(
    path: str | PathLike[str],
    *,
    label: str | None = None,
    kind: str = "auto",
    require_label: bool = False,
) -> CardTable:
    """Read and validate a card table from CSV or Parquet.

    Parameters
    ----------
    path
        A ``.csv`` (optionally compressed, e.g. ``.csv.gz``) or ``.parquet`` file.
    label
        Label column. By default the first present of ``Class``, ``label`` and ``is_fraud``
        (``label`` first for raw transactions).
    kind
        ``"auto"`` (detect), ``"ulb"``, ``"raw"`` or ``"features"``.
    require_label
        Raise when there is no label column (for training and evaluation).

    Returns
    -------
    CardTable

    Raises
    ------
    DataError
        Naming file, row and column of the first problem.
    """
    df = _read(path)
    if len(df) == 0:
        raise DataError(NO_DATA_ROWS, file=str(path))
    return validate_frame(df, kind, str(path), label, require_label=require_label)


# --------------------------------------------------------------------------- validation


def _show(value: Any) -> str:
    """A cell value as users wrote it: ``'abc'``, ``10``, not ``np.int64(10)``."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


# A check: (column, mask of bad rows, message for a bad row position).
_Problem = tuple[str, np.ndarray, Callable[[int], str]]


def _detect_kind(columns: pd.Index) -> str:
    cols = set(map(str, columns))
    if set(ULB_FEATURES) <= cols:
        return "ulb"
    if set(RAW_COLUMNS[:-1]) <= cols:
        return "raw"
    return "features"


def _numeric(
    df: pd.DataFrame, col: str, problems: list[_Problem], *, nonnegative: bool = False
) -> pd.Series:
    """``df[col]`` as float64, recording non-numeric, missing, infinite and negative cells."""
    s = df[col]
    raw = s
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype(np.int8)
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = s.astype(np.float64)
        non_numeric = np.zeros(len(s), dtype=bool)
    else:
        num = pd.to_numeric(s, errors="coerce").astype(np.float64)
        non_numeric = (num.isna() & s.notna()).to_numpy()
    v = num.to_numpy()
    missing = np.isnan(v) & ~non_numeric
    problems.append((col, non_numeric, lambda i: f"not a number: {_show(raw.iloc[i])}"))
    problems.append((col, missing, lambda i: "missing value"))
    problems.append((col, np.isinf(v), lambda i: f"infinite value: {_show(raw.iloc[i])}"))
    if nonnegative:
        with np.errstate(invalid="ignore"):
            neg = v < 0
        problems.append((col, neg, lambda i: f"negative amount: {v[i]:g}"))
    return num


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


def _parse_ts(s: pd.Series, problems: list[_Problem], col: str = "ts") -> pd.Series:
    """Timestamps as ``datetime64[ns, UTC]`` (no zone means UTC), recording bad cells."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        out = s.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(s.dtype):
        bad = s.notna().to_numpy()
        problems.append(
            (col, bad, lambda i: f"expected an ISO-8601 timestamp, got {_show(s.iloc[i])}")
        )
        out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    else:
        out = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        unparseable = (out.isna() & s.notna()).to_numpy()
        problems.append((col, unparseable, lambda i: f"unparseable timestamp: {_show(s.iloc[i])}"))
    out = out.astype("datetime64[ns, UTC]")
    problems.append((col, (out.isna() & s.isna()).to_numpy(), lambda i: "missing timestamp"))
    return out


def _label(df: pd.DataFrame, col: str, problems: list[_Problem]) -> pd.Series:
    num = _numeric(df, col, problems)
    v = num.to_numpy()
    bad = np.isfinite(v) & (v != 0) & (v != 1)
    problems.append((col, bad, lambda i: f"label must be 0 or 1, got {_show(df[col].iloc[i])}"))
    return num


def validate_frame(
    df: pd.DataFrame,
    kind: str = "auto",
    source: str = "<input>",
    label: str | None = None,
    *,
    require_label: bool = False,
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
        Raise when there is no label column.

    Returns
    -------
    CardTable

    Raises
    ------
    DataError
        Missing columns, non-numeric values, NaN or infinite features, negative amounts,
        labels other than 0/1, unparseable timestamps, duplicate ``transaction_id``.
    """
    if kind not in (*KINDS, "auto"):
        raise DataError(f"unknown table kind {kind!r}; use auto, ulb, raw or features", file=source)
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    if kind == "auto":
        kind = _detect_kind(df.columns)
    if len(df) == 0:
        raise DataError("no data rows", file=source)

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
        dup = (tid.duplicated(keep="first") & tid.notna()).to_numpy()
        codes = pd.factorize(tid)[0]
        uniq, first_idx = np.unique(codes, return_index=True)
        first_row = first_idx[np.searchsorted(uniq, codes)]

        def dup_msg(i: int) -> str:
            return (
                f"duplicate transaction_id {_show(tid.iloc[i])} (first in row {first_row[i] + 1})"
            )

        problems.append(("transaction_id", dup, dup_msg))
        ids = tid

    if kind == "raw":
        for col in ("customer_id", "terminal_id"):
            problems.append((col, df[col].isna().to_numpy(), lambda i: "missing value"))
        frame["ts"] = _parse_ts(df["ts"], problems)
        frame["amount"] = _numeric(df, "amount", problems, nonnegative=True)
        feature_cols: list[str] = []
    elif kind == "ulb":
        feature_cols = list(ULB_FEATURES)
    else:
        skip = {label_col, "transaction_id", "ts"}
        feature_cols = [c for c in df.columns if c not in skip]
        if not feature_cols:
            raise DataError("no feature columns", file=source)
        if "ts" in df.columns:
            frame["ts"] = _parse_ts(df["ts"], problems)

    for col in feature_cols:
        frame[col] = _numeric(df, col, problems, nonnegative=col in _NONNEGATIVE)
    if label_col is not None:
        frame[label_col] = _label(df, label_col, problems)

    _raise_first(problems, list(df.columns), source)

    y = None if label_col is None else frame[label_col].to_numpy().astype(np.int8)
    if label_col is not None:
        frame[label_col] = y
    if kind == "raw":
        from fraudlens.cards.features import transaction_features

        # The terminal risk features read the labels from ``label``.
        named = frame if label_col in (None, "label") else frame.assign(label=frame[label_col])
        X = transaction_features(named)
        time = frame["ts"]
    else:
        X = frame[feature_cols].astype(np.float64)
        if "ts" in frame.columns:
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
    )


def read_csv_rows(text: str, n_features: int) -> np.ndarray:
    """Parse headerless CSV rows (SageMaker ``text/csv``): one line per record.

    Parameters
    ----------
    text
        Lines of ``n_features`` comma-separated numbers, in the model's feature order.
        Blank lines are skipped (row numbers still count them).
    n_features
        Number of values each line must hold.

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
        raise DataError(
            f"expected {n_features} comma-separated values, got {int(counts[j])}", row=line_no[j]
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
        ts = pd.Timestamp(start)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        s = float((ts.normalize() - origin) // pd.Timedelta(days=1))
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
