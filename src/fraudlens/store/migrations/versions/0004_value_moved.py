"""Risk events carry the value moved and the suspected counterparty; trades get a
``(symbol, ts)`` index for the counterparty lookup.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

``value_moved`` (the value the account's matched round trips moved, quote currency) is a
column rather than a key of ``details`` so that events can be sorted and filtered by it
with an index. ``Store.mirror_candidates`` looks up other accounts' trades of a symbol
around given times, which the ``(symbol, ts)`` index serves. Columns are added in place
(no table rebuild, which would disturb the review audit's references on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("risk_events", sa.Column("value_moved", sa.Double(), nullable=True))
    op.add_column("risk_events", sa.Column("counterparty", sa.String(64), nullable=True))
    op.create_index("ix_risk_events_value_moved", "risk_events", ["value_moved"])
    op.create_index("ix_trades_symbol_ts", "trades", ["symbol", "ts"])


def downgrade() -> None:
    op.drop_index("ix_trades_symbol_ts", table_name="trades")
    op.drop_index("ix_risk_events_value_moved", table_name="risk_events")
    # SQLite drops a column in place since 3.35, like the servers
    op.drop_column("risk_events", "counterparty")
    op.drop_column("risk_events", "value_moved")
