"""One exception hierarchy for the whole package.

Every error raised on purpose by fraudlens derives from :class:`FraudlensError`, so a
caller (the CLI, the service, a worker) can tell bad input from a bug.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "FraudlensError",
    "ModelNotFoundError",
    "NotFoundError",
    "QueueError",
    "StoreError",
]


class FraudlensError(Exception):
    """Base class of every error fraudlens raises on purpose."""


class DataError(FraudlensError, ValueError):
    """Input data that breaks a data contract.

    Parameters
    ----------
    message
        What is wrong, in words a user can act on.
    file
        The file the bad value came from, if any.
    row
        1-based data row number (the header is row 0), if known.
    column
        The column name, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = message
        self.file = file
        self.row = row
        self.column = column
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ModelNotFoundError(FraudlensError, LookupError):
    """No model (or no such version) in the registry."""


class QueueError(FraudlensError):
    """A queue could not be reached or a message could not be handled."""


class ConfigError(FraudlensError):
    """A setting has a value fraudlens cannot use."""


class StoreError(FraudlensError):
    """The database could not be reached, or is not at the schema this version needs."""


class NotFoundError(FraudlensError, LookupError):
    """A record asked for by id (a risk event, say) does not exist."""
