"""The SQL store against SQLite, and the real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _services import (  # type: ignore[import-not-found]
    fresh_store,
    remove_sqlite,
    remove_sqlite_at_first_event_insert,
    unavailable,
)
from fraudlens.errors import DataError, NotFoundError, StoreError
from fraudlens.market.data import MarketData, window
from fraudlens.market.simulate import simulate
from fraudlens.store import Store, normalise_url, open_store

pytest.importorskip("sqlalchemy")


@pytest.fixture(scope="module")
def market() -> MarketData:
    return simulate(120, seed=3, days=3)


def _event(account: str, end: datetime, score: float = 0.97, **extra: object) -> dict[str, object]:
    return {
        "account_id": account,
        "score": score,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "window_start": end - timedelta(hours=24),
        "window_end": end,
        "details": {"trades": [{"trade_id": "T1", "reason": "buy at the bar's low"}]},
        **extra,
    }


def test_url_normalisation() -> None:
    assert normalise_url("sqlite") == "sqlite:///fraudlens.db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("mariadb://root@h/db") == "mysql+pymysql://root@h/db"
    assert normalise_url("mysql+pymysql://root@h/db") == "mysql+pymysql://root@h/db"


def test_migrations_match_the_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from fraudlens.store import Base

    assert store.current_revision() == store.head_revision()
    assert store.upgrade() == store.head_revision()  # idempotent
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if "alembic_version" not in str(d)]
    assert diff == []


def test_downgrade_and_schema_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert s.current_revision() is None
    s.require_schema()  # an empty embedded database is created
    assert s.current_revision() == s.head_revision()
    s.downgrade("base")
    assert s.current_revision() is None
    with pytest.raises(StoreError, match="db upgrade"):
        s.require_schema(upgrade_empty=False)
    s.close()


def test_load_is_idempotent_and_windows_match_batch(store: Store, market: MarketData) -> None:
    assert store.load_klines(market.klines) == len(market.klines)
    assert store.load_trades(market.trades) == len(market.trades)
    assert store.load_trades(market.trades) == 0
    assert store.load_klines(market.klines.iloc[:50]) == 0
    assert store.counts() == {
        "klines": len(market.klines),
        "trades": len(market.trades),
        "risk_events": 0,
    }
    assert store.account_ids() == sorted(market.account_ids.tolist())
    ids = market.account_ids[::7]
    got = store.account_windows([*ids, "no-such-account"], hours=24.0)
    want = window(market.subset(ids), hours=24.0).trades
    cols = list(got.trades.columns)
    pd.testing.assert_frame_equal(
        got.trades.sort_values("trade_id").reset_index(drop=True),
        want[cols].sort_values("trade_id").reset_index(drop=True),
    )
    # The bars are whole UTC days of the traded symbols, so bar ranks match the files.
    k = got.klines
    assert set(k["symbol"]) == set(got.trades["symbol"])
    full = market.klines.merge(
        k[["symbol", "ts"]].assign(day=k["ts"].dt.floor("D"))[["symbol", "day"]].drop_duplicates(),
        left_on=["symbol", market.klines["ts"].dt.floor("D")],
        right_on=["symbol", "day"],
    )
    assert len(k) == len(full)
    np.testing.assert_allclose(
        k.sort_values(["symbol", "ts"])["high"].to_numpy(),
        full.sort_values(["symbol", "ts"])["high"].to_numpy(),
    )
    empty = store.account_windows(["no-such-account"])
    assert empty.trades.empty and empty.klines.empty


def test_windows_of_a_few_accounts_equal_on_both_query_paths(
    store: Store, market: MarketData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudlens.store import db

    store.load_klines(market.klines)
    store.load_trades(market.trades)
    # an account whose trades sit on the window's edge: at its start (kept) and a
    # microsecond before it (left out)
    end = pd.Timestamp("2026-03-04T10:00:00.250001Z")
    edge = pd.DataFrame(
        {
            "trade_id": ["e1", "e2", "e3"],
            "account_id": "EDGE",
            "symbol": market.trades["symbol"].iloc[0],
            "ts": [end - pd.Timedelta(hours=6, microseconds=1), end - pd.Timedelta(hours=6), end],
            "side": "buy",
            "price": 1.0,
            "quantity": 1.0,
        }
    )
    store.load_trades(edge)
    ids = [str(a) for a in market.account_ids[::9]]
    chunks = [["EDGE"], ids[:1], [*ids[:3], "no-such-account", "EDGE"], ids[:16]]
    for hours in (24.0, 6.0):
        for chunk in chunks:
            one = store.account_windows(chunk, hours=hours)  # one statement on MariaDB
            monkeypatch.setattr(db, "_JOINED_WINDOWS", 0)
            two = store.account_windows(chunk, hours=hours)
            monkeypatch.undo()
            pd.testing.assert_frame_equal(one.trades, two.trades)
            pd.testing.assert_frame_equal(one.klines, two.klines)
            want = window(market.subset([a for a in chunk if a in ids]), hours=hours).trades
            got = one.trades[one.trades["account_id"] != "EDGE"]
            assert sorted(got["trade_id"]) == sorted(want["trade_id"])
    edge_ids = store.account_windows(["EDGE"], hours=6.0).trades["trade_id"].tolist()
    assert edge_ids == ["e2", "e3"]


def test_scores_from_the_store_equal_scores_from_files(store: Store, market: MarketData) -> None:
    from fraudlens.market.detectors import FeatureDetector
    from fraudlens.market.features import account_features

    files = window(market)
    det = FeatureDetector(n_estimators=40).fit(files)
    store.load_klines(market.klines)
    store.load_trades(market.trades)
    whole = pd.Series(det.decision_function(files), index=files.account_ids)
    # accounts whose features read other accounts' trades (a round trip both of whose
    # legs one other account mirrors: beneficiaries and their victims) and some others
    feats = account_features(files)
    paired = feats.index[feats["mirror_pair_share"].to_numpy() > 0].tolist()
    assert len(paired) >= 4
    ids = list(dict.fromkeys([*paired, *market.account_ids[:30]]))
    # one batch, batches of other sizes and accounts alone (the worker's cases): the
    # store's book (the batch's trades and the stored mirror candidates) gives the score
    # the whole file gives
    np.testing.assert_array_equal(
        det.decision_function(store.account_windows(ids)), whole[sorted(ids)].to_numpy()
    )
    for size in (1, 5):
        for i in range(0, len(ids), size):
            part = ids[i : i + size]
            got = det.decision_function(store.account_windows(part))
            np.testing.assert_array_equal(got, whole[sorted(part)].to_numpy(), err_msg=str(part))
    # the store's book is what finds the other side: without it, none
    alone = store.account_windows([paired[0]])
    assert account_features(alone)["mirror_pair_share"].iloc[0] > 0
    bare = MarketData(alone.klines, alone.trades)
    assert account_features(bare)["mirror_pair_share"].iloc[0] == 0
    # the same accounts from files: the book is the whole input, not the subset
    np.testing.assert_array_equal(
        det.decision_function(files.subset(ids)), whole[sorted(ids)].to_numpy()
    )


def test_risk_events_are_idempotent_and_reviewable(store: Store) -> None:
    end = datetime(2026, 3, 3, 14, 5, 1, 123456, tzinfo=UTC)
    assert store.add_risk_events([_event("A1", end), _event("A1", end)]) == 1
    assert store.add_risk_events([_event("A1", end, score=0.99)]) == 0
    assert store.add_risk_events([_event("A1", end + timedelta(minutes=5))]) == 1
    assert store.add_risk_events([_event("B2", end, business_type="withdrawal")]) == 1
    items, total = store.list_risk_events()
    assert total == 3 and len(items) == 3
    first = items[-1]
    assert first["window_end"] == end.isoformat()  # microseconds survive on every database
    assert first["details"]["trades"][0]["trade_id"] == "T1"
    assert first["status"] == "open" and first["fraud_type"] == "suspicious_transaction"
    page, total = store.list_risk_events(limit=2, offset=2)
    assert total == 3 and len(page) == 1
    assert store.list_risk_events(business_type="withdrawal")[1] == 1
    assert store.list_risk_events(account_id="A1")[1] == 2
    assert store.list_risk_events(min_score=0.98)[1] == 0

    reviewed = store.review_risk_event(
        first["id"], status="confirmed", reviewed_by=" ann ", note="x"
    )
    assert reviewed["status"] == "confirmed" and reviewed["reviewed_by"] == "ann"
    assert reviewed["note"] == "x" and reviewed["reviewed_at"] is not None
    # A fresh connection sees the decision.
    again = open_store(store.url)
    assert again.get_risk_event(first["id"])["status"] == "confirmed"  # type: ignore[index]
    assert again.list_risk_events(status="open")[1] == 2
    again.close()
    with pytest.raises(NotFoundError):
        store.review_risk_event(999_999, status="dismissed", reviewed_by="ann")
    with pytest.raises(DataError, match="status"):
        store.review_risk_event(first["id"], status="maybe", reviewed_by="ann")
    with pytest.raises(DataError, match="reviewed_by"):
        store.review_risk_event(first["id"], status="dismissed", reviewed_by=" ")
    with pytest.raises(DataError, match="lacks"):
        store.add_risk_events([{"account_id": "C3"}])
    assert store.get_risk_event(999_999) is None


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "row-by-row"])
def test_a_batch_of_events_is_written_at_once_and_only_new_ones_count(
    store: Store, returning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not returning:
        if store.dialect == "postgresql":
            pytest.skip("PostgreSQL always has INSERT ... RETURNING")
        # the path of a server without INSERT ... RETURNING (MySQL, SQLite < 3.35)
        monkeypatch.setattr(store.engine.dialect, "insert_returning", False)
    end = datetime(2026, 3, 3, 14, 5, 1, 123456, tzinfo=UTC)
    later = end + timedelta(microseconds=1)

    def event(account: str, at: datetime, symbol: str) -> dict[str, object]:
        trades = [{"trade_id": f"{account}-{symbol}", "symbol": symbol}]
        return _event(account, at, details={"trades": trades})

    batch = [event("A", end, "AAA"), event("B", end, "BBB"), event("A", end, "ZZZ")]
    assert store.add_risk_events(batch) == 2  # A's second event has A's key: skipped
    # a key already stored is skipped, a window ending a microsecond later is new
    assert store.add_risk_events([event("A", end, "CCC"), event("A", later, "DDD")]) == 1
    assert store.list_risk_events()[1] == 3
    # each new event's symbols are recorded under its own id, and only a new event's
    assert store.list_risk_events(symbol="AAA")[1] == 1
    assert store.list_risk_events(symbol="BBB")[0][0]["account_id"] == "B"
    assert store.list_risk_events(symbol="DDD")[0][0]["window_end"] == later.isoformat()
    assert store.list_risk_events(symbol="ZZZ")[1] == 0
    assert store.list_risk_events(symbol="CCC")[1] == 0


def test_the_symbol_filter_matches_the_events_of_the_symbol_once_in_every_order(
    store: Store,
) -> None:
    import sqlalchemy as sa

    end = datetime(2026, 3, 3, 14, 5, tzinfo=UTC)
    rng = np.random.default_rng(3)
    symbols = ["AAA", "BBB", "CCC"]
    events, truth = [], {}
    for i in range(60):
        syms = [s for s in symbols if rng.random() < 0.5] or ["AAA"]
        trades = [{"trade_id": f"t{i}-{k}", "symbol": s} for k, s in enumerate(syms * 2)]
        events.append(
            _event(
                f"acct-{i:03d}",
                end + timedelta(minutes=i),
                score=0.9 + float(rng.random()) / 10,
                value_moved=float(rng.integers(0, 4)) * 100.0,
                details={"trades": trades},
            )
        )
        truth[f"acct-{i:03d}"] = set(syms)
    assert store.add_risk_events(events) == 60
    reviewed = store.list_risk_events(symbol="BBB", limit=1)[0][0]
    store.review_risk_event(reviewed["id"], status="dismissed", reviewed_by="ann")
    statements: list[tuple[str, object]] = []

    def keep(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        statements.append((statement, params))

    sa.event.listen(store.engine, "before_cursor_execute", keep)
    try:
        for sort in ("-priority", "-score", "created_at", "account_id"):
            for status in (None, "open"):
                want = {
                    a
                    for a, syms in truth.items()
                    if "BBB" in syms and (status is None or a != reviewed["account_id"])
                }
                full = store.list_risk_events(status=status, symbol="BBB", sort=sort, limit=500)
                pages = [
                    e
                    for off in range(0, 60, 7)
                    for e in store.list_risk_events(
                        status=status, symbol="BBB", sort=sort, limit=7, offset=off
                    )[0]
                ]
                assert full[1] == len(want)
                assert [e["account_id"] for e in full[0]] == [e["account_id"] for e in pages]
                assert sorted(e["account_id"] for e in full[0]) == sorted(want)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", keep)
    if store.dialect != "mysql":
        return
    # MySQL/MariaDB read the events first (in the order's index on a large table) and
    # look each one's symbol up: no temporary table of the symbol's whole events
    page, params = next(
        (s, p)
        for s, p in statements
        if "ORDER BY risk_events.priority DESC" in s and "open" in dict(p).values()  # type: ignore[call-overload]
    )
    assert page.startswith("SELECT STRAIGHT_JOIN"), page
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN " + page, params).mappings().all()  # type: ignore[arg-type]
    assert plan[0]["table"] == "risk_events", plan
    assert plan[1]["table"] == "risk_event_symbols", plan
    assert not any("temporary" in (row["Extra"] or "") for row in plan), plan


def test_the_window_query_reads_the_covering_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fraudlens.store.db import _window_statement

    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    s.upgrade()
    with s.engine.connect() as conn:
        state = (
            _window_statement()
            .compile(conn)
            .construct_expanded_state(
                {"ids": ["A1", "A2"], "lo": datetime(2026, 3, 1), "hi": datetime(2026, 3, 2)}
            )
        )
        params = tuple(str(v) for v in state.positional_parameters or ())
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {state.statement}", params).all()
    text = " ".join(str(row[-1]) for row in plan)
    # every selected column from the index, already in (account_id, ts, trade_id) order
    assert "COVERING INDEX ix_trades_account_window" in text, text
    assert "TEMP B-TREE" not in text, text
    s.downgrade("0007")
    assert s.current_revision() == "0007"
    s.upgrade()
    s.close()


def test_cached_days_give_the_same_bars_and_callers_cannot_change_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    market = simulate(30, seed=5, days=2)  # days long closed: their bars are cached
    url = f"sqlite:///{tmp_path / 'x.db'}"
    s = open_store(url)
    s.upgrade()
    s.load_klines(market.klines)
    s.load_trades(market.trades)
    ids = market.account_ids[:3].tolist()
    first = s.account_windows(ids).klines  # read from the database, days cached
    second = s.account_windows(ids).klines  # every day cached: the frame is built, kept
    third = s.account_windows(ids).klines  # the kept frame
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    pd.testing.assert_frame_equal(first, third, check_exact=True)
    third.loc[third.index[0], "high"] = -1.0
    third["extra"] = 1.0
    pd.testing.assert_frame_equal(s.account_windows(ids).klines, first, check_exact=True)
    # other accounts, other days: their own frame
    other = market.account_ids[-3:].tolist()
    uncached = Store(url, bar_cache_days=0)
    for _ in range(2):
        pd.testing.assert_frame_equal(
            s.account_windows(other).klines, uncached.account_windows(other).klines
        )
    uncached.close()
    s.close()


def test_unreachable_database_is_a_store_error() -> None:
    s = open_store(f"postgresql://nobody@127.0.0.1:1/{uuid.uuid4().hex}")
    with pytest.raises(StoreError, match="cannot connect"):
        s.counts()


def test_unreachable_database_on_write_is_a_store_error() -> None:
    s = open_store(f"postgresql://nobody@127.0.0.1:1/{uuid.uuid4().hex}")
    with pytest.raises(StoreError, match="cannot connect"):
        s.upgrade()
    with pytest.raises(StoreError, match="cannot connect"):
        s.add_risk_events([_event("A1", datetime(2026, 3, 3, tzinfo=UTC))])


# ------------------------------------------------------------------- errors at the boundary


def test_unreachable_database_is_an_outage() -> None:
    from fraudlens.errors import StoreUnavailableError, UnavailableError

    s = open_store(f"postgresql://nobody@127.0.0.1:1/{uuid.uuid4().hex}")
    with pytest.raises(StoreUnavailableError) as err:
        s.ping()
    assert isinstance(err.value, StoreError) and isinstance(err.value, UnavailableError)
    with pytest.raises(StoreUnavailableError):
        s.account_windows(["A1"])


def test_missing_tables_are_an_outage_not_bad_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fraudlens.errors import StoreUnavailableError

    s = open_store(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    with pytest.raises(StoreUnavailableError, match="no such table"):
        s.add_risk_events([_event("A1", datetime(2026, 3, 3, tzinfo=UTC))])
    with pytest.raises(StoreUnavailableError):
        s.ping()
    s.close()


def test_a_locked_sqlite_file_is_an_outage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Another process holding the write lock makes writes fail with "database is locked"
    after the busy timeout; ping(write=True) reports it within its own short timeout."""
    import sqlite3
    import time

    from fraudlens.errors import StoreUnavailableError

    path = tmp_path / "locked.db"
    s = open_store(f"sqlite:///{path}")
    s.upgrade()
    s.ping(write=True)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        s.ping()  # WAL readers are not blocked by the writer
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="database is locked"):
            s.ping(write=True, timeout=0.2)
        assert time.monotonic() - t0 < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    s.ping(write=True)
    s.close()


def test_a_sqlite_url_sets_how_long_a_write_waits_for_the_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``?busy_timeout=SECONDS`` on a sqlite URL is the busy timeout of every write (30 s
    without it); the lock released in time lets the write through, and a value that is
    not a number of seconds is a ConfigError naming the URL."""
    import sqlite3
    import threading
    import time

    from fraudlens.errors import ConfigError, StoreUnavailableError

    path = tmp_path / "locked.db"
    s = open_store(f"sqlite:///{path}?busy_timeout=0.5")
    s.upgrade()
    event = _event("A1", datetime(2026, 3, 3, 14, 5, tzinfo=UTC))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="database is locked"):
            s.add_risk_events([event])
        waited = time.monotonic() - t0
        assert 0.4 < waited < 5, waited
        # released within the timeout: the write waits for it and goes through
        threading.Timer(0.2, lambda: holder.execute("ROLLBACK")).start()
        s.add_risk_events([event])
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert s.counts()["risk_events"] == 1
    s.close()
    for bad in ("0", "-1", "soon", "nan", "1e9"):
        with pytest.raises(ConfigError, match=f"busy_timeout={bad!r}"):
            open_store(f"sqlite:///{path}?busy_timeout={bad}")


def test_a_full_disk_under_sqlite_is_an_outage_until_there_is_room(full_disk_folder) -> None:  # type: ignore[no-untyped-def]
    """Taking the write lock writes nothing, so ping(write=True) passed on a full disk
    while every batch failed with "database or disk is full": the worker read it as
    "not an outage" and spent the checks' attempts until they were dead-lettered. After
    such a failure the write probe now needs room for a full WAL."""
    from _disk import fill  # type: ignore[import-not-found]
    from fraudlens.errors import StoreUnavailableError

    s = open_store(f"sqlite:///{full_disk_folder / 'store.db'}")
    s.upgrade()
    s.ping(write=True)
    end = datetime(2026, 3, 3, tzinfo=UTC)
    trades = [{"trade_id": f"T{i}", "reason": "x" * 200} for i in range(50)]
    events = [_event(f"A{i}", end, details={"trades": trades}) for i in range(200)]
    filler = fill(full_disk_folder, leave=32 << 10)
    with pytest.raises(StoreUnavailableError, match="database or disk is full"):
        for i in range(0, len(events), 20):
            s.add_risk_events(events[i : i + 20])
    with pytest.raises(StoreUnavailableError, match=r"has no room for .* bytes"):
        s.ping(write=True)
    assert not list(full_disk_folder.glob(".probe-*"))
    filler.unlink()
    s.ping(write=True)
    s.add_risk_events(events)
    assert s.count_risk_events() == len(events)
    s.close()


@pytest.mark.services
def test_data_the_database_refuses_is_a_store_error_not_an_outage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL refuses a NUL character in text: that is the data's fault."""
    from fraudlens.errors import StoreUnavailableError

    s = fresh_store("postgresql", tmp_path)
    try:
        bars = simulate(5, seed=1, days=1)
        trades = bars.trades.head(1).copy()
        trades["symbol"] = "A\x00B"
        with pytest.raises(StoreError) as err:
            s.load_trades(trades)
        assert not isinstance(err.value, StoreUnavailableError)
    finally:
        s.drop_all()
        s.close()


def test_risk_event_records_are_checked_once() -> None:
    from fraudlens.store import RiskEvent

    end = datetime(2026, 3, 3, 14, 5, tzinfo=UTC)
    e = RiskEvent.from_mapping(_event("A1", end, requested_at="2026-03-03T14:06:00"))
    assert e.event_threshold == 0.9 and e.model_threshold is None
    assert e.requested_at == datetime(2026, 3, 3, 14, 6, tzinfo=UTC)  # no zone means UTC
    assert e.to_dict()["threshold"] == 0.9 == e.to_dict()["event_threshold"]
    with pytest.raises(AttributeError):
        e.score = 0.1  # type: ignore[misc]
    for bad, column in (
        ({"account_id": "a\x00b"}, "account_id"),
        ({"score": float("nan")}, "score"),
        ({"status": "maybe"}, "status"),
        ({"window_end": "soon"}, "window_end"),
        ({"colour": "red"}, "colour"),
    ):
        with pytest.raises(DataError) as err:
            RiskEvent.from_mapping({**_event("A1", end), **bad}, row=3)
        assert err.value.column == column and err.value.row == 3


@pytest.mark.parametrize("pinned", [False, True])
def test_a_sqlite_store_file_deleted_under_the_store_is_an_outage_not_lost_events(
    tmp_path: Any, pinned: bool
) -> None:
    """The store's file is deleted while the store is open (the worker's, whose batches
    run pinned on a kept connection, or any other). Its connections kept the deleted
    file: risk events went on being written there, where no other process reads them,
    and the ping passed, so the worker acked their checks. Now the connections to the
    old file are given up: the file at the path has no tables, an outage."""
    from contextlib import nullcontext

    from _services import risk_event  # type: ignore[import-not-found]
    from fraudlens.errors import StoreUnavailableError

    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    store.upgrade()
    block = store.pinned(linger=60) if pinned else nullcontext()
    with block:
        assert store.add_risk_events([risk_event("a1", 1)]) == 1
    remove_sqlite(path)
    again = store.pinned(linger=60) if pinned else nullcontext()
    with again, pytest.raises(StoreUnavailableError, match="no such table"):
        store.add_risk_events([risk_event("a2", 2)])
    with pytest.raises(StoreUnavailableError, match="no such table"):
        store.ping(write=True)
    store.close()


@pytest.mark.parametrize("pinned", [False, True])
def test_a_sqlite_store_file_deleted_while_events_are_written_is_not_taken_as_stored(
    tmp_path: Any, pinned: bool
) -> None:
    """The file is deleted after the write's connection was checked and before its
    commit: the events went into the deleted file, and add_risk_events returned their
    count as stored (the worker then acked the checks: the events were lost). Now it
    raises an outage, and once a store is at the path again the same events are
    written there."""
    from contextlib import nullcontext

    from _services import risk_event  # type: ignore[import-not-found]
    from fraudlens.errors import StoreUnavailableError

    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    store.upgrade()
    deleted = remove_sqlite_at_first_event_insert(store, path)
    events = [risk_event("a1", 1), risk_event("a2", 2)]
    block = store.pinned(linger=60) if pinned else nullcontext()
    with block, pytest.raises(StoreUnavailableError, match="deleted or replaced while 2 risk"):
        store.add_risk_events(events)
    assert deleted.is_set()
    with pytest.raises(StoreUnavailableError, match="no such table"):
        store.ping(write=True)
    store.upgrade()  # `fraudlens db upgrade`: a new store at the path
    assert store.add_risk_events(events) == 2
    assert sorted(e["account_id"] for e in store.list_risk_events()[0]) == ["a1", "a2"]
    store.close()


def test_a_sqlite_store_file_replaced_under_the_store_is_followed(tmp_path: Any) -> None:
    """A file restored over the store's (renamed onto its path): the events written
    after it are in the file at the path, which the service and the next worker read."""
    from _services import risk_event  # type: ignore[import-not-found]

    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    store.upgrade()
    with store.pinned(linger=60):
        store.add_risk_events([risk_event("a1", 1)])
    backup = tmp_path / "backup.db"
    with open_store(f"sqlite:///{backup}") as other:
        other.upgrade()
        other.add_risk_events([risk_event("b1", 1)])
    backup.rename(path)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"store.db{suffix}").unlink(missing_ok=True)
    with store.pinned(linger=60):
        store.add_risk_events([risk_event("a2", 2)])
    store.close()
    with open_store(f"sqlite:///{path}") as reader:
        events, _ = reader.list_risk_events()
        assert sorted(e["account_id"] for e in events) == ["a2", "b1"]


@pytest.mark.services
@pytest.mark.parametrize(
    ("kind", "query", "idle"),
    [("postgresql", "", 30), ("postgresql", "?keepalives_idle=120", 120), ("mariadb", "", 30)],
)
def test_server_connections_probe_a_silent_peer_within_a_minute(
    kind: str, query: str, idle: int
) -> None:
    """TCP keepalive on the store's server connections: first probe after 30 s of
    silence, then every 10 s, 3 unanswered ending the connection. The system's default
    (2 h of silence first) had left a query waiting that long for a reply from a host
    that was gone (a partition or a failover); the CLI has no watch that cuts it.
    What the URL sets (``keepalives_idle`` for libpq) is kept. The sockets' options are
    read back from the kernel (a partition cannot be simulated on this machine)."""
    import socket

    from _services import MARIADB_URL, POSTGRES_URL  # type: ignore[import-not-found]
    from fraudlens.store.db import _driver_socket

    url = (POSTGRES_URL if kind == "postgresql" else MARIADB_URL) + query
    store = open_store(url)
    try:
        with store._checkout() as conn:  # a connection, schema or not
            conn.exec_driver_sql("SELECT 1")
    except StoreError as exc:
        unavailable(f"{kind} is unreachable: {exc}")
    conns = list(store._open)
    assert conns
    for conn in conns:
        found = _driver_socket(conn)
        assert found is not None
        sock, duplicate = found
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        finally:
            if duplicate:
                sock.close()
    store.close()


@pytest.mark.parametrize(
    ("scheme", "driver", "says"),
    [
        ("postgresql+psycopg", "psycopg", "connection timeout expired"),
        ("mysql+pymysql", "pymysql", "timed out"),
    ],
)
def test_a_server_that_never_answers_is_an_outage_not_a_hang(
    scheme: str, driver: str, says: str
) -> None:
    """A server that takes the TCP connection and then says nothing (a frozen process:
    its kernel still accepts) had held the driver's connect for ever (libpq waiting for
    the answer, PyMySQL for the greeting), so the worker hung instead of pausing for the
    outage. Now the connect gives up after 10 s."""
    from _services import error_within, silent_server  # type: ignore[import-not-found]
    from fraudlens.errors import StoreUnavailableError

    pytest.importorskip(driver)
    with silent_server() as port:
        said = error_within(lambda: Store(f"{scheme}://root@127.0.0.1:{port}/test").ping(), 60)
    assert isinstance(said, StoreUnavailableError), said
    assert says in str(said), said


@pytest.mark.services
def test_a_mariadb_query_may_run_past_the_connect_timeout() -> None:
    """The read timeout that bounds a MariaDB connection's greeting is lifted once the
    connection is open: a query longer than it (11 s against 10) is not cut short."""
    import sqlalchemy as sa

    from _services import MARIADB_URL  # type: ignore[import-not-found]

    store = Store(MARIADB_URL)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT SLEEP(11)")).scalar() == 0
    finally:
        store.close()
