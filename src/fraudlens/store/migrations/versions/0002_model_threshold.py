"""Risk events record the model's own threshold beside the risk-event threshold.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("risk_events") as batch:
        batch.add_column(sa.Column("model_threshold", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_events") as batch:
        batch.drop_column("model_threshold")
