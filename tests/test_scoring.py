"""The one scoring path: one flag rule, two thresholds named apart, typed results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.cards.detectors import AnomalyDetector, LogisticDetector, XGBoostDetector
from fraudlens.errors import ConfigError
from fraudlens.market.data import window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
from fraudlens.scoring import (
    EVENT_THRESHOLD,
    EVIDENCE_COLUMNS,
    flag,
    model_id,
    resolve_threshold,
    score_cards,
    score_market,
)


def test_flag_is_strictly_greater() -> None:
    out = flag([0.1, 0.9, 0.9000001, 1.0], 0.9)
    assert out.dtype == bool
    assert out.tolist() == [False, False, True, True]
    assert flag(np.zeros((2, 2)), -1.0).all()


def test_threshold_must_be_finite() -> None:
    det = FeatureDetector()
    det.threshold_ = 0.42
    assert resolve_threshold(det, None) == 0.42
    assert resolve_threshold(det, 0.9) == 0.9
    for bad in (float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ConfigError):
            resolve_threshold(det, bad)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    det = FeatureDetector(n_estimators=40).fit(window(simulate(500, seed=21)))
    Registry(root).save(det)
    return Registry(root).load("market-features"), window(simulate(200, seed=22))


def test_score_market_model_threshold_and_event_threshold(market) -> None:
    det, data = market
    raw = det.decision_function(data)
    by_model = score_market(det, data)
    assert model_id(det) == "market-features:v0001" == by_model.model
    assert by_model.account_ids.tolist() == data.account_ids.tolist()
    np.testing.assert_array_equal(by_model.scores, raw)
    assert by_model.threshold == by_model.model_threshold == det.threshold_
    np.testing.assert_array_equal(by_model.flagged, raw > det.threshold_)
    assert by_model.explanations is None

    by_event = score_market(det, data, threshold=EVENT_THRESHOLD)
    assert by_event.threshold == 0.9 and by_event.model_threshold == det.threshold_
    np.testing.assert_array_equal(by_event.flagged, raw > 0.9)
    assert by_event.flagged_ids() == [a for a, s in by_event.score_map().items() if s > 0.9]
    # the simulated takeovers are found: flags agree with labels on most accounts (a
    # small model; the detector's own tests hold the quality bar)
    assert np.mean(by_event.flagged == data.y().astype(bool)) > 0.8

    frame = by_event.frame()
    base = ["account_id", "score", "flagged", "model", "threshold"]
    assert list(frame.columns) == [*base, *EVIDENCE_COLUMNS]
    assert set(frame["model"]) == {"market-features:v0001"}
    assert set(frame["threshold"]) == {0.9}
    assert frame["flagged"].sum() == by_event.n_flagged > 0


def test_score_market_explains_flagged_only(market) -> None:
    det, data = market
    res = score_market(det, data, threshold=0.9, explain="flagged", top=3)
    assert res.explanations is not None
    assert set(res.explanations) == set(res.flagged_ids())
    assert all(1 <= len(v) <= 3 for v in res.explanations.values())
    first = res.explanations[res.flagged_ids()[0]][0]
    assert {"trade_id", "reason", "side", "price"} <= set(first)
    every = score_market(det, data, explain=True, top=2)
    assert every.explanations is not None and set(every.explanations) == set(
        every.account_ids.tolist()
    )
    recs = every.records()
    assert len(recs) == len(data.account_ids)
    assert set(recs[0]) == {"account_id", "score", "flagged", "trades", *EVIDENCE_COLUMNS}
    assert isinstance(recs[0]["score"], float) and isinstance(recs[0]["flagged"], bool)


def test_score_market_empty(market) -> None:
    det, data = market
    empty = type(data)(data.klines, data.trades.iloc[:0], None, data.bar)
    res = score_market(det, empty, explain=True)
    assert len(res) == 0 and res.frame().empty and res.explanations == {}


@pytest.fixture(scope="module")
def cards():
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = ((X["a"] + 0.5 * X["b"] + rng.normal(scale=0.3, size=n)) > 2.0).astype(int).to_numpy()
    return X, y


@pytest.mark.parametrize("cls", [XGBoostDetector, LogisticDetector])
def test_score_cards_classifier_with_anomaly(cards, cls) -> None:
    X, y = cards
    clf = cls().fit(X, y)
    iso = AnomalyDetector(n_estimators=20).fit(X)
    res = score_cards(clf, X, anomaly=iso)
    assert res.scores is not None and res.anomaly_scores is not None
    np.testing.assert_allclose(res.scores, clf.decision_function(X))
    np.testing.assert_array_equal(res.flagged, res.scores > clf.threshold_)
    assert res.model == clf.name and res.threshold == res.model_threshold == clf.threshold_
    assert res.anomaly_model == "cards-anomaly"
    assert res.anomaly_threshold == iso.threshold_
    # flags found the positives
    assert (res.flagged & (y == 1)).sum() > 0.6 * y.sum()
    frame = res.frame(ids=np.arange(len(X)))
    assert list(frame.columns) == [
        "transaction_id",
        "score",
        "flagged",
        "model",
        "threshold",
        "anomaly_score",
        "anomaly_model",
    ]

    ex = score_cards(clf, X.iloc[:50], threshold=0.5, explain="flagged", top=2)
    assert ex.explanations is not None and len(ex.explanations) == 50
    for row, is_flagged in zip(ex.explanations, ex.flagged, strict=True):
        if not is_flagged:
            assert row == []
        else:
            assert 1 <= len(row) <= 2
            # "a" drives the label most; it is the top reason on flagged rows
            assert row[0]["feature"] in {"a", "b"} and row[0]["contribution"] > 0


def test_score_cards_anomaly_alone(cards) -> None:
    X, _ = cards
    iso = AnomalyDetector(n_estimators=20).fit(X)
    res = score_cards(None, X, anomaly=iso)
    assert res.scores is None and res.anomaly_scores is not None
    np.testing.assert_array_equal(res.flagged, res.anomaly_scores > iso.threshold_)
    assert res.model == "cards-anomaly" and res.explanations is None
    assert list(res.frame().columns) == ["score", "flagged", "model", "threshold"]
    with pytest.raises(ConfigError):
        score_cards(None, X)


def test_score_market_explanation_reads_the_feature_pass(market) -> None:
    """Scoring with explanations builds the trade arrays once for the features and the
    explanation: scores equal the detector's own, explanations equal explain_batch's."""
    from fraudlens.market.explain import explain_batch

    det, data = market
    plain = np.asarray(det.decision_function(data), dtype=np.float64)
    for explain in ("flagged", True):
        res = score_market(det, data, threshold=0.5, explain=explain, top=4)
        np.testing.assert_array_equal(res.scores, plain)
        wanted = res.flagged_ids() if explain == "flagged" else res.account_ids.tolist()
        assert res.explanations == explain_batch(data, wanted, top=4)


def test_a_files_evidence_finds_a_counterparty_beyond_its_window() -> None:
    # B took the other side of both of V's legs, then traded again 30 h later: B's
    # window no longer holds those trades, V's does. Scored from the file, V's
    # counterparty is B (the whole file is the book), and B's own figures are those of
    # its window (its older trades are only V's other side).
    from fraudlens.market.data import MarketData
    from fraudlens.scoring import market_evidence

    t0 = pd.Timestamp("2026-03-02T14:30:00Z")
    later = 30 * 3600
    rows = [
        ("v1", "V", 10, "buy", 14.0, 4.0),
        ("b1", "B", 10, "sell", 14.0, 4.0),
        ("v2", "V", 320, "sell", 8.0, 4.0),
        ("b2", "B", 320, "buy", 8.0, 4.0),
        ("b3", "B", later, "buy", 10.0, 1.0),
    ]
    trades = pd.DataFrame(
        [(i, a, "X", t0 + pd.Timedelta(seconds=s), side, p, q) for i, a, s, side, p, q in rows],
        columns=["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"],
    )
    bars = pd.DataFrame(
        {
            "symbol": "X",
            "ts": [t0 + pd.Timedelta(minutes=5 * i) for i in range(12)]
            + [t0 + pd.Timedelta(seconds=later, minutes=5 * i) for i in range(12)],
            "open": 8.0,
            "high": 14.0,
            "low": 8.0,
            "close": 14.0,
            "volume": 1.0,
        }
    )
    data = window(MarketData(bars, trades))
    assert sorted(data.trades["trade_id"]) == ["b3", "v1", "v2"]
    ev = market_evidence(data)
    assert ev.loc["V", "counterparty"] == "B"
    assert ev.loc["V", "counterparty_value_moved"] == pytest.approx(24.0)
    # without the book (the windows alone) V has none; B is the same either way
    bare = market_evidence(MarketData(data.klines, data.trades))
    assert bare.loc["V", "counterparty"] is None
    assert ev.loc["B", "counterparty"] is None
    pd.testing.assert_series_equal(ev.loc["B"], bare.loc["B"])
