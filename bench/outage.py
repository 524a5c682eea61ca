"""Chaos run: a worker drains account checks through a store or queue outage, then we count.

    python bench/outage.py --store postgresql --outage 300        # Redis + private PostgreSQL
    python bench/outage.py --store sqlite --outage 300            # SQLite queue + SQLite store
    python bench/outage.py --store mariadb --outage 60            # Redis + private MariaDB
    python bench/outage.py --store postgresql --down queue        # private Redis (AOF) stopped
    python bench/outage.py --store postgresql --down queue-volatile   # ... without persistence
    python bench/outage.py --processor --down queue               # cards process from Redis

Every server that is stopped is a private one, on a free port, in a temporary folder; the
machine's own servers are never touched. ``--stop kill`` stops them with SIGKILL instead of
a clean shutdown.

What happens:

1. ``--checks`` simulated accounts of every default kind (beneficiaries and
   internalising market makers, whose trades mirror other accounts' trades, included;
   one check each) are loaded into the store, and a feature detector trained on other
   simulated accounts is put in a fresh registry. The accounts batch scoring flags
   above 0.9 (:func:`fraudlens.scoring.score_market` on the whole window, read against
   the whole input's book) are the expected risk events. A score from the store equals
   the batch score whichever accounts share a worker batch, so the events must be
   exactly these, however the outage reshuffles the batches.
2. A real ``fraudlens worker`` process starts on the queue (Redis Streams on the machine's
   server with ``--store postgresql``, an SQLite queue file with ``--store sqlite``).
3. Once it has worked ``--outage-at`` checks, the store goes away for ``--outage``
   seconds, for real:

   - PostgreSQL: a private server (initdb/pg_ctl as the ``postgres`` user, on a free port,
     in a temporary folder; the machine's own server is never touched) is stopped with
     ``pg_ctl stop -m fast``, which drops every connection, and started again afterwards;
   - SQLite: another process holds the store file's write lock (``BEGIN EXCLUSIVE``), so
     every write fails with "database is locked".

   - MariaDB: a private server (``mariadb-install-db`` and ``mariadbd --no-defaults``) is
     stopped with SIGTERM and started again;
   - the queue (``--down queue``): a private ``redis-server`` with an append-only file
     is stopped and started again; the stream, its consumer group and its pending
     entries come back with it;
   - ``--down queue-volatile``: a private ``redis-server`` without persistence (``--save
     "" --appendonly no``): it comes back empty, the messages it held are lost by Redis
     itself, and every check is sent again once it is back (a producer re-sending what
     was not confirmed); the worker must recreate its consumer group by itself and the
     events must still be exactly the expected ones.

   Meanwhile ``/healthz`` of the worker is polled (it should answer 503).
4. When the worker has drained the queue and exited, the script counts: messages left
   in the queue, dead letters, risk events per account against the expected set (lost
   = expected and missing; duplicated = more than one row per account; unexpected = an
   event of an account not expected).

Prints a table and, with ``--json``, the figures as JSON. Exit status 1 if anything was
lost, duplicated or dead-lettered, or ``/healthz`` never answered 503.
``tests/test_outage.py`` runs the same scenarios with short outages.

``--processor`` runs ``fraudlens cards process --source queue:redis://...`` instead: card
records (feature rows of simulated transactions) are queued on a private Redis, which is
stopped mid-run; every record must be in the sink exactly once (without persistence, the
re-sent records the sink had already accepted come twice: only lost ones count).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REDIS_URL = os.environ.get("FRAUDLENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Stores a scenario can run on.
STORES = ("postgresql", "mariadb", "sqlite")
#: What can go away: the store, the queue (Redis with an append-only file), or a Redis
#: without persistence.
DOWN = ("store", "queue", "queue-volatile")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------- private PostgreSQL


class PrivatePostgres:
    """A PostgreSQL server of our own: initdb in a temporary folder, on a free port.

    Runs as the ``postgres`` user when we are root (initdb refuses root). Stop and start
    it at will: nobody else uses it.
    """

    def __init__(self, root: Path | None = None) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        found = shutil.which("pg_ctl")
        if bins:
            self.bin = Path(bins[-1]).parent
        elif found:
            self.bin = Path(found).parent
        else:
            raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) not found")
        # Its own folder under the system temporary folder: the postgres user must be able
        # to reach it, which a caller's private (0700) temporary folder would not allow.
        self.root = (
            Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="fraudlens-pg-"))
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip()}\n{log}")

    def init(self) -> None:
        """Create the cluster (trust authentication, loopback only)."""
        for d in (self.data, self.sock):
            d.mkdir(exist_ok=True)
        if self._as_postgres:
            import pwd

            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.data, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.data.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back and drop every connection)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _pids(self) -> list[int]:
        """The postmaster and its children (the backends and helpers)."""
        post = int((self.data / "postmaster.pid").read_text().split()[0])
        kids = subprocess.run(
            ["pgrep", "-P", str(post)], capture_output=True, text=True, timeout=30
        ).stdout.split()
        return [post, *(int(k) for k in kids)]

    def freeze(self) -> None:
        """Stop every server process with SIGSTOP: connections stay open and the kernel
        still acknowledges, but nothing answers (a hung server, or a host gone without
        closing its connections)."""
        self._frozen = self._pids()
        for pid in self._frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let the processes :meth:`freeze` stopped run again."""
        for pid in getattr(self, "_frozen", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def cleanup(self) -> None:
        """Stop (if running) and delete the folder."""
        self.thaw()
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------- private Redis, MariaDB


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _PrivateServer:
    """What the private Redis and MariaDB servers share: their process, log and folder."""

    root: Path
    log: Path
    proc: subprocess.Popen[bytes] | None
    #: Seconds a stopped server gets to exit before it is killed.
    stop_timeout: float = 60.0

    def stop(self, mode: str = "term") -> None:
        """Stop the server: ``term`` (SIGTERM, a clean shutdown) or ``kill`` (SIGKILL)."""
        if self.proc is None:
            return
        if mode == "kill":
            self.proc.kill()
        else:
            self.proc.terminate()
        _wait_exit(self.proc, self.stop_timeout)
        self.proc = None

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def cleanup(self) -> None:
        """Stop (if running) and delete the folder."""
        with contextlib.suppress(Exception):
            self.stop("kill")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis(_PrivateServer):
    """A Redis server of our own, on a free port, its files in a temporary folder.

    ``persistent`` (the default) turns the append-only file on (``--appendonly yes``,
    fsynced every second), so a stopped and restarted server comes back with its streams,
    consumer groups and pending entries. Without it (``--save "" --appendonly no``) a
    restart loses everything the server held, as a cache-configured Redis does. Stopped
    with ``term`` it flushes the append-only file; with ``kill`` up to a second of writes
    may not be on disk.
    """

    def __init__(self, *, persistent: bool = True, root: Path | None = None) -> None:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError("redis-server not found")
        self.bin = found
        self.persistent = persistent
        self.root = (
            Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="fraudlens-redis-"))
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Connection URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers PING (and has loaded its data)."""
        import redis

        cmd = [
            self.bin,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.root),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--logfile", str(self.log),
            "--daemonize", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self._log_tail()}")
                try:
                    if client.ping():  # LOADING raises until the data is loaded
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer in {timeout} s")
                time.sleep(0.05)
        finally:
            client.close()


class PrivateMariaDB(_PrivateServer):
    """A MariaDB server of our own: ``mariadb-install-db`` in a temporary folder, started
    with ``mariadbd --no-defaults`` on a free port (root without a password, loopback
    only). Stop and start it at will: nobody else uses it. Stopped with ``term`` every
    connection is dropped; with ``kill`` it runs crash recovery at the next start.
    """

    stop_timeout = 120.0

    def __init__(self, root: Path | None = None) -> None:
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        server = (
            shutil.which("mariadbd")
            or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
            or shutil.which("mysqld", path="/usr/sbin:/usr/local/sbin")
        )
        if install is None or server is None:
            raise RuntimeError("MariaDB server binaries (mariadb-install-db, mariadbd) not found")
        self.install, self.server = install, server
        self.root = (
            Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="fraudlens-maria-"))
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``fraudlens`` database."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/fraudlens"

    def init(self) -> None:
        """Create the data folder and the ``fraudlens`` database."""
        cmd = [
            self.install,
            "--no-defaults",
            f"--datadir={self.data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if self._as_root:
            cmd.append("--user=root")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(done.stderr or done.stdout)[-2000:]}")
        self.start()
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            conn.cursor().execute("CREATE DATABASE IF NOT EXISTS fraudlens")
        finally:
            conn.close()

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until it accepts connections."""
        import pymysql

        cmd = [
            self.server,
            "--no-defaults",
            f"--datadir={self.data}",
            f"--socket={self.sock}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.root / 'server.pid'}",
            f"--log-error={self.log}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=128M",
        ]
        if self._as_root:
            cmd.append("--user=root")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self._log_tail()}")
            try:
                pymysql.connect(
                    host="127.0.0.1", port=self.port, user="root", connect_timeout=1
                ).close()
                return
            except pymysql.MySQLError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not accept connections in {timeout} s")
            time.sleep(0.1)


# ----------------------------------------------------------------------------- scenario


@dataclass
class OutageResult:
    """What one outage run measured."""

    store: str
    checks: int
    outage_s: float
    expected_events: int
    down: str = "store"
    queue: str = ""
    stop_mode: str = "term"
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    left_in_queue: int = 0
    dead_letters: int = 0
    worker_exit: int | None = None
    worker_summary: str = ""
    worker_output: str = field(default="", repr=False)
    worker_dead_lettered: int | None = None
    worker_outages: int | None = None
    worker_paused_s: float | None = None
    worker_released: int | None = None
    healthz_503_seen: bool = False
    healthz_reason: str = ""
    done_before_outage: int = 0
    depth_before_outage: int = 0
    depth_after_restart: int | None = None
    resent: int = 0
    seconds: float = 0.0
    lost_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Exactly the expected events (nothing lost, duplicated or unexpected), nothing
        left or dead-lettered, the outage seen on ``/healthz``."""
        return (
            self.worker_exit == 0
            and self.lost == self.duplicated == self.unexpected == 0
            and self.events == self.expected_events
            and self.left_in_queue == 0
            and self.dead_letters == 0
            and self.healthz_503_seen
        )

    @property
    def setup(self) -> str:
        """``queue + store`` in words, and what went down."""
        store = {"postgresql": "PostgreSQL", "mariadb": "MariaDB", "sqlite": "SQLite"}
        what = {
            "store": "store stopped" if self.store != "sqlite" else "store locked",
            "queue": "Redis stopped (AOF)",
            "queue-volatile": "Redis stopped (no persistence), checks re-sent",
        }
        # SQLite is locked, not stopped: no signal involved
        killed = ", SIGKILL" if self.stop_mode == "kill" and self.queue != "SQLite" else ""
        return (
            f"{self.queue} + {store.get(self.store, self.store)}: "
            f"{what.get(self.down, self.down)}{killed}"
        )


def _expected(market: Any, models: Path) -> set[str]:
    """The accounts batch scoring flags (the whole window, read against its book)."""
    from fraudlens.market.data import window
    from fraudlens.registry import Registry
    from fraudlens.scoring import EVENT_THRESHOLD, score_market

    det = Registry(models).load("market")
    return set(score_market(det, window(market), threshold=EVENT_THRESHOLD).flagged_ids())


def _models(root: Path) -> Path:
    from fraudlens.market.data import window
    from fraudlens.market.detectors import FeatureDetector
    from fraudlens.market.simulate import simulate
    from fraudlens.registry import Registry

    models = root / "models"
    train = simulate(1500, seed=812, days=3)
    Registry(models).save(FeatureDetector(n_estimators=60).fit(window(train)))
    return models


def _scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


def _start_cli(
    cmd: list[str], name: str
) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """Start a ``fraudlens`` command; its output lines are gathered by a thread."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(proc.stdout or []), daemon=True, name=f"{name}-output"
    )
    reader.start()
    return proc, output, reader


def _wait_until_done(
    proc: subprocess.Popen[str],
    output: list[str],
    queue: Any,
    total: int,
    done: int,
    name: str,
    *,
    poll: float,
) -> None:
    """Wait until ``done`` of the ``total`` messages sent have left the queue (600 s at
    most); the command's output if it exits first."""
    deadline = time.monotonic() + 600
    while total - queue.depth() < done:
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} exited early:\n" + "".join(output)[-3000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {name} made no progress in 600 s")
        time.sleep(poll)


def _watch_health(port: int, result: Any, until: float) -> None:
    """Poll ``/healthz`` until ``until``; the first 503 is kept on ``result``."""
    while time.monotonic() < until:
        status, body = _scrape(port, "/healthz")
        if status == 503 and not result.healthz_503_seen:
            result.healthz_503_seen = True
            result.healthz_reason = body[:300]
        time.sleep(0.5)


@contextlib.contextmanager
def _sqlite_locked(path: Path) -> Iterator[None]:
    """Hold the SQLite file's write lock (another process's long write transaction)."""
    holder = sqlite3.connect(path, isolation_level=None, timeout=60)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def run_outage(
    store_kind: str,
    *,
    down: str = "store",
    checks: int = 10_000,
    outage: float = 300.0,
    outage_at: int = 2_000,
    batch_size: int = 100,
    seed: int = 7,
    stop_mode: str = "term",
    sqlite_timeout: float | None = None,
    visibility_timeout: float | None = None,
    workdir: Path | None = None,
    log: Any = print,
) -> OutageResult:
    """Run the scenario once and return what was counted (see the module docstring).

    Parameters
    ----------
    store_kind
        ``postgresql`` (a private PostgreSQL), ``mariadb`` (a private MariaDB) or
        ``sqlite`` (a file).
    down
        What goes away: ``store`` (the store is stopped, or the SQLite file locked; the
        queue is Redis on the machine's server for the server stores, an SQLite file for
        ``sqlite``), ``queue`` (a private Redis with an append-only file is stopped and
        started again) or ``queue-volatile`` (a private Redis without persistence: its
        restart loses the stream, so every check is sent again once it is back).
    checks
        Accounts simulated and checked (one check each).
    outage
        Seconds the store or queue stays unavailable.
    outage_at
        Checks worked before the outage starts.
    stop_mode
        How a server is stopped: ``term`` (a clean shutdown; PostgreSQL's ``fast``) or
        ``kill`` (SIGKILL; PostgreSQL's ``immediate``); for PostgreSQL also ``freeze``
        (SIGSTOP to every server process for the outage, then SIGCONT: the worker's
        call waits without an error until it has run past the lease, when the worker
        cuts its connections and pauses as for any outage).
    visibility_timeout
        The worker's lease in seconds (``--visibility-timeout``); None: its default.
    sqlite_timeout
        The SQLite store's busy timeout in seconds (``?busy_timeout=`` on its URL); None: the
        store's default (30 s). The lock must be held longer than it for writes to fail.
    """
    if stop_mode == "freeze" and (store_kind != "postgresql" or down != "store"):
        raise ValueError("stop_mode='freeze' is for a PostgreSQL store only")
    from fraudlens.checks import check_message
    from fraudlens.market.simulate import simulate
    from fraudlens.queues import RedisQueue, open_queue
    from fraudlens.store import open_store

    if down not in DOWN:
        raise ValueError(f"unknown outage {down!r}: one of {', '.join(DOWN)}")
    if store_kind not in STORES:
        raise ValueError(f"unknown store {store_kind!r}: one of {', '.join(STORES)}")
    t_start = time.monotonic()
    root = Path(workdir or tempfile.mkdtemp(prefix="fraudlens-outage-"))
    root.mkdir(parents=True, exist_ok=True)
    pg: PrivatePostgres | None = None
    maria: PrivateMariaDB | None = None
    rds: PrivateRedis | None = None
    proc: subprocess.Popen[str] | None = None
    queue = None
    try:
        log(f"simulating {checks:,} accounts and training a model...")
        market = simulate(checks, seed=seed, days=3)
        models = _models(root)
        expected = _expected(market, models)
        if store_kind == "postgresql":
            pg = PrivatePostgres()
            pg.init()
            pg.start()
            db_url = pg.url
        elif store_kind == "mariadb":
            maria = PrivateMariaDB(root / "mariadb")
            maria.init()
            db_url = maria.url
        else:
            db_url = f"sqlite:///{root / 'store.db'}"
            if sqlite_timeout is not None:
                db_url += f"?busy_timeout={sqlite_timeout:g}"
        stream = f"fraudlens-outage-{uuid.uuid4().hex}"
        if down != "store":
            rds = PrivateRedis(persistent=down == "queue", root=root / "redis")
            rds.start()
            queue_url = f"{rds.url}?stream={stream}"
            queue_name = "Redis Streams (private)"
        elif store_kind == "sqlite":
            queue_url = f"sqlite:///{root / 'queue.db'}"
            queue_name = "SQLite"
        else:
            queue_url = f"{REDIS_URL}?stream={stream}"
            queue_name = "Redis Streams"
        result = OutageResult(
            store_kind,
            checks,
            outage,
            len(expected),
            down=down,
            queue=queue_name,
            stop_mode=stop_mode,
        )
        log(f"loading the store ({db_url.split('@')[-1]}) and queueing {checks:,} checks...")
        with open_store(db_url) as store:
            store.upgrade()
            store.load_klines(market.klines)
            store.load_trades(market.trades)
        queue = open_queue(queue_url, name="checks", max_attempts=5)
        messages = [check_message(str(a)) for a in market.account_ids]
        queue.send_batch(messages)

        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "fraudlens.cli",
            "worker",
            "--queue",
            queue_url,
            "--db",
            db_url,
            "--model-dir",
            str(models),
            "--batch-size",
            str(batch_size),
            "--metrics-port",
            str(port),
            "--max-attempts",
            "5",
            "--idle-exit",
            "5",
        ]
        if visibility_timeout is not None:
            cmd += ["--visibility-timeout", f"{visibility_timeout:g}"]
        proc, output, reader = _start_cli(cmd, "worker")
        _wait_until_done(proc, output, queue, checks, outage_at, "worker", poll=0.05)
        result.depth_before_outage = queue.depth()
        result.done_before_outage = checks - result.depth_before_outage
        what = "store" if down == "store" else "queue"
        log(f"{result.done_before_outage:,} checks done: {what} down for {outage:.0f} s")

        t_down = time.monotonic()
        if rds is not None:
            rds.stop(stop_mode)
            _watch_health(port, result, t_down + outage)
            rds.start()
            result.depth_after_restart = queue.depth()
            if down == "queue-volatile":
                # The server came back empty: a producer that re-sends what was not
                # confirmed worked sends every check again (the worker is idempotent).
                lost_by_redis = result.depth_before_outage - result.depth_after_restart
                log(
                    f"Redis came back with {result.depth_after_restart:,} messages "
                    f"({lost_by_redis:,} lost with it): sending every check again"
                )
                queue.send_batch(messages)
                result.resent = len(messages)
        elif pg is not None and stop_mode == "freeze":
            pg.freeze()
            try:
                _watch_health(port, result, t_down + outage)
            finally:
                pg.thaw()
        elif pg is not None:
            pg.stop("fast" if stop_mode == "term" else "immediate")
            _watch_health(port, result, t_down + outage)
            pg.start()
        elif maria is not None:
            maria.stop(stop_mode)
            _watch_health(port, result, t_down + outage)
            maria.start()
        else:
            with _sqlite_locked(root / "store.db"):
                _watch_health(port, result, t_down + outage)
        # The worker may still be waiting out its back-off: keep watching a few seconds.
        _watch_health(port, result, time.monotonic() + 2)
        log(f"{what} back after {time.monotonic() - t_down:.0f} s; waiting for the worker...")
        _, metrics_text = _scrape(port, "/metrics")
        proc.wait(timeout=max(600.0, checks / 20))
        reader.join(timeout=10)
        result.worker_exit = proc.returncode
        result.worker_output = "".join(output)
        text = " ".join(result.worker_output.split())
        result.worker_summary = text[-600:]
        m = re.search(r"([\d,]+) dead-lettered\) in", text)
        if m:
            result.worker_dead_lettered = int(m.group(1).replace(",", ""))
        m = re.search(
            r"paused by ([\d,]+) outages? for ([\d.]+) s in all; ([\d,]+) messages?", text
        )
        if m:
            result.worker_outages = int(m.group(1).replace(",", ""))
            result.worker_paused_s = float(m.group(2))
            result.worker_released = int(m.group(3).replace(",", ""))
        if metrics_text and 'outcome="dead_lettered"' not in metrics_text:
            result.notes.append("metrics scrape had no dead_lettered series")

        result.left_in_queue = queue.depth()
        result.dead_letters = len(queue.dead_letters(limit=checks + 10))
        with open_store(db_url) as store:
            items, total = store.list_risk_events(limit=checks + 10)
        per_account = Counter(e["account_id"] for e in items)
        result.events = int(total)
        result.lost = len(expected - set(per_account))
        result.duplicated = sum(n - 1 for n in per_account.values() if n > 1)
        result.unexpected = len(set(per_account) - expected)
        result.lost_ids = sorted(expected - set(per_account))
        result.unexpected_ids = sorted(set(per_account) - expected)
        result.seconds = time.monotonic() - t_start
        return result
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if queue is not None:
            with contextlib.suppress(Exception):
                if isinstance(queue, RedisQueue):
                    queue.remove()  # the stream was this run's own
            queue.close()
        for server in (pg, maria, rds):
            if server is not None:
                server.cleanup()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------- card processor scenario


@dataclass
class ProcessorOutageResult:
    """What one run of the card processor through a queue outage measured."""

    records: int
    outage_s: float
    persistent: bool = True
    rows: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    left_in_queue: int = 0
    dead_letters: int = 0
    resent: int = 0
    done_before_outage: int = 0
    depth_after_restart: int | None = None
    exit_code: int | None = None
    output: str = field(default="", repr=False)
    healthz_503_seen: bool = False
    healthz_reason: str = ""
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        """Every record in the sink once, nothing left or dead-lettered, the outage seen."""
        return (
            self.exit_code == 0
            and self.lost == self.duplicated == self.unexpected == 0
            and self.rows == self.records
            and self.left_in_queue == 0
            and self.dead_letters == 0
            and self.healthz_503_seen
        )


def _card_model(root: Path) -> tuple[Path, Any]:
    """A card classifier trained on simulated transactions, and their feature frame."""
    from fraudlens.cards.detectors import XGBoostDetector
    from fraudlens.cards.features import transaction_features
    from fraudlens.cards.simulate import simulate as simulate_cards
    from fraudlens.registry import Registry

    tx = simulate_cards(
        200, 400, 60, seed=5, compromised_terminals_per_day=1, compromised_customers_per_day=1
    )
    X = transaction_features(tx)
    models = root / "models"
    det = XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False, n_jobs=1)
    Registry(models).save(det.fit(X, tx["label"].to_numpy()))
    return models, X


def _sink_ids(root: Path) -> Counter[str]:
    import csv

    ids: Counter[str] = Counter()
    # Published objects only: hidden names are the spool and unfinished temporary files.
    for f in sorted(p for p in root.rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            ids.update(row["transaction_id"] for row in csv.DictReader(fh))
    return ids


def run_processor_outage(
    *,
    records: int = 10_000,
    outage: float = 60.0,
    outage_at: int = 2_000,
    batch_size: int = 100,
    persistent: bool = True,
    stop_mode: str = "term",
    workdir: Path | None = None,
    log: Any = print,
) -> ProcessorOutageResult:
    """``fraudlens cards process --source queue:redis://...`` through a Redis outage.

    ``records`` card records (feature rows of simulated transactions) are queued on a
    private Redis; a real ``fraudlens cards process`` drains them into a local sink. After
    ``outage_at`` records the server is stopped for ``outage`` seconds and started again.
    With ``persistent`` (an append-only file) every record must be in the sink exactly
    once; without it the server comes back empty, and every record is sent again (the
    sink then holds each once or twice: records the sink had already accepted come again,
    so only lost and unexpected records count).
    """
    from fraudlens.queues import open_queue

    t_start = time.monotonic()
    root = Path(workdir or tempfile.mkdtemp(prefix="fraudlens-proc-outage-"))
    root.mkdir(parents=True, exist_ok=True)
    rds: PrivateRedis | None = None
    proc: subprocess.Popen[str] | None = None
    queue = None
    try:
        log("training a card model on simulated transactions...")
        models, X = _card_model(root)
        rows = X.sample(n=records, replace=len(X) < records, random_state=1).reset_index(drop=True)
        ids = [f"t{i:06d}" for i in range(records)]
        bodies = [
            {"record": {**rec, "transaction_id": tid}, "source": "Web"}
            for tid, rec in zip(ids, rows.to_dict(orient="records"), strict=True)
        ]
        rds = PrivateRedis(persistent=persistent, root=root / "redis")
        rds.start()
        queue_url = f"{rds.url}?stream=fraudlens-proc-outage-{uuid.uuid4().hex}"
        queue = open_queue(queue_url, name="card-events", max_attempts=5)
        queue.send_batch(bodies)
        result = ProcessorOutageResult(records, outage, persistent)
        port = free_port()
        sink = root / "sink"
        cmd = [
            sys.executable,
            "-m",
            "fraudlens.cli",
            "cards",
            "process",
            "--source",
            f"queue:{queue_url}",
            "--sink",
            str(sink),
            "--model-dir",
            str(models),
            "--batch-size",
            str(batch_size),
            "--metrics-port",
            str(port),
        ]
        proc, output, reader = _start_cli(cmd, "processor")
        _wait_until_done(proc, output, queue, records, outage_at, "processor", poll=0.02)
        result.done_before_outage = records - queue.depth()
        log(f"{result.done_before_outage:,} records done: Redis down for {outage:.0f} s")

        t_down = time.monotonic()
        rds.stop(stop_mode)
        _watch_health(port, result, t_down + outage)
        rds.start()
        result.depth_after_restart = queue.depth()
        if not persistent:
            queue.send_batch(bodies)
            result.resent = len(bodies)
        log(f"Redis back after {time.monotonic() - t_down:.0f} s; waiting for the processor...")
        proc.wait(timeout=max(600.0, records / 20))
        reader.join(timeout=10)
        result.exit_code = proc.returncode
        result.output = "".join(output)
        result.left_in_queue = queue.depth()
        result.dead_letters = len(queue.dead_letters(limit=records + 10))
        seen = _sink_ids(sink)
        result.rows = sum(seen.values())
        result.lost = len(set(ids) - set(seen))
        result.unexpected = len(set(seen) - set(ids))
        result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
        result.seconds = time.monotonic() - t_start
        return result
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if queue is not None:
            with contextlib.suppress(Exception):
                queue.remove()  # type: ignore[attr-defined]
            queue.close()
        if rds is not None:
            rds.cleanup()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def _table(results: list[OutageResult]) -> str:
    rows = [
        (
            "setup",
            "checks",
            "outage s",
            "expected",
            "events",
            "lost",
            "unexpected",
            "duplicated",
            "dead letters",
            "left in queue",
            "paused s",
            "handed back",
            "/healthz 503",
        ),
    ]
    for r in results:
        rows.append(
            (
                r.setup,
                f"{r.checks:,}",
                f"{r.outage_s:.0f}",
                f"{r.expected_events:,}",
                f"{r.events:,}",
                str(r.lost),
                str(r.unexpected),
                str(r.duplicated),
                str(r.dead_letters),
                str(r.left_in_queue),
                "" if r.worker_paused_s is None else f"{r.worker_paused_s:.0f}",
                "" if r.worker_released is None else f"{r.worker_released:,}",
                "yes" if r.healthz_503_seen else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store",
        choices=[*STORES, "both", "all"],
        default="both",
        help="both: postgresql and sqlite; all: the three",
    )
    parser.add_argument(
        "--down",
        choices=[*DOWN, "all"],
        default="store",
        help="what goes away: the store, the queue (Redis with an append-only file), a "
        "Redis without persistence (queue-volatile), or each in turn",
    )
    parser.add_argument("--stop", choices=["term", "kill", "freeze"], default="term",
                        help="stop servers cleanly (SIGTERM), with SIGKILL, or freeze "
                        "them (SIGSTOP, then SIGCONT; a PostgreSQL store only)")  # fmt: skip
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--outage", type=float, default=300.0, help="seconds it is down")
    parser.add_argument("--outage-at", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--processor",
        action="store_true",
        help="run `fraudlens cards process` from a Redis queue through a Redis outage "
        "instead of the worker (--down queue or queue-volatile)",
    )
    args = parser.parse_args()
    if args.processor:
        return _processor_main(args)
    kinds = {"both": ["postgresql", "sqlite"], "all": list(STORES)}.get(args.store, [args.store])
    downs = list(DOWN) if args.down == "all" else [args.down]
    results = []
    for down in downs:
        for kind in kinds:
            r = run_outage(
                kind,
                down=down,
                checks=args.checks,
                outage=args.outage,
                outage_at=args.outage_at,
                batch_size=args.batch_size,
                stop_mode=args.stop,
            )
            results.append(r)
            print(r.worker_summary[-400:])
            if r.depth_after_restart is not None:
                print(
                    f"queue depth {r.depth_before_outage:,} before the outage, "
                    f"{r.depth_after_restart:,} after the restart; {r.resent:,} re-sent"
                )
            for what, ids in (("lost", r.lost_ids), ("unexpected", r.unexpected_ids)):
                if ids:
                    print(f"{what} ({len(ids)}): {', '.join(ids[:20])}")
            if len(kinds) * len(downs) > 1:
                # each setup's row as soon as it is known; all of them together below
                print(_table([r]), flush=True)
    print(_table(results))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.clean for r in results) else 1


def _processor_main(args: argparse.Namespace) -> int:
    downs = ["queue", "queue-volatile"] if args.down == "all" else [args.down]
    if "store" in downs:
        raise SystemExit("--processor: --down queue, queue-volatile or all")
    results = []
    for down in downs:
        r = run_processor_outage(
            records=args.checks,
            outage=args.outage,
            outage_at=args.outage_at,
            batch_size=args.batch_size,
            persistent=down == "queue",
            stop_mode=args.stop,
        )
        results.append(r)
        print(" ".join(r.output.split())[-400:])
        print(
            f"processor, Redis {'with AOF' if r.persistent else 'without persistence'}: "
            f"{r.records:,} records, {r.outage_s:.0f} s outage after {r.done_before_outage:,}; "
            f"queue depth after the restart {r.depth_after_restart}, re-sent {r.resent:,}; "
            f"sink rows {r.rows:,}, lost {r.lost}, unexpected {r.unexpected}, duplicated "
            f"{r.duplicated}, dead letters {r.dead_letters}, left in queue {r.left_in_queue}, "
            f"/healthz 503 {'yes' if r.healthz_503_seen else 'no'}, exit {r.exit_code}, "
            f"{r.seconds:.0f} s",
            flush=True,
        )
    if args.json:
        print(json.dumps([{**asdict(r), "output": r.output[-2000:]} for r in results], indent=2))
    # Without persistence the records accepted before the outage come again: only lost
    # or unexpected ones (and anything left or dead-lettered) fail that run.
    ok = all(
        r.clean
        if r.persistent
        else r.exit_code == 0
        and r.lost == r.unexpected == r.left_in_queue == r.dead_letters == 0
        and r.healthz_503_seen
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
