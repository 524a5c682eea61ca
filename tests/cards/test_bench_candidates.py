"""Helpers of ``bench/cards.py --parts candidates``: the blend of log-odds, and the
training-side twin of the handbook's "customers with a known fraud" rule."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from _services import bench_module  # type: ignore[import-not-found]
from fraudlens.cards.data import validate_frame


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return bench_module("cards")


def test_blend_is_the_weighted_mean_of_log_odds(bench: ModuleType) -> None:
    p = np.array([0.01, 0.2, 0.5, 0.9])
    q = np.array([0.3, 0.1, 0.8, 0.6])
    got = bench._blend({"a": p, "b": q}, {"a": 0.7, "b": 0.3})
    want = 0.7 * np.log(p / (1 - p)) + 0.3 * np.log(q / (1 - q))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # One model alone keeps its ranking; scores of exactly 0 or 1 stay finite.
    alone = bench._blend({"a": np.array([0.0, 0.4, 1.0])}, {"a": 1.0})
    assert np.isfinite(alone).all()
    assert (np.diff(alone) > 0).all()


def _rows(customer: int, day: int, label: int) -> dict[str, object]:
    return {
        "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=day, hours=12),
        "customer_id": customer,
        "terminal_id": 100 + customer,
        "amount": 20.0,
        "label": label,
    }


def test_known_customer_rows_follow_the_label_delay(bench: ModuleType) -> None:
    # Day 0 is the table's first day; training rows are days 20-26 (back 14: frauds from
    # day 6 on count). A fraud is known 7 days later, strictly (as in time_split).
    records = [
        _rows(9, 0, 0),  # fixes day 0
        _rows(1, 10, 1),  # customer 1: fraud on day 10, known from day 18
        _rows(1, 20, 0),  # known
        _rows(1, 25, 1),  # known
        _rows(2, 21, 1),  # customer 2: fraud inside training, day 21
        _rows(2, 26, 0),  # 21 < 26 - 7 is false: not known yet
        _rows(3, 2, 1),  # customer 3: fraud on day 2, before the look-back
        _rows(3, 22, 0),  # not counted: not known
        _rows(4, 13, 1),  # customer 4: fraud exactly 7 days before day 20
        _rows(4, 20, 0),  # not known yet (known from day 21)
        _rows(4, 21, 0),  # known
    ]
    frame = pd.DataFrame(records)
    frame.insert(0, "transaction_id", np.arange(len(frame)))
    table = validate_frame(frame, "raw", "<test>", require_label=True)
    days = ((table.time - pd.Timestamp("2026-01-01", tz="UTC")) // pd.Timedelta(days=1)).to_numpy()
    rows = np.flatnonzero((days >= 20) & (days <= 26))
    known = bench._known_customer_rows(table, rows, back_days=14)
    got = sorted(zip(table.frame["customer_id"].to_numpy()[known], days[known], strict=True))
    assert got == [(1, 20), (1, 25), (4, 21)]


def test_detectable_first_ranks_only_frauds_with_a_known_signal_first(bench: ModuleType) -> None:
    from types import SimpleNamespace

    ts = pd.Timestamp("2026-01-05 10:00", tz="UTC")
    frame = pd.DataFrame(
        {
            "ts": [ts] * 4,
            "customer_id": [1, 2, 3, 4],
            "label": [1, 1, 1, 0],
            # Over 220; compromised terminal not yet known; known terminal; genuine.
            "TX_FRAUD_SCENARIO": [1, 2, 2, 0],
        }
    )
    X = pd.DataFrame({"terminal_id_risk_30day_window": [0.0, 0.0, 0.5, 0.0]})
    hb = SimpleNamespace(frame=frame, X=X, y=frame["label"].to_numpy(), label_column="label")
    got = bench._detectable_first(hb, np.arange(4), np.array([0.1, 0.8, 0.2, 0.9]))
    # Rows 3 and 1 first (their own order kept), then the genuine row 4 above row 2.
    assert got["average_precision"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert got["card_precision@100"] == pytest.approx(3 / 100)
    hb.frame = frame.drop(columns="TX_FRAUD_SCENARIO")
    assert bench._detectable_first(hb, np.arange(4), np.zeros(4)) is None
