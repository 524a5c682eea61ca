"""An index on ``trades(ts)``: the newest trade and the accounts active since a time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Monitoring scores a sample of the accounts that traded in the last hours before the
newest stored trade (``Store.recent_accounts``); without this index both questions read
the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trades_ts", "trades", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_trades_ts", table_name="trades")
