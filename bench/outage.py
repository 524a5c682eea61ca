"""Chaos run: a worker drains account checks through a store outage, then we count.

    python bench/outage.py --store postgresql --outage 300        # Redis + private PostgreSQL
    python bench/outage.py --store sqlite --outage 300            # SQLite queue + SQLite store

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

   Meanwhile ``/healthz`` of the worker is polled (it should answer 503).
4. When the worker has drained the queue and exited, the script counts: messages left
   in the queue, dead letters, risk events per account against the expected set (lost
   = expected and missing; duplicated = more than one row per account; unexpected = an
   event of an account not expected).

Prints a table and, with ``--json``, the figures as JSON. Exit status 1 if anything was
lost, duplicated or dead-lettered. ``tests/test_outage.py`` runs the same scenario with a
short outage.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
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

    def cleanup(self) -> None:
        """Stop (if running) and delete the folder."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------- scenario


@dataclass
class OutageResult:
    """What one outage run measured."""

    store: str
    checks: int
    outage_s: float
    expected_events: int
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
    seconds: float = 0.0
    lost_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Exactly the expected events (nothing lost, duplicated or unexpected), nothing
        left or dead-lettered."""
        return (
            self.worker_exit == 0
            and self.lost == self.duplicated == self.unexpected == 0
            and self.events == self.expected_events
            and self.left_in_queue == 0
            and self.dead_letters == 0
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
    checks: int = 10_000,
    outage: float = 300.0,
    outage_at: int = 2_000,
    batch_size: int = 100,
    seed: int = 7,
    workdir: Path | None = None,
    log: Any = print,
) -> OutageResult:
    """Run the scenario once and return what was counted (see the module docstring).

    Parameters
    ----------
    store_kind
        ``postgresql`` (Redis queue + a private PostgreSQL) or ``sqlite`` (SQLite queue +
        SQLite store).
    checks
        Accounts simulated and checked (one check each).
    outage
        Seconds the store stays unavailable.
    outage_at
        Checks worked before the outage starts.
    """
    from fraudlens.checks import check_message
    from fraudlens.market.simulate import simulate
    from fraudlens.queues import RedisQueue, open_queue
    from fraudlens.store import open_store

    t_start = time.monotonic()
    root = Path(workdir or tempfile.mkdtemp(prefix="fraudlens-outage-"))
    root.mkdir(parents=True, exist_ok=True)
    pg: PrivatePostgres | None = None
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
            queue_url = f"{REDIS_URL}?stream=fraudlens-outage-{uuid.uuid4().hex}"
        elif store_kind == "sqlite":
            db_url = f"sqlite:///{root / 'store.db'}"
            queue_url = f"sqlite:///{root / 'queue.db'}"
        else:
            raise ValueError(f"unknown store {store_kind!r}: postgresql or sqlite")
        result = OutageResult(store_kind, checks, outage, len(expected))
        log(f"loading the store ({db_url.split('@')[-1]}) and queueing {checks:,} checks...")
        with open_store(db_url) as store:
            store.upgrade()
            store.load_klines(market.klines)
            store.load_trades(market.trades)
        queue = open_queue(queue_url, name="checks", max_attempts=5)
        queue.send_batch([check_message(str(a)) for a in market.account_ids])

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
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        output: list[str] = []
        reader = threading.Thread(
            target=lambda: output.extend(proc.stdout or []), daemon=True, name="worker-output"
        )
        reader.start()

        deadline = time.monotonic() + 600
        while checks - queue.depth() < outage_at:
            if proc.poll() is not None:
                raise RuntimeError("the worker exited early:\n" + "".join(output)[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError("the worker made no progress in 600 s")
            time.sleep(0.05)
        result.done_before_outage = checks - queue.depth()
        log(f"{result.done_before_outage:,} checks done: store down for {outage:.0f} s")

        def watch_health(until: float) -> None:
            while time.monotonic() < until:
                status, body = _scrape(port, "/healthz")
                if status == 503 and not result.healthz_503_seen:
                    result.healthz_503_seen = True
                    result.healthz_reason = body[:300]
                time.sleep(0.5)

        t_down = time.monotonic()
        if pg is not None:
            pg.stop("fast")
            watch_health(t_down + outage)
            pg.start()
        else:
            with _sqlite_locked(root / "store.db"):
                watch_health(t_down + outage)
        log(f"store back after {time.monotonic() - t_down:.0f} s; waiting for the worker...")
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
            r"paused by ([\d,]+) outage\(s\) for ([\d.]+) s in all; ([\d,]+) messages", text
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
        if pg is not None:
            pg.cleanup()
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
                "Redis + PostgreSQL" if r.store == "postgresql" else "SQLite + SQLite",
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
    parser.add_argument("--store", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--outage", type=float, default=300.0, help="seconds the store is down")
    parser.add_argument("--outage-at", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    kinds = ["postgresql", "sqlite"] if args.store == "both" else [args.store]
    results = []
    for kind in kinds:
        r = run_outage(
            kind,
            checks=args.checks,
            outage=args.outage,
            outage_at=args.outage_at,
            batch_size=args.batch_size,
        )
        results.append(r)
        print(r.worker_summary[-400:])
        for what, ids in (("lost", r.lost_ids), ("unexpected", r.unexpected_ids)):
            if ids:
                print(f"{what} ({len(ids)}): {', '.join(ids[:20])}")
    print(_table(results))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
