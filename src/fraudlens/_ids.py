"""Identifiers that cross the system's edges: account, trade and transaction ids.

One rule everywhere (API paths and queries, queue messages, loaders, the store):

- at most :data:`MAX_ID_LENGTH` characters, the width of the store's id columns, so an id
  that is accepted at the edge always fits the database;
- not empty, and every character printable (:meth:`str.isprintable`): no control
  characters (NUL, newline, DEL, C1), no invisible formatting or bidirectional overrides,
  no lone surrogates, private-use or unassigned code points. PostgreSQL refuses NUL in
  text, and invisible characters would let two different ids look the same to an analyst.
"""

from __future__ import annotations

import re

from fraudlens.errors import DataError

__all__ = ["ID_PATTERN", "MAX_ID_LENGTH", "check_id", "id_problem"]

#: Longest id fraudlens accepts (the store's ``String(64)`` id columns).
MAX_ID_LENGTH = 64

#: The same rule as a regular expression for OpenAPI schemas: 1 to 64 characters, none a
#: C0/C1 control character. (JSON Schema patterns cannot name Unicode categories, so the
#: format and unassigned characters that :func:`id_problem` also refuses are not in it.)
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$"

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
    if value.isprintable():
        return None
    bad = _CONTROL.search(value)
    pos = (
        bad.start()
        if bad is not None
        else next(i for i, c in enumerate(value) if not c.isprintable())
    )
    kind = "a control character" if bad is not None else "a non-printable character"
    return f"contains {kind} (U+{ord(value[pos]):04X} at position {pos + 1})"


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
