"""Identity tables and the store's methods over them: users, API tokens, sign-in sessions,
signing keys, and the append-only audit of review decisions.

The rows hold no secret in the clear: passwords are Argon2 hashes made by
:mod:`fraudlens.auth`, API tokens and session tokens are stored as the SHA-256 digest of a
256-bit random value (a fast hash is enough for a value nobody can guess, and lets a
request be checked with one indexed lookup).

``review_audit`` is append-only. The store only ever inserts into it (in the same
transaction as the decision it records, see :func:`append_review_audit`); no method
updates or deletes its rows, and the migration adds triggers that make the database refuse
an ``UPDATE`` or ``DELETE`` on it, so a decision's history cannot be rewritten through
fraudlens or by a stray statement.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from fraudlens._ids import MAX_ID_LENGTH
from fraudlens._time import utcnow
from fraudlens.auth._records import ROLES, ApiToken, AuditEntry, Session, User
from fraudlens.auth._secrets import DIGEST_CHARS
from fraudlens.errors import DataError, NotFoundError
from fraudlens.store._tables import Base

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "ApiTokenRow",
    "AuthSecretRow",
    "AuthStore",
    "ReviewAuditRow",
    "SessionRow",
    "UserRow",
    "append_review_audit",
]


#: How long an ended session's row is kept before a new sign-in clears it away.
_SESSION_KEEP = timedelta(days=1)
# Largest integer key of every backend (32-bit on PostgreSQL and MariaDB): larger ids name
# no row, and binding one is an error (OverflowError on SQLite).
_MAX_KEY = 2**31 - 1


# --------------------------------------------------------------------------- tables


class UserRow(Base):
    """A person or a machine that can act on the service."""

    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint("role IN ('analyst', 'admin', 'service')", name="ck_users_role"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(MAX_ID_LENGTH))
    role: Mapped[str] = mapped_column(sa.String(16))
    # None for service accounts: they cannot sign in with a password, only use tokens.
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class ApiTokenRow(Base):
    """A bearer token of a user, stored as the SHA-256 digest of its value."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
        sa.Index("ix_api_tokens_user", "user_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", name="fk_api_tokens_user"))
    name: Mapped[str] = mapped_column(sa.String(MAX_ID_LENGTH))
    token_hash: Mapped[str] = mapped_column(sa.String(DIGEST_CHARS))
    # The token's first characters, shown in listings so an operator can tell tokens apart.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class SessionRow(Base):
    """A browser sign-in: the digest of the session token its signed cookie carries."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        sa.Index("ix_user_sessions_user", "user_id"),
        sa.Index("ix_user_sessions_expires", "expires_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(DIGEST_CHARS), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", name="fk_user_sessions_user"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuthSecretRow(Base):
    """A server-side random key (the cookie-signing key when none is configured)."""

    __tablename__ = "auth_secrets"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime]


class ReviewAuditRow(Base):
    """One review decision on a risk event: who, when, from which status to which, note;
    or (``action`` ``assign``) a change of the event's assignee.

    Append-only: see the module docstring.
    """

    __tablename__ = "review_audit"
    __table_args__ = (
        sa.Index("ix_review_audit_event", "event_id", "id"),
        sa.CheckConstraint(
            "from_status IN ('open', 'confirmed', 'dismissed')", name="ck_review_audit_from"
        ),
        sa.CheckConstraint(
            "to_status IN ('open', 'confirmed', 'dismissed')", name="ck_review_audit_to"
        ),
        # created on PostgreSQL and MySQL/MariaDB only (migration 0010)
        sa.CheckConstraint("action IN ('review', 'assign')", name="ck_review_audit_action"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(
        sa.ForeignKey("risk_events.id", name="fk_review_audit_event")
    )
    # None when nobody was signed in (a loopback service with authentication off).
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", name="fk_review_audit_user")
    )
    actor: Mapped[str] = mapped_column(sa.String(128))
    at: Mapped[datetime]
    from_status: Mapped[str] = mapped_column(sa.String(16))
    to_status: Mapped[str] = mapped_column(sa.String(16))
    note: Mapped[str | None] = mapped_column(sa.Text)
    # ``review`` (a decision) or ``assign`` (the assignee changed, the status did not).
    action: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'review'"))
    from_assignee: Mapped[str | None] = mapped_column(sa.String(MAX_ID_LENGTH))
    to_assignee: Mapped[str | None] = mapped_column(sa.String(MAX_ID_LENGTH))


def _table(model: Any) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


_USERS = _table(UserRow)
_TOKENS = _table(ApiTokenRow)
_SESSIONS = _table(SessionRow)
_SECRETS = _table(AuthSecretRow)
_AUDIT = _table(ReviewAuditRow)


def _user(row: Any, *, joined: bool = False) -> User:
    """A user from a ``users`` row, or (``joined``) from a row of :func:`_with_owner`,
    where the user's id is ``user_id`` and its creation time ``user_created_at``."""
    return User(
        id=int(row.user_id if joined else row.id),
        username=row.username,
        role=row.role,
        disabled=bool(row.disabled),
        created_at=row.user_created_at if joined else row.created_at,
        disabled_at=row.disabled_at,
        has_password=row.password_hash is not None,
    )


def _with_owner(table: sa.Table) -> sa.Select[Any]:
    """``table``'s rows (tokens or sessions, keyed by ``user_id``) with their user's
    columns, read back by ``_user(row, joined=True)``."""
    return sa.select(
        table,
        _USERS.c.username,
        _USERS.c.role,
        _USERS.c.disabled,
        _USERS.c.password_hash,
        _USERS.c.created_at.label("user_created_at"),
        _USERS.c.disabled_at,
    ).join(_USERS, _USERS.c.id == table.c.user_id)


def _token(row: Any) -> ApiToken:
    """A token selected by :func:`_with_owner`."""
    return ApiToken(
        id=int(row.id),
        user_id=int(row.user_id),
        username=row.username,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _session(row: Any) -> Session:
    return Session(
        id=row.id,
        user_id=int(row.user_id),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_seen_at=row.last_seen_at,
        revoked_at=row.revoked_at,
    )


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(
        id=int(row.id),
        event_id=int(row.event_id),
        actor=row.actor,
        user_id=None if row.user_id is None else int(row.user_id),
        at=row.at,
        from_status=row.from_status,
        to_status=row.to_status,
        note=row.note,
        action=row.action,
        from_assignee=row.from_assignee,
        to_assignee=row.to_assignee,
    )


def append_review_audit(
    conn: sa.Connection,
    event_id: int,
    *,
    actor: str,
    user_id: int | None,
    to_status: str,
    note: str | None,
    at: datetime,
    action: str = "review",
    from_status: str | None = None,
    from_assignee: str | None = None,
    to_assignee: str | None = None,
) -> int:
    """Append the audit row of a review decision, inside the caller's transaction.

    Call it before the decision's own ``UPDATE``, in the same transaction. The row's
    ``from_status`` is the event's status read under a lock: ``SELECT ... FOR UPDATE`` on
    PostgreSQL and MySQL; on SQLite an ``INSERT ... SELECT``, which takes the database's
    write lock before it reads. Two analysts deciding on the same event at once therefore
    get a history in which each row starts from the status the previous one left.

    An assignment (``action`` ``assign``) passes ``from_status`` (the status its caller
    read under a lock; the same as ``to_status``) and the previous and new assignee; the
    row is then inserted as given.

    Returns
    -------
    int
        Rows appended: 1, or 0 when no event has this id.
    """
    # The caller has checked the status; the table's check constraint is the backstop.
    events = sa.table("risk_events", sa.column("id"), sa.column("status"))
    columns = ["event_id", "user_id", "actor", "at", "from_status", "to_status", "note"]
    extra = {"action": action, "from_assignee": from_assignee, "to_assignee": to_assignee}
    if from_status is not None:
        values = [int(event_id), user_id, actor, at, from_status, to_status, note]
        conn.execute(sa.insert(_AUDIT).values({**dict(zip(columns, values, strict=True)), **extra}))
        return 1
    if conn.dialect.name == "sqlite":
        source = sa.select(
            events.c.id,
            sa.literal(user_id, sa.Integer()),
            sa.literal(actor, sa.String(128)),
            sa.literal(at, _AUDIT.c.at.type),
            events.c.status,
            sa.literal(to_status, sa.String(16)),
            sa.literal(note, sa.Text()),
            sa.literal(action, sa.String(16)),
            sa.literal(from_assignee, sa.String(MAX_ID_LENGTH)),
            sa.literal(to_assignee, sa.String(MAX_ID_LENGTH)),
        ).where(events.c.id == int(event_id))
        insert = sa.insert(_AUDIT).from_select([*columns, *extra], source)
        return max(int(conn.execute(insert).rowcount), 0)
    current = conn.execute(
        sa.select(events.c.status).where(events.c.id == int(event_id)).with_for_update()
    ).scalar_one_or_none()
    if current is None:
        return 0
    values = [int(event_id), user_id, actor, at, current, to_status, note]
    conn.execute(sa.insert(_AUDIT).values({**dict(zip(columns, values, strict=True)), **extra}))
    return 1


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _mapped(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """The store's error mapping (every SQLAlchemy or driver error becomes a StoreError,
    an outage a StoreUnavailableError), looked up on first call: ``db`` imports this
    module, so it cannot be imported from here at load time."""
    resolved: Callable[_P, _R] | None = None

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        nonlocal resolved
        if resolved is None:
            from fraudlens.store.db import _mapped as store_mapped

            resolved = store_mapped(method)
        return resolved(*args, **kwargs)

    return wrapper


class AuthStore:
    """Identity and audit methods of :class:`~fraudlens.store.Store` (a mixin).

    The methods take and return records (:class:`User`, :class:`ApiToken`,
    :class:`Session`, :class:`AuditEntry`); hashing and checking secrets is
    :mod:`fraudlens.auth`'s job, so nothing here sees a password or a token's value.
    """

    dialect: str

    # Provided by Store.
    def _connect(self) -> AbstractContextManager[sa.Connection]:  # pragma: no cover
        raise NotImplementedError

    def _begin(self) -> AbstractContextManager[sa.Connection]:  # pragma: no cover
        raise NotImplementedError

    # -- users -----------------------------------------------------------------------
    @_mapped
    def add_user(self, username: str, role: str, password_hash: str | None) -> User:
        """Create a user.

        Raises
        ------
        DataError
            Unknown role, or the username is taken.
        """
        if role not in ROLES:
            raise DataError(f"role {role!r} is not one of {ROLES}", column="role")
        now = utcnow()
        taken = f"user {username!r} already exists"
        if self.get_user(username) is not None:
            raise DataError(taken, column="username")
        # The check above gives the usual case a clear message; the unique key settles a
        # race between two processes adding the same name.
        with _mapped_integrity(taken, "username"), self._begin() as conn:
            conn.execute(
                sa.insert(_USERS).values(
                    username=username,
                    role=role,
                    password_hash=password_hash,
                    disabled=False,
                    created_at=now,
                )
            )
        user = self.get_user(username)
        assert user is not None
        return user

    @_mapped
    def get_user(self, username: str) -> User | None:
        """The user with this name, or None."""
        found = self.user_credentials(username)
        return None if found is None else found[0]

    @_mapped
    def user_credentials(self, username: str) -> tuple[User, str | None] | None:
        """The user with this name and its password hash (None for service accounts)."""
        with self._connect() as conn:
            row = conn.execute(sa.select(_USERS).where(_USERS.c.username == username)).first()
        return None if row is None else (_user(row), row.password_hash)

    @_mapped
    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self._connect() as conn:
            rows = conn.execute(sa.select(_USERS).order_by(_USERS.c.username)).all()
        return [_user(r) for r in rows]

    @_mapped
    def set_user_disabled(self, username: str, disabled: bool) -> User:
        """Disable (or enable again) a user; disabling also ends the user's sessions.

        Raises
        ------
        NotFoundError
            No user has this name.
        """
        now = utcnow()
        with self._begin() as conn:
            result = conn.execute(
                sa.update(_USERS)
                .where(_USERS.c.username == username)
                .values(disabled=disabled, disabled_at=now if disabled else None)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no user named {username!r}")
            if disabled:
                ids = sa.select(_USERS.c.id).where(_USERS.c.username == username)
                conn.execute(
                    sa.update(_SESSIONS)
                    .where(_SESSIONS.c.user_id.in_(ids.scalar_subquery()))
                    .where(_SESSIONS.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
        user = self.get_user(username)
        assert user is not None
        return user

    @_mapped
    def set_password_hash(self, username: str, password_hash: str | None) -> None:
        """Replace a user's password hash (a new password, or a rehash with new parameters).

        Raises
        ------
        NotFoundError
            No user has this name.
        """
        with self._begin() as conn:
            result = conn.execute(
                sa.update(_USERS)
                .where(_USERS.c.username == username)
                .values(password_hash=password_hash)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no user named {username!r}")

    # -- API tokens ------------------------------------------------------------------
    @_mapped
    def add_api_token(
        self,
        user_id: int,
        *,
        name: str,
        token_hash: str,
        prefix: str,
        expires_at: datetime | None = None,
    ) -> ApiToken:
        """Record a new token (its digest) for a user and return its record."""
        now = utcnow()
        with self._begin() as conn:
            result = conn.execute(
                sa.insert(_TOKENS).values(
                    user_id=user_id,
                    name=name,
                    token_hash=token_hash,
                    prefix=prefix,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            token_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        found = self.get_api_token(token_id)
        assert found is not None
        return found

    @_mapped
    def get_api_token(self, token_id: int) -> ApiToken | None:
        """A token's record by id, or None."""
        if not 0 < int(token_id) <= _MAX_KEY:
            return None  # no such key can exist (and SQLite cannot even bind it)
        with self._connect() as conn:
            row = conn.execute(_with_owner(_TOKENS).where(_TOKENS.c.id == int(token_id))).first()
        return None if row is None else _token(row)

    @_mapped
    def api_token_by_hash(self, token_hash: str) -> tuple[ApiToken, User] | None:
        """The token with this digest and its user (disabled or not), or None."""
        with self._connect() as conn:
            row = conn.execute(
                _with_owner(_TOKENS).where(_TOKENS.c.token_hash == token_hash)
            ).first()
        return None if row is None else (_token(row), _user(row, joined=True))

    @_mapped
    def list_api_tokens(self, username: str | None = None) -> list[ApiToken]:
        """Every token (of one user if named), oldest first; revoked ones included."""
        query = _with_owner(_TOKENS).order_by(_TOKENS.c.id)
        if username is not None:
            query = query.where(_USERS.c.username == username)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [_token(r) for r in rows]

    @_mapped
    def revoke_api_token(self, token_id: int) -> ApiToken:
        """Revoke a token (idempotent: the first revocation time is kept).

        Raises
        ------
        NotFoundError
            No token has this id.
        """
        if not 0 < int(token_id) <= _MAX_KEY:
            raise NotFoundError(f"no API token with id {token_id}")
        with self._begin() as conn:
            conn.execute(
                sa.update(_TOKENS)
                .where(_TOKENS.c.id == int(token_id))
                .where(_TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        found = self.get_api_token(token_id)
        if found is None:
            raise NotFoundError(f"no API token with id {token_id}")
        return found

    @_mapped
    def touch_api_token(self, token_id: int, at: datetime) -> None:
        """Record when a token was last used."""
        with self._begin() as conn:
            conn.execute(
                sa.update(_TOKENS).where(_TOKENS.c.id == int(token_id)).values(last_used_at=at)
            )

    # -- sessions --------------------------------------------------------------------
    @_mapped
    def add_session(
        self, session_id: str, user_id: int, *, created_at: datetime, expires_at: datetime
    ) -> Session:
        """Record a new sign-in session (``session_id`` is the token's digest)."""
        with self._begin() as conn:
            # Sessions that ended a day ago are of no use: drop them here, so the table
            # stays as small as the number of live sign-ins without a separate job.
            conn.execute(
                sa.delete(_SESSIONS).where(
                    _SESSIONS.c.expires_at < created_at - _SESSION_KEEP,
                )
            )
            conn.execute(
                sa.insert(_SESSIONS).values(
                    id=session_id,
                    user_id=user_id,
                    created_at=created_at,
                    expires_at=expires_at,
                    last_seen_at=created_at,
                )
            )
        return Session(session_id, user_id, created_at, expires_at, created_at, None)

    @_mapped
    def session_with_user(self, session_id: str) -> tuple[Session, User] | None:
        """A session and its user (whatever their state), or None."""
        with self._connect() as conn:
            row = conn.execute(_with_owner(_SESSIONS).where(_SESSIONS.c.id == session_id)).first()
        return None if row is None else (_session(row), _user(row, joined=True))

    @_mapped
    def touch_session(self, session_id: str, at: datetime) -> None:
        """Record activity on a session (its idle timeout restarts)."""
        with self._begin() as conn:
            conn.execute(
                sa.update(_SESSIONS).where(_SESSIONS.c.id == session_id).values(last_seen_at=at)
            )

    @_mapped
    def revoke_session(self, session_id: str) -> None:
        """End a session (sign-out); unknown ids are ignored."""
        with self._begin() as conn:
            conn.execute(
                sa.update(_SESSIONS)
                .where(_SESSIONS.c.id == session_id)
                .where(_SESSIONS.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    # -- keys ------------------------------------------------------------------------
    @_mapped
    def auth_secret(self, name: str) -> str:
        """A random key kept in the database, made on first use.

        Every process and every host of a deployment reads the same key, so a cookie
        signed by one service process is valid in all of them.
        """
        with self._connect() as conn:
            value = conn.execute(
                sa.select(_SECRETS.c.value).where(_SECRETS.c.name == name)
            ).scalar_one_or_none()
        if value is not None:
            return str(value)
        # Two processes may race to create it: the primary key lets one insert win and
        # every one read the winner's value back. A loser's insert fails (a duplicate key,
        # or on MySQL possibly a deadlock between waiters); only if no row exists after
        # that is the failure real.
        failure: sa.exc.DBAPIError | None = None
        try:
            with self._begin() as conn:
                conn.execute(
                    sa.insert(_SECRETS).values(
                        name=name, value=secrets.token_urlsafe(48), created_at=utcnow()
                    )
                )
        except sa.exc.DBAPIError as exc:
            failure = exc
        with self._connect() as conn:
            value = conn.execute(
                sa.select(_SECRETS.c.value).where(_SECRETS.c.name == name)
            ).scalar_one_or_none()
        if value is None:
            assert failure is not None
            raise failure
        return str(value)

    # -- audit -----------------------------------------------------------------------
    @_mapped
    def review_history(self, event_id: int) -> list[AuditEntry]:
        """The review decisions on a risk event, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(_AUDIT).where(_AUDIT.c.event_id == int(event_id)).order_by(_AUDIT.c.id)
            ).all()
        return [_audit(r) for r in rows]


@contextlib.contextmanager
def _mapped_integrity(message: str, column: str) -> Iterator[None]:
    """A unique-key clash as a DataError, whether the store passes SQLAlchemy's error
    through or has already mapped it to a StoreError."""
    try:
        yield
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, sa.exc.IntegrityError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise DataError(message, column=column) from None
