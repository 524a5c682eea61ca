"""Time in one zone: every timestamp fraudlens stores, compares or sends is UTC.

A timestamp without a zone means UTC (the data contracts say so); one with a zone is
converted. These helpers are the only place that rule is written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar, overload

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["utc", "utc_series", "utcnow"]

#: Longest scoring window, in hours (about 11 years): past it the window's start leaves
#: pandas' time range (inf hours had failed every check the worker took).
MAX_WINDOW_HOURS = 100_000.0

_D = TypeVar("_D", bound=datetime)


@overload
def utc(ts: None) -> None: ...
@overload
def utc(ts: _D) -> _D: ...
def utc(ts: datetime | None) -> datetime | None:
    """``ts`` as an aware UTC timestamp (naive means UTC); None stays None.

    Works for :class:`datetime.datetime` and :class:`pandas.Timestamp` alike and keeps
    the type it was given.
    """
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def utc_series(s: pd.Series) -> pd.Series:
    """A datetime Series as ``datetime64[ns, UTC]`` (naive values mean UTC)."""
    return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
