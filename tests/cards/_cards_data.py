"""Small card data sets shared by the detector, evaluation and CLI tests (built once)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.cards.data import CardTable, load_table, time_split, time_split_hours, validate_frame
from fraudlens.cards.simulate import simulate

ULB_DAY1 = Path(__file__).resolve().parents[3] / "shared/data/ulb_creditcard_day1.csv"
SIM_START = pd.Timestamp("2026-04-01", tz="UTC")


@lru_cache(maxsize=1)
def _ulb() -> CardTable:
    return load_table(ULB_DAY1, require_label=True)


def ulb() -> tuple[CardTable, np.ndarray, np.ndarray]:
    """The real ULB day-1 table, split into its first 16 hours and the rest."""
    if not ULB_DAY1.is_file():
        pytest.skip(f"the ULB day-1 file is not at {ULB_DAY1}")
    table = _ulb()
    train, test = time_split_hours(table, 16)
    return table, train, test


@lru_cache(maxsize=1)
def sim_frame() -> pd.DataFrame:
    """About 89,000 simulated transactions over 45 days (1,000 cards, 2,000 terminals)."""
    return simulate(
        1000,
        2000,
        45,
        seed=3,
        compromised_terminals_per_day=1,
        compromised_customers_per_day=1,
    )


@lru_cache(maxsize=1)
def _sim_table() -> CardTable:
    raw = sim_frame().drop(columns=["scenario", "tx_time_seconds", "tx_time_days"])
    return validate_frame(raw, "raw", "<simulated>")


def sim() -> tuple[CardTable, np.ndarray, np.ndarray]:
    """Simulated raw transactions with the handbook's 7/7/7 split from day 20."""
    table = _sim_table()
    train, test = time_split(table, start=SIM_START + pd.Timedelta(days=20))
    return table, train, test
