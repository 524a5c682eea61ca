"""Users, API tokens, sign-in sessions, signing keys and the append-only review audit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

``review_audit`` gets triggers that make the database itself refuse ``UPDATE`` and
``DELETE`` (and ``TRUNCATE`` on PostgreSQL): fraudlens only ever inserts into it. On
SQLite a later migration that rebuilds this table in batch mode must create them again.
On MySQL with binary logging on, creating a trigger needs the SUPER privilege or
``log_bin_trust_function_creators=1``; without either the triggers are left out with a
warning, and the table is append-only by fraudlens's own code alone.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from fraudlens.store._tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

_MESSAGE = "review_audit is append-only"
_PG_FUNCTION = "fraudlens_review_audit_append_only"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint("role IN ('analyst', 'admin', 'service')", name="ck_users_role"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name="fk_api_tokens_user"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id"])
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name="fk_user_sessions_user"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_user_sessions_user", "user_sessions", ["user_id"])
    op.create_index("ix_user_sessions_expires", "user_sessions", ["expires_at"])
    op.create_table(
        "auth_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "review_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "event_id",
            sa.Integer(),
            sa.ForeignKey("risk_events.id", name="fk_review_audit_event"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name="fk_review_audit_user"),
            nullable=True,
        ),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "from_status IN ('open', 'confirmed', 'dismissed')", name="ck_review_audit_from"
        ),
        sa.CheckConstraint(
            "to_status IN ('open', 'confirmed', 'dismissed')", name="ck_review_audit_to"
        ),
    )
    op.create_index("ix_review_audit_event", "review_audit", ["event_id", "id"])
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER review_audit_no_{action.lower()} BEFORE {action} "
                f"ON review_audit BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'insufficient_privilege'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER review_audit_append_only BEFORE UPDATE OR DELETE ON review_audit "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
        op.execute(
            "CREATE TRIGGER review_audit_no_truncate BEFORE TRUNCATE ON review_audit "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
    elif dialect == "mysql":
        for action in ("UPDATE", "DELETE"):
            try:
                op.execute(
                    f"CREATE TRIGGER review_audit_no_{action.lower()} BEFORE {action} "
                    "ON review_audit FOR EACH ROW "
                    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_MESSAGE}'"
                )
            except sa.exc.OperationalError as exc:
                # 1419: binary logging is on and this account may not create triggers.
                if "1419" not in str(exc.orig):
                    raise
                log.warning(
                    "review_audit: no %s trigger (%s); with SUPER or "
                    "log_bin_trust_function_creators=1 it can be created by hand as this "
                    "migration does",
                    action,
                    exc.orig,
                )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("sqlite", "mysql"):
        op.execute("DROP TRIGGER IF EXISTS review_audit_no_update")
        op.execute("DROP TRIGGER IF EXISTS review_audit_no_delete")
    # Dropping a table drops its indexes (MySQL refuses to drop one a foreign key uses).
    op.drop_table("review_audit")
    if dialect == "postgresql":
        # The table's triggers went with it; the function is the schema's own object.
        op.execute(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")
    op.drop_table("auth_secrets")
    op.drop_table("user_sessions")
    op.drop_table("api_tokens")
    op.drop_table("users")
