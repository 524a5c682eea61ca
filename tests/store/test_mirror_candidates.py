"""Counterparty lookup in the store and value moved on risk events, on SQLite, PostgreSQL
and MariaDB.

Each server test works in a database of its own (created and dropped here), so it never
touches the tables other tests use at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _services import DATABASES, MARIADB_URL, POSTGRES_URL, unavailable  # type: ignore[import-not-found]
from fraudlens.errors import DataError
from fraudlens.market.pairs import account_evidence
from fraudlens.store import RiskEvent, Store, open_store

pytest.importorskip("sqlalchemy")

T0 = pd.Timestamp("2026-03-02T14:30:00Z")
COLS = ["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]


def _server_db(base_url: str, kind: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"fl_pairs_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # any failure to reach the server
        admin.dispose()
        unavailable(f"{kind} is unreachable: {exc}")
    url = base_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=DATABASES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = POSTGRES_URL if request.param == "postgresql" else MARIADB_URL
    yield from _server_db(base, request.param)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.upgrade()
    yield s
    s.close()


def book(rows: list[tuple]) -> pd.DataFrame:
    """Trades from ``(trade_id, account, symbol, seconds after T0, side, price, qty)``."""
    return pd.DataFrame(
        [
            (i, a, s, T0 + pd.Timedelta(seconds=sec), side, p, q)
            for i, a, s, sec, side, p, q in rows
        ],
        columns=COLS,
    )


def _klines(symbol: str, low: float, high: float, n: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": [T0 + pd.Timedelta(minutes=5 * i) for i in range(n)],
            "open": low,
            "high": high,
            "low": low,
            "close": high,
            "volume": 1.0,
        }
    )


def test_candidates_are_opposite_side_same_price_and_quantity_near_in_time(store: Store) -> None:
    tiny, big = 1.2345e-8, 98765.4
    trades = book(
        [
            # the account checked
            ("a1", "V", "X", 10, "buy", 13.0, 4.0),
            ("a2", "V", "X", 320, "sell", 9.0, 4.0),
            ("a3", "V", "COIN", 30, "buy", tiny, 1e6),
            ("a4", "V", "BIG", 40, "sell", big, 0.002),
            # mirrors: opposite side, equal price and quantity, within a minute
            ("b1", "B", "X", 10, "sell", 13.0, 4.0),
            ("b2", "B", "X", 350, "buy", 9.0, 4.0),
            ("b3", "C", "COIN", 89, "sell", tiny, 1e6),
            ("b4", "D", "BIG", 40, "buy", big, 0.002),
            # near misses
            ("n1", "M", "X", 320, "sell", 9.0, 4.0),  # same side
            ("n2", "M", "X", 10, "sell", 13.01, 4.0),  # a tick away
            ("n3", "M", "X", 10, "sell", 13.0, 4.5),  # other quantity
            ("n4", "M", "X", 71, "sell", 13.0, 4.0),  # 61 s later
            ("n5", "M", "Y", 10, "sell", 13.0, 4.0),  # other symbol
            ("n6", "M", "COIN", 30, "sell", tiny * (1 + 1e-4), 1e6),  # tiny, a tick away
            ("n7", "M", "BIG", 40, "buy", big + 0.1, 0.002),  # large, a tick away
            ("n8", "V", "X", 12, "sell", 13.0, 4.0),  # the account's own trade
        ]
    )
    store.load_trades(trades)
    mine = trades[trades["account_id"] == "V"]
    got = store.mirror_candidates(mine)
    assert list(got.columns) == COLS
    assert sorted(got["trade_id"]) == ["b1", "b2", "b3", "b4"]
    # prices and times come back exactly (the matcher then finds every mirror)
    assert got.set_index("trade_id").loc["b3", "price"] == tiny
    assert got.set_index("trade_id").loc["b4", "price"] == big
    assert got["ts"].dtype == "datetime64[ns, UTC]"
    assert store.mirror_candidates(mine, max_gap=timedelta(seconds=20))["trade_id"].tolist() == [
        "b1",
        "b4",
    ]


def test_candidates_of_runs_fetch_nothing_between(store: Store) -> None:
    # the checked account trades the same price and quantity twice, an hour apart: a
    # mirror-like trade half-way between is more than max_gap from both and is not fetched
    trades = book(
        [
            ("a1", "V", "X", 0, "buy", 5.0, 1.0),
            ("a2", "V", "X", 3600, "buy", 5.0, 1.0),
            ("b1", "B", "X", 1800, "sell", 5.0, 1.0),
            ("b2", "B", "X", 3650, "sell", 5.0, 1.0),
            ("b3", "B", "X", 90, "sell", 5.0, 1.0),
        ]
    )
    store.load_trades(trades)
    got = store.mirror_candidates(trades[trades["account_id"] == "V"])
    assert got["trade_id"].tolist() == ["b2"]


def test_a_candidate_inside_two_boxes_comes_back_once(store: Store) -> None:
    # two checked trades whose prices differ by less than the tolerance make two boxes
    # (one per distinct price) that overlap: the trade inside both is returned once
    p = 100.0
    trades = book(
        [
            ("a1", "V", "X", 10, "buy", p, 1.0),
            ("a2", "V", "X", 12, "buy", p * (1 + 5e-10), 1.0),
            ("b1", "B", "X", 11, "sell", p * (1 + 2e-10), 1.0),
            ("b2", "B", "X", 40, "sell", p, 1.0),
        ]
    )
    store.load_trades(trades)
    got = store.mirror_candidates(trades[trades["account_id"] == "V"])
    assert got["trade_id"].tolist() == ["b1", "b2"]  # each once, by time


def test_pinned_calls_share_one_connection_and_give_it_up_on_failure(store: Store) -> None:
    import sqlalchemy as sa

    trades = book(
        [
            ("v1", "V", "X", 10, "buy", 13.0, 4.0),
            ("b1", "B", "X", 10, "sell", 13.0, 4.0),
        ]
    )
    store.load_klines(_klines("X", 8.0, 14.0))
    store.load_trades(trades)
    alone = store.account_windows(["V"]).trades
    with store.pinned():
        pinned = store._pinned_connection()
        # a SQLite file too: each checkout is a ping and each return a rollback
        assert pinned is not None
        data = store.account_windows(["V"])
        pd.testing.assert_frame_equal(data.trades, alone)
        assert store.mirror_candidates(data.trades)["trade_id"].tolist() == ["b1"]
        assert store._pinned_connection() is pinned
        # reads began a transaction on the pinned connection: the write still commits;
        # on a server it joins the reads' transaction, one COMMIT for both
        commits: list[object] = []

        def committed(conn: object) -> None:
            commits.append(conn)

        sa.event.listen(store.engine, "commit", committed)
        assert store.add_risk_events([_event("V")]) == 1
        sa.event.remove(store.engine, "commit", committed)
        on_pinned = [c for c in commits if c is pinned]  # (SQLite's ANALYZE has its own)
        assert len(on_pinned) == (2 if store.dialect == "sqlite" else 1)
        assert not pinned.in_transaction()
        # a failing statement gives the connection up; later calls take fresh ones
        with pytest.raises(sa.exc.DBAPIError), store._connect() as conn:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
        assert store._pinned_connection() is None
        assert store.mirror_candidates(data.trades)["trade_id"].tolist() == ["b1"]
    assert store._pinned_connection() is None
    assert store.add_risk_events([_event("V")]) == 0  # committed above: the key is taken
    assert store.counts()["risk_events"] == 1


def test_a_lingering_pin_keeps_its_connection_for_the_next_block(store: Store) -> None:
    import sqlalchemy as sa

    store.load_klines(_klines("X", 8.0, 14.0))
    store.load_trades(book([("v1", "V", "X", 10, "buy", 13.0, 4.0)]))
    checkouts: list[object] = []

    def checked_out(*args: object) -> None:
        checkouts.append(args)

    sa.event.listen(store.engine, "checkout", checked_out)
    with store.pinned(linger=60):
        first = store._pinned_connection()
        assert first is not None
        assert len(store.account_windows(["V"]).trades) == 1  # reads begin a transaction
    # kept, its reads' transaction ended (no snapshot or lock held between blocks)
    assert store._pinned_connection() is None
    assert not first.closed and not first.in_transaction()
    with store.pinned(linger=60):
        assert store._pinned_connection() is first
        assert len(store.account_windows(["V"]).trades) == 1
    assert len(checkouts) == 1  # no second checkout (no ping, no rollback on return)
    checkouts.clear()
    # a block that raises keeps nothing; the next block takes a fresh connection
    with pytest.raises(RuntimeError), store.pinned(linger=60):
        assert store._pinned_connection() is first
        raise RuntimeError("bad batch")
    assert first.closed
    with store.pinned(linger=60):
        second = store._pinned_connection()
        assert second is not None and second is not first
    assert len(checkouts) == 1
    # a block after the linger (here none) gives the kept connection back first
    with store.pinned():
        assert store._pinned_connection() is not second
    assert second.closed
    with store.pinned(linger=60):
        third = store._pinned_connection()
    assert third is not None and not third.closed
    store.close()  # closes the kept connection too
    assert third.closed
    sa.event.remove(store.engine, "checkout", checked_out)


def test_a_failed_write_after_pinned_reads_rolls_back_and_gives_the_connection_up(
    store: Store,
) -> None:
    import sqlalchemy as sa

    store.load_klines(_klines("X", 8.0, 14.0))
    store.load_trades(book([("v1", "V", "X", 10, "buy", 13.0, 4.0)]))
    with store.pinned():
        assert len(store.account_windows(["V"]).trades) == 1  # reads begin a transaction
        with pytest.raises(sa.exc.DBAPIError), store._begin() as conn:
            conn.execute(sa.text("DELETE FROM trades"))
            conn.exec_driver_sql("SELECT * FROM no_such_table")
        assert store._pinned_connection() is None
        assert len(store.account_windows(["V"]).trades) == 1
    assert store.counts()["trades"] == 1


def test_empty_and_bad_arguments(store: Store) -> None:
    empty = book([])
    assert store.mirror_candidates(empty).empty
    with pytest.raises(DataError):
        store.mirror_candidates(empty, max_gap=timedelta(seconds=-1))


def test_counterparty_found_from_the_store(store: Store) -> None:
    # V buys at the high from B and sells back at the low; B is not among the checked
    trades = book(
        [
            ("v1", "V", "X", 10, "buy", 13.0, 4.0),
            ("b1", "B", "X", 10, "sell", 13.0, 4.0),
            ("v2", "V", "X", 320, "sell", 9.0, 4.0),
            ("b2", "B", "X", 320, "buy", 9.0, 4.0),
            ("o1", "O", "X", 500, "buy", 10.0, 1.0),
        ]
    )
    store.load_klines(_klines("X", 8.0, 14.0))
    store.load_trades(trades)
    data = store.account_windows(["V"])
    assert set(data.trades["account_id"]) == {"V"}
    alone = account_evidence(data.trades, data.klines)
    assert alone.loc["V", "counterparty"] is None
    context = store.mirror_candidates(data.trades)
    ev = account_evidence(pd.concat([data.trades, context], ignore_index=True), data.klines)
    assert ev.loc["V", "counterparty"] == "B"
    assert ev.loc["V", "value_moved"] == pytest.approx(16.0)
    assert ev.loc["V", "counterparty_value_moved"] == pytest.approx(16.0)


def _event(account: str, **extra: object) -> RiskEvent:
    end = T0.to_pydatetime()
    return RiskEvent(
        account_id=account,
        score=0.97,
        event_threshold=0.9,
        model_version="market-features:v0001",
        window_start=end - timedelta(hours=24),
        window_end=end,
        details={"counterparty": extra.get("counterparty")},
        **extra,  # type: ignore[arg-type]
    )


def test_risk_events_store_value_moved_and_counterparty(store: Store) -> None:
    assert (
        store.add_risk_events(
            [
                _event("V", value_moved=16.0, counterparty="B"),
                _event("W", value_moved=1234.5, counterparty=None),
                _event("Z"),
            ]
        )
        == 3
    )
    rows, total = store.list_risk_events(limit=10)
    assert total == 3
    by = {r["account_id"]: r for r in rows}
    assert (by["V"]["value_moved"], by["V"]["counterparty"]) == (16.0, "B")
    assert (by["W"]["value_moved"], by["W"]["counterparty"]) == (1234.5, None)
    assert (by["Z"]["value_moved"], by["Z"]["counterparty"]) == (None, None)
    one = store.get_risk_event(by["V"]["id"])
    assert one is not None and one["value_moved"] == 16.0 and one["counterparty"] == "B"


def test_risk_event_checks_the_new_fields() -> None:
    with pytest.raises(DataError, match="value_moved"):
        _event("V", value_moved=float("nan"))
    with pytest.raises(DataError, match="counterparty"):
        _event("V", counterparty="bad\nid")


def test_migration_0004_up_and_down(store_url: str) -> None:
    import sqlalchemy as sa

    s = open_store(store_url)
    try:
        s.upgrade()
        cols = {c["name"] for c in sa.inspect(s.engine).get_columns("risk_events")}
        assert {"value_moved", "counterparty"} <= cols
        idx = {i["name"] for i in sa.inspect(s.engine).get_indexes("trades")}
        # 0009 replaced 0004's (symbol, ts) by a covering index that starts with it
        assert "ix_trades_mirror" in idx and "ix_trades_symbol_ts" not in idx
        s.downgrade("0008")
        idx = {i["name"] for i in sa.inspect(s.engine).get_indexes("trades")}
        assert "ix_trades_symbol_ts" in idx and "ix_trades_mirror" not in idx
        s.downgrade("0003")
        cols = {c["name"] for c in sa.inspect(s.engine).get_columns("risk_events")}
        assert not {"value_moved", "counterparty"} & cols
        idx = {i["name"] for i in sa.inspect(s.engine).get_indexes("trades")}
        assert "ix_trades_symbol_ts" not in idx and "ix_trades_mirror" not in idx
        s.upgrade()
        assert s.current_revision() == s.head_revision()
        # the migrations and the table models agree
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        from fraudlens.store import Base

        with s.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = [
                d for d in compare_metadata(ctx, Base.metadata) if "alembic_version" not in str(d)
            ]
        assert diff == []
    finally:
        s.close()


def test_an_account_of_the_batch_is_found_beyond_its_own_window(store: Store) -> None:
    # B took the other side of both of V's legs (V bought at the bars' high and sold at
    # their low), then traded again 30 h later: B's own
    # last 24 h no longer hold those trades, but V's window does. Scored in one batch
    # (the worker's case), V still finds B, as it does in the file of the same trades.
    from fraudlens.market.data import MarketData, window
    from fraudlens.market.features import account_features

    later = 30 * 3600
    trades = book(
        [
            ("v1", "V", "X", 10, "buy", 14.0, 4.0),
            ("b1", "B", "X", 10, "sell", 14.0, 4.0),
            ("v2", "V", "X", 320, "sell", 8.0, 4.0),
            ("b2", "B", "X", 320, "buy", 8.0, 4.0),
            ("b3", "B", "X", later, "buy", 10.0, 1.0),
        ]
    )
    bars = pd.concat(
        [_klines("X", 8.0, 14.0), _klines("X", 8.0, 14.0).assign(
            ts=lambda k: k["ts"] + pd.Timedelta(seconds=later))],
        ignore_index=True,
    )  # fmt: skip
    store.load_klines(bars)
    store.load_trades(trades)
    batch = store.account_windows(["V", "B"])
    assert sorted(batch.trades["trade_id"]) == ["b3", "v1", "v2"]
    # B's older trades come back as candidates though B is in the batch; the batch's
    # own trades do not
    assert store.mirror_candidates(batch.trades)["trade_id"].tolist() == ["b1", "b2"]
    got = account_features(batch)
    files = window(MarketData(bars, trades))
    want = account_features(files)
    assert got.loc["V", "mirror_pair_share"] == pytest.approx(1.0)
    pd.testing.assert_series_equal(got.loc["V"], want.loc["V"])
    pd.testing.assert_series_equal(got.loc["B"], want.loc["B"])
    # the book holds each trade once, whatever the fetch returns
    held = batch.book.all_trades()
    assert held["trade_id"].is_unique and set(held["trade_id"]) == set(trades["trade_id"])
    # the worker's evidence for both flagged: V's counterparty is B, while B's own
    # figures are those of its window alone (its older trades are V's other side only)
    from fraudlens.scoring import market_evidence

    ids = np.asarray(["B", "V"], dtype=object)
    context = batch.book.candidates(batch.trades)
    assert sorted(context["trade_id"]) == ["b1", "b2"]  # B's, older than its window
    ev = market_evidence(batch, ids, context_trades=context)
    assert ev.loc["V", "counterparty"] == "B"
    assert ev.loc["V", "counterparty_value_moved"] == pytest.approx(24.0)
    alone = market_evidence(store.account_windows(["B"]), np.asarray(["B"], dtype=object))
    assert ev.loc["B", "counterparty"] is None and alone.loc["B", "counterparty"] is None
    for col in ("value_moved", "value_lost", "n_round_trips", "n_mirrored"):
        assert ev.loc["B", col] == alone.loc["B", col], col


def test_a_book_keeps_each_fetched_trade_once() -> None:
    from fraudlens.market.features import TradeBook

    trades = book(
        [
            ("v1", "V", "X", 10, "buy", 13.0, 4.0),
            ("w1", "W", "X", 10, "sell", 13.0, 4.0),
        ]
    )
    extra = book([("b1", "B", "X", 12, "sell", 13.0, 4.0)])
    # a fetch that returns a held trade, and the same new trade twice
    tb = TradeBook(trades, fetch=lambda asked: pd.concat([trades, extra, extra]))
    _, accounts = tb.mirrors(trades.iloc[:1])
    assert sorted(accounts.tolist()) == ["B", "W"]  # one pair per mirroring trade
    assert tb.all_trades()["trade_id"].tolist() == ["v1", "w1", "b1"]
