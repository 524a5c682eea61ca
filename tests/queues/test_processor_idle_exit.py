"""The card processor's ``idle_exit`` (``cards process --idle-exit S``), as the worker's:
a queue is consumed until it has been empty S seconds; a card model that goes after the
start is waited for (a warning naming the registry and the fix, at once and then every
NO_MODEL_WARN_SECONDS), and that wait counts as idle: after S seconds the run stops, the
records still queued, none lost and none written (``fraudlens cards process`` exits 2).

Real queues (a SQLite file, and the Redis server of ``FRAUDLENS_TEST_REDIS_URL``), a
real sink folder and a real XGBoost card model (``card_models``).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudlens.errors import ConfigError
from fraudlens.processor import ProcessStats, process
from fraudlens.queues import Queue, open_queue

pytestmark = pytest.mark.slow


def _rows(root: Path) -> list[str]:
    """transaction_id of every row the sink published (not its spool)."""
    ids: list[str] = []
    for f in sorted(p for p in root.rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            ids.extend(r["transaction_id"] for r in csv.DictReader(fh))
    return ids


def _bodies(records: list[dict[str, Any]], prefix: str, n: int, start: int = 0) -> list[Any]:
    return [
        {
            "record": {
                **{k: v for k, v in r.items() if k != "Class"},
                "transaction_id": f"{prefix}{i}",
            }
        }
        for i, r in zip(range(start, start + n), records[start : start + n], strict=True)
    ]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.services)])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty card-events queue on the backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'q.db'}"
        return
    url, stream = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_stream")
    yield f"{url}?stream={stream}"


def _queue(url: str) -> Queue:
    return open_queue(url, name="card-events")


@pytest.fixture
def registry(card_models: Path, tmp_path: Path) -> Path:
    """A copy of the card registry that a test may take away."""
    root = tmp_path / "models"
    shutil.copytree(card_models, root)
    return root


def test_idle_exit_consumes_the_queue_until_it_has_been_empty_that_long(
    queue_url: str, registry: Path, ulb_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Records sent while the processor runs are scored (a drain would have ended at the
    first empty receive), each once; the run ends idle_exit after the last batch, exit
    0's state: nothing given up, the queue empty."""
    with _queue(queue_url) as q:
        q.send_batch(_bodies(ulb_records, "a", 30))
    late = threading.Timer(0.6, lambda: _send(queue_url, _bodies(ulb_records, "b", 12)))
    started = time.monotonic()
    late.start()
    stats = process(f"queue:{queue_url}", tmp_path / "sink", registry, batch_size=10, idle_exit=1.5)
    late.join()
    took = time.monotonic() - started
    assert stats.gave_up is None and stats.outages == 0
    assert stats.records == 42 and stats.dead_lettered == 0
    assert 0.6 + 1.5 <= took < 30, took
    ids = _rows(tmp_path / "sink")
    assert sorted(ids) == sorted([f"a{i}" for i in range(30)] + [f"b{i}" for i in range(12)])
    with _queue(queue_url) as q:
        assert q.depth() == 0 and q.dead_letters() == []


def _send(url: str, bodies: list[Any]) -> None:
    with _queue(url) as q:
        q.send_batch(bodies)


def test_without_idle_exit_a_queue_pass_still_drains(
    queue_url: str, registry: Path, ulb_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Normal processing is unchanged: one pass drains what is queued and returns."""
    with _queue(queue_url) as q:
        q.send_batch(_bodies(ulb_records, "a", 25))
    started = time.monotonic()
    stats = process(f"queue:{queue_url}", tmp_path / "sink", registry, batch_size=10)
    assert time.monotonic() - started < 20
    assert stats.records == 25 and stats.passes == 1 and stats.gave_up is None
    assert sorted(_rows(tmp_path / "sink")) == sorted(f"a{i}" for i in range(25))


def test_a_card_model_gone_mid_run_is_waited_for_warned_and_idle_exit_ends_the_wait(
    queue_url: str,
    registry: Path,
    ulb_records: list[dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry is emptied after the first batch: the next batch is handed back
    without spending an attempt, a warning naming the registry and the fix is logged at
    once and then every NO_MODEL_WARN_SECONDS (not at every probe), and after idle_exit
    seconds without a model the run stops: the records still queued, none dead-lettered,
    none of them in the sink."""
    import fraudlens.processor as processor_module

    monkeypatch.setattr(processor_module, "NO_MODEL_WARN_SECONDS", 0.5)
    with _queue(queue_url) as q:
        q.send_batch(_bodies(ulb_records, "a", 30))

    def gone_after_the_first_batch(s: ProcessStats) -> None:
        if registry.exists():
            shutil.rmtree(registry)

    started = time.monotonic()
    with caplog.at_level("WARNING"):
        stats = process(
            f"queue:{queue_url}",
            tmp_path / "sink",
            registry,
            batch_size=10,
            idle_exit=2.0,
            pause_cap=0.05,
            model_hint="run `train -m typo`",
            on_batch=gone_after_the_first_batch,
        )
    assert 2.0 <= time.monotonic() - started < 30
    assert stats.gave_up is not None and "no usable model" in stats.gave_up
    assert stats.records == 10 and stats.outages == 1 and stats.released == 10
    assert stats.dead_lettered == stats.failed == 0
    assert sorted(_rows(tmp_path / "sink")) == sorted(f"a{i}" for i in range(10))
    with _queue(queue_url) as q:
        assert q.depth() == 20 and q.dead_letters() == []
        back = q.receive(20, visibility_timeout=5)
        # handed back without spending a delivery: each is on its first attempt again
        assert sorted(m.body["record"]["transaction_id"] for m in back) == sorted(
            f"a{i}" for i in range(10, 30)
        )
        assert {m.attempts for m in back} == {1}
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "fraudlens.processor" and "no usable card model" in r.getMessage()
    ]
    assert warned and all(str(registry) in m and "run `train -m typo`" in m for m in warned)
    assert "the records stay queued, none scored and none lost" in warned[0]
    # at once, then about every 0.5 s of the 2 s wait (the probes, every 0.05 s, do not)
    assert 3 <= len(warned) <= 7, warned


class _GoneForASecond:
    """An ``on_batch`` callback: after the first batch (or pass) it deletes the registry
    and restores it from ``saved`` one second later; :meth:`join` waits for that."""

    def __init__(self, registry: Path, saved: Path) -> None:
        self.timer = threading.Timer(1.0, lambda: shutil.copytree(saved, registry))
        self.registry = registry
        self.gone = False

    def __call__(self, stats: ProcessStats) -> None:
        if not self.gone:
            self.gone = True
            shutil.rmtree(self.registry)
            self.timer.start()

    def join(self) -> None:
        self.timer.join()


def test_a_card_model_back_within_idle_exit_is_used(
    queue_url: str, registry: Path, ulb_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """idle_exit only ends a wait for a model that lasts that long: a registry restored
    meanwhile is picked up and every record is scored, once."""
    saved = tmp_path / "saved-models"
    shutil.copytree(registry, saved)
    with _queue(queue_url) as q:
        q.send_batch(_bodies(ulb_records, "a", 30))
    gone = _GoneForASecond(registry, saved)

    stats = process(
        f"queue:{queue_url}",
        tmp_path / "sink",
        registry,
        batch_size=10,
        idle_exit=6.0,
        pause_cap=0.1,
        on_batch=gone,
    )
    gone.join()
    assert stats.gave_up is None and stats.outages == 1 and stats.paused_seconds >= 0.5
    assert stats.records == 30
    assert sorted(_rows(tmp_path / "sink")) == sorted(f"a{i}" for i in range(30))


def test_a_scheduled_pass_waits_for_a_card_model_gone_between_passes(
    registry: Path,
    ulb_records: list[dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With --every, a pass that finds the registry emptied waits (warned, as an outage)
    instead of ending the run with ModelNotFoundError, and goes on once it is back."""
    import pandas as pd

    table = tmp_path / "ulb.csv"
    pd.DataFrame(ulb_records).drop(columns="Class").to_csv(table, index=False)
    saved = tmp_path / "saved-models"
    shutil.copytree(registry, saved)
    gone = _GoneForASecond(registry, saved)

    with caplog.at_level("WARNING"):
        stats = process(
            f"generate:{table}",
            tmp_path / "sink",
            registry,
            every=0.05,
            limit=60,
            batch_size=20,
            seed=1,
            pause_cap=0.1,
            on_batch=gone,
        )
    gone.join()
    assert stats.records == 60 and stats.passes == 3
    assert stats.outages == 1 and stats.paused_seconds >= 0.5 and stats.gave_up is None
    assert len(_rows(tmp_path / "sink")) == 60
    assert f"no usable card model in the registry {registry}" in caplog.text
    assert "no traffic is generated" in caplog.text


def test_idle_exit_is_not_a_schedule(registry: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give one or the other"):
        process("generate", tmp_path / "sink", registry, every=1.0, idle_exit=1.0)
    with pytest.raises(ConfigError, match="number of seconds"):
        process("generate", tmp_path / "sink", registry, idle_exit=float("nan"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraudlens", "cards", "process", *args]


def test_the_cli_exits_0_once_the_queue_has_been_idle(
    registry: Path, ulb_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    _send(url, _bodies(ulb_records, "a", 5))
    started = time.monotonic()
    res = subprocess.run(
        _cli(*f"--source queue:{url} --sink {tmp_path}/sink -m {registry} --idle-exit 1".split()),
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert time.monotonic() - started >= 1.0
    assert "scored 5 records" in " ".join(res.stderr.split())
    # off a terminal, plain lines say when the scoring started and how long it took
    lines = res.stderr.splitlines()
    assert "scoring card records ..." in lines, lines
    assert any(re.fullmatch(r"scoring card records: done in \d+\.\d s", x) for x in lines), lines
    assert sorted(_rows(tmp_path / "sink")) == [f"a{i}" for i in range(5)]


def test_the_cli_without_a_card_model_names_the_fix_and_exits_2_with_the_records_queued(
    registry: Path,
    ulb_records: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry goes once the processor has scored the first records; records sent
    after that wait for a model: after --idle-exit the processor exits 2, naming the
    registry and this installation's commands, and the records are still queued."""
    from fraudlens.cli._common import fraudlens_command, shell_path
    from fraudlens.queues import SQLiteQueue

    monkeypatch.chdir(tmp_path)  # where the command runs: the hint's paths are from there
    exe, m = fraudlens_command(), shell_path(registry)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    _send(url, _bodies(ulb_records, "a", 5))
    proc = subprocess.Popen(
        _cli(*f"--source queue:{url} --sink {tmp_path}/sink -m models --idle-exit 4".split()),
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        q = SQLiteQueue(tmp_path / "q.db", name="card-events")
        deadline = time.monotonic() + 120
        while q.depth() and proc.poll() is None:  # the first records scored and acked
            assert time.monotonic() < deadline
            time.sleep(0.05)
        shutil.rmtree(registry)
        q.send_batch(_bodies(ulb_records, "b", 7))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, out + err
    text = " ".join(err.split())
    assert "no usable card model in the registry" in text  # the log's warning
    assert f"{exe} cards train --data FILE -m {m}" in text
    assert f"{exe} models activate NAME VERSION -m {m}" in text
    assert f"stopped after --idle-exit 4 s without a usable model in {registry}" in text
    assert "the records stay queued for the next processor" in text
    assert "scored 5 records" in text
    assert q.depth() == 7 and q.dead_letters() == []
    assert sorted(_rows(tmp_path / "sink")) == [f"a{i}" for i in range(5)]
    q.close()


def test_the_cli_refuses_idle_exit_with_every(registry: Path, tmp_path: Path) -> None:
    res = subprocess.run(
        _cli(*f"--source generate -m {registry} --every 1m --idle-exit 5".split()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "give one or the other" in " ".join(res.stderr.split())
