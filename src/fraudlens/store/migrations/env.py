"""Alembic environment of the store.

The store runs migrations in-process (``Store.upgrade`` / ``fraudlens db upgrade``) and
hands its open connection over in ``config.attributes["connection"]``. The plain
``alembic`` command works too: it reads ``sqlalchemy.url`` from the config, or the
``FRAUDLENS_DATABASE_URL`` setting.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from fraudlens.store._tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: let Alembic copy-and-move tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from fraudlens.config import get_settings

        url = get_settings().database_url
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
