"""Trades, klines and risk events.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fraudlens.store._tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "klines",
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("ts", UTCDateTime(), primary_key=True),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
    )
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
    )
    op.create_index("ix_trades_account_ts", "trades", ["account_id", "ts"])
    op.create_table(
        "risk_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("fraud_type", sa.String(64), nullable=False),
        sa.Column("business_type", sa.String(64), nullable=True),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=True),
        sa.Column("reviewed_at", UTCDateTime(), nullable=True),
        sa.Column("reviewed_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("account_id", "fraud_type", "window_end", name="uq_risk_events_key"),
        sa.CheckConstraint(
            "status IN ('open', 'confirmed', 'dismissed')", name="ck_risk_events_status"
        ),
    )
    op.create_index("ix_risk_events_status_created", "risk_events", ["status", "created_at"])
    op.create_index("ix_risk_events_account", "risk_events", ["account_id"])


def downgrade() -> None:
    op.drop_table("risk_events")
    op.drop_index("ix_trades_account_ts", table_name="trades")
    op.drop_table("trades")
    op.drop_table("klines")
