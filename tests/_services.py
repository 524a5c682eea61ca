"""Shared test helpers: whether services are mandatory, and the real database servers.

Tests that need PostgreSQL, MariaDB or Redis use the real servers. When a server cannot be
reached the test is skipped, unless the environment variable ``CI`` is set (to anything but
``""``, ``0``, ``false`` or ``no``): then it fails, because CI must exercise the real parts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

#: Database URLs of the machine's servers (override with FRAUDLENS_TEST_*_URL).
POSTGRES_URL = os.environ.get(
    "FRAUDLENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "FRAUDLENS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


#: The three databases a store test runs on (the servers' cases marked ``services``), as
#: a fixture's ``params``.
DATABASES = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.services),
    pytest.param("mariadb", marks=pytest.mark.services),
]


def in_ci() -> bool:
    """True when the environment variable CI asks for services to be mandatory."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so a missing service is a failure)", pytrace=False)
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


def fresh_store(kind: str, tmp_path: Any) -> Any:
    """An empty, migrated store: a SQLite file in ``tmp_path``, or the PostgreSQL or
    MariaDB server (its fraudlens tables dropped first); skip or fail if unreachable."""
    from fraudlens.errors import StoreError
    from fraudlens.store import open_store

    url = {
        "sqlite": f"sqlite:///{tmp_path / 'store.db'}",
        "postgresql": POSTGRES_URL,
        "mariadb": MARIADB_URL,
    }[kind]
    store = open_store(url)
    try:
        store.drop_all()
    except StoreError as exc:
        unavailable(f"{kind} is unreachable: {exc}")
    store.upgrade()
    return store


@contextmanager
def private_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL to a fresh SQLite file in ``tmp_path``, or to a schema (PostgreSQL) or
    database (MariaDB) of its own on the server, dropped afterwards; skip or fail if the
    server is unreachable. Tests on a private one may run beside others on the server."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'private.db'}"
        return
    import uuid

    import sqlalchemy as sa

    name = f"fl_test_{uuid.uuid4().hex[:12]}"
    base = sa.engine.make_url(POSTGRES_URL if kind == "postgresql" else MARIADB_URL)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    if kind == "postgresql":
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
        url = base.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        create, drop = f"CREATE DATABASE `{name}`", f"DROP DATABASE IF EXISTS `{name}`"
        url = base.set(database=name)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(create))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"{kind} is unreachable at {base.render_as_string()}: {exc.orig}")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str) -> ModuleType:
    """A script of ``bench/`` (``name`` without ``.py``) imported as a module, registered in
    ``sys.modules`` so that its dataclasses and pickles resolve."""
    spec = importlib.util.spec_from_file_location(f"fraudlens_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def route_table_app(tag: str) -> Any:
    """An app built only to read its route table at collection time: nothing is opened
    (its store, queue and models would live under the temporary folder ``tag``)."""
    import tempfile

    from fraudlens.config import Settings
    from fraudlens.service import create_app

    root = Path(tempfile.gettempdir()) / tag
    return create_app(
        Settings(
            models_dir=root / "models",
            database_url=f"sqlite:///{root / 'never-opened.db'}",
            queue_url=f"sqlite:///{root / 'never-opened-q.db'}",
        ),
        preload=False,
    )


def risk_event(account: str, hours: int) -> dict[str, Any]:
    """A risk event of ``account`` whose 24 h window ends ``hours`` after 2024-03-01."""
    from datetime import UTC, datetime, timedelta

    end = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=hours)
    return {
        "account_id": account,
        "score": 0.97,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "window_start": end - timedelta(hours=24),
        "window_end": end,
        "details": {"trades": []},
    }


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that takes connections and never says a word, as a frozen
    server does (its kernel still accepts); yields the port."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def take() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=take, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
        for c in held:
            c.close()


def remove_sqlite(path: Path) -> None:
    """Delete a SQLite file with its -wal and -shm."""
    for f in path.parent.glob(path.name + "*"):
        f.unlink()


def remove_sqlite_at_first_event_insert(store: Any, path: Path) -> Any:
    """Delete ``store``'s SQLite file ``path`` just before the first INSERT into its
    risk events runs (after the write's connection was checked, before its commit);
    return a ``threading.Event`` set once it was deleted."""
    import threading

    import sqlalchemy as sa

    deleted = threading.Event()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not deleted.is_set() and statement.lstrip().upper().startswith("INSERT INTO RISK_"):
            remove_sqlite(path)
            deleted.set()

    sa.event.listen(store.engine, "before_cursor_execute", on_execute)
    return deleted


def error_within(call: Any, seconds: float) -> BaseException | None:
    """Run ``call()`` in a thread and return what it raised (None if nothing); fails the
    test if it is still running after ``seconds`` (the thread is left behind, a daemon)."""
    import threading

    said: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            said.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds:g} s"
    return said[0] if said else None


@contextmanager
def relayed_database(kind: str, tmp_path: Path) -> Iterator[tuple[str, FailoverProxy]]:
    """A private database (see :func:`private_database`) with the schema and one risk
    event, reached through a :class:`FailoverProxy`: yields the URL through the relay,
    and the relay."""
    import sqlalchemy as sa

    from fraudlens.store import open_store

    with private_database(kind, tmp_path) as url:
        with open_store(url) as direct:
            direct.upgrade()
            direct.add_risk_events([risk_event("acct-1", 1)])
        target = sa.engine.make_url(url)
        with FailoverProxy(target.host or "127.0.0.1", target.port or 0) as proxy:
            relayed = target.set(host="127.0.0.1", port=proxy.port)
            yield relayed.render_as_string(hide_password=False), proxy


class FailoverProxy:
    """A TCP relay on 127.0.0.1 to a real server, whose :meth:`fail_over` leaves every
    connection open at that moment half-open: the server's end is closed (its session
    ends and its locks go, as when its host vanished), while the client's end stays open
    and silent for ever (what the client sends is read and dropped, so its kernel sees it
    acknowledged). Connections made afterwards are relayed as before: the server "behind
    the same name" a client reconnects to. Use as a context manager; :attr:`port` is the
    port to connect to."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self._target = (host, port)
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._srv.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[dict[str, Any]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client = self._srv.accept()[0]
                server = socket.create_connection(self._target, timeout=10)
                server.settimeout(None)
            except OSError:
                return
            pair = {"client": client, "server": server, "dead": False}
            with self._lock:
                self._pairs.append(pair)
            for src, dst in (("client", "server"), ("server", "client")):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    @staticmethod
    def _pump(pair: dict[str, Any], src: str, dst: str) -> None:
        while True:
            try:
                data = pair[src].recv(65536)
            except OSError:
                return
            if not data:
                if not pair["dead"]:
                    pair[dst].close()
                return
            if pair["dead"]:
                continue  # read and dropped: nobody answers
            try:
                pair[dst].sendall(data)
            except OSError:
                return

    def fail_over(self) -> int:
        """Make every open connection half-open; return how many there were."""
        with self._lock:
            live = [p for p in self._pairs if not p["dead"]]
            for p in live:
                p["dead"] = True
                _close(p["server"])
        return len(live)

    def __enter__(self) -> FailoverProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._srv.close()
        with self._lock:
            for p in self._pairs:
                _close(p["client"])
                _close(p["server"])


def _close(sock: Any) -> None:
    """Shut a socket down (which wakes a thread blocked reading it), then close it."""
    import socket

    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
