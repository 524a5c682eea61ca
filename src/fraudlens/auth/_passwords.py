"""Password hashing with Argon2id (argon2-cffi), and the password and user-name rules."""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

from fraudlens._ids import MAX_ID_LENGTH
from fraudlens.errors import DataError

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "Passwords",
    "check_password",
    "normalise_username",
]

#: Shortest password accepted (NIST SP 800-63B asks for at least 8; analysts of a fraud
#: system get a little more).
MIN_PASSWORD_CHARS = 12
#: Longest password accepted: long enough for any passphrase or manager, short enough that
#: a hostile request cannot make the server hash megabytes.
MAX_PASSWORD_CHARS = 1024

# A user name is an id like any other: at most MAX_ID_LENGTH characters.
_USERNAME = re.compile(rf"^[a-z0-9][a-z0-9._@-]{{0,{MAX_ID_LENGTH - 1}}}$")


def normalise_username(name: str) -> str:
    """A user name in its stored form: trimmed and lower-case.

    Names are compared in this form everywhere, so ``Ana`` and ``ana`` are one user on
    every database (MariaDB compares text case-insensitively, PostgreSQL does not).

    Raises
    ------
    DataError
        Not 1 to :data:`~fraudlens._ids.MAX_ID_LENGTH` (64) characters of
        ``a-z 0-9 . _ @ -`` starting with a letter or digit.
    """
    text = str(name).strip().lower()
    if not _USERNAME.match(text):
        raise DataError(
            f"user name {name!r} is not allowed: use 1 to {MAX_ID_LENGTH} characters a-z, 0-9, "
            "'.', '_', "
            "'@' or '-', starting with a letter or a digit",
            column="username",
        )
    return text


def check_password(password: str, username: str | None = None) -> str:
    """Return ``password`` if it meets the rules, else raise.

    Raises
    ------
    DataError
        Shorter than :data:`MIN_PASSWORD_CHARS`, longer than :data:`MAX_PASSWORD_CHARS`,
        holding a control character, or the user name itself.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise DataError(
            f"the password has {len(password)} characters; at least {MIN_PASSWORD_CHARS} "
            "are required",
            column="password",
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise DataError(
            f"the password is longer than {MAX_PASSWORD_CHARS} characters", column="password"
        )
    # A control character (NUL, a line break, ESC, ...) cannot be typed at the login
    # page: a password holding one, set from a pipe, locked its user out.
    ctl = next((i for i, ch in enumerate(password) if unicodedata.category(ch) == "Cc"), None)
    if ctl is not None:
        raise DataError(
            f"the password holds a control character (U+{ord(password[ctl]):04X} at "
            f"character {ctl + 1}), which cannot be typed at the login page",
            column="password",
        )
    if username is not None and password.strip().lower() == username.strip().lower():
        raise DataError("the password must not be the user name", column="password")
    return password


class Passwords:
    """Argon2id hashes through argon2-cffi's :class:`~argon2.PasswordHasher`.

    Parameters
    ----------
    hasher
        An ``argon2.PasswordHasher``; the library's defaults (RFC 9106's low-memory
        profile: 3 passes over 64 MiB, 4 lanes) when None. A hash made with older
        parameters still verifies, and :meth:`needs_rehash` says when to replace it.

    Notes
    -----
    Each hash takes about 0.1 s of CPU and 64 MiB of memory by design, so the service
    bounds how many run at once (:class:`~fraudlens.auth.Authenticator`).
    """

    def __init__(self, hasher: Any = None) -> None:
        if hasher is None:
            from fraudlens._optional import require

            hasher = require("argon2", feature="password hashing").PasswordHasher()
        self._hasher = hasher
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        """A new salted Argon2id hash of ``password`` (PHC string format)."""
        return str(self._hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches ``password_hash``; False for a wrong password or a
        hash this library cannot read (never raises for either)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        from argon2.exceptions import InvalidHashError

        try:
            return bool(self._hasher.check_needs_rehash(password_hash))
        except InvalidHashError:
            return True

    def waste_time(self, password: str) -> None:
        """Verify against a throw-away hash: a sign-in for a user that does not exist costs
        as long as one with a wrong password, so timing does not tell which names exist."""
        with self._lock:
            if self._dummy is None:
                self._dummy = self.hash("fraudlens-no-such-user")
            dummy = self._dummy
        self.verify(dummy, password)
