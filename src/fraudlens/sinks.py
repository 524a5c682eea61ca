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
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from fraudlens._io import atomic_write
from fraudlens.errors import ConfigError

__all__ = ["SPOOL_NAME", "Sink", "open_sink"]

#: Name of the spool file kept in a local sink's root folder.
SPOOL_NAME = ".spool.jsonl"

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


class Sink:
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
    ) -> None:
        if fmt not in ("csv", "jsonl"):
            raise ConfigError(f"sink format must be 'csv' or 'jsonl', not {fmt!r}")
        if max_records < 1 or max_bytes < 1 or max_seconds <= 0:
            raise ConfigError("sink limits max_records, max_bytes and max_seconds must be > 0")
        if "/" in prefix or not prefix:
            raise ConfigError(f"sink prefix must be a non-empty name without '/', not {prefix!r}")
        self.target = str(target)
        self.prefix = prefix
        self.max_records = int(max_records)
        self.max_bytes = int(max_bytes)
        self.max_seconds = float(max_seconds)
        self.fmt: Format = fmt
        #: Paths (local) or URLs (remote) of every object this sink wrote, oldest first.
        self.written: list[str] = []
        #: Records written out in objects so far.
        self.records_written = 0
        #: Records recovered from the spool when the sink was opened.
        self.recovered = 0

        self._lock = threading.RLock()
        self._buffer: list[dict[str, Any]] = []
        self._bytes = 0
        self._first_at: float | None = None
        self._closed = False

        self._fs: Any = None
        if _is_local(self.target):
            local = (
                self.target[len("file://") :] if self.target.startswith("file://") else self.target
            )
            self._root = str(Path(local).expanduser().resolve())
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
            self._spool_path = Path(spool).expanduser().resolve()
        self._spool: io.TextIOWrapper | None = None
        if self._spool_path is not None:
            self._open_spool()

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

    def put_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Accept records; flush whenever a threshold is reached.

        With a spool, the records are on disk (fsynced) when this returns. A large batch
        is split so that no object holds more than ``max_records`` records.
        """
        batch = [dict(r) for r in records]
        if not batch:
            return
        lines = [json.dumps(r, default=_json_default, separators=(",", ":")) for r in batch]
        with self._lock:
            if self._closed:
                raise ConfigError("sink is closed")
            start = 0
            # Fill the buffer up to max_records at a time, so no object holds more.
            while start < len(batch):
                stop = start + max(1, self.max_records - len(self._buffer))
                chunk = lines[start:stop]
                if self._spool is not None:
                    self._spool.write("".join(line + "\n" for line in chunk))
                    self._spool.flush()
                    os.fsync(self._spool.fileno())
                if self._first_at is None:
                    self._first_at = time.monotonic()
                self._buffer.extend(batch[start:stop])
                # The JSON form is a close stand-in for the written size in either format.
                self._bytes += sum(len(line) + 1 for line in chunk)
                if self._due():
                    self._flush_locked()
                start = stop

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
            finally:
                self._closed = True
                if self._spool is not None:
                    self._spool.close()
                    self._spool = None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sink({self.target!r}, prefix={self.prefix!r}, fmt={self.fmt!r})"

    # -- internals ---------------------------------------------------------------------
    def _due(self) -> bool:
        if not self._buffer:
            return False
        if len(self._buffer) >= self.max_records or self._bytes >= self.max_bytes:
            return True
        return self._first_at is not None and time.monotonic() - self._first_at >= self.max_seconds

    def _tick(self) -> None:
        period = min(1.0, self.max_seconds / 4)
        while not self._stop.wait(period):
            with self._lock:
                if self._closed:
                    return
                if self._due():
                    try:
                        self._flush_locked()
                    except Exception:
                        import logging

                        logging.getLogger(__name__).exception("background sink flush failed")

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

    def _flush_locked(self) -> str | None:
        if not self._buffer:
            return None
        records = self._buffer
        data = self._encode(records)
        now = datetime.now(UTC)
        part = now.strftime("%Y/%m/%d/%H")
        name = f"{self.prefix}-{now.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}.{self.fmt}"
        if self._fs is None:
            where = self._write_local(part, name, data)
        else:
            where = self._write_remote(part, name, data)
        # Only now is the buffer safe to forget.
        self._buffer = []
        self._bytes = 0
        self._first_at = None
        self.written.append(where)
        self.records_written += len(records)
        if self._spool is not None:
            self._spool.seek(0)
            self._spool.truncate()
            self._spool.flush()
            os.fsync(self._spool.fileno())
        return where

    def _write_local(self, part: str, name: str, data: bytes) -> str:
        folder = Path(self._root) / part
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / name
        atomic_write(final, data, suffix=".tmp")
        _fsync_dir(folder)
        return str(final)

    def _write_remote(self, part: str, name: str, data: bytes) -> str:
        key = f"{self._root}/{part}/{name}" if self._root else f"{part}/{name}"
        # One put per object: object stores make it visible whole or not at all.
        self._fs.pipe_file(key, data)
        return str(self._fs.unstrip_protocol(key))

    def _open_spool(self) -> None:
        assert self._spool_path is not None
        self._spool_path.parent.mkdir(parents=True, exist_ok=True)
        spool = open(self._spool_path, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        try:
            _lock_exclusive(spool, self._spool_path)
        except BaseException:
            spool.close()
            raise
        self._spool = spool
        spool.seek(0)
        recovered: list[dict[str, Any]] = []
        for line in spool.read().splitlines():
            # A torn last line is a put that never returned: it was not accepted.
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                recovered.append(rec)
        spool.seek(0, os.SEEK_END)
        if recovered:
            self._buffer = recovered
            self._bytes = sum(len(json.dumps(r, default=_json_default)) + 1 for r in recovered)
            self._first_at = time.monotonic()
            self.recovered = len(recovered)
            self._flush_locked()
        elif spool.tell():
            spool.seek(0)
            spool.truncate()


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    )
