"""Triage: a priority column, the symbols of each event, and indexes for the analysts'
sorts and filters.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

- ``risk_events.priority`` = ``score x value_moved`` (0 when no value moved or none is
  known), back-filled here and written with every new event: the review queue's default
  order, read from an index.
- ``risk_event_symbols``: one row per (event, symbol of the trades behind its score),
  back-filled from each event's ``details``, so a symbol filter is an index lookup
  rather than a search through JSON.
- Indexes ``(status, priority, score, id)``, ``(priority, score, id)``,
  ``(status, score, id)``, ``(status, value_moved, id)`` and ``(counterparty)``.
- On PostgreSQL the account index is rebuilt with ``varchar_pattern_ops``, so a prefix
  ``LIKE 'acct-001%'`` uses it under any collation, not only under ``C``.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Events read per back-fill batch.
_BATCH = 5000


def _symbols(details: Any) -> set[str]:
    if isinstance(details, str | bytes):
        try:
            details = json.loads(details)
        except ValueError:
            return set()
    trades = details.get("trades") if isinstance(details, dict) else None
    if not isinstance(trades, list):
        return set()
    out = set()
    for t in trades:
        sym = t.get("symbol") if isinstance(t, dict) else None
        if isinstance(sym, str) and 0 < len(sym) <= 32:
            out.add(sym)
    return out


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column(
        "risk_events",
        sa.Column("priority", sa.Double(), nullable=False, server_default=sa.text("0")),
    )
    op.execute(
        "UPDATE risk_events SET priority = score * value_moved WHERE value_moved IS NOT NULL"
    )
    symbols = op.create_table(
        "risk_event_symbols",
        sa.Column(
            "event_id",
            sa.Integer(),
            sa.ForeignKey("risk_events.id", name="fk_risk_event_symbols_event"),
            primary_key=True,
        ),
        sa.Column("symbol", sa.String(32), primary_key=True),
    )
    assert symbols is not None
    events = sa.table("risk_events", sa.column("id", sa.Integer()), sa.column("details"))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(events.c.id, events.c.details)
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        values = [{"event_id": r[0], "symbol": s} for r in rows for s in sorted(_symbols(r[1]))]
        if values:
            bind.execute(sa.insert(symbols), values)
        last = rows[-1][0]
    op.create_index("ix_risk_event_symbols_symbol", "risk_event_symbols", ["symbol", "event_id"])
    op.create_index(
        "ix_risk_events_status_priority", "risk_events", ["status", "priority", "score", "id"]
    )
    op.create_index("ix_risk_events_priority", "risk_events", ["priority", "score", "id"])
    op.create_index("ix_risk_events_status_score", "risk_events", ["status", "score", "id"])
    op.create_index("ix_risk_events_status_value", "risk_events", ["status", "value_moved", "id"])
    op.create_index("ix_risk_events_counterparty", "risk_events", ["counterparty"])
    if bind.dialect.name == "postgresql":
        op.drop_index("ix_risk_events_account", table_name="risk_events")
        op.create_index(
            "ix_risk_events_account",
            "risk_events",
            ["account_id"],
            postgresql_ops={"account_id": "varchar_pattern_ops"},
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.drop_index("ix_risk_events_account", table_name="risk_events")
        op.create_index("ix_risk_events_account", "risk_events", ["account_id"])
    op.drop_index("ix_risk_events_counterparty", table_name="risk_events")
    op.drop_index("ix_risk_events_status_value", table_name="risk_events")
    op.drop_index("ix_risk_events_status_score", table_name="risk_events")
    op.drop_index("ix_risk_events_priority", table_name="risk_events")
    op.drop_index("ix_risk_events_status_priority", table_name="risk_events")
    op.drop_index("ix_risk_event_symbols_symbol", table_name="risk_event_symbols")
    op.drop_table("risk_event_symbols")
    op.drop_column("risk_events", "priority")
