"""TradeBook.candidates after the feature pass built the book: what the ask fetches is
searched on its own (the whole book's index is not built again), with the same rows as
a search of the whole book."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt

from fraudlens.market.features import TradeBook


def _trades(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-03-02", tz="UTC")
    return pd.DataFrame(
        {
            "trade_id": [f"t{seed}-{i}" for i in range(n)],
            "account_id": rng.choice(["A", "B", "C", "D", "E"], n),
            "symbol": rng.choice(["X", "Y"], n),
            "ts": t0 + pd.to_timedelta(rng.integers(0, 900, n), unit="s"),
            "side": rng.choice(["buy", "sell"], n),
            "price": rng.choice([101.25, 101.25 * (1 + 3e-10), 101.5], n),
            "quantity": rng.choice([1.0, 2.0, 2.0 + 1e-12], n),
        }
    )


def _book(book: pd.DataFrame) -> TradeBook:
    held = book[book["account_id"].isin(["A", "B"])].reset_index(drop=True)
    rest = book[~book["account_id"].isin(["A", "B"])].reset_index(drop=True)
    calls: list[int] = []

    def fetch(trades: pd.DataFrame) -> pd.DataFrame:
        # the first ask brings half of the others' trades, the second all of them (a
        # trade may come back twice, as from the store)
        calls.append(len(trades))
        return rest.iloc[: len(rest) // 2] if len(calls) == 1 else rest

    return TradeBook(held, fetch=fetch)


def test_candidates_of_a_built_book_equal_a_whole_search_without_a_rebuild() -> None:
    book = _trades(400, 5)
    queries = book[book["account_id"].isin(["A", "B"])].reset_index(drop=True)
    fast, whole = _book(book), _book(book)
    for b in (fast, whole):
        b.mirrors(queries.iloc[:60])  # the feature pass: some trades asked, book built
        assert b._index is not None
    whole._index = None  # the whole book's index built again, as before
    want = whole.candidates(queries)
    got = fast.candidates(queries)
    assert len(want) > 20
    assert got["trade_id"].tolist() == want["trade_id"].tolist()
    pdt.assert_frame_equal(got, want, check_index_type="equiv")
    # the book was not built again for it (built when next searched)
    assert fast._index is None
    at, other = fast.mirrors(queries)
    at2, other2 = whole.mirrors(queries)
    assert at.tolist() == at2.tolist() and other.tolist() == other2.tolist()


def test_candidates_when_the_ask_fetches_nothing_new() -> None:
    book = _trades(200, 7)
    queries = book[book["account_id"].isin(["A", "B"])].reset_index(drop=True)
    fast, whole = _book(book), _book(book)
    for b in (fast, whole):
        b.mirrors(queries)  # every trade asked already
    whole._index = None
    pdt.assert_frame_equal(
        fast.candidates(queries), whole.candidates(queries), check_index_type="equiv"
    )
