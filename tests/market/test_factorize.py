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


@pytest.mark.parametrize("n", [0, 5, 300, 600])
def test_pair_codes_equal_pandas_on_strings_numbers_and_missing_values(n: int) -> None:
    from fraudlens.market.pairs import _sorted_codes

    rng = np.random.default_rng(n)
    words = np.array(["acct-b", "acct-a", "ä", "Z", "a b"])
    cases = [
        pd.Series(words[rng.integers(0, len(words), n)], dtype="str"),
        pd.Series(rng.integers(0, 50, n)),
        pd.Series(["b", None, "a"] * (n // 3 + 1), dtype="str"),
    ]
    for col in cases:
        codes, uniques = _sorted_codes(col)
        want_codes, want_uniques = pd.factorize(col.astype(str), sort=True)
        assert codes.dtype == np.int64
        assert np.array_equal(codes, want_codes)
        assert list(uniques) == list(want_uniques)
