"""Frames built from column arrays (the store's reads) equal pandas' constructor, and the
worker's scoring path gives the same events with them as with pandas' own frames.

``fraudlens.market._columns.frame_of`` builds a frame without pandas' per-column
inference; every test compares it, or a store read and a worker batch built on it, with
pandas' path (``_fast_ok`` forced off).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fraudlens.checks import AccountCheck
from fraudlens.market import _columns
from fraudlens.market.data import window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.explain import _iso, _iso_many
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
from fraudlens.store import db as store_db
from fraudlens.store import open_store
from fraudlens.worker import CheckHandler


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_index_type=True)
    assert a.dtypes.tolist() == b.dtypes.tolist()
    assert _columns._blocks(a) == _columns._blocks(b)
    assert a.columns.dtype == b.columns.dtype


@pytest.fixture
def pandas_frames(monkeypatch):
    """Every frame from pandas' own constructor."""
    monkeypatch.setattr(_columns, "_fast_ok", lambda: False)


def test_fast_path_is_on_and_equals_pandas():
    assert _columns._fast_ok()  # pandas 3 with pyarrow strings: the fast path is taken
    ts = pd.DatetimeIndex(
        np.array([0, 1_700_000_000_000_001_000, 1_800_000_000_000_000_000], "datetime64[ns]"),
        tz="UTC",
    )
    names = ("trade_id", "symbol", "ts", "price", "side")
    cols = [
        np.array(["t1", "t2", "t3"], dtype=object),
        np.array(["BTC", "ÉTH", "x" * 64], dtype=object),
        ts,
        np.array([1.0, np.nan, -0.0]),
        np.array(["buy", "sell", ""], dtype=object),
    ]
    fast = _columns.frame_of(names, cols)
    assert type(fast._get_column_array(0)).__name__ == "ArrowStringArray"
    _same_frame(fast, pd.DataFrame(dict(zip(names, cols, strict=True))))
    # what pandas would infer otherwise is left to pandas
    for odd in (
        np.array(["a", None, "c"], dtype=object),
        np.array(["a", np.nan, "c"], dtype=object),
        np.array([b"a", b"b", b"c"], dtype=object),
        np.array([1, 2, 3], dtype=object),
        np.array([1, 2, 3]),
    ):
        got = _columns.frame_of(("a", "b"), [odd, cols[3]])
        _same_frame(got, pd.DataFrame({"a": odd, "b": cols[3]}))
    empty = [c[:0] for c in cols]
    _same_frame(_columns.frame_of(names, empty), pd.DataFrame(dict(zip(names, empty, strict=True))))
    # a frame's column index is its own: renaming one frame's columns leaves the next
    first = _columns.frame_of(names, cols)
    first.columns.name = "renamed"
    assert _columns.frame_of(names, cols).columns.name is None


def test_store_frames_equal_pandas_frames(pandas_frames, monkeypatch):
    rows = [
        ("t2", "acc", "SYM", "2024-01-02 03:04:05.000001", "buy", 1.5, 2.0),
        ("t1", "acc", "SYM", "2024-01-02 03:04:05.000000", "sell", 1.5, 2.0),
    ]
    bars = {("SYM", 19724): (np.array([1, 2], dtype=np.int64), *(np.ones(2),) * 5)}
    kline_rows = [("SYM", "2024-01-02 00:00:00.000000", 1.0, 2.0, 0.5, 1.5, 10.0)]
    slow = (
        store_db._frame(rows, store_db._TRADE_COLUMNS),
        store_db._bars_frame(list(((k[0], v) for k, v in bars.items()))),
        store_db._bar_arrays(kline_rows),
    )
    monkeypatch.undo()
    assert _columns._fast_ok()
    fast = (
        store_db._frame(rows, store_db._TRADE_COLUMNS),
        store_db._bars_frame(list(((k[0], v) for k, v in bars.items()))),
        store_db._bar_arrays(kline_rows),
    )
    _same_frame(fast[0], slow[0])
    _same_frame(fast[1], slow[1])
    assert fast[2].keys() == slow[2].keys()
    for key in fast[2]:
        assert all(np.array_equal(a, b) for a, b in zip(fast[2][key], slow[2][key], strict=True))


def test_iso_of_arrays_equals_isoformat():
    stamps = pd.DatetimeIndex(
        ["2024-01-02T03:04:05", "2024-01-02T03:04:05.250", None, "2024-01-02T03:04:05.000000001"],
        tz="UTC",
    ).as_unit("ns")
    want = [_iso(v) for v in stamps]
    assert _iso_many(stamps.array) == want  # the array's path
    assert _iso_many(pd.Series(stamps)) == want  # the index's path
    assert _iso_many(stamps.array.as_unit("us")[:3]) == want[:3]
    other = stamps.tz_convert("Europe/Paris")
    assert _iso_many(other.array) == [_iso(v) for v in other]


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frames")
    data = simulate(120, seed=11, days=2)
    Registry(tmp / "models").save(
        FeatureDetector(n_estimators=30).fit(window(simulate(150, seed=12, days=2)))
    )
    store = open_store(f"sqlite:///{tmp}/store.db")
    store.upgrade()
    store.load_klines(data.klines)
    store.load_trades(data.trades)
    yield CheckHandler(store, tmp / "models", threshold=0.5)
    store.close()


def _events(handler: CheckHandler, batches: list[list[str]]) -> str:
    out = []
    for ids in batches:
        data = handler.store.account_windows(ids, hours=handler.hours)
        items = [(None, AccountCheck(a, "withdrawal", None)) for a in ids]
        events, _ = handler._score(items, data)  # type: ignore[arg-type]
        for e in events:
            d = dataclasses.asdict(e)
            d.pop("created_at")
            out.append(d)
    return json.dumps(out, default=str, sort_keys=True)


def test_worker_events_equal_with_pandas_frames(handler, monkeypatch):
    ids = handler.store.account_ids()
    batches = [ids[i : i + n] for n, i in ((1, 0), (1, 5), (4, 10), (16, 20), (40, 40))]
    handler.store._bar_cache.clear()
    handler.store._bar_frames.clear()
    fast = _events(handler, batches)
    monkeypatch.setattr(_columns, "_fast_ok", lambda: False)
    handler.store._bar_cache.clear()
    handler.store._bar_frames.clear()
    slow = _events(handler, batches)
    assert fast == slow
    assert fast.count('"account_id"') >= 5  # batches that raise events, with evidence
