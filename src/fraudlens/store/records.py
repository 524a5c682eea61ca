"""Typed records that cross the store's boundary.

A :class:`RiskEvent` is built and checked once, where it is made (the worker, a test, an
import), and the store writes it as it is: no dict of loosely named keys is re-checked
by each layer it passes through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from fraudlens._ids import check_id
from fraudlens._time import utc
from fraudlens.errors import DataError

__all__ = ["FRAUD_TYPE", "RISK_STATUSES", "RiskEvent"]

#: Statuses of a risk event: new, confirmed as fraud by an analyst, or dismissed.
RISK_STATUSES = ("open", "confirmed", "dismissed")

#: ``fraud_type`` of the market detector's events (the reference's ``suspiciousTransaction``).
FRAUD_TYPE = "suspicious_transaction"

_REQUIRED = (
    "account_id",
    "score",
    "event_threshold",
    "model_version",
    "window_start",
    "window_end",
)


#: The timestamp fields of a risk event.
_TIMES = ("window_start", "window_end", "created_at", "requested_at", "reviewed_at", "assigned_at")


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """One risk event: a score above the risk-event threshold, for an analyst to review.

    The key ``(account_id, fraud_type, window_end)`` is unique in the store: the same
    evidence raises one event however often it is checked.

    Attributes
    ----------
    account_id
        The account (an id under the one id rule).
    score
        The model's score, 0..1.
    event_threshold
        The risk-event threshold the score was above (the reference's 0.9 by default).
    model_version
        ``name:version`` of the model that scored.
    window_start, window_end
        The scoring window (aware UTC); it ends at the account's latest trade.
    model_threshold
        The model's own operating point (from its metadata), for comparison; None if
        unknown.
    fraud_type
        Kind of fraud (:data:`FRAUD_TYPE`).
    business_type
        Why the check was asked for (e.g. ``withdrawal``), or None.
    details
        JSON object with the evidence (the trades that drove the score, ...).
    value_moved
        Value the account's matched round trips moved, in the quote currency (>= 0;
        :func:`fraudlens.market.pairs.account_evidence`), or None if unknown.
    counterparty
        The suspected counterparty: the account whose trades mirror this one's most, or
        None.
    note
        Analyst's note.
    status
        One of :data:`RISK_STATUSES`.
    created_at, requested_at, reviewed_at
        When the event was written, the check asked for, the decision taken (aware UTC).
    reviewed_by
        Who decided.
    assignee, assigned_at
        The user who works the event (None: nobody) and since when (aware UTC); set
        through :meth:`fraudlens.store.Store.assign_risk_events`, never when written.
    id
        The store's id (None before it is written).
    """

    account_id: str
    score: float
    event_threshold: float
    model_version: str
    window_start: datetime
    window_end: datetime
    model_threshold: float | None = None
    fraud_type: str = FRAUD_TYPE
    business_type: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    value_moved: float | None = None
    counterparty: str | None = None
    note: str | None = None
    status: str = "open"
    created_at: datetime | None = None
    requested_at: datetime | None = None
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    assignee: str | None = None
    assigned_at: datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once, here
        set_(self, "account_id", check_id(self.account_id, column="account_id"))
        if self.counterparty is not None:
            set_(self, "counterparty", check_id(self.counterparty, column="counterparty"))
        for name in ("score", "event_threshold", "model_threshold", "value_moved"):
            value = getattr(self, name)
            if value is None and name in ("model_threshold", "value_moved"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(f"{name} must be a number, not {value!r}", column=name)
            if not math.isfinite(float(value)):
                raise DataError(f"{name} must be finite, not {value!r}", column=name)
            set_(self, name, float(value))
        if self.status not in RISK_STATUSES:
            raise DataError(
                f"status {self.status!r} is not one of {RISK_STATUSES}", column="status"
            )
        if not isinstance(self.details, Mapping):
            raise DataError("details must be a JSON object", column="details")
        for name in _TIMES:
            value = getattr(self, name)
            if value is not None and not isinstance(value, datetime):
                raise DataError(f"{name} must be a datetime, not {value!r}", column=name)
            set_(self, name, utc(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, row: int | None = None) -> RiskEvent:
        """Build an event from a mapping (e.g. parsed JSON), timestamps as datetimes or
        ISO-8601 text; ``threshold`` is read as ``event_threshold``.

        Raises
        ------
        DataError
            Naming the missing, unknown or bad field (and ``row`` if given).
        """
        data = dict(values)
        if "threshold" in data and "event_threshold" not in data:
            data["event_threshold"] = data.pop("threshold")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"unknown risk event fields {unknown}", row=row, column=unknown[0])
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            raise DataError(f"risk event lacks {', '.join(missing)}", row=row, column=missing[0])
        for name in _TIMES:
            if isinstance(data.get(name), str):
                data[name] = _parse_time(data[name], name, row)
        for name, default in (("fraud_type", FRAUD_TYPE), ("status", "open"), ("details", {})):
            if data.get(name) is None:
                data[name] = default
        try:
            return cls(**data)
        except DataError as exc:
            raise DataError(exc.reason, row=row, column=exc.column) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: timestamps as ISO-8601 UTC text, ``threshold`` beside
        ``event_threshold`` (the name the API has always used)."""
        # fields one by one, not asdict(): asdict deep-copies details, which is replaced
        # by a (shallow) copy just below anyway, and the copy dominated listing events
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["details"] = dict(self.details)
        for name in _TIMES:
            value = out[name]
            out[name] = None if value is None else value.isoformat()
        out["threshold"] = self.event_threshold
        return out


def _parse_time(value: str, column: str, row: int | None) -> datetime:
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        raise DataError(
            f"cannot parse {value!r} as an ISO-8601 timestamp", row=row, column=column
        ) from None
