"""What the SQLite risk-event store and the SQLite queue share.

Both take ``?busy_timeout=SECONDS`` on their URL: how long a write waits for another
process's lock before it fails. :func:`busy_timeout_ms` reads and checks it once for both.
Both follow their file when it is deleted or replaced under an open connection:
:func:`file_id` tells which file is at a path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from fraudlens._echo import hide_password
from fraudlens.errors import ConfigError

__all__ = ["MAX_BUSY_TIMEOUT_SECONDS", "busy_timeout_ms", "file_id"]

#: Longest busy timeout, seconds (a day).
MAX_BUSY_TIMEOUT_SECONDS = 86_400


def busy_timeout_ms(value: Any, url: str, what: str) -> int:
    """Milliseconds of a busy timeout given in seconds (a URL's ``busy_timeout`` query
    value, the last if repeated, or a number): above 0 and at most a day, else a
    ConfigError naming ``what`` (``database URL``, ``queue URL``) and the URL, without
    its password."""
    raw = value[-1] if isinstance(value, (tuple, list)) else value
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (0 < seconds <= MAX_BUSY_TIMEOUT_SECONDS):  # NaN fails too
        raise ConfigError(
            f"{what} {hide_password(url)!r}: busy_timeout={raw!r} is not a number of "
            f"seconds above 0 and at most {MAX_BUSY_TIMEOUT_SECONDS} (how long a write "
            "waits for another process's lock)"
        )
    return max(1, round(seconds * 1000))


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``: which file it is (None: no file there).
    Other OSErrors (a folder that may not be searched) are raised."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
