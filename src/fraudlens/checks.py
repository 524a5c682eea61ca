"""The account-check message: what the business side sends to ask for an account's score.

One contract, written here only, used by everyone who makes or reads the message: the
service's check endpoint and ``fraudlens enqueue`` build it with :func:`check_message`;
the worker reads it with :func:`parse_check`.

Wire form (a JSON object)::

    {"account_id": "A17", "business_type": "withdrawal",
     "requested_at": "2026-03-02T10:00:00.000000+00:00"}

- ``account_id`` (or the reference's ``userid``; ``userId``/``accountId`` are read too):
  a string, or an integer (the reference's ids are numbers). It must follow the one id
  rule of :mod:`fraudlens._ids`: 1 to 64 characters, none of them a control or other
  non-printable character. Surrounding blanks are removed.
- ``business_type`` (or ``businessType``): optional; why the check is asked for, at most
  64 printable characters.
- ``requested_at``: optional; ISO-8601 text (no zone means UTC) or Unix seconds. The
  worker measures its latency from it.

Other keys are ignored. A message that breaks the contract raises
:class:`~fraudlens.errors.DataError` naming the field (its ``column``); the worker
dead-letters such a message with that reason, and the service answers 422.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fraudlens._ids import MAX_ID_LENGTH, check_id, id_problem
from fraudlens._time import utc, utcnow
from fraudlens.errors import DataError

__all__ = ["ACCOUNT_KEYS", "AccountCheck", "check_message", "parse_check"]

#: Keys read for the account id, in order of preference.
ACCOUNT_KEYS = ("account_id", "userid", "userId", "accountId")
_BUSINESS_KEYS = ("business_type", "businessType")


@dataclass(frozen=True)
class AccountCheck:
    """One account check, parsed.

    Attributes
    ----------
    account_id
        The account to score (a valid id).
    business_type
        Why the check was asked for (e.g. ``withdrawal``), or None.
    requested_at
        When it was asked for (aware, UTC), or None.
    """

    account_id: str
    business_type: str | None = None
    requested_at: datetime | None = None

    def message(self) -> dict[str, Any]:
        """The wire form of this check (``requested_at`` kept as is, None when unknown)."""
        return {
            "account_id": self.account_id,
            "business_type": self.business_type,
            "requested_at": _iso(self.requested_at) if self.requested_at else None,
        }


def check_message(
    account_id: str | int,
    business_type: str | None = None,
    requested_at: datetime | None = None,
) -> dict[str, Any]:
    """The queue message asking for a check of ``account_id``.

    Parameters
    ----------
    account_id
        The account; checked against the id rule.
    business_type
        Why the check is asked for, or None.
    requested_at
        When it was asked for; now when None. A naive datetime means UTC.

    Returns
    -------
    dict
        The JSON object to send (``requested_at`` as ISO-8601 UTC with microseconds).

    Raises
    ------
    DataError
        If ``account_id`` or ``business_type`` breaks the contract (``column`` names it).
    """
    account = _account(account_id)
    business = _business(business_type)
    return {
        "account_id": account,
        "business_type": business,
        "requested_at": _iso(utc(requested_at) if requested_at is not None else utcnow()),
    }


def parse_check(body: dict[str, Any]) -> AccountCheck:
    """Read an account-check message.

    Parameters
    ----------
    body
        The decoded JSON object.

    Returns
    -------
    AccountCheck

    Raises
    ------
    DataError
        Naming the field that is missing or wrong (``column``), e.g.
        ``column 'account_id': account_id contains a control character (U+0000 at
        position 2)``.
    """
    if not isinstance(body, dict):
        raise DataError(f"a check message is a JSON object, not {type(body).__name__}")
    account: Any = None
    for key in ACCOUNT_KEYS:
        if body.get(key) is not None:
            account = body[key]
            break
    if account is None:
        raise DataError("missing account_id (or userid)", column="account_id")
    business: Any = None
    for key in _BUSINESS_KEYS:
        if body.get(key) is not None:
            business = body[key]
            break
    return AccountCheck(
        _account(account), _business(business), _requested_at(body.get("requested_at"))
    )


# ----------------------------------------------------------------------------- fields


def _account(value: Any) -> str:
    if isinstance(value, str):
        value = value.strip()
    elif isinstance(value, bool) or not isinstance(value, int):
        raise DataError(
            f"account_id must be a string, not {type(value).__name__}", column="account_id"
        )
    return check_id(value, column="account_id")


def _business(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(
            f"business_type must be a string, not {type(value).__name__}", column="business_type"
        )
    value = value.strip()
    if not value:
        return None
    problem = id_problem(value, max_length=MAX_ID_LENGTH)
    if problem is not None:
        raise DataError(f"business_type {problem}", column="business_type")
    return value


def _requested_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise DataError("requested_at must be ISO-8601 text or Unix seconds", column="requested_at")
    if isinstance(value, int | float):
        if math.isfinite(value):
            try:
                return datetime.fromtimestamp(float(value), tz=UTC)
            except (OverflowError, OSError, ValueError):
                pass  # outside what datetime holds (years 1 to 9999)
        raise DataError(f"requested_at {value!r} is not a usable Unix time", column="requested_at")
    if isinstance(value, str):
        if len(value) > 64:
            raise DataError("requested_at is too long for a timestamp", column="requested_at")
        try:
            return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except (ValueError, OverflowError):
            # OverflowError: a zone that moves year 1 or 9999 out of range.
            raise DataError(
                f"cannot parse requested_at {value!r} as ISO-8601", column="requested_at"
            ) from None
    raise DataError("requested_at must be ISO-8601 text or Unix seconds", column="requested_at")


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")
