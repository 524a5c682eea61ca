"""Records of identity, as every layer sees them: users, API tokens, sessions, and the
review audit's entries. Plain frozen dataclasses with no dependency, so the service can
import them without a database driver."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["ROLES", "ApiToken", "AuditEntry", "Session", "User"]

#: The roles a user can have: analysts review risk events; admins can do what analysts
#: can; service accounts are machines calling the scoring and check endpoints with a token.
ROLES = ("analyst", "admin", "service")


@dataclass(frozen=True, slots=True)
class User:
    """A user as the rest of fraudlens sees it (never with the password hash)."""

    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime
    disabled_at: datetime | None = None
    has_password: bool = False


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token's record (its value is shown once, at creation, and never stored)."""

    id: int
    user_id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def active(self, now: datetime) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class Session:
    """A sign-in session's record."""

    id: str
    user_id: int
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of a risk event's review history."""

    id: int
    event_id: int
    actor: str
    user_id: int | None
    at: datetime
    from_status: str
    to_status: str
    note: str | None
    #: ``review`` (a decision) or ``assign`` (a change of assignee, status unchanged).
    action: str = "review"
    from_assignee: str | None = None
    to_assignee: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO-8601 UTC time)."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "actor": self.actor,
            "user_id": self.user_id,
            "at": self.at.astimezone(UTC).isoformat(),
            "from_status": self.from_status,
            "to_status": self.to_status,
            "note": self.note,
            "action": self.action,
            "from_assignee": self.from_assignee,
            "to_assignee": self.to_assignee,
        }
