"""The counterparty lookup's statements: the store's candidates equal a brute-force search
of the stored trades (more boxes than one statement takes, several symbols and sides), and
on MariaDB the statement grouped by symbol and side returns what the flat OR of whole boxes
returns, whatever the boxes' order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _services import DATABASES, MARIADB_URL, POSTGRES_URL  # type: ignore[import-not-found]
from fraudlens.store import Store, open_store
from fraudlens.store.db import _MIRROR_CHUNK, _mirror_sql, _mysql_mirror

pytest.importorskip("sqlalchemy")

T0 = pd.Timestamp("2026-03-02T14:30:00Z")
COLS = ["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]
SYMBOLS = ["AAA-USD", "BBB-USD", "CCC-BTC", "DDD-USD", "EEE-ETH"]
ASKING = [f"acct{i:02d}" for i in range(8)]


def _book(n: int = 1500, seed: int = 5) -> pd.DataFrame:
    """Trades of 40 accounts on five symbols over half an hour, whole seconds, prices and
    quantities from small sets: many trades mirror others."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "trade_id": [f"t{i:05d}" for i in range(n)],
            "account_id": [f"acct{a:02d}" for a in rng.integers(0, 40, n)],
            "symbol": rng.choice(SYMBOLS, n),
            "ts": T0 + pd.to_timedelta(rng.integers(0, 1800, n), unit="s"),
            "side": rng.choice(["buy", "sell"], n),
            "price": rng.choice([1.0, 1.5, 2.0, 2.25, 3.0], n),
            "quantity": rng.choice([10.0, 20.0, 30.0, 40.0], n),
        }
    )


def _brute_force(book: pd.DataFrame, asked: pd.DataFrame) -> set[str]:
    """Trade ids of other accounts' trades on the other side of an asked trade: same
    symbol and (exactly) price and quantity, at most 60 s apart."""
    mine = set(asked["account_id"])
    found = set()
    for q in asked.itertuples():
        hit = book[
            (book["symbol"] == q.symbol)
            & (book["side"] != q.side)
            & (book["price"] == q.price)
            & (book["quantity"] == q.quantity)
            & ((book["ts"] - q.ts).abs() <= pd.Timedelta(seconds=60))
            & ~book["account_id"].isin(mine)
        ]
        found |= set(hit["trade_id"])
    return found


@pytest.fixture(params=DATABASES)
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, pd.DataFrame]]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'store.db'}"])
    else:
        from test_mirror_candidates import _server_db  # type: ignore[import-not-found]

        base = POSTGRES_URL if request.param == "postgresql" else MARIADB_URL
        urls = _server_db(base, request.param)
    url = next(urls)
    store = open_store(url)
    try:
        store.upgrade()
        book = _book()
        store.load_trades(book)
        yield store, book
    finally:
        store.close()
        for _ in urls:  # drops a server's database
            pass


def test_candidates_equal_a_brute_force_search(loaded: tuple[Store, pd.DataFrame]) -> None:
    store, book = loaded
    asked = book[book["account_id"].isin(ASKING)].reset_index(drop=True)
    # more distinct boxes than one statement holds: the lookup runs in chunks
    assert len(asked.drop_duplicates(["symbol", "side", "price", "quantity"])) > 30
    assert len(asked) > _MIRROR_CHUNK
    expected = _brute_force(book, asked)
    assert len(expected) > 100
    got = store.mirror_candidates(asked)
    assert set(got["trade_id"]) == expected
    assert got["trade_id"].is_unique
    # each as stored, sorted by time then id
    stored = book.set_index("trade_id").loc[got["trade_id"]]
    assert (got["account_id"].to_numpy() == stored["account_id"].to_numpy()).all()
    assert (got["price"].to_numpy() == stored["price"].to_numpy()).all()
    assert (got["ts"].to_numpy() == stored["ts"].to_numpy()).all()
    assert got.sort_values(["ts", "trade_id"]).index.equals(got.index)


def test_the_grouped_statement_takes_boxes_in_order() -> None:
    boxes = [
        ("A", "buy", 1, 2, 3, 4, 5, 6),
        ("A", "buy", 7, 8, 9, 10, 11, 12),
        ("B", "sell", 13, 14, 15, 16, 17, 18),
        ("A", "buy", 19, 20, 21, 22, 23, 24),
    ]
    sql, params = _mysql_mirror(boxes)
    # groups of consecutive boxes: A/buy (2), B/sell (1), A/buy again (1)
    assert params == (
        "A",
        "buy",
        *range(1, 13),
        "B",
        "sell",
        *range(13, 19),
        "A",
        "buy",
        *range(19, 25),
    )
    assert sql.count("%s") == len(params) == 4 * 6 + 3 * 2
    assert sql.count("symbol = %s AND side = %s") == 3
    assert "FORCE INDEX (ix_trades_mirror)" in sql


@pytest.mark.services
def test_mariadb_grouped_statement_returns_the_flat_statements_rows() -> None:
    from test_mirror_candidates import _server_db  # type: ignore[import-not-found]

    urls = _server_db(MARIADB_URL, "mariadb")
    store = open_store(next(urls))
    try:
        store.upgrade()
        book = _book(seed=9)
        store.load_trades(book)
        rng = random.Random(3)
        boxes = []
        for q in book[book["account_id"].isin(ASKING)].itertuples():
            t = q.ts.tz_localize(None).to_pydatetime()
            boxes.append(
                (
                    q.symbol,
                    "sell" if q.side == "buy" else "buy",
                    t - pd.Timedelta(seconds=60),
                    t + pd.Timedelta(seconds=60),
                    q.price,
                    q.price,
                    q.quantity - 1e-9,
                    q.quantity + 1e-9,
                )
            )
        rng.shuffle(boxes)  # symbols and sides interleaved: many small groups
        boxes = boxes[:200]
        with store.engine.connect() as conn:
            flat = conn.exec_driver_sql(
                _mirror_sql(len(boxes), "format"), tuple(v for b in boxes for v in b)
            ).all()
            for part in (boxes, sorted(boxes)):
                sql, params = _mysql_mirror(part)
                grouped = conn.exec_driver_sql(sql, params).all()
                assert sorted(grouped) == sorted(flat)
        assert len(flat) > 50
    finally:
        store.close()
        for _ in urls:
            pass
