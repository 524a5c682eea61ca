"""The small-batch shortcuts of the worker's scoring path give pandas' answers.

Column reads without a Series, the feature block scored without a frame, binary searches
and dict lookups in place of pandas' hash lookups, the Python side compare: each is
checked against the pandas expression it replaces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.errors import FraudlensError
from fraudlens.market import features as feat
from fraudlens.market.data import window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.scoring import _account_ids, _feature_pass


@pytest.fixture(scope="module")
def data():
    return window(simulate(40, seed=7, days=2))


@pytest.fixture(scope="module")
def detector():
    return FeatureDetector(n_estimators=20).fit(window(simulate(60, seed=3, days=2)))


def test_column_reads_equal_pandas(data):
    trades = data.trades
    price = feat._floats(trades, "price")
    assert np.array_equal(price, trades["price"].to_numpy(dtype=np.float64))
    assert not price.flags.writeable  # the frame's memory: never written through
    with pytest.raises(ValueError):
        price[0] = 1.0
    for unit in ("ns", "us", "s"):
        frame = trades.assign(ts=trades["ts"].dt.as_unit(unit))
        assert np.array_equal(feat._ns(frame, "ts"), frame["ts"].to_numpy("datetime64[ns]"))
        naive = frame.assign(ts=frame["ts"].dt.tz_localize(None))
        assert np.array_equal(feat._ns(naive, "ts"), naive["ts"].to_numpy("datetime64[ns]"))
    assert feat._text(trades, "symbol").tolist() == trades["symbol"].tolist()
    ints = pd.DataFrame({"price": [1, 2, 3]})  # not float64: pandas' own conversion
    assert feat._floats(ints, "price").dtype == np.float64
    dup = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    with pytest.raises(AttributeError):  # as frame["a"] (a frame) has no .array
        feat._array(dup, "a")
    with pytest.raises(KeyError):
        feat._array(trades, "nope")


def test_frame_buys_equal_buys():
    for sides in (["buy", "sell", "buy"], ["BUY", " sell"], ["buy", None, "sell"], []):
        frame = pd.DataFrame({"side": pd.Series(sides, dtype="str")})
        assert np.array_equal(feat._frame_buys(frame), feat._buys(frame["side"]))
    long = pd.DataFrame({"side": ["buy", "sell"] * 300})
    assert np.array_equal(feat._frame_buys(long), feat._buys(long["side"]))


def test_window_equals_hash_lookup():
    rng = np.random.default_rng(0)
    values = np.unique(np.round(rng.uniform(1, 5, 50), 2))
    v = np.r_[values[::3], rng.uniform(0, 6, 20), 0.0, -0.0]
    lo, n = feat._window(values, v, 0.001)
    # the reference: pandas' exact lookup, then the same search for the rest
    ref_lo = np.asarray(pd.Index(values).get_indexer(v), dtype=np.int64)
    span = 0.001 * np.abs(v)
    search = ref_lo < 0
    at = np.maximum(ref_lo, 0)
    search |= (ref_lo > 0) & (values[np.maximum(at - 1, 0)] >= v - span)
    search |= (ref_lo < len(values) - 1) & (values[np.minimum(at + 1, len(values) - 1)] <= v + span)
    ref_n = np.ones(len(v), dtype=np.int64)
    s = np.flatnonzero(search)
    ref_lo[s] = np.searchsorted(values, v[s] - span[s], side="left")
    ref_n[s] = np.searchsorted(values, v[s] + span[s], side="right") - ref_lo[s]
    assert np.array_equal(lo, ref_lo) and np.array_equal(n, ref_n)


def test_tuple_codes_lookup_equals_hash_lookup():
    rng = np.random.default_rng(1)
    codes = [rng.integers(0, 7, 200), rng.integers(0, 5, 200), rng.integers(0, 9, 200)]
    for spans in ([7, 5, 9], [2**40, 2**30, 9]):  # one key, or a dense step between
        tc = feat._TupleCodes(codes, spans)
        ask = [rng.integers(-1, 7, 300), rng.integers(0, 5, 300), rng.integers(0, 9, 300)]
        got = tc.lookup(ask)
        # the reference: the id of the first row holding the same tuple, -1 if none
        first: dict[tuple[int, ...], int] = {}
        for row, t in enumerate(zip(*(c.tolist() for c in codes), strict=True)):
            first.setdefault(t, int(tc.ids[row]))
        want = [first.get(t, -1) for t in zip(*(c.tolist() for c in ask), strict=True)]
        assert got.tolist() == want
        # and pandas' hash lookup of each stage's keys, as before
        key, i = np.asarray(ask[0], dtype=np.int64), 1
        for stop, uniq, ids in tc.stages:
            for j in range(i, stop):
                key = key * spans[j] + ask[j]
            i = stop
            in_order = np.empty_like(uniq)
            in_order[ids] = uniq
            key = np.asarray(pd.Index(in_order).get_indexer(key), dtype=np.int64)
        assert got.tolist() == key.tolist()


def test_get_indexer_equals_pandas():
    ix = {"syms": pd.Index(["b", "a", "c"]), "accts": pd.Index([1, 2, 3])}
    for values in (np.array(["a", "z", "c"], dtype=object), pd.array(["c", "b"], dtype="str")):
        assert (
            feat._get_indexer(ix, "syms", values).tolist()
            == ix["syms"].get_indexer(values).tolist()
        )
    # not strings: pandas' lookup
    assert feat._get_indexer(ix, "accts", np.array([3, 5])).tolist() == [2, -1]


def test_all_trades_concat_once_per_fetch(data):
    extra = data.trades.iloc[:5].assign(account_id="other")
    calls = []

    def fetch(trades):
        calls.append(len(trades))
        return extra if len(calls) == 1 else extra.iloc[:0]

    book = feat.TradeBook(data.trades.iloc[5:].reset_index(drop=True), fetch)
    assert book.all_trades() is book.trades
    book._ask(data.trades.iloc[:3])
    first = book.all_trades()
    assert first is book.all_trades()  # kept
    assert len(first) == len(data.trades) - 5 + 5
    book._fetched.append(extra)  # a later fetch: a new concat
    assert len(book.all_trades()) == len(first) + 5
    assert "_all" not in book.__getstate__()


def test_feature_block_scores_equal_the_frame(data, detector):
    _klines, tr, legs, rt, pm = feat._analyse_bars(data)
    frame = feat._features(tr, legs, rt, pm)
    block = feat._feature_block(tr, legs, rt, pm)
    assert np.array_equal(frame.to_numpy(), block, equal_nan=True)
    assert frame.columns.tolist() == list(feat.FEATURE_NAMES)
    assert frame.columns is not feat._FEATURE_INDEX  # no frame shares the constant
    want = detector.decision_function_features(frame)
    assert np.array_equal(detector._decision_block(block), want)
    assert np.array_equal(detector.decision_function(data), want)
    scores, _ = _feature_pass(detector, data, _account_ids(data))
    assert np.array_equal(scores, want)
    # a model of another column order reads its columns by name
    names = list(reversed(feat.FEATURE_NAMES))
    other = FeatureDetector(n_estimators=5)
    other.fit_features(frame[names], (np.arange(len(frame)) % 2).astype(int))
    assert np.array_equal(
        other._decision_block(block), other.decision_function_features(frame[names])
    )
    with pytest.raises(FraudlensError, match="not fitted"):
        FeatureDetector()._decision_block(block)


def test_account_ids_equal_data_account_ids(data):
    assert np.array_equal(_account_ids(data), np.asarray(data.account_ids, dtype=str))
    objects = data.trades.assign(account_id=data.trades["account_id"].astype(object))
    sub = type(data)(data.klines, objects)
    assert np.array_equal(_account_ids(sub), np.asarray(sub.account_ids, dtype=str))


def test_traded_symbols_only_equals_isin(data):
    klines, trades = data.klines.iloc[:3000], data.trades  # few bars: the set lookup
    assert len(klines) < feat.FEW_BARS
    syms = sorted(set(klines["symbol"].tolist()))
    for traded in (syms, syms[:1], [], ["NOPE", syms[0]]):
        got = feat._traded_symbols_only(klines, trades, np.asarray(traded, dtype=object))
        want = klines[klines["symbol"].isin(traded).to_numpy()]
        assert got["symbol"].tolist() == want["symbol"].tolist()
        assert got.index.tolist() == want.index.tolist()
    assert feat._traded_symbols_only(klines, trades, syms) is klines  # all kept: no copy


def _sorted_reference(frame: pd.DataFrame) -> bool:
    """The order test as the sort itself answers it."""
    ordered = frame.sort_values(["symbol", "ts"], kind="stable")
    return ordered.index.tolist() == frame.index.tolist()


def test_is_sorted_neighbour_compare_equals_the_sort():
    import pyarrow as pa

    rng = np.random.default_rng(4)
    # code-point order (what Python and pandas sort by): "Z" < "a" < "é" < "€" < "𝔸"
    names = np.array(["A", "AB", "Z", "a", "aa", "é", "€", "𝔸", "ÉT", ""], dtype=object)
    ts = pd.to_datetime(np.arange(6) * 60, unit="s", utc=True)
    seen = {True: 0, False: 0}
    for _ in range(300):
        n = int(rng.integers(2, 12))
        sym = rng.choice(names, n)
        t = ts[rng.integers(0, len(ts), n)]
        if rng.random() < 0.5:  # mostly ordered frames, the store's case
            order = np.lexsort((t.asi8, np.array([s.encode() for s in sym], dtype=object)))
            sym, t = sym[order], t[order]
        frame = pd.DataFrame({"symbol": pd.array(sym.tolist(), dtype="str"), "ts": t})
        want = _sorted_reference(frame)
        assert feat._is_sorted(frame) is want
        # the same column in two pyarrow chunks
        arrow = pa.chunked_array(
            [sym[: n // 2].tolist(), sym[n // 2 :].tolist()], pa.large_string()
        )
        chunked = frame.assign(symbol=pd.array(pd.arrays.ArrowStringArray(arrow), dtype="str"))
        assert chunked["symbol"].array._pa_array.num_chunks == 2
        assert feat._is_sorted(chunked) is want
        seen[want] += 1
    assert seen[True] > 50 and seen[False] > 50
    # a missing symbol: not for the neighbour compare; the old path says False (the
    # sort then decides)
    frame = pd.DataFrame({"symbol": pd.array(["a", None], dtype="str"), "ts": ts[:2]})
    assert feat._arrow_sorted(feat._text(frame, "symbol"), 2) is None
    assert feat._is_sorted(frame) is False


def test_all_trades_equals_the_selected_columns_concat(data):
    from fraudlens.market.data import TRADE_COLUMNS

    cols = list(TRADE_COLUMNS)
    extra = data.trades.iloc[:4].assign(account_id="other")
    for held in (
        data.trades.iloc[4:].reset_index(drop=True),  # the contract's columns: no selection
        data.trades.iloc[4:].assign(note="x")[[*cols[::-1], "note"]],  # others, reordered
    ):
        book = feat.TradeBook(held, lambda trades: extra)
        book._ask(data.trades.iloc[:2])
        want = pd.concat([held[cols], extra[cols]], ignore_index=True)
        pd.testing.assert_frame_equal(book.all_trades(), want, check_exact=True)
    frame = data.trades
    assert feat._columns_of(frame, cols) is frame
    assert feat._columns_of(frame, cols[::-1]).columns.tolist() == cols[::-1]
