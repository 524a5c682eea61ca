"""The fast membership test answers as pandas' isin does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens._isin import isin


@pytest.mark.parametrize("dtype", [object, "str"])
def test_isin_matches_pandas_on_strings(dtype: object) -> None:
    rng = np.random.default_rng(0)
    values = pd.Series([f"t-{i:05d}" for i in rng.integers(0, 3000, 2000)], dtype=dtype)
    test = pd.Series([f"t-{i:05d}" for i in rng.integers(0, 3000, 1500)], dtype=dtype)
    got = isin(values, test)
    assert got.dtype == bool and got.any() and not got.all()
    np.testing.assert_array_equal(got, values.isin(test).to_numpy())
    for other in (test.tolist(), test.to_numpy(), pd.Index(test), pd.unique(test), []):
        np.testing.assert_array_equal(isin(values, other), values.isin(other).to_numpy())


def test_isin_falls_back_to_pandas_off_strings() -> None:
    cases = [
        (pd.Series(["a", None, "b"], dtype=object), ["a", None]),
        (pd.Series([1, 2, 3]), [2]),
        (pd.Series(["a", 1, "b"], dtype=object), [1, "b"]),
        (pd.Series(["é", "e", "ü"]), ["é", "ü"]),
    ]
    for values, test in cases:
        np.testing.assert_array_equal(isin(values, test), values.isin(test).to_numpy())


@pytest.mark.parametrize("dtype", [object, "str"])
def test_equals_matches_pandas(dtype: object) -> None:
    from fraudlens._isin import equals

    values = pd.Series(["buy", "sell", None, "BUY", "buy ", "buy"], dtype=dtype)
    got = equals(values, "buy")
    assert got.dtype == bool
    np.testing.assert_array_equal(got, (values == "buy").to_numpy(dtype=bool))
    np.testing.assert_array_equal(equals(values[:0], "buy"), np.zeros(0, dtype=bool))
    numbers = pd.Series([1, 2, 1])
    np.testing.assert_array_equal(equals(numbers, "1"), np.zeros(3, dtype=bool))  # type: ignore[arg-type]
