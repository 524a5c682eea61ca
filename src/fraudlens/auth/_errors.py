"""Errors of sign-in and authorisation (in the one tree under FraudlensError)."""

from __future__ import annotations

import math

from fraudlens.errors import FraudlensError

__all__ = ["AuthError", "InvalidCredentialsError", "RateLimitedError"]


class AuthError(FraudlensError):
    """Who is asking could not be established, or may not do what they ask."""


class InvalidCredentialsError(AuthError):
    """A sign-in with a wrong name or password (or a user who may not sign in)."""


class RateLimitedError(AuthError):
    """Too many attempts: try again after ``retry_after`` seconds.

    Parameters
    ----------
    retry_after
        Seconds to wait (rounded up to a whole second in :attr:`retry_after`).
    message
        What was limited; a default names the wait.
    """

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message or f"too many failed sign-ins: try again in {self.retry_after} s")
