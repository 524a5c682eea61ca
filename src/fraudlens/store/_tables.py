"""SQLAlchemy 2 table definitions of the store: trades, klines and risk events.

Timestamps are stored as naive UTC (the one form PostgreSQL, MariaDB and SQLite all keep
without surprises) and come back timezone-aware. Prices are double precision: MariaDB's
``FLOAT`` is single precision, which would move a fill off its bar's extreme.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from fraudlens._ids import MAX_ID_LENGTH, MAX_SYMBOL_LENGTH
from fraudlens._time import utc

__all__ = [
    "Base",
    "Kline",
    "RiskEventRow",
    "RiskEventSymbol",
    "Trade",
    "UTCDateTime",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime stored as naive UTC with microseconds."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            # MySQL/MariaDB DATETIME drops fractions of a second unless asked.
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        # Naive values already mean UTC; aware ones are converted first.
        return None if value is None else utc(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # defensive: raw text from a hand-written SQLite row
            value = datetime.fromisoformat(value)
        return utc(value)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), float: sa.Double()}


class Kline(Base):
    """One price bar of one symbol."""

    __tablename__ = "klines"

    symbol: Mapped[str] = mapped_column(sa.String(MAX_SYMBOL_LENGTH), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[float]
    high: Mapped[float]
    low: Mapped[float]
    close: Mapped[float]
    volume: Mapped[float]


class Trade(Base):
    """One fill of one account."""

    __tablename__ = "trades"
    __table_args__ = (
        # the worker's window query (Store.account_windows) read from the index alone, in
        # its (account_id, ts, trade_id) order; also each account's latest trade
        sa.Index(
            "ix_trades_account_window",
            "account_id",
            "ts",
            "trade_id",
            "symbol",
            "side",
            "price",
            "quantity",
        ),
        # the counterparty lookup (Store.mirror_candidates): a symbol's trades around a
        # time, with a side, price and quantity, read from the index alone
        sa.Index(
            "ix_trades_mirror",
            "symbol",
            "ts",
            "side",
            "price",
            "quantity",
            "account_id",
            "trade_id",
        ),
        # the newest trade and the accounts active since a time (monitoring's sample)
        sa.Index("ix_trades_ts", "ts"),
    )

    trade_id: Mapped[str] = mapped_column(sa.String(MAX_ID_LENGTH), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(MAX_ID_LENGTH))
    symbol: Mapped[str] = mapped_column(sa.String(MAX_SYMBOL_LENGTH))
    ts: Mapped[datetime]
    side: Mapped[str] = mapped_column(sa.String(4))
    price: Mapped[float]
    quantity: Mapped[float]


class RiskEventRow(Base):
    """A score above the risk-event threshold, for an analyst to confirm or dismiss (the
    typed record that crosses layers is :class:`fraudlens.store.records.RiskEvent`).

    The unique key ``(account_id, fraud_type, window_end)`` makes writes idempotent: the
    same evidence (the window ending at the same latest trade) raises one event, however
    often the account is checked or a message is redelivered.
    """

    __tablename__ = "risk_events"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "fraud_type", "window_end", name="uq_risk_events_key"),
        sa.Index("ix_risk_events_status_created", "status", "created_at"),
        # varchar_pattern_ops: PostgreSQL serves a prefix LIKE from it whatever the
        # database's collation (a plain index does only under the C collation)
        sa.Index(
            "ix_risk_events_account",
            "account_id",
            postgresql_ops={"account_id": "varchar_pattern_ops"},
        ),
        sa.Index("ix_risk_events_value_moved", "value_moved"),
        # the triage orders (fraudlens.store._triage): each ends in id, the tie-break, so
        # a page is read from the index without sorting
        sa.Index("ix_risk_events_status_priority", "status", "priority", "score", "id"),
        sa.Index("ix_risk_events_priority", "priority", "score", "id"),
        sa.Index("ix_risk_events_status_score", "status", "score", "id"),
        sa.Index("ix_risk_events_status_value", "status", "value_moved", "id"),
        sa.Index("ix_risk_events_status_window", "status", "window_end", "id"),
        sa.Index("ix_risk_events_status_account", "status", "account_id", "id"),
        sa.Index("ix_risk_events_status_counterparty", "status", "counterparty", "id"),
        sa.Index("ix_risk_events_counterparty", "counterparty"),
        # case assignment (migration 0010): open events of one assignee, or unassigned
        # ones (NULL), in the default priority order
        sa.Index("ix_risk_events_status_assignee", "status", "assignee", "priority", "score", "id"),
        sa.CheckConstraint(
            "status IN ('open', 'confirmed', 'dismissed')", name="ck_risk_events_status"
        ),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(sa.String(MAX_ID_LENGTH))
    fraud_type: Mapped[str] = mapped_column(sa.String(MAX_ID_LENGTH))
    business_type: Mapped[str | None] = mapped_column(sa.String(MAX_ID_LENGTH))
    score: Mapped[float]
    # The risk-event threshold (``event_threshold``); the column keeps its first name.
    threshold: Mapped[float]
    model_threshold: Mapped[float | None]
    model_version: Mapped[str] = mapped_column(sa.String(128))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # Value the account's matched round trips moved (quote currency) and the suspected
    # counterparty: columns, so events can be ranked and filtered by them.
    value_moved: Mapped[float | None]
    counterparty: Mapped[str | None] = mapped_column(sa.String(MAX_ID_LENGTH))
    # The triage's default order: score x value moved (the expected value at risk), 0
    # when no value was moved or none is known; written with the event.
    priority: Mapped[float] = mapped_column(server_default=sa.text("0"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    created_at: Mapped[datetime]
    requested_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(sa.String(128))
    # Who works the event (a user name; None: nobody) and since when.
    assignee: Mapped[str | None] = mapped_column(sa.String(MAX_ID_LENGTH))
    assigned_at: Mapped[datetime | None]


class RiskEventSymbol(Base):
    """A symbol a risk event's evidence trades: one row per (event, symbol), so events
    can be filtered by symbol with an index rather than by searching their JSON."""

    __tablename__ = "risk_event_symbols"
    __table_args__ = (sa.Index("ix_risk_event_symbols_symbol", "symbol", "event_id"),)

    event_id: Mapped[int] = mapped_column(
        sa.ForeignKey("risk_events.id", name="fk_risk_event_symbols_event"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(sa.String(MAX_SYMBOL_LENGTH), primary_key=True)
