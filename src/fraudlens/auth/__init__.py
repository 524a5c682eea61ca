"""Identity: users and roles, Argon2 passwords, API tokens, sessions, CSRF tokens, sign-in
rate limits, and the review decisions' audit trail.

>>> from fraudlens.auth import Authenticator
>>> from fraudlens.store import open_store
>>> auth = Authenticator(open_store("sqlite:///fraudlens.db"))      # doctest: +SKIP
>>> auth.create_user("ana", "analyst", password="a long passphrase")  # doctest: +SKIP
>>> value, token = auth.create_token("scorer")                       # doctest: +SKIP

Roles
-----
``analyst``
    Signs in to the review page; reads risk events and records decisions.
``admin``
    Everything an analyst can do. Users and tokens are managed with the CLI
    (``fraudlens users``, ``fraudlens tokens``) by whoever can reach the database.
``service``
    A machine: no password, only API tokens; calls the scoring and account-check
    endpoints and reads risk events.

Nothing in this package imports a web framework; :mod:`fraudlens.service` maps it onto
cookies and headers.
"""

from __future__ import annotations

from fraudlens.auth._core import (
    ADMIN,
    ANALYST,
    SERVICE,
    Authenticator,
    SessionGrant,
    SignedIn,
)
from fraudlens.auth._errors import AuthError, InvalidCredentialsError, RateLimitedError
from fraudlens.auth._limits import LoginLimiter
from fraudlens.auth._passwords import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    Passwords,
    check_password,
    normalise_username,
)
from fraudlens.auth._records import ROLES, ApiToken, AuditEntry, Session, User
from fraudlens.auth._secrets import TOKEN_PREFIX, csrf_token, digest

__all__ = [
    "ADMIN",
    "ANALYST",
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "ROLES",
    "SERVICE",
    "TOKEN_PREFIX",
    "ApiToken",
    "AuditEntry",
    "AuthError",
    "Authenticator",
    "InvalidCredentialsError",
    "LoginLimiter",
    "Passwords",
    "RateLimitedError",
    "Session",
    "SessionGrant",
    "SignedIn",
    "User",
    "check_password",
    "csrf_token",
    "digest",
    "normalise_username",
]
