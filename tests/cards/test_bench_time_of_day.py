"""``bench/_cards_time_of_day.py``: every row is scored by a model that never saw its
block of hours."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from _services import bench_module  # type: ignore[import-not-found]


class _Recorder:
    """A stand-in model that remembers the hours it was fitted on and scores each row
    by whether its hour was among them (1.0) or not (0.0)."""

    fitted: ClassVar[list[set[int]]] = []

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Recorder:
        self.hours = set((X["Time"].to_numpy() // 3600).astype(int))
        _Recorder.fitted.append(self.hours)
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        h = (X["Time"].to_numpy() // 3600).astype(int)
        return np.array([float(v in self.hours) for v in h])


def test_each_block_is_scored_by_a_model_fitted_on_the_other_hours() -> None:
    bench = bench_module("_cards_time_of_day")
    X = pd.DataFrame({"Time": np.arange(0, 86_400, 600, dtype=float)})
    y = np.zeros(len(X))
    _Recorder.fitted = []
    scores = bench.held_out_scores(X, y, _Recorder, 3)
    assert len(_Recorder.fitted) == 8  # one model per 3-hour block
    assert all(len(h) == 21 for h in _Recorder.fitted)
    np.testing.assert_array_equal(scores, 0.0)  # no row's hour was seen by its model
