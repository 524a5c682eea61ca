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

import numpy as np
import pytest

from _services import fresh_store, unavailable  # type: ignore[import-not-found]
from fraudlens.checks import check_message
from fraudlens.market.data import MarketData, window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.queues import Queue, RedisQueue, SQLiteQueue
from fraudlens.registry import Registry
from fraudlens.store import Store, open_store
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
    assert stats.flagged == len(expected) == stats.events_written
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
    assert stats.processed == 1 and stats.dead_lettered == 3
    reasons = sorted(d["reason"] for d in q.dead_letters())
    assert len(reasons) == 5
    assert sum(r.startswith("malformed JSON") for r in reasons) == 2
    assert any("missing account_id" in r for r in reasons)
    assert any("account_id must be a string" in r for r in reasons)
    assert any("requested_at" in r for r in reasons)
    assert loaded_store.list_risk_events()[1] == 1
    q.close()


def test_database_failure_is_retried_then_dead_lettered(
    market: MarketData, models: Path, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables
    q = SQLiteQueue(tmp_path / "q.db", max_attempts=2)
    q.send(check_message(str(market.account_ids[0])))
    w = Worker(q, store, models, visibility_timeout=5)
    w.run(limit=1)
    assert w.stats.failed == 1 and q.depth() == 1
    # nack's back-off delays the retry; the second failure exhausts the attempts.
    deadline = time.monotonic() + 10
    while q.dead_letters() == [] and time.monotonic() < deadline:
        w.run(limit=w.stats.failed + 1, idle_exit=0.5)
        time.sleep(0.2)
    (dead,) = q.dead_letters()
    assert (
        dead["reason"].startswith("max attempts exceeded") and "OperationalError" in dead["reason"]
    )
    store.close()
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
    setup: tuple[str, str], market: MarketData, models: Path, tmp_path: Path
) -> None:
    queue_kind, db_kind = setup
    store = _loaded_db(db_kind, tmp_path, market)
    q, queue_url = _queue_for(queue_kind, tmp_path)
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
