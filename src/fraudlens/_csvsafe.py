"""CSV that analysts open in a spreadsheet: text that a spreadsheet would run as a
formula is written as text.

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK("http://x")``, ``@SUM(A1)``, ``-2+3``), and some read a tab or a carriage
return before one the same way: an account id or a note chosen by whoever is being
investigated would run on the analyst's machine (CSV or formula injection). Spreadsheets
also skip blanks before a formula (``" =1"``, a no-break space, a line feed) and take the
full-width forms ``＝ ＋ － ＠`` (U+FF1D, U+FF0B, U+FF0D, U+FF20) for the ASCII ones, so
text whose first character after any whitespace (what ``str.isspace`` calls whitespace,
and the invisible U+200B-U+200D, U+2060, U+FEFF) is one of those eight is treated the
same. Such text is written with a single quote before it (``'=HYPERLINK(...)``), which
spreadsheets show as text and keep out of the cell's value. Numbers stay numbers: a
negative score or value is written as the number it is; only text is changed.

This is for exports people open (``GET /v1/risk-events/export``, ``fraudlens db events
--csv``); the data files fraudlens writes for programs (sinks, bench outputs) keep their
values as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "FORMULA_STARTS",
    "FULLWIDTH_FORMULA_STARTS",
    "RISK_EVENT_COLUMNS",
    "csv_chunks",
    "risk_event_row",
    "safe_cell",
]

# The characters that open a formula.
_FORMULA_CHARS = ("=", "+", "-", "@")
#: First characters that make a spreadsheet read a text cell as a formula.
FORMULA_STARTS = (*_FORMULA_CHARS, "\t", "\r")
#: Full-width forms of ``= + - @`` that spreadsheets read as the ASCII ones.
FULLWIDTH_FORMULA_STARTS = ("\uff1d", "\uff0b", "\uff0d", "\uff20")
# A formula character (ASCII or full-width) after any whitespace or invisible characters.
_FORMULA_AFTER_BLANKS = re.compile(
    r"[\s\u200b-\u200d\u2060\ufeff]*["
    + re.escape("".join((*_FORMULA_CHARS, *FULLWIDTH_FORMULA_STARTS)))
    + "]"
)

#: Columns of an analysts' export of risk events: (header, the event dict's key).
RISK_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("recorded_at", "created_at"),
    ("account_id", "account_id"),
    ("score", "score"),
    ("threshold", "threshold"),
    ("priority", "priority"),
    ("status", "status"),
    ("business_type", "business_type"),
    ("fraud_type", "fraud_type"),
    ("model_version", "model_version"),
    ("value_moved", "value_moved"),
    ("counterparty", "counterparty"),
    ("window_start", "window_start"),
    ("window_end", "window_end"),
    ("requested_at", "requested_at"),
    ("reviewed_by", "reviewed_by"),
    ("reviewed_at", "reviewed_at"),
    ("note", "note"),
    ("assignee", "assignee"),
    ("assigned_at", "assigned_at"),
)


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet-safe CSV cell.

    Text that starts with a formula character (:data:`FORMULA_STARTS`), or whose first
    character after any whitespace is one of ``= + - @`` or their full-width forms
    (:data:`FULLWIDTH_FORMULA_STARTS`), gets a single quote before it; numbers (``int``,
    ``float``, not ``bool``) are returned as they are, negative ones included; None is an
    empty cell; anything else is written as its text, checked the same way.
    """
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS) or _FORMULA_AFTER_BLANKS.match(text):
        return "'" + text
    return text


def risk_event_row(event: Mapping[str, Any]) -> list[Any]:
    """The values of one risk event (a store event dict) in :data:`RISK_EVENT_COLUMNS`
    order, as stored (:func:`csv_chunks` makes them safe)."""
    return [event.get(key) for _header, key in RISK_EVENT_COLUMNS]


def csv_chunks(header: Sequence[str], rows: Iterable[Iterable[Sequence[Any]]]) -> Iterator[str]:
    """CSV text (``\\r\\n`` line ends, fields quoted when needed) of ``header`` and then
    each batch of ``rows``, one string a batch, every cell passed through
    :func:`safe_cell`: for streaming an export batch by batch."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([safe_cell(h) for h in header])
    yield buf.getvalue()
    for batch in rows:
        buf.seek(0)
        buf.truncate()
        writer.writerows([safe_cell(v) for v in row] for row in batch)
        yield buf.getvalue()
