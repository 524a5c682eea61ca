"""The store: trades and bars to score, and the risk events analysts review.

One class, :class:`Store`, over SQLAlchemy 2. SQLite is the embedded default
(``sqlite:///fraudlens.db``); PostgreSQL (``postgresql+psycopg://``) and MySQL/MariaDB
(``mysql+pymysql://``) are the real deployments. The schema is managed by Alembic
(:meth:`Store.upgrade`, ``fraudlens db upgrade``).

Errors
------
No SQLAlchemy or driver exception leaves a public method: each is mapped at this boundary
to :class:`~fraudlens.errors.StoreError` with the driver's first line as the reason. When the
database cannot be used at all, whatever the data, the error is a
:class:`~fraudlens.errors.StoreUnavailableError` (a StoreError and an UnavailableError), so a
consumer can hand its messages back and wait instead of spending their attempts
(:func:`is_outage` decides):

- connection refused, reset or closed, server shut down or starting up, a pooled
  connection found dead, a pool timeout (SQLAlchemy ``OperationalError`` and
  ``InterfaceError``, invalidated connections; PostgreSQL's and MySQL's operational
  errors, which also cover lock-wait timeouts and deadlocks);
- SQLite: ``database is locked``, ``unable to open database file``, disk I/O errors, a
  read-only or full disk, a file that is not a database;
- tables missing or access denied (the schema was never created, or was dropped).

Anything else (a value the database refuses, a constraint) is a plain StoreError: a
problem with the data at hand.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.compiler import compiles

from fraudlens._closing import Closing
from fraudlens._echo import hide_password
from fraudlens._io import probe_write
from fraudlens._sqlite import busy_timeout_ms, file_id
from fraudlens._time import utc, utcnow
from fraudlens.errors import (
    ConfigError,
    DataError,
    FraudlensError,
    StoreError,
    StoreUnavailableError,
)
from fraudlens.store._auth import AuthStore
from fraudlens.store._tables import Base, Kline, RiskEventRow, RiskEventSymbol, Trade
from fraudlens.store._triage import (
    TriageStore,
    after_condition,
    decision_values,
    event_priority,
    events_source,
    filter_conditions,
    order_by,
    sort_columns,
    symbol_rows,
)
from fraudlens.store._watch import CallWatch
from fraudlens.store.records import RISK_STATUSES, RiskEvent

if TYPE_CHECKING:
    from fraudlens.market.data import MarketData
    from fraudlens.market.features import TradeBook

__all__ = ["DEFAULT_DATABASE_URL", "Store", "is_outage", "normalise_url", "open_store"]

log = logging.getLogger("fraudlens.store")

#: The embedded default.
DEFAULT_DATABASE_URL = "sqlite:///fraudlens.db"

_MIGRATIONS = Path(__file__).with_name("migrations")
#: Rows per INSERT batch (and per progress callback) when loading.
_LOAD_CHUNK = 20_000
#: Largest multi-row INSERT of a MySQL/MariaDB load (less if ``max_allowed_packet`` is).
_MYSQL_STATEMENT_BYTES = 4 * 1024 * 1024
#: Accounts per window query: three bound values each, far below every driver's limit.
_WINDOW_CHUNK = 200
#: Accounts up to which MySQL/MariaDB reads the windows in one statement (a round trip
#: less) rather than the latest trades, then the windows.
_JOINED_WINDOWS = 16
#: Conditions per mirror-candidate query: eight bound values each (2,000 per query,
#: far below every driver's limit).
_MIRROR_CHUNK = 256
_MIRROR_SHAPES = (4, 16, 64, _MIRROR_CHUNK)
#: How long a SQLite statement waits for another process's write lock before "database
#: is locked": long enough to ride out a busy writer, short enough to report an outage.
_SQLITE_BUSY_MS = 30_000
#: How long after a UTC day ends its bars are taken as final and may be cached.
_SETTLE = pd.Timedelta(hours=1)
#: K-line frames of cached days kept whole (each a few symbols' days of bars).
_BAR_FRAMES = 256
_KLINE_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
_TRADE_COLUMNS = ("trade_id", "account_id", "symbol", "ts", "side", "price", "quantity")


def normalise_url(url: str) -> str:
    """Return a SQLAlchemy URL with the driver fraudlens ships for each database.

    ``sqlite`` alone is the default file; ``postgresql://`` / ``postgres://`` get
    psycopg 3 and ``mysql://`` / ``mariadb://`` get PyMySQL, unless a driver is named.
    """
    url = url.strip()
    if url in ("", "sqlite"):
        return DEFAULT_DATABASE_URL
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"database URL {url!r} is not a URL: expected sqlite:///path.db, "
            "postgresql://user@host/db or mysql://user@host/db"
        )
    swap = {
        "postgres": "postgresql+psycopg",
        "postgresql": "postgresql+psycopg",
        "mysql": "mysql+pymysql",
        "mariadb": "mysql+pymysql",
        "mariadb+pymysql": "mysql+pymysql",
    }
    return f"{swap.get(scheme, scheme)}://{rest}"


def _naive_utc(ts: pd.Series) -> np.ndarray:
    """Python datetimes (naive UTC) of a UTC timestamp column: what every driver accepts."""
    values = pd.to_datetime(ts, utc=True).dt.tz_localize(None)
    return values.to_numpy("datetime64[us]").astype(object)


def _as_utc(value: datetime | str | None, column: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return utc(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"cannot parse {value!r} as an ISO-8601 timestamp", column=column) from None
    return utc(parsed)


_P = ParamSpec("_P")
_R = TypeVar("_R")

_SQLITE_FULL = "database or disk is full"
#: SQLite messages that mean the file cannot be used now, whatever the statement.
_SQLITE_OUTAGES = (
    "database is locked",
    "database table is locked",
    "unable to open database",
    "disk i/o error",
    "readonly database",
    _SQLITE_FULL,
    "file is not a database",
    "no such table",
)
#: Modules whose exceptions the store maps; anything else (a bug) passes through.
_DRIVERS = frozenset({"sqlalchemy", "psycopg", "pymysql", "sqlite3", "_sqlite3", "alembic"})


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (a SQLAlchemy or driver error) means the database cannot be used
    at all right now, rather than that the statement's data was refused.

    Parameters
    ----------
    exc
        An exception raised by SQLAlchemy or a database driver.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.exc.DisconnectionError | sa.exc.TimeoutError):
        return True
    orig: BaseException = (
        exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    )
    names = {c.__name__ for c in type(orig).__mro__}
    module = type(orig).__module__.split(".", 1)[0]
    if module in ("sqlite3", "_sqlite3"):
        text = str(orig).lower()
        return any(s in text for s in _SQLITE_OUTAGES)
    if "OperationalError" in names or "InterfaceError" in names:
        return True
    if module == "psycopg":
        # undefined table, unknown database, no privilege: the schema or grants are gone
        return getattr(orig, "sqlstate", None) in {"42P01", "3D000", "42501"}
    if module == "pymysql":
        code = orig.args[0] if orig.args else None
        return code in {1044, 1045, 1049, 1142, 1146}
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)


def _disconnected(exc: BaseException) -> bool:
    """True when the connection in use died under the call (SQLAlchemy invalidated it):
    the server restarted or dropped it, and a fresh connection may work at once."""
    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, sa.exc.DisconnectionError)


def _first_line(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip()
    return (text.splitlines()[0] if text else type(orig).__name__)[:500]


def _mapped(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Map every SQLAlchemy/driver error a store method raises to StoreError (or to
    StoreUnavailableError for an outage), naming the database."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        watch = getattr(args[0], "_watch", None) if args else None
        if watch is not None:
            watch.enter()
        try:
            return method(*args, **kwargs)
        except FraudlensError:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".", 1)[0] not in _DRIVERS:
                raise
            store = args[0] if args else None
            where = store._safe_url() if isinstance(store, Store) else "the database"
            if is_outage(exc):
                if isinstance(store, Store) and _SQLITE_FULL in str(exc).lower():
                    store._full = True  # the write probe checks for room from now on
                raise StoreUnavailableError(
                    f"database {where} is unavailable: {_first_line(exc)}",
                    disconnected=_disconnected(exc),
                ) from exc
            raise StoreError(f"database {where}: {_first_line(exc)}") from exc
        finally:
            if watch is not None:
                watch.leave()

    return wrapper


def _driver_socket(dbapi_conn: Any) -> tuple[socket.socket, bool] | None:
    """The socket of a driver connection that is still open, and whether it is a
    duplicate for the caller to close (psycopg's) rather than the driver's own
    (PyMySQL's); None if it has none."""
    sock = getattr(dbapi_conn, "_sock", None)  # PyMySQL (None once closed)
    if isinstance(sock, socket.socket):
        return sock, False
    if getattr(dbapi_conn, "closed", True):  # psycopg: closed, or not a driver we know
        return None
    try:
        return socket.socket(fileno=os.dup(int(dbapi_conn.pgconn.socket))), True
    except Exception:  # no socket (yet, or any more)
        return None


#: TCP keepalive of server connections: the first probe after this many seconds of
#: silence, then one every ``interval`` seconds, ``count`` unanswered ones ending the
#: connection (about a minute in all). A query waiting for its reply from a host that
#: is gone then fails as a dropped connection does; a frozen server's kernel still
#: answers the probes (the worker's lease and the service's call bound cut such a call).
_KEEPALIVE = (30, 10, 3)


def _keep_alive(sock: socket.socket) -> None:
    """Set :data:`_KEEPALIVE` on a TCP socket (a Unix socket has no keepalive)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle, interval, count = _KEEPALIVE
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux (macOS names it TCP_KEEPALIVE)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    except (OSError, AttributeError):
        pass  # a platform without these options keeps the system's


#: Seconds a new PostgreSQL or MySQL/MariaDB connection waits for the server to take it
#: and answer.
_CONNECT_TIMEOUT_S = 10


class Store(Closing, AuthStore, TriageStore):
    """Trades, k-lines and risk events in one SQL database.

    Parameters
    ----------
    url
        SQLAlchemy URL; ``None`` uses the ``database_url`` setting
        (``FRAUDLENS_DATABASE_URL``, default ``sqlite:///fraudlens.db``).
    pool_size
        Connections kept open per process (not SQLite).
    bar_cache_days
        (symbol, UTC day) sets of bars kept in memory once the day has closed (an hour
        after midnight UTC), so checks of recent windows do not read them again. 0 turns
        the cache off. Bars are only ever added, never changed, for a closed day.
    call_timeout
        Seconds a call may wait on a PostgreSQL or MariaDB server before its connection
        is cut (:class:`~fraudlens.store._watch.CallWatch`): the call then raises
        :class:`~fraudlens.errors.StoreUnavailableError` instead of waiting for as long
        as a frozen server stays frozen. ``None`` (the default) sets no bound; the
        service sets ``FRAUDLENS_STORE_CALL_TIMEOUT`` (30 s). SQLite has its busy
        timeout instead.

    Notes
    -----
    Safe to share between threads. Each process opens its own :class:`Store` (engines
    must not cross a ``fork``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool_size: int = 5,
        bar_cache_days: int = 4096,
        call_timeout: float | None = None,
    ) -> None:
        if url is None:
            from fraudlens.config import get_settings

            url = get_settings().database_url
        self.url = normalise_url(url)
        self.bar_cache_days = int(bar_cache_days)
        self._bar_cache: OrderedDict[tuple[str, int], tuple[np.ndarray, ...]] = OrderedDict()
        # k-line frames built from cached days alone, by the (symbol, day) pairs they hold
        self._bar_frames: OrderedDict[tuple[tuple[str, int], ...], pd.DataFrame] = OrderedDict()
        self._cache_lock = threading.Lock()
        # connections kept between pinned blocks (pinned(linger=...)), any thread's
        self._kept: set[sa.Connection] = set()
        try:
            parsed = sa.engine.make_url(self.url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            # (ValueError: a port that is not a number, an unclosed [IPv6 address])
            raise ConfigError(f"database URL {hide_password(url)!r}: {exc}") from None
        bad = next((ch for ch in self.url if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:
            # A byte that is not UTF-8 (the command line and the environment keep it as a
            # lone surrogate): no driver can send it, nor can the URL be shown.
            raise ConfigError(
                f"database URL {hide_password(url)!r} is not UTF-8 text (U+{ord(bad):04X})"
            )
        self.dialect = parsed.get_backend_name()
        #: SQLite's busy timeout (``?busy_timeout=SECONDS`` on a sqlite URL, as on a SQLite
        #: queue's; 30 s by default)
        self._busy_ms = _SQLITE_BUSY_MS
        if self.dialect == "sqlite" and "busy_timeout" in parsed.query:
            self._busy_ms = busy_timeout_ms(parsed.query["busy_timeout"], url, "database URL")
            parsed = parsed.difference_update_query(["busy_timeout"])
        # A SQLite write failed for want of room (the write probe then checks for room).
        self._full = False
        self._sqlite_file = (
            Path(parsed.database).expanduser()
            if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:")
            else None
        )
        # risk events' details are written by orjson (see _json_text): a missing orjson
        # is reported here, not by the first batch of events
        _orjson()
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json_text}
        if self.dialect == "sqlite":
            if self._sqlite_file is not None:
                self._sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": self._busy_ms / 1000}
            if self._sqlite_file is None:  # in memory
                kwargs["poolclass"] = sa.pool.StaticPool
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
            if self.dialect == "postgresql" and "connect_timeout" not in parsed.query:
                # A server that takes the connection but never answers (a frozen
                # process, whose kernel still accepts) had held libpq's connect for
                # ever: the worker hung instead of pausing for the outage and retrying.
                # (?connect_timeout=N on the URL sets another.)
                kwargs["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT_S}
            if self.dialect == "postgresql":
                # A connection whose server's host is gone (a partition, a failover)
                # is found dead after about a minute of silence instead of the system's
                # 2 h 11 min, even while a query waits for its reply (see _KEEPALIVE).
                # What the URL sets (?keepalives_idle=N, say) is kept.
                idle, interval, count = _KEEPALIVE
                keep = {
                    "keepalives": 1,
                    "keepalives_idle": idle,
                    "keepalives_interval": interval,
                    "keepalives_count": count,
                }
                kwargs.setdefault("connect_args", {}).update(
                    {k: v for k, v in keep.items() if k not in parsed.query}
                )
            # PyMySQL's connect_timeout covers the TCP connect only: a server that takes
            # the connection and never greets (a frozen process) held it for ever. A
            # read timeout bounds the greeting and sign-in; it is lifted once the
            # connection is open (see below), so no query is cut short.
            if (
                self.dialect == "mysql"
                and parsed.get_driver_name() == "pymysql"
                and "read_timeout" not in parsed.query
            ):
                kwargs["connect_args"] = {"read_timeout": _CONNECT_TIMEOUT_S}
        try:
            self.engine = sa.create_engine(parsed, **kwargs)
        except Exception as exc:  # a missing driver module, say
            raise ConfigError(f"cannot open database {self._safe_url()}: {exc}") from None
        # The driver connections open now (see cut_connections).
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        if self.dialect != "sqlite":
            opened = self._open

            def track(dbapi_conn: Any, _record: Any) -> None:
                opened.add(dbapi_conn)
                sock = getattr(dbapi_conn, "_sock", None)  # PyMySQL's (libpq sets its own)
                if isinstance(sock, socket.socket):
                    _keep_alive(sock)

            sa.event.listen(self.engine, "connect", track)
        # Which thread has each driver connection checked out (see _cut_stuck).
        self._owners: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._watch: CallWatch | None = None
        if call_timeout is not None and call_timeout > 0 and self.dialect != "sqlite":
            owners = self._owners

            def checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
                owners[dbapi_conn] = threading.get_ident()

            def checked_in(dbapi_conn: Any, _record: Any) -> None:
                if dbapi_conn is not None:
                    owners.pop(dbapi_conn, None)

            sa.event.listen(self.engine, "checkout", checked_out)
            sa.event.listen(self.engine, "checkin", checked_in)
            self._watch = CallWatch(call_timeout, self._cut_stuck, self._safe_url())
        if kwargs.get("connect_args", {}).get("read_timeout") is not None:

            def open_reads(dbapi_conn: Any, _record: Any) -> None:
                # (PyMySQL reads this before each reply it waits for)
                dbapi_conn._read_timeout = None

            sa.event.listen(self.engine, "connect", open_reads)
        if self.dialect == "sqlite":
            busy_ms = self._busy_ms
            file = self._sqlite_file

            def pragmas(dbapi_conn: Any, record: Any) -> None:
                _sqlite_pragmas(dbapi_conn, busy_ms)
                if file is not None:
                    record.info[_FILE_KEY] = file_id(file)

            sa.event.listen(self.engine, "connect", pragmas)
            if file is not None:

                def same_file(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
                    if self._file_changed(record.info):
                        # the pool closes it and takes another, on the file at the path
                        raise sa.exc.DisconnectionError(f"{file} was deleted or replaced")

                sa.event.listen(self.engine, "checkout", same_file)

    # -- lifecycle -------------------------------------------------------------------
    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Store({self._safe_url()!r})"

    def close(self) -> None:
        """Close every pooled connection (and those kept by :meth:`pinned`)."""
        with self._cache_lock:
            kept, self._kept = self._kept, set()
        for conn in kept:
            self._close_quietly(conn)
        if self._watch is not None:
            self._watch.close()
        self.engine.dispose()

    def cut_connections(self) -> int:
        """Shut down the socket of every connection this store has open to its server;
        return how many were cut.

        For a call that waits for a reply that will never come: the server's host
        vanished without closing its connections (a network partition, a failover to
        another host behind the same name), or the server process froze while its kernel
        still acknowledges. No timeout covers a query on a connection already open (a
        read timeout would also cut a long query short), so the call waited for ever. A
        cut connection fails its call at once, as a server that dropped it does: the
        call's transaction is lost (nothing of it was committed) and the pool opens a
        fresh connection for the next call, which finds the new server, or fails within
        the connect timeout while the old one is still frozen. Safe from any thread. A
        SQLite store has no connection to cut (a locked file has its busy timeout)."""
        cut = self._cut(list(self._open))
        if cut:
            log.warning("cut %d connection(s) to %s", cut, self._safe_url())
        return cut

    @property
    def calls_cut(self) -> int:
        """Calls cut for running past ``call_timeout`` since the store opened."""
        return self._watch.calls_cut if self._watch is not None else 0

    def _cut_stuck(self, threads: set[int]) -> int:
        """Cut the connections the threads of stuck calls hold, and those no thread
        holds (idle in the pool, or being pinged or opened for a call); every connection
        when that finds none (a connection lent on without a checkout)."""
        conns = list(self._open)
        mine = [c for c in conns if self._owners.get(c) in threads or c not in self._owners]
        return self._cut(mine) or self._cut(conns)

    @staticmethod
    def _cut(conns: Iterable[Any]) -> int:
        """Shut down the sockets of driver connections; return how many were open."""
        cut = 0
        for dbapi_conn in conns:
            found = _driver_socket(dbapi_conn)
            if found is None:
                continue
            sock, duplicate = found
            try:
                sock.shutdown(socket.SHUT_RDWR)
                cut += 1
            except OSError:
                pass  # closed meanwhile, or never connected
            finally:
                if duplicate:
                    sock.close()
        return cut

    def _connect(self) -> AbstractContextManager[sa.Connection]:
        pinned = self._pinned_connection()
        if pinned is not None:
            if self._sqlite_file is None or not self._file_changed(pinned.connection.info):
                return self._lend(pinned)
            self._unpin(pinned)  # its checkout's check closes it; later calls take new ones
        return self._checkout()

    def _file_changed(self, info: Mapping[Any, Any]) -> bool:
        """Whether the SQLite file a connection opened (noted in its pool record's
        ``info``) is no longer the file at the store's path (deleted, or replaced by a
        restore or a new ``db upgrade``).

        A connection keeps the file it opened: a store whose file was deleted went on
        writing risk events into it, where no other process (the service, a restarted
        worker) would ever read them, and its ping passed; the worker acked the checks.
        Connections to the old file are given up, and the file at the path is used: a
        new empty file has no tables, which is an outage (``db upgrade``), not lost
        events."""
        if self._sqlite_file is None or _FILE_KEY not in info:
            return False
        try:
            now = file_id(self._sqlite_file)
        except OSError:
            return False  # cannot tell: the statements will say
        if now == info[_FILE_KEY]:
            return False
        log.warning(
            "SQLite store %s was %s while open: its connections to the old file are closed",
            self._sqlite_file,
            "deleted" if now is None else "replaced by another file",
        )
        return True

    def _checkout(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            error = StoreUnavailableError if is_outage(exc) else StoreError
            raise error(f"cannot connect to {self._safe_url()}: {_first_line(exc)}") from exc
        except UnicodeError as exc:
            # A host name the resolver cannot encode (an empty label, "db..example", or
            # one over 63 characters) is a malformed URL, not an outage.
            raise ConfigError(f"database URL {self._safe_url()!r}: {exc}") from None

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        # engine.begin() only connects on entry, past any try around the call: connect
        # here, so a write to an unreachable server is a StoreError like a read.
        with self._connect() as conn:
            if conn.in_transaction():
                if self.dialect == "sqlite":
                    # a pinned connection's reads began a transaction: end it first (a
                    # SQLite read transaction that turns writer fails at once with
                    # "database is locked" when another connection wrote meanwhile)
                    conn.commit()
                else:
                    # on a server the write joins the reads' transaction and one COMMIT
                    # ends both: a round trip less per worker batch (the reads' COMMIT
                    # cost 1.2 ms a batch on MariaDB on a loaded machine)
                    try:
                        yield conn
                    except BaseException:
                        conn.rollback()
                        raise
                    conn.commit()
                    return
            with conn.begin():
                yield conn

    def _pinned_connection(self) -> sa.Connection | None:
        local = self.__dict__.get("_pin")
        return getattr(local, "conn", None) if local is not None else None

    @contextmanager
    def _lend(self, conn: sa.Connection) -> Iterator[sa.Connection]:
        """The pinned connection for one call; unpinned (and closed) if the call fails,
        so the rest of the block starts again on a fresh one."""
        try:
            yield conn
        except BaseException:
            self._unpin(conn)
            raise

    def _unpin(self, conn: sa.Connection) -> None:
        local = self.__dict__.get("_pin")
        if local is not None and getattr(local, "conn", None) is conn:
            local.conn = None
        self._close_quietly(conn)

    @staticmethod
    def _close_quietly(conn: sa.Connection) -> None:
        try:
            conn.close()
        except Exception:  # a dead connection: the pool drops it
            log.debug("closing a pinned connection failed", exc_info=True)

    def _take_kept(self, local: threading.local, linger: float) -> sa.Connection | None:
        """This thread's connection kept by the last pinned block, if it ended at most
        ``linger`` seconds ago (else it goes back to the pool)."""
        kept = getattr(local, "kept", None)
        if kept is None:
            return None
        local.kept = None
        conn, at = kept
        with self._cache_lock:
            self._kept.discard(conn)
        if time.monotonic() - at <= linger and not conn.closed and not conn.invalidated:
            return conn
        self._close_quietly(conn)
        return None

    def _keep(self, local: threading.local, conn: sa.Connection) -> bool:
        """End the pinned block's read transaction, if any, and keep its connection for
        the next block; False (and nothing kept) if that fails."""
        try:
            if conn.in_transaction():
                conn.rollback()  # reads only: a write committed on its own
        except Exception:
            log.debug("ending a pinned connection's reads failed", exc_info=True)
            return False
        local.kept = (conn, time.monotonic())
        with self._cache_lock:
            self._kept.add(conn)
        return True

    @contextmanager
    def pinned(self, *, linger: float = 0.0) -> Iterator[None]:
        """Run this thread's store calls inside the block on one pooled connection.

        Each call otherwise checks a connection out of the pool and back in, and on a
        server that is two round trips per call (the liveness ping on checkout, the
        rollback on return): several per worker batch, which a check waits for. On a
        SQLite file they are statements too (a few tenths of a millisecond per batch).
        Reads inside share one transaction. On a server a write joins it and its COMMIT
        ends both; on SQLite the reads' transaction is ended before the write, which
        commits on its own. A call that fails gives the connection up, and later calls
        take fresh ones.
        An in-memory SQLite database has one connection anyway: nothing changes there.

        Parameters
        ----------
        linger
            Seconds the connection stays checked out after the block ends well (its
            reads' transaction ended), for this thread's next pinned block: a worker
            busy with batch after batch then skips the checkout's ping and the
            return's rollback, two round trips a batch. A connection idle for longer
            goes back to the pool and the next block takes one afresh, pinged. One that
            died meanwhile fails the first call, an outage like any other.
        """
        if self._pinned_connection() is not None or (
            self.dialect == "sqlite" and self.engine.pool.__class__ is sa.pool.StaticPool
        ):
            yield
            return
        local = self.__dict__.setdefault("_pin", threading.local())
        conn = self._take_kept(local, linger) or self._checkout()
        local.conn = conn
        ok = False
        try:
            yield
            ok = True
        finally:
            if getattr(local, "conn", None) is conn:
                local.conn = None
                if not (ok and linger > 0 and self._keep(local, conn)):
                    self._close_quietly(conn)

    # -- schema ----------------------------------------------------------------------
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
        return cfg

    @_mapped
    def upgrade(self, revision: str = "head") -> str | None:
        """Migrate the schema to ``revision`` (idempotent); return the revision reached."""
        from alembic import command

        cfg = self._alembic_config()
        with self._begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return self.current_revision()

    @_mapped
    def downgrade(self, revision: str = "base") -> str | None:
        """Migrate the schema down to ``revision`` (``base`` drops every table)."""
        from alembic import command

        cfg = self._alembic_config()
        with self._begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
        return self.current_revision()

    @_mapped
    def current_revision(self) -> str | None:
        """The schema revision the database is at (None before the first upgrade)."""
        from alembic.runtime.migration import MigrationContext

        with self._connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision this version of fraudlens ships."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    @_mapped
    def require_schema(self, *, upgrade_empty: bool = True) -> None:
        """Check the schema is current.

        Parameters
        ----------
        upgrade_empty
            Create the schema when the database has none yet (an embedded first run).

        Raises
        ------
        StoreError
            If the database is at another revision: run ``fraudlens db upgrade``.
        """
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return
        if current is None and upgrade_empty:
            self.upgrade()
            return
        raise StoreError(
            f"database {self._safe_url()} is at schema revision {current}, this fraudlens "
            f"needs {head}: run `fraudlens db upgrade --db URL`"
        )

    @_mapped
    def drop_all(self) -> None:
        """Drop the store's tables and Alembic's version table (tests and resets)."""
        with self._begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    @_mapped
    def ping(self, *, write: bool = False, timeout: float = 1.0) -> None:
        """Check that the database answers and holds the risk-event table.

        A consumer calls this while it waits out an outage, to learn when to resume.

        Parameters
        ----------
        write
            Also check that a write could start now: on SQLite, that the file's write
            lock can be taken within ``timeout`` seconds (a server database takes row
            locks, so answering is enough there) and, after a write failed with
            "database or disk is full", that the file's folder has room for a full WAL
            (``page_size`` x ``wal_autocheckpoint`` bytes): taking the lock writes
            nothing, so a full disk passed that check while every batch failed.
        timeout
            Seconds the SQLite write check waits for the lock.

        Raises
        ------
        StoreUnavailableError
            The database cannot be used now.
        StoreError
            Any other failure.
        """
        with self._connect() as conn:
            if write and self.dialect == "sqlite":
                raw: Any = conn.connection.driver_connection
                raw.execute(f"PRAGMA busy_timeout = {max(1, int(timeout * 1000))}")
                try:
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute("ROLLBACK")
                finally:
                    raw.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                if self._full and self._sqlite_file is not None:
                    room = raw.execute("PRAGMA page_size").fetchone()[0] * max(
                        1, raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
                    )
                    try:
                        probe_write(self._sqlite_file.parent, room)
                    except OSError as exc:
                        raise StoreUnavailableError(
                            f"database {self._safe_url()} is unavailable: "
                            f"{self._sqlite_file.parent} has no room for {room:,} bytes "
                            f"({exc.strerror or exc})"
                        ) from exc
                    self._full = False
            conn.execute(sa.select(RiskEventRow.id).limit(1)).all()

    @_mapped
    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self._connect() as conn:
            return {
                t.__tablename__: int(
                    conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                )
                for t in (Kline, Trade, RiskEventRow)
            }

    # -- market data -----------------------------------------------------------------
    @_mapped
    def load_klines(
        self, klines: pd.DataFrame, *, on_progress: Callable[[int], None] | None = None
    ) -> int:
        """Insert validated k-lines; a bar already stored for ``(symbol, ts)`` is kept.

        Parameters
        ----------
        klines
            A frame from :func:`fraudlens.market.data.validate_klines` (or a loader).
        on_progress
            Called with the number of rows of each chunk sent.

        Returns
        -------
        int
            Rows inserted (duplicates not counted).
        """
        cols = {c: klines[c] for c in _KLINE_COLUMNS}
        cols["ts"] = _naive_utc(klines["ts"])
        return self._bulk_insert(_table(Kline), cols, len(klines), on_progress)

    @_mapped
    def load_trades(
        self, trades: pd.DataFrame, *, on_progress: Callable[[int], None] | None = None
    ) -> int:
        """Insert validated trades; a ``trade_id`` already stored is kept.

        Returns
        -------
        int
            Rows inserted (duplicates not counted).
        """
        cols = {c: trades[c] for c in _TRADE_COLUMNS}
        cols["ts"] = _naive_utc(trades["ts"])
        return self._bulk_insert(_table(Trade), cols, len(trades), on_progress)

    def _bulk_insert(
        self,
        table: sa.Table,
        columns: dict[str, Any],
        n: int,
        on_progress: Callable[[int], None] | None,
    ) -> int:
        names = list(columns)
        values = [
            np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v
            for v in columns.values()
        ]
        # numpy scalars confuse some drivers: hand over plain Python values.
        lists = [v.tolist() if v.dtype != object else list(v) for v in values]
        inserted = 0
        fast_mysql = self.dialect == "mysql" and self.engine.dialect.driver == "pymysql"
        for start in range(0, n, _LOAD_CHUNK):
            if fast_mysql:
                chunk = [col[start : start + _LOAD_CHUNK] for col in lists]
                with self._begin() as conn:
                    inserted += _mysql_insert_ignore(conn, table, names, chunk)
                if on_progress is not None:
                    on_progress(len(chunk[0]) if chunk else 0)
                continue
            rows = list(zip(*(col[start : start + _LOAD_CHUNK] for col in lists), strict=True))
            with self._begin() as conn:
                if self.dialect == "postgresql":
                    inserted += _pg_copy_ignore(conn, table, names, rows)
                else:
                    stmt = _insert_ignore(self.dialect, table)
                    result = conn.execute(stmt, [dict(zip(names, r, strict=True)) for r in rows])
                    inserted += max(int(result.rowcount), 0)
            if on_progress is not None:
                on_progress(len(rows))
        return inserted

    @_mapped
    def account_ids(self) -> list[str]:
        """Every account with at least one stored trade, sorted."""
        with self._connect() as conn:
            rows = conn.execute(sa.select(Trade.account_id).distinct().order_by(Trade.account_id))
            return [str(r[0]) for r in rows]

    @_mapped
    def account_windows(self, account_ids: Iterable[str], *, hours: float = 24.0) -> MarketData:
        """Each account's trades in the ``hours`` that end at its latest trade, with bars.

        The bars are those of every symbol the accounts traded, over the whole UTC days
        the windows touch: the feature detector ranks a bar within its symbol's day, so
        whole days make a score here equal the batch score of the same files.

        Parameters
        ----------
        account_ids
            Accounts to load; unknown ids are left out of the result.
        hours
            Window length.

        Returns
        -------
        fraudlens.market.data.MarketData
            Empty trades when none of the accounts has any.
        """
        from fraudlens.market._columns import _ns, _text
        from fraudlens.market.data import MarketData

        ids = list(dict.fromkeys(str(a) for a in account_ids))
        span = timedelta(hours=hours)
        span_ns = int(hours * 3600 * 10**9)
        parts: list[pd.DataFrame] = []
        with self._connect() as conn:
            for chunk in _chunks(ids, _WINDOW_CHUNK):
                if self.dialect == "mysql" and len(chunk) <= _JOINED_WINDOWS:
                    # A few accounts (a worker batch at a moderate rate): one statement
                    # instead of two, each account's window a range of the (account_id,
                    # ts) index below its latest trade, a microsecond wider than the
                    # window; the exact cut is made here, as below.
                    params = [v for a in chunk for v in (a, a, a, span_ns // 1000 + 1)]
                    rows = _driver_rows(
                        conn.exec_driver_sql(_mysql_windows_sql(len(chunk)), tuple(params))
                    )
                    if not rows:
                        continue
                    frame = _frame(rows, _TRADE_COLUMNS)
                    accounts = _text(frame, "account_id").tolist()
                    ts_ns = _ns(frame, "ts").astype(np.int64)
                    end_ns: dict[str, int] = {}
                    for a, t in zip(accounts, ts_ns.tolist(), strict=True):
                        end_ns[a] = max(t, end_ns.get(a, t))
                    starts = np.fromiter(
                        (end_ns[a] - span_ns for a in accounts), np.int64, len(frame)
                    )
                    keep = ts_ns >= starts
                    parts.append(frame if bool(keep.all()) else frame[keep])
                else:
                    # Two statements compiled once (an expanding IN list): each account's
                    # latest trade, then the trades of the chunk since the earliest window
                    # start, cut to each account's own window here.
                    latest = conn.execute(_latest_statement(), {"ids": chunk}).all()
                    if not latest:
                        continue
                    ends = dict(latest)
                    lo = min(ends.values()) - span
                    hi = max(ends.values())
                    rows = _driver_rows(
                        conn.execute(_window_statement(), {"ids": list(ends), "lo": lo, "hi": hi})
                    )
                    start_ns = {a: pd.Timestamp(e).value - span_ns for a, e in ends.items()}
                    parts.append(_window_frame(rows, start_ns))
            if not parts:
                return MarketData(_frame([], _KLINE_COLUMNS), _frame([], _TRADE_COLUMNS))
            trades = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
            klines = self._day_bars(conn, trades)
        # Rows come ordered by (account_id, ts, trade_id) from the database. A frame built
        # here and kept whole has its 0..n-1 index already (nothing to reset).
        if not (
            type(trades.index) is pd.RangeIndex and trades.index.equals(pd.RangeIndex(len(trades)))
        ):
            trades = trades.reset_index(drop=True)
        return MarketData(klines, trades, book=self.book(trades))

    def book(self, trades: pd.DataFrame) -> TradeBook:
        """The book an account's mirror evidence is read against in the store: the given
        trades, and the stored trades of other accounts that :meth:`mirror_candidates`
        finds for the trades the feature detector asks about (fetched when asked, once).

        With the same trades stored as in a file, an account's features here equal its
        features in batch scoring of that file (whose book is the whole file).
        """
        from fraudlens.market.features import TradeBook

        return TradeBook(trades, fetch=self.mirror_candidates)

    @_mapped
    def trades_between(
        self, account_ids: Iterable[str], start: datetime, end: datetime
    ) -> MarketData:
        """The accounts' trades with ``start <= ts <= end``, with the bars of the symbols
        they traded over the whole UTC days those trades fall on (as
        :meth:`account_windows`); e.g. a risk event's window, for its picture.

        Returns
        -------
        fraudlens.market.data.MarketData
        """
        from fraudlens.market.data import MarketData

        ids = list(dict.fromkeys(str(a) for a in account_ids))
        rows: list[Any] = []
        with self._connect() as conn:
            for chunk in _chunks(ids, _WINDOW_CHUNK):
                rows.extend(
                    conn.execute(
                        sa.select(*_raw_columns(Trade, _TRADE_COLUMNS)).where(
                            Trade.account_id.in_(chunk),
                            Trade.ts >= utc(start),
                            Trade.ts <= utc(end),
                        )
                    )
                )
            trades = _frame(rows, _TRADE_COLUMNS)
            if trades.empty:
                return MarketData(_frame([], _KLINE_COLUMNS), trades)
            klines = self._day_bars(conn, trades)
        trades = trades.sort_values(["account_id", "ts", "trade_id"], kind="stable")
        return MarketData(klines.reset_index(drop=True), trades.reset_index(drop=True))

    @_mapped
    def trades_in_windows(self, windows: Iterable[tuple[str, datetime, datetime]]) -> MarketData:
        """The trades of several ``(account_id, start, end)`` windows (``start <= ts <=
        end``), each trade once, with the bars of the symbols they traded over the whole
        UTC days those trades fall on (as :meth:`account_windows`): e.g. the windows of
        many risk events at once. Which trade belongs to which window is for the caller
        to tell (windows of one account may overlap).

        Returns
        -------
        fraudlens.market.data.MarketData
        """
        from fraudlens.market.data import MarketData

        wanted = [(str(a), utc(s), utc(e)) for a, s, e in windows]
        rows: list[Any] = []
        with self._connect() as conn:
            for i in range(0, len(wanted), _WINDOW_CHUNK):
                cond = sa.or_(
                    *(
                        sa.and_(Trade.account_id == a, Trade.ts >= s, Trade.ts <= e)
                        for a, s, e in wanted[i : i + _WINDOW_CHUNK]
                    )
                )
                rows.extend(
                    conn.execute(sa.select(*_raw_columns(Trade, _TRADE_COLUMNS)).where(cond))
                )
            trades = _frame(rows, _TRADE_COLUMNS).drop_duplicates("trade_id")
            if trades.empty:
                return MarketData(_frame([], _KLINE_COLUMNS), trades.reset_index(drop=True))
            klines = self._day_bars(conn, trades)
        trades = trades.sort_values(["account_id", "ts", "trade_id"], kind="stable")
        return MarketData(klines.reset_index(drop=True), trades.reset_index(drop=True))

    @_mapped
    def mirror_candidates(
        self,
        trades: pd.DataFrame,
        *,
        max_gap: timedelta = timedelta(seconds=60),
        price_tol: float = 1e-9,
        qty_tol: float = 1e-9,
    ) -> pd.DataFrame:
        """Stored trades that may be the other side of ``trades``.

        A candidate has the symbol of one of the given trades, the opposite side, a price
        and a quantity within the relative tolerances of its, and a time at most
        ``max_gap`` from it; it is none of ``trades`` (by ``trade_id``). It may belong to
        one of their accounts: the given trades may be each account's latest window only,
        and an account's older trade can mirror another account's trade in its window.
        That an account never mirrors itself, and which candidate mirrors which trade,
        is for :func:`fraudlens.market.pairs.find_pairs` to decide (pass the result to
        :func:`fraudlens.scoring.score_market` as ``context_trades``).

        Parameters
        ----------
        trades
            The trades contract (e.g. :meth:`account_windows`'s trades).
        max_gap, price_tol, qty_tol
            As in :func:`fraudlens.market.pairs.find_pairs`.

        Returns
        -------
        pandas.DataFrame
            The candidates (trades contract), each once, sorted by ``ts`` and ``trade_id``.
        """
        if max_gap < timedelta(0) or price_tol < 0 or qty_tol < 0:
            raise DataError("max_gap, price_tol and qty_tol must be >= 0")
        if trades.empty:
            return _frame([], _TRADE_COLUMNS)
        gap = pd.Timedelta(max_gap)
        # one condition per run of equal (symbol, side, price, quantity) whose times are
        # at most 2 x max_gap apart: every time in [first - gap, last + gap] is then
        # within max_gap of one of them, so nothing beyond the tolerance is fetched
        # numpy's unique on the few symbols of a window costs a fraction of pandas'
        # factorize of pyarrow strings; the order of the boxes does not change the rows
        # the columns' arrays, not a Series each (pandas' fixed cost per column)
        from fraudlens.market._columns import _floats, _ns, _text

        sym_names, sym_code = np.unique(
            np.asarray(_object_values(_text(trades, "symbol")), dtype=str), return_inverse=True
        )
        is_buy = np.asarray(_object_values(_text(trades, "side")) == "buy", dtype=bool)
        price_all = _floats(trades, "price")
        qty_all = _floats(trades, "quantity")
        ts_all = _ns(trades, "ts")
        order = np.lexsort((ts_all, qty_all, price_all, is_buy, sym_code))
        # runs compared on the symbols' codes and the sides' flags (equal exactly when
        # the texts are), not on arrays of text
        sym = sym_code[order]
        buy = is_buy[order]
        price = price_all[order]
        qty = qty_all[order]
        ts = ts_all[order]
        same = np.ones(len(ts), dtype=bool)
        same[0] = False
        for col in (sym, buy, price, qty):
            same[1:] &= col[1:] == col[:-1]
        same[1:] &= (ts[1:] - ts[:-1]) <= np.timedelta64(2 * gap.value, "ns")
        first = np.flatnonzero(~same)
        last = np.r_[first[1:] - 1, len(ts) - 1]
        gap64 = np.timedelta64(gap.value, "ns")
        # the store keeps microseconds: widen the box to whole microseconds
        lo_t = _driver_stamps(self.dialect, (ts[first] - gap64).astype("datetime64[us]"))
        hi_ns = (ts[last] + gap64).astype(np.int64)
        hi_t = _driver_stamps(self.dialect, (-(-hi_ns // 1000)).astype("datetime64[us]"))
        price = price[first].astype(np.float64)
        qty = qty[first].astype(np.float64)
        box_columns = [
            sym_names[sym[first]].astype(str).tolist(),
            np.where(buy[first], "sell", "buy").tolist(),
            lo_t,
            hi_t,
            (price - price_tol * np.abs(price)).tolist(),
            (price + price_tol * np.abs(price)).tolist(),
            (qty - qty_tol * np.abs(qty)).tolist(),
            (qty + qty_tol * np.abs(qty)).tolist(),
        ]
        values: list[tuple[Any, ...]] = []
        flat: np.ndarray | None = None
        if self.dialect in ("postgresql", "mysql"):
            values = list(zip(*box_columns, strict=True))
        else:
            # the boxes' driver values in one object array (a row per box): a chunk's
            # parameters are then its rows' values in order, with no tuple per box
            flat = np.empty((len(first), len(box_columns)), dtype=object)
            for j, column in enumerate(box_columns):
                flat[:, j] = column
        # A few statement shapes, each built once, run on the driver directly with
        # positional values already in the driver's form: SQLAlchemy's per-value bind
        # processing cost more than the query itself. On SQLite a chunk is padded with
        # its own last condition up to the smallest shape that holds it (the driver
        # keeps each text's prepared statement). PyMySQL sends the values inside the
        # text, so MariaDB parses and plans every call anyway: there the OR has only the
        # chunk's own boxes (a window of 19 trades: 1.8 ms instead of 2.5 ms padded),
        # grouped by symbol and side (see _mysql_mirror).
        rows: list[Any] = []
        style = self.engine.dialect.paramstyle
        with self._connect() as conn:
            if self.dialect == "postgresql":
                # One statement of eight arrays, whatever the number of boxes: its text
                # never changes (psycopg prepares it on the server after a few calls)
                # and its plan is small, each box one index lookup. A long OR was parsed
                # and planned anew on every call (tens of ms at 256 boxes), which cost
                # more than running it.
                params = tuple(list(col) for col in zip(*values, strict=True))
                rows.extend(_driver_rows(conn.exec_driver_sql(_PG_MIRROR_SQL, params)))
                values = []
            for i in range(0, len(values), _MIRROR_CHUNK):
                sql, params = _mysql_mirror(values[i : i + _MIRROR_CHUNK])
                rows.extend(_driver_rows(conn.exec_driver_sql(sql, params)))
            n_boxes = 0 if flat is None else len(flat)
            for i in range(0, n_boxes, _MIRROR_CHUNK):
                assert flat is not None
                part = flat[i : i + _MIRROR_CHUNK]
                size = next(n for n in _MIRROR_SHAPES if n >= len(part))
                if size > len(part):
                    part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
                params = tuple(part.ravel().tolist())
                rows.extend(_driver_rows(conn.exec_driver_sql(_mirror_sql(size, style), params)))
        # stored trades other than the given ones, each once (a trade inside two boxes
        # comes back twice), sorted by (ts, trade_id): on the rows themselves, as they
        # are few. Trades of the given trades' accounts are kept: the given trades may be
        # only each account's latest window (the worker's batch), and an account's older
        # trades can still mirror another account's window (a beneficiary's trades with
        # its victim from before its own last 24 h).
        seen = {str(t) for t in _text(trades, "trade_id").tolist()}
        kept = []
        for row in rows:
            tid = str(row[0])
            if tid in seen:
                continue
            seen.add(tid)
            kept.append(row)
        if len(kept) > 1:
            # the rows put in order before the frame is built (no row selection of it):
            # by time as the frame reads it, then by the trade id as the frame holds it
            at = _TRADE_COLUMNS.index("ts")
            ts_ns = _utc_index([r[at] for r in kept]).asi8.tolist()
            tids = [r[0] if isinstance(r[0], str) else str(r[0]) for r in kept]
            by_time = sorted(range(len(kept)), key=lambda i: (ts_ns[i], tids[i]))
            kept = [kept[i] for i in by_time]
        return _frame(kept, _TRADE_COLUMNS)

    def _day_bars(self, conn: sa.Connection, trades: pd.DataFrame) -> pd.DataFrame:
        """The bars of every (symbol, UTC day) the trades fall on, sorted by ``(symbol,
        ts)``; the days that closed a while ago are cached as arrays."""
        from fraudlens.market._columns import _ns, _text

        day_ns = 86_400 * 10**9
        days = _ns(trades, "ts").astype(np.int64) // day_ns
        wanted = sorted(set(zip(_text(trades, "symbol").tolist(), days.tolist(), strict=True)))
        found: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}
        missing: list[tuple[str, int]] = []
        with self._cache_lock:
            for key in wanted:
                hit = self._bar_cache.get(key)
                if hit is None:
                    missing.append(key)
                else:
                    self._bar_cache.move_to_end(key)
                    found[key] = hit
        if not missing and self.bar_cache_days > 0:
            # Every day from the cache: the same days make the same frame, which is kept
            # (a batch of a few accounts touches a few symbols and days, often the same
            # ones). Callers get a shallow copy: with copy-on-write, nothing they do to it
            # reaches the kept frame.
            whole = tuple(wanted)
            with self._cache_lock:
                frame = self._bar_frames.get(whole)
                if frame is not None:
                    self._bar_frames.move_to_end(whole)
            if frame is None:
                frame = _bars_frame([(key[0], found[key]) for key in wanted])
                with self._cache_lock:
                    self._bar_frames[whole] = frame
                    while len(self._bar_frames) > _BAR_FRAMES:
                        self._bar_frames.popitem(last=False)
            return frame.copy(deep=False)
        if missing:
            # One statement for every missing symbol over the span of the missing days,
            # compiled once; the rows are then cut to the wanted (symbol, day) pairs.
            lo = min(d for _, d in missing)
            hi = max(d for _, d in missing) + 1
            rows = _driver_rows(
                conn.execute(
                    _bars_statement(),
                    {
                        "symbols": sorted({sym for sym, _ in missing}),
                        "lo": _naive(lo * day_ns),
                        "hi": _naive(hi * day_ns),
                    },
                )
            )
            fresh = _bar_arrays(rows)
            settled = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1) - _SETTLE).value
            cache = self.bar_cache_days > 0
            for key in missing:
                arrays = fresh.get(key) or _EMPTY_BARS
                found[key] = arrays
                # A day is cached once it closed a while ago: later bars of it are
                # unlikely, while today's bars keep arriving and are always read fresh.
                if cache and key[1] * day_ns <= settled:
                    with self._cache_lock:
                        self._bar_cache[key] = arrays
            with self._cache_lock:
                while len(self._bar_cache) > self.bar_cache_days:
                    self._bar_cache.popitem(last=False)
        return _bars_frame([(key[0], found[key]) for key in wanted])

    # -- risk events -----------------------------------------------------------------
    @_mapped
    def add_risk_events(self, events: Sequence[RiskEvent | Mapping[str, Any]]) -> int:
        """Write risk events; an event whose key is already stored is skipped.

        Parameters
        ----------
        events
            :class:`~fraudlens.store.records.RiskEvent` records. A mapping is turned into
            one first (:meth:`RiskEvent.from_mapping`), which checks it once. ``id``,
            ``reviewed_at`` and ``reviewed_by`` are not written; ``created_at`` defaults
            to now.

        Returns
        -------
        int
            Events inserted; the rest were already there (the key is ``account_id,
            fraud_type, window_end``), which makes redelivered work harmless.

        Raises
        ------
        DataError
            A mapping that is not a valid event (its 1-based position is the row).
        """
        if not events:
            return 0
        now = utcnow()
        rows = [
            _event_row(e if isinstance(e, RiskEvent) else RiskEvent.from_mapping(e, row=i + 1), now)
            for i, e in enumerate(events)
        ]
        # One statement for the whole batch (SQLAlchemy sends the rows as multi-row
        # VALUES): it returns the key and id of each row it inserted, and a row whose key
        # was already stored returns nothing. The batch still commits (or not) together.
        stmt = _event_insert(self.dialect)
        details: dict[tuple[str, str, datetime], Mapping[str, Any]] = {}
        for row in rows:
            details.setdefault(_event_key(row), row["details"])
        symbols: list[dict[str, Any]] = []
        with self._begin() as conn:
            opened = conn.connection.info  # the file this connection opened (SQLite)
            if self.engine.dialect.insert_returning:
                new = [tuple(r) for r in conn.execute(stmt, rows).all()]
            else:
                # MySQL (MariaDB has RETURNING) and SQLite before 3.35: one statement per
                # event, whose rowcount says whether it was new and lastrowid its id
                plain = _event_insert(self.dialect, returning=False)
                new = []
                for row in rows:
                    result = conn.execute(plain, row)
                    if result.rowcount > 0:
                        new.append((result.lastrowid, *_event_key(row)))
            for new_id, *row_key in new:
                symbols.extend(symbol_rows(new_id, details[_event_key(row_key)]))
            if symbols:
                conn.execute(_symbol_insert(), symbols)
        if self._file_changed(opened):
            # The file was deleted or replaced between this connection's check and the
            # commit: the events went into the old file, which nobody reads any more.
            # The caller must not take them as stored (the worker would ack its checks);
            # written again, they go to the file at the path (none: an outage).
            raise StoreUnavailableError(
                f"database {self._safe_url()}: its file was deleted or replaced while "
                f"{len(rows):,} risk event(s) were written, so they went to the old file; "
                "write them again",
                disconnected=True,
            )
        inserted = len(new)
        self.refresh_statistics(inserted)
        return inserted

    @_mapped
    def list_risk_events(
        self,
        *,
        status: str | None = None,
        account_id: str | None = None,
        business_type: str | None = None,
        fraud_type: str | None = None,
        min_score: float | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 50,
        offset: int = 0,
        account_prefix: str | None = None,
        symbol: str | None = None,
        counterparty: str | None = None,
        min_value_moved: float | None = None,
        assignee: str | None = None,
        unassigned: bool = False,
        sort: str = "-created_at",
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of risk events in ``sort`` order (newest first by default), and how many
        match in all.

        ``since``/``until`` bound ``created_at`` (inclusive/exclusive). ``account_prefix``
        matches account ids that start with it, ``symbol`` events whose evidence trades
        the symbol, ``counterparty`` the suspected counterparty exactly, ``assignee``
        the events assigned to that user, ``unassigned`` those assigned to nobody;
        ``sort`` is one of :data:`fraudlens.store._triage.SORT_KEYS`, ``-`` first for
        descending (the review queue's ``-priority``: score x value moved). See
        :mod:`fraudlens.store._triage`.
        """
        if limit < 1 or offset < 0:
            raise DataError("limit must be >= 1 and offset >= 0", column="limit")
        source, where, straight = self._triage_where(
            status=status,
            account_id=account_id,
            business_type=business_type,
            fraud_type=fraud_type,
            min_score=min_score,
            since=since,
            until=until,
            account_prefix=account_prefix,
            symbol=symbol,
            counterparty=counterparty,
            min_value_moved=min_value_moved,
            assignee=assignee,
            unassigned=unassigned,
        )
        order = order_by(sort, self.dialect)
        count = sa.select(sa.func.count()).select_from(source).where(where)
        page = (
            sa.select(RiskEventRow.__table__)
            .select_from(source)
            .where(where)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        )
        if straight:
            count = count.prefix_with("STRAIGHT_JOIN", dialect="mysql")
            page = page.prefix_with("STRAIGHT_JOIN", dialect="mysql")
        with self._connect() as conn:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(page).mappings()
            return [_event_dict(r) for r in rows], int(total)

    def _triage_where(
        self,
        *,
        status: str | None = None,
        account_id: str | None = None,
        business_type: str | None = None,
        fraud_type: str | None = None,
        min_score: float | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        account_prefix: str | None = None,
        symbol: str | None = None,
        counterparty: str | None = None,
        min_value_moved: float | None = None,
        assignee: str | None = None,
        unassigned: bool = False,
    ) -> tuple[Any, Any, bool]:
        """What a triage query reads, its WHERE condition, and whether it must keep its
        join order (:func:`~fraudlens.store._triage.events_source`), for the filters of
        :meth:`list_risk_events`."""
        if status is not None and status not in RISK_STATUSES:
            raise DataError(f"status {status!r} is not one of {RISK_STATUSES}", column="status")
        conds: list[Any] = []
        for col, value in (
            (RiskEventRow.status, status),
            (RiskEventRow.account_id, account_id),
            (RiskEventRow.business_type, business_type),
            (RiskEventRow.fraud_type, fraud_type),
        ):
            if value is not None:
                conds.append(col == value)
        if min_score is not None:
            conds.append(RiskEventRow.score >= float(min_score))
        if since is not None:
            conds.append(RiskEventRow.created_at >= _as_utc(since, "since"))
        if until is not None:
            conds.append(RiskEventRow.created_at < _as_utc(until, "until"))
        source, straight = events_source(self.dialect, symbol)
        conds += filter_conditions(
            self.dialect,
            account_prefix=account_prefix,
            symbol=None if straight else symbol,
            counterparty=counterparty,
            min_value_moved=min_value_moved,
            assignee=assignee,
            unassigned=unassigned,
        )
        return source, sa.and_(sa.true(), *conds), straight

    @_mapped
    def count_risk_events(self, **filters: Any) -> int:
        """How many risk events match ``filters`` (the filters of
        :meth:`list_risk_events`)."""
        source, where, straight = self._triage_where(**filters)
        count = sa.select(sa.func.count()).select_from(source).where(where)
        if straight:
            count = count.prefix_with("STRAIGHT_JOIN", dialect="mysql")
        with self._connect() as conn:
            return int(conn.execute(count).scalar_one())

    @_mapped
    def risk_events_after(
        self,
        after: Sequence[Any] | None,
        *,
        limit: int = 1000,
        sort: str = "-created_at",
        **filters: Any,
    ) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
        """The next page of risk events in ``sort`` order, after the event whose sort
        values are ``after`` (None: from the first), and the sort values of this page's
        last event, to ask for the page after it (None when the page is empty).

        The same events and order as :meth:`list_risk_events` with the same ``filters``
        and ``sort``, read page by page by key instead of by offset: each page starts in
        the order's index where the last one ended (a page deep in a million events costs
        what the first does), and events that are recorded, or leave the filter, while
        the pages are read shift no later page (see
        :func:`~fraudlens.store._triage.after_condition`).
        """
        if limit < 1:
            raise DataError("limit must be >= 1", column="limit")
        source, where, straight = self._triage_where(**filters)
        order = order_by(sort, self.dialect)
        if after is not None:
            where = sa.and_(where, after_condition(sort, self.dialect, after))
        page = (
            sa.select(RiskEventRow.__table__)
            .select_from(source)
            .where(where)
            .order_by(*order)
            .limit(limit)
        )
        if straight:
            page = page.prefix_with("STRAIGHT_JOIN", dialect="mysql")
        with self._connect() as conn:
            rows = list(conn.execute(page).mappings())
        if not rows:
            return [], None
        last = rows[-1]
        cursor = tuple(last[col.key] for col in sort_columns(sort))
        return [_event_dict(r) for r in rows], cursor

    @_mapped
    def get_risk_event(self, event_id: int) -> dict[str, Any] | None:
        """One risk event by id, or None."""
        with self._connect() as conn:
            row = (
                conn.execute(
                    sa.select(RiskEventRow.__table__).where(RiskEventRow.id == int(event_id))
                )
                .mappings()
                .first()
            )
            return None if row is None else _event_dict(row)

    @_mapped
    def review_risk_event(
        self,
        event_id: int,
        *,
        status: str,
        reviewed_by: str,
        note: str | None = None,
        user_id: int | None = None,
    ) -> dict[str, Any]:
        """Record an analyst's decision on an event and return the event.

        The decision is also appended to the event's review history (``review_audit``,
        :meth:`review_history`) in the same transaction.

        Parameters
        ----------
        status
            ``confirmed`` (fraud), ``dismissed`` (not fraud) or ``open`` (reopen).
        reviewed_by
            Who decided (non-empty): the signed-in user's name.
        note
            Replaces the event's note when given.
        user_id
            The deciding user's id, when the decision came from a signed-in user.

        Raises
        ------
        NotFoundError
            No event has this id.
        DataError
            Bad status or reviewer.
        """
        values = decision_values(status, reviewed_by, note)
        with self._begin() as conn:
            self._review_in(conn, event_id, values, user_id=user_id)
        event = self.get_risk_event(event_id)
        assert event is not None
        return event


def open_store(url: str | None = None, *, call_timeout: float | None = None) -> Store:
    """Open the store a URL names (``None``: the ``database_url`` setting); see
    :class:`Store` for ``call_timeout``."""
    return Store(url, call_timeout=call_timeout)


# ---------------------------------------------------------------------------- helpers


def _table(model: type[Base]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def _json_text(value: Any) -> str:
    """The JSON text a JSON column stores (a risk event's ``details``), for every database.

    orjson writes it (a batch of 500 events with 4,000 explained trades: 3.9 ms instead of
    json.dumps' 30.7 ms, the largest single cost of the worker's insert) when the value
    is plain JSON: dicts with str keys, lists, tuples, str, int (64 bits), float, bool,
    None, and the text is ASCII. Anything else is written by :func:`json.dumps` as before
    (or refused by it, as before): datetimes, dataclasses and subclasses of str, int,
    dict or list (e.g. numpy's float64, an IntEnum), which orjson hands to its
    ``default``; non-str keys and larger ints, which it refuses; and text with non-ASCII
    characters, which json.dumps escapes (``\\u00e9``: the same value, and no database
    column's character set to get wrong).

    The two texts differ in spacing only (orjson writes no blank after ``,`` and ``:``)
    and parse to the same values, with two deliberate exceptions: a float that is NaN or
    infinite, which JSON cannot hold, is stored as ``null`` (before, SQLite stored the
    non-JSON token ``NaN`` and PostgreSQL and MariaDB refused the batch), as the
    worker's evidence already turns NaN into None; and an enum or a UUID, which
    json.dumps refused (unless an int or str enum), is written as its value or text.
    """
    dumps, options = _orjson()
    try:
        text = dumps(value, default=_not_plain, option=options)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)
    if not text.isascii():
        return json.dumps(value)
    return text.decode("ascii")


def _not_plain(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a plain JSON value")


@functools.cache
def _orjson() -> tuple[Callable[..., bytes], int]:
    """orjson's ``dumps`` (orjson is installed with the ``store`` extra) and the options
    under which it hands datetimes, dataclasses and subclasses of str, int, dict and list
    to ``default`` instead of writing them by its own rules."""
    from fraudlens._optional import require

    orjson = require("orjson", extra="store", feature="the SQL store")
    options = (
        orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
    return orjson.dumps, options


#: Key of a SQLite connection's pool record ``info``: (device, inode) of its file.
_FILE_KEY = "fraudlens_sqlite_file"


def _sqlite_pragmas(dbapi_conn: Any, busy_ms: int) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the worker write while the service and analysts read; NORMAL sync in WAL
    # mode is still durable against a process crash, which is the failure that matters.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cur.close()


def _insert_ignore(dialect: str, table: sa.Table) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "mysql":
        return mysql.insert(table).prefix_with("IGNORE")
    raise ConfigError(f"unsupported database {dialect!r}: use SQLite, PostgreSQL or MySQL/MariaDB")


@functools.cache
def _event_insert(dialect: str, *, returning: bool = True) -> Any:
    """The risk events' insert that skips a stored key (returning each new row's id and
    key), built once per dialect: a statement object costs more to build than SQLite
    takes to run it for a worker's batch of one (the compiled form is cached by
    SQLAlchemy either way)."""
    stmt = _insert_ignore(dialect, _table(RiskEventRow))
    if not returning:
        return stmt
    key = (RiskEventRow.account_id, RiskEventRow.fraud_type, RiskEventRow.window_end)
    return stmt.returning(RiskEventRow.id, *key)


@functools.cache
def _symbol_insert() -> Any:
    """The risk events' symbol rows' insert (built once)."""
    return sa.insert(_table(RiskEventSymbol))


def _pg_copy_ignore(conn: sa.Connection, table: sa.Table, names: list[str], rows: list[Any]) -> int:
    """COPY rows into a temporary table, then insert the new ones: PostgreSQL's fast path."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cols = ", ".join(names)
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _fraudlens_load_{table.name} "
            f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY _fraudlens_load_{table.name} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM _fraudlens_load_{table.name} "
            "ON CONFLICT DO NOTHING"
        )
        return max(int(cur.rowcount), 0)


def _mysql_insert_ignore(
    conn: sa.Connection, table: sa.Table, names: list[str], columns: list[list[Any]]
) -> int:
    """``INSERT IGNORE`` the rows of ``columns`` (one list per column) in multi-row
    statements of up to :data:`_MYSQL_STATEMENT_BYTES` (and below the server's
    ``max_allowed_packet``): the MySQL/MariaDB load through PyMySQL.

    The values are quoted as PyMySQL quotes them (what its ``executemany`` sends), but a
    column at a time (:func:`_mysql_literals`) instead of a row at a time through
    SQLAlchemy's parameter handling and the driver's per-row formatting, which cost more
    than the server's work. Returns the rows inserted.
    """
    if not columns or not columns[0]:
        return 0
    raw: Any = conn.connection.driver_connection
    literals = [_mysql_literals(col, raw) for col in columns]
    rows = list(map(",".join, zip(*literals, strict=True)))
    packet = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar()
    budget = min(_MYSQL_STATEMENT_BYTES, int(packet or 0) - 4096)
    head = f"INSERT IGNORE INTO {table.name} ({', '.join(names)}) VALUES ("
    budget = max(budget - len(head), 1)
    inserted = 0
    start, size = 0, 0
    for i, row in enumerate(rows):
        # the row's bytes in the statement: its text, parentheses and comma
        row_bytes = (len(row) if row.isascii() else len(row.encode())) + 3
        if size + row_bytes > budget and i > start:
            inserted += _mysql_execute(conn, head, rows[start:i])
            start, size = i, 0
        size += row_bytes
    inserted += _mysql_execute(conn, head, rows[start:])
    return inserted


def _mysql_literals(values: list[Any], raw: Any) -> list[str]:
    """SQL literals of a column's values, each the text PyMySQL's ``escape`` gives it.

    Columns of one type take a shortcut: Python floats through PyMySQL's
    ``escape_float``, naive datetimes formatted by numpy (always with the microseconds,
    which PyMySQL leaves out when they are 0: the same stored value), strings through
    PyMySQL's ``escape_string`` (or the doubled quote of ``NO_BACKSLASH_ESCAPES``); any
    other column goes value by value through ``raw.escape``.
    """
    from pymysql.constants import SERVER_STATUS
    from pymysql.converters import escape_float, escape_string

    kinds = set(map(type, values))
    if kinds == {float}:
        return list(map(escape_float, values))
    if kinds == {datetime}:
        if all(v.tzinfo is None for v in values):
            text = np.datetime_as_string(np.array(values, dtype="datetime64[us]"), unit="us")
            return [f"'{t[:10]} {t[11:]}'" for t in text.tolist()]
    elif kinds == {str}:
        if raw.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
            return ["'" + v.replace("'", "''") + "'" for v in values]
        return ["'" + escape_string(v) + "'" for v in values]
    return list(map(raw.escape, values))


def _mysql_execute(conn: sa.Connection, head: str, rows: list[str]) -> int:
    # no_parameters: the driver sends the text as it is (no %-formatting of the values)
    result = conn.exec_driver_sql(
        head + "),(".join(rows) + ")", execution_options={"no_parameters": True}
    )
    return max(int(result.rowcount), 0)


def _driver_rows(result: sa.CursorResult[Any]) -> list[Any]:
    """A result's rows as the driver's tuples, read from its cursor: for the worker's
    statements whose columns need no type processing (see :func:`_raw_columns`), building
    SQLAlchemy's row objects cost about as much as the query (6,000 rows of a window
    query: 5 ms of 46 on SQLite)."""
    cursor = result.cursor
    try:
        return list(cursor.fetchall()) if cursor is not None else []
    finally:
        result.close()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@functools.lru_cache(maxsize=64)
def _mirror_sql(n: int, paramstyle: str) -> str:
    """``SELECT`` of trades matching any of ``n`` (symbol, side, time, price, quantity)
    boxes, with eight positional driver parameters per box (symbol, side, earliest and
    latest time, lowest and highest price, smallest and largest quantity); each box is
    served by the ``(symbol, ts)`` index. Timestamps come back as raw driver values, as
    in :func:`_raw_columns`."""
    mark = "?" if paramstyle == "qmark" else "%s"
    # %s is PyMySQL's (PostgreSQL has its own statement): ts as text, as in _RawTs
    cols = _mysql_trade_columns() if mark == "%s" else ", ".join(_TRADE_COLUMNS)
    box = (
        f"(symbol = {mark} AND side = {mark} AND ts >= {mark} AND ts <= {mark} "
        f"AND price >= {mark} AND price <= {mark} AND quantity >= {mark} AND quantity <= {mark})"
    )
    return f"SELECT {cols} FROM {Trade.__tablename__} WHERE " + " OR ".join([box] * n)


def _mysql_mirror(boxes: list[tuple[Any, ...]]) -> tuple[str, tuple[Any, ...]]:
    """MySQL/MariaDB's mirror-candidate statement for ``boxes`` (rows of
    :func:`_mirror_sql`'s eight values; consecutive boxes of one symbol and side make
    one group, so sorted boxes make the fewest) and its parameters.

    The boxes of one (symbol, side) share one ``symbol = AND side =`` test around the OR
    of their time, price and quantity ranges: the same rows as :func:`_mirror_sql`'s flat
    OR of whole boxes. MariaDB reads the boxes' index ranges, then tests every row read
    against the whole WHERE clause; against a flat OR of 256 boxes that test was most of
    the statement's time (a batch of 100 accounts: 689 rows read, 10 symbol-sides,
    ANALYZE's ``r_other_time_ms`` 112 ms against 9 ms grouped), and the shorter text is
    parsed and planned faster too.
    """
    sizes: list[int] = []
    params: list[Any] = []
    prev: tuple[Any, Any] | None = None
    for box in boxes:
        if (box[0], box[1]) != prev:
            prev = (box[0], box[1])
            sizes.append(0)
            params += prev
        sizes[-1] += 1
        params += box[2:]
    return _mysql_mirror_sql(tuple(sizes)), tuple(params)


@functools.lru_cache(maxsize=256)
def _mysql_mirror_sql(sizes: tuple[int, ...]) -> str:
    """The text of :func:`_mysql_mirror`'s statement: one group per entry of ``sizes``
    (its symbol and side, then six values per box: earliest and latest time, lowest and
    highest price, smallest and largest quantity), PyMySQL's ``%s`` parameters."""
    box = (
        "(ts >= %s AND ts <= %s AND price >= %s AND price <= %s "
        "AND quantity >= %s AND quantity <= %s)"
    )
    groups = [f"(symbol = %s AND side = %s AND ({' OR '.join([box] * n)}))" for n in sizes]
    # FORCE INDEX: the planner otherwise weighs the (ts) index too, for every box (the
    # plan is the same; planning a 256-box statement took a quarter less without it)
    return (
        f"SELECT {_mysql_trade_columns()} FROM {Trade.__tablename__} "
        "FORCE INDEX (ix_trades_mirror) WHERE " + " OR ".join(groups)
    )


def _mysql_trade_columns() -> str:
    """The trade columns' select list for MySQL/MariaDB's hand-written statements, ``ts``
    read as its text (``CAST(ts AS CHAR)``), as :class:`_RawTs` reads it."""
    return ", ".join("CAST(ts AS CHAR) AS ts" if c == "ts" else c for c in _TRADE_COLUMNS)


#: PostgreSQL's mirror-candidate statement: the boxes of :func:`_mirror_sql` as eight
#: arrays, each box a lateral lookup on the ``(symbol, ts)`` index (``OFFSET 0`` keeps the
#: planner from turning it into a hash join over the whole table). A trade inside two
#: boxes comes back twice; the caller drops repeats.
_PG_MIRROR_SQL = (
    "SELECT t.* FROM unnest(%s::text[], %s::text[], %s::timestamp[], %s::timestamp[], "
    "%s::float8[], %s::float8[], %s::float8[], %s::float8[]) "
    "AS b(symbol, side, lo, hi, plo, phi, qlo, qhi) CROSS JOIN LATERAL "
    f"(SELECT {', '.join(_TRADE_COLUMNS)} FROM {Trade.__tablename__} "
    "WHERE symbol = b.symbol AND side = b.side AND ts >= b.lo AND ts <= b.hi "
    "AND price >= b.plo AND price <= b.phi AND quantity >= b.qlo AND quantity <= b.qhi "
    "OFFSET 0) AS t"
)


def _driver_stamps(dialect: str, stamps: np.ndarray) -> list[Any]:
    """UTC ``datetime64[us]`` values as the driver takes them for the ``ts`` column:
    SQLite's stored text (``YYYY-MM-DD HH:MM:SS.ffffff``, what SQLAlchemy writes, so
    text order is time order), naive datetimes elsewhere."""
    if dialect == "sqlite":
        text = np.datetime_as_string(stamps.astype("datetime64[us]"), unit="us")
        return [t.replace("T", " ") for t in text.tolist()]
    return list(stamps.astype("datetime64[us]").astype(object).tolist())


class _RawTs(sa.sql.functions.FunctionElement[Any]):
    """A ``ts`` column as the driver reads it fastest: the column itself, except on
    MySQL/MariaDB, where it is the column's text (``CAST(ts AS CHAR)``, ISO text with
    microseconds): PyMySQL turns each DATETIME into a datetime in Python, which cost
    more than the whole column's text read by numpy (156 bar rows: 3.0 ms instead of
    3.8 ms)."""

    type = sa.types.NullType()
    inherit_cache = True
    name = "raw_ts"


@compiles(_RawTs)
def _raw_ts_default(element: _RawTs, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_RawTs, "mysql")
def _raw_ts_mysql(element: _RawTs, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS CHAR)"


def _raw_columns(table: type[Kline] | type[Trade], names: tuple[str, ...]) -> list[Any]:
    """Columns to select, with ``ts`` left unprocessed: pandas parses a whole column of
    driver values (text on SQLite and MySQL/MariaDB, see :class:`_RawTs`, naive
    datetimes elsewhere) far faster than a per-row type processor."""
    cols = table.__table__.c
    return [_RawTs(cols[c]).label(c) if c == "ts" else cols[c] for c in names]


def _frame(rows: Sequence[Any], columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows from the database as a frame with the dtypes the market loaders produce,
    built column by column with numpy (pandas' per-value parsing costs more than the
    query on the worker's small windows)."""
    if not rows:
        # a copy of one empty frame per column set: building it costs ten times more,
        # and most mirror-candidate lookups find nothing
        return _empty_frame(columns).copy()
    return _columns_frame(list(zip(*rows, strict=True)), columns)


def _window_frame(rows: Sequence[Any], start_ns: dict[str, int]) -> pd.DataFrame:
    """:func:`_frame` of trade rows without those before their account's window start
    (``start_ns``, Unix nanoseconds): the rows are cut on their columns, before the frame
    is built, which costs a fraction of a row selection of the frame (a batch of 500
    accounts: 14,000 rows, a few hundred of them cut)."""
    if not rows:
        return _frame(rows, _TRADE_COLUMNS)
    cols: list[Any] = list(zip(*rows, strict=True))
    at_ts = _TRADE_COLUMNS.index("ts")
    at_account = _TRADE_COLUMNS.index("account_id")
    ts = _utc_index(cols[at_ts])
    accounts = cols[at_account]
    if not all(type(a) is str for a in accounts):  # the frame's text is str
        accounts = [a if isinstance(a, str) else str(a) for a in accounts]
    starts = np.fromiter((start_ns[a] for a in accounts), np.int64, len(rows))
    keep = ts.asi8 >= starts
    if not keep.any():  # (an empty frame of the rows' dtypes, as the frame's selection)
        return _frame(rows, _TRADE_COLUMNS)[keep]
    if not bool(keep.all()):
        cols = [np.asarray(c, dtype=object)[keep] for c in cols]
        ts = ts[keep]
    cols[at_ts] = ts
    return _columns_frame(cols, _TRADE_COLUMNS)


def _object_values(values: Any) -> np.ndarray:
    """A text column's values as an object array (``Series.to_numpy(dtype=object)``)."""
    return np.asarray(values.to_numpy(dtype=object), dtype=object)


@functools.cache
def _empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    return _columns_frame([() for _ in columns], columns)


def _columns_frame(cols: Sequence[Sequence[Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """:func:`_frame` from the rows' columns ``cols``, one per name in ``columns``."""
    n = len(cols[0]) if cols else 0
    data: dict[str, Any] = {}
    for name, values in zip(columns, cols, strict=True):
        if name == "ts":
            # parsed already (a window's rows cut on their times) or the driver's values
            data[name] = values if isinstance(values, pd.DatetimeIndex) else _utc_index(values)
        elif name in ("trade_id", "account_id", "symbol", "side"):
            arr = np.empty(n, dtype=object)
            arr[:] = values
            # text columns come back as str; anything else (a driver's bytes, numbers
            # in a hand-written row) is made str, value by value only then
            if n and pd.api.types.infer_dtype(arr, skipna=False) != "string":
                arr[:] = [v if isinstance(v, str) else str(v) for v in values]
            data[name] = arr
        else:
            data[name] = np.asarray(values, dtype=np.float64)
    # the same frame as pd.DataFrame(data), without its inference of each column's dtype
    # (the text columns' strings go to pyarrow directly): a third of its cost on a small
    # window's rows
    from fraudlens.market._columns import frame_of

    return frame_of(list(data), list(data.values()))


def _utc_index(values: Sequence[Any]) -> pd.DatetimeIndex:
    """Driver timestamps (ISO text on SQLite, naive UTC datetimes elsewhere) as UTC."""
    if not values:
        return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")
    if isinstance(values[0], str):
        try:
            parsed = np.array(values, dtype="datetime64[us]")
        except ValueError:  # not plain ISO text: let pandas read it
            return pd.DatetimeIndex(pd.to_datetime(list(values), utc=True, format="ISO8601"))
        return pd.DatetimeIndex(parsed.astype("datetime64[ns]"), tz="UTC")
    index = pd.DatetimeIndex(list(values)).as_unit("ns")
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def _naive(ns: int) -> datetime:
    """Unix nanoseconds as the naive UTC datetime the drivers take."""
    return datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)


_BAR_VALUES = ("open", "high", "low", "close", "volume")
_EMPTY_BARS: tuple[np.ndarray, ...] = (
    np.zeros(0, dtype=np.int64),
    *(np.zeros(0) for _ in _BAR_VALUES),
)


def _bar_arrays(rows: Sequence[Any]) -> dict[tuple[str, int], tuple[np.ndarray, ...]]:
    """Bar rows ``(symbol, ts, open, high, low, close, volume)`` grouped by (symbol, UTC
    day) as arrays (``ts`` in Unix ns), each sorted by time."""
    if not rows:
        return {}
    frame = _frame(rows, _KLINE_COLUMNS)
    ts = frame["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    sym = frame["symbol"].to_numpy()
    day = ts // (86_400 * 10**9)
    values = [frame[c].to_numpy(dtype=np.float64) for c in _BAR_VALUES]
    order = np.lexsort((ts, day, sym))
    sym, day, ts = sym[order], day[order], ts[order]
    values = [v[order] for v in values]
    cut = np.flatnonzero((sym[1:] != sym[:-1]) | (day[1:] != day[:-1])) + 1
    out: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}
    for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(ts)], strict=True):
        out[(str(sym[lo]), int(day[lo]))] = (ts[lo:hi].copy(), *(v[lo:hi].copy() for v in values))
    return out


def _bars_frame(parts: list[tuple[str, tuple[np.ndarray, ...]]]) -> pd.DataFrame:
    """One k-line frame from per-(symbol, day) arrays, in the given order."""
    n = sum(len(a[0]) for _, a in parts)
    symbols = np.empty(n, dtype=object)
    pos = 0
    for sym, arrays in parts:
        symbols[pos : pos + len(arrays[0])] = sym
        pos += len(arrays[0])
    ts = np.concatenate([a[0] for _, a in parts]) if parts else np.zeros(0, dtype=np.int64)
    data: dict[str, Any] = {
        "symbol": symbols,
        "ts": pd.DatetimeIndex(ts.astype("datetime64[ns]"), tz="UTC"),
    }
    for i, col in enumerate(_BAR_VALUES, start=1):
        data[col] = np.concatenate([a[i] for _, a in parts]) if parts else np.zeros(0)
    from fraudlens.market._columns import frame_of

    return frame_of(list(data), list(data.values()))


@functools.cache
def _latest_statement() -> Any:
    return (
        sa.select(Trade.account_id, sa.func.max(Trade.ts, type_=Trade.ts.type))
        .where(Trade.account_id.in_(sa.bindparam("ids", expanding=True)))
        .group_by(Trade.account_id)
    )


@functools.lru_cache(maxsize=32)
def _mysql_windows_sql(n: int) -> str:
    """MySQL/MariaDB: the trades of ``n`` accounts from a microsecond before their
    window's start to their latest trade, ordered as :func:`_window_statement`; four
    PyMySQL parameters per account (the id thrice, the window's length in microseconds
    plus one). Each account's latest trade is a subquery MariaDB answers from the
    ``(account_id, ts)`` index while planning ("Select tables optimized away"), so each
    window is then a range of that index, as two statements (latest trades, then
    windows) read it, in one round trip."""
    cols = _mysql_trade_columns()
    latest = f"(SELECT MAX(ts) FROM {Trade.__tablename__} WHERE account_id = %s)"
    one = (
        f"(SELECT {cols} FROM {Trade.__tablename__} WHERE account_id = %s "
        f"AND ts <= {latest} AND ts >= {latest} - INTERVAL %s MICROSECOND)"
    )
    # the text of ts sorts as the time (fixed width), ties by trade_id as everywhere
    return " UNION ALL ".join([one] * n) + " ORDER BY account_id, ts, trade_id"


@functools.cache
def _window_statement() -> Any:
    return (
        sa.select(*_raw_columns(Trade, _TRADE_COLUMNS))
        .where(
            Trade.account_id.in_(sa.bindparam("ids", expanding=True)),
            Trade.ts >= sa.bindparam("lo", type_=Trade.ts.type),
            Trade.ts <= sa.bindparam("hi", type_=Trade.ts.type),
        )
        .order_by(Trade.account_id, Trade.ts, Trade.trade_id)
    )


@functools.cache
def _bars_statement() -> Any:
    return sa.select(*_raw_columns(Kline, _KLINE_COLUMNS)).where(
        Kline.symbol.in_(sa.bindparam("symbols", expanding=True)),
        Kline.ts >= sa.bindparam("lo", type_=Kline.ts.type),
        Kline.ts < sa.bindparam("hi", type_=Kline.ts.type),
    )


def _event_row(event: RiskEvent, now: datetime) -> dict[str, Any]:
    """The column values of a new event's row."""
    return {
        "account_id": event.account_id,
        "fraud_type": event.fraud_type,
        "business_type": event.business_type,
        "score": event.score,
        "threshold": event.event_threshold,
        "model_threshold": event.model_threshold,
        "model_version": event.model_version,
        "window_start": event.window_start,
        "window_end": event.window_end,
        "details": dict(event.details),
        "value_moved": event.value_moved,
        "counterparty": event.counterparty,
        "priority": event_priority(event.score, event.value_moved),
        "note": event.note,
        "status": event.status,
        "created_at": event.created_at or now,
        "requested_at": event.requested_at,
    }


def _event_key(row: Any) -> tuple[str, str, datetime]:
    """An event's unique key from its row values or a returned ``(account_id,
    fraud_type, window_end)``, with the time as the store keeps it (UTC, microseconds)."""
    if isinstance(row, Mapping):
        row = (row["account_id"], row["fraud_type"], row["window_end"])
    account_id, fraud_type, window_end = row
    end = utc(window_end)
    assert end is not None
    return str(account_id), str(fraud_type), end


def _event_record(row: Any) -> RiskEvent:
    values = dict(row)
    values.pop("priority", None)  # derived from score and value moved
    values["event_threshold"] = values.pop("threshold")
    details = values.get("details")
    if isinstance(details, str):  # MariaDB hands JSON back as text
        values["details"] = json.loads(details)
    elif details is None:
        values["details"] = {}
    return RiskEvent(**values)


def _event_dict(row: Any) -> dict[str, Any]:
    out = _event_record(row).to_dict()
    out["priority"] = float(row["priority"]) if row.get("priority") is not None else 0.0
    return out
