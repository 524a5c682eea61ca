"""The account-check worker, on real queues and real databases.

The crash tests run ``fraudlens worker`` as a separate process, kill it with SIGKILL in
the middle of its work, restart it, and then count rows in ``risk_events``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _services import bench_module, fresh_store, unavailable  # type: ignore[import-not-found]
from fraudlens.checks import check_message
from fraudlens.errors import FraudlensError, StoreError
from fraudlens.market.data import MarketData, window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.queues import Queue, RedisQueue, SQLiteQueue
from fraudlens.registry import Registry
from fraudlens.store import Store
from fraudlens.worker import Worker, WorkerMetrics

REDIS_URL = os.environ.get("FRAUDLENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def market() -> MarketData:
    return simulate(400, seed=11, days=3)


@pytest.fixture(scope="module")
def models(market: MarketData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with a feature detector trained on other simulated accounts."""
    root = tmp_path_factory.mktemp("models")
    train = simulate(600, seed=12, days=3)
    Registry(root).save(FeatureDetector(n_estimators=60).fit(window(train)))
    return root


def _expected_flags(market: MarketData, models: Path, threshold: float = 0.9) -> set[str]:
    det = Registry(models).load("market")
    scores = det.decision_function(window(market))
    return {a for a, s in zip(market.account_ids, scores, strict=True) if s > threshold}


def _loaded_db(kind: str, tmp_path: Path, market: MarketData) -> Store:
    """A fresh store of ``kind`` holding the simulated market's bars and trades."""
    store: Store = fresh_store(kind, tmp_path)
    store.load_klines(market.klines)
    store.load_trades(market.trades)
    return store


@pytest.fixture
def loaded_store(market: MarketData, tmp_path: Path) -> Iterator[Store]:
    store = _loaded_db("sqlite", tmp_path, market)
    yield store
    store.close()


# --------------------------------------------------------------------- in-process worker


def test_worker_flags_exactly_the_accounts_batch_scoring_flags(
    loaded_store: Store, market: MarketData, models: Path, tmp_path: Path
) -> None:
    expected = _expected_flags(market, models)
    assert 0 < len(expected) < len(market.account_ids)
    q = SQLiteQueue(tmp_path / "q.db")
    sent_at = datetime.now(UTC)
    q.send_batch([check_message(a, "withdrawal", sent_at) for a in market.account_ids])
    q.send(check_message("no-such-account"))
    metrics = WorkerMetrics()
    w = Worker(q, loaded_store, models, batch_size=64, metrics=metrics)
    stats = w.run(idle_exit=0.3)
    assert stats.processed == len(market.account_ids) + 1
    assert stats.flagged == len(expected) == stats.written
    assert q.depth() == 0 and q.dead_letters() == []
    items, total = loaded_store.list_risk_events(limit=500)
    assert total == len(expected)
    assert {e["account_id"] for e in items} == expected
    e = items[0]
    assert e["business_type"] == "withdrawal" and e["status"] == "open"
    assert e["score"] > 0.9 and e["threshold"] == 0.9
    assert e["model_version"].startswith("market-features:v")
    assert e["requested_at"] == sent_at.isoformat()
    trades = e["details"]["trades"]
    assert trades and all("reason" in t and "trade_id" in t for t in trades)
    # The window ends at the account's latest trade and spans 24 h.
    last = market.trades.loc[market.trades["account_id"] == e["account_id"], "ts"].max()
    assert datetime.fromisoformat(e["window_end"]) == last.to_pydatetime()
    assert datetime.fromisoformat(e["window_end"]) - datetime.fromisoformat(
        e["window_start"]
    ) == timedelta(hours=24)
    # Metrics count what happened.
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert f'fraudlens_worker_messages_total{{outcome="flagged"}} {float(len(expected))}' in text
    assert "fraudlens_worker_latency_seconds_count" in text
    q.close()


def test_redelivered_checks_write_nothing_new(
    loaded_store: Store, market: MarketData, models: Path, tmp_path: Path
) -> None:
    expected = _expected_flags(market, models)
    q = SQLiteQueue(tmp_path / "q.db")
    ids = sorted(expected)[:10]
    for _ in range(3):  # the same checks asked three times, e.g. redelivered
        q.send_batch([check_message(a) for a in ids])
    Worker(q, loaded_store, models, batch_size=7).run(idle_exit=0.3)
    assert loaded_store.list_risk_events()[1] == 10
    q.close()


def test_malformed_messages_are_dead_lettered_with_a_reason(
    loaded_store: Store, market: MarketData, models: Path, tmp_path: Path
) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    q.send("this is not json")
    q.send('["a", "list"]')
    q.send({"businessType": "withdrawal"})
    q.send({"account_id": {"nested": 1}})
    q.send({"account_id": "A1", "requested_at": "not a time"})
    good = sorted(_expected_flags(market, models))[0]
    q.send(check_message(good))
    stats = Worker(q, loaded_store, models).run(idle_exit=0.3)
    # Malformed JSON is moved by the queue at receive time: counted all the same.
    assert stats.processed == 1 and stats.dead_lettered == 5
    reasons = sorted(d["reason"] for d in q.dead_letters())
    assert len(reasons) == 5
    assert sum(r.startswith("malformed JSON") for r in reasons) == 2
    assert any("missing account_id" in r for r in reasons)
    assert any("account_id must be a string" in r for r in reasons)
    assert any("requested_at" in r for r in reasons)
    assert loaded_store.list_risk_events()[1] == 1
    q.close()


def test_bad_account_data_spends_attempts_then_dead_letters(
    loaded_store: Store, market: MarketData, models: Path, tmp_path: Path
) -> None:
    """A failure that follows the message (the store refuses this account's event) spends
    a delivery attempt each time and ends in the dead-letter store with the reason; the
    other accounts of the batch are written and acked."""
    expected = sorted(_expected_flags(market, models))
    poisoned = expected[0]
    q = SQLiteQueue(tmp_path / "q.db", max_attempts=2)
    q.send_batch([check_message(a) for a in expected[:5]])
    w = Worker(q, loaded_store, models, visibility_timeout=5)
    w.consumer.retry_base = 0.05  # keep the retry back-off short for the test
    real_add = loaded_store.add_risk_events

    def refuse_poisoned(events: Any) -> int:
        if any(e.account_id == poisoned for e in events):
            raise StoreError(f"database refused the event of {poisoned}")
        return real_add(events)

    loaded_store.add_risk_events = refuse_poisoned  # type: ignore[method-assign]
    stats = w.run(idle_exit=1.0)
    assert stats.processed == 4 and stats.failed == 2 and stats.dead_lettered == 1
    assert stats.outages == 0 and stats.released == 0
    (dead,) = q.dead_letters()
    assert dead["body"]["account_id"] == poisoned
    assert dead["reason"].startswith("max attempts exceeded: StoreError: database refused")
    assert {e["account_id"] for e in loaded_store.list_risk_events()[0]} == set(expected[1:5])
    q.close()


def test_an_unusable_store_pauses_the_worker_and_spends_no_attempt(
    market: MarketData, models: Path, tmp_path: Path
) -> None:
    """A missing table is an outage: the batch is handed back unspent, the worker reports
    itself unhealthy and probes with back-off; once the table is back it carries on and
    nothing was dead-lettered, although max_attempts is 1."""
    import sqlite3
    import threading

    from prometheus_client import generate_latest

    store = _loaded_db("sqlite", tmp_path, market)
    db_file = tmp_path / "store.db"
    with sqlite3.connect(db_file) as conn:
        conn.execute("ALTER TABLE risk_events RENAME TO risk_events_away")
    q = SQLiteQueue(tmp_path / "q.db", max_attempts=1)
    expected = _expected_flags(market, models)
    ids = sorted(expected)[:30]
    q.send_batch([check_message(a) for a in ids])
    metrics = WorkerMetrics()
    w = Worker(q, store, models, batch_size=10, pause_cap=0.2, metrics=metrics)
    seen_down: list[bytes] = []

    def fix_later() -> None:
        deadline = time.monotonic() + 30
        while w.consumer.health.healthy and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_down.append(generate_latest(metrics.registry))
        time.sleep(1.0)  # several probes fail meanwhile
        with sqlite3.connect(db_file) as conn:
            conn.execute("ALTER TABLE risk_events_away RENAME TO risk_events")

    fixer = threading.Thread(target=fix_later)
    fixer.start()
    stats = w.run(idle_exit=1.0)
    fixer.join()
    assert seen_down and b"fraudlens_worker_healthy 0.0" in seen_down[0]
    assert stats.outages == 1 and stats.paused_seconds >= 0.5
    assert stats.released == 10  # the first batch, handed back unspent
    assert stats.processed == 30 and stats.dead_lettered == 0 and stats.failed == 0
    assert q.dead_letters() == [] and q.depth() == 0
    assert w.consumer.health.healthy
    text = generate_latest(metrics.registry).decode()
    assert "fraudlens_worker_healthy 1.0" in text
    assert 'fraudlens_worker_messages_total{outcome="released"} 10.0' in text
    assert "fraudlens_worker_outages_total 1.0" in text
    flagged = [e["account_id"] for e in store.list_risk_events(limit=500)[0]]
    assert sorted(flagged) == ids
    store.close()
    q.close()


def test_a_worker_without_a_model_says_so_keeps_the_checks_and_idle_exit_ends_it(
    loaded_store: Store,
    market: MarketData,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry with no model: the checks wait in the queue (none worked, none spent),
    a warning naming the registry and what to run is logged at once and then every
    NO_MODEL_WARN_SECONDS (not at every probe), and idle_exit counts the wait as idle."""
    import fraudlens.worker as worker_module

    monkeypatch.setattr(worker_module, "NO_MODEL_WARN_SECONDS", 0.5)
    q = SQLiteQueue(tmp_path / "q.db", max_attempts=1)
    ids = sorted(market.account_ids)[:20]
    q.send_batch([check_message(a) for a in ids])
    nowhere = tmp_path / "typo" / "models"
    w = Worker(q, loaded_store, nowhere, pause_cap=0.05, model_hint="run `train -m typo`")
    probes = 0
    probe = w.handler.probe

    def counted() -> None:
        nonlocal probes
        probes += 1
        probe()

    monkeypatch.setattr(w.handler, "probe", counted)
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="fraudlens.worker"):
        stats = w.run(idle_exit=2.0)
    assert 2.0 <= time.monotonic() - started < 10
    assert stats.gave_up is not None and "no usable model" in stats.gave_up
    assert stats.processed == stats.failed == stats.dead_lettered == 0
    assert q.depth() == len(ids) and q.dead_letters() == []
    warned = [r.getMessage() for r in caplog.records if r.name == "fraudlens.worker"]
    assert warned and all(str(nowhere) in m and "run `train -m typo`" in m for m in warned)
    assert "checks stay queued" in warned[0]
    # at start, then about every 0.5 s of the 2 s: far fewer than the probes
    assert 3 <= len(warned) <= 7 and probes >= 3 * len(warned), (len(warned), probes)
    assert "still unavailable after 1 probe: " in caplog.text  # not "1 probes"
    q.close()


def test_a_model_activated_while_the_worker_waits_is_used(
    loaded_store: Store, market: MarketData, models: Path, tmp_path: Path
) -> None:
    """idle_exit only ends a wait for a model that lasts that long: a registry filled
    meanwhile is picked up and every check is worked."""
    import shutil
    import threading

    q = SQLiteQueue(tmp_path / "q.db", max_attempts=1)
    ids = sorted(market.account_ids)[:20]
    q.send_batch([check_message(a) for a in ids])
    later = tmp_path / "later"
    w = Worker(q, loaded_store, later, pause_cap=0.1)
    w.handler.models.check_seconds = 0.0
    filler = threading.Timer(1.0, lambda: shutil.copytree(models, later))
    filler.start()
    stats = w.run(idle_exit=4.0)
    filler.join()
    assert stats.gave_up is None and stats.outages == 1
    assert stats.processed == len(ids) and q.depth() == 0
    q.close()


def test_the_cli_worker_without_a_model_names_the_fix_and_exits_2(
    loaded_store: Store, market: MarketData, tmp_path: Path
) -> None:
    from fraudlens.cli._common import fraudlens_command

    q = SQLiteQueue(tmp_path / "q.db")
    q.send_batch([check_message(a) for a in sorted(market.account_ids)[:5]])
    q.close()
    env = {**os.environ, "COLUMNS": "400"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudlens",
            "worker",
            "--queue",
            f"sqlite:///{tmp_path}/q.db",
            "--db",
            loaded_store.url,
            "-m",
            "typo/models",
            "--idle-exit",
            "1",
            "--metrics-port",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    out = " ".join(res.stderr.split())
    exe = fraudlens_command()
    assert f"{exe} market train --data DIR -m typo/models" in out
    assert f"{exe} models activate NAME VERSION -m typo/models" in out
    assert "no usable model 'market' in the registry" in out  # the log's warning
    assert "stopped after --idle-exit 1 s without a usable model" in out
    assert SQLiteQueue(tmp_path / "q.db").depth() == 5


@pytest.mark.services
def test_a_server_restarted_between_batches_spends_no_attempt(
    market: MarketData,
    models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A private PostgreSQL restarted while the worker keeps its connection between
    batches: the next batch's first call fails on the dead connection while the server is
    already back, so the loop's probe passes. The batch is tried again on a fresh
    connection instead of being counted failed (with max_attempts 1 it was dead-lettered)."""
    import logging

    import fraudlens.worker as worker_module
    from fraudlens.store import open_store

    outage = bench_module("outage")
    try:
        pg = outage.PrivatePostgres()
    except RuntimeError as exc:
        unavailable(f"cannot run a private PostgreSQL server: {exc}")
    # Keep the connection however long the restart takes (2 s otherwise).
    monkeypatch.setattr(worker_module, "_LINGER", 600.0)
    try:
        pg.init()
        pg.start()
        with open_store(pg.url) as store:
            store.upgrade()
            store.load_klines(market.klines)
            store.load_trades(market.trades)
            ids = sorted(_expected_flags(market, models))[:20]
            q = SQLiteQueue(tmp_path / "q.db", max_attempts=1)
            q.send_batch([check_message(a) for a in ids[:10]])
            w = Worker(q, store, models, batch_size=10, pause_cap=0.2)
            assert w.run(limit=10).processed == 10
            pg.stop("fast")
            pg.start()
            q.send_batch([check_message(a) for a in ids[10:]])
            with caplog.at_level(logging.WARNING, logger="fraudlens.worker"):
                stats = w.run(limit=20)
            assert "store connection lost" in caplog.text  # the dead connection was hit
            assert stats.processed == 20 and stats.failed == 0 and stats.dead_lettered == 0
            assert q.dead_letters() == [] and q.depth() == 0
            flagged = sorted(e["account_id"] for e in store.list_risk_events(limit=100)[0])
            assert flagged == ids
            q.close()
    finally:
        pg.cleanup()


@pytest.mark.services
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_connection_a_failover_left_half_open_is_cut_after_the_lease(
    kind: str, market: MarketData, models: Path, tmp_path: Path, caplog: Any
) -> None:
    """The database fails over under a working worker: its connections are left
    half-open (the old server's end gone without a word, the new server behind the same
    address). No timeout covers a query on an open connection, so the next batch's first
    call had waited for ever (the worker was still waiting after 60 s). Now the call
    that has run past the batch's 3 s lease (and 10 s) is cut, the batch goes on over a fresh
    connection, and every check ends exactly as batch scoring says."""
    import logging
    import threading

    import sqlalchemy as sa

    from _services import MARIADB_URL, POSTGRES_URL, FailoverProxy  # type: ignore[import-not-found]

    _loaded_db(kind, tmp_path, market).close()
    direct = sa.engine.make_url(POSTGRES_URL if kind == "postgresql" else MARIADB_URL)
    expected = _expected_flags(market, models)
    q = SQLiteQueue(tmp_path / "q.db")
    q.send_batch([check_message(a) for a in market.account_ids])
    done: dict[str, Any] = {}
    failed_over: list[int] = []
    with FailoverProxy(direct.host or "127.0.0.1", direct.port or 0) as proxy:
        url = direct.set(host="127.0.0.1", port=proxy.port)
        store = Store(url.render_as_string(hide_password=False))
        metrics = WorkerMetrics()
        w = Worker(q, store, models, batch_size=25, visibility_timeout=3, metrics=metrics)

        def on_batch(stats: Any) -> None:
            if stats.batches == 2 and not failed_over:
                failed_over.append(proxy.fail_over())

        def run() -> None:
            done["stats"] = w.run(idle_exit=1, on_batch=on_batch)

        with caplog.at_level(logging.ERROR, logger="fraudlens.consume"):
            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(60)
            assert not t.is_alive(), "the worker still waits on a half-open connection"
    store.close()
    assert failed_over and failed_over[0] >= 1  # the worker's connection was open
    stats = done["stats"]
    assert stats.cut >= 1
    assert "(the batch's lease is 3 s): cut" in caplog.text
    from prometheus_client import generate_latest

    cuts = f"fraudlens_worker_stuck_calls_cut_total {float(stats.cut)}"
    assert cuts in generate_latest(metrics.registry).decode()
    assert stats.processed == len(market.account_ids) and stats.dead_lettered == 0
    assert q.depth() == 0 and q.dead_letters() == []
    check = Store(direct.render_as_string(hide_password=False))
    events, total = check.list_risk_events(limit=1000)
    check.close()
    assert total == len(expected) and {e["account_id"] for e in events} == expected
    q.close()


def test_a_sqlite_store_deleted_mid_batch_loses_no_event(
    market: MarketData, models: Path, tmp_path: Path
) -> None:
    """The store's file is deleted while the worker writes a batch's events (after the
    connection was checked, before the commit): those events went into the deleted file
    and the worker acked their checks, so they were lost. Now the batch is not taken as
    stored: the worker pauses (no store at the path), and once a restored store is moved
    onto the path every event is there, exactly as batch scoring says."""
    import threading

    from _services import remove_sqlite_at_first_event_insert  # type: ignore[import-not-found]

    path = tmp_path / "store.db"
    store = _loaded_db("sqlite", tmp_path, market)
    expected = _expected_flags(market, models)
    deleted = remove_sqlite_at_first_event_insert(store, path)

    def restore() -> None:
        deleted.wait(30)
        time.sleep(1.0)  # the worker meets the outage first
        (tmp_path / "restore").mkdir()
        fresh = _loaded_db("sqlite", tmp_path / "restore", market)
        fresh.close()
        (tmp_path / "restore" / "store.db").rename(path)

    q = SQLiteQueue(tmp_path / "q.db")
    q.send_batch([check_message(a) for a in market.account_ids])
    threading.Thread(target=restore, daemon=True).start()
    stats = Worker(q, store, models, batch_size=50, pause_cap=0.5).run(idle_exit=1)
    assert deleted.is_set()
    assert stats.outages >= 1 and stats.processed == len(market.account_ids)
    assert q.depth() == 0 and q.dead_letters() == []
    store.close()
    with Store(f"sqlite:///{path}") as reader:
        events, total = reader.list_risk_events(limit=1000)
    assert total == len(expected) and {e["account_id"] for e in events} == expected
    q.close()


def test_dead_letters_counted_where_the_queue_moves_them(
    loaded_store: Store, market: MarketData, models: Path, tmp_path: Path
) -> None:
    """Messages whose leases ran out max_attempts times are moved by the queue itself at
    receive time: the worker's summary and metric still count them."""
    from prometheus_client import generate_latest

    q = SQLiteQueue(tmp_path / "q.db", max_attempts=1)
    q.send_batch([check_message(str(a)) for a in market.account_ids[:7]])
    assert len(q.receive(7, visibility_timeout=0.05)) == 7  # a consumer that died
    time.sleep(0.1)
    metrics = WorkerMetrics()
    stats = Worker(q, loaded_store, models, metrics=metrics).run(idle_exit=0.3)
    assert stats.dead_lettered == 7 == len(q.dead_letters())
    text = generate_latest(metrics.registry).decode()
    assert 'fraudlens_worker_messages_total{outcome="dead_lettered"} 7.0' in text
    q.close()


# ------------------------------------------------------------------ separate processes


def _worker_cmd(queue_url: str, db_url: str, models: Path, *extra: str) -> list[str]:
    return [
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
        "--metrics-port",
        "0",
        "--visibility-timeout",
        "1",
        *extra,
    ]


def _queue_for(kind: str, tmp_path: Path) -> tuple[Queue, str]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'q.db'}"
        return SQLiteQueue(tmp_path / "q.db"), url
    stream = f"fraudlens-test:{uuid.uuid4().hex}"
    url = f"{REDIS_URL}?stream={stream}"
    try:
        q = RedisQueue.from_url(url, name="checks")
        q.depth()
    except Exception as exc:
        unavailable(f"Redis is unreachable at {REDIS_URL}: {exc}")
    return q, url


CRASH_SETUPS = [
    pytest.param(("sqlite", "sqlite"), id="sqlite-queue+sqlite"),
    pytest.param(("redis", "postgresql"), id="redis+postgresql", marks=pytest.mark.services),
    pytest.param(("redis", "mariadb"), id="redis+mariadb", marks=pytest.mark.services),
]


@pytest.mark.parametrize("setup", CRASH_SETUPS)
def test_kill_9_mid_batch_then_restart_processes_every_check_exactly_once(
    setup: tuple[str, str],
    market: MarketData,
    models: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    queue_kind, db_kind = setup
    store = _loaded_db(db_kind, tmp_path, market)
    q, queue_url = _queue_for(queue_kind, tmp_path)
    if isinstance(q, RedisQueue):
        request.addfinalizer(lambda: RedisQueue.from_url(queue_url).remove())
    expected = _expected_flags(market, models)
    # Every account twice: duplicates must not double the events either.
    ids = [str(a) for a in market.account_ids] * 2
    q.send_batch([check_message(a) for a in ids])
    cmd = _worker_cmd(queue_url, store.url, models, "--batch-size", "5")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill it once it has written some events but is far from done.
        deadline = time.monotonic() + 120
        while store.counts()["risk_events"] < 10:
            assert victim.poll() is None, victim.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker wrote no events in 120 s"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    written_before = store.counts()["risk_events"]
    assert 10 <= written_before < len(expected), "the kill did not land mid-run"
    assert q.depth() > 0
    # A fresh worker picks up the rest, including the dead worker's leased batch.
    done = subprocess.run(
        [*cmd, "--idle-exit", "3"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert q.depth() == 0
    assert q.dead_letters() == []
    items, total = store.list_risk_events(limit=500)
    accounts = [e["account_id"] for e in items]
    assert total == len(accounts) == len(set(accounts)) == len(expected)
    assert set(accounts) == expected
    q.purge()
    q.close()
    store.drop_all()
    store.close()


def test_sigterm_finishes_the_batch_in_hand(
    market: MarketData, models: Path, tmp_path: Path
) -> None:
    store = _loaded_db("sqlite", tmp_path, market)
    q, queue_url = _queue_for("sqlite", tmp_path)
    ids = [str(a) for a in market.account_ids]
    q.send_batch([check_message(a) for a in ids])
    cmd = _worker_cmd(queue_url, store.url, models, "--batch-size", "20")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while q.depth() == len(ids):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    left = q.depth()
    assert 0 < left < len(ids), "SIGTERM should stop the worker before the queue is empty"
    # Nothing is left leased: every remaining message is visible at once.
    got = q.receive(len(ids), visibility_timeout=30)
    assert len(got) == left
    handled = {str(m.body["account_id"]) for m in got}
    assert len(handled) == left
    # And the accounts the worker acked have their events.
    expected = _expected_flags(market, models)
    done = set(ids) - handled
    flagged = {e["account_id"] for e in store.list_risk_events(limit=500)[0]}
    assert flagged == expected & done
    np.testing.assert_equal(len(flagged), len(expected & done))
    q.close()
    store.close()


def test_two_worker_processes_share_the_queue(
    market: MarketData, models: Path, tmp_path: Path
) -> None:
    store = _loaded_db("sqlite", tmp_path, market)
    q, queue_url = _queue_for("sqlite", tmp_path)
    ids = [str(a) for a in market.account_ids]
    q.send_batch([check_message(a) for a in ids])
    cmd = _worker_cmd(queue_url, store.url, models, "--concurrency", "2", "--batch-size", "10")
    done = subprocess.run([*cmd, "--idle-exit", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"processed {len(ids):,} checks" in " ".join(done.stderr.split())
    assert q.depth() == 0
    flagged = {e["account_id"] for e in store.list_risk_events(limit=500)[0]}
    assert flagged == _expected_flags(market, models)
    q.close()
    store.close()


# ------------------------------------------------------------- health of several processes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthz(port: int) -> tuple[int, dict[str, Any]]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())
    except OSError:
        return 0, {}


def _wait_healthz(
    port: int, code: int, proc: subprocess.Popen[str], seconds: float, what: str | None = None
) -> dict[str, Any]:
    """The first /healthz body with status ``code`` (and, if given, naming ``what``)."""
    deadline = time.monotonic() + seconds
    seen: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        seen = _healthz(port)
        if seen[0] == code and (what is None or seen[1].get("what") == what):
            return seen[1]
        time.sleep(0.1)
    raise AssertionError(f"/healthz did not answer {code} ({what}) in {seconds} s; last: {seen}")


def test_healthz_of_several_processes_reports_the_worst_one(
    market: MarketData, models: Path, tmp_path: Path
) -> None:
    """``worker --concurrency 2``: /healthz answers 503 while the processes start, 503
    while one process is paused by a locked SQLite store (another process holds its write
    lock) and 200 once the lock is released; then 503 again, naming the process, once a
    process is killed, and 200 once a new process has taken its slot and works."""
    import sqlite3

    store = _loaded_db("sqlite", tmp_path, market)
    q, queue_url = _queue_for("sqlite", tmp_path)
    flagged = sorted(_expected_flags(market, models))
    assert len(flagged) >= 2
    # Another process holds the store's write lock from the start; a check that raises
    # an event must wait for it: after the store's busy timeout (3 s here, set on the
    # worker's store URL; 30 s by default) the batch is handed back and its process
    # pauses, while the other process stays healthy.
    holder = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    q.send_batch([check_message(flagged[0])])
    port = _free_port()
    cmd = _worker_cmd(
        queue_url, f"{store.url}?busy_timeout=3", models, "--concurrency", "2", "--batch-size", "5"
    )
    proc = subprocess.Popen(
        # a lease longer than the busy timeout: the check is not redelivered to the other
        # process while the first one waits for the lock
        [*cmd, "--metrics-port", str(port), "--visibility-timeout", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = _wait_healthz(port, 503, proc, 30, what="process")
        assert "has not started consuming yet" in body["reason"], body
        body = _wait_healthz(port, 503, proc, 50, what="store")
        assert "database is locked" in body["reason"], body
        assert sorted(p["status"] for p in body["processes"]) == ["ok", "unavailable"]
        assert store.counts()["risk_events"] == 0
        holder.execute("ROLLBACK")
        holder.close()
        holder = None
        body = _wait_healthz(port, 200, proc, 20)
        deadline = time.monotonic() + 20
        while store.counts()["risk_events"] < 1 or q.depth():
            assert time.monotonic() < deadline, "the check was not worked after the lock"
            time.sleep(0.1)
        assert [e["account_id"] for e in store.list_risk_events()[0]] == [flagged[0]]
        # /metrics on the same port gathers the processes' counts
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {
            (s.name, s.labels.get("outcome")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert values[("fraudlens_worker_messages_total", "processed")] == 1, values
        assert values[("fraudlens_worker_messages_total", "released")] == 1, values
        assert values[("fraudlens_worker_messages_total", "failed")] == 0, values
        assert values[("fraudlens_worker_outages_total", None)] == 1, values
        assert values[("fraudlens_worker_healthy", None)] == 1, values
        # A dead process counts as unhealthy until a new one has taken its slot.
        victim = body["processes"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        body = _wait_healthz(port, 503, proc, 10)
        assert body["what"] == "process" and "killed by signal 9" in body["reason"], body
        assert [p["status"] for p in body["processes"]] == ["ok", "dead"]
        body = _wait_healthz(port, 200, proc, 60)
        assert [p["status"] for p in body["processes"]] == ["ok", "ok"], body
        assert body["processes"][1]["pid"] != victim
        # the killed process's health gauge is gone: the gathered gauge is the live ones'
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        healthy = [
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "fraudlens_worker_healthy"
        ]
        assert healthy == [1], healthy
        # the new process works: the other process is stopped, a check still gets done
        os.kill(body["processes"][0]["pid"], signal.SIGTERM)
        q.send_batch([check_message(flagged[1])])
        deadline = time.monotonic() + 30
        while store.counts()["risk_events"] < 2 or q.depth():
            assert time.monotonic() < deadline, "the new process did not work the check"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert q.dead_letters() == []
    finally:
        if holder is not None:
            holder.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        q.close()
        store.close()


def test_a_process_that_dies_while_starting_is_not_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Processes that die before they consume (here: a queue file whose folder is a
    file) are not restarted in a loop: the run ends, saying why, and fails (it had
    returned no stats, and the CLI exited 0)."""
    from fraudlens.worker import WorkerConfig, run_workers

    (tmp_path / "file").write_text("not a folder")
    config = WorkerConfig(
        f"sqlite:///{tmp_path}/file/queue.db",
        f"sqlite:///{tmp_path}/store.db",
        tmp_path / "models",
        idle_exit=1.0,
    )
    started = time.monotonic()
    with (
        caplog.at_level("ERROR", logger="fraudlens.worker"),
        pytest.raises(FraudlensError, match="every worker process died while starting: "),
    ):
        run_workers(config, 2, restart_base=0.1)
    assert time.monotonic() - started < 60
    assert caplog.text.count("died while starting") == 2, caplog.text
    assert caplog.text.count("File exists") == 2, caplog.text


def test_each_process_reads_as_its_own_redis_consumer(tmp_path: Path) -> None:
    """``--concurrency 2`` with ``consumer=NAME`` in the queue URL: the processes read as
    ``NAME-0`` and ``NAME-1`` (one name for both made each hand back the other's entries
    as its own lost ones); other parameters and other queues are left alone."""
    from fraudlens.worker import WorkerConfig, _own_consumer

    url = "redis://127.0.0.1:6379/0?stream=s&consumer=desk&socket_timeout=5"
    config = WorkerConfig(url, "sqlite:///x.db", tmp_path)
    urls = [_own_consumer(config, i).queue_url for i in (0, 1)]
    queues = [RedisQueue.from_url(u) for u in urls]
    assert [q.consumer for q in queues] == ["desk-0", "desk-1"]
    assert all(q.stream == "s" for q in queues)
    assert all("socket_timeout=5" in u for u in urls)
    for q in queues:
        q.close()
    for plain in ("redis://127.0.0.1:6379/0?stream=s", "sqlite:///q.db"):
        assert _own_consumer(WorkerConfig(plain, "sqlite:///x.db", tmp_path), 1).queue_url == plain


def test_worker_processes_that_cannot_start_fail_the_run_in_one_line(tmp_path: Path) -> None:
    """``worker --concurrency 2`` with a setting every process refuses (an unknown SQLite
    queue option): each process printed a traceback, and the run ended with exit status
    0 and "processed 0 checks", which a supervisor takes for success; one process
    (``--concurrency 1``) exits 2 with one line. Now the processes' error is one line
    each and the run exits 2 with it."""
    queue_url = f"sqlite:///{tmp_path / 'q.db'}?bogus=1"
    cmd = _worker_cmd(queue_url, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "models")
    done = subprocess.run(
        [*cmd, "--concurrency", "2", "--idle-exit", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out, out
    assert "every worker process died while starting: unknown SQLite queue option" in " ".join(
        out.split()
    ), out
