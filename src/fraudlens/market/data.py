"""Market data contracts: k-lines, trades and labels; loading, validation, windowing.

Contracts (see the README's "Data contracts"):

- ``klines``: ``symbol, ts (bar start), open, high, low, close, volume``
- ``trades``: ``trade_id, account_id, symbol, ts, side (buy|sell), price, quantity``
- ``labels``: ``account_id, label`` (1 = takeover pattern, 0 = normal) + optional columns

In memory, ``ts`` columns are ``datetime64[ns, UTC]``; ``account_id``, ``symbol`` and
``trade_id`` are strings; ``side`` is ``"buy"`` or ``"sell"``; prices, volumes and
quantities are ``float64``; ``label`` is ``int64``.

Files are CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) with a header
row. Timestamps are ISO-8601; a timestamp without a zone is read as UTC. Every
loader validates what it reads and raises :class:`~fraudlens.errors.DataError` naming
the file, the 1-based data row (the header is row 0) and the column of the first bad
value; a missing column names the column only, and an empty file, a file with only a
header row, or one that is not UTF-8 get the same words as the card loader's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from fraudlens._csvread import (
    NO_DATA_ROWS,
    READ_ERRORS,
    TABLE_FORMATS,
    check_header,
    read_csv,
    read_error,
    read_parquet,
)
from fraudlens._echo import cut
from fraudlens._ids import MAX_ID_LENGTH, MAX_SYMBOL_LENGTH, bad_ids, id_problem
from fraudlens._io import missing, write_binary, write_csv
from fraudlens.errors import DataError
from fraudlens.market._bars import _factorize

if TYPE_CHECKING:
    from fraudlens.market.features import TradeBook

__all__ = [
    "BAR",
    "KLINE_COLUMNS",
    "LABEL_COLUMNS",
    "TRADE_COLUMNS",
    "MarketData",
    "attach_bars",
    "import_reference",
    "load_klines",
    "load_labels",
    "load_market",
    "load_market_files",
    "load_trades",
    "validate_klines",
    "validate_labels",
    "validate_trades",
    "window",
    "write_market",
]

KLINE_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("trade_id", "account_id", "symbol", "ts", "side", "price", "quantity")
LABEL_COLUMNS = ("account_id", "label")
#: Default bar length.
BAR = pd.Timedelta(minutes=5)

#: Below this many k-lines, their symbols are compared as strings rather than hashed.
FEW_BARS = 4096
_SUFFIXES = (".parquet", ".pq", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".csv")
_FRAME = "<frame>"
_TS_DTYPE = "datetime64[ns, UTC]"
#: Timestamps outside these bounds are refused: no market data is older, and the bounds
#: keep every window and bar computation far from the nanosecond clock's 1677-2262 limits.
TS_MIN = pd.Timestamp("1900-01-01", tz="UTC")
TS_MAX = pd.Timestamp("2200-01-01", tz="UTC")
#: The largest price, quantity or price x quantity a trades file may hold: sums over an
#: account's fills (up to 100,000 of them) stay finite.
MAX_TRADE_MAGNITUDE = 1e303
# Values an id may be given as (numbers become their text).
_SCALARS = (str, int, float, np.number)
#: Floats at or past this size are not exact integers, so not ids.
_EXACT_FLOAT_ID = float(2**53)
#: What pandas' infer_dtype calls a column of ids that holds no float.
_NO_FLOATS = frozenset(("string", "integer", "empty"))
#: Longest id of each text column (the store's column widths).
_ID_LENGTHS = {"symbol": MAX_SYMBOL_LENGTH}


@dataclass
class MarketData:
    """K-lines and trades (and optionally labels) held together.

    ``account_ids`` fixes the order in which every detector returns its scores: the
    sorted unique account ids of ``trades``.

    ``book`` is what an account's mirror evidence is read against (the trades of other
    accounts that may have taken the other side of its trades, see
    :class:`~fraudlens.market.features.TradeBook`). None means ``trades`` themselves.
    :meth:`subset`, :func:`window` and chunked scoring keep the book of the data they
    start from, so an account scores the same alone, in a chunk or with every account.
    """

    klines: pd.DataFrame
    trades: pd.DataFrame
    labels: pd.DataFrame | None = None
    bar: pd.Timedelta = field(default=BAR)
    book: TradeBook | None = field(default=None, repr=False, compare=False)

    def the_book(self) -> TradeBook:
        """:attr:`book`, or a book of :attr:`trades` when there is none."""
        if self.book is not None:
            return self.book
        from fraudlens.market.features import TradeBook

        return TradeBook(self.trades)

    @property
    def account_ids(self) -> np.ndarray:
        """Sorted unique account ids present in ``trades``."""
        return np.sort(self.trades["account_id"].astype(str).unique())

    def y(self) -> np.ndarray:
        """Labels aligned to :attr:`account_ids` (raises if labels are missing)."""
        if self.labels is None:
            raise ValueError("this MarketData has no labels")
        lab = self.labels.set_index("account_id")["label"]
        missing = np.setdiff1d(self.account_ids, lab.index.astype(str))
        if len(missing):
            n = len(missing)
            raise ValueError(
                f"{n:,} account{'s' if n != 1 else ''} {'have' if n != 1 else 'has'} no label, "
                f"e.g. {missing[:3].tolist()}"
            )
        return lab.reindex(self.account_ids).to_numpy(dtype=np.int8)

    def label_column(self, name: str) -> np.ndarray | None:
        """An extra label column (e.g. ``kind``) aligned to :attr:`account_ids`, if present."""
        if self.labels is None or name not in self.labels.columns:
            return None
        return self.labels.set_index("account_id")[name].reindex(self.account_ids).to_numpy()

    def subset(self, account_ids: np.ndarray | list[str]) -> MarketData:
        """Only the given accounts' trades and labels (k-lines are shared and kept whole)."""
        from fraudlens._isin import isin

        ids = pd.Index(np.asarray(account_ids, dtype=str))
        trades = self.trades[isin(self.trades["account_id"], ids)].reset_index(drop=True)
        labels = None
        if self.labels is not None:
            labels = self.labels[self.labels["account_id"].isin(ids)].reset_index(drop=True)
        return MarketData(self.klines, trades, labels, self.bar, self.the_book())


def window(data: MarketData, hours: float = 24.0) -> MarketData:
    """Keep, for each account, the trades in the ``hours`` that end at its latest trade.

    This is the scoring unit of every detector. The mirror evidence of the kept trades
    is still read against every trade of ``data`` (its book).
    """
    t = data.trades
    last = t.groupby("account_id", sort=False)["ts"].transform("max")
    keep = t["ts"] >= last - pd.Timedelta(hours=hours)
    if bool(keep.all()):
        return data
    return MarketData(
        data.klines, t[keep].reset_index(drop=True), data.labels, data.bar, data.the_book()
    )


def attach_bars(
    trades: pd.DataFrame, klines: pd.DataFrame, bar: pd.Timedelta = BAR
) -> pd.DataFrame:
    """Join each trade to the bar of its symbol that contains its timestamp.

    Returns a copy of ``trades`` (same row order) with ``bar_ts, bar_open, bar_high,
    bar_low, bar_close`` and ``bar_row`` (the row position of the bar in ``klines`` sorted
    by symbol and ts; -1 if none). Trades with no bar get NaN bar columns.
    Vectorised: one sort and one ``searchsorted`` per call, no Python loop per trade.
    """
    k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    pos = _bar_positions(trades, k, bar)
    out = trades.copy()
    has = pos >= 0
    # With no k-lines every trade is unmatched; index a single NaN bar instead of nothing.
    if len(k) == 0:
        k = pd.DataFrame(
            {
                "ts": pd.Series([pd.NaT], dtype="datetime64[ns, UTC]"),
                **{c: [np.nan] for c in ("open", "high", "low", "close")},
            }
        )
    safe = np.where(has, pos, 0)
    out["bar_row"] = pos
    # .array.take keeps the tz-aware dtype; .to_numpy() would box every timestamp.
    out["bar_ts"] = pd.Series(k["ts"].array.take(safe), index=out.index).where(has)
    for col in ("open", "high", "low", "close"):
        vals = k[col].to_numpy(dtype=np.float64)[safe]
        out[f"bar_{col}"] = np.where(has, vals, np.nan)
    return out


def _bar_positions(
    trades: pd.DataFrame,
    k: pd.DataFrame,
    bar: pd.Timedelta,
    *,
    symbols: tuple[np.ndarray, Any] | None = None,
    k_symbols: tuple[np.ndarray, Any] | None = None,
) -> np.ndarray:
    """Row of the bar in ``k`` (sorted by symbol, ts) holding each trade; -1 if none.

    ``symbols`` is ``pd.factorize(trades["symbol"])`` when the caller has it already;
    ``k_symbols`` codes of ``k["symbol"]`` (equal codes for equal symbols, none
    negative) and the symbol of each code, likewise."""
    if not (len(trades) and len(k)):
        return np.full(len(trades), -1, dtype=np.int64)
    # k's symbols come in runs: find the runs by comparing neighbours, and each traded
    # symbol's run by name (cheaper than factorizing both columns together, which the
    # worker did twice per batch)
    # many bars: hash their symbols (no object array of every bar); few, or a missing
    # symbol: compare the values themselves
    from fraudlens.market._bars import _arrow_factorize
    from fraudlens.market._columns import _text

    k_codes: np.ndarray | None
    if k_symbols is not None:
        k_codes, k_names = k_symbols
    else:
        # pyarrow strings: their dictionary codes (pandas' factorize's, at a fraction of
        # its cost, and no object array of every bar's symbol either)
        coded = _arrow_factorize(_text(k, "symbol"), sort=False)
        if coded is not None:
            k_codes, k_names = coded
        else:
            k_codes, k_names = pd.factorize(k["symbol"]) if len(k) >= FEW_BARS else (None, None)
    if k_codes is not None and not bool((k_codes < 0).any()):
        cut = np.flatnonzero(k_codes[1:] != k_codes[:-1]) + 1
        names = np.asarray(k_names, dtype=object)[k_codes[np.r_[0, cut]]].tolist()
    else:
        k_sym_arr = np.asarray(_text(k, "symbol").to_numpy(), dtype=object)
        cut = np.flatnonzero(k_sym_arr[1:] != k_sym_arr[:-1]) + 1
        names = k_sym_arr[np.r_[0, cut]].tolist()
    run_lo = np.r_[0, cut].tolist()
    run_hi = np.r_[cut, len(k)].tolist()
    runs = dict(zip(names, zip(run_lo, run_hi, strict=True), strict=True))
    if len(runs) != len(run_lo):  # a symbol in several runs: search the symbols' codes
        runs = _runs_by_code(trades, k)
    return _positions_in_runs(trades, k, runs, bar, symbols)


def stable_order(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """``np.argsort(codes, kind="stable")`` for integer codes in ``[-1, n_codes)``: a
    radix sort (linear) when they fit in 16 bits, which is most calls."""
    if n_codes < 2**15 - 1:
        return np.argsort(codes.astype(np.int16), kind="stable")
    return np.argsort(codes, kind="stable")


def _runs_by_code(trades: pd.DataFrame, k: pd.DataFrame) -> dict[Any, tuple[int, int]]:
    """Each symbol's rows ``[start, end)`` of ``k``, searched on the symbols' sorted codes
    over ``k`` and ``trades`` together (symbols without rows in ``k`` left out)."""
    sym_codes, sym_uniques = pd.factorize(
        pd.concat([k["symbol"], trades["symbol"]], ignore_index=True), sort=True
    )
    k_sym = sym_codes[: len(k)].astype(np.int64)
    codes = np.arange(len(sym_uniques))
    starts = np.searchsorted(k_sym, codes, side="left").tolist()
    ends = np.searchsorted(k_sym, codes, side="right").tolist()
    return {
        name: (lo, hi)
        for name, lo, hi in zip(sym_uniques.tolist(), starts, ends, strict=True)
        if lo < hi
    }


def _positions_in_runs(
    trades: pd.DataFrame,
    k: pd.DataFrame,
    runs: dict[Any, tuple[int, int]],
    bar: pd.Timedelta,
    symbols: tuple[np.ndarray, Any] | None = None,
) -> np.ndarray:
    """:func:`_bar_positions` with each symbol's rows of ``k`` given as ``runs``."""
    from fraudlens.market._columns import _ns, _text

    # the columns' arrays, not a Series each (pandas' fixed cost per column)
    t_codes, t_uniques = _factorize(_text(trades, "symbol")) if symbols is None else symbols
    k_ts = _ns(k, "ts").astype(np.int64)
    t_ts = _ns(trades, "ts").astype(np.int64)
    pos = np.full(len(trades), -1, dtype=np.int64)
    order = stable_order(t_codes, len(t_uniques))
    bounds = np.searchsorted(t_codes[order], np.arange(len(t_uniques) + 1), side="left")
    bar_ns = int(bar.value)
    for s, name in enumerate(t_uniques.tolist()):
        run = runs.get(name)
        idx = order[bounds[s] : bounds[s + 1]]
        if run is None or len(idx) == 0:
            continue
        start, end = run
        seg = k_ts[start:end]
        j = np.searchsorted(seg, t_ts[idx], side="right") - 1
        ok = (j >= 0) & (t_ts[idx] < seg[np.clip(j, 0, None)] + bar_ns)
        pos[idx[ok]] = start + j[ok]
    return pos


# --------------------------------------------------------------------------- validation


class _Checks:
    """Collects the first failing row of each check; raises the earliest one.

    Checks are registered in order; when two checks fail on the same row, the one
    registered first wins, so a missing value is reported before a range violation.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[tuple[int, int, str, Callable[[int], str]]] = []

    def add(self, bad: np.ndarray | pd.Series, column: str, message: Callable[[int], str]) -> None:
        mask = np.asarray(bad, dtype=bool)
        if mask.any():
            self.found.append((int(mask.argmax()), len(self.found), column, message))

    def positive(self, arr: np.ndarray, column: str) -> None:
        """Values must be > 0 (NaN is reported by the parser check)."""

        def message(i: int) -> str:
            return f"{column} must be > 0, got {arr[i]}"

        self.add(arr <= 0, column, message)

    def raise_first(self) -> None:
        if not self.found:
            return
        pos, _, column, message = min(self.found, key=lambda f: (f[0], f[1]))
        raise DataError(message(pos), file=self.source, row=pos + 1, column=column)


#: Control characters (C0, DEL, C1), which no label kind holds.
_KIND_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        # At most 20 names of 40 characters: a header may hold a megabyte of them.
        found = ", ".join(repr(cut(str(c), 40)) for c in df.columns[:20]) or "none"
        if len(df.columns) > 20:
            found += f", ... ({len(df.columns):,} columns)"
        plural = "s" if len(missing) > 1 else ""
        raise DataError(
            f"missing column{plural} {names} (found: {found})", file=source, column=missing[0]
        )


def _show(value: object) -> str:
    """A short, readable rendering of a bad value for an error message."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return cut(text, 60)


def _text_column(df: pd.DataFrame, col: str, checks: _Checks) -> pd.Series:
    """An id-like column as ``str``; missing or blank values are reported, and so are
    values that are not text or a number (a list, a mapping, true/false) and ids that
    break the id rule of :mod:`fraudlens._ids` (too long, control or invisible
    characters)."""
    s = df[col]
    null = s.isna().to_numpy()
    if pd.api.types.is_bool_dtype(s.dtype):
        checks.add(~null, col, lambda i: f"{col} must be text or a number, not {_show(s.iloc[i])}")
    elif s.dtype == object:
        # Parquet list columns or JSON records: a value that is no scalar has no id.
        given = s
        wrong = np.fromiter(
            (
                v is not None and (isinstance(v, bool | np.bool_) or not isinstance(v, _SCALARS))
                for v in s.to_numpy()
            ),
            dtype=bool,
            count=len(s),
        )
        checks.add(
            wrong,
            col,
            lambda i: (
                f"{col} must be text or a number, not {type(given.iloc[i]).__name__} "
                f"{_show(given.iloc[i])}"
            ),
        )
        null = null & ~wrong
        s = s.where(~wrong, None)
    if s.dtype == object or pd.api.types.is_float_dtype(s.dtype):
        # A float past 2**53 (or infinite) names no exact id: 1e19 and 1e300 would
        # both have become int64's minimum, merging different accounts.
        floats = s.to_numpy()
        if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in _NO_FLOATS:
            # text or integers only (found in C): no value to look at one by one
            inexact = np.zeros(len(s), dtype=bool)
        elif s.dtype == object:
            inexact = np.array(
                [
                    isinstance(v, float | np.floating) and abs(float(v)) >= _EXACT_FLOAT_ID
                    for v in floats
                ],
                dtype=bool,
            )
        else:
            inexact = np.abs(floats.astype(np.float64)) >= _EXACT_FLOAT_ID
        checks.add(
            inexact,
            col,
            lambda i: (
                f"{col} {float(floats[i])!r} is "
                + (
                    "a number too large to be an exact id (write ids as text)"
                    if np.isfinite(float(floats[i]))
                    else "not a finite number"
                )
            ),
        )
        null = null | inexact
    if pd.api.types.is_float_dtype(s.dtype):
        # Parquet or pandas turns integer ids with gaps into floats: 12.0 means "12".
        vals = s.to_numpy(dtype=np.float64)
        vals = np.where(null, np.nan, vals)
        if np.all(np.isnan(vals) | (vals == np.round(vals))):
            out = pd.Series(
                np.where(null, "", np.nan_to_num(vals).astype(np.int64).astype(str)),
                index=s.index,
                dtype=str,
            )
        else:
            out = s.astype(str)
    else:
        out = s.astype(str)
    out = out.where(~null, "").str.strip()
    checks.add(null | (out == "").to_numpy(), col, lambda i: f"missing {col}")
    longest = _ID_LENGTHS.get(col, MAX_ID_LENGTH)
    checks.add(
        bad_ids(out, max_length=longest),
        col,
        lambda i: f"{col} {id_problem(out.iat[i], max_length=longest)}",
    )
    return out


def _beyond_float(value: object) -> bool:
    """Whether ``value`` is an integer too large for a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return True
    return False


def _float_column(
    df: pd.DataFrame, col: str, checks: _Checks, *, booleans: bool = False
) -> pd.Series:
    """A numeric column as float64; values that are not numbers are reported, booleans
    among them unless ``booleans`` (labels: True/False is 1/0); a price of ``true``
    (JSON records, a Parquet column) had been read as 1."""
    s = df[col]
    is_bool = np.zeros(len(s), dtype=bool)
    if pd.api.types.is_bool_dtype(s.dtype):
        num = s.astype(np.float64)
        is_bool = s.notna().to_numpy()
    elif pd.api.types.is_numeric_dtype(s.dtype):
        num = s
    else:
        # A CSV column with one stray word is read as text: find the values that fail.
        values = s.astype(object).where(s.notna(), None)
        try:
            num = pd.to_numeric(values, errors="coerce")
        except OverflowError:
            # An integer no float holds ("1" and 400 zeros; read_csv and JSON give it as
            # a Python int), which pandas refuses even when told to coerce.
            huge = np.fromiter(map(_beyond_float, values), dtype=bool, count=len(values))
            checks.add(
                huge, col, lambda i: f"a number of {len(str(s.iloc[i])):,} digits is too large"
            )
            num = pd.to_numeric(values.where(~huge, None), errors="coerce")
        if s.dtype == object and not booleans:
            # JSON records or a mixed column: only pandas' untyped columns hold booleans.
            is_bool = s.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    out = pd.Series(num.to_numpy(dtype=np.float64, na_value=np.nan), index=s.index)
    raw_null = s.isna().to_numpy()
    if s.dtype == object and raw_null.any():
        # JSON records: null is missing, but NaN (Python's json reads it) is a number that
        # is not finite, like Infinity; it had been reported as missing.
        vals = s.to_numpy()
        at = np.flatnonzero(raw_null)
        nan = np.fromiter((isinstance(vals[i], float | np.floating) for i in at), bool, len(at))
        raw_null = raw_null.copy()
        raw_null[at[nan]] = False
    bad = ~np.isfinite(out.to_numpy())
    checks.add(raw_null, col, lambda i: f"missing {col}")
    if not booleans:
        checks.add(is_bool, col, lambda i: f"{str(s.iloc[i]).lower()} is a boolean, not a number")
    checks.add(bad & ~raw_null, col, lambda i: f"{_show(s.iloc[i])} is not a finite number")
    return out


def _ts_column(df: pd.DataFrame, col: str, checks: _Checks, *, lenient: bool = False) -> pd.Series:
    """Parse ISO-8601 timestamps to UTC (a value with no zone is UTC).

    ``lenient`` also accepts other unambiguous date formats (for the reference files).
    Timestamps before :data:`TS_MIN` or from :data:`TS_MAX` on are reported.
    """
    s = df[col]
    raw_null = s.isna().to_numpy()
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        out = s.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(s.dtype) and not raw_null.all():
        # Epoch numbers are ambiguous (s, ms, ns): ask for ISO-8601 instead of guessing.
        checks.add(~raw_null, col, lambda i: f"{_show(s.iloc[i])} {_EPOCH_HINT}")
        return pd.Series(pd.NaT, index=s.index, dtype=_TS_DTYPE)
    else:
        text = s.astype(object).where(s.notna(), None)
        if s.dtype == object:
            # JSON records or a mixed column: only text is read as a date.
            not_text = np.fromiter(
                (v is not None and not isinstance(v, str | pd.Timestamp) for v in text),
                dtype=bool,
                count=len(text),
            )
            if not_text.any():
                checks.add(
                    not_text,
                    col,
                    lambda i: f"{_show(s.iloc[i])} is not text, not an ISO-8601 timestamp",
                )
                raw_null = raw_null | not_text
                text = text.where(~not_text, None)
        out = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        if lenient:
            retry = out.isna().to_numpy() & ~raw_null
            if retry.any():
                again = pd.to_datetime(text[retry], utc=True, format="mixed", errors="coerce")
                out = out.astype(_TS_DTYPE)
                out[retry] = again.astype(_TS_DTYPE)
                # 12/03/2026 had been read month first (3 December) and 13/03/2026 day
                # first (13 March) in the same file: no order is guessed.
                ambiguous = retry & text.map(_ambiguous_date).to_numpy(dtype=bool)
                if ambiguous.any():
                    checks.add(ambiguous, col, lambda i: f"{_show(s.iloc[i])} {_AMBIGUOUS_HINT}")
                    raw_null = raw_null | ambiguous
                    out = out.where(~ambiguous, pd.NaT)
        words = _clock_words(s if pd.api.types.is_string_dtype(s.dtype) else text, out)
        if words.any():
            checks.add(
                words,
                col,
                lambda i: (
                    f"{_show(s.iloc[i])} is a word read as the time of reading, not "
                    "an ISO-8601 timestamp"
                ),
            )
            raw_null = raw_null | words
            out = out.where(~words, pd.NaT)
    # Compared in the parsed unit, before the nanosecond cast that would overflow.
    out_of_range = ((out < TS_MIN) | (out >= TS_MAX)).to_numpy(dtype=bool, na_value=False)
    if out_of_range.any():
        shown = out.copy()
        checks.add(
            out_of_range,
            col,
            lambda i: (
                f"{col} {shown.iat[i].isoformat()} is outside the dates fraudlens "
                f"reads ({TS_MIN.date()} to {TS_MAX.date()})"
            ),
        )
        out = out.where(~out_of_range, pd.NaT)
        raw_null = raw_null | out_of_range
    out = out.astype(_TS_DTYPE)
    parsed = out.notna().to_numpy()
    checks.add(raw_null & ~out_of_range, col, lambda i: f"missing {col}")
    expect = "a date and time" if lenient else "an ISO-8601 timestamp"

    def unparsed(i: int) -> str:
        value = s.iloc[i]
        if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value.strip()):
            return f"{_show(value)} {_EPOCH_HINT}"
        return f"cannot parse {_show(value)} as {expect}"

    checks.add(~parsed & ~raw_null, col, unparsed)
    return out


#: An epoch time written as text (digits, perhaps a fraction): refused with
#: :data:`_EPOCH_HINT` rather than read in a guessed unit.
_EPOCH_TEXT = re.compile(r"[+-]?\d+(\.\d*)?")
_EPOCH_HINT = (
    "is a number, not an ISO-8601 timestamp (epoch times are not read: seconds, "
    "milliseconds and nanoseconds look alike; write e.g. 2026-03-02T07:05:00Z)"
)


#: A date written day and month in an unknown order (``12/03/2026``, ``1.2.2026``).
_NUMERIC_DATE = re.compile(r"\s*(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}\b")
_AMBIGUOUS_HINT = (
    "could be day/month or month/day; write the date as ISO-8601 (e.g. 2026-03-02 07:05)"
)


def _ambiguous_date(value: object) -> bool:
    """True for text that starts with a date both of whose first numbers could be the month."""
    if not isinstance(value, str):
        return False
    m = _NUMERIC_DATE.match(value)
    return m is not None and m[1] != m[2] and int(m[1]) <= 12 and int(m[2]) <= 12


#: Values this long or longer are not searched for words (every word pandas reads as a
#: time is shorter; the search is for speed only).
_CLOCK_WORD_CHARS = 16


def _clock_words(text: pd.Series, parsed: pd.Series) -> np.ndarray:
    """Where a value that parsed as a time holds no digit: pandas reads ``"now"`` and
    ``"today"`` as the clock's time (a trade or bar would be stamped with the time its
    file or request was read). Every timestamp has digits."""
    ok = parsed.notna().to_numpy()
    if not ok.any():
        return np.zeros(len(text), dtype=bool)
    short = (text.str.len() < _CLOCK_WORD_CHARS).to_numpy(dtype=bool, na_value=False) & ok
    words = np.zeros(len(text), dtype=bool)
    if short.any():
        digits = text[short].str.contains("[0-9]", regex=True, na=True)
        words[short] = ~digits.to_numpy(dtype=bool, na_value=True)
    return words


def _first_duplicate(
    keys: pd.DataFrame, column: str, what: str, checks: _Checks, source_bad: np.ndarray
) -> None:
    """Report the first row whose key repeats an earlier row, naming both rows."""
    dup = keys.duplicated(keep="first").to_numpy() & ~source_bad
    if not dup.any():
        return

    def message(i: int) -> str:
        row = keys.iloc[i]
        same = np.ones(len(keys), dtype=bool)
        for c in keys.columns:
            same &= (keys[c] == row[c]).to_numpy()
        first = int(same.argmax())
        key = ", ".join(f"{c} {_show(row[c])}" for c in keys.columns)
        return f"duplicate {what} ({key}): rows {first + 1} and {i + 1}"

    checks.add(dup, column, message)


def _extras(df: pd.DataFrame, required: tuple[str, ...]) -> list[str]:
    return [c for c in df.columns if c not in required]


def _outside(col: str, arr: np.ndarray, lo: np.ndarray, h: np.ndarray) -> Callable[[int], str]:
    def message(i: int) -> str:
        return f"{col} {arr[i]} is outside [low {lo[i]}, high {h[i]}]"

    return message


def validate_klines(df: pd.DataFrame, source: str = _FRAME) -> pd.DataFrame:
    """Check a k-line table and return a normalised copy.

    Parameters
    ----------
    df
        Columns ``symbol, ts, open, high, low, close, volume`` (extra columns are kept).
    source
        Name used in error messages (normally the file path).

    Returns
    -------
    pandas.DataFrame
        Same rows in the same order; ``ts`` as ``datetime64[ns, UTC]``, ``symbol`` as
        ``str``, prices and volume as ``float64``.

    Raises
    ------
    DataError
        For the first bad row: missing column or value, unparseable timestamp, a price
        that is not > 0, ``high < low``, ``open``/``close`` outside ``[low, high]``,
        negative volume, or a second bar for the same ``(symbol, ts)``.
    """
    _require_columns(df, KLINE_COLUMNS, source)
    df = df.reset_index(drop=True)
    checks = _Checks(source)
    out = pd.DataFrame(index=df.index)
    out["symbol"] = _text_column(df, "symbol", checks)
    out["ts"] = _ts_column(df, "ts", checks)
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = _float_column(df, col, checks)
    o, h, lo, c, v = (out[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    for col, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
        checks.positive(arr, col)
    checks.add(h < lo, "high", lambda i: f"high {h[i]} is below low {lo[i]}")
    for col, arr in (("open", o), ("close", c)):
        checks.add((arr < lo) | (arr > h), col, _outside(col, arr, lo, h))
    checks.add(v < 0, "volume", lambda i: f"volume must be >= 0, got {v[i]}")
    bad_key = out["symbol"].eq("").to_numpy() | out["ts"].isna().to_numpy()
    _first_duplicate(out[["symbol", "ts"]], "ts", "bar", checks, bad_key)
    checks.raise_first()
    for col in _extras(df, KLINE_COLUMNS):
        out[col] = df[col]
    return out


def validate_trades(
    df: pd.DataFrame,
    source: str = _FRAME,
    klines: pd.DataFrame | None = None,
    bar: pd.Timedelta = BAR,
) -> pd.DataFrame:
    """Check a trade table and return a normalised copy.

    Parameters
    ----------
    df
        Columns ``trade_id, account_id, symbol, ts, side, price, quantity`` (extra
        columns are kept).
    source
        Name used in error messages (normally the file path).
    klines
        If given (validated k-lines, or a raw table that is validated first), every
        trade must fall inside a bar of its symbol: ``bar.ts <= trade.ts < bar.ts + bar``.
    bar
        Bar length for that check.

    Returns
    -------
    pandas.DataFrame
        Same rows in the same order; ids as ``str``, ``side`` lower-cased, ``ts`` as
        ``datetime64[ns, UTC]``, ``price``/``quantity`` as ``float64``.

    Raises
    ------
    DataError
        For the first bad row: missing column or value, unparseable timestamp, side
        other than buy/sell, price or quantity not > 0, a repeated ``trade_id`` (both
        rows named), or a trade no bar of its symbol contains.
    """
    _require_columns(df, TRADE_COLUMNS, source)
    df = df.reset_index(drop=True)
    checks = _Checks(source)
    out = pd.DataFrame(index=df.index)
    for col in ("trade_id", "account_id", "symbol"):
        out[col] = _text_column(df, col, checks)
    out["ts"] = _ts_column(df, "ts", checks)
    side_raw = df["side"]
    side = side_raw.astype(str).str.strip().str.lower().where(side_raw.notna(), "")
    out["side"] = side
    checks.add(side_raw.isna().to_numpy(), "side", lambda i: "missing side")
    checks.add(
        ~side.isin(["buy", "sell"]).to_numpy() & side_raw.notna().to_numpy(),
        "side",
        lambda i: f"unknown side {_show(side_raw.iloc[i])} (expected 'buy' or 'sell')",
    )
    for col in ("price", "quantity"):
        out[col] = _float_column(df, col, checks)
        arr = out[col].to_numpy()
        checks.positive(arr, col)
    price, qty = out["price"].to_numpy(), out["quantity"].to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        value = price * qty
    # Sums over an account's fills and legs must stay finite: each factor and the
    # product at most MAX_TRADE_MAGNITUDE (far beyond any real book, far below overflow).
    checks.add(
        np.isfinite(price)
        & np.isfinite(qty)
        & ~(
            (value <= MAX_TRADE_MAGNITUDE)
            & (price <= MAX_TRADE_MAGNITUDE)
            & (qty <= MAX_TRADE_MAGNITUDE)
        ),
        "quantity",
        lambda i: (
            f"price {price[i]:g} x quantity {qty[i]:g} is too large to add up (price, "
            f"quantity and their product may be at most {MAX_TRADE_MAGNITUDE:g})"
        ),
    )
    _first_duplicate(
        out[["trade_id"]], "trade_id", "trade_id", checks, out["trade_id"].eq("").to_numpy()
    )
    if klines is not None:
        _check_in_bars(out, klines, bar, checks)
    checks.raise_first()
    for col in _extras(df, TRADE_COLUMNS):
        out[col] = df[col]
    return out


def _check_in_bars(
    out: pd.DataFrame, klines: pd.DataFrame, bar: pd.Timedelta, checks: _Checks
) -> None:
    where = f" in {klines.attrs['source']}" if klines.attrs.get("source") else ""
    if not isinstance(klines["ts"].dtype, pd.DatetimeTZDtype):
        klines = validate_klines(klines, "<klines>")
    k = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    valid = out["ts"].notna().to_numpy() & out["symbol"].ne("").to_numpy()
    probe = out[["symbol", "ts"]].copy()
    probe.loc[~valid, "ts"] = pd.Timestamp(0, tz="UTC")
    pos = _bar_positions(probe, k, bar)
    known = out["symbol"].isin(pd.unique(k["symbol"])).to_numpy()
    minutes = bar / pd.Timedelta(minutes=1)
    checks.add(
        valid & ~known,
        "symbol",
        lambda i: f"symbol {_show(out['symbol'].iat[i])} has no k-lines{where}",
    )
    checks.add(
        valid & known & (pos < 0),
        "ts",
        lambda i: (
            f"no {minutes:g}-minute bar of symbol {_show(out['symbol'].iat[i])}{where} "
            f"contains {out['ts'].iat[i].isoformat()}"
        ),
    )


def validate_labels(df: pd.DataFrame, source: str = _FRAME) -> pd.DataFrame:
    """Check a label table and return a normalised copy.

    Parameters
    ----------
    df
        Columns ``account_id, label`` plus optional extras (e.g. ``kind``), kept as is.
    source
        Name used in error messages (normally the file path).

    Returns
    -------
    pandas.DataFrame
        ``account_id`` as ``str``, ``label`` as ``int64`` (0 or 1).

    Raises
    ------
    DataError
        For the first bad row: missing column or value, a label other than 0/1, or an
        account listed twice (both rows named).
    """
    _require_columns(df, LABEL_COLUMNS, source)
    df = df.reset_index(drop=True)
    checks = _Checks(source)
    out = pd.DataFrame(index=df.index)
    out["account_id"] = _text_column(df, "account_id", checks)
    lab = _float_column(df, "label", checks, booleans=True).to_numpy()
    raw = df["label"]
    checks.add(
        np.isfinite(lab) & (lab != 0) & (lab != 1),
        "label",
        lambda i: f"label must be 0 or 1, got {_show(raw.iloc[i])}",
    )
    _first_duplicate(
        out[["account_id"]], "account_id", "account_id", checks, out["account_id"].eq("").to_numpy()
    )
    if "kind" in df.columns and df["kind"].dtype == object:
        # Read by the evaluation's by-kind table: a Parquet list or struct cell there had
        # ended its grouping in a traceback.
        kind = df["kind"]
        wrong = np.fromiter(
            (v is not None and v is not pd.NA and not isinstance(v, _SCALARS) for v in kind),
            dtype=bool,
            count=len(kind),
        )
        checks.add(
            wrong,
            "kind",
            lambda i: f"kind must be text, not {type(kind.iloc[i]).__name__} {_show(kind.iloc[i])}",
        )
    if "kind" in df.columns:
        # The by-kind table prints it to the analyst's terminal: an escape sequence there
        # (ESC ] 0 ; ... sets the window title, ESC [ 31 m colours what follows) reached
        # it raw. (Text, categories or objects alike: one value per account.)
        kind = df["kind"].astype(object)
        control = np.fromiter(
            (isinstance(v, str) and _KIND_CONTROL.search(v) is not None for v in kind),
            dtype=bool,
            count=len(kind),
        )

        def says(i: int) -> str:
            text = kind.iloc[i]
            hit = _KIND_CONTROL.search(text)
            assert hit is not None
            return (
                f"kind {_show(text)} contains a control character "
                f"(U+{ord(hit.group()):04X} at position {hit.start() + 1})"
            )

        checks.add(control, "kind", says)
    checks.raise_first()
    out["label"] = lab.astype(np.int64)
    for col in _extras(df, LABEL_COLUMNS):
        out[col] = df[col]
    return out


# --------------------------------------------------------------------------- files


def _not_a_folder(path: Path) -> str:
    # What is wrong with a path given where a folder belongs (a file had been "folder not
    # found").
    return "is a file, not a folder" if path.exists() else missing(path, "folder not found")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in _SUFFIXES:
        if name.endswith(suf):
            return suf
    raise DataError(f"unsupported file type; expected {TABLE_FORMATS}", file=str(path))


def _read_table(
    path: str | Path, text_columns: tuple[str, ...], *, header_only: bool = False
) -> pd.DataFrame:
    """Read a CSV or Parquet file; ``text_columns`` are read as strings from CSV.

    A file with a header row and no data rows is refused unless ``header_only``, so the
    error names that file rather than a later check on another one.
    """
    p = Path(path)
    # A folder or a missing path is named as such, whatever its name ends with (a folder
    # had been "unsupported file type").
    if p.is_dir():
        raise DataError("is a folder, not a file", file=str(p))
    if not p.exists():
        raise DataError(missing(p, "file not found"), file=str(p))
    suf = _suffix(p)
    if not p.is_file():  # a pipe or a device: not read (it may never end)
        raise DataError("not a regular file", file=str(p))
    check_header(p)  # a CSV's header and compression, a Parquet file's footer
    try:
        if suf in (".parquet", ".pq"):
            df = read_parquet(p)
        else:
            # Ids such as "000123" or a symbol "NA" must survive as written.
            df = read_csv(
                p,
                dtype=dict.fromkeys(text_columns, str),
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8-sig",
                skipinitialspace=True,
            )
    except READ_ERRORS as exc:
        # ValueError covers an empty file, bytes that are not UTF-8 and a bad Parquet file;
        # the others a corrupt or truncated .csv.gz.
        raise read_error(p, exc) from None
    if len(df) == 0 and not header_only:
        raise DataError(NO_DATA_ROWS, file=str(p))
    df.columns = [str(c).strip() for c in df.columns]
    return df


def load_klines(path: str | Path) -> pd.DataFrame:
    """Read and validate a k-line file (see :func:`validate_klines`).

    Parameters
    ----------
    path
        ``.csv`` (or a compressed CSV: ``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.csv.zip``),
        ``.parquet`` or ``.pq`` file.

    Returns
    -------
    pandas.DataFrame
        The normalised k-lines, in file order.
    """
    k = validate_klines(_read_table(path, ("symbol", "ts")), str(path))
    # named by a trade that no bar holds: the fault may be in either file
    k.attrs["source"] = str(path)
    return k


def load_trades(path: str | Path, klines: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read and validate a trade file (see :func:`validate_trades`).

    Parameters
    ----------
    path
        ``.csv`` (or a compressed CSV: ``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.csv.zip``),
        ``.parquet`` or ``.pq`` file.
    klines
        If given, every trade must lie inside a bar of its symbol.

    Returns
    -------
    pandas.DataFrame
        The normalised trades, in file order.
    """
    df = _read_table(path, ("trade_id", "account_id", "symbol", "ts", "side"))
    return validate_trades(df, str(path), klines=klines)


def load_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate a label file (see :func:`validate_labels`).

    Parameters
    ----------
    path
        ``.csv`` (or a compressed CSV: ``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.csv.zip``),
        ``.parquet`` or ``.pq`` file.

    Returns
    -------
    pandas.DataFrame
        The normalised labels, in file order.
    """
    return validate_labels(_read_table(path, ("account_id", "kind")), str(path))


def _find(data_dir: Path, stem: str, required: bool) -> Path | None:
    hits = [data_dir / f"{stem}{suf}" for suf in _SUFFIXES if (data_dir / f"{stem}{suf}").is_file()]
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise DataError(f"more than one {stem} file ({names}); keep one", file=str(data_dir))
    if not hits:
        if required:
            raise DataError(
                f"no {stem} file (expected {stem}.csv, {stem}.parquet or {stem}.pq, or a "
                f"compressed {stem}.csv.gz, .csv.bz2, .csv.xz or .csv.zip)",
                file=str(data_dir),
            )
        return None
    return hits[0]


def _assemble(
    klines: pd.DataFrame,
    trades: pd.DataFrame,
    labels: pd.DataFrame | None,
    labels_source: str,
    require_labels: bool,
) -> MarketData:
    if labels is not None and require_labels:
        missing = np.setdiff1d(trades["account_id"].unique(), labels["account_id"].to_numpy())
        if len(missing):
            n = len(missing)
            raise DataError(
                f"{n:,} account{'s' if n != 1 else ''} with trades "
                f"{'have' if n != 1 else 'has'} no label, e.g. {sorted(missing)[:3]}",
                file=labels_source,
                column="account_id",
            )
    klines = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    trades = trades.sort_values(["ts", "account_id", "trade_id"], kind="stable").reset_index(
        drop=True
    )
    if labels is not None:
        labels = labels.sort_values("account_id", kind="stable").reset_index(drop=True)
    return MarketData(klines, trades, labels)


def load_market(data_dir: str | Path, *, require_labels: bool = False) -> MarketData:
    """Load ``klines``, ``trades`` and optional ``labels`` files from one folder.

    Each is looked up as ``<name>.csv``, ``.csv.gz``, ``.parquet`` or ``.pq``; all are
    validated, trades against the k-lines.

    Parameters
    ----------
    data_dir
        The folder.
    require_labels
        Fail if there is no labels file or an account with trades has no label.

    Returns
    -------
    MarketData
        K-lines sorted by ``(symbol, ts)``, trades by ``(ts, account_id, trade_id)``,
        labels by ``account_id``.

    Raises
    ------
    DataError
        A file is missing, ambiguous (two formats) or invalid.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(_not_a_folder(d), file=str(d))
    k_path = _find(d, "klines", True)
    t_path = _find(d, "trades", True)
    l_path = _find(d, "labels", require_labels)
    assert k_path is not None and t_path is not None
    return load_market_files(k_path, t_path, l_path, require_labels=require_labels)


def load_market_files(
    klines: str | Path,
    trades: str | Path,
    labels: str | Path | None = None,
    *,
    require_labels: bool = False,
) -> MarketData:
    """Load and validate explicitly named k-line, trade and (optional) label files.

    Parameters
    ----------
    klines, trades, labels
        File paths (CSV or Parquet).
    require_labels
        Fail if an account with trades has no label.

    Returns
    -------
    MarketData
        Sorted as in :func:`load_market`.
    """
    k = load_klines(klines)
    t = load_trades(trades, klines=k)
    lab = load_labels(labels) if labels is not None else None
    if require_labels and lab is None:
        raise DataError("labels are required but no labels file was given")
    return _assemble(k, t, lab, str(labels), require_labels)


def _iso(ts: pd.Series) -> np.ndarray:
    """ISO-8601 UTC strings ending in ``Z``, as short as the data's precision allows."""
    ns = ts.to_numpy("datetime64[ns]")
    ints = ns.astype(np.int64)
    units: tuple[tuple[Literal["s", "ms", "us"], int], ...] = (
        ("s", 10**9),
        ("ms", 10**6),
        ("us", 10**3),
    )
    unit: Literal["s", "ms", "us", "ns"] = "ns"
    for u, step in units:
        if len(ints) == 0 or not np.any(ints % step):
            unit = u
            break
    out: np.ndarray = np.datetime_as_string(
        ns.astype(f"datetime64[{unit}]"), unit=unit, timezone="UTC"
    )
    return out


def write_market(data: MarketData, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write k-lines, trades and (if present) labels to a folder.

    Parameters
    ----------
    data
        What to write.
    out_dir
        Target folder (created if needed).
    fmt
        ``"csv"``, ``"csv.gz"`` or ``"parquet"``. CSV timestamps are ISO-8601 in UTC
        (``2026-03-02T14:30:00Z``).

    Returns
    -------
    dict[str, pathlib.Path]
        ``{"klines": ..., "trades": ..., "labels": ...}`` (labels only if present).
    """
    if fmt not in ("csv", "csv.gz", "parquet"):
        raise ValueError(f"fmt must be 'csv', 'csv.gz' or 'parquet', not {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = {"klines": data.klines, "trades": data.trades}
    if data.labels is not None:
        frames["labels"] = data.labels
    paths: dict[str, Path] = {}
    for name, df in frames.items():
        path = out / f"{name}.{fmt}"
        # Each file whole or not at all (a crash or a full disk keeps the old one).
        if fmt == "parquet":
            write_binary(path, lambda f, df=df: df.to_parquet(f, index=False))
        else:
            df = df.copy()
            if "ts" in df.columns:
                df["ts"] = _iso(df["ts"])
            if fmt == "csv":
                write_csv(df, path)
            else:
                # (the name in the gzip header is the file's, not its temporary name)
                gz = {"method": "gzip", "filename": path.name}
                write_binary(
                    path, lambda f, df=df, gz=gz: df.to_csv(f, index=False, compression=gz)
                )
        paths[name] = path
    return paths


# --------------------------------------------------------------------------- reference


def _reraise(exc: DataError, file: str, row: int | None, rename: Mapping[str, str]) -> DataError:
    column = rename.get(exc.column, exc.column) if exc.column is not None else None
    return DataError(exc.reason, file=file, row=row, column=column)


def _reference_klines(path: Path, symbol: str) -> pd.DataFrame:
    raw = _read_table(path, ("time",))
    raw.columns = [c.lower() for c in raw.columns]
    _require_columns(raw, ("time", "high", "low"), str(path))
    raw = raw.reset_index(drop=True)
    checks = _Checks(str(path))
    ts = _ts_column(raw, "time", checks, lenient=True)
    high = _float_column(raw, "high", checks)
    low = _float_column(raw, "low", checks)
    checks.raise_first()
    mid = (high + low) / 2.0
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "ts": ts,
            "open": mid,
            "high": high,
            "low": low,
            "close": mid,
            "volume": 0.0,
        }
    )
    try:
        return validate_klines(frame, str(path))
    except DataError as exc:
        raise _reraise(exc, str(path), exc.row, {"ts": "time"}) from None


def _undecodable(text: str) -> str | None:
    """The first byte of ``text`` that was not UTF-8, as ``0xFF``, or None. A name from the
    file system or the command line keeps such a byte as a lone surrogate (U+DC80-U+DCFF),
    which no table or file can hold."""
    bad = next((ch for ch in text if "\udc80" <= ch <= "\udcff"), None)
    return None if bad is None else f"0x{ord(bad) - 0xDC00:02X}"


def _reference_side(folder: Path, side: str, symbol: str) -> tuple[pd.DataFrame, list[Path]]:
    if not folder.is_dir():
        raise DataError(_not_a_folder(folder), file=str(folder))
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(".csv"))
    frames = []
    seen: dict[str, Path] = {}
    for f in files:
        # The account id is the file name: one that is not UTF-8 cannot become an id.
        byte = _undecodable(f.name)
        if byte is not None:
            raise DataError(
                f"the file name is not UTF-8 text (byte {byte}), and the account id is "
                "the file name: rename the file",
                file=str(f),
                column="account_id",
            )
        # An account may have no trades on one side: a header-only file is allowed.
        raw = _read_table(f, ("time",), header_only=True)
        raw.columns = [c.lower() for c in raw.columns]
        _require_columns(raw, ("time", "price"), str(f))
        raw = raw.reset_index(drop=True)
        checks = _Checks(str(f))
        ts = _ts_column(raw, "time", checks, lenient=True)
        price = _float_column(raw, "price", checks)
        checks.positive(price.to_numpy(), "price")
        checks.raise_first()
        stem = f.name[: -len(".csv")]
        # The reference names files buy_<id>.csv / sell_<id>.csv; both mean account <id>.
        prefix = f"{side}_"
        account = stem[len(prefix) :] if stem.lower().startswith(prefix) else stem
        # The ids are made from the file name: one too long (or not an id) was refused as
        # "column 'trade_id'", a column no reference file has.
        room = MAX_ID_LENGTH - len(f":{side}:{len(raw)}")
        problem = id_problem(account, max_length=room)
        if problem is not None and account:
            if len(account) > room:
                problem = (
                    f"has {len(account)} characters; at most {room} leave room for the trade "
                    f"ids <account>:{side}:<row> (at most {MAX_ID_LENGTH} characters)"
                )
            raise DataError(
                f"the account id is the file name {cut(repr(account), 80)}, which {problem}: "
                "rename the file",
                file=str(f),
                column="account_id",
            )
        if account in seen:
            # (buy_7.csv and 7.csv: their trade ids collided, reported as "duplicate
            # trade_id '7:buy:1': rows 1 and 9", rows of no file)
            raise DataError(
                f"{seen[account].name} and {f.name} are both account {cut(repr(account), 80)}: "
                "keep one file per account",
                file=str(f),
                column="account_id",
            )
        seen[account] = f
        rows = np.arange(1, len(raw) + 1)
        frames.append(
            pd.DataFrame(
                {
                    "trade_id": [f"{account}:{side}:{r}" for r in rows],
                    "account_id": account,
                    "symbol": symbol,
                    "ts": ts,
                    "side": side,
                    "price": price,
                    "quantity": 1.0,
                    "_file": str(f),
                    "_row": rows,
                }
            )
        )
    cols = [*TRADE_COLUMNS, "_file", "_row"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return out, files


def import_reference(
    klines_csv: str | Path,
    buy_dir: str | Path,
    sell_dir: str | Path,
    *,
    symbol: str = "COIN",
    labels: str | Path | pd.DataFrame | Mapping[str, int] | None = None,
) -> MarketData:
    """Import the reference system's files: one k-line CSV and per-account trade CSVs.

    The k-line CSV has columns ``time, high, low``. Open and close are unknown there,
    so both are set to ``(high + low) / 2``, and volume to 0. Trades come as one CSV per
    account (columns ``time, price``) in ``buy_dir`` and ``sell_dir``; the account id is
    the file name without ``.csv`` and without a leading ``buy_`` / ``sell_`` (the
    reference's own naming), so ``buy/buy_COIN_7.csv`` and ``sell/sell_COIN_7.csv`` are
    account ``COIN_7``. Every trade gets quantity 1 and the id
    ``<account>:<side>:<row>``. Times may be ISO-8601 or another unambiguous date
    format (a numeric date such as ``04/01/2022``, whose day and month could swap, is
    refused); a time with no zone is UTC.

    Parameters
    ----------
    klines_csv
        The k-line CSV.
    buy_dir, sell_dir
        Folders of per-account CSVs (files with only a header are allowed).
    symbol
        Symbol given to the k-lines and every trade.
    labels
        Optional labels: a labels file, a table with ``account_id, label``, or a
        mapping ``{account_id: label}``.

    Returns
    -------
    MarketData

    Raises
    ------
    DataError
        Naming the file, row and column of the first bad value, e.g. a trade time that
        no bar contains.
    """
    kpath = Path(klines_csv)
    byte = _undecodable(symbol)
    if byte is not None:
        raise DataError(f"the symbol is not UTF-8 text (byte {byte})", column="symbol")
    # (an empty or long symbol had been blamed on row 1 of the k-line file)
    problem = id_problem(symbol, max_length=MAX_SYMBOL_LENGTH)
    if problem is not None:
        raise DataError(f"the symbol {cut(repr(symbol), 40)} {problem}", column="symbol")
    klines = _reference_klines(kpath, symbol)
    buys, buy_files = _reference_side(Path(buy_dir), "buy", symbol)
    sells, sell_files = _reference_side(Path(sell_dir), "sell", symbol)
    if not buy_files and not sell_files:
        raise DataError(f"no account CSV files in {buy_dir} or {sell_dir}", file=str(buy_dir))
    both = pd.concat([buys, sells], ignore_index=True)
    try:
        trades = validate_trades(both[list(TRADE_COLUMNS)], "<reference trades>", klines=klines)
    except DataError as exc:
        if exc.row is None or exc.row < 1:
            raise
        src = both.iloc[exc.row - 1]
        raise _reraise(exc, str(src["_file"]), int(src["_row"]), {"ts": "time"}) from None
    lab: pd.DataFrame | None = None
    lab_source = _FRAME
    if isinstance(labels, (str, Path)):
        lab = load_labels(labels)
        lab_source = str(labels)
    elif isinstance(labels, pd.DataFrame):
        lab = validate_labels(labels)
    elif labels is not None:
        lab = validate_labels(
            pd.DataFrame({"account_id": list(labels.keys()), "label": list(labels.values())})
        )
    return _assemble(klines, trades, lab, lab_source, False)
