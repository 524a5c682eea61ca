"""The SQL store: trades and k-lines to score, and risk events for analysts.

>>> from fraudlens.store import open_store
>>> store = open_store("sqlite:///fraudlens.db")     # doctest: +SKIP
>>> store.upgrade()                                   # doctest: +SKIP

SQLite is the embedded default; PostgreSQL (psycopg 3) and MySQL/MariaDB (PyMySQL) are
the real deployments. Alembic migrations ship in ``fraudlens/store/migrations``.
"""

from __future__ import annotations

from fraudlens.store._tables import Base, Kline, RiskEventRow, Trade
from fraudlens.store.db import DEFAULT_DATABASE_URL, Store, is_outage, normalise_url, open_store
from fraudlens.store.records import FRAUD_TYPE, RISK_STATUSES, RiskEvent

__all__ = [
    "DEFAULT_DATABASE_URL",
    "FRAUD_TYPE",
    "RISK_STATUSES",
    "Base",
    "Kline",
    "RiskEvent",
    "RiskEventRow",
    "Store",
    "Trade",
    "is_outage",
    "normalise_url",
    "open_store",
]
