"""TradeBook: trades fetched after its index was built are searched beside the index,
with the answer a rebuilt index gives; short string columns factorised by numpy as
pandas does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.market import features
from fraudlens.market._bars import _factorize
from fraudlens.market.features import TradeBook
from fraudlens.market.simulate import simulate


def _fetcher(others: pd.DataFrame):  # type: ignore[no-untyped-def]
    def fetch(asked: pd.DataFrame) -> pd.DataFrame:
        # a superset of the mirrors: the asked symbols' trades of other accounts
        keep = others["symbol"].isin(set(asked["symbol"])) & ~others["account_id"].isin(
            set(asked["account_id"])
        )
        return others[keep].reset_index(drop=True)

    return fetch


@pytest.mark.parametrize("seed", [3, 4])
def test_candidates_after_a_later_fetch_equal_a_rebuilt_index(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    trades = simulate(300, seed=seed, days=2).trades
    ids = np.asarray(sorted(set(trades["account_id"])), dtype=object)
    # the book's own accounts: those of the first mirrored trades and a few more
    mine_ids = set(ids[::5])
    mine = trades[trades["account_id"].isin(mine_ids)].reset_index(drop=True)
    others = trades[~trades["account_id"].isin(mine_ids)].reset_index(drop=True)
    half = mine[mine["account_id"].isin(set(sorted(mine_ids)[: len(mine_ids) // 2]))]

    def run(pairwise_max: int) -> tuple[pd.DataFrame, TradeBook]:
        monkeypatch.setattr(features, "_PAIRWISE_MAX", pairwise_max)
        book = TradeBook(mine, fetch=_fetcher(others))
        book.mirrors(half)  # asks about half of the trades and builds the index
        return book.candidates(mine), book

    got, book = run(1 << 40)
    assert book._indexed < len(book._fetched)  # the later fetch was not indexed
    want, again = run(-1)
    assert again._indexed == len(again._fetched)  # this one rebuilt the index
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)
    # and the mirrors read afterwards come from the whole index
    at, acc = book.mirrors(mine)
    at2, acc2 = again.mirrors(mine)
    assert np.array_equal(at, at2) and np.array_equal(acc, acc2)


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
