"""Turning request bodies into the parsed input of :mod:`fraudlens.scoring`.

Card rows arrive as headerless CSV text or as lists of numbers; market requests as
records of bars and trades. Parsing and validation errors are
:class:`~fraudlens.errors.DataError` naming the row and column, which the service answers
with 422.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Request

from fraudlens._ids import id_problem
from fraudlens.errors import DataError
from fraudlens.service._schemas import MAX_CARD_TEXT

if TYPE_CHECKING:
    import pandas as pd

    from fraudlens._detector import Detector
    from fraudlens.market.data import MarketData
    from fraudlens.service._schemas import MarketScoreRequest

__all__ = [
    "MAX_EXPLAIN_ROWS",
    "MAX_MARKET_ACCOUNTS",
    "align_metadata",
    "card_matrix",
    "check_metadata",
    "decode_text",
    "market_data",
    "market_model_key",
    "media_type",
]

# Longest CSV body the numpy fast path takes; longer ones go to the validating parser.
_FAST_CSV_CHARS = 1 << 16
#: Largest magnitude of a card value: the models compute in 32-bit floats, where a larger
#: number is infinite.
MAX_CARD_VALUE = float(np.finfo(np.float32).max)
#: Most distinct keys the metadata objects of one card request may name (sink columns).
MAX_METADATA_KEYS = 256
#: Longest metadata key (a sink column name).
MAX_METADATA_KEY_CHARS = 128
#: Most accounts one market request may hold. The CNN draws an image of every account
#: (about 65 KB each while scoring); a 5 MB body can name 30,000 accounts.
MAX_MARKET_ACCOUNTS = 2000
#: Most card rows one request may ask reasons for (``explain``). Each row's reasons are up
#: to 20 objects in the reply: 73,000 rows (a 5 MB body) took 18 s, 1.1 GB and replied
#: 88 MB; 1,000 rows take 0.2 s and reply 1.2 MB.
MAX_EXPLAIN_ROWS = 1000


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters (``""`` if none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def decode_text(body: bytes) -> str:
    """The body as UTF-8 text (DataError naming the first bad byte otherwise)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"the body is not UTF-8 text (byte {exc.start})") from None


def card_matrix(
    det: Detector, text: str | None, rows: list[Any] | None = None
) -> np.ndarray | pd.DataFrame:
    """Card rows as a float matrix in the detector's feature order (a feature table, text
    columns as text, for a model that reads text columns).

    ``text``: headerless CSV, one row a line (a leading byte-order mark is dropped);
    else ``rows``: lists of numbers, or objects ``{feature: value}``. Widths and values are
    checked here (row and column named), so the detector sees clean input.
    """
    from fraudlens.cards.data import describe_columns

    names = list(getattr(det, "feature_names_", []))
    # A model that reads text columns, or blanks, takes its rows as a table (it encodes
    # the text and fills the blanks).
    text_columns = any(getattr(det, a, None) for a in ("categories_", "dates_", "fill_"))
    if text is not None:
        # A byte-order mark before the first row (spreadsheets save "CSV UTF-8" with one)
        # is not part of its first value.
        text = text.removeprefix("\ufeff")
        _check_csv_lines(text, len(names))
        if text_columns:
            return _text_rows(names, text, None)
        X = _fast_csv(text, len(names))
        if X is None:
            from fraudlens.cards.data import read_csv_rows

            # The slow path names the row and column of whatever the fast one choked on.
            X = read_csv_rows(text, len(names), names)
        return _in_card_range(X)
    if not rows:
        raise DataError("no rows in data", column="data")
    if isinstance(rows[0], dict):
        from fraudlens.cards.data import with_clock

        clock = getattr(det, "clock_", None)
        table = []
        for i, rec in enumerate(rows):
            if clock is not None and isinstance(rec, dict):
                # The raw time, for the hour of the day the model reads.
                rec, problem = with_clock(rec, clock)
                if problem is not None:
                    raise DataError(problem, row=i + 1, column=str(clock["column"]))
            missing = [n for n in names if n not in rec] if isinstance(rec, dict) else names
            if missing:
                raise DataError(
                    f"missing feature {missing[0]!r} ({len(missing)} of the model's "
                    f"{len(names)}: {describe_columns(names)})",
                    row=i + 1,
                    column=missing[0],
                )
            table.append([rec[n] for n in names])
        rows = table
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            got = len(row) if isinstance(row, list) else "an object"
            raise DataError(
                f"expected {len(names)} values ({describe_columns(names)}), got {got}",
                row=i + 1,
            )
    if text_columns:
        return _text_rows(names, None, rows)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if v is None or isinstance(v, str | bool):
                raise DataError(
                    f"{v!r:.40} is not a number (this model reads numbers only, and had "
                    "no blank in its training rows)",
                    row=i + 1,
                    column=f"{j + 1} ({names[j]})",
                )
    X = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"value {X[r, c]} is not a finite number", row=int(r) + 1, column=str(c + 1)
        )
    return _in_card_range(X)


def _text_rows(names: list[str], text: str | None, rows: list[Any] | None) -> pd.DataFrame:
    """Rows for a model that reads text columns or blanks, as a validated feature table:
    CSV ``text`` (values split at commas, as for every CSV body; an empty value is blank)
    or ``rows`` of values in ``names`` order, already checked for width."""
    import pandas as pd

    from fraudlens.cards.data import NUMBERS_HINT, describe_columns, validate_frame

    if text is not None:
        lines = [(k + 1, line) for k, line in enumerate(text.splitlines()) if line.strip()]
        if not lines:
            raise DataError("no rows in the CSV body")
        rows = []
        for line_no, line in lines:
            values = [v.strip() or None for v in line.split(",")]
            if len(values) != len(names):
                raise DataError(
                    f"expected {len(names)} comma-separated values "
                    f"({describe_columns(names)}), got {len(values)}",
                    row=line_no,
                )
            for name, v in zip(names, values, strict=True):
                # The bound of a JSON row's text, for the same value sent as CSV.
                if v is not None and len(v) > MAX_CARD_TEXT:
                    raise DataError(
                        f"text of {len(v):,} characters (at most {MAX_CARD_TEXT:,})",
                        row=line_no,
                        column=name,
                    )
            rows.append(values)
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    try:
        return validate_frame(frame, "features", "<request>").X
    except DataError as exc:
        # A request is no file, and its columns are the model's: a number is a number
        # because the model reads one there, whatever the other rows hold.
        reason = exc.reason.replace(NUMBERS_HINT, " (the model reads numbers in this column)")
        raise DataError(reason, row=exc.row, column=exc.column) from None


#: Blank lines a CSV body may hold beyond its rows.
MAX_BLANK_CSV_LINES = 1000
# What str.splitlines splits on (\r\n counts once).
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _check_csv_lines(text: str, n_features: int) -> None:
    """Refuse a CSV body with more lines than its rows can fill (DataError), before the
    parser makes an object of every line.

    A row of ``n_features`` values takes at least ``2 * n_features`` characters with its
    line break, so a body of ``len(text)`` characters holds at most ``len(text) // (2 *
    n_features)`` rows; more lines than that plus :data:`MAX_BLANK_CSV_LINES` are blank or
    too short. 2.5 million one-character lines (5 MB) had taken 5 s and 540 MB to be told
    that their first row was too short.
    """
    breaks = sum(text.count(ch) for ch in _LINE_BREAKS) - text.count("\r\n")
    most = len(text) // (2 * max(n_features, 1)) + MAX_BLANK_CSV_LINES
    if breaks > most:
        raise DataError(
            f"{breaks:,} lines in a body of {len(text):,} characters: rows of {n_features} "
            f"values fill at most {most - MAX_BLANK_CSV_LINES:,} lines (and "
            f"{MAX_BLANK_CSV_LINES:,} blank ones); most lines are blank or too short"
        )


def _in_card_range(X: np.ndarray) -> np.ndarray:
    """``X``, unless a value is too large for the models' 32-bit floats (DataError)."""
    big = np.abs(X) > MAX_CARD_VALUE
    if big.any():
        r, c = np.argwhere(big)[0]
        raise DataError(
            f"value {X[r, c]:g} is too large (at most {MAX_CARD_VALUE:.3g} in size)",
            row=int(r) + 1,
            column=str(c + 1),
        )
    return X


def name_card_column(exc: DataError, det: Detector) -> DataError:
    """``exc`` with its column given as a position too: CSV senders think in positions."""
    names = list(getattr(det, "feature_names_", []))
    if exc.column is not None and exc.column in names:
        return DataError(
            exc.reason, row=exc.row, column=f"{names.index(exc.column) + 1} ({exc.column})"
        )
    return exc


def _fast_csv(text: str, n_features: int) -> np.ndarray | None:
    """Parse clean numeric CSV rows with numpy alone (a single row in microseconds).

    Returns None on anything unusual (wrong width, a token that is not a plain finite
    number), so the caller falls back to the validating parser. That includes text that
    is not ASCII: Python's float reads ``"1_000"``, and digits of other scripts (``"１"``,
    ``"١"``) too, which the validating parser refuses.
    """
    if "_" in text or not text.isascii() or len(text) > _FAST_CSV_CHARS:
        return None
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    if not rows or any(len(r) != n_features for r in rows):
        return None
    try:
        X = np.array(rows, dtype=np.float64)
    except ValueError:
        return None
    return X if np.isfinite(X).all() else None


def market_model_key(model: str | None) -> str:
    """Registry key of the market model a request names (the domain default if None)."""
    if not model or model == "market":
        return "market"
    return model if model.startswith("market-") else f"market-{model}"


def market_data(req: MarketScoreRequest, window_hours: float) -> MarketData:
    """Validated bars and trades of a request, cut to the scoring window."""
    from fraudlens.market.data import (
        KLINE_COLUMNS,
        TRADE_COLUMNS,
        MarketData,
        validate_klines,
        validate_trades,
        window,
    )

    if not req.trades:
        raise DataError("no trades", column="trades")
    if not req.klines:
        raise DataError("no klines", column="klines")
    try:
        klines = validate_klines(_records_frame(req.klines, KLINE_COLUMNS, "klines"), "klines")
    except OverflowError:
        raise _too_large_number(req.klines, KLINE_COLUMNS, "klines") from None
    trades = _records_frame(req.trades, TRADE_COLUMNS, "trades")
    _check_accounts(trades)
    try:
        trades = validate_trades(trades, "trades", klines=klines)
    except OverflowError:
        raise _too_large_number(req.trades, TRADE_COLUMNS, "trades") from None
    return window(MarketData(klines, trades), hours=window_hours)


def _too_large_number(
    records: list[dict[str, Any]], columns: tuple[str, ...], what: str
) -> DataError:
    """The DataError naming the first integer of ``records`` beyond the float range.

    JSON integers have no size limit (``1`` and 400 zeros is one); pandas cannot turn such
    a number into a float and raises OverflowError, which was a 500.
    """
    for i, rec in enumerate(records):
        for c in columns:
            value = rec.get(c)
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    float(value)
                except OverflowError:
                    return DataError(
                        f"a number of {len(str(value)):,} digits is too large",
                        file=what,
                        row=i + 1,
                        column=c,
                    )
    return DataError("a number is too large", file=what)


def _records_frame(records: list[dict[str, Any]], columns: tuple[str, ...], what: str) -> Any:
    """The contract's columns of JSON records as a DataFrame.

    Only the contract's keys are read: records that each bring their own other keys would
    otherwise make a column of every key for every row (a few megabytes of JSON, gigabytes
    of table). A string the tables cannot hold (a lone surrogate, ``"\\ud800"`` in JSON)
    is refused naming its row and column. A number column holding null or NaN keeps its
    values as sent (``object``), so that the loader can tell the two apart.
    """
    import pandas as pd

    present = [c for c in columns if any(c in rec for rec in records)]
    try:
        frame = pd.DataFrame.from_records(records, columns=present)
    except UnicodeEncodeError:
        for i, rec in enumerate(records):
            for c in present:
                value = rec.get(c)
                if isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value):
                    raise DataError(
                        "contains a lone surrogate, which is not text",
                        file=what,
                        row=i + 1,
                        column=c,
                    ) from None
        raise
    for c in present:
        if pd.api.types.is_float_dtype(frame[c].dtype) and frame[c].isna().any():
            # null and NaN (Python's json reads it) are both NaN here: keep the values as
            # sent, so the loader tells a missing value from one that is not finite.
            frame[c] = pd.Series([rec.get(c) for rec in records], index=frame.index, dtype=object)
    return frame


def _check_accounts(trades: Any) -> None:
    """At most :data:`MAX_MARKET_ACCOUNTS` accounts in one request."""
    if "account_id" not in trades.columns:
        return  # validate_trades names the missing column
    ids = trades["account_id"]
    # Counted on the raw values, as the validation below reads them (text, stripped).
    n = ids.dropna().astype(str).str.strip().nunique()
    if n > MAX_MARKET_ACCOUNTS:
        raise DataError(
            f"{n:,} accounts in one request; at most {MAX_MARKET_ACCOUNTS:,}: send them in "
            "several requests",
            file="trades",
            column="account_id",
        )


def check_metadata(metadata: list[Any] | None) -> None:
    """Refuse metadata objects the sink cannot write as columns: more than
    :data:`MAX_METADATA_KEYS` keys between them, a key longer than
    :data:`MAX_METADATA_KEY_CHARS` characters, or an empty one or one with a character
    the id rule forbids (DataError, before anything is scored)."""
    # Each key of an object becomes a column of the sink's table for every row: items
    # that each bring their own keys would make a table of rows x keys cells.
    keys: set[str] = set()
    for item in metadata or ():
        if isinstance(item, dict):
            for key in map(str, item):
                if key in keys:
                    continue
                if len(key) > MAX_METADATA_KEY_CHARS:
                    raise DataError(
                        f"a metadata key of {len(key):,} characters; at most "
                        f"{MAX_METADATA_KEY_CHARS}",
                        column="metadata",
                    )
                # A column name that shows as another (invisible characters) or breaks a
                # line: the id rule's characters.
                problem = id_problem(key, max_length=MAX_METADATA_KEY_CHARS)
                if problem is not None:
                    raise DataError(f"a metadata key {problem}", column="metadata")
                keys.add(key)
            if len(keys) > MAX_METADATA_KEYS:
                raise DataError(
                    f"metadata objects name more than {MAX_METADATA_KEYS} keys between them",
                    column="metadata",
                )


def align_metadata(metadata: list[Any] | None, n_rows: int) -> list[Any]:
    """One metadata item per row (a flat list belongs to a single row), checked by
    :func:`check_metadata`."""
    if metadata is None:
        return [None] * n_rows
    check_metadata(metadata)
    if len(metadata) == n_rows:
        return list(metadata)
    if n_rows == 1:
        # One row: the reference sends a flat metadata list.
        return [metadata]
    raise DataError(
        f"metadata has {len(metadata)} items for {n_rows} rows; send one item per row",
        column="metadata",
    )
