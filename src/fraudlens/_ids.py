"""Identifiers that cross the system's edges: account, trade and transaction ids.

One rule everywhere (API paths and queries, queue messages, loaders, the store):

- at most :data:`MAX_ID_LENGTH` characters, the width of the store's id columns, so an id
  that is accepted at the edge always fits the database;
- not empty, and none of its characters forbidden: control characters (C0 such as NUL
  and newline, DEL, C1), lone surrogates (they cannot be encoded), and the invisible
  formatting characters (zero-width spaces and joiners, bidirectional overrides and
  isolates, the byte-order mark, the soft hyphen, ...), and the replacement character
  U+FFFD, which stands for bytes that were not UTF-8 (a URL's ``%FF`` decodes to it).
  PostgreSQL refuses NUL in text, and invisible characters would let two different ids
  look the same to an analyst.

The rule is one character class, :data:`FORBIDDEN` (plus lone surrogates), so it can
also be published as a regular expression (:data:`ID_PATTERN`) in the API's schema.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fraudlens.errors import DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FORBIDDEN",
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "MAX_SYMBOL_LENGTH",
    "bad_ids",
    "check_id",
    "id_problem",
]

#: Longest id fraudlens accepts (the store's ``String(64)`` id columns).
MAX_ID_LENGTH = 64

#: Longest ticker symbol (the store's ``String(32)`` symbol columns).
MAX_SYMBOL_LENGTH = 32

#: Characters no id may hold, as the body of a regular-expression character class (the
#: escapes read the same in Python, Rust and JSON Schema / ECMAScript patterns). Lone
#: surrogates are refused too (see :func:`id_problem`), but they are not in this class:
#: no URL or UTF-8 JSON text can carry one, and some regex engines cannot name them.
FORBIDDEN = (
    r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ufffd"
)

#: The whole id rule as a regular expression (for OpenAPI schemas).
ID_PATTERN = f"^[^{FORBIDDEN}]{{1,{MAX_ID_LENGTH}}}$"

_BAD = re.compile(f"[{FORBIDDEN}\\ud800-\\udfff]")
# The same class for RE2 (pyarrow's regular expressions), which spells code points \x{...}.
_BAD_RE2 = (
    "["
    + re.sub(r"\\u([0-9a-f]{4})|\\x([0-9a-f]{2})", lambda m: f"\\x{{{m[1] or m[2]}}}", FORBIDDEN)
    + "]"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def id_problem(value: str, *, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` is not an acceptable id, or None when it is.

    Parameters
    ----------
    value
        The id as text.
    max_length
        Longest accepted id (:data:`MAX_ID_LENGTH` by default).

    Returns
    -------
    str or None
        A sentence naming the first offending character (as ``U+XXXX``), or None.
    """
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"has {len(value)} characters; at most {max_length} are allowed"
    bad = _BAD.search(value)
    if bad is None:
        return None
    ch = bad.group()
    if _CONTROL.fullmatch(ch):
        kind = "a control character"
    elif "\ud800" <= ch <= "\udfff":
        kind = "a lone surrogate"
    else:
        kind = "an invisible formatting character"
    return f"contains {kind} (U+{ord(ch):04X} at position {bad.start() + 1})"


def check_id(
    value: object,
    *,
    column: str = "account_id",
    file: str | None = None,
    row: int | None = None,
    max_length: int = MAX_ID_LENGTH,
) -> str:
    """Return ``value`` as an id, or raise :class:`~fraudlens.errors.DataError`.

    Integers are accepted and turned into text (the reference's ids are numbers).

    Raises
    ------
    DataError
        Naming ``file``, ``row`` and ``column`` and what is wrong with the value.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(
            f"must be a string, not {type(value).__name__}", file=file, row=row, column=column
        )
    text = str(value)
    problem = id_problem(text, max_length=max_length)
    if problem is not None:
        raise DataError(f"{column} {problem}", file=file, row=row, column=column)
    return text


def bad_ids(values: Any, *, max_length: int = MAX_ID_LENGTH) -> np.ndarray:
    """Mask of the values that break the id rule, for a whole column at once.

    Parameters
    ----------
    values
        A pandas Series (or anything ``pandas.Series`` takes) of ``str``; missing values
        are not flagged (callers report them as missing).
    max_length
        Longest accepted id.

    Returns
    -------
    numpy.ndarray
        ``bool``, True where :func:`id_problem` would name a problem (other than
        emptiness); :func:`id_problem` then words it for the first one.
    """
    import numpy as np
    import pandas as pd

    s = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    if len(s) == 0:
        return np.zeros(0, dtype=bool)
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.array(s.astype(object).where(s.notna(), None), type=pa.large_string())
    except (ImportError, UnicodeEncodeError, TypeError, ValueError):
        # No pyarrow, a lone surrogate pyarrow cannot hold, or a value that is no string:
        # one value at a time.
        return np.fromiter(
            (
                isinstance(v, str) and bool(v) and id_problem(v, max_length=max_length) is not None
                for v in s.astype(object)
            ),
            dtype=bool,
            count=len(s),
        )
    too_long = pc.greater(pc.utf8_length(arr), max_length)
    forbidden = pc.match_substring_regex(arr, _BAD_RE2)
    bad = pc.fill_null(pc.or_(too_long, forbidden), False)
    return np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
