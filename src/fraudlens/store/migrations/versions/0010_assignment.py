"""Case assignment: who works a risk event, and assignments in the review audit.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

- ``risk_events.assignee`` (a user name, NULL: nobody) and ``assigned_at``.
- Index ``(status, assignee, priority, score, id)``: "open events assigned to X" and
  "open unassigned events" (``assignee IS NULL``, which every database's b-tree index
  serves) in the review queue's default order (``-priority``), read from the index
  without sorting, on SQLite, PostgreSQL and MySQL/MariaDB alike.
- ``review_audit.action`` (``review``, the existing rows and every decision, or
  ``assign``), ``from_assignee`` and ``to_assignee``: an assignment is a row of the
  event's history with its status unchanged. The columns are added with ``ADD COLUMN``,
  which rewrites no row through ``UPDATE``: the table's append-only triggers (0003) stay
  as they are on every database, and SQLite's table is not rebuilt (a rebuild would drop
  them). For the same reason the check constraint on ``action`` is created on PostgreSQL
  and MySQL/MariaDB only (SQLite cannot add a constraint without rebuilding the table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fraudlens.store._tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ACTION_CHECK = "ck_review_audit_action"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("risk_events", sa.Column("assignee", sa.String(64), nullable=True))
    op.add_column("risk_events", sa.Column("assigned_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_risk_events_status_assignee",
        "risk_events",
        ["status", "assignee", "priority", "score", "id"],
    )
    op.add_column(
        "review_audit",
        sa.Column("action", sa.String(16), nullable=False, server_default=sa.text("'review'")),
    )
    op.add_column("review_audit", sa.Column("from_assignee", sa.String(64), nullable=True))
    op.add_column("review_audit", sa.Column("to_assignee", sa.String(64), nullable=True))
    if dialect in ("postgresql", "mysql"):
        op.create_check_constraint(_ACTION_CHECK, "review_audit", "action IN ('review', 'assign')")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    # Assignment rows stay in review_audit (it is append-only): without the columns they
    # read as entries that left the status as it was, with the assignment's note.
    if dialect in ("postgresql", "mysql"):
        op.drop_constraint(_ACTION_CHECK, "review_audit", type_="check")
    op.drop_column("review_audit", "to_assignee")
    op.drop_column("review_audit", "from_assignee")
    op.drop_column("review_audit", "action")
    op.drop_index("ix_risk_events_status_assignee", table_name="risk_events")
    op.drop_column("risk_events", "assigned_at")
    op.drop_column("risk_events", "assignee")
