"""Short string columns (symbols, account ids) are coded by a dict of their strings
exactly as pandas' factorize codes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.market._bars import _factorize


@pytest.mark.parametrize("sort", [False, True])
def test_short_string_columns_factorise_as_pandas(sort: bool) -> None:
    rng = np.random.default_rng(0)
    words = np.array(["b", "a", "ä", "B", "ab", "Z", "é", "a b", "", "\U0001f600", "z"])
    for n in (0, 1, 7, 300, 512, 513, 900):
        col = pd.Series(words[rng.integers(0, len(words), n)], dtype="str")
        codes, uniques = _factorize(col, sort=sort)
        want_codes, want_uniques = pd.factorize(col, sort=sort)
        assert np.array_equal(codes, want_codes)
        assert list(uniques) == list(want_uniques)
    # a missing value: pandas' codes (-1 for it)
    col = pd.Series(["b", None, "a", "b"], dtype="str")
    codes, uniques = _factorize(col, sort=sort)
    want_codes, want_uniques = pd.factorize(col, sort=sort)
    assert np.array_equal(codes, want_codes) and list(uniques) == list(want_uniques)
