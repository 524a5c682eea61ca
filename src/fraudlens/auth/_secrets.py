"""Random secrets and what is derived from them: API tokens, session cookies, CSRF tokens.

- An API token is ``flk_`` and 43 URL-safe characters (256 random bits). The store keeps
  its SHA-256 digest: a value nobody can guess needs no slow hash, and one indexed lookup
  checks a request.
- A session token is 256 random bits as well; the store keeps its digest and the browser
  keeps it in a cookie signed with itsdangerous (a forged or tampered cookie is refused
  before any database lookup, and the signature's timestamp bounds its age).
- The CSRF token of a session is an HMAC of the session token under the server's key. It
  is bound to the session (a token from another session, or from an attacker's own
  session, does not match) and needs no storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "DIGEST_CHARS",
    "SHOWN_CHARS",
    "TOKEN_PREFIX",
    "CookieSigner",
    "csrf_token",
    "digest",
    "new_api_token",
    "new_session_token",
    "same_secret",
]

#: Every API token starts with this, so a leaked one is easy to recognise (secret scanners)
#: and tell from a session cookie.
TOKEN_PREFIX = "flk_"
#: Characters of a token kept in the clear (the listing shows them to tell tokens apart).
SHOWN_CHARS = 12

#: Length of :func:`digest`'s hex text (SHA-256): the width of the store's digest columns.
DIGEST_CHARS = 2 * hashlib.sha256().digest_size

_CSRF_LABEL = b"fraudlens.csrf.v1:"


def new_api_token() -> str:
    """A new API token value (shown once to its owner, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    """A new session token value (256 random bits)."""
    return secrets.token_urlsafe(32)


def digest(value: str) -> str:
    """SHA-256 of a token, as :data:`DIGEST_CHARS` (64) hex characters: what the store
    keeps."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def csrf_token(key: str, session_token: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 of its token under ``key``, base64url."""
    mac = hmac.new(key.encode("utf-8"), _CSRF_LABEL + session_token.encode("utf-8"), "sha256")
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class CookieSigner:
    """Signs a session token into a cookie value and checks it back (itsdangerous).

    Parameters
    ----------
    key
        The server's secret key.
    """

    def __init__(self, key: str) -> None:
        from fraudlens._optional import require

        itsdangerous = require("itsdangerous", feature="session cookies")
        self._serializer = itsdangerous.URLSafeTimedSerializer(key, salt="fraudlens.session.v1")

    def dumps(self, session_token: str) -> str:
        """The cookie value for ``session_token``."""
        return str(self._serializer.dumps(session_token))

    def loads(self, cookie: str, max_age_seconds: float) -> str | None:
        """The session token in a cookie, or None if the cookie is forged, tampered with,
        malformed or older than ``max_age_seconds``."""
        from itsdangerous import BadData

        if not cookie or len(cookie) > 512:
            return None
        try:
            value = self._serializer.loads(cookie, max_age=int(max_age_seconds))
        except BadData:
            return None
        return value if isinstance(value, str) else None
