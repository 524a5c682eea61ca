"""Embedded queue in a SQLite file: durable, and safe for several processes on one host.

Every message is a row of ``messages``; a receive leases rows by pushing their
``visible_at`` into the future inside a ``BEGIN IMMEDIATE`` transaction, which takes
SQLite's write lock first, so two processes can never lease the same row. When a consumer
dies, its leased rows become visible again once their lease runs out.

The file is opened in WAL mode (readers do not block the writer) with ``synchronous=NORMAL``:
a committed send survives a crash of the process, but the last transactions before a power
loss may be rolled back. Pass ``?synchronous=FULL`` in the URL to trade speed for that.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fraudlens._io import probe_write
from fraudlens._sqlite import busy_timeout_ms, file_id
from fraudlens.errors import ConfigError, QueueError
from fraudlens.queues._base import (
    EXPIRED_REASON,
    Message,
    Queue,
    dead_letter_record,
    encode_body,
    log,
    max_attempts_reason,
)

__all__ = ["DEFAULT_SQLITE_PATH", "SQLiteQueue"]

#: Where ``open_queue("sqlite")`` keeps its file (relative to the working directory).
DEFAULT_SQLITE_PATH = "./fraudlens-queue.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    visible_at  REAL    NOT NULL,
    created_at  REAL    NOT NULL,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    message_id  INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    created_at  REAL    NOT NULL,
    failed_at   REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS queue_meta (
    key         TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL
);
"""

_SYNC_MODES = {"OFF", "NORMAL", "FULL", "EXTRA"}
#: What SQLite says when a write finds no room on the disk.
_SQLITE_FULL = "database or disk is full"
#: Seconds :meth:`SQLiteQueue.ping` waits for the write lock.
_PING_LOCK_WAIT = 1.0
# Rows per INSERT in send_batch; bounded so one transaction does not hold the lock for long.
_SEND_CHUNK = 1000
_POLL_MIN, _POLL_MAX = 0.01, 0.2


class SQLiteQueue(Queue):
    """A queue stored in a SQLite database file.

    Parameters
    ----------
    path
        Database file; created (with its folder) if missing. Several queues, told apart
        by ``name``, can share one file.
    name
        Queue name.
    max_attempts
        Deliveries allowed per message before it is dead-lettered.
    busy_timeout
        Seconds a statement waits for another process's write lock before failing.
    synchronous
        SQLite ``synchronous`` pragma: ``NORMAL`` (default) or ``FULL`` for power-loss safety.

    Notes
    -----
    ``Message.id`` is the row id. Ack, nack and dead-letter only act while the caller still
    holds the lease (the row's delivery count equals ``Message.attempts``); a consumer whose
    lease ran out and was re-delivered elsewhere gets a logged warning and changes nothing.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_SQLITE_PATH,
        *,
        name: str = "checks",
        max_attempts: int = 5,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        super().__init__(name, max_attempts=max_attempts)
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ConfigError(
                f"synchronous must be one of {sorted(_SYNC_MODES)}, got {synchronous!r}"
            )
        busy_ms = busy_timeout_ms(busy_timeout, str(path), "SQLite queue at")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._busy_ms = busy_ms
        self._sync = sync
        # A write failed for want of room: ping checks there is room again.
        self._full = False
        # The file this handle reads and writes (see _check_file), and the row ids it
        # leased there and has not settled (acked, nacked, released or dead-lettered).
        self._file: tuple[int, int] | None = None
        self._taken: set[int] = set()
        self._incarnation: str | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open SQLite queue at {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        """Open the file at the path (made, with its folder and tables, if missing) and
        note which file it is."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are begun explicitly, so the write lock is
        # taken by BEGIN IMMEDIATE rather than lazily at the first UPDATE.
        db = sqlite3.connect(
            self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self._sync}")
            db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                # Made once per file: a file deleted and made again gets another.
                db.execute(
                    "INSERT OR IGNORE INTO queue_meta (key, value) VALUES ('incarnation', ?)",
                    (uuid.uuid4().hex,),
                )
                (self._incarnation,) = db.execute(
                    "SELECT value FROM queue_meta WHERE key = 'incarnation'"
                ).fetchone()
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            self._file = file_id(self.path)
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def from_url(cls, url: str, *, name: str = "checks", max_attempts: int = 5) -> SQLiteQueue:
        """Open ``sqlite``, ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

        As in SQLAlchemy URLs, three slashes start a relative path and four an absolute one.
        Query parameters ``synchronous`` and ``busy_timeout`` (seconds) are honoured.
        """
        rest = url[len("sqlite") :] if url.startswith("sqlite") else None
        if rest is None or (rest and not rest.startswith(":")):
            raise ConfigError(f"not a SQLite queue URL: {url!r}")
        rest = rest[1:].removeprefix("///") if rest.startswith(":///") else rest[1:]
        path, _, query = rest.partition("?")
        if path == "//":
            path = ""
        if path.startswith("//"):
            raise ConfigError(f"SQLite queue URL {url!r} has a host part; use sqlite:///path")
        opts = {k: v[-1] for k, v in parse_qs(query).items()}
        unknown = set(opts) - {"synchronous", "busy_timeout"}
        if unknown:
            raise ConfigError(f"unknown SQLite queue option(s) {sorted(unknown)} in {url!r}")
        busy = busy_timeout_ms(opts.get("busy_timeout", 30.0), url, "queue URL") / 1000
        return cls(
            path or DEFAULT_SQLITE_PATH,
            name=name,
            max_attempts=max_attempts,
            busy_timeout=busy,
            synchronous=opts.get("synchronous", "NORMAL"),
        )

    @property
    def identity(self) -> str:
        """``sqlite:<absolute path of the file>#<queue name>``."""
        return f"sqlite:{self.path.resolve()}#{self.name}"

    @property
    def incarnation(self) -> str | None:
        """A random id made with the file this handle uses (kept in its ``queue_meta``
        table)."""
        return self._incarnation

    # -- plumbing ------------------------------------------------------------------------
    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise QueueError(f"queue {self.name!r} at {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """Run a block in one write transaction (BEGIN IMMEDIATE), thread-safely; an
        SQLite error in it (a full disk, a failing one) is a QueueError."""
        with self._lock:
            self._check_file()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise QueueError(f"SQLite queue {self.path}: {exc}") from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                _rollback(conn)
                raise self._error(exc) from exc
            except BaseException:
                _rollback(conn)
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    _rollback(conn)
                    raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> QueueError:
        """The QueueError of a failed write; a full disk is remembered for :meth:`ping`."""
        if _SQLITE_FULL in str(exc).lower():
            self._full = True
        return QueueError(f"SQLite queue {self.path}: {exc}")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Run reads outside a write transaction, thread-safely; an SQLite error is a
        QueueError."""
        with self._lock:
            self._check_file()
            conn = self._conn
            try:
                yield conn
            except sqlite3.Error as exc:
                raise QueueError(f"SQLite queue {self.path}: {exc}") from exc

    def _check_file(self) -> None:
        """Follow the file at the queue's path if it is no longer the one this handle
        opened, or refuse to go on.

        A queue file deleted (or replaced: restored from a backup, made again by a
        producer) under an open handle stays readable through it, and empty of what is
        sent since: a consumer polled it for ever, healthy, while every new message went
        to the file at the path, and a producer (the service's enqueue route) answered
        202 for checks written where no consumer looks. A handle holding no lease opens
        the file at the path instead (a warning says so). One that does cannot: the
        messages it leased from the old file cannot be acked in the new one (their row
        ids name other messages there), so the consumer stops, and a restart (the
        worker's supervisor replaces a process that died) opens the new file.

        Raises
        ------
        ConfigError
            The file was replaced while this handle held leases from it.
        QueueError
            The file at the path cannot be opened.
        """
        if self._file is None or self._db is None:
            return
        try:
            now = file_id(self.path)
        except OSError:
            return  # cannot tell (a folder we may not search): the calls will say
        if now == self._file:
            return
        what = "deleted" if now is None else "replaced by another file"
        if self._taken:
            raise ConfigError(
                f"SQLite queue {self.path} was {what} while this process had "
                f"{len(self._taken)} message(s) of it leased: what is sent to that path goes "
                "to another file now (restart this process to read it; the messages it had "
                "leased went with the old file)"
            )
        log.warning(
            "SQLite queue %s was %s while open: opening the file at that path", self.path, what
        )
        old, self._db = self._db, None
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                old.close()
        try:
            self._db = self._connect()
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open SQLite queue at {self.path}: {exc}") from exc

    def _move_to_dead_letters(
        self, conn: sqlite3.Connection, row_id: int, attempts: int, reason: str, now: float
    ) -> bool:
        """Copy one leased row to ``dead_letters`` and delete it; False if the lease is gone."""
        cur = conn.execute(
            "INSERT INTO dead_letters (queue, message_id, body, reason, attempts, created_at,"
            " failed_at) SELECT queue, id, body, ?, attempts, created_at, ? FROM messages"
            " WHERE id = ? AND attempts = ?",
            (reason, now, row_id, attempts),
        )
        if cur.rowcount == 0:
            return False
        conn.execute("DELETE FROM messages WHERE id = ?", (row_id,))
        return True

    # -- producing -----------------------------------------------------------------------
    def send(self, body: dict[str, Any] | str) -> str:
        """Enqueue one message; return its row id."""
        return self.send_batch([body])[0]

    def send_batch(self, bodies: Iterable[dict[str, Any] | str]) -> list[str]:
        """Enqueue many messages, one transaction per 1,000; return their row ids."""
        raws = [encode_body(b) for b in bodies]
        ids: list[str] = []
        for start in range(0, len(raws), _SEND_CHUNK):
            chunk = raws[start : start + _SEND_CHUNK]
            now = time.time()
            with self._tx() as conn:
                # RETURNING keeps the ids exact even when other processes insert concurrently.
                for raw in chunk:
                    cur = conn.execute(
                        "INSERT INTO messages (queue, body, attempts, visible_at, created_at)"
                        " VALUES (?, ?, 0, ?, ?) RETURNING id",
                        (self.name, raw, now, now),
                    )
                    ids.append(str(cur.fetchone()[0]))
        return ids

    # -- consuming -----------------------------------------------------------------------
    def _receive(
        self, max_messages: int, visibility_timeout: float, deadline: float
    ) -> list[Message]:
        """Lease up to ``max_messages`` visible messages, polling until ``deadline``."""
        pause = _POLL_MIN
        while True:
            got, dead = self._receive_once(max_messages, visibility_timeout)
            if got:
                return got
            if dead:
                continue  # rows were dead-lettered: there may be more behind them
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)

    def _receive_once(self, limit: int, visibility_timeout: float) -> tuple[list[Message], int]:
        now = time.time()
        out: list[Message] = []
        leases: list[tuple[float, int]] = []
        dead = 0
        # Idle consumers poll: check with a plain read first (WAL readers take no lock) so
        # they do not queue up for the write lock only to find nothing.
        with self._read() as conn:
            (ready,) = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ?)",
                (self.name, now),
            ).fetchone()
        if not ready:
            return out, dead
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, body, attempts, last_error FROM messages"
                " WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, id LIMIT ?",
                (self.name, now, limit),
            ).fetchall()
            reasons: list[str] = []
            for row_id, raw, attempts, last_error in rows:
                # Delivered before and not acked or nacked since: its lease ran out.
                if attempts > 0 and last_error is None:
                    last_error = EXPIRED_REASON
                verdict = self._verdict(attempts + 1, raw, last_error)
                if isinstance(verdict, str):
                    conn.execute(
                        "UPDATE messages SET attempts = attempts + 1 WHERE id = ?", (row_id,)
                    )
                    self._move_to_dead_letters(conn, row_id, attempts + 1, verdict, now)
                    reasons.append(verdict)
                    dead += 1
                    continue
                leases.append((now + visibility_timeout, row_id))
                out.append(Message(str(row_id), verdict, attempts + 1, raw, key=str(row_id)))
            conn.executemany(
                "UPDATE messages SET attempts = attempts + 1, visible_at = ?, last_error = NULL"
                " WHERE id = ?",
                leases,
            )
        self._taken.update(row_id for _, row_id in leases)
        for reason in reasons:
            self._counted_dead_letter(reason)
        return out, dead

    def ack(self, msg: Message) -> None:
        """Delete a processed message."""
        self.ack_many([msg])

    def ack_many(self, msgs: Iterable[Message]) -> None:
        """Delete several processed messages in one transaction."""
        pairs = [(int(m.id), m.attempts) for m in msgs]
        if not pairs:
            return
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM messages WHERE id = ? AND attempts = ?", pairs)
            lost = len(pairs) - (conn.total_changes - before)
        self._taken.difference_update(row_id for row_id, _ in pairs)
        if lost:
            log.warning("queue %s: %d ack(s) came after the lease was lost", self.name, lost)

    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` s, or dead-letter it if exhausted."""
        now = time.time()
        dead_reason = max_attempts_reason(reason or "nacked")
        moved = False
        with self._tx() as conn:
            if msg.attempts >= self.max_attempts:
                ok = moved = self._move_to_dead_letters(
                    conn, int(msg.id), msg.attempts, dead_reason, now
                )
            else:
                cur = conn.execute(
                    "UPDATE messages SET visible_at = ?, last_error = ?"
                    " WHERE id = ? AND attempts = ?",
                    (now + max(0.0, delay), reason or "nacked", int(msg.id), msg.attempts),
                )
                ok = cur.rowcount > 0
        self._taken.discard(int(msg.id))
        if moved:
            self._counted_dead_letter(dead_reason)
        if not ok:
            log.warning("queue %s: nack of %s came after the lease was lost", self.name, msg.id)

    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int:
        """Make the messages visible again after ``delay`` s with their delivery undone.

        The row's delivery count goes back by one. A row that had been delivered before
        keeps a reason on record (``released: <reason>``), so its next receive does not
        take it for an expired lease.
        """
        todo = [(int(m.id), m.attempts) for m in msgs]
        if not todo:
            return 0
        visible = time.time() + max(0.0, delay)
        note = f"released: {reason or 'handed back'}"[:500]
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE messages SET attempts = attempts - 1, visible_at = ?,"
                " last_error = CASE WHEN attempts > 1 THEN ? ELSE NULL END"
                " WHERE id = ? AND attempts = ?",
                [(visible, note, row_id, attempts) for row_id, attempts in todo],
            )
            done = conn.total_changes - before
        self._taken.difference_update(row_id for row_id, _ in todo)
        if done < len(todo):
            log.warning(
                "queue %s: %d release(s) came after the lease was lost", self.name, len(todo) - done
            )
        return done

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Move the message to ``dead_letters`` now."""
        with self._tx() as conn:
            ok = self._move_to_dead_letters(conn, int(msg.id), msg.attempts, reason, time.time())
        self._taken.discard(int(msg.id))
        if ok:
            self._counted_dead_letter(reason)
        if not ok:
            log.warning(
                "queue %s: dead_letter of %s came after the lease was lost", self.name, msg.id
            )

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return up to ``limit`` dead letters of this queue, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT message_id, body, reason, attempts, failed_at FROM dead_letters"
                " WHERE queue = ? ORDER BY id LIMIT ?",
                (self.name, int(limit)),
            ).fetchall()
        return [
            dead_letter_record(str(message_id), raw, reason, attempts, failed_at)
            for message_id, raw, reason, attempts, failed_at in rows
        ]

    # -- housekeeping --------------------------------------------------------------------
    def ping(self) -> None:
        """Check that a write could go through now, not only a read (a WAL file is read
        without a lock, and with no room on the disk): the file's write lock can be
        taken within a second, and, after a write failed with "database or disk is
        full", its folder has room for a full write-ahead log (``page_size`` x
        ``wal_autocheckpoint`` bytes). A consumer that judged a full or locked queue by
        its depth resumed at once, failed its next receive and paused again, over and
        over, and gave up the acks the queue kept refusing (their work was done again).

        Raises
        ------
        QueueError
            The queue cannot take a write now.
        """
        with self._read() as conn:
            conn.execute(f"PRAGMA busy_timeout = {int(_PING_LOCK_WAIT * 1000)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                _rollback(conn)
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            if self._full:
                room = conn.execute("PRAGMA page_size").fetchone()[0] * max(
                    1, conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
                )
                try:
                    probe_write(self.path.resolve().parent, room)
                except OSError as exc:
                    raise QueueError(
                        f"SQLite queue {self.path}: {self.path.resolve().parent} has no room "
                        f"for {room:,} bytes ({exc.strerror or exc})"
                    ) from exc
                self._full = False

    def depth(self) -> int:
        """Return visible plus leased messages of this queue."""
        with self._read() as conn:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM messages WHERE queue = ?", (self.name,)
            ).fetchone()
        return int(n)

    def purge(self) -> None:
        """Delete every message and dead letter of this queue (other queues in the file stay)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM messages WHERE queue = ?", (self.name,))
            conn.execute("DELETE FROM dead_letters WHERE queue = ?", (self.name,))

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __repr__(self) -> str:
        return f"SQLiteQueue(path={str(self.path)!r}, name={self.name!r})"


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction. SQLite has already rolled it back after some errors (a
    full disk at COMMIT): a ROLLBACK then raises "no transaction is active", which would
    hide the error that matters."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("SQLite queue: ROLLBACK failed", exc_info=True)
