"""fraudlens._xgb.dense_predict: XGBoost's dense prediction call made directly gives
``inplace_predict``'s values bit for bit, and a booster whose direct call differs is
scored by ``inplace_predict`` from then on."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from fraudlens import _xgb


def _booster(objective: str, classes: int = 2) -> xgb.Booster:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    y = rng.integers(0, classes, 300)
    params = {"objective": objective, "max_depth": 4, "nthread": 1, "seed": 0}
    if classes > 2:
        params["num_class"] = classes
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=20)


def _reference(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)


@pytest.mark.parametrize(
    ("objective", "classes"),
    [("binary:logistic", 2), ("reg:squarederror", 2), ("multi:softprob", 3)],
)
def test_direct_call_equals_inplace_predict(objective: str, classes: int) -> None:
    assert _xgb._direct_api() is not None  # this XGBoost has the entry points
    booster = _booster(objective, classes)
    rng = np.random.default_rng(1)
    for rows in (1, 2, 5, 64, 700):
        X = (rng.normal(size=(rows, 8)) * rng.choice([1e-3, 1.0, 1e6], (rows, 8))).astype(
            np.float32
        )
        X[rng.random(X.shape) < 0.15] = np.nan
        X = np.ascontiguousarray(X)
        for _ in range(2):  # the checked first call, then the direct one alone
            got = _xgb.dense_predict(booster, X)
            want = _reference(booster, X)
            assert got.dtype == np.float64
            assert got.shape == want.shape and got.tobytes() == want.tobytes()
    assert _xgb._CHECKED[booster] is True
    # the result is a copy: the next call does not change it
    X1 = np.ascontiguousarray(rng.normal(size=(3, 8)), dtype=np.float32)
    first = _xgb.dense_predict(booster, X1)
    kept = first.copy()
    _xgb.dense_predict(booster, np.ascontiguousarray(rng.normal(size=(3, 8)), dtype=np.float32))
    assert first.tobytes() == kept.tobytes()


def test_other_inputs_take_inplace_predict() -> None:
    booster = _booster("binary:logistic")
    X = np.random.default_rng(2).normal(size=(6, 8))
    for other in (X, np.asfortranarray(X.astype(np.float32))):  # float64; not C-contiguous
        got = _xgb.dense_predict(booster, other)
        assert got.tobytes() == _reference(booster, other).tobytes()
    assert booster not in _xgb._CHECKED


def test_a_direct_call_that_differs_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _booster("binary:logistic")
    real = _xgb._direct_api()
    assert real is not None
    calls = []

    def off_by_one(b: xgb.Booster, X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return real(b, X) + 1.0

    monkeypatch.setattr(_xgb, "_direct_api", lambda: off_by_one)
    X = np.ascontiguousarray(np.random.default_rng(3).normal(size=(4, 8)), dtype=np.float32)
    for _ in range(3):
        assert _xgb.dense_predict(booster, X).tobytes() == _reference(booster, X).tobytes()
    assert _xgb._CHECKED[booster] is False
    assert calls == [4]  # compared once, then never called again
