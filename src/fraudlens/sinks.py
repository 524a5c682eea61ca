"""Where scored records go: a buffered, Firehose-like sink for a folder or any fsspec URL.

A :class:`Sink` buffers records and writes them out as one object per flush, partitioned
by the UTC hour of the flush (``yyyy/mm/dd/HH/``) and named
``<prefix>-<yyyy-mm-dd-HH-MM-SS>-<uuid>.csv`` (or ``.jsonl``), the way Kinesis Data
Firehose lands records in S3. A flush happens when the buffer holds ``max_records``
records or ``max_bytes`` bytes, when ``max_seconds`` have passed since the first buffered
record (checked on every put and by a background timer), on :meth:`Sink.flush` and on
:meth:`Sink.close`.

Durability
----------
No reader ever sees a partial object. A local file is written under a hidden temporary
name in its final folder, fsynced and then renamed into place; a remote object (``s3://``,
``gs://``, ``memory://``, ...) is written with a single put, which object stores apply
atomically.

For a local folder, every accepted batch is also appended to a spool file,
``<root>/.spool.jsonl``, and fsynced before :meth:`Sink.put_many` returns. The spool is
truncated after each successful flush and replayed when the sink is opened again. So a
process killed at any point loses no record that a put had accepted. Delivery is
at-least-once: a crash between writing an object and truncating the spool replays that
object's records again on the next open. A remote target has no spool by default, so a
crash there loses at most the unflushed buffer. Pass ``spool=`` a local path to protect a
remote target the same way.

One process at a time may own a spool. A second sink opened on the same folder raises
:class:`~fraudlens.errors.ConfigError` instead of mixing the two buffers.

Exactly once with the spool, and source checkpoints
---------------------------------------------------
Each :meth:`Sink.put_many` is appended to the spool as its records followed by an end mark,
in one write and one fsync; on replay only puts whose end mark is there count (a torn put
never returned, so it was never accepted). A put may carry a *checkpoint*: where its source
stands once these records are in (say ``{"file:/data/x.csv": {"offset": 1500, ...}}``). The
checkpoint goes in the put's end mark, so it becomes durable in the same fsync as the
records it covers, and :meth:`Sink.checkpoint` returns it after a restart: a source that
resumes from it neither skips nor repeats a record.

A flush first appends the name of the object it is about to write to the spool (a *flush
intent*), then writes the object, then saves the checkpoints to ``<root>/.checkpoints.json``
and only then truncates the spool. A crash anywhere in between is replayed by writing the
same records under the same name again, which replaces the object instead of adding a
second copy. So, with the spool, every accepted record lands in exactly one object.

A checkpointed put is never split across objects (the buffer is flushed first when the put
would not fit); an oversized one becomes one larger object.

Columns of a CSV object
-----------------------
A CSV object's columns are the union of its records' keys, in order of first appearance,
and every row has a cell for every column: records that each bring keys of their own
would make an object of records x keys cells (2,000 records of 256 keys each: 700 MB and
a minute of CPU). So a CSV object holds at most ``max_columns`` columns
(:data:`MAX_COLUMNS`, the most the loaders read back): a put whose records bring keys the
buffered ones do not fit beside is written to a new object (the buffer is flushed first),
and a record with more keys than that, or a checkpointed put whose records name more
between them, is refused with :class:`~fraudlens.errors.DataError` before any of it is
accepted. The sink writes the keys it is given: which fields a record carries, and what
wins when a caller's free-form metadata names one of them, is its writer's decision (the
service's ``/v1/cards/score`` keeps its own fields and writes a colliding metadata key
as ``metadata.<key>``; the card processor writes a fixed set of columns).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from fraudlens._closing import Closing
from fraudlens._io import atomic_write, fsync_dir, probe_write, resolve
from fraudlens._time import utcnow
from fraudlens.errors import ConfigError, DataError, UnavailableError

__all__ = ["CHECKPOINTS_NAME", "MAX_COLUMNS", "SPOOL_NAME", "Sink", "open_sink"]

#: Name of the spool file kept in a local sink's root folder.
SPOOL_NAME = ".spool.jsonl"
#: Name of the file (or object) in the sink root holding the sources' checkpoints.
CHECKPOINTS_NAME = ".checkpoints.json"
# Spool lines that are not records are JSON arrays: the end mark of a put and the intent
# of a flush. Records are JSON objects.
_PUT_MARK = "put"
_FLUSH_MARK = "flush"
# First line of a spool whose puts carry end marks (older spools have none).
_SPOOL_HEADER = json.dumps(["spool", 2])
#: Most columns of one CSV object (the loaders' own limit, :data:`fraudlens._csvread.MAX_COLUMNS`).
MAX_COLUMNS = 1024

Format = Literal["csv", "jsonl"]


def _json_default(obj: Any) -> Any:
    # numpy scalars, timestamps and the like: a plain value or its string form.
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN is an empty CSV cell
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):
        try:
            return _cell(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def _is_local(target: str) -> bool:
    return "://" not in target or target.startswith("file://")


class Sink(Closing):
    """A buffered writer of scored records to a folder or an fsspec URL.

    Use :func:`open_sink` to build one. A sink is thread-safe and a context manager;
    leaving the ``with`` block flushes what is buffered and stops the timer.

    Parameters
    ----------
    target
        A local folder, a ``file://`` URL or any fsspec URL (``s3://bucket/prefix``).
    prefix
        Object name prefix.
    max_records, max_bytes, max_seconds
        Flush thresholds: buffered record count, approximate buffered bytes, and seconds
        since the first buffered record.
    fmt
        ``"csv"`` (header row, columns in order of first appearance) or ``"jsonl"``.
    spool
        ``True`` (default for local folders): keep a spool in the sink root. ``False``:
        no spool (default for remote targets). A path: spool there.
    timer
        Run a background thread that flushes when ``max_seconds`` have passed even if
        nobody calls :meth:`put`.
    storage_options
        Passed to fsspec for remote targets (credentials, endpoint, ...).
    max_columns
        Most columns of one CSV object (see the module documentation).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        prefix: str = "scores",
        max_records: int = 5000,
        max_bytes: int = 5 * 2**20,
        max_seconds: float = 60.0,
        fmt: Format = "csv",
        spool: bool | str | os.PathLike[str] | None = None,
        timer: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        max_columns: int = MAX_COLUMNS,
    ) -> None:
        if fmt not in ("csv", "jsonl"):
            raise ConfigError(f"sink format must be 'csv' or 'jsonl', not {fmt!r}")
        if max_records < 1 or max_bytes < 1 or max_seconds <= 0 or max_columns < 1:
            raise ConfigError(
                "sink limits max_records, max_bytes, max_seconds and max_columns must be > 0"
            )
        if "/" in prefix or not prefix:
            raise ConfigError(f"sink prefix must be a non-empty name without '/', not {prefix!r}")
        self.target = str(target)
        self.prefix = prefix
        self.max_records = int(max_records)
        self.max_bytes = int(max_bytes)
        self.max_seconds = float(max_seconds)
        self.max_columns = int(max_columns)
        self.fmt: Format = fmt
        #: Paths (local) or URLs (remote) of every object this sink wrote, oldest first.
        self.written: list[str] = []
        #: Records written out in objects so far.
        self.records_written = 0
        #: Records recovered from the spool when the sink was opened.
        self.recovered = 0
        # Checkpoints of every accepted put (durable with the spool), and the part of them
        # already saved beside the objects.
        self._checkpoints: dict[str, Any] = {}
        self._saved_checkpoints: dict[str, Any] = {}
        # A flush that failed after accepting puts: kept and retried, and the object name
        # it announced in the spool is reused, so a half-done write is replaced, not doubled.
        self._flush_error: OSError | None = None
        self._intent: tuple[str, str] | None = None
        # Size to cut the spool back to after a failed write (a torn put or intent).
        self._spool_good: int | None = None
        # Bytes of the last spool write that failed (0: none did): the probe writes as
        # many, since on a full disk an empty file can still be made.
        self._spool_failed = 0

        self._lock = threading.RLock()
        self._buffer: list[dict[str, Any]] = []
        # The buffered records' keys (the next CSV object's columns).
        self._columns: dict[str, None] = {}
        self._bytes = 0
        self._first_at: float | None = None
        self._closed = False

        self._fs: Any = None
        if _is_local(self.target):
            local = (
                self.target[len("file://") :] if self.target.startswith("file://") else self.target
            )
            if not local.strip():
                # (an empty path is the working folder: file:// had filled it with the
                # objects' hour folders and the spool)
                raise ConfigError(
                    f"sink {self.target!r} names no folder: give one, e.g. file:///srv/sink"
                )
            self._root = str(resolve(Path(local).expanduser()))
            Path(self._root).mkdir(parents=True, exist_ok=True)
        else:
            try:
                from fsspec.core import url_to_fs
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigError(
                    f"sink {self.target!r} needs fsspec (pip install 'fraudlens[cloud]')"
                ) from exc
            try:
                self._fs, root = url_to_fs(self.target, **dict(storage_options or {}))
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"cannot open sink {self.target!r}: {exc}") from exc
            self._root = str(root).rstrip("/")
            if not self._root:
                # The objects' first folder would be taken for the bucket: s3:// wrote to
                # a bucket named after the year (and ended in botocore's traceback).
                raise ConfigError(
                    f"sink {self.target!r} names no bucket or folder: give one, e.g. "
                    "s3://BUCKET/PREFIX"
                )

        if spool is None:
            spool = self._fs is None
        self._spool_path: Path | None
        if spool is True:
            if self._fs is not None:
                raise ConfigError("a remote sink needs spool= a local file path, not True")
            self._spool_path = Path(self._root) / SPOOL_NAME
        elif spool is False:
            self._spool_path = None
        else:
            self._spool_path = resolve(Path(spool).expanduser())
        self._spool: io.TextIOWrapper | None = None
        self._saved_checkpoints = self._load_checkpoints()
        self._checkpoints = dict(self._saved_checkpoints)
        if self._spool_path is not None:
            self._open_spool()
            if self._fs is None:
                # The spool's lock makes this the folder's only writer: hidden leftovers
                # of a writer killed while it saved the checkpoints or probed can go.
                _remove_temporaries(Path(self._root), CHECKPOINTS_NAME)
                _remove_temporaries(Path(self._root), "probe-", probe=True)

        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if timer:
            self._timer = threading.Thread(
                target=self._tick, name="fraudlens-sink-timer", daemon=True
            )
            self._timer.start()

    # -- public API --------------------------------------------------------------------
    @property
    def durable(self) -> bool:
        """True when an accepted record survives a crash of this process (spool on)."""
        return self._spool_path is not None

    @property
    def buffered(self) -> int:
        """Records accepted but not yet written out in an object."""
        with self._lock:
            return len(self._buffer)

    def put(self, record: Mapping[str, Any]) -> None:
        """Accept one record (see :meth:`put_many`)."""
        self.put_many([record])

    def put_many(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        checkpoint: Mapping[str, Any] | None = None,
    ) -> None:
        """Accept records; flush whenever a threshold is reached.

        With a spool, the records are on disk (fsynced) when this returns. A large batch
        is split so that no object holds more than ``max_records`` records, unless it
        carries a checkpoint.

        Parameters
        ----------
        records
            Flat mappings of JSON-able values.
        checkpoint
            ``{source key: position}`` (JSON values): where the source of these records
            stands once they are in. Durable together with them (see the module
            documentation); read back with :meth:`checkpoint`.

        Raises
        ------
        OSError
            The spool or an object could not be written (disk full, folder gone, ...):
            nothing of this put was accepted unless it was written before the error.
        DataError
            CSV only: a record has more than ``max_columns`` keys, or the records of a
            checkpointed put name more between them. Nothing of this put was accepted.
        """
        batch = [dict(r) for r in records]
        if not batch and not checkpoint:
            return
        if self.fmt == "csv":
            for i, r in enumerate(batch):
                if len(r) > self.max_columns:
                    raise DataError(
                        f"a record with {len(r):,} fields; a CSV sink writes at most "
                        f"{self.max_columns:,} columns",
                        row=i + 1,
                    )
            if checkpoint:
                names = dict.fromkeys(k for r in batch for k in r)
                if len(names) > self.max_columns:
                    raise DataError(
                        f"the records of one checkpointed put name {len(names):,} fields; a "
                        f"CSV sink writes at most {self.max_columns:,} columns"
                    )
        lines = [json.dumps(r, default=_json_default, separators=(",", ":")) for r in batch]
        with self._lock:
            if self._closed:
                raise ConfigError("sink is closed")
            if self._flush_error is not None and len(self._buffer) >= self.max_records:
                # Objects could not be written lately and the buffer is full: accept
                # nothing more until a flush works (raises OSError while it does not).
                self._flush_locked()
            if checkpoint:
                # One unit: records, then the end mark with the checkpoint, one fsync.
                if self._buffer and (
                    len(self._buffer) + len(batch) > self.max_records
                    or self._fitting(batch, 0, len(batch)) < len(batch)
                ):
                    self._flush_locked()
                mark = json.dumps([_PUT_MARK, len(lines), dict(checkpoint)], default=_json_default)
                self._append(lines, batch, mark)
                self._checkpoints.update(checkpoint)
                self._flush_if_due()
                return
            start = 0
            # Fill the buffer up to max_records at a time, so no object holds more.
            while start < len(batch):
                stop = start + max(1, self.max_records - len(self._buffer))
                stop = self._fitting(batch, start, min(stop, len(batch)))
                if stop == start:
                    # The next record's keys do not fit beside the buffered records'
                    # columns: it starts a new object. (An empty buffer takes any record.)
                    self._flush_locked()
                    continue
                chunk = lines[start:stop]
                mark = json.dumps([_PUT_MARK, len(chunk), None])
                self._append(chunk, batch[start:stop], mark)
                self._flush_if_due()
                start = stop

    def _fitting(self, batch: list[dict[str, Any]], start: int, stop: int) -> int:
        """The end of the longest run ``batch[start:end]`` (``end <= stop``) whose keys
        fit beside the buffered records' in one CSV object."""
        if self.fmt != "csv":
            return stop
        columns = set(self._columns)
        for i in range(start, stop):
            new = [k for k in batch[i] if k not in columns]
            if new and len(columns) + len(new) > self.max_columns:
                return i
            columns.update(new)
        return stop

    def _flush_if_due(self) -> None:
        """Flush when a threshold is reached; a failure is kept, not raised: the put that
        got here is accepted already (spooled), and the flush is retried later."""
        if not self._due():
            return
        try:
            self._flush_locked()
        except OSError as exc:
            logging.getLogger(__name__).warning("sink flush failed, will retry: %s", exc)

    def checkpoint(self, key: str) -> Any:
        """The position last recorded for source ``key`` with an accepted put, or None.

        With a spool (or after a flush) it survives a crash of this process.
        """
        with self._lock:
            return self._checkpoints.get(key)

    def probe(self) -> None:
        """Check that the sink can write now (its folder, or the remote target), that the
        spool is still the file at its path (made again if it was removed), and that it
        takes as many bytes as the write that last failed there.

        Raises
        ------
        OSError
            It cannot.
        """
        with self._lock:
            if self._spool is not None:
                self._follow_spool()
                self._repair_spool()
            if self._flush_error is not None and self._buffer:
                self._flush_locked()  # what failed last time must work now
            if self._spool is not None and self._spool_failed:
                assert self._spool_path is not None
                probe_write(self._spool_path.parent, self._spool_failed)
        if self._fs is None:
            probe_write(Path(self._root), 0)
        else:
            self._fs.ls(self._root or "/", detail=False)

    def _append(self, lines: list[str], records: list[dict[str, Any]], mark: str) -> None:
        if self._spool is not None:
            self._spool_write("".join(line + "\n" for line in lines) + mark + "\n")
        if records and self._first_at is None:
            # the age clock starts with the first record (a put of a checkpoint alone
            # would have made the next record's object due at once)
            self._first_at = time.monotonic()
        self._buffer.extend(records)
        if self.fmt == "csv":
            for r in records:
                self._columns.update(dict.fromkeys(r))
        # The JSON form is a close stand-in for the written size in either format.
        self._bytes += sum(len(line) + 1 for line in lines)

    def flush(self) -> str | None:
        """Write the buffer out as one object now; return its path/URL (None if empty)."""
        with self._lock:
            return self._flush_locked()

    def close(self) -> None:
        """Flush what is buffered, stop the timer and release the spool. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._stop.set()
            try:
                self._flush_locked()
            except OSError as exc:
                # Stopped while the sink cannot write (an outage, SIGTERM while paused):
                # say where the records are and what brings them out, not only the
                # path that failed.
                raise self._unwritten(exc) from exc
            finally:
                self._closed = True
                if self._spool is not None:
                    self._spool.close()
                    self._spool = None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)

    def __repr__(self) -> str:
        return f"Sink({self.target!r}, prefix={self.prefix!r}, fmt={self.fmt!r})"

    def _unwritten(self, exc: OSError) -> UnavailableError:
        """The error of a close whose last flush failed: what failed, how many records
        were not written, and where they wait."""
        where = f": {exc.filename}" if exc.filename else ""
        n = len(self._buffer)
        what = f"{n:,} record{'' if n == 1 else 's'} not written"
        if self._spool_path is not None:
            fate = (
                f"{what} stay in its spool {self._spool_path}; the next run with this sink "
                "writes them first"
            )
        else:
            fate = (
                f"{what}; a file's rows and a queue's messages are marked done only once "
                "written, so the next run scores them again"
            )
        return UnavailableError(
            f"sink {self.target} cannot write ({exc.strerror or exc}{where}); {fate}",
            what="sink",
        )

    # -- internals ---------------------------------------------------------------------
    def _due(self) -> bool:
        if not self._buffer:
            return False
        if len(self._buffer) >= self.max_records or self._bytes >= self.max_bytes:
            return True
        return self._first_at is not None and time.monotonic() - self._first_at >= self.max_seconds

    def _tick(self) -> None:
        period = min(1.0, self.max_seconds / 4)
        failing = False
        while not self._stop.wait(period):
            with self._lock:
                if self._closed:
                    return
                if self._due():
                    try:
                        self._flush_locked()
                    except OSError as exc:
                        # An outage: one warning, then quiet until a flush succeeds (it
                        # had logged a traceback every second while the sink was down).
                        if not failing:
                            logging.getLogger(__name__).warning(
                                "background sink flush failed, will retry: %s", exc
                            )
                        failing = True
                    except Exception:
                        logging.getLogger(__name__).exception("background sink flush failed")
                    else:
                        failing = False

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        if self.fmt == "jsonl":
            return "".join(
                json.dumps(r, default=_json_default, separators=(",", ":")) + "\n" for r in records
            ).encode()
        columns: dict[str, None] = {}
        for r in records:
            for k in r:
                columns.setdefault(k, None)
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for r in records:
            w.writerow([_cell(r.get(c)) for c in columns])
        return out.getvalue().encode()

    def _flush_locked(self, part: str | None = None, name: str | None = None) -> str | None:
        if not self._buffer:
            self._save_checkpoints()
            if self._spool is not None and os.fstat(self._spool.fileno()).st_size > 0:
                # Only checkpoint-only puts are left in it, saved now.
                self._reset_spool()
            return None
        records = self._buffer
        data = self._encode(records)
        if part is None or name is None:
            if self._intent is not None:
                part, name = self._intent  # a flush that failed after announcing its name
            else:
                now = utcnow()
                part = now.strftime("%Y/%m/%d/%H")
                name = (
                    f"{self.prefix}-{now.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}.{self.fmt}"
                )
                if self._spool is not None:
                    # The intent first: a crash from here on replays into this very name.
                    self._spool_write(json.dumps([_FLUSH_MARK, part, name]) + "\n")
                self._intent = (part, name)
        try:
            if self._fs is None:
                where = self._write_local(part, name, data)
            else:
                where = self._write_remote(part, name, data)
            self._save_checkpoints()
        except OSError as exc:
            self._flush_error = exc
            raise
        self._flush_error = None
        self._intent = None
        # Only now is the buffer safe to forget.
        self._buffer = []
        self._columns = {}
        self._bytes = 0
        self._first_at = None
        self.written.append(where)
        self.records_written += len(records)
        if self._spool is not None:
            self._reset_spool()
        return where

    def _reset_spool(self) -> None:
        assert self._spool is not None
        self._spool.seek(0)
        self._spool.truncate()
        self._spool.flush()
        os.fsync(self._spool.fileno())

    def _spool_write(self, text: str) -> None:
        """Append to the spool and fsync; on failure cut it back to where it was, so no
        torn line can glue onto the next put."""
        assert self._spool is not None
        self._follow_spool()
        self._repair_spool()
        fd = self._spool.fileno()
        size = os.fstat(fd).st_size
        # An empty spool starts with the header that says its puts carry end marks.
        head = _SPOOL_HEADER + "\n" if size == 0 else ""
        try:
            self._spool.write(head + text)
            self._spool.flush()
            os.fsync(fd)
        except OSError:
            self._spool_good = size
            self._spool_failed = len((head + text).encode())
            with contextlib.suppress(OSError):
                self._repair_spool()
            raise
        self._spool_failed = 0

    def _follow_spool(self) -> None:
        """Make the spool again at its path if its file was removed (the sink's folder
        deleted under a running sink): the records accepted and not yet written out, the
        checkpoints and a flush's announced name go into the new file first.

        Appends went on to the removed file, fsynced but reachable by no later run, so
        the puts were accepted (a queue's messages acked) and lost at the next crash.

        Raises
        ------
        OSError
            Another file took the spool's name: accepting puts into either would lose
            them at a crash (an outage until it is moved away).
        """
        assert self._spool is not None and self._spool_path is not None
        mine = os.fstat(self._spool.fileno())
        try:
            there = os.stat(self._spool_path, follow_symlinks=False)
        except FileNotFoundError:
            there = None
        if there is not None:
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                return
            raise OSError(
                errno.EEXIST,
                "the sink's spool was replaced by another file while this sink wrote to it; "
                "move that file away",
                str(self._spool_path),
            )
        logging.getLogger(__name__).warning(
            "the sink's spool %s was removed while in use: made again, with the %d record(s) "
            "accepted and not yet written out",
            self._spool_path,
            len(self._buffer),
        )
        self._spool_path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self._spool_path, flags, 0o666)
        spool = open(fd, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        try:
            _lock_exclusive(spool, self._spool_path)
            lines = [_SPOOL_HEADER]
            lines += [
                json.dumps(r, default=_json_default, separators=(",", ":")) for r in self._buffer
            ]
            lines.append(
                json.dumps([_PUT_MARK, len(self._buffer), self._checkpoints], default=_json_default)
            )
            if self._intent is not None:
                lines.append(json.dumps([_FLUSH_MARK, *self._intent]))
            spool.write("".join(line + "\n" for line in lines))
            spool.flush()
            os.fsync(fd)
            fsync_dir(self._spool_path.parent)
        except BaseException:
            spool.close()
            with contextlib.suppress(OSError):
                self._spool_path.unlink()
            raise
        old, self._spool = self._spool, spool
        self._spool_good = None
        # The checkpoints file went with the folder, maybe: save it again at the next flush.
        self._saved_checkpoints = {}
        with contextlib.suppress(OSError):
            old.close()

    def _repair_spool(self) -> None:
        if self._spool is None or self._spool_good is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._spool.flush()  # drop what the text layer still holds
        os.ftruncate(self._spool.fileno(), self._spool_good)
        self._spool.seek(0, os.SEEK_END)
        self._spool_good = None

    def _save_checkpoints(self) -> None:
        """Save the checkpoints beside the objects (before the spool that holds them goes)."""
        if self._checkpoints == self._saved_checkpoints:
            return
        data = json.dumps(self._checkpoints, default=_json_default, sort_keys=True).encode()
        if self._fs is None:
            atomic_write(Path(self._root) / CHECKPOINTS_NAME, data, suffix=".tmp")
            fsync_dir(Path(self._root))
        else:
            key = f"{self._root}/{CHECKPOINTS_NAME}"
            self._fs.pipe_file(key, data)
        self._saved_checkpoints = dict(self._checkpoints)

    def _load_checkpoints(self) -> dict[str, Any]:
        try:
            if self._fs is None:
                path = Path(self._root) / CHECKPOINTS_NAME
                if path.is_symlink() or (path.exists() and not path.is_file()):
                    # (always written by renaming a file onto it: a link or a FIFO here was
                    # planted, and /dev/zero behind one had been read without end)
                    raise ConfigError(
                        f"the sink's {path} is not a plain file; restore it, or remove it "
                        "to start every source from its beginning"
                    )
                where = str(path)
                raw = path.read_bytes() if path.exists() else None
            else:
                key = f"{self._root}/{CHECKPOINTS_NAME}"
                where = str(self._fs.unstrip_protocol(key))
                raw = self._fs.cat_file(key) if self._fs.exists(key) else None
        except OSError as exc:
            raise ConfigError(f"cannot read the sink's checkpoints: {exc}") from exc
        except Exception as exc:
            if self._fs is None:
                raise
            # The remote store's client says what is wrong in its own exceptions, not
            # OSError (s3fs: botocore's NoCredentialsError, ParamValidationError for a bad
            # bucket name): the sink cannot be opened, which is no traceback.
            raise ConfigError(
                f"cannot open sink {self.target!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if raw is None:
            return {}
        # Only ever written as a JSON object, whole: anything else (an empty file
        # included) was damaged or replaced, and reading it as "no checkpoints" would
        # start every source again from its beginning, writing its records a second time.
        fix = "restore it, or remove it to start every source from its beginning"
        if not raw.strip():
            raise ConfigError(f"the sink's checkpoints file {where} is empty; {fix}")
        try:
            value = json.loads(raw)
        except RecursionError:  # (never written so: a damaged or replaced file)
            raise ConfigError(
                f"the sink's {CHECKPOINTS_NAME} is not JSON the sink wrote: nested too deeply "
                f"({where}; {fix})"
            ) from None
        except ValueError as exc:
            raise ConfigError(
                f"the sink's {CHECKPOINTS_NAME} is not JSON: {exc} ({where}; {fix})"
            ) from exc
        if not isinstance(value, dict):
            raise ConfigError(
                f"the sink's {CHECKPOINTS_NAME} holds a JSON {type(value).__name__}, not the "
                f"object of sources' checkpoints it is written as ({where}); {fix}"
            )
        return value

    def _write_local(self, part: str, name: str, data: bytes) -> str:
        folder = Path(self._root) / part
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / name
        # A flush that a crash cut short left its hidden temporary file here; the replay
        # writes the same name, so that file can go (only this name's, never another's).
        _remove_temporaries(folder, name)
        atomic_write(final, data, suffix=".tmp")
        fsync_dir(folder)
        return str(final)

    def _write_remote(self, part: str, name: str, data: bytes) -> str:
        key = f"{self._root}/{part}/{name}"
        # One put per object: object stores make it visible whole or not at all.
        self._fs.pipe_file(key, data)
        return str(self._fs.unstrip_protocol(key))

    def _open_spool(self) -> None:
        assert self._spool_path is not None
        self._spool_path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a link, nor anything but a regular file: the spool is read whole
        # and truncated after every flush, so a link planted at its name had emptied the
        # file it led to (and one to /dev/zero, or a FIFO, was read without end).
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self._spool_path, flags | getattr(os, "O_NONBLOCK", 0), 0o666)
        except OSError:
            if self._spool_path.is_symlink():
                raise ConfigError(
                    f"the sink's spool {self._spool_path} is a link; a spool must be a "
                    "plain file (remove the link)"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"the sink's spool {self._spool_path} is not a plain file; remove it")
        os.set_blocking(fd, True)
        spool = open(fd, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        try:
            _lock_exclusive(spool, self._spool_path)
        except BaseException:
            spool.close()
            raise
        self._spool = spool
        spool.seek(0)
        try:
            text = spool.read()
        except UnicodeDecodeError as exc:
            # Written as ASCII JSON lines only: bytes that are not text were damaged on
            # disk. Replayed, they could be read as records; skipped, accepted records
            # would be lost without a word.
            spool.close()
            self._spool = None
            raise ConfigError(
                f"the sink's spool {self._spool_path} is damaged (byte {exc.start:,} is not "
                "text); move it aside to start without it, after recovering the records it "
                "holds (JSON lines)"
            ) from None
        recovered, intent = _replay(text, self._checkpoints)
        spool.seek(0, os.SEEK_END)
        if recovered:
            self._buffer = recovered
            self._columns = dict.fromkeys(k for r in recovered for k in r)
            self._bytes = sum(len(json.dumps(r, default=_json_default)) + 1 for r in recovered)
            self._first_at = time.monotonic()
            self.recovered = len(recovered)
            # A flush that was under way is finished under its own name: its object, if
            # it was written, is replaced by the same records, not doubled.
            self._flush_locked(*(intent or (None, None)))
        else:
            self._save_checkpoints()
            self._reset_spool()


def _replay(text: str, checkpoints: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The accepted records of a spool, the last flush intent (or None), and the
    checkpoints of the accepted puts (merged into ``checkpoints``)."""
    records: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    lines = text.splitlines()
    marked = bool(lines) and lines[0] == _SPOOL_HEADER
    intent = None
    for line in lines:
        # A torn line belongs to a put that never returned: it was not accepted.
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            pending.append(item)
        elif isinstance(item, list) and item and item[0] == _PUT_MARK:
            records.extend(pending)
            pending = []
            if len(item) > 2 and isinstance(item[2], dict):
                checkpoints.update(item[2])
        elif isinstance(item, list) and len(item) == 3 and item[0] == _FLUSH_MARK:
            intent = (str(item[1]), str(item[2]))
    if not marked:
        # A spool written before puts had end marks: every whole line was accepted.
        records.extend(pending)
    # (With end marks, records after the last one are a torn put: not accepted.)
    return records, intent


def _remove_temporaries(folder: Path, name: str, *, probe: bool = False) -> None:
    """Remove the hidden temporary files :func:`~fraudlens._io.atomic_write` (or the
    write probe) leaves when a process dies mid-write: ``.<name>.<random>.tmp`` for
    ``name``, or ``.probe-<random>``. Visible objects are never touched."""
    pattern = f".{name}*" if probe else f".{name}.*.tmp"
    with contextlib.suppress(OSError):
        for stale in folder.glob(pattern):
            with contextlib.suppress(OSError):
                stale.unlink()


def _lock_exclusive(f: io.TextIOWrapper, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no cross-process guard
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise ConfigError(
            f"sink spool {path} is in use by another process; give each writer its own sink folder"
        ) from exc


def open_sink(
    target: str | os.PathLike[str],
    *,
    prefix: str = "scores",
    max_records: int = 5000,
    max_bytes: int = 5 * 2**20,
    max_seconds: float = 60.0,
    fmt: Format = "csv",
    spool: bool | str | os.PathLike[str] | None = None,
    timer: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    max_columns: int = MAX_COLUMNS,
) -> Sink:
    """Open a Firehose-like sink on a local folder or an fsspec URL such as ``s3://b/p``.

    Parameters
    ----------
    target
        Local folder, ``file://`` URL, or any fsspec URL (``s3://`` needs s3fs).
    prefix
        Object name prefix (``<prefix>-<yyyy-mm-dd-HH-MM-SS>-<uuid>.<fmt>``).
    max_records, max_bytes, max_seconds
        Flush when the buffer reaches this many records, about this many bytes, or this
        age (seconds since its first record).
    fmt
        ``"csv"`` (with a header) or ``"jsonl"``.
    spool
        Crash spool: default on for local folders (``<root>/.spool.jsonl``), off for
        remote targets; a path turns it on at that path.
    timer
        Flush on age from a background thread as well as on put.
    storage_options
        fsspec options for remote targets.
    max_columns
        Most columns of one CSV object: a record whose keys do not fit beside the
        buffered ones starts a new object (see :mod:`fraudlens.sinks`).

    Returns
    -------
    Sink
        Use it as a context manager, or call :meth:`Sink.close`.

    Examples
    --------
    >>> with open_sink("./sink", max_records=1000) as sink:  # doctest: +SKIP
    ...     sink.put({"transaction_id": "t1", "score": 0.93, "prediction": 1})
    """
    return Sink(
        target,
        prefix=prefix,
        max_records=max_records,
        max_bytes=max_bytes,
        max_seconds=max_seconds,
        fmt=fmt,
        spool=spool,
        timer=timer,
        storage_options=storage_options,
        max_columns=max_columns,
    )
