"""Case assignment in the store (migration 0010) on SQLite, PostgreSQL and MariaDB, each in
a private schema or database: upgrade and downgrade, the index the "assigned to X /
unassigned" triage reads, the audit rows of assignments, and the append-only triggers of
review_audit still refusing changes after the migration went up and down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _services import DATABASES, private_database, risk_event  # type: ignore[import-not-found]

sa = pytest.importorskip("sqlalchemy")

from fraudlens.errors import DataError, NotFoundError  # noqa: E402
from fraudlens.store import Store, open_store  # noqa: E402
from fraudlens.store._triage import AssignedElsewhereError  # noqa: E402


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with private_database(request.param, tmp_path) as url, open_store(url) as s:
        s.upgrade()
        assert s.add_risk_events([risk_event(f"acct-{i}", i) for i in range(1, 7)]) == 6
        s.add_user("ana", "analyst", None)
        s.add_user("bo", "admin", None)
        s.add_user("svc", "service", None)
        s.add_user("gone", "analyst", None)
        s.set_user_disabled("gone", True)
        yield s


def _columns(store: Store, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(store.engine).get_columns(table)}


def _indexes(store: Store, table: str) -> set[str]:
    return {i["name"] for i in sa.inspect(store.engine).get_indexes(table)}


def _refuses_changes(store: Store) -> None:
    for stmt in ("UPDATE review_audit SET note = 'rewritten'", "DELETE FROM review_audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(sa.text(stmt))


def test_assign_take_hand_over_and_unassign(store: Store) -> None:
    assert store.assign_risk_events([2, 1], "ana", actor="ana", user_id=None) == [2, 1]
    first = store.get_risk_event(1)
    assert first is not None and first["assignee"] == "ana" and first["assigned_at"]
    # bo may not take ana's events without force; nothing changes, not even event 3
    with pytest.raises(AssignedElsewhereError, match="#1 to ana; #2 to ana") as caught:
        store.assign_risk_events([3, 1, 2], "bo", actor="bo")
    assert caught.value.holders == {1: "ana", 2: "ana"}
    assert store.get_risk_event(3)["assignee"] is None  # type: ignore[index]
    assert store.review_history(3) == []
    assert store.assign_risk_events([3, 2], "bo", actor="bo", force=True, note="urgent") == [3, 2]
    # ana hands her own event to bo: hers, so no force is needed
    assert store.assign_risk_events([1], "bo", actor="ana") == [1]
    # already bo's: nothing changes and no history entry is added
    assert store.assign_risk_events([1, 2], "bo", actor="bo") == []
    history = store.review_history(2)
    assert [(h.action, h.actor, h.from_assignee, h.to_assignee, h.note) for h in history] == [
        ("assign", "ana", None, "ana", None),
        ("assign", "bo", "ana", "bo", "urgent"),
    ]
    assert all(h.from_status == h.to_status == "open" for h in history)
    # unassigning someone else's event is taking it too
    with pytest.raises(AssignedElsewhereError):
        store.assign_risk_events([2], None, actor="ana")
    assert store.assign_risk_events([2], None, actor="bo") == [2]
    event = store.get_risk_event(2)
    assert event is not None and (event["assignee"], event["assigned_at"]) == (None, None)
    assert store.review_history(2)[-1].to_assignee is None


def test_review_keeps_the_assignee_and_both_are_in_the_history(store: Store) -> None:
    store.assign_risk_events([4], "ana", actor="bo")
    decided = store.review_risk_event(4, status="confirmed", reviewed_by="ana", note="fraud")
    assert (decided["status"], decided["assignee"]) == ("confirmed", "ana")
    history = store.review_history(4)
    assert [(h.action, h.from_status, h.to_status) for h in history] == [
        ("assign", "open", "open"),
        ("review", "open", "confirmed"),
    ]
    assert history[1].from_assignee is None and history[1].to_assignee is None
    # an assignment of a decided event keeps its status in the history
    store.assign_risk_events([4], "bo", actor="ana")
    assert (store.review_history(4)[-1].from_status, store.review_history(4)[-1].to_status) == (
        "confirmed",
        "confirmed",
    )


@pytest.mark.parametrize(
    ("ids", "assignee", "error", "match"),
    [
        ([1, 99], "ana", NotFoundError, "no risk event with id 99"),
        ([1], "zed", DataError, "no user named 'zed'"),
        ([1], "gone", DataError, "disabled"),
        ([1], "svc", DataError, "service account"),
        ([], "ana", DataError, "no event ids"),
        ([1, 1], "ana", DataError, "twice"),
    ],
)
def test_refused_assignments_change_nothing(
    store: Store, ids: list[int], assignee: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        store.assign_risk_events(ids, assignee, actor="ana")
    assert store.get_risk_event(1)["assignee"] is None  # type: ignore[index]
    assert store.review_history(1) == []


def test_filters_count_and_pages_by_assignee(store: Store) -> None:
    store.assign_risk_events([1, 3], "ana", actor="ana")
    store.assign_risk_events([5], "bo", actor="bo")
    store.review_risk_event(3, status="dismissed", reviewed_by="ana")

    def ids(**filters: Any) -> list[int]:
        return sorted(e["id"] for e in store.list_risk_events(limit=100, **filters)[0])

    assert ids(assignee="ana") == [1, 3]
    assert ids(assignee="ana", status="open") == [1]
    assert ids(unassigned=True) == [2, 4, 6]
    assert ids(unassigned=True, status="open") == [2, 4, 6]
    assert store.count_risk_events(assignee="bo") == 1
    assert store.count_risk_events(unassigned=True, account_prefix="acct-") == 3
    page, after = store.risk_events_after(None, limit=2, sort="-priority", unassigned=True)
    rest, _ = store.risk_events_after(after, limit=10, sort="-priority", unassigned=True)
    assert sorted(e["id"] for e in page + rest) == [2, 4, 6]
    with pytest.raises(DataError, match="exclude each other"):
        store.list_risk_events(assignee="ana", unassigned=True)


def test_migration_up_and_down_keeps_the_audit_append_only(store: Store) -> None:
    assert store.current_revision() == "0010"
    assert {"assignee", "assigned_at"} <= _columns(store, "risk_events")
    assert {"action", "from_assignee", "to_assignee"} <= _columns(store, "review_audit")
    assert "ix_risk_events_status_assignee" in _indexes(store, "risk_events")
    store.assign_risk_events([1], "ana", actor="ana", note="mine")
    store.review_risk_event(1, status="confirmed", reviewed_by="ana")
    _refuses_changes(store)

    store.downgrade("0009")
    assert not {"assignee", "assigned_at"} & _columns(store, "risk_events")
    assert not {"action", "from_assignee", "to_assignee"} & _columns(store, "review_audit")
    assert "ix_risk_events_status_assignee" not in _indexes(store, "risk_events")
    # the rows stay: the assignment as an entry that left the status as it was
    with store.engine.connect() as c:
        rows = c.execute(
            sa.text("SELECT from_status, to_status, note FROM review_audit ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [("open", "open", "mine"), ("open", "confirmed", None)]
    _refuses_changes(store)
    with store.engine.connect() as c:
        status = c.execute(sa.text("SELECT status FROM risk_events WHERE id = 1")).scalar_one()
    assert status == "confirmed"

    assert store.upgrade() == "0010"
    _refuses_changes(store)
    assert store.get_risk_event(1)["assignee"] is None  # type: ignore[index]
    assert [h.action for h in store.review_history(1)] == ["review", "review"]
    store.assign_risk_events([1], "bo", actor="bo")
    assert store.review_history(1)[-1].action == "assign"

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from fraudlens.store import Base

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if "alembic_version" not in str(d)]
    assert diff == []
    if store.dialect != "sqlite":  # the action check (not on SQLite: see the migration)
        with pytest.raises(sa.exc.DBAPIError), store.engine.begin() as c:
            c.execute(
                sa.text(
                    "INSERT INTO review_audit (event_id, actor, at, from_status, to_status, "
                    "action) VALUES (1, 'x', '2024-01-01 00:00:00', 'open', 'open', 'other')"
                )
            )


def test_the_queue_of_one_assignee_is_read_from_the_index(tmp_path: Path) -> None:
    """SQLite's plan of "open events of ana, by priority" and "open unassigned events":
    the assignment index, no sort step."""
    from fraudlens.store._tables import RiskEventRow
    from fraudlens.store._triage import DEFAULT_SORT, order_by

    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as s:
        s.upgrade()
        s.add_risk_events([risk_event(f"acct-{i}", i) for i in range(1, 50)])
        s.refresh_statistics()
        for cond in (RiskEventRow.assignee == "ana", RiskEventRow.assignee.is_(None)):
            query = (
                sa.select(RiskEventRow.id)
                .where(RiskEventRow.status == "open", cond)
                .order_by(*order_by(DEFAULT_SORT, "sqlite"))
                .limit(50)
            )
            sql = str(query.compile(s.engine, compile_kwargs={"literal_binds": True}))
            with s.engine.connect() as c:
                plan = " ".join(str(r[-1]) for r in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "ix_risk_events_status_assignee" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
