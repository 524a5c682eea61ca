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


@pytest.mark.parametrize("n", [47, 48, 128, 129, 512, 513, 2000])
def test_factorize_equals_pandas(n):
    from fraudlens.market._bars import _arrow_factorize, _factorize

    rng = np.random.default_rng(n)
    pool = np.array(["SYM1", "SYM10", "SYM2", "é", "Z", "a", "ß", "日本", ""], dtype=object)
    values = pool[rng.integers(0, len(pool), n)].tolist()
    series = pd.Series(values, dtype="str")
    # two chunks of pyarrow strings, as a concat leaves them
    chunked = pd.concat([series[: n // 2], series[n // 2 :]], ignore_index=True)
    assert chunked.array._pa_array.num_chunks == 2
    for sort in (False, True):
        ref_codes, ref_uniques = pd.factorize(series, sort=sort)
        for column in (series, series.array, chunked, sorted(values)):
            column = pd.Series(column, dtype="str") if isinstance(column, list) else column
            want = pd.factorize(column, sort=sort)
            for codes, uniques in (
                _factorize(column, sort=sort),
                _arrow_factorize(column, sort=sort),
            ):
                assert codes.dtype == np.int64
                assert np.array_equal(codes, want[0])
                assert list(uniques) == list(want[1])
        assert np.array_equal(_factorize(series, sort=sort)[0], ref_codes)
        assert list(_factorize(series, sort=sort)[1]) == list(ref_uniques)
    missing = pd.Series([*values[:-1], None], dtype="str")
    assert _arrow_factorize(missing, sort=True) is None  # pandas' path for missing values
    assert _arrow_factorize(pd.Series(values, dtype=object), sort=True) is None


def test_indexed_frame_equals_pandas(monkeypatch):
    from fraudlens.scoring import EVIDENCE_COLUMNS, market_evidence

    assert _columns._indexed_fast_ok()
    index = pd.Index(np.array(["b", "a", "c"], dtype=object), name="account_id")
    cols = [
        np.array([1.0, np.nan, -0.0]),
        np.array([None, "x", "y"], dtype=object),
        np.array([1, 2, 3], dtype=np.int64),
    ]
    names = ("value_moved", "counterparty", "n_mirrored")
    want = _columns._indexed_pandas_frame(names, cols, index)
    got = _columns.indexed_frame(names, cols, index)
    _same_frame(got, want)
    assert got["counterparty"].dtype == object
    odd = [cols[0], cols[1], np.array([True, False, True])]  # bool: pandas' path
    _same_frame(
        _columns.indexed_frame(names, odd, index), _columns._indexed_pandas_frame(names, odd, index)
    )
    # the evidence of a few accounts, fast and pandas' constructor
    data = window(simulate(30, seed=5, days=2))
    ids = np.asarray(sorted(data.account_ids.astype(str))[:7], dtype=object)
    fast = market_evidence(data, ids)
    monkeypatch.setattr(_columns, "_indexed_fast_ok", lambda: False)
    _same_frame(fast, market_evidence(data, ids))
    assert fast.columns.tolist() == list(EVIDENCE_COLUMNS)


def _no_arrow_codes(monkeypatch) -> None:
    """Every column coded, and every bar order checked, by the paths before pyarrow's
    dictionary encoding and neighbour comparison."""
    from fraudlens.market import _bars
    from fraudlens.market import features as feat

    monkeypatch.setattr(_bars, "_arrow_factorize", lambda *a, **k: None)
    monkeypatch.setattr(feat, "_arrow_sorted", lambda *a, **k: None)


def test_bar_order_and_positions_equal_without_arrow_codes(monkeypatch):
    from fraudlens.market import features as feat
    from fraudlens.market.data import BAR, _bar_positions

    data = window(simulate(25, seed=9, days=2))
    k = feat._sorted_klines(data.klines)
    shuffled = data.klines.sample(frac=1.0, random_state=0).reset_index(drop=True)
    one_day_late = k.assign(ts=k["ts"].where(k.index != 5, k["ts"].iloc[4] - pd.Timedelta("1s")))
    frames = (k, shuffled, one_day_late, k.iloc[:3], k.iloc[:1])

    def run() -> list[tuple[bool, list[int]]]:
        return [(feat._is_sorted(f), _bar_positions(data.trades, f, BAR).tolist()) for f in frames]

    fast = run()
    _no_arrow_codes(monkeypatch)
    assert run() == fast
    assert [s for s, _ in fast] == [True, False, False, True, True]


def test_scores_explanations_evidence_equal_without_arrow_codes(monkeypatch):
    from fraudlens.scoring import score_market

    data = window(simulate(40, seed=7, days=2))
    det = FeatureDetector(n_estimators=20).fit(window(simulate(60, seed=3, days=2)))
    ids = np.asarray(sorted(data.account_ids.astype(str)), dtype=object)
    batches = [ids[:1], ids[3:7], ids]

    def run() -> list[str]:
        out = []
        for batch in batches:
            got = score_market(det, data.subset(batch), explain=True, evidence=True)
            out.append(
                json.dumps(
                    {
                        "scores": got.scores.tolist(),
                        "explanations": got.explanations,
                        "evidence": got.evidence.astype(object).to_dict("index"),
                    },
                    default=str,
                    sort_keys=True,
                )
            )
        return out

    fast = run()
    _no_arrow_codes(monkeypatch)
    assert run() == fast
