"""Durable local file writes shared by the registry, the sinks and the CLI's outputs."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def resolve(path: Path) -> Path:
    """``path.resolve()``, with a link that loops (``ln -s x x``) an OSError (ELOOP) naming
    ``path``, as for any other path that cannot be used: Python 3.11 and 3.12 raise a
    RuntimeError ("Symlink loop from ..."), which had ended commands in a traceback."""
    try:
        return path.resolve()
    except RuntimeError:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None


def missing(path: Path, words: str) -> str:
    """What is wrong with ``path``, which does not exist as far as a program can tell:
    ``words`` (``"file not found"``, ``"no such file"``), unless it is a link, whose
    target is named: a link that loops (``ln -s x x``) or leads nowhere had been "file
    not found" though ``ls`` lists it."""
    if not path.is_symlink():
        return words
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a link that loops (too many levels of symbolic links)"
    try:
        target = os.readlink(path)
    except OSError:
        return words
    return f"is a link to {target}, which does not exist"


def atomic_write(path: Path, data: str | bytes, *, suffix: str = "") -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The data go to a hidden temporary file in the same folder (``.<name>.<random><suffix>``),
    are fsynced, and the file is then renamed over ``path``; on any failure the temporary
    file is removed and the error re-raised (an OSError then names ``path``: a full
    disk's error names no file, and the temporary file's name is gone).

    Parameters
    ----------
    path
        Destination file; its folder must exist.
    data
        Text (written in text mode, default encoding) or bytes (written as is).
    suffix
        Suffix of the temporary file name.

    The file keeps the mode of the one it replaces; a new one gets the mode ``open``
    would give it (not the temporary file's 0600, which other users, such as a service
    reading a registry or a job reading the sink's objects, could not read).
    """
    try:
        mode = path.stat().st_mode & 0o777 if path.is_file() else _new_file_mode()
        _replace(
            path, lambda f: f.write(data), binary=isinstance(data, bytes), suffix=suffix, mode=mode
        )
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _replace(
    path: Path,
    write: Callable[[IO[Any]], object],
    *,
    binary: bool,
    suffix: str,
    mode: int | None = None,
    encoding: str | None = None,
    newline: str | None = None,
) -> None:
    """``write`` a hidden temporary file beside ``path`` (chmod ``mode`` first when
    given), fsync it and rename it over ``path``; on any failure remove it and re-raise."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        f: IO[Any] = (
            os.fdopen(fd, "wb")
            if binary
            else os.fdopen(fd, "w", encoding=encoding, newline=newline)
        )
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def probe_write(folder: Path, size: int) -> None:
    """Write ``size`` bytes to a hidden file in ``folder`` (``.probe-<random>``), fsync
    and remove it: OSError when the folder cannot take them now (full, over quota,
    read-only, gone). A full disk still lets an empty file be made, so a probe of a write
    that failed for room writes as much as that write needed."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe-")
    try:
        chunk = b"\0" * min(size, 1 << 20)
        left = size
        while left > 0:
            left -= os.write(fd, chunk[:left])
        if size:
            os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(tmp)


def fsync_dir(folder: Path) -> None:
    """fsync a folder, which makes a rename in it durable (quietly skipped where a
    folder cannot be opened or fsynced)."""
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


def fsync_files(folder: Path) -> None:
    """fsync every file of ``folder`` and then the folder: before the folder is renamed
    into place, so a crash of the machine cannot leave it visible with empty files."""
    for p in folder.iterdir():
        if p.is_file() and not p.is_symlink():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the process's umask."""
    return 0o666 & ~_umask()


def new_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 less the process's umask (a folder
    made by ``tempfile.mkdtemp`` is 0700)."""
    return 0o777 & ~_umask()


def write_csv(frame: Any, path: Path) -> None:
    """Write a DataFrame to ``path`` as CSV (no index), whole or not at all.

    A new file, or a regular file it replaces, is written beside ``path`` and renamed
    over it once complete and fsynced (:func:`atomic_write`'s way, streamed): a crash or
    a full disk leaves the old file, never part of the new one. Anything else that exists
    there (``/dev/stdout``, a pipe, a folder) is written to directly. An OSError names
    ``path``.
    """
    _write_text(path, lambda f: frame.to_csv(f, index=False))


def write_text_chunks(chunks: Iterable[str], path: Path) -> None:
    """Write ``chunks`` of text (UTF-8, line ends as given) to ``path``, one after the
    other, whole or not at all, as :func:`write_csv` writes a table."""

    def write(f: IO[Any]) -> None:
        for chunk in chunks:
            f.write(chunk)

    _write_text(path, write)


def write_binary(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` with a binary file (Parquet, a compressed CSV) that becomes
    ``path`` whole or not at all, as :func:`write_csv` writes a table."""
    _write_text(path, write, binary=True)


def _write_text(path: Path, write: Callable[[IO[Any]], object], *, binary: bool = False) -> None:
    """:func:`write_csv`'s way of writing ``path`` (UTF-8, newlines as written; or bytes)."""
    try:
        if path.exists() and not path.is_file():
            if binary:
                with open(path, "wb") as f:
                    write(f)
            else:
                with open(path, "w", encoding="utf-8", newline="") as f:
                    write(f)
            return
        # A link's file is replaced, not the link (writing in place went through it).
        real = resolve(path) if path.is_symlink() else path
        _replace(
            real,
            write,
            binary=binary,
            suffix=".tmp",
            # the mode a file written in place gets (mkstemp's is 0600)
            mode=real.stat().st_mode & 0o777 if real.exists() else _new_file_mode(),
            encoding=None if binary else "utf-8",
            newline=None if binary else "",
        )
    except OSError as exc:
        # (not the temporary file's name; a full disk's error has none)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
