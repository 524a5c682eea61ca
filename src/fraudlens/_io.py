"""Durable local file writes shared by the registry and the sinks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, *, suffix: str = "") -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The data go to a hidden temporary file in the same folder (``.<name>.<random><suffix>``),
    are fsynced, and the file is then renamed over ``path``; on any failure the temporary
    file is removed and the error re-raised.

    Parameters
    ----------
    path
        Destination file; its folder must exist.
    data
        Text (written in text mode, default encoding) or bytes (written as is).
    suffix
        Suffix of the temporary file name.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
