"""The Firehose-like sink: complete objects, hour partitions, flush triggers, crash spool."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fraudlens.errors import ConfigError
from fraudlens.sinks import _FLUSH_MARK, CHECKPOINTS_NAME, SPOOL_NAME, open_sink

NAME = re.compile(
    r"^scores-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}"
    r"-[0-9a-f]{4}-[0-9a-f]{12}\.csv$"
)


def objects(root: Path) -> list[Path]:
    """The sink's published objects: visible files only.

    ``atomic_write`` first writes each object to a hidden temporary file (``.<name>...``)
    and renames it into place; a poll that listed hidden files too could catch one while
    it is still empty. The spool is hidden as well.
    """
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_rows(files: list[Path]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for f in files:
        with open(f, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def test_many_puts_all_rows_land_in_complete_partitioned_files(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    with open_sink(tmp_path, max_records=37, timer=False) as sink:
        for i in range(500):
            sink.put({"transaction_id": f"t{i}", "score": i / 500, "prediction": i % 2})
        # 500 // 37 full objects were written by size; the rest waits in the buffer.
        assert len(sink.written) == 500 // 37
        assert sink.buffered == 500 % 37
    after = datetime.now(UTC)
    files = objects(tmp_path)
    assert len(files) == 500 // 37 + 1
    assert not [p for p in tmp_path.rglob("*.tmp")]
    hours = {before.strftime("%Y/%m/%d/%H"), after.strftime("%Y/%m/%d/%H")}
    for f in files:
        assert NAME.match(f.name), f.name
        assert f.parent.relative_to(tmp_path).as_posix() in hours
        assert f.read_text().splitlines()[0] == "transaction_id,score,prediction"
    rows = read_rows(files)
    assert sorted(int(r["transaction_id"][1:]) for r in rows) == list(range(500))
    assert {r["prediction"] for r in rows} == {"0", "1"}
    # The spool is emptied once everything is written.
    assert (tmp_path / SPOOL_NAME).stat().st_size == 0


def test_objects_and_checkpoints_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    """They were written as mkstemp's 0600: a job of another user reading the sink's
    objects could not."""
    old = os.umask(0o022)
    try:
        with open_sink(tmp_path, max_records=2, timer=False) as sink:
            sink.put_many([{"id": 1}, {"id": 2}], checkpoint={"file": 2})
    finally:
        os.umask(old)
    (obj,) = objects(tmp_path)
    assert obj.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / CHECKPOINTS_NAME).stat().st_mode & 0o777 == 0o644


def test_flush_on_bytes(tmp_path: Path) -> None:
    with open_sink(tmp_path, max_bytes=2000, timer=False) as sink:
        for i in range(10):
            sink.put({"id": i, "payload": "x" * 300})
        assert len(sink.written) >= 1
        # ~320 bytes per record: a flush happens every 7th record.
        assert len(read_rows([Path(sink.written[0])])) == 7


def test_flush_on_interval_by_timer(tmp_path: Path) -> None:
    with open_sink(tmp_path, max_seconds=0.3) as sink:
        sink.put({"id": 1})
        assert objects(tmp_path) == []
        deadline = time.monotonic() + 5
        while not objects(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        files = objects(tmp_path)
        assert len(files) == 1
        assert read_rows(files) == [{"id": "1"}]


def test_a_checkpoint_alone_does_not_start_the_age_clock(tmp_path: Path) -> None:
    """A put that carries only a checkpoint (the card processor's record of confirmed
    acks) buffers nothing, so the next record's object is not due on age at once."""
    with open_sink(tmp_path, max_seconds=0.2, timer=False) as sink:
        sink.put_many([], checkpoint={"queue:test": {"unacked": []}})
        time.sleep(0.3)
        sink.put({"id": 1})
        assert objects(tmp_path) == [] and sink.buffered == 1
        time.sleep(0.25)
        sink.put({"id": 2})
        assert len(objects(tmp_path)) == 1


def test_a_close_after_a_checkpoint_alone_leaves_the_spool_empty(tmp_path: Path) -> None:
    """A close with nothing buffered saves the checkpoint of a put that carried only
    one (the card processor's last record of its unacked ids) and empties the spool, as a
    flush of records does; the checkpoint is read back after it. The old code saved it
    but left the put in the spool."""
    root = tmp_path / "sink"
    with open_sink(root, timer=False) as sink:
        sink.put_many([{"id": 1}], checkpoint={"queue:test": {"unacked": ["7"]}})
        sink.flush()
        sink.put_many([], checkpoint={"queue:test": {"unacked": []}})
        assert (root / SPOOL_NAME).read_text() != ""
    assert (root / SPOOL_NAME).read_text() == ""
    assert json.loads((root / CHECKPOINTS_NAME).read_text()) == {"queue:test": {"unacked": []}}
    with open_sink(root, timer=False) as again:
        assert again.recovered == 0 and again.checkpoint("queue:test") == {"unacked": []}
    assert [int(r["id"]) for r in read_rows(objects(root))] == [1]


def test_flush_on_interval_checked_on_put(tmp_path: Path) -> None:
    with open_sink(tmp_path, max_seconds=0.2, timer=False) as sink:
        sink.put({"id": 1})
        time.sleep(0.25)
        assert objects(tmp_path) == []
        sink.put({"id": 2})  # the buffer is now old enough: this put flushes it
        assert len(objects(tmp_path)) == 1
        assert [r["id"] for r in read_rows(objects(tmp_path))] == ["1", "2"]


def test_columns_union_and_empty_cells(tmp_path: Path) -> None:
    with open_sink(tmp_path, timer=False) as sink:
        sink.put_many([{"a": 1, "b": None}, {"a": 2, "c": float("nan")}, {"c": "x,y"}])
    text = objects(tmp_path)[0].read_text()
    assert text.splitlines()[0] == "a,b,c"
    assert read_rows(objects(tmp_path)) == [
        {"a": "1", "b": "", "c": ""},
        {"a": "2", "b": "", "c": ""},
        {"a": "", "b": "", "c": "x,y"},
    ]


def test_jsonl_format(tmp_path: Path) -> None:
    with open_sink(tmp_path, fmt="jsonl", timer=False) as sink:
        sink.put_many({"id": i, "score": 0.5} for i in range(3))
    (f,) = objects(tmp_path)
    assert f.suffix == ".jsonl"
    assert [json.loads(line)["id"] for line in f.read_text().splitlines()] == [0, 1, 2]


def test_fsspec_memory_filesystem_target() -> None:
    # fsspec's in-memory filesystem: the same remote code path s3:// takes (not S3 itself).
    import fsspec

    root = f"memory://sinktest-{uuid.uuid4().hex}"
    with open_sink(root, max_records=4, timer=False) as sink:
        assert not sink.durable
        sink.put_many({"id": i} for i in range(10))
    fs = fsspec.filesystem("memory")
    found = sorted(fs.find(root.replace("memory://", "/")))
    assert len(found) == 3
    assert all(re.search(r"/\d{4}/\d{2}/\d{2}/\d{2}/scores-", p) for p in found)
    ids = []
    for p in found:
        lines = fs.cat_file(p).decode().splitlines()
        assert lines[0] == "id"
        ids += [int(x) for x in lines[1:]]
    assert sorted(ids) == list(range(10))
    assert sink.written[0].startswith("memory://")


@pytest.mark.parametrize("target", ["file://", "", " "])
def test_a_local_sink_naming_no_folder_is_refused(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--sink file://`` wrote the objects' hour folders and the spool into the working
    folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"names no folder: give one, e\.g\. file:///srv/sink"):
        open_sink(target, timer=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["memory://", "memory:///", "s3://", "s3:///"])
def test_a_remote_sink_naming_no_bucket_or_folder_is_refused(target: str) -> None:
    """A remote sink with nothing after the scheme wrote its objects' hour folders from
    the store's top: on S3 the year became the bucket (``s3://2026/12/03/...``, someone
    else's bucket, or botocore's traceback without credentials)."""
    if target.startswith("s3"):
        pytest.importorskip("s3fs")
    with pytest.raises(ConfigError, match=r"names no bucket or folder: give one, e.g\."):
        open_sink(target, timer=False)


def test_remote_sink_with_local_spool_recovers(tmp_path: Path) -> None:
    import fsspec

    root = f"memory://sinktest-{uuid.uuid4().hex}"
    spool = tmp_path / "remote.spool.jsonl"
    sink = open_sink(root, spool=spool, timer=False)
    sink.put_many({"id": i} for i in range(5))
    # Five records and the put's end mark (after the spool's header line).
    assert [ln for ln in spool.read_text().splitlines() if ln.startswith("{")] == [
        f'{{"id":{i}}}' for i in range(5)
    ]
    # Abandon the sink without closing (as a crash would), then reopen.
    sink._spool.close()  # type: ignore[union-attr]
    with open_sink(root, spool=spool, timer=False) as again:
        assert again.recovered == 5
    fs = fsspec.filesystem("memory")
    (obj,) = fs.find(root.replace("memory://", "/"))
    assert fs.cat_file(obj).decode().splitlines()[1:] == [str(i) for i in range(5)]


def test_a_remote_sink_whose_client_refuses_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A remote store's client raises its own exceptions, not OSError: with no AWS
    credentials (botocore's NoCredentialsError) or a bad bucket name (ParamValidationError)
    `cards process --sink s3://...` ended in a traceback as the sink was opened."""
    from fsspec.implementations.memory import MemoryFileSystem

    class NoCredentialsError(Exception):  # botocore's is no OSError either
        pass

    def refuse(self: object, path: str, **kwargs: object) -> bool:
        raise NoCredentialsError("Unable to locate credentials")

    monkeypatch.setattr(MemoryFileSystem, "exists", refuse)
    root = f"memory://sinktest-{uuid.uuid4().hex}"
    with pytest.raises(ConfigError, match="NoCredentialsError: Unable to locate credentials"):
        open_sink(root, timer=False)


def test_a_link_or_fifo_at_the_spool_is_refused_untouched(tmp_path: Path) -> None:
    """The spool is read whole and truncated after each flush: a link planted at its name
    had emptied the file it led to, outside the sink's folder (and a FIFO there hung the
    sink's opening)."""
    root = tmp_path / "sink"
    root.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("precious data\n")
    (root / SPOOL_NAME).symlink_to(victim)
    with pytest.raises(ConfigError, match="is a link"):
        open_sink(root, timer=False)
    assert victim.read_text() == "precious data\n"
    (root / SPOOL_NAME).unlink()
    os.mkfifo(root / SPOOL_NAME)
    with pytest.raises(ConfigError, match="not a plain file"):
        open_sink(root, timer=False)
    # The checkpoints are read whole too: a link to /dev/zero had been read without end.
    (root / SPOOL_NAME).unlink()
    (root / CHECKPOINTS_NAME).symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="not a plain file"):
        open_sink(root, timer=False)


def test_bad_settings_and_second_owner(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_sink(tmp_path, fmt="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        open_sink(tmp_path, max_records=0)
    with open_sink(tmp_path, timer=False), pytest.raises(ConfigError, match="in use"):
        open_sink(tmp_path, timer=False)
    sink = open_sink(tmp_path, timer=False)
    sink.close()
    with pytest.raises(ConfigError, match="closed"):
        sink.put({"a": 1})


def test_a_checkpoint_file_nested_too_deeply_is_refused(tmp_path: Path) -> None:
    # json raises RecursionError, not ValueError, on it: open_sink ended in a traceback.
    root = tmp_path / "sink"
    root.mkdir()
    (root / CHECKPOINTS_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        open_sink(root, timer=False)


@pytest.mark.parametrize("text", ["[]", "null", "3", '"x"'])
def test_a_checkpoint_file_that_is_not_an_object_is_refused(tmp_path: Path, text: str) -> None:
    # Read as "no checkpoints", it would start a file source from row 1 again and write
    # its records twice.
    root = tmp_path / "sink"
    root.mkdir()
    (root / CHECKPOINTS_NAME).write_text(text)
    with pytest.raises(ConfigError, match="not the object of sources' checkpoints"):
        open_sink(root, timer=False)


@pytest.mark.parametrize("text", ["", "\n", '{"file:a": {"off'])
def test_an_empty_or_truncated_checkpoint_file_is_refused_naming_it(
    tmp_path: Path, text: str
) -> None:
    """An empty .checkpoints.json (a damaged file: it is only ever written whole, as an
    object) was read as "no checkpoints": `cards process --source file:F` then wrote
    every row of F a second time."""
    root = tmp_path / "sink"
    root.mkdir()
    (root / CHECKPOINTS_NAME).write_text(text)
    with pytest.raises(ConfigError) as info:
        open_sink(root, timer=False)
    assert str(root / CHECKPOINTS_NAME) in str(info.value)
    assert "remove it to start every source from its beginning" in str(info.value)


def test_a_spool_with_bytes_that_are_not_text_is_refused_naming_it(tmp_path: Path) -> None:
    """The spool is ASCII JSON lines; bytes damaged on disk made opening the sink (and
    `cards process`) end in a UnicodeDecodeError traceback."""
    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    sink.put_many([{"id": 1}])
    sink._spool.close()  # type: ignore[union-attr]  # "crash": the put stays spooled
    spool = root / SPOOL_NAME
    spool.write_bytes(spool.read_bytes() + b"\xd9\x00garbage\n")
    with pytest.raises(ConfigError, match="is damaged") as info:
        open_sink(root, timer=False)
    assert str(spool) in str(info.value)
    # once moved aside, the sink opens (and the lock was released)
    spool.rename(root / "spool.damaged")
    open_sink(root, timer=False).close()


def test_concurrent_puts_from_threads(tmp_path: Path) -> None:
    with open_sink(tmp_path, max_records=50, max_seconds=0.05) as sink:

        def work(k: int) -> None:
            for i in range(200):
                sink.put({"id": f"{k}-{i}"})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = read_rows(objects(tmp_path))
    assert len(rows) == 800
    assert len({r["id"] for r in rows}) == 800


CHILD = textwrap.dedent(
    """
    import sys
    from fraudlens.sinks import open_sink

    sink = open_sink(sys.argv[1], max_records=100, timer=False)
    for i in range(10**9):
        sink.put_many([{"id": i, "score": 0.25}])
        print(i, flush=True)
    """
)


def test_spool_replay_after_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "sink"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acked = -1
    # Kill mid-stream, well past a few size-triggered flushes and between them.
    for line in proc.stdout:
        acked = int(line)
        if acked >= 250:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    before = read_rows(objects(root))
    assert len(before) < acked + 1  # some accepted records were only in the buffer

    with open_sink(root, timer=False) as sink:
        assert sink.recovered >= acked + 1 - len(before)
    rows = read_rows(objects(root))
    ids = {int(r["id"]) for r in rows}
    # Every record whose put returned (printed) is in some object: nothing was lost.
    assert set(range(acked + 1)) <= ids
    # Every published object is whole. A kill during a write can leave a hidden temporary
    # file behind, but never a visible partial object.
    assert all(r.keys() == {"id", "score"} and r["score"] == "0.25" for r in rows)
    assert not [p for p in root.rglob("*.tmp") if not p.name.startswith(".")]


# --------------------------------------------------------- checkpoints and exactly once


def test_checkpoints_are_durable_with_their_records(tmp_path: Path) -> None:
    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    assert sink.checkpoint("file:a") is None
    sink.put_many([{"id": 0}, {"id": 1}], checkpoint={"file:a": {"offset": 2}})
    sink.put_many([{"id": 2}], checkpoint={"file:a": {"offset": 3}, "file:b": 7})
    assert sink.checkpoint("file:a") == {"offset": 3}
    # A crash: the buffer is gone, the spool stays.
    sink._spool.close()  # type: ignore[union-attr]
    again = open_sink(root, timer=False)
    assert again.recovered == 3
    assert again.checkpoint("file:a") == {"offset": 3} and again.checkpoint("file:b") == 7
    again.close()
    # Once flushed, the checkpoints live beside the objects.
    assert json.loads((root / ".checkpoints.json").read_text())["file:a"] == {"offset": 3}
    with open_sink(root, timer=False) as third:
        assert third.recovered == 0 and third.checkpoint("file:b") == 7
    assert sorted(int(r["id"]) for r in read_rows(objects(root))) == [0, 1, 2]


def test_a_sink_folder_deleted_under_the_sink_loses_no_accepted_record(tmp_path: Path) -> None:
    """The sink's folder is deleted (``rm -rf``) while the sink runs, then the process
    crashes. Puts went on to the removed spool, fsynced where no later run looks, and
    were accepted (the processor acked their queue messages): the next run recovered
    none of them (a card processor on a SQLite queue: 980 of 3,000 records written,
    2,000 acked and lost). Now the spool is made again at its path, with the records
    accepted and not yet written out and the checkpoints, before the next put."""
    import shutil

    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    sink.put_many([{"id": 0}, {"id": 1}], checkpoint={"queue:q": {"unacked": ["1", "2"]}})
    shutil.rmtree(root)
    sink.put_many([{"id": 2}], checkpoint={"queue:q": {"unacked": ["2", "3"]}})
    sink.put_many([{"id": 3}])
    assert (root / SPOOL_NAME).is_file()
    # A crash: the buffer is gone, the spool stays.
    sink._spool.close()  # type: ignore[union-attr]
    with open_sink(root, timer=False) as again:
        assert again.recovered == 4
        assert again.checkpoint("queue:q") == {"unacked": ["2", "3"]}
    assert sorted(int(r["id"]) for r in read_rows(objects(root))) == [0, 1, 2, 3]
    assert json.loads((root / CHECKPOINTS_NAME).read_text()) == {"queue:q": {"unacked": ["2", "3"]}}


def test_a_spool_replaced_under_the_sink_refuses_puts(tmp_path: Path) -> None:
    """Another file at the spool's name: neither is written to (either would lose the
    puts at a crash); the put fails, an outage that names the file."""
    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    sink.put_many([{"id": 0}])
    (root / SPOOL_NAME).unlink()
    (root / SPOOL_NAME).write_text("someone else's\n")
    with pytest.raises(OSError, match="replaced by another file"):
        sink.put_many([{"id": 1}])
    with pytest.raises(OSError, match="replaced by another file"):
        sink.probe()  # the processor's outage lasts until it is moved away
    assert (root / SPOOL_NAME).read_text() == "someone else's\n"
    (root / SPOOL_NAME).rename(root / "moved-away")
    sink.probe()
    sink.put_many([{"id": 1}])
    sink.close()
    assert sorted(int(r["id"]) for r in read_rows(objects(root))) == [0, 1]


def test_a_torn_put_is_not_accepted(tmp_path: Path) -> None:
    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    sink.put_many([{"id": 0}], checkpoint={"src": 1})
    spool = sink._spool
    assert spool is not None
    # The next put died half-written: two records, no end mark.
    spool.write('{"id":1}\n{"id":2}\n{"id"')
    spool.flush()
    spool.close()
    with open_sink(root, timer=False) as again:
        assert again.recovered == 1 and again.checkpoint("src") == 1
    assert [int(r["id"]) for r in read_rows(objects(root))] == [0]


def test_a_crash_inside_a_flush_is_replayed_under_the_same_name(tmp_path: Path) -> None:
    """Killed after writing the object but before truncating the spool: the reopened
    sink writes the same records to the same object name, so nothing is doubled."""
    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    sink.put_many([{"id": i} for i in range(4)], checkpoint={"src": 4})

    def crash() -> None:
        raise KeyboardInterrupt("killed")

    sink._reset_spool = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        sink.flush()
    (first,) = objects(root)
    sink._spool.close()  # type: ignore[union-attr]
    with open_sink(root, timer=False) as again:
        assert again.recovered == 4
        assert again.checkpoint("src") == 4
    assert objects(root) == [first]
    assert sorted(int(r["id"]) for r in read_rows([first])) == [0, 1, 2, 3]


CHECKPOINTED_CHILD = textwrap.dedent(
    """
    import sys
    from fraudlens.sinks import open_sink

    root, total = sys.argv[1], int(sys.argv[2])
    sink = open_sink(root, max_records=40, timer=False)
    start = sink.checkpoint("gen") or 0
    print("start", start, flush=True)
    i = start
    while i < total:
        n = min(7, total - i)
        sink.put_many(
            [{"id": j, "score": 0.5} for j in range(i, i + n)], checkpoint={"gen": i + n}
        )
        i += n
    sink.close()
    print("done", flush=True)
    """
)


def test_sigkill_and_resume_from_the_checkpoint_leaves_each_record_once(tmp_path: Path) -> None:
    """A source that resumes from the sink's checkpoint, killed with SIGKILL again and
    again at arbitrary points (inside puts, flushes and spool truncations), ends with
    every record in exactly one object."""
    root = tmp_path / "sink"
    total = 3000
    rng = __import__("random").Random(5)
    starts = []
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHECKPOINTED_CHILD, str(root), str(total)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        starts.append(int(proc.stdout.readline().split()[1]))
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.wait(timeout=30)
    done = subprocess.run(
        [sys.executable, "-c", CHECKPOINTED_CHILD, str(root), str(total)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert starts == sorted(starts) and starts[-1] > 0, starts  # it did resume, forward
    ids = [int(r["id"]) for r in read_rows(objects(root))]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == set(range(total))


def test_a_crashed_flush_leaves_no_temporary_files_after_recovery(tmp_path: Path) -> None:
    """A writer killed mid-flush leaves the hidden temporary file of the object it was
    writing (and perhaps of the checkpoints). Reopening replays the flush into the same
    name and removes those leftovers; other hidden files are left alone."""
    root = tmp_path / "sink"
    sink = open_sink(root, timer=False)
    sink.put_many([{"id": 1}], checkpoint={"file:a": 1})
    # Announce the flush the way _flush_locked does, then "die" before the write.
    sink._spool_write(json.dumps([_FLUSH_MARK, "2026/01/02/03", "scores-x.csv"]) + "\n")  # type: ignore[attr-defined]
    sink._spool.close()  # type: ignore[union-attr]
    folder = root / "2026" / "01" / "02" / "03"
    folder.mkdir(parents=True)
    torn = folder / ".scores-x.csv.abc123.tmp"
    torn.write_text("id\n")
    (root / f".{CHECKPOINTS_NAME}.zz9.tmp").write_text("{")
    (root / ".probe-q1w2").write_text("")
    other = folder / ".unrelated.tmp"
    other.write_text("keep")

    again = open_sink(root, timer=False)
    again.flush()
    again.close()
    assert not torn.exists()
    assert not list(root.glob(f".{CHECKPOINTS_NAME}.*.tmp")) and not list(root.glob(".probe-*"))
    assert other.exists()
    assert [int(r["id"]) for r in read_rows(objects(root))] == [1]


def test_records_that_each_bring_their_own_keys_keep_objects_narrow(tmp_path: Path) -> None:
    """2,000 one-row requests of 256 keys each used to make one 700 MB object of 500,000
    columns (a minute of CPU): now no object has more than max_columns columns, and every
    record is written whole."""
    from fraudlens.sinks import MAX_COLUMNS

    n, keys = 150, 100
    with open_sink(tmp_path, timer=False, max_columns=300) as sink:
        for i in range(n):
            sink.put({"timestamp": "t", **{f"r{i}k{j}": j for j in range(keys)}, "score": 0.5})
        sink.put_many([{"a": 1}, {"b": 2}, *({f"x{j}": j} for j in range(400))])
    files = objects(tmp_path)
    widths = []
    for f in files:
        with open(f, newline="") as fh:
            widths.append(len(next(csv.reader(fh))))
    assert max(widths) <= 300
    rows = read_rows(files)
    assert len(rows) == n + 402
    assert sorted(r[f"r{i}k99"] for i in range(n) for r in rows if r.get(f"r{i}k99")) == ["99"] * n
    assert MAX_COLUMNS == 1024


def test_a_record_wider_than_the_column_limit_is_refused_whole(tmp_path: Path) -> None:
    from fraudlens.errors import DataError

    with open_sink(tmp_path, timer=False, max_columns=10) as sink:
        sink.put({"a": 1})
        with pytest.raises(DataError, match="11 fields; a CSV sink writes at most 10"):
            sink.put_many([{"b": 2}, {f"k{j}": j for j in range(11)}])
        with pytest.raises(DataError, match="name 12 fields"):
            sink.put_many(
                [{f"k{j}": j for j in range(6)}, {f"m{j}": j for j in range(6)}],
                checkpoint={"file:x": 1},
            )
        # A checkpointed put that fits alone, but not beside the buffer: a new object.
        sink.put_many([{f"k{j}": j for j in range(10)}], checkpoint={"file:x": 2})
        assert sink.checkpoint("file:x") == 2
    rows = read_rows(objects(tmp_path))
    # Two objects; their names order them only to the second (then a random id).
    assert sorted(sorted(r) for r in rows) == [["a"], sorted(f"k{j}" for j in range(10))]
    # JSON lines have no columns to share: any record goes.
    with open_sink(tmp_path / "jsonl", timer=False, max_columns=10, fmt="jsonl") as sink:
        sink.put({f"k{j}": j for j in range(50)})


def test_a_full_disk_fails_the_probe_until_the_put_that_failed_fits(
    full_disk_folder: Path,
) -> None:
    """On a full disk an empty file can still be made: the probe (an empty temporary
    file) passed while every put failed, so the card processor read a full disk as
    "not an outage" and nacked its queue messages until they were dead-lettered. The
    probe now writes as many bytes as the spool write that failed."""
    from _disk import fill  # type: ignore[import-not-found]

    root = full_disk_folder / "sink"
    sink = open_sink(root, timer=False)
    records = [{"id": i, "pad": "x" * 200} for i in range(200)]  # ~45 KB
    filler = fill(full_disk_folder, leave=8192)
    with pytest.raises(OSError) as info:
        sink.put_many(records, checkpoint={"file:a": 200})
    assert info.value.errno == 28
    with pytest.raises(OSError):
        sink.probe()
    assert not list(root.glob(".probe-*"))
    filler.unlink()
    sink.probe()
    sink.put_many(records, checkpoint={"file:a": 200})
    sink.close()
    assert [int(r["id"]) for r in read_rows(objects(root))] == list(range(200))
