"""A small tmpfs to fill up, for tests of a full disk (ENOSPC) on real files.

:func:`small_disk` mounts a tmpfs of ``size`` bytes on a folder and always unmounts it;
the test is skipped where ``mount`` is not permitted (not root, no tmpfs, a container
without the capability). :func:`fill` takes its free space, leaving ``leave`` bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(folder: Path, size: int = 1 << 20) -> Iterator[Path]:
    """``folder`` (created) with a tmpfs of ``size`` bytes mounted on it."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if mount is None or (hasattr(os, "geteuid") and os.geteuid() != 0):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    res = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with one file, then give back ``leave`` bytes of it; returns the
    file (remove it to free the space)."""
    path = disk / "filler"
    block = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        try:
            while f.write(block):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    size = path.stat().st_size
    os.truncate(path, max(0, size - leave))
    return path
