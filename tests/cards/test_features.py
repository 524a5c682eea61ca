"""Features of raw transactions: exact values, agreement with a brute-force reference,
and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudlens.cards.features import (
    FEATURE_NAMES,
    HANDBOOK_FEATURE_NAMES,
    feature_names,
    transaction_features,
)
from fraudlens.cards.simulate import simulate
from fraudlens.errors import DataError


def reference_features(
    df: pd.DataFrame, windows: tuple[float, ...] = (1, 7, 30), delay_days: float = 7
) -> pd.DataFrame:
    """Row-by-row definition of the features, written for clarity rather than speed."""
    ts = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True)
    tt = ts.to_numpy("datetime64[ns]").astype(np.int64)
    amount = df["amount"].to_numpy(float)
    label = df["label"].to_numpy(float) if "label" in df else np.zeros(len(df))
    cust = df["customer_id"].to_numpy()
    term = df["terminal_id"].to_numpy()
    day = 86_400 * 10**9
    delay = round(delay_days * day)
    longest = max(windows)
    big = f"{longest:g}"
    pos = np.arange(len(df))
    rows = []
    for i in range(len(df)):
        t = tt[i]
        r = {
            "tx_amount": amount[i],
            "tx_during_weekend": float(ts[i].weekday() >= 5),
            "tx_during_night": float(ts[i].hour <= 6),
        }
        # Earlier rows, or rows at the same time that come first in the input.
        known = (tt < t) | ((tt == t) & (pos <= i))
        nb, avg = {}, {}
        for w in windows:
            m = (cust == cust[i]) & known & (tt > t - round(w * day))
            nb[w], avg[w] = m.sum(), amount[m].mean()
            r[f"customer_id_nb_tx_{w:g}day_window"] = nb[w]
            r[f"customer_id_avg_amount_{w:g}day_window"] = avg[w]
            r[f"customer_id_amount_to_avg_{w:g}day_window"] = (
                amount[i] / avg[w] if avg[w] != 0 else 1.0
            )
            if w == longest:
                # Equal amounts have no spread (np.std may round it to a tiny number).
                std = amount[m].std() if np.ptp(amount[m]) > 0 else 0.0
                r[f"customer_id_std_amount_{big}day_window"] = std
                r[f"customer_id_amount_zscore_{big}day_window"] = (
                    (amount[i] - avg[w]) / std if std > 0 else 0.0
                )
        for w in windows:
            if w < longest:
                name = f"{w:g}day_to_{big}day_window"
                r[f"customer_id_avg_amount_{name}"] = (
                    avg[w] / avg[longest] if avg[longest] != 0 else 1.0
                )
                r[f"customer_id_nb_tx_{name}"] = nb[w] / (nb[longest] * w / longest)
        recent = max([w for w in windows if w < longest], default=None)
        if recent is not None:

            def baseline(j: int, recent: float = recent) -> float:
                m = (cust == cust[j]) & (tt > tt[j] - round(longest * day))
                m &= tt <= tt[j] - round(recent * day)
                return float(amount[m].mean()) if m.any() else 0.0

            b = baseline(i)
            r[f"customer_id_amount_to_baseline_{big}day_window"] = amount[i] / b if b else 1.0
            mine = (cust == cust[i]) & known & (tt > t - round(recent * day))
            r[f"customer_id_nb_large_tx_{recent:g}day_window"] = sum(
                baseline(j) > 0 and amount[j] > 3 * baseline(j) for j in np.flatnonzero(mine)
            )
        before = (cust == cust[i]) & known & (pos != i)
        gap = (t - tt[before].max()) / day if before.any() else longest
        r["customer_id_days_since_previous_tx"] = min(gap, longest)
        for w in windows:
            m = (term == term[i]) & (tt > t - delay - round(w * day)) & (tt <= t - delay)
            r[f"terminal_id_nb_tx_{w:g}day_window"] = m.sum()
            r[f"terminal_id_risk_{w:g}day_window"] = label[m].mean() if m.any() else 0.0
        # The terminal's known rows of the longest window, oldest first (input order on ties).
        m = (term == term[i]) & (tt > t - delay - round(longest * day)) & (tt <= t - delay)
        seen = sorted(np.flatnonzero(m), key=lambda j: (tt[j], j))
        streak = 0
        while streak < len(seen) and label[seen[-1 - streak]] > 0:
            streak += 1
        r[f"terminal_id_fraud_streak_{big}day_window"] = streak
        r[f"terminal_id_days_since_streak_start_{big}day_window"] = (
            (t - tt[seen[-streak]]) / day if streak else 0.0
        )
        frauds = [j for j in seen if label[j] > 0]
        mean = amount[seen].mean() if seen else 0.0
        r[f"terminal_id_last_fraud_amount_ratio_{big}day_window"] = (
            amount[frauds[-1]] / mean if frauds and mean != 0 else 0.0
        )
        far = delay_days + longest
        r[f"terminal_id_nb_fraud_{big}day_window"] = len(frauds)
        r[f"terminal_id_days_since_last_fraud_{big}day_window"] = (
            (t - tt[frauds[-1]]) / day if frauds else far
        )
        before_run = seen[: len(seen) - streak]  # its last row is genuine
        r[f"terminal_id_days_since_genuine_before_streak_{big}day_window"] = (
            0.0 if not streak else (t - tt[before_run[-1]]) / day if before_run else far
        )
        rows.append(r)
    return pd.DataFrame(rows, columns=list(feature_names(windows))).astype(np.float32)


def test_feature_names_are_stable() -> None:
    assert FEATURE_NAMES[:3] == ("tx_amount", "tx_during_weekend", "tx_during_night")
    assert len(FEATURE_NAMES) == 33 == len(set(FEATURE_NAMES))
    # The handbook's 15 come first, in their order; the behavioural ones follow.
    assert FEATURE_NAMES[:15] == HANDBOOK_FEATURE_NAMES
    assert FEATURE_NAMES[3:5] == (
        "customer_id_nb_tx_1day_window",
        "customer_id_avg_amount_1day_window",
    )
    assert FEATURE_NAMES[13:15] == (
        "terminal_id_nb_tx_30day_window",
        "terminal_id_risk_30day_window",
    )
    assert FEATURE_NAMES[15:] == (
        "customer_id_amount_to_avg_1day_window",
        "customer_id_amount_to_avg_7day_window",
        "customer_id_amount_to_avg_30day_window",
        "customer_id_avg_amount_1day_to_30day_window",
        "customer_id_nb_tx_1day_to_30day_window",
        "customer_id_avg_amount_7day_to_30day_window",
        "customer_id_nb_tx_7day_to_30day_window",
        "customer_id_std_amount_30day_window",
        "customer_id_amount_zscore_30day_window",
        "customer_id_days_since_previous_tx",
        "terminal_id_fraud_streak_30day_window",
        "terminal_id_days_since_streak_start_30day_window",
        "terminal_id_last_fraud_amount_ratio_30day_window",
        "terminal_id_nb_fraud_30day_window",
        "terminal_id_days_since_last_fraud_30day_window",
        "terminal_id_days_since_genuine_before_streak_30day_window",
        "customer_id_amount_to_baseline_30day_window",
        "customer_id_nb_large_tx_7day_window",
    )
    assert feature_names((2,)) == (
        "tx_amount",
        "tx_during_weekend",
        "tx_during_night",
        "customer_id_nb_tx_2day_window",
        "customer_id_avg_amount_2day_window",
        "terminal_id_nb_tx_2day_window",
        "terminal_id_risk_2day_window",
        "customer_id_amount_to_avg_2day_window",
        "customer_id_std_amount_2day_window",
        "customer_id_amount_zscore_2day_window",
        "customer_id_days_since_previous_tx",
        "terminal_id_fraud_streak_2day_window",
        "terminal_id_days_since_streak_start_2day_window",
        "terminal_id_last_fraud_amount_ratio_2day_window",
        "terminal_id_nb_fraud_2day_window",
        "terminal_id_days_since_last_fraud_2day_window",
        "terminal_id_days_since_genuine_before_streak_2day_window",
    )
    for bad in ((), (7, 0), (-1,)):
        with pytest.raises(ValueError, match="positive"):
            feature_names(bad)


def test_exact_values_on_a_hand_made_example() -> None:
    # 2026-04-04 is a Saturday.
    df = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3, 4, 5, 6],
            "ts": [
                "2026-04-01T08:00:00",  # Wed, customer A at terminal T
                "2026-04-01T20:00:00",  # Wed, A at T, fraud
                "2026-04-02T09:00:00",  # Thu, A at U: within 1 day of row 2, not row 1
                "2026-04-04T05:00:00",  # Sat night, B at T
                "2026-04-09T12:00:00",  # Thu, A at T: rows 1-2 are 8 days back
                "2026-04-09T12:00:00",  # same time, B at T
            ],
            "customer_id": ["A", "A", "A", "B", "A", "B"],
            "terminal_id": ["T", "T", "U", "T", "T", "T"],
            "amount": [10.0, 30.0, 20.0, 50.0, 40.0, 60.0],
            "label": [0, 1, 0, 0, 0, 0],
        }
    )
    f = transaction_features(df, windows=(1, 7), delay_days=7)
    assert list(f.columns) == list(feature_names((1, 7)))
    assert (f.dtypes == np.float32).all()
    np.testing.assert_array_equal(f["tx_during_weekend"], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(f["tx_during_night"], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(f["customer_id_nb_tx_1day_window"], [1, 2, 2, 1, 1, 1])
    np.testing.assert_allclose(f["customer_id_avg_amount_1day_window"], [10, 20, 25, 50, 40, 60])
    # Row 5 (A, Apr 9 12:00): the 7-day window (Apr 2 12:00, Apr 9 12:00] holds only itself.
    np.testing.assert_array_equal(f["customer_id_nb_tx_7day_window"], [1, 2, 3, 1, 1, 2])
    np.testing.assert_allclose(f["customer_id_avg_amount_7day_window"], [10, 20, 20, 50, 40, 55])
    # Rows 5 and 6 at T on Apr 9 12:00: delayed windows end at Apr 2 12:00.
    # 1 day: [Apr 1 12:00, Apr 2 12:00) -> row 2 (fraud). 7 days: [Mar 26 12:00, Apr 2 12:00)
    # -> rows 1 and 2, one fraud.
    np.testing.assert_array_equal(f["terminal_id_nb_tx_1day_window"], [0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(f["terminal_id_risk_1day_window"], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(f["terminal_id_nb_tx_7day_window"], [0, 0, 0, 0, 2, 2])
    np.testing.assert_allclose(f["terminal_id_risk_7day_window"], [0, 0, 0, 0, 0.5, 0.5])
    # Behavioural features; the longest window here is 7 days.
    np.testing.assert_allclose(
        f["customer_id_amount_to_avg_1day_window"], [1, 1.5, 0.8, 1, 1, 1], rtol=1e-6
    )
    np.testing.assert_allclose(
        f["customer_id_amount_to_avg_7day_window"], [1, 1.5, 1, 1, 1, 60 / 55], rtol=1e-6
    )
    np.testing.assert_allclose(
        f["customer_id_avg_amount_1day_to_7day_window"], [1, 1, 1.25, 1, 1, 60 / 55], rtol=1e-6
    )
    # nb_1 / (nb_7 * 1 / 7)
    np.testing.assert_allclose(
        f["customer_id_nb_tx_1day_to_7day_window"], [7, 7, 14 / 3, 7, 7, 3.5], rtol=1e-6
    )
    # Row 3: amounts 10, 30, 20 -> mean 20, population std sqrt(200 / 3).
    np.testing.assert_allclose(
        f["customer_id_std_amount_7day_window"], [0, 10, np.sqrt(200 / 3), 0, 0, 5], rtol=1e-6
    )
    np.testing.assert_allclose(f["customer_id_amount_zscore_7day_window"], [0, 1, 0, 0, 0, 1])
    # First rows of a customer and gaps over 7 days read 7 (row 5: 7 days 3 hours).
    np.testing.assert_allclose(
        f["customer_id_days_since_previous_tx"], [7, 0.5, 13 / 24, 7, 7, 5 + 7 / 24], rtol=1e-6
    )
    # Rows 5 and 6: the known rows at T are rows 1 (genuine) and 2 (fraud, Apr 1 20:00):
    # a run of one fraud that started 7 days 16 hours earlier; its amount 30 against the
    # window's mean of 20.
    np.testing.assert_array_equal(f["terminal_id_fraud_streak_7day_window"], [0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(
        f["terminal_id_days_since_streak_start_7day_window"],
        [0, 0, 0, 0, 7 + 16 / 24, 7 + 16 / 24],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        f["terminal_id_last_fraud_amount_ratio_7day_window"], [0, 0, 0, 0, 1.5, 1.5], rtol=1e-6
    )
    # One known fraud; without one, the days since read D + L = 14. The genuine row before
    # the run (row 1, Apr 1 08:00) is 8 days 4 hours back.
    np.testing.assert_array_equal(f["terminal_id_nb_fraud_7day_window"], [0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(
        f["terminal_id_days_since_last_fraud_7day_window"],
        [14, 14, 14, 14, 7 + 16 / 24, 7 + 16 / 24],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        f["terminal_id_days_since_genuine_before_streak_7day_window"],
        [0, 0, 0, 0, 8 + 4 / 24, 8 + 4 / 24],
        rtol=1e-6,
    )
    pd.testing.assert_frame_equal(f, reference_features(df, (1, 7)), check_exact=False, rtol=1e-6)


def test_terminal_fraud_streak_by_hand() -> None:
    # One terminal; two-day label delay, one 7-day window.
    df = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                [
                    "2026-04-01 00:00",  # genuine, 10
                    "2026-04-02 00:00",  # fraud, 20
                    "2026-04-03 00:00",  # fraud, 30
                    "2026-04-04 06:00",  # genuine, 40; knows rows 1-2: a run of 1 fraud
                    "2026-04-05 12:00",  # known by then: rows 1-3, a run of 2 frauds
                    "2026-04-06 12:00",  # rows 1-4 known: the run is broken
                    "2026-04-10 12:00",  # window (Apr 1 12:00, Apr 8 12:00]: rows 2-6
                    "2026-04-12 00:00",  # window (Apr 3, Apr 10]: rows 4-6; row 3 (exactly
                    # 9 days old) is out, as in the handbook's rolling windows
                ],
                utc=True,
            ),
            "customer_id": np.arange(8),
            "terminal_id": "X",
            "amount": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0],
            "label": [0, 1, 1, 0, 0, 0, 0, 0],
        }
    )
    f = transaction_features(df, windows=(7,), delay_days=2)
    np.testing.assert_array_equal(
        f["terminal_id_fraud_streak_7day_window"], [0, 0, 0, 1, 2, 0, 0, 0]
    )
    # Row 4's run is row 2 alone, 2 days 6 hours back.
    np.testing.assert_allclose(
        f["terminal_id_days_since_streak_start_7day_window"], [0, 0, 0, 2.25, 3.5, 0, 0, 0]
    )
    # The latest known fraud is row 2 for row 4, row 3 after that; over the window's mean.
    # Row 8's window holds no fraud.
    np.testing.assert_allclose(
        f["terminal_id_last_fraud_amount_ratio_7day_window"],
        [0, 0, 0, 20 / 15, 30 / 20, 30 / 25, 30 / 40, 0],
        rtol=1e-6,
    )
    # Known frauds, days since the latest (D + L = 9 without one), and days since the
    # genuine row before the run (row 1 for rows 4 and 5; 0 without a run).
    np.testing.assert_array_equal(f["terminal_id_nb_fraud_7day_window"], [0, 0, 0, 1, 2, 2, 2, 0])
    np.testing.assert_allclose(
        f["terminal_id_days_since_last_fraud_7day_window"], [9, 9, 9, 2.25, 2.5, 3.5, 7.5, 9]
    )
    np.testing.assert_allclose(
        f["terminal_id_days_since_genuine_before_streak_7day_window"],
        [0, 0, 0, 3.25, 4.5, 0, 0, 0],
    )
    pd.testing.assert_frame_equal(f, reference_features(df, (7,), 2), check_exact=False, rtol=1e-6)


def test_index_and_order_are_kept() -> None:
    df = simulate(60, 120, 20, seed=3)
    assert not df.duplicated(["customer_id", "ts"]).any()
    f = transaction_features(df)
    shuffled = df.sample(frac=1.0, random_state=1)
    shuffled.index = shuffled.index + 1000
    g = transaction_features(shuffled)
    assert (g.index == shuffled.index).all()
    np.testing.assert_allclose(g.to_numpy(), f.loc[shuffled.index - 1000].to_numpy(), rtol=1e-6)


def test_customer_windows_match_pandas_time_rolling() -> None:
    # The handbook computes these with pandas' time-based rolling windows.
    df = simulate(80, 160, 40, seed=5)
    f = transaction_features(df)
    g = df.sort_values(["customer_id", "ts"]).set_index("ts")
    pos = df.sort_values(["customer_id", "ts"]).index
    for w in (1, 7, 30):
        roll = g.groupby("customer_id")["amount"].rolling(f"{w}D")
        count = roll.count().to_numpy()
        mean = roll.mean().to_numpy()
        np.testing.assert_array_equal(f.loc[pos, f"customer_id_nb_tx_{w}day_window"], count)
        np.testing.assert_allclose(
            f.loc[pos, f"customer_id_avg_amount_{w}day_window"], mean, rtol=1e-5
        )
        np.testing.assert_allclose(
            f.loc[pos, f"customer_id_amount_to_avg_{w}day_window"],
            df.loc[pos, "amount"] / mean,
            rtol=1e-5,
        )
    std = g.groupby("customer_id")["amount"].rolling("30D").std(ddof=0).to_numpy()
    np.testing.assert_allclose(
        f.loc[pos, "customer_id_std_amount_30day_window"], std, rtol=1e-4, atol=1e-4
    )


def test_matches_reference_on_simulated_rows() -> None:
    df = simulate(15, 10, 45, seed=11)
    f = transaction_features(df)
    ref = reference_features(df)
    assert f["terminal_id_risk_30day_window"].max() > 0  # the check covers real risk values
    np.testing.assert_allclose(f.to_numpy(), ref.to_numpy(), rtol=1e-5)


def _truncated_with_garbage_labels(df: pd.DataFrame, i: int, delay_days: float) -> pd.DataFrame:
    """Only what is known at row i's time; labels not yet known are flipped."""
    t = df["ts"].iloc[i]
    cut = df[df["ts"] <= t].copy()
    # A label is known once the transaction is ``delay_days`` old.
    unknown = cut["ts"] > t - pd.Timedelta(days=delay_days)
    cut.loc[unknown, "label"] = 1 - cut.loc[unknown, "label"]
    return cut


def test_no_look_ahead_on_simulated_data() -> None:
    df = simulate(200, 300, 60, seed=2)
    full = transaction_features(df)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(df), size=25, replace=False)
    # Include rows late in the data, where truncation removes the most.
    rows = np.r_[rows, len(df) - 1, len(df) // 2]
    dropped_near = 0
    for i in rows:
        cut = _truncated_with_garbage_labels(df, int(i), 7)
        part = transaction_features(cut)
        key = df.index[i]
        # Every feature, the behavioural ones included, is the same without the future.
        np.testing.assert_array_equal(part.loc[key].to_numpy(), full.loc[key].to_numpy())
        t = df["ts"].iloc[i]
        later = df[(df["ts"] > t) & (df["ts"] <= t + pd.Timedelta(days=30))]
        dropped_near += bool(
            (later["customer_id"] == df["customer_id"].iloc[i]).any()
            and (later["terminal_id"] == df["terminal_id"].iloc[i]).any()
        )
    # Most checked rows lost rows of their own customer and terminal within the longest
    # window: a feature that read them would have failed.
    assert dropped_near >= len(rows) // 2
    # The garbage labels do change every label-based feature of later rows: the test has
    # teeth.
    flipped = transaction_features(df.assign(label=1 - df["label"]))
    for name in (
        "terminal_id_risk_7day_window",
        "terminal_id_fraud_streak_30day_window",
        "terminal_id_days_since_streak_start_30day_window",
        "terminal_id_last_fraud_amount_ratio_30day_window",
    ):
        assert not np.array_equal(flipped[name], full[name]), name


@st.composite
def small_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 30))
    # Coarse times (hours over 20 days) so that ties and window edges are common.
    hours = draw(st.lists(st.integers(0, 20 * 24), min_size=n, max_size=n))
    base = pd.Timestamp("2026-03-01", tz="UTC")
    return pd.DataFrame(
        {
            "ts": [base + pd.Timedelta(hours=h) for h in hours],
            "customer_id": draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
            "terminal_id": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
            "amount": draw(
                st.lists(
                    st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 2)),
                    min_size=n,
                    max_size=n,
                )
            ),
            "label": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    df=small_frames(),
    windows=st.sampled_from([(1, 7, 30), (1, 2), (0.5, 3)]),
    delay=st.sampled_from([0.5, 1, 2]),
)
def test_property_matches_reference_and_has_no_look_ahead(
    df: pd.DataFrame, windows: tuple[float, ...], delay: float
) -> None:
    f = transaction_features(df, windows=windows, delay_days=delay)
    ref = reference_features(df, windows, delay)
    np.testing.assert_allclose(f.to_numpy(), ref.to_numpy(), rtol=1e-5, atol=1e-4)
    i = len(df) - 1 - (len(df) // 3)
    cut = _truncated_with_garbage_labels(df, i, delay)
    part = transaction_features(cut, windows=windows, delay_days=delay)
    np.testing.assert_array_equal(part.loc[df.index[i]].to_numpy(), f.loc[df.index[i]].to_numpy())


def test_missing_column_and_bad_timestamp() -> None:
    df = pd.DataFrame({"ts": ["2026-04-01"], "customer_id": [1], "amount": [1.0]})
    with pytest.raises(DataError, match="terminal_id"):
        transaction_features(df)
    df = pd.DataFrame(
        {
            "ts": ["2026-04-01", "soon"],
            "customer_id": [1, 1],
            "terminal_id": [1, 1],
            "amount": [1.0, 2.0],
        }
    )
    with pytest.raises(DataError) as err:
        transaction_features(df)
    assert err.value.row == 2 and err.value.column == "ts"


def test_without_labels_risk_is_zero() -> None:
    df = simulate(30, 40, 20, seed=1).drop(columns=["label"])
    f = transaction_features(df)
    assert (f["terminal_id_risk_7day_window"] == 0).all()
    assert f["terminal_id_nb_tx_7day_window"].max() > 0


def test_window_edges_by_hand() -> None:
    # Customer windows are (t - w, t]; terminal windows (t - D - w, t - D], the handbook's.
    t0 = pd.Timestamp("2026-05-01 12:00", tz="UTC")
    day = pd.Timedelta(days=1)
    df = pd.DataFrame(
        {
            "ts": [t0, t0 + day, t0 + 2 * day, t0 + 3 * day, t0 + 4 * day + pd.Timedelta(1, "s")],
            "customer_id": ["A", "A", "A", "A", "A"],
            "terminal_id": ["T", "T", "U", "T", "T"],
            "amount": [10.0, 20.0, 40.0, 80.0, 160.0],
            "label": [1, 0, 0, 0, 0],
        }
    )
    f = transaction_features(df, windows=(1, 2), delay_days=2)
    # Row 2 (t0 + 1 day): row 1 is exactly 1 day old, out of the 1-day window, in the 2-day.
    np.testing.assert_array_equal(f["customer_id_nb_tx_1day_window"], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(f["customer_id_nb_tx_2day_window"], [1, 2, 2, 2, 2])
    np.testing.assert_allclose(f["customer_id_avg_amount_2day_window"], [10, 15, 30, 60, 120])
    # Row 4 (t0 + 3 days, at T): t - D = t0 + 1 day. Row 2 is exactly D days old: in.
    # Row 1 is exactly D + 1 days old: out of the 1-day window, in the 2-day one.
    np.testing.assert_array_equal(f["terminal_id_nb_tx_1day_window"], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(f["terminal_id_nb_tx_2day_window"], [0, 0, 0, 2, 1])
    np.testing.assert_allclose(f["terminal_id_risk_2day_window"], [0, 0, 0, 0.5, 0])
    # Row 4's window ends on a genuine row: no run; its one fraud (10) over the mean (15).
    np.testing.assert_array_equal(f["terminal_id_fraud_streak_2day_window"], [0, 0, 0, 0, 0])
    np.testing.assert_allclose(
        f["terminal_id_last_fraud_amount_ratio_2day_window"], [0, 0, 0, 2 / 3, 0], rtol=1e-6
    )
    # Row 5 (t0 + 4 days + 1 s): its 2-day window (t0 + 1 s, t0 + 2 days + 1 s] at T holds
    # row 2 only; row 1, one second older than the window, is out.
    pd.testing.assert_frame_equal(
        f, reference_features(df, (1, 2), 2), check_exact=False, rtol=1e-6
    )


def test_same_time_rows_count_in_input_order() -> None:
    ts = pd.Timestamp("2026-05-01 12:00", tz="UTC")
    df = pd.DataFrame(
        {
            "ts": [ts, ts, ts],
            "customer_id": ["A", "A", "A"],
            "terminal_id": ["T", "T", "T"],
            "amount": [5.0, 7.0, 9.0],
        }
    )
    f = transaction_features(df)
    np.testing.assert_array_equal(f["customer_id_nb_tx_1day_window"], [1, 2, 3])
    np.testing.assert_allclose(f["customer_id_avg_amount_1day_window"], [5, 6, 7])
    g = transaction_features(df.iloc[::-1])
    np.testing.assert_array_equal(g["customer_id_nb_tx_1day_window"], [1, 2, 3])
    np.testing.assert_array_equal(f["customer_id_days_since_previous_tx"], [30, 0, 0])


def _handbook_recipe(df: pd.DataFrame) -> pd.DataFrame:
    """The handbook's own pandas recipe for its customer features (per customer: default
    sort by time, then time-based rolling count and mean)."""
    parts = []
    for _, g in df.groupby("customer_id", sort=False):
        g = g.sort_values("ts").set_index("ts", drop=False)
        out = pd.DataFrame(index=g.index)
        for w in (1, 7, 30):
            nb = g["amount"].rolling(f"{w}D").count()
            total = g["amount"].rolling(f"{w}D").sum()
            out[f"customer_id_nb_tx_{w}day_window"] = nb.to_numpy()
            out[f"customer_id_avg_amount_{w}day_window"] = (total / nb).to_numpy()
        out.index = g["row"].to_numpy()
        parts.append(out)
    return pd.concat(parts).sort_index()


def test_handbook_ties_replay_the_handbook_order() -> None:
    # Many rows of one customer at few distinct seconds: numpy's quicksort reorders ties
    # in groups of more than 16 rows.
    rng = np.random.default_rng(4)
    n = 400
    # Whole 6-hour steps over 40 days: many exact ties.
    seconds = rng.integers(0, 40 * 4, n) * 6 * 3_600
    df = pd.DataFrame(
        {
            "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(seconds, unit="s"),
            "customer_id": rng.integers(0, 3, n),
            "terminal_id": rng.integers(0, 5, n),
            "amount": np.round(rng.uniform(1, 200, n), 2),
        }
    )
    df = df.iloc[rng.permutation(n)].reset_index(drop=True)
    df["row"] = np.arange(n)
    assert df.duplicated(["customer_id", "ts"]).sum() > 100
    want = _handbook_recipe(df)
    got = transaction_features(df, ties="handbook")
    for col in want.columns:
        np.testing.assert_allclose(got[col], want[col], rtol=1e-6, err_msg=col)
    # The input order differs from the handbook's somewhere: the option has teeth.
    plain = transaction_features(df)
    assert (plain["customer_id_nb_tx_30day_window"] != got["customer_id_nb_tx_30day_window"]).any()
    with pytest.raises(ValueError, match="ties"):
        transaction_features(df, ties="random")
    with pytest.raises(ValueError, match="delay_days"):
        transaction_features(df, delay_days=0)


def test_features_do_not_depend_on_where_the_file_starts() -> None:
    # Amounts whose float sums round differently with different prefixes (0.1 + 0.2 ...),
    # and runs of equal amounts whose standard deviation must be exactly 0.
    df = simulate(40, 60, 80, seed=9)
    rng = np.random.default_rng(0)
    odd = rng.random(len(df)) < 0.4
    df.loc[odd, "amount"] = rng.choice([0.1, 0.2, 0.3, 1e-3, 12345.67], odd.sum())
    df.loc[df["customer_id"] == df["customer_id"].iloc[0], "amount"] = 0.7
    full = transaction_features(df)
    start = df["ts"].min()
    for cut_days in (1, 5, 13):
        part = df[df["ts"] >= start + pd.Timedelta(days=cut_days)]
        # Other customers and terminals dropped too: they must not matter either.
        part = part[part["customer_id"] % 3 != 1]
        g = transaction_features(part)
        warm = part["ts"] >= start + pd.Timedelta(days=cut_days + 37)
        idx = part.index[warm.to_numpy()]
        assert len(idx) > 300
        np.testing.assert_array_equal(g.loc[idx].to_numpy(), full.loc[idx].to_numpy())
    std = full.loc[
        df["customer_id"] == df["customer_id"].iloc[0], "customer_id_std_amount_30day_window"
    ]
    assert (std == 0).all()


def test_baseline_features_by_hand() -> None:
    # Windows 2 and 7 days: the baseline is the mean over (t - 7, t - 2], "large" is over
    # three times it, and large ones are counted over (t - 2, t].
    d0 = pd.Timestamp("2026-06-01 12:00", tz="UTC")
    hours = [0, 24, 96, 108, 120, 156]
    df = pd.DataFrame(
        {
            "ts": [d0 + pd.Timedelta(hours=h) for h in hours],
            "customer_id": "C",
            "terminal_id": ["T1", "T2", "T3", "T4", "T5", "T6"],
            "amount": [10.0, 20.0, 35.0, 50.0, 60.0, 12.0],
        }
    )
    f = transaction_features(df, windows=(2, 7))
    # Rows 3-5 see rows 1-2 (mean 15); row 6 (day 5 12:00 + 1.5 days) sees rows 1-4,
    # row 4 exactly 2 days old included.
    np.testing.assert_allclose(
        f["customer_id_amount_to_baseline_7day_window"],
        [1, 1, 35 / 15, 50 / 15, 60 / 15, 12 / 28.75],
        rtol=1e-6,
    )
    # Rows 4 and 5 are large (over 45). Row 6's window (t - 2, t] starts just after row 4.
    np.testing.assert_array_equal(f["customer_id_nb_large_tx_2day_window"], [0, 0, 0, 1, 2, 1])
    pd.testing.assert_frame_equal(f, reference_features(df, (2, 7)), check_exact=False, rtol=1e-6)
