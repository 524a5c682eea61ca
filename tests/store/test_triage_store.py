"""Migration 0005 (priority, event symbols, triage indexes): back-fill of existing events,
down and up again, the models matching the migrations, and the default queue read from
its index without sorting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from _services import POSTGRES_URL, unavailable  # type: ignore[import-not-found]

sa = pytest.importorskip("sqlalchemy")

from fraudlens.store import open_store  # noqa: E402

END = datetime(2024, 3, 1, 12, 0)


def _old_event(i: int, value: float | None, symbols: list[str]) -> dict[str, Any]:
    """A row as revision 0004 stores it (no priority column)."""
    return {
        "account_id": f"old-{i}",
        "fraud_type": "suspicious_transaction",
        "business_type": None,
        "score": 0.9 + i / 100,
        "threshold": 0.9,
        "model_threshold": None,
        "model_version": "market-features:v0001",
        "window_start": END - timedelta(hours=24),
        "window_end": END + timedelta(minutes=i),
        "details": {"trades": [{"trade_id": f"t{i}{s}", "symbol": s} for s in symbols]},
        "value_moved": value,
        "counterparty": None,
        "note": None,
        "status": "open",
        "created_at": END + timedelta(minutes=i),
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    name = f"fl_mig_{uuid.uuid4().hex[:12]}"
    base = sa.engine.make_url(POSTGRES_URL)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"postgresql is unreachable: {exc.orig}")
    try:
        yield base.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def test_migration_0005_backfills_and_round_trips(url: str) -> None:
    with open_store(url) as store:
        store.upgrade("0004")
        cols = [
            sa.column(c, sa.JSON() if c == "details" else None) for c in _old_event(0, None, [])
        ]
        table = sa.table("risk_events", *cols)
        rows = [
            _old_event(0, 1000.0, ["BTCUSDT", "ETHUSDT"]),
            _old_event(1, None, ["BTCUSDT"]),
            _old_event(2, 10.0, []),
        ]
        with store.engine.begin() as conn:
            for row in rows:
                conn.execute(sa.insert(table).values(**row))

        # to the head: the store reads the columns of later migrations too (0010's
        # assignee); after 0005 only indexes and those columns are added
        assert store.upgrade() == store.head_revision()
        events = {e["account_id"]: e for e in store.list_risk_events(limit=10)[0]}
        assert events["old-0"]["priority"] == pytest.approx(0.9 * 1000.0)
        assert events["old-1"]["priority"] == 0.0
        assert events["old-2"]["priority"] == pytest.approx(0.92 * 10.0)
        by_symbol = {
            s: sorted(e["account_id"] for e in store.list_risk_events(symbol=s)[0])
            for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")
        }
        assert by_symbol == {"BTCUSDT": ["old-0", "old-1"], "ETHUSDT": ["old-0"], "SOLUSDT": []}
        order = [e["account_id"] for e in store.list_risk_events(sort="-priority")[0]]
        assert order == ["old-0", "old-2", "old-1"]

        # a new event after the upgrade gets its priority and symbols as it is written
        store.add_risk_events(
            [
                {
                    "account_id": "new",
                    "score": 0.5,
                    "threshold": 0.4,
                    "model_version": "m:v2",
                    "window_start": datetime(2024, 3, 2, tzinfo=UTC),
                    "window_end": datetime(2024, 3, 3, tzinfo=UTC),
                    "value_moved": 4000.0,
                    "details": {"trades": [{"symbol": "SOLUSDT"}, {"symbol": "SOLUSDT"}]},
                }
            ]
        )
        new = store.list_risk_events(symbol="SOLUSDT")[0]
        assert [(e["account_id"], e["priority"]) for e in new] == [("new", 2000.0)]

        store.downgrade("0004")
        inspector = sa.inspect(store.engine)
        assert "priority" not in {c["name"] for c in inspector.get_columns("risk_events")}
        assert "risk_event_symbols" not in inspector.get_table_names()
        assert store.upgrade() == store.head_revision()
        assert store.list_risk_events(symbol="SOLUSDT")[1] == 1  # back-filled again

        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        from fraudlens.store import Base

        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = [
                d for d in compare_metadata(ctx, Base.metadata) if "alembic_version" not in str(d)
            ]
        assert diff == []
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                ddl = conn.execute(
                    sa.text(
                        "SELECT indexdef FROM pg_indexes WHERE indexname = "
                        "'ix_risk_events_account' AND schemaname = current_schema()"
                    )
                ).scalar_one()
            assert "varchar_pattern_ops" in ddl


def test_sqlite_reads_the_default_queue_and_prefixes_from_indexes(tmp_path: Path) -> None:
    """The query plans of the review queue's first page: no sort step."""
    from fraudlens.store._tables import RiskEventRow
    from fraudlens.store._triage import DEFAULT_SORT, order_by, prefix_condition

    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        store.upgrade()
        for where, sort in [
            (RiskEventRow.status == "open", DEFAULT_SORT),
            (sa.true(), DEFAULT_SORT),
            (RiskEventRow.status == "open", "-score"),
            (RiskEventRow.status == "open", "-value_moved"),
            (RiskEventRow.status == "open", "-created_at"),
        ]:
            stmt = (
                sa.select(RiskEventRow.__table__)
                .where(where)
                .order_by(*order_by(sort, "sqlite"))
                .limit(50)
            )
            sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
            with store.engine.connect() as conn:
                plan = " | ".join(
                    str(r[-1]) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql))
                )
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sort, plan)
            assert "TEMP B-TREE" not in plan, (sort, plan)
        stmt = sa.select(RiskEventRow.id).where(prefix_condition("acct-00", "sqlite"))
        sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = " | ".join(
                str(r[-1]) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql))
            )
        assert "ix_risk_events_account (account_id>? AND account_id<?)" in plan, plan
