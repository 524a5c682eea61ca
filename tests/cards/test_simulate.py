"""The card-transaction simulator (Fraud Detection Handbook model)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from fraudlens.cards.simulate import SIM_COLUMNS, simulate


@pytest.fixture(scope="module")
def handbook() -> tuple[pd.DataFrame, float]:
    """The handbook-size simulation (about 1.75 M transactions), timed."""
    t0 = time.perf_counter()
    df = simulate(5000, 10000, 183, seed=0)
    return df, time.perf_counter() - t0


def test_handbook_size_fraud_rate_and_scenarios(handbook: tuple[pd.DataFrame, float]) -> None:
    df, seconds = handbook
    assert tuple(df.columns) == SIM_COLUMNS
    # The handbook reports 1,754,155 transactions and 0.84 % fraud for this size.
    assert 1_650_000 < len(df) < 1_850_000
    assert 0.007 <= df["label"].mean() <= 0.009
    counts = df["scenario"].value_counts()
    assert set(counts.index) == {0, 1, 2, 3}
    # Compromised terminals give the most frauds, then compromised cards, then big amounts.
    assert counts[2] > counts[3] > counts[1] > 100
    assert seconds < 60


def test_rows_are_well_formed(handbook: tuple[pd.DataFrame, float]) -> None:
    df, _ = handbook
    assert (df["amount"] > 0).all()
    assert df["ts"].is_monotonic_increasing
    np.testing.assert_array_equal(df["transaction_id"], np.arange(len(df)))
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["ts"].min() >= pd.Timestamp("2026-04-01", tz="UTC")
    assert df["ts"].max() < pd.Timestamp("2026-04-01", tz="UTC") + pd.Timedelta(days=183)
    secs = (df["ts"] - pd.Timestamp("2026-04-01", tz="UTC")).dt.total_seconds().to_numpy()
    np.testing.assert_array_equal(secs, df["tx_time_seconds"])
    np.testing.assert_array_equal(df["tx_time_seconds"] // 86_400, df["tx_time_days"])
    # Times of day are normal around noon (std 20,000 s).
    tod = df["tx_time_seconds"] % 86_400
    assert abs(tod.mean() - 43_200) < 500 and 17_000 < tod.std() < 20_000
    assert ((df["scenario"] > 0) == (df["label"] == 1)).all()
    assert (df.loc[df["scenario"] == 1, "amount"] > 220).all()
    assert (df.loc[df["scenario"] == 0, "amount"] <= 220).all()
    # Compromised cards: amounts x 5, so their mean is far above the genuine mean.
    assert (
        df.loc[df["scenario"] == 3, "amount"].mean()
        > 3 * df.loc[df["scenario"] == 0, "amount"].mean()
    )
    assert df["customer_id"].nunique() > 4900 and df["terminal_id"].nunique() > 9900


def test_compromised_terminals_take_fraud_for_28_days(handbook: tuple[pd.DataFrame, float]) -> None:
    df, _ = handbook
    s2 = df[df["scenario"] == 2]
    span = s2.groupby("terminal_id")["tx_time_days"].agg(["min", "max"])
    # 2 terminals a day for 183 days, a few drawn twice.
    assert 330 <= len(span) <= 366
    # For terminals compromised once, every transaction between the first and last fraud
    # day is fraud: nothing genuine gets through during a compromise.
    once = span[span["max"] - span["min"] <= 27]
    assert len(once) > 300
    rows = df[df["terminal_id"].isin(once.index)].join(once, on="terminal_id")
    inside = rows[(rows["tx_time_days"] >= rows["min"]) & (rows["tx_time_days"] <= rows["max"])]
    assert len(inside) > 10 * len(once)
    assert (inside["label"] == 1).all()
    outside = rows[
        (rows["tx_time_days"] < rows["min"]) | (rows["tx_time_days"] >= rows["min"] + 28)
    ]
    assert (outside["scenario"] != 2).all() and (outside["label"] == 0).mean() > 0.95


def test_deterministic_per_seed() -> None:
    a = simulate(100, 200, 10, seed=7)
    b = simulate(100, 200, 10, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = simulate(100, 200, 10, seed=8)
    assert len(a) != len(c) or not a["amount"].equals(c["amount"])


def test_small_size_is_fast_and_reports_progress() -> None:
    seen: list[int] = []
    t0 = time.perf_counter()
    df = simulate(200, 400, 30, seed=1, progress=seen.append, start="2026-01-05")
    assert time.perf_counter() - t0 < 1.0
    assert sum(seen) == 30 and len(seen) >= 2
    assert df["ts"].min() >= pd.Timestamp("2026-01-05", tz="UTC")
    assert len(df) > 5000 and (df["label"] == 1).any()


def test_fewer_compromises_lower_the_fraud_rate() -> None:
    base = simulate(500, 1000, 60, seed=2)
    calm = simulate(
        500, 1000, 60, seed=2, compromised_terminals_per_day=0, compromised_customers_per_day=0
    )
    assert set(calm["scenario"].unique()) <= {0, 1}
    assert calm["label"].mean() < base["label"].mean() / 3


def test_no_terminal_in_reach_means_no_transactions() -> None:
    df = simulate(50, 5, 10, seed=0, radius=0.001)
    assert len(df) == 0
    assert tuple(df.columns) == SIM_COLUMNS


@pytest.mark.parametrize("name", ["transactions.csv", "transactions.csv.gz", "t.parquet"])
def test_a_full_disk_keeps_the_old_file_and_names_it(full_disk_folder, name: str) -> None:  # type: ignore[no-untyped-def]
    """``cards simulate --out DIR`` onto a full disk left a truncated transactions.csv,
    whose torn last row the next ``cards train`` refused (or whose rows it silently
    lost, when the cut fell between rows). The file is now written whole or not at all."""
    from _disk import fill  # type: ignore[import-not-found]
    from fraudlens.cards.simulate import write_transactions

    path = full_disk_folder / name
    write_transactions(simulate(5, 5, 2, seed=1), path)
    before = path.read_bytes()
    big = simulate(300, 300, 30, seed=2)
    filler = fill(full_disk_folder, leave=64 << 10)
    with pytest.raises(OSError) as info:
        write_transactions(big, path)
    assert info.value.errno == 28 and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in full_disk_folder.iterdir() if p.name != "filler"] == [name]
    filler.unlink()
    write_transactions(big, path)
    back = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
    assert len(back) == len(big)
