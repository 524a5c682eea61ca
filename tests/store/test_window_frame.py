"""A window's rows cut on their columns before the frame is built: the same frame as
the whole frame's row selection (what account_windows did before)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.store.db import _TRADE_COLUMNS, _frame, _window_frame


def _rows(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2026-03-02").value // 1000
    us = base + rng.integers(0, 3 * 86_400 * 10**6, n)
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    return [
        (f"t{i}", f"a{rng.integers(0, 5)}", "BTC", t.replace("T", " "), "buy", 1.5 + i, 2.0)
        for i, t in enumerate(text.tolist())
    ]


@pytest.mark.parametrize("cut", ["some", "none", "all"])
def test_window_frame_equals_the_frame_cut(cut: str) -> None:
    rows = _rows(300, 3)
    frame = _frame(rows, _TRADE_COLUMNS)
    mid = pd.Timestamp("2026-03-03").value
    at = {"some": mid, "none": 0, "all": 2**62}[cut]
    starts = {f"a{i}": at + i * 10**9 for i in range(5)}
    keep = pd.DatetimeIndex(frame["ts"]).as_unit("ns").asi8 >= np.array(
        [starts[a] for a in frame["account_id"]], dtype=np.int64
    )
    want = frame[keep].reset_index(drop=True)
    got = _window_frame(rows, starts)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert list(got.dtypes) == list(want.dtypes)
    assert (0 < len(got) < len(rows)) == (cut == "some")


def test_window_frame_of_no_rows() -> None:
    pd.testing.assert_frame_equal(_window_frame([], {}), _frame([], _TRADE_COLUMNS))
