"""The authenticator: users, API tokens, sign-in sessions and CSRF tokens over the store.

Nothing here knows about HTTP: the service maps these calls onto cookies and headers, the
CLI onto commands.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from fraudlens._ids import MAX_ID_LENGTH
from fraudlens._time import utcnow
from fraudlens.auth._errors import InvalidCredentialsError, RateLimitedError
from fraudlens.auth._limits import LoginLimiter
from fraudlens.auth._passwords import (
    MAX_PASSWORD_CHARS,
    Passwords,
    check_password,
    normalise_username,
)
from fraudlens.auth._records import ROLES, ApiToken, Session, User
from fraudlens.auth._secrets import (
    SHOWN_CHARS,
    TOKEN_PREFIX,
    CookieSigner,
    csrf_token,
    digest,
    new_api_token,
    new_session_token,
    same_secret,
)
from fraudlens.errors import DataError, NotFoundError

if TYPE_CHECKING:
    from fraudlens.store import Store

__all__ = ["ADMIN", "ANALYST", "SERVICE", "Authenticator", "SessionGrant", "SignedIn"]

ANALYST, ADMIN, SERVICE = ROLES
#: Roles that may sign in to the review page with a password.
_PEOPLE = frozenset({ANALYST, ADMIN})
_KEY_NAME = "session-signing"
# A session's last-seen time is written at most this often (one write per few minutes of
# activity, not one per request); the idle timeout is exact to within this much.
_TOUCH_EVERY = timedelta(minutes=5)
# Same for an API token's last use.
_TOKEN_TOUCH_EVERY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """What a successful sign-in hands the browser."""

    user: User
    session: Session
    cookie: str
    csrf_token: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A valid session found from its cookie."""

    user: User
    session: Session
    csrf_token: str


class Authenticator:
    """Users, tokens and sessions of one store.

    Parameters
    ----------
    store
        Where users, token digests and sessions live.
    secret_key
        Key that signs session cookies and derives CSRF tokens. None: a random key kept in
        the store (made on first use), shared by every process on the same database.
    session_hours
        A session ends this long after sign-in, active or not.
    idle_minutes
        A session also ends after this long without a request.
    limiter
        Sign-in rate limits (:class:`LoginLimiter` defaults when None).
    token_cache_seconds
        A checked API token is trusted for this long in this process without another
        database lookup; revoking a token or disabling its user takes effect in every
        process within this time.
    hash_slots
        Password hashes computed at once in this process (each takes about 64 MiB and
        0.1 s); further sign-ins wait up to ``hash_wait_seconds`` for a slot.
    hash_wait_seconds
        How long a sign-in waits for a hashing slot before being told to retry.
    passwords
        The password hasher (Argon2id with the library's defaults when None).
    """

    def __init__(
        self,
        store: Store,
        *,
        secret_key: str | None = None,
        session_hours: float = 12.0,
        idle_minutes: float = 120.0,
        limiter: LoginLimiter | None = None,
        token_cache_seconds: float = 10.0,
        hash_slots: int = 2,
        hash_wait_seconds: float = 5.0,
        passwords: Passwords | None = None,
    ) -> None:
        if session_hours <= 0 or idle_minutes <= 0:
            raise ValueError("session_hours and idle_minutes must be positive")
        if secret_key is not None and len(secret_key) < 32:
            raise DataError(
                "the secret key must have at least 32 characters (e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)",
                column="secret_key",
            )
        self.store = store
        self.session_lifetime = timedelta(hours=session_hours)
        self.idle_timeout = timedelta(minutes=idle_minutes)
        self.limiter = limiter if limiter is not None else LoginLimiter()
        self.token_cache_seconds = float(token_cache_seconds)
        self.passwords = passwords if passwords is not None else Passwords()
        self._configured_key = secret_key
        self._key: str | None = None
        self._signer: CookieSigner | None = None
        self._key_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, int(hash_slots)))
        self._hash_wait = float(hash_wait_seconds)
        self._token_cache: dict[str, tuple[float, ApiToken, User]] = {}
        self._cache_lock = threading.Lock()

    # -- keys ------------------------------------------------------------------------
    def _secret(self) -> tuple[str, CookieSigner]:
        with self._key_lock:
            if self._key is None or self._signer is None:
                key = self._configured_key or self.store.auth_secret(_KEY_NAME)
                self._key, self._signer = key, CookieSigner(key)
            return self._key, self._signer

    # -- users -----------------------------------------------------------------------
    def create_user(self, username: str, role: str, password: str | None = None) -> User:
        """Add a user.

        Parameters
        ----------
        username
            1 to 64 characters (see :func:`~fraudlens.auth.normalise_username`).
        role
            ``analyst``, ``admin`` or ``service``.
        password
            Required for analysts and admins (who sign in), refused for service accounts
            (which only use API tokens).

        Raises
        ------
        DataError
            A bad name, role or password, or the name is taken.
        """
        name = normalise_username(username)
        if role not in ROLES:
            raise DataError(f"role {role!r} is not one of {', '.join(ROLES)}", column="role")
        if role == SERVICE:
            if password is not None:
                raise DataError(
                    "service accounts sign in with API tokens, not passwords: "
                    "create one with `fraudlens tokens create`",
                    column="password",
                )
            return self.store.add_user(name, role, None)
        if password is None:
            raise DataError(f"a password is required for the {role} role", column="password")
        check_password(password, name)
        return self.store.add_user(name, role, self.passwords.hash(password))

    def set_password(self, username: str, password: str) -> None:
        """Give a person a new password (their open sessions stay valid).

        Raises
        ------
        NotFoundError
            No such user.
        DataError
            The password breaks the rules, or the user is a service account.
        """
        name = normalise_username(username)
        user = self.store.get_user(name)
        if user is None:
            raise NotFoundError(f"no user named {name!r}")
        if user.role == SERVICE:
            raise DataError("service accounts have no password", column="password")
        check_password(password, name)
        self.store.set_password_hash(name, self.passwords.hash(password))

    def disable_user(self, username: str) -> User:
        """Disable a user: no sign-in, sessions ended, API tokens refused (within
        ``token_cache_seconds`` in a running service)."""
        return self.store.set_user_disabled(normalise_username(username), True)

    def enable_user(self, username: str) -> User:
        """Enable a disabled user again (tokens not revoked meanwhile work again)."""
        return self.store.set_user_disabled(normalise_username(username), False)

    def users(self) -> list[User]:
        """Every user, by name."""
        return self.store.list_users()

    # -- API tokens ------------------------------------------------------------------
    def create_token(
        self, username: str, *, name: str = "default", expires_in: timedelta | None = None
    ) -> tuple[str, ApiToken]:
        """Make an API token for a user.

        Returns
        -------
        (str, ApiToken)
            The token's value, to show once and never again, and its record.

        Raises
        ------
        NotFoundError
            No such user.
        DataError
            The user is disabled, or the name or lifetime is bad.
        """
        uname = normalise_username(username)
        user = self.store.get_user(uname)
        if user is None:
            raise NotFoundError(f"no user named {uname!r}")
        if user.disabled:
            raise DataError(f"user {uname!r} is disabled", column="username")
        label = name.strip()
        if not label or len(label) > MAX_ID_LENGTH or not label.isprintable():
            raise DataError(
                f"a token name has 1 to {MAX_ID_LENGTH} printable characters", column="name"
            )
        expires_at = None
        if expires_in is not None:
            if expires_in <= timedelta(0):
                raise DataError("a token's lifetime must be positive", column="expires")
            expires_at = utcnow() + expires_in
        value = new_api_token()
        record = self.store.add_api_token(
            user.id,
            name=label,
            token_hash=digest(value),
            prefix=value[:SHOWN_CHARS],
            expires_at=expires_at,
        )
        return value, record

    def revoke_token(self, token_id: int) -> ApiToken:
        """Revoke a token by id (this process forgets it at once; others within
        ``token_cache_seconds``)."""
        record = self.store.revoke_api_token(token_id)
        with self._cache_lock:
            for key, (_, token, _) in list(self._token_cache.items()):
                if token.id == record.id:
                    del self._token_cache[key]
        return record

    def tokens(self, username: str | None = None) -> list[ApiToken]:
        """Every token's record (of one user if named)."""
        return self.store.list_api_tokens(
            None if username is None else normalise_username(username)
        )

    def check_token(self, value: str) -> User | None:
        """The user an API token acts for, or None when the token is unknown, revoked,
        expired, or its user is disabled."""
        if not value.startswith(TOKEN_PREFIX) or len(value) > 128:
            return None
        key = digest(value)
        clock = time.monotonic()
        with self._cache_lock:
            hit = self._token_cache.get(key)
        now = utcnow()
        if hit is not None and hit[0] > clock:
            _, token, user = hit
        else:
            found = self.store.api_token_by_hash(key)
            if found is None:
                return None
            token, user = found
            if token.last_used_at is None or now - token.last_used_at > _TOKEN_TOUCH_EVERY:
                self.store.touch_api_token(token.id, now)
            with self._cache_lock:
                if len(self._token_cache) >= 10_000:
                    self._token_cache.clear()
                self._token_cache[key] = (clock + self.token_cache_seconds, token, user)
        if not token.active(now) or user.disabled:
            return None
        return user

    # -- sessions --------------------------------------------------------------------
    def sign_in(self, username: str, password: str, address: str) -> SessionGrant:
        """Check a person's password and open a session.

        Parameters
        ----------
        username, password
            As typed.
        address
            The client's address, for the per-address rate limit.

        Raises
        ------
        RateLimitedError
            Too many failed attempts for this name or from this address, or every
            hashing slot is busy; ``retry_after`` says when to try again.
        InvalidCredentialsError
            Unknown name, wrong password, disabled user or a service account. The message
            is the same for all, and so is the time taken.
        """
        # The rate limiter's key is bounded; the password is checked against the whole
        # name, so a name longer than any user's never signs in as its prefix.
        key_name = str(username).strip().lower()[:MAX_ID_LENGTH]
        wait = self.limiter.retry_after(key_name, address)
        if wait > 0:
            raise RateLimitedError(wait)
        if not self._slots.acquire(timeout=self._hash_wait):
            raise RateLimitedError(1.0, "the server is busy checking other sign-ins")
        try:
            user = self._check_password(str(username), password)
        finally:
            self._slots.release()
        if user is None:
            self.limiter.failed(key_name, address)
            raise InvalidCredentialsError("wrong user name or password")
        self.limiter.succeeded(key_name)
        return self._open_session(user)

    def _check_password(self, name: str, password: str) -> User | None:
        if len(password) > MAX_PASSWORD_CHARS:
            return None
        try:
            found = self.store.user_credentials(normalise_username(name))
        except DataError:
            found = None
        if found is None or found[1] is None:
            self.passwords.waste_time(password)
            return None
        user, stored = found
        assert stored is not None
        if not self.passwords.verify(stored, password):
            return None
        if user.disabled or user.role not in _PEOPLE:
            return None
        if self.passwords.needs_rehash(stored):
            self.store.set_password_hash(user.username, self.passwords.hash(password))
        return user

    def _open_session(self, user: User) -> SessionGrant:
        key, signer = self._secret()
        token = new_session_token()
        now = utcnow()
        session = self.store.add_session(
            digest(token), user.id, created_at=now, expires_at=now + self.session_lifetime
        )
        return SessionGrant(user, session, signer.dumps(token), csrf_token(key, token))

    def check_session(self, cookie: str) -> SignedIn | None:
        """The valid session a cookie names, or None (forged, expired, idle too long,
        signed out, or its user disabled)."""
        key, signer = self._secret()
        token = signer.loads(cookie, self.session_lifetime.total_seconds())
        if token is None:
            return None
        found = self.store.session_with_user(digest(token))
        if found is None:
            return None
        session, user = found
        now = utcnow()
        if (
            session.revoked_at is not None
            or session.expires_at <= now
            or session.last_seen_at + self.idle_timeout <= now
            or user.disabled
            or user.role not in _PEOPLE
        ):
            return None
        if now - session.last_seen_at > _TOUCH_EVERY:
            self.store.touch_session(session.id, now)
        return SignedIn(user, session, csrf_token(key, token))

    def sign_out(self, cookie: str) -> None:
        """End the session a cookie names (nothing happens for an invalid cookie)."""
        _, signer = self._secret()
        token = signer.loads(cookie, self.session_lifetime.total_seconds())
        if token is not None:
            self.store.revoke_session(digest(token))

    @staticmethod
    def csrf_ok(signed_in: SignedIn, given: str | None) -> bool:
        """True when ``given`` is the session's CSRF token (constant-time comparison)."""
        return same_secret(signed_in.csrf_token, given)
