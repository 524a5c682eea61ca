"""Text columns of a card feature table, encoded as numbers by the model that reads them.

A feature table may hold text columns: a transaction type (``PAYMENT``, ``CASH_OUT``), a
card network, an e-mail domain, a ``T``/``F`` match flag, a column of ``True``/``False``
(read as the text levels ``True`` and ``False``). The card models read numbers,
so a model learns each text column's encoding from its training rows and keeps it in its
metadata; every scoring path (files, the service, the event processor) then encodes the
same way, whatever levels a batch happens to hold:

- one indicator column ``col=level`` for each of the column's :data:`MAX_LEVELS` most
  common levels that :data:`MIN_LEVEL_ROWS` training rows or more hold;
- ``col (share)``: the share of the training rows holding the row's level (0 for a level
  rarer than :data:`MIN_LEVEL_ROWS` rows, or never seen), so trees can tell common from
  rare levels of a column with thousands of them.

A blank cell is its own level, :data:`MISSING`. A numeric column with blank cells in
its training rows is read as its value (a blank filled with the training median) and
``col (blank)``, 1 where the cell was blank (:func:`expand`). A text column with a distinct value in
most training rows (an account or merchant name, a free-text note) identifies rows, as a
row number does, and is set aside, no feature (:func:`identifiers`). A text column of
ISO-8601 dates (a birth date) is read as one number, days since 1970-01-01
(:func:`is_dates`, :func:`as_days`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fraudlens.errors import DataError

#: At most this many indicator columns per text column (its most common levels).
MAX_LEVELS = 20
#: A level needs this many training rows for an indicator column and a share.
MIN_LEVEL_ROWS = 5
#: At most this many levels' shares are kept per column (the most common).
MAX_SHARES = 1000
#: A text column whose distinct values outnumber this share of the training rows (and
#: :data:`MIN_ID_ROWS` rows or more) identifies rows: set aside.
ID_SHARE = 0.5
MIN_ID_ROWS = 50
#: Non-blank cells :func:`mostly_text` reads of a long column (evenly spaced).
_SAMPLE = 10_000
#: The level of a blank cell.
MISSING = "(blank)"
#: Longer text is never a level (kept out of the model's metadata): read as a rare value.
MAX_LEVEL_CHARS = 256
#: At most this many columns in all once the text columns are encoded.
MAX_ENCODED_COLUMNS = 4096


def is_text(s: pd.Series) -> bool:
    """Whether a column holds text (strings, a pandas category), not numbers or flags."""
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return False
    return not (pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype))


def is_flags(s: pd.Series) -> bool:
    """Whether a column holds only True/False (and blanks): a flag column, whose two
    values a feature table reads as text levels ``True`` and ``False``."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    if pd.api.types.is_numeric_dtype(s.dtype) or s.notna().sum() == 0:
        return False
    return pd.api.types.infer_dtype(s, skipna=True) == "boolean"


#: Dates are read as days since this day.
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
#: A date is written in at most this many characters.
_MAX_DATE_CHARS = 64


def _parse_dates(text: pd.Series) -> pd.Series:
    """ISO-8601 dates or date-times as UTC timestamps (no zone means UTC); NaT where a
    cell is none."""
    ok = text.str.len().le(_MAX_DATE_CHARS) & text.str.contains("-", regex=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text.where(ok), errors="coerce", utc=True, format="ISO8601")
    return parsed


#: Non-blank cells :func:`is_dates` (and the search for a time column) reads.
DATE_SAMPLE = 1000


def spaced(values: pd.Series, k: int) -> pd.Series:
    """About ``k`` evenly spaced cells of ``values`` (all of them up to ``2 * k``)."""
    return values.iloc[:: len(values) // k] if len(values) > 2 * k else values


def is_dates(s: pd.Series) -> bool:
    """Whether a text column holds dates (a birth date, the day an account opened): every
    one of up to 1,000 evenly spaced non-blank cells an ISO-8601 date or date-time. Such
    a column is read as a number, days since 1970-01-01 (:func:`as_days`), not as levels:
    the order of dates means something; their 20 commonest values do not."""
    values = spaced(s.dropna(), DATE_SAMPLE)
    if len(values) == 0 or not values.map(lambda v: isinstance(v, str)).all():
        return False
    return not _parse_dates(values.str.strip()).isna().any()


def as_days(s: pd.Series, col: str) -> np.ndarray:
    """A date column (:func:`is_dates`) as days since 1970-01-01 (blank cells NaN);
    DataError naming the row and column of the first cell that is no date."""
    cells = s.astype(object)
    blank = cells.isna().to_numpy()
    # (a map, not .str: a column of numbers sent for dates has no .str accessor)
    text = cells.map(lambda v: v.strip() if isinstance(v, str) else None)
    parsed = _parse_dates(text.astype(object).where(text.notna(), ""))
    wrong = np.flatnonzero(parsed.isna().to_numpy() & ~blank)
    if len(wrong):
        i = int(wrong[0])
        raise DataError(
            f"not a date: {str(cells.iloc[i])[:60]!r} (the model reads this column as "
            "ISO-8601 dates, such as 1988-03-09)",
            row=i + 1,
            column=col,
        )
    days = (parsed - EPOCH).dt.total_seconds().to_numpy(dtype=np.float64) / 86_400.0
    days[blank] = np.nan
    return days


def flags_as_text(s: pd.Series) -> pd.Series:
    """A flag column as text: ``"True"``, ``"False"``, blanks as None."""
    return s.astype(object).map(lambda v: None if pd.isna(v) else str(bool(v)))


def mostly_text(s: pd.Series) -> bool:
    """Whether a column reads as a text column of a feature table.

    A column of text cells (half or more of its non-blank cells are no number) is one; a
    column of numbers with a stray word in it is a column of numbers with a bad cell.
    """
    if not is_text(s):
        return False
    # Evenly spaced cells tell a column of text from one of numbers as well as all.
    values = spaced(s.dropna(), _SAMPLE)
    stripped = values.astype(str).str.strip()
    filled = stripped != ""
    values, stripped = values[filled], stripped[filled]
    if len(values) == 0:
        return False
    kinds = pd.api.types.infer_dtype(values, skipna=True)
    if kinds not in ("string", "categorical", "mixed", "mixed-integer"):
        return False
    if kinds != "string" and not values.map(lambda v: isinstance(v, str | int | float)).all():
        return False  # lists, mappings, bytes: no text, no number (refused as cells)
    numbers = pd.to_numeric(stripped, errors="coerce").notna()
    return float(numbers.mean()) < 0.5


def keys(s: pd.Series) -> pd.Series:
    """The level of each cell as text (blank cells: :data:`MISSING`).

    Whole numbers read as numbers (``12`` or ``12.0`` where training saw ``"12"``) give
    the same key as their text.
    """

    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        # Text and blanks only (the common case): vectorised.
        text = s.astype(object).where(s.notna(), "").astype(str).str.strip()
        return text.where(text != "", MISSING).astype(object)

    def key(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return MISSING
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        text = str(v).strip()
        return text if text else MISSING

    return s.astype(object).map(key)


def identifiers(frame: pd.DataFrame, text: Sequence[str]) -> list[str]:
    """The ``text`` columns of ``frame`` with a distinct value in most rows."""
    n = len(frame)
    if n < MIN_ID_ROWS:
        return []
    return [c for c in text if keys(frame[c]).nunique() > ID_SHARE * n]


def learn(s: pd.Series) -> dict[str, Any]:
    """A text column's encoding: ``levels`` (indicator columns) and ``shares``."""
    counts = keys(s).value_counts(sort=False)
    counts = counts[(counts >= MIN_LEVEL_ROWS) & (counts.index.str.len() <= MAX_LEVEL_CHARS)]
    # Most common first; ties by name, so the encoding does not hang on row order.
    order = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    common = [(str(k), int(c)) for k, c in order]
    n = max(len(s), 1)
    return {
        "levels": [k for k, _ in common[:MAX_LEVELS]],
        "shares": {k: round(c / n, 7) for k, c in common[:MAX_SHARES]},
    }


def names(col: str, spec: Mapping[str, Any]) -> list[str]:
    """The encoded columns' names of text column ``col``."""
    return [f"{col}={level}" for level in spec["levels"]] + [f"{col} (share)"]


def encode(s: pd.Series, spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Text column ``s`` as its encoded columns by name (see :func:`names`): indicators
    as uint8 (a wide table's encoding stays small until the model's matrix is made),
    the share as float64."""
    col = str(s.name)
    k = keys(s)
    levels = list(spec["levels"])
    codes = pd.Index(levels).get_indexer(k) if levels else np.full(len(k), -1)
    out: dict[str, np.ndarray] = {
        name: (codes == j).astype(np.uint8)
        for j, name in enumerate(names(col, spec)[: len(levels)])
    }
    share = k.map(dict(spec["shares"])).fillna(0.0).to_numpy(dtype=np.float64)
    out[f"{col} (share)"] = share
    return out


def blank_names(col: str) -> list[str]:
    """The columns of numeric column ``col`` that had blank cells in training: its value
    (a blank filled with the training median) and ``col (blank)``, 1 where it was blank."""
    return [col, f"{col} (blank)"]


def expand(
    frame: pd.DataFrame,
    categories: Mapping[str, Mapping[str, Any]],
    fill: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``frame`` as the model reads it: each text column in ``categories`` replaced by
    its encoded columns, and each numeric column in ``fill`` by its value (blanks filled
    with ``fill[col]``) and its blank indicator, in place of the column."""
    fill = fill or {}
    if not categories and not fill:
        return frame
    out: dict[str, Any] = {}
    for col in frame.columns:
        name = str(col)
        spec = categories.get(name)
        if spec is not None:
            out.update(encode(frame[col].rename(name), spec))
        elif name in fill:
            v = frame[col].to_numpy(dtype=np.float64)
            blank = np.isnan(v)
            value, flag = blank_names(name)
            out[value] = np.where(blank, fill[name], v)
            out[flag] = blank.astype(np.uint8)
        else:
            out[name] = frame[col].to_numpy()
    return pd.DataFrame(out, index=frame.index)
