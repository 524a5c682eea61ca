"""Small frames built from column arrays without pandas' per-call fixed cost.

``pd.DataFrame({name: values, ...})`` infers every column's dtype (an object array of
strings becomes pandas' pyarrow-backed ``str``), builds the column index and
consolidates blocks: about 0.2 ms for a worker batch's seven-column frame of a few dozen
rows (0.1 ms here), which the store's reads pay several times a batch. The helpers here
build the same frame from arrays already in their final form (strings as pyarrow
arrays, times as a UTC ``DatetimeArray``) through pandas' own column-array constructor.

Whether the result equals pandas' is checked once per process on a sample of every
kind of column (values, dtypes, blocks, the pyarrow type of strings); if anything
differs (another pandas, no pyarrow strings), every call takes pandas' own path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["frame_of", "indexed_frame", "utc_times"]


@functools.cache
def _str_dtype() -> Any:
    """The dtype pandas gives a column of Python strings (None if not pyarrow's)."""
    probe = pd.DataFrame({"s": np.array(["a"], dtype=object)})
    dtype = probe.dtypes.iloc[0]
    if not isinstance(dtype, pd.StringDtype) or dtype.storage != "pyarrow":
        return None
    arrow = getattr(probe["s"].array, "_pa_array", None)
    if arrow is None or str(arrow.type) != "large_string":
        return None
    return dtype


def _text_array(values: Any) -> Any:
    """A column of Python strings as pandas' ``str`` array; None when it holds anything
    else (pandas' own inference then decides)."""
    dtype = _str_dtype()
    if dtype is None:
        return None
    import pyarrow as pa
    from pandas.core.arrays.string_arrow import ArrowStringArray

    # Python strings only (pandas' own test, in C): None, NaN or bytes take pandas' path
    if pd.api.types.infer_dtype(values, skipna=False) != "string":
        return None
    items = values if isinstance(values, np.ndarray) else list(values)
    return ArrowStringArray(pa.array(items, type=pa.large_string()), dtype=dtype)


def utc_times(ns: np.ndarray) -> Any:
    """Unix nanoseconds (int64 or ``datetime64[ns]``) as a ``datetime64[ns, UTC]``
    array, as ``pd.DatetimeIndex(values, tz="UTC")`` holds them."""
    from pandas.core.arrays import DatetimeArray

    values = np.ascontiguousarray(np.asarray(ns).view("datetime64[ns]"))
    return DatetimeArray._simple_new(values, dtype=pd.DatetimeTZDtype("ns", "UTC"))


def _pandas_frame(names: Sequence[str], columns: Sequence[Any]) -> pd.DataFrame:
    return pd.DataFrame(dict(zip(names, columns, strict=True)))


@functools.cache
def _column_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names))


def _fast_frame(names: tuple[str, ...], columns: Sequence[Any]) -> pd.DataFrame | None:
    n = len(columns[0]) if columns else 0
    if n == 0:  # pandas keeps an empty column of objects as objects, not strings
        return None
    arrays: list[Any] = []
    for values in columns:
        if len(values) != n:
            return None
        if isinstance(values, np.ndarray) and values.dtype == object:
            text = _text_array(values)
            if text is None:
                return None
            arrays.append(text)
        elif isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 1:
            arrays.append(values)
        elif isinstance(values, pd.DatetimeIndex | pd.arrays.DatetimeArray) and (
            str(values.dtype) == "datetime64[ns, UTC]"
        ):
            arrays.append(utc_times(np.asarray(values.asi8, dtype=np.int64).copy()))
        else:
            return None
    # a copy of the column index per frame: a frame's columns may be renamed in place
    return pd.DataFrame._from_arrays(
        arrays,
        columns=_column_index(names).copy(),
        index=pd.RangeIndex(n),
        verify_integrity=False,
    )


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError:
        return False
    # the same blocks (kind and columns; their order in the manager is not observable)
    if _blocks(a) != _blocks(b):
        return False
    for name in a.columns:
        left: Any = getattr(a[name].array, "_pa_array", None)
        right: Any = getattr(b[name].array, "_pa_array", None)
        if (left is None) != (right is None):
            return False
        if left is not None and (left.type != right.type or left.num_chunks != right.num_chunks):
            return False
    return a.columns.dtype == b.columns.dtype and type(a.index) is type(b.index)


def _blocks(frame: pd.DataFrame) -> list[tuple[str, list[int]]]:
    return sorted((type(x).__name__, x.mgr_locs.as_array.tolist()) for x in frame._mgr.blocks)


@functools.cache
def _fast_ok() -> bool:
    """Whether :func:`_fast_frame` builds what pandas builds, on a sample of each kind."""
    if not hasattr(pd.DataFrame, "_from_arrays"):
        return False
    names = ("id", "symbol", "ts", "price", "quantity", "tag")
    ts = pd.DatetimeIndex(
        np.array([0, 1_500_000_000_123_456_789], dtype="datetime64[ns]"), tz="UTC"
    )
    columns = [
        np.array(["a", "b"], dtype=object),
        np.array(["X", "é"], dtype=object),
        ts,
        np.array([1.5, np.nan]),
        np.array([2.0, 3.0]),
        np.array(["", "buy"], dtype=object),
    ]
    try:
        for cols, nm in ((columns, names), ([c[1:] for c in columns], names)):
            fast = _fast_frame(nm, cols)
            if fast is None or not _same(fast, _pandas_frame(nm, cols)):
                return False
    except Exception:  # any surprise in pandas' internals: its own path
        return False
    return True


def frame_of(names: Sequence[str], columns: Sequence[Any]) -> pd.DataFrame:
    """``pd.DataFrame(dict(zip(names, columns)))`` for columns that are object arrays of
    Python strings, 1-d float64 arrays or UTC nanosecond times (``DatetimeIndex`` or
    ``DatetimeArray``); anything else, or a pandas on which the result would differ,
    takes pandas' constructor."""
    names = tuple(names)
    if len(set(names)) == len(names) and _fast_ok():
        frame = _fast_frame(names, columns)
        if frame is not None:
            return frame
    return _pandas_frame(names, columns)


# ---------------------------------------------------------------------------------------
# column reads without pandas' fixed cost
# ---------------------------------------------------------------------------------------
# ``frame[name]`` builds a Series each time (about 40 us on pandas 3, whose copy-on-write
# keeps no cache of them), and the worker's small batches read a few dozen columns: the
# helpers below read a column's array directly and convert it as ``frame[name]``'s
# ``to_numpy`` would, falling back to ``frame[name]`` for anything unusual.
def _array(frame: pd.DataFrame, name: str) -> Any:
    """``frame[name]``'s values: its numpy array (a read-only view) or extension array."""
    loc = frame.columns.get_loc(name)
    get = getattr(frame, "_get_column_array", None)
    if type(loc) is not int or get is None:  # duplicated names, or an older pandas
        return frame[name].array
    values = get(loc)
    if isinstance(values, np.ndarray):
        values = values.view()
        values.flags.writeable = False  # the frame's own memory
    return values


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    """``frame[name].to_numpy(dtype=np.float64)`` (read-only)."""
    values = _array(frame, name)
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    return frame[name].to_numpy(dtype=np.float64)


def _ns(frame: pd.DataFrame, name: str) -> np.ndarray:
    """``frame[name].to_numpy("datetime64[ns]")`` (read-only)."""
    values = _array(frame, name)
    if isinstance(values, pd.arrays.DatetimeArray):
        out = np.asarray(values, dtype="datetime64[ns]").view()
        out.flags.writeable = False
        return out
    return frame[name].to_numpy("datetime64[ns]")


def _text(frame: pd.DataFrame, name: str) -> Any:
    """``frame[name]``, as its string array when pandas holds it as one (what
    :func:`~fraudlens.market._bars._factorize` and ``tolist`` read the same way)."""
    values = _array(frame, name)
    if isinstance(values.dtype, pd.StringDtype):
        return values
    return frame[name]


# ---------------------------------------------------------------------------------------
# a frame of final column arrays on a given index
# ---------------------------------------------------------------------------------------
def _indexed_pandas_frame(
    names: Sequence[str], columns: Sequence[np.ndarray], index: pd.Index
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            name: pd.Series(values, index=index, dtype=object) if values.dtype == object else values
            for name, values in zip(names, columns, strict=True)
        },
        index=index,
    )


def _indexed_fast_frame(
    names: tuple[str, ...], columns: Sequence[np.ndarray], index: pd.Index
) -> pd.DataFrame | None:
    n = len(index)
    for values in columns:
        if not (
            isinstance(values, np.ndarray)
            and values.ndim == 1
            and len(values) == n
            and values.dtype in (np.dtype(object), np.dtype(np.float64), np.dtype(np.int64))
        ):
            return None
    return pd.DataFrame._from_arrays(
        list(columns), columns=_column_index(names).copy(), index=index, verify_integrity=False
    )


@functools.cache
def _indexed_fast_ok() -> bool:
    """Whether :func:`_indexed_fast_frame` builds what :func:`_indexed_pandas_frame`
    builds, on a sample of each column kind."""
    if not hasattr(pd.DataFrame, "_from_arrays"):
        return False
    names = ("moved", "counterparty", "n", "lost")
    index = pd.Index(np.array(["a", "b"], dtype=object), name="account_id")
    columns = [
        np.array([1.5, np.nan]),
        np.array(["x", None], dtype=object),
        np.array([3, 0], dtype=np.int64),
        np.array([-0.0, 2.0]),
    ]
    try:
        fast = _indexed_fast_frame(names, columns, index)
        return fast is not None and _same(fast, _indexed_pandas_frame(names, columns, index))
    except Exception:  # any surprise in pandas' internals: its own path
        return False


def indexed_frame(
    names: Sequence[str], columns: Sequence[np.ndarray], index: pd.Index
) -> pd.DataFrame:
    """``pd.DataFrame({name: values, ...}, index=index)`` of 1-d numpy columns, object
    columns kept as objects (as ``pd.Series(values, index=index, dtype=object)``), int64
    and float64 as they are; other columns, or a pandas on which the result would differ,
    take pandas' constructor."""
    names = tuple(names)
    if len(set(names)) == len(names) and _indexed_fast_ok():
        frame = _indexed_fast_frame(names, columns, index)
        if frame is not None:
            return frame
    return _indexed_pandas_frame(names, columns, index)
