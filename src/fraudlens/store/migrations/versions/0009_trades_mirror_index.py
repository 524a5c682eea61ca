"""A covering index for the counterparty lookup: ``trades(symbol, ts, side, price,
quantity, account_id, trade_id)`` in place of ``trades(symbol, ts)``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

``Store.mirror_candidates`` looks up, for each box of the batch's trades, the trades of
one symbol in a time range with a side, price and quantity, and selects every column.
With ``(symbol, ts)`` alone each trade in the time range was a lookup in the table; with
every column it tests and selects in the index, the boxes are read from the index alone
(SQLite, the 14,167 boxes of 500 accounts' windows: 125 ms before, 58 ms after). The new
index starts with the old one's columns, so it serves whatever the old one served, and
the old one is dropped.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = ["symbol", "ts", "side", "price", "quantity", "account_id", "trade_id"]


def upgrade() -> None:
    op.create_index("ix_trades_mirror", "trades", _COLUMNS)
    op.drop_index("ix_trades_symbol_ts", table_name="trades")


def downgrade() -> None:
    op.create_index("ix_trades_symbol_ts", "trades", ["symbol", "ts"])
    op.drop_index("ix_trades_mirror", table_name="trades")
