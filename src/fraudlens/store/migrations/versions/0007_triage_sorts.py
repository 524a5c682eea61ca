"""Indexes for the remaining triage sorts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

``(status, window_end, id)``, ``(status, account_id, id)`` and
``(status, counterparty, id)``: every column the review page sorts by is then read from an
index, as the priority, score, value-moved and newest-first orders already were.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_risk_events_status_window", "risk_events", ["status", "window_end", "id"])
    op.create_index("ix_risk_events_status_account", "risk_events", ["status", "account_id", "id"])
    op.create_index(
        "ix_risk_events_status_counterparty", "risk_events", ["status", "counterparty", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_risk_events_status_counterparty", table_name="risk_events")
    op.drop_index("ix_risk_events_status_account", table_name="risk_events")
    op.drop_index("ix_risk_events_status_window", table_name="risk_events")
