"""The card event processor with real models: file, generate and queue sources into a sink."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.errors import ConfigError, DataError
from fraudlens.processor import CHANNELS, OUTPUT_COLUMNS, parse_source, process
from fraudlens.registry import Registry
from fraudlens.sinks import SPOOL_NAME, open_sink

# Every test here uses models trained for real in the module fixtures.
pytestmark = pytest.mark.slow

ULB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ulb_creditcard_day1.csv"


def sink_rows(root: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    # Published objects only: hidden names are the spool and unfinished temporary files.
    for f in sorted(p for p in root.rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


@pytest.fixture(scope="module")
def ulb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2,400-row ULB file (all frauds of the sample and normal rows)."""
    if not ULB.is_file():
        pytest.skip(f"ULB sample not found at {ULB}")
    df = pd.read_csv(ULB)
    rng = np.random.default_rng(1)
    frauds = np.flatnonzero(df["Class"].to_numpy() == 1)
    normal = rng.choice(
        np.flatnonzero(df["Class"].to_numpy() == 0), 2400 - len(frauds), replace=False
    )
    out = tmp_path_factory.mktemp("data") / "ulb.csv"
    df.iloc[np.sort(np.concatenate([frauds, normal]))].to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def ulb_models(tmp_path_factory: pytest.TempPathFactory, ulb: Path) -> Path:
    from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector

    df = pd.read_csv(ulb)
    X, y = df.drop(columns="Class"), df["Class"].to_numpy()
    root = tmp_path_factory.mktemp("ulb-models")
    reg = Registry(root)
    reg.save(
        XGBoostDetector(n_estimators=40, early_stopping_rounds=None, refit=False, n_jobs=1).fit(
            X, y
        )
    )
    reg.save(AnomalyDetector(n_estimators=30, refit=False).fit(X, y))
    return root


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Simulated raw transactions split in history and live parts, and a model on their features."""
    from fraudlens.cards.detectors import XGBoostDetector
    from fraudlens.cards.features import transaction_features
    from fraudlens.cards.simulate import simulate

    tx = simulate(
        150, 300, 50, seed=3, compromised_terminals_per_day=1, compromised_customers_per_day=1
    )
    X = transaction_features(tx)
    root = tmp_path_factory.mktemp("sim")
    reg = Registry(root / "models")
    det = XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False, n_jobs=1)
    reg.save(det.fit(X, tx["label"].to_numpy()))
    cut = tx["ts"].min() + pd.Timedelta(days=40)
    cols = ["transaction_id", "ts", "customer_id", "terminal_id", "amount", "label"]
    tx[cols].to_csv(root / "all.csv", index=False)
    tx.loc[tx["ts"] < cut, cols].to_csv(root / "history.csv", index=False)
    tx.loc[tx["ts"] >= cut, cols].to_csv(root / "live.csv", index=False)
    return root / "models", root / "all.csv", root / "history.csv"


def test_parse_source() -> None:
    assert parse_source("file:/x/y.csv") == ("file", "/x/y.csv")
    assert parse_source("data.parquet") == ("file", "data.parquet")
    assert parse_source("generate") == ("generate", None)
    assert parse_source("generate:t.csv") == ("generate", "t.csv")
    assert parse_source("queue:sqlite:///q.db") == ("queue", "sqlite:///q.db")
    for bad in ("", "queue:", "http://example.com/x"):
        with pytest.raises(ConfigError):
            parse_source(bad)


def test_file_source_scores_every_row(ulb: Path, ulb_models: Path, tmp_path: Path) -> None:
    stats = process(f"file:{ulb}", tmp_path / "sink", ulb_models, batch_size=700)
    assert stats.records == 2400
    assert stats.batches == 4
    rows = sink_rows(tmp_path / "sink")
    assert len(rows) == 2400
    assert list(rows[0])[: len(OUTPUT_COLUMNS)] == list(OUTPUT_COLUMNS)
    assert [r["transaction_id"] for r in rows] == [str(i) for i in range(1, 2401)]
    assert {r["source"] for r in rows} == {"file"}

    df = pd.read_csv(ulb)
    reg = Registry(ulb_models)
    xgb, iforest = reg.load("cards-xgboost"), reg.load("cards-anomaly")
    features = df.drop(columns="Class")
    np.testing.assert_allclose(
        [float(r["score"]) for r in rows], xgb.decision_function(features), rtol=1e-6
    )
    np.testing.assert_allclose(
        [float(r["anomaly_score"]) for r in rows], iforest.decision_function(features), rtol=1e-9
    )
    assert [int(r["prediction"]) for r in rows] == xgb.predict(features).tolist()
    np.testing.assert_allclose([float(r["amount"]) for r in rows], df["Amount"])
    # The classifier learnt something: frauds are flagged far more often than normal rows.
    pred = np.array([int(r["prediction"]) for r in rows])
    y = df["Class"].to_numpy()
    assert pred[y == 1].mean() > 0.5 > 0.01 > pred[y == 0].mean()
    assert stats.flagged == pred.sum()
    assert not (tmp_path / "sink" / SPOOL_NAME).read_text()


def test_file_source_bad_file(ulb_models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Time,V1,Amount\n0,1.0,3\n")
    with pytest.raises(DataError) as err:
        process(f"file:{bad}", tmp_path / "sink", ulb_models)
    assert err.value.column == "V2"
    assert err.value.file == str(bad)
    ulb_text = ULB.read_text().splitlines()[:4]
    fields = ulb_text[3].split(",")
    fields[5] = "oops"
    ulb_text[3] = ",".join(fields)
    bad.write_text("\n".join(ulb_text) + "\n")
    with pytest.raises(DataError) as err:
        process(f"file:{bad}", tmp_path / "sink", ulb_models)
    assert (err.value.row, err.value.column) == (3, "V5")
    # A source column is bounded like a queued record's: no 1 MB sink cell.
    df = pd.read_csv(ULB, nrows=3)
    df["source"] = ["Web", "S" * 100_000, "Store"]
    df.to_csv(bad, index=False)
    with pytest.raises(DataError, match="source has 100000 characters; at most 64") as err:
        process(f"file:{bad}", tmp_path / "sink", ulb_models)
    assert (err.value.file, err.value.row, err.value.column) == (str(bad), 2, "source")


def test_limit_and_generate(ulb: Path, ulb_models: Path, tmp_path: Path) -> None:
    stats = process(
        f"generate:{ulb}",
        tmp_path / "sink",
        ulb_models,
        limit=130,
        batch_size=50,
        every=0.0,
        seed=7,
    )
    assert stats.records == 130
    assert stats.passes == 3
    rows = sink_rows(tmp_path / "sink")
    assert len(rows) == 130
    assert {r["source"] for r in rows} <= set(CHANNELS)
    assert len({r["source"] for r in rows}) == 3
    assert len({r["transaction_id"] for r in rows}) == 130
    assert all(1 <= int(r["replayed_from"]) <= 2400 for r in rows)
    stamps = pd.to_datetime([r["timestamp"] for r in rows], utc=True)
    assert (stamps >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=5)).all()

    one = process(f"file:{ulb}", tmp_path / "sink2", ulb_models, limit=10)
    assert one.records == 10
    assert len(sink_rows(tmp_path / "sink2")) == 10


def test_generate_from_simulator(sim: tuple[Path, Path, Path], tmp_path: Path) -> None:
    models, _, _ = sim
    stats = process("generate", tmp_path / "sink", models, batch_size=40, seed=1)
    assert stats.records == 40
    rows = sink_rows(tmp_path / "sink")
    assert {"customer_id", "terminal_id", "amount"} <= set(rows[0])
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)


def test_raw_file_with_history_matches_full_file(
    sim: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    models, all_csv, history = sim
    live = all_csv.parent / "live.csv"
    full = process(f"file:{all_csv}", tmp_path / "full", models)
    split = process(f"file:{live}", tmp_path / "split", models, history=history)
    alone = process(f"file:{live}", tmp_path / "alone", models)
    by_id = {r["transaction_id"]: float(r["score"]) for r in sink_rows(tmp_path / "full")}
    with_history = {r["transaction_id"]: float(r["score"]) for r in sink_rows(tmp_path / "split")}
    without = {r["transaction_id"]: float(r["score"]) for r in sink_rows(tmp_path / "alone")}
    assert split.records == alone.records == len(with_history) > 1000
    assert full.records == len(by_id) > split.records
    # With the history, live rows score exactly as they do inside the full file.
    assert all(with_history[k] == pytest.approx(by_id[k], rel=1e-6) for k in with_history)
    # Without it, the window features of early live rows differ.
    assert sum(without[k] != pytest.approx(by_id[k], rel=1e-6) for k in without) > 10


def queue_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def test_queue_source_acks_and_dead_letters(ulb: Path, ulb_models: Path, tmp_path: Path) -> None:
    from fraudlens.queues import open_queue

    df = pd.read_csv(ulb).head(25).drop(columns="Class")
    url = queue_url(tmp_path)
    with open_queue(url, name="card-events") as q:
        for i, rec in enumerate(df.to_dict(orient="records")):
            q.send({"record": {**rec, "transaction_id": f"q{i}"}, "source": "Mobile"})
        q.send({"Time": 1.0, "V1": 0.5})  # most features missing
        bad = {**df.iloc[0].to_dict(), "V3": "seven"}
        q.send(bad)
        q.send("this is not JSON")
        # Unbounded or mistyped fields: no 1 MB sink cell, no id taken from a dict's text.
        q.send({"record": {**df.iloc[1].to_dict(), "transaction_id": "big"}, "source": "S" * 2**20})
        q.send({"record": {**df.iloc[2].to_dict(), "transaction_id": {"id": "q2"}}})
    stats = process(f"queue:{url}", tmp_path / "sink", ulb_models, batch_size=10)
    assert stats.records == 25
    # Counted wherever they happen: the non-JSON text is moved by the queue itself.
    assert stats.dead_lettered == 5
    rows = sink_rows(tmp_path / "sink")
    assert sorted(r["transaction_id"] for r in rows) == sorted(f"q{i}" for i in range(25))
    assert {r["source"] for r in rows} == {"Mobile"}
    xgb = Registry(ulb_models).load("cards-xgboost")
    by_id = {r["transaction_id"]: float(r["score"]) for r in rows}
    np.testing.assert_allclose(
        [by_id[f"q{i}"] for i in range(25)], xgb.decision_function(df), rtol=1e-6
    )
    with open_queue(url, name="card-events") as q:
        assert q.depth() == 0
        reasons = [d["reason"] for d in q.dead_letters()]
    assert any("missing field 'V2'" in r for r in reasons), reasons
    assert any("'V3'" in r and "seven" in r for r in reasons), reasons
    assert any("malformed JSON" in r for r in reasons), reasons
    assert any("'source'" in r and "at most 64" in r for r in reasons), reasons
    assert any("'transaction_id'" in r and "not a dict" in r for r in reasons), reasons
    assert all(len(r) < 500 for r in reasons), reasons


def test_queue_raw_records_with_history(sim: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from fraudlens.queues import open_queue

    models, all_csv, history = sim
    live = pd.read_csv(all_csv.parent / "live.csv").head(60)
    url = queue_url(tmp_path)
    with open_queue(url, name="card-events") as q:
        for rec in live.drop(columns="label").to_dict(orient="records"):
            q.send({**rec, "ts": str(rec["ts"])})
        q.send(
            {
                **live.drop(columns="label").iloc[0].to_dict(),
                "transaction_id": "late",
                "ts": "not a time",
            }
        )
    stats = process(f"queue:{url}", tmp_path / "sink", models, history=history, batch_size=25)
    assert stats.records == 60
    assert stats.dead_lettered == 1
    process(f"file:{all_csv}", tmp_path / "full", models)
    full = {r["transaction_id"]: float(r["score"]) for r in sink_rows(tmp_path / "full")}
    streamed = {r["transaction_id"]: float(r["score"]) for r in sink_rows(tmp_path / "sink")}
    # Streamed in batches, each scored over history + what came before it: same as offline.
    assert all(streamed[k] == pytest.approx(full[k], rel=1e-6) for k in streamed)
    with open_queue(url, name="card-events") as q:
        assert "'ts'" in q.dead_letters()[0]["reason"]


def test_queue_with_remote_sink_flushes_before_ack(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    import uuid

    import fsspec

    from fraudlens.queues import open_queue

    url = queue_url(tmp_path)
    df = pd.read_csv(ulb).head(5).drop(columns="Class")
    with open_queue(url, name="card-events") as q:
        for rec in df.to_dict(orient="records"):
            q.send(rec)
    root = f"memory://proc-{uuid.uuid4().hex}"
    with open_sink(root, timer=False) as sink:
        stats = process(f"queue:{url}", sink, ulb_models)
        # Acked only after the rows were written out: they are already in an object.
        assert sink.buffered == 0
    assert stats.records == 5
    (obj,) = fsspec.filesystem("memory").find(root.replace("memory://", "/"))
    assert len(fsspec.filesystem("memory").cat_file(obj).decode().splitlines()) == 6


def test_stop_event_finishes_and_flushes(ulb: Path, ulb_models: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []

    def on_batch(stats: object) -> None:
        seen.append(stats.records)  # type: ignore[attr-defined]
        if len(seen) == 3:
            stop.set()

    with open_sink(tmp_path / "sink", max_seconds=3600, timer=False) as sink:
        stats = process(
            f"generate:{ulb}",
            sink,
            ulb_models,
            every=0.01,
            batch_size=5,
            stop_event=stop,
            on_batch=on_batch,
        )
        assert sink.buffered == 0  # flushed on stop although no threshold was reached
    assert stats.records == 15
    assert len(sink_rows(tmp_path / "sink")) == 15


CHILD = textwrap.dedent(
    """
    import sys
    from fraudlens.processor import process

    stats = process("generate:" + sys.argv[1], sys.argv[2], sys.argv[3], every=0.05, batch_size=3,
                    on_batch=lambda s: print(s.records, flush=True))
    print("done", stats.records, flush=True)
    """
)


def test_sigterm_stops_cleanly(ulb: Path, ulb_models: Path, tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ulb), str(sink), str(ulb_models)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if int(line) >= 9:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    done = [line for line in out.splitlines() if line.startswith("done")]
    assert done, out
    total = int(done[0].split()[1])
    assert total >= 9 and total % 3 == 0
    assert len(sink_rows(sink)) == total
    assert (sink / SPOOL_NAME).read_text() == ""


def test_no_model(tmp_path: Path, ulb: Path) -> None:
    from fraudlens.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        process(f"file:{ulb}", tmp_path / "sink", tmp_path / "models")


def test_cli_process(ulb: Path, ulb_models: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.cli.serve import parse_duration

    assert [parse_duration(x) for x in ("60", "60s", "5m", "1h")] == [60, 60, 300, 3600]
    result = CliRunner().invoke(
        app,
        [
            "cards",
            "process",
            "--source",
            f"file:{ulb}",
            "--sink",
            str(tmp_path / "sink"),
            "-m",
            str(ulb_models),
            "--limit",
            "50",
            "--format",
            "jsonl",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "scored 50 records" in result.output
    lines = [
        json.loads(x)
        for f in (tmp_path / "sink").rglob("*.jsonl")
        if not f.name.startswith(".")  # not the spool (.spool.jsonl)
        for x in f.read_text().splitlines()
    ]
    assert len(lines) == 50
    bad = CliRunner().invoke(
        app,
        [
            "cards",
            "process",
            "--source",
            "file:/nonexistent.csv",
            "--sink",
            str(tmp_path / "s2"),
            "-m",
            str(ulb_models),
        ],
    )
    assert bad.exit_code == 2
    assert "no such file" in bad.output


def test_cli_process_every_longer_than_a_wait_can_be_is_refused(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """`cards process --every 1e12s` scored its first pass, then ended in an
    OverflowError traceback (exit 1) from the wait for the next one."""
    from typer.testing import CliRunner

    from fraudlens.cli import app

    result = CliRunner().invoke(
        app,
        ["cards", "process", "--source", f"file:{ulb}", "--sink", str(tmp_path / "sink"),
         "-m", str(ulb_models), "--every", "1e12s"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "--every '1e12s': at most" in result.output
    assert not (tmp_path / "sink").exists()


def test_every_shorter_than_a_second_is_refused() -> None:
    """`--every 1e-9s` re-read the file back to back: a busy loop, not a schedule."""
    from fraudlens.cli.serve import parse_duration
    from fraudlens.errors import ConfigError

    for text in ("1e-9s", "0.5", "0.001m"):
        with pytest.raises(ConfigError, match="at least 1 s between passes"):
            parse_duration(text)
    assert parse_duration("1") == 1.0 and parse_duration("0.5m") == 30.0


# -------------------------------------------------------------- checkpoints and outages


KILLED_CHILD = textwrap.dedent(
    """
    import sys
    from fraudlens.processor import process
    from fraudlens.sinks import open_sink

    source, root, models = sys.argv[1:4]
    with open_sink(root, max_records=300, timer=False) as sink:
        stats = process(source, sink, models, batch_size=40,
                        on_batch=lambda s: print(s.records, flush=True))
    print("done", stats.records, stats.resumed_from, flush=True)
    """
)


def test_kill_9_mid_file_then_restart_leaves_each_record_once(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """The file source's position is checkpointed with the sink's spool: a processor
    killed with SIGKILL mid-file, three times, and restarted ends with every input row
    exactly once in the sink."""
    df = pd.read_csv(ulb).drop(columns="Class")
    big = pd.concat([df] * 5, ignore_index=True)
    big["transaction_id"] = [f"t{i}" for i in range(len(big))]
    data = tmp_path / "cards.csv"
    big.to_csv(data, index=False)
    root = tmp_path / "sink"
    cmd = [sys.executable, "-c", KILLED_CHILD, f"file:{data}", str(root), str(ulb_models)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seen = []
    for kill_after in (1500, 3100, 7000):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            assert not line.startswith("done"), "the run ended before the kill"
            if int(line) >= kill_after - (seen[-1] if seen else 0):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        seen.append(kill_after)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    final = done.stdout.strip().splitlines()[-1].split()
    assert final[0] == "done" and int(final[2]) > 0  # it resumed from a checkpoint
    rows = sink_rows(root)
    ids = [r["transaction_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(big)
    assert (root / SPOOL_NAME).read_text() == ""
    # A further run on the same file has nothing left to do.
    again = process(f"file:{data}", root, ulb_models)
    assert again.records == 0 and again.resumed_from == len(big)
    assert len(sink_rows(root)) == len(big)


def test_a_sink_that_cannot_write_pauses_the_processor(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """Objects cannot be written (the partition folder's place is taken by a file): the
    processor hands its batch back, reports itself unhealthy and probes; once the sink
    can write again it finishes, with each row exactly once."""
    from datetime import UTC, datetime

    from prometheus_client import generate_latest

    from fraudlens.processor import ProcessorMetrics

    root = tmp_path / "sink"
    root.mkdir()
    blocker = root / datetime.now(UTC).strftime("%Y")
    blocker.write_text("not a folder")
    metrics = ProcessorMetrics()
    down: list[bytes] = []

    def unblock() -> None:
        deadline = time.monotonic() + 60
        while b"fraudlens_processor_healthy 0.0" not in generate_latest(metrics.registry):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        down.append(generate_latest(metrics.registry))
        time.sleep(1.0)
        blocker.unlink()

    fixer = threading.Thread(target=unblock)
    fixer.start()
    with open_sink(root, max_records=200, timer=False) as sink:
        stats = process(
            f"file:{ulb}", sink, ulb_models, batch_size=100, metrics=metrics, pause_cap=0.2
        )
    fixer.join()
    assert down
    assert stats.outages == 1 and stats.released > 0 and stats.paused_seconds >= 0.5
    assert stats.records == 2400
    ids = [r["transaction_id"] for r in sink_rows(root)]
    assert len(ids) == len(set(ids)) == 2400
    text = generate_latest(metrics.registry).decode()
    assert "fraudlens_processor_healthy 1.0" in text
    assert 'fraudlens_processor_messages_total{outcome="processed"} 2400.0' in text


def test_stopped_while_the_sink_is_down_says_where_the_records_wait(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """Stopped (SIGTERM, the stop event) while paused by a sink that cannot write, the
    processor's last flush failed and the sink's close ended the run with the bare
    OSError ('cannot use .../2026/12/03/06: Not a directory'), saying nothing of the
    records. Its error now says how many were not written and that they stay in the
    spool; the next run writes them, each row once. The background flush, failing every
    second meanwhile, logs one warning instead of a traceback a second."""
    import logging
    from datetime import UTC, datetime

    from prometheus_client import generate_latest

    from fraudlens.errors import UnavailableError
    from fraudlens.processor import ProcessorMetrics

    root = tmp_path / "sink"
    root.mkdir()
    blocker = root / datetime.now(UTC).strftime("%Y")
    blocker.write_text("not a folder")
    metrics = ProcessorMetrics()
    stop = threading.Event()

    def stop_when_paused() -> None:
        deadline = time.monotonic() + 60
        while b"fraudlens_processor_healthy 0.0" not in generate_latest(metrics.registry):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(2.5)  # the background flush fails a few times meanwhile
        stop.set()

    stopper = threading.Thread(target=stop_when_paused)
    stopper.start()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("fraudlens.sinks").addHandler(handler)
    try:
        with (
            pytest.raises(UnavailableError) as info,
            open_sink(root, max_records=200, max_seconds=0.5) as sink,
        ):
            process(
                f"file:{ulb}",
                sink,
                ulb_models,
                batch_size=100,
                metrics=metrics,
                pause_cap=0.2,
                stop_event=stop,
                handle_signals=False,
            )
    finally:
        logging.getLogger("fraudlens.sinks").removeHandler(handler)
    stopper.join()
    text = str(info.value)
    assert f"sink {root} cannot write (Not a directory: {root}" in text, text
    assert f"records not written stay in its spool {root / SPOOL_NAME}" in text, text
    background = [r for r in records if "background sink flush failed" in r.getMessage()]
    assert len(background) == 1 and background[0].exc_info is None, background
    assert sink_rows(root) == []
    blocker.unlink()
    with open_sink(root, max_records=200, timer=False) as sink:
        assert sink.recovered > 0
        process(f"file:{ulb}", sink, ulb_models, batch_size=100, handle_signals=False)
    ids = [r["transaction_id"] for r in sink_rows(root)]
    assert len(ids) == len(set(ids)) == 2400


def test_processor_metrics_count_queue_outcomes(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    from prometheus_client import generate_latest

    from fraudlens.processor import ProcessorMetrics
    from fraudlens.queues import open_queue

    url = queue_url(tmp_path)
    df = pd.read_csv(ulb).head(12).drop(columns="Class")
    with open_queue(url, name="card-events") as q:
        for i, rec in enumerate(df.to_dict(orient="records")):
            q.send({"record": {**rec, "transaction_id": f"m{i}"}})
        q.send(
            {
                "transaction_id": "a\x00b",
                "ts": "2026-01-01T00:00:00",
                "customer_id": "c",
                "terminal_id": "t",
                "amount": 3.0,
            }
        )
        q.send("{broken")
    metrics = ProcessorMetrics()
    stats = process(f"queue:{url}", tmp_path / "sink", ulb_models, metrics=metrics)
    assert stats.records == 12 and stats.dead_lettered == 2
    text = generate_latest(metrics.registry).decode()
    assert 'fraudlens_processor_messages_total{outcome="processed"} 12.0' in text
    assert 'fraudlens_processor_messages_total{outcome="dead_lettered"} 2.0' in text
    with open_queue(url, name="card-events") as q:
        reasons = sorted(d["reason"] for d in q.dead_letters())
    assert any("U+0000" in r for r in reasons), reasons


QUEUE_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from fraudlens.processor import process
    from fraudlens.queues import SQLiteQueue
    from fraudlens.sinks import open_sink

    source, root, models = sys.argv[1:4]
    kill_at_ack = int(os.environ.get("KILL_AT_ACK", "0"))
    kill_after_ack = int(os.environ.get("KILL_AFTER_ACK", "0"))
    lease = float(os.environ.get("LEASE", "0.5"))
    if kill_at_ack or kill_after_ack:
        # Fault injection: die by SIGKILL at the n-th ack, after the sink's durable write
        # of its rows and before the queue heard of the ack (KILL_AT_ACK), or just after
        # the queue made it (KILL_AFTER_ACK); the code under test is as is.
        calls = []
        real_ack_many = SQLiteQueue.ack_many

        def ack_many(self, msgs):
            calls.append(1)
            if len(calls) == kill_at_ack:
                os.kill(os.getpid(), signal.SIGKILL)
            real_ack_many(self, msgs)
            if len(calls) == kill_after_ack:
                os.kill(os.getpid(), signal.SIGKILL)

        SQLiteQueue.ack_many = ack_many
    with open_sink(root, max_records=300, timer=False) as sink:
        stats = process(source, sink, models, batch_size=40, visibility_timeout=lease,
                        on_batch=lambda s: print(s.records, flush=True))
    print("done", stats.records, getattr(stats, "repeats", -1), flush=True)
    """
)


def _fill_queue(url: str, ulb: Path, copies: int) -> list[str]:
    from fraudlens.queues import open_queue

    df = pd.read_csv(ulb).drop(columns="Class")
    big = pd.concat([df] * copies, ignore_index=True)
    ids = [f"q{i}" for i in range(len(big))]
    with open_queue(url, name="card-events") as q:
        q.send_batch(
            [
                {"record": {**rec, "transaction_id": tid}}
                for tid, rec in zip(ids, big.to_dict(orient="records"), strict=True)
            ]
        )
    return ids


def _finish_queue(cmd: list[str], env: dict[str, str], root: Path, url: str, ids: list[str]) -> int:
    """Run the child to the end (after the leases of a killed run ran out) and check that
    every record is in the sink exactly once, the queue empty and no unacked id kept."""
    from fraudlens.queues import open_queue

    time.sleep(0.7)  # the killed run's leases (0.5 s) run out: its messages come back
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    final = done.stdout.strip().splitlines()[-1].split()
    assert final[0] == "done"
    got = [r["transaction_id"] for r in sink_rows(root)]
    dup = sorted({i for i in got if got.count(i) > 1})
    assert not dup, f"{len(got) - len(set(got))} rows written twice: {dup[:10]}"
    assert sorted(got) == sorted(ids)
    assert (root / SPOOL_NAME).read_text() == ""
    with open_queue(url, name="card-events") as q:
        assert q.depth() == 0
    saved = json.loads((root / ".checkpoints.json").read_text())
    assert [v["unacked"] for k, v in saved.items() if k.startswith("queue:sqlite:")] == [[]]
    return int(final[2])


def _killed_at_the_third_ack(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> tuple[str, list[str], Path, list[str], dict[str, str], subprocess.CompletedProcess[str]]:
    """A queue filled with the ULB sample and a processor child SIGKILLed exactly between
    its third batch's spool write and its ack: the queue URL, the records' ids, the sink
    root, the child's command and environment, and the killed run."""
    url = queue_url(tmp_path)
    ids = _fill_queue(url, ulb, 1)
    root = tmp_path / "sink"
    cmd = [sys.executable, "-c", QUEUE_CHILD, f"queue:{url}", str(root), str(ulb_models)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = subprocess.run(
        cmd, capture_output=True, text=True, env={**env, "KILL_AT_ACK": "3"}, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    return url, ids, root, cmd, env, killed


def test_queue_kill_9_between_spool_and_ack_writes_nothing_twice(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """SIGKILL exactly between the sink's durable write of a batch and its ack: the
    restarted processor gets the batch again and acks it without writing its rows again
    (the old code wrote its 40 rows twice)."""
    url, ids, root, cmd, env, killed = _killed_at_the_third_ack(ulb, ulb_models, tmp_path)
    assert killed.stdout.split() == ["40", "80"]  # two batches acked, the third killed
    repeats = _finish_queue(cmd, env, root, url, ids)
    assert repeats == 40  # the killed batch: acked, not written again


def test_queue_ids_of_a_deleted_queue_file_do_not_swallow_the_new_files_messages(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """SIGKILL between the third batch's spool write and its ack (the sink keeps row ids
    81-120 as unacked), then the queue file is deleted and made again with 200 new
    records, whose row ids start at 1 again. The restarted processor took rows 81-120
    of the new file for the killed batch coming back and acked them without writing
    them: 40 records lost. The ids now carry the queue file's incarnation, and ids of
    another one are not kept."""
    from fraudlens.queues import open_queue

    url, ids, root, cmd, env, _ = _killed_at_the_third_ack(ulb, ulb_models, tmp_path)
    assert len(_saved_unacked(root, url)) == 40
    for f in tmp_path.glob("q.db*"):
        f.unlink()
    df = pd.read_csv(ulb).drop(columns="Class").head(200)
    fresh = [f"n{i}" for i in range(len(df))]
    with open_queue(url, name="card-events") as q:
        q.send_batch(
            [
                {"record": {**rec, "transaction_id": tid}}
                for tid, rec in zip(fresh, df.to_dict(orient="records"), strict=True)
            ]
        )
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "0"  # no repeats
    got = [r["transaction_id"] for r in sink_rows(root)]
    # The killed run's 120 (its last batch from the spool) and every new record, once.
    assert sorted(got) == sorted([*ids[:120], *fresh])


def _saved_unacked(root: Path, url: str) -> list[str]:
    """The unacked ids the sink holds for the queue (its spool replayed, as the next run
    would: a killed run's last checkpoint is in the spool)."""
    from fraudlens.processor import _queue_key
    from fraudlens.queues import open_queue

    with open_queue(url, name="card-events") as q, open_sink(root, timer=False) as sink:
        saved = sink.checkpoint(_queue_key(q))
    return [str(i) for i in saved["unacked"]]


def test_queue_ids_of_a_run_killed_after_its_ack_go_with_the_next_short_run(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """SIGKILL just after the queue made the last batch's ack: the sink still lists the
    batch's ids as unacked (the next put would have dropped them). They never come back,
    and the next run, however short (here: it finds the queue empty at once), drops them
    once they are older than a lease by the time the checkpoint recorded. The old code
    aged them from the start of the next run, so every run shorter than 1.1 lease +
    0.5 s kept them (the three-kill test failed when the last run drained in < 1.05 s)."""
    url = queue_url(tmp_path)
    ids = _fill_queue(url, ulb, 1)
    root = tmp_path / "sink"
    cmd = [sys.executable, "-c", QUEUE_CHILD, f"queue:{url}", str(root), str(ulb_models)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    batches = len(ids) // 40
    killed = subprocess.run(
        cmd, capture_output=True, text=True, env={**env, "KILL_AFTER_ACK": str(batches)}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout.split()[-1] == str(len(ids) - 40)  # the last batch: acked, killed
    assert len(_saved_unacked(root, url)) == 40
    time.sleep(0.5)  # with _finish_queue's 0.7 s: older than 1.1 lease + 0.5 s (1.05 s)
    assert _finish_queue(cmd, env, root, url, ids) == 0


def test_queue_ids_taken_within_a_lease_are_kept_across_a_restart(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """The saved ages never drop an id whose message may still come back: killed before
    the last batch's ack (lease 5 s), a run started at once finds the queue empty (the
    batch is leased) and keeps the ids; once the lease ran out, the next run gets the
    batch back and acks it without writing it again."""
    url = queue_url(tmp_path)
    ids = _fill_queue(url, ulb, 1)
    root = tmp_path / "sink"
    cmd = [sys.executable, "-c", QUEUE_CHILD, f"queue:{url}", str(root), str(ulb_models)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LEASE": "5"}
    batches = len(ids) // 40
    killed = subprocess.run(
        cmd, capture_output=True, text=True, env={**env, "KILL_AT_ACK": str(batches)}
    )
    killed_at = time.monotonic()
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    held = _saved_unacked(root, url)
    assert len(held) == 40
    # In this process (no start-up to wait for): well within the lease.
    early = process(f"queue:{url}", root, ulb_models, batch_size=40, visibility_timeout=5.0)
    assert time.monotonic() - killed_at < 4.5, "the early run came too late to test this"
    assert (early.records, early.repeats) == (0, 0)  # the batch is still leased
    assert _saved_unacked(root, url) == held
    time.sleep(max(0.0, killed_at + 5.2 - time.monotonic()))
    assert _finish_queue(cmd, env, root, url, ids) == 40


def test_queue_kill_9_three_times_leaves_each_record_once(
    ulb: Path, ulb_models: Path, tmp_path: Path
) -> None:
    """A processor on a SQLite queue with a spooled sink, killed by SIGKILL at random
    points three times and restarted, ends with every record exactly once in the sink."""
    import random

    url = queue_url(tmp_path)
    ids = _fill_queue(url, ulb, 3)
    root = tmp_path / "sink"
    cmd = [sys.executable, "-c", QUEUE_CHILD, f"queue:{url}", str(root), str(ulb_models)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        kill_after = rng.randrange(40, 1600)
        for line in proc.stdout:
            assert not line.startswith("done"), f"the run ended before the kill (seed {seed})"
            if int(line) >= kill_after:
                break
        # Anywhere within the next batch: scoring, spooling, acking.
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(0.7)  # leases of the killed run run out before the next one
    _finish_queue(cmd, env, root, url, ids)
