"""Root conftest: its folder goes on ``sys.path``, so tests can import ``_services``.

The ``store`` fixture: a fresh, empty store on each database (SQLite in the test's
folder; PostgreSQL and MariaDB, marked ``services``), dropped afterwards. A module may
define its own ``store`` instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _services import DATABASES, fresh_store  # type: ignore[import-not-found]


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = fresh_store(request.param, tmp_path)
    yield s
    s.drop_all()
    s.close()


@pytest.fixture
def full_disk_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on its own 8 MiB tmpfs (see ``_disk``; skipped where it cannot be
    mounted), unmounted afterwards. Fill it with ``_disk.fill``."""
    from _disk import small_disk  # type: ignore[import-not-found]

    with small_disk(tmp_path / "disk", 8 << 20) as disk:
        yield disk
