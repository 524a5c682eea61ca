"""One exception hierarchy for the whole package.

Every error raised on purpose by fraudlens derives from :class:`FraudlensError`, so a
caller (the CLI, the service, a worker) can tell bad input from a bug::

    FraudlensError
    ├── DataError (ValueError)        bad input: names file, row and column
    ├── ModelNotFoundError (LookupError)
    ├── NotFoundError (LookupError)   a record asked for by id
    ├── ConfigError                   a setting fraudlens cannot use
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── QueueError                    a queue could not be used
    ├── StoreError                    a database call failed
    │   └── StoreUnavailableError     ... because the database is unreachable (also below)
    └── UnavailableError              an infrastructure outage: store, sink, model, queue
        └── StoreUnavailableError

:class:`UnavailableError` is what a consumer loop tells apart from a bad message: the
work was fine, something it depends on is down, so the message is handed back without
spending a delivery attempt and consumption pauses until the dependency answers again.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "FraudlensError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NotFoundError",
    "QueueError",
    "StoreError",
    "StoreUnavailableError",
    "UnavailableError",
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


class MissingDependencyError(FraudlensError, ImportError):
    """A feature needs an optional dependency (an extra) that is not installed.

    The message names the extra and the command that installs it; see
    :func:`fraudlens._optional.require`.

    Parameters
    ----------
    message
        The whole user-facing message.
    module
        The module that could not be imported.
    extra
        The fraudlens extra that provides it.
    """

    def __init__(self, message: str, *, module: str, extra: str) -> None:
        super().__init__(message, name=module)
        self.module = module
        self.extra = extra


class StoreError(FraudlensError):
    """A database call failed (bad data, a schema this version does not know, or an
    outage: see :class:`StoreUnavailableError`)."""


class UnavailableError(FraudlensError):
    """Something the work depends on is down: the store, the sink, the model or the queue.

    Not the message's fault: retrying the same work later can succeed.

    Parameters
    ----------
    message
        What is unavailable and why.
    what
        The component (``"store"``, ``"sink"``, ``"model"``, ``"queue"``), if known.
    """

    def __init__(self, message: str, *, what: str | None = None) -> None:
        self.what = what
        super().__init__(message)


class StoreUnavailableError(StoreError, UnavailableError):
    """The database cannot be reached or used at all: connection refused or closed,
    server shut down, file locked or unopenable, tables missing.

    Parameters
    ----------
    message
        What failed and why.
    disconnected
        The connection in use died under the call (the server restarted, or dropped it):
        a fresh connection may work at once, while one that cannot connect would not.
    """

    def __init__(self, message: str, *, disconnected: bool = False) -> None:
        self.disconnected = disconnected
        super().__init__(message, what="store")


class NotFoundError(FraudlensError, LookupError):
    """A record asked for by id (a risk event, say) does not exist."""
