"""`fraudlens enqueue --file` on hostile files: one line naming the file, line and column,
exit code 2, and nothing queued (a bad id late in the file used to leave the ids before
it on the queue; a file that is not UTF-8 ended in a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudlens.cli import app

runner = CliRunner()


def _depth(url: str) -> int:
    from fraudlens.queues import open_queue

    with open_queue(url, name="checks") as q:
        return int(q.depth())


@pytest.mark.parametrize(
    ("content", "row", "words"),
    [
        (
            # After a header, rows count from it (header row 0), as in every loader.
            b"account_id\n" + b"".join(b"a%d\n" % i for i in range(600)) + b"bad\x01id\n",
            601,
            "control character",
        ),
        (b"account_id,label\na1,0\na2,1\nbad\x01id,0\n", 3, "control character"),
        (b"id,label\na1,0\n", 0, "a CSV header without an account_id column"),
        (b"a1\nb\xe9\n", 2, "not UTF-8"),
        (b"a1\n" + b"x" * 100 + b"\n", 2, "at most 64"),
    ],
)
def test_bad_files_queue_nothing(tmp_path: Path, content: bytes, row: int, words: str) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(content)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    res = runner.invoke(app, ["enqueue", "--file", str(path), "--queue", url])
    assert res.exit_code == 2, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert "Traceback" not in text
    assert f"ids.txt, row {row}, column 'account_id'" in text and words in text, text
    assert _depth(url) == 0


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    res = runner.invoke(app, ["enqueue", "--file", str(tmp_path), "--queue", url])
    assert res.exit_code == 2
    assert "is a folder, not a file" in " ".join(res.output.split())


def test_good_file_and_arguments_are_queued(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"\xef\xbb\xbfaccount_id\na1\n\n a2 \n")
    url = f"sqlite:///{tmp_path / 'q.db'}"
    res = runner.invoke(app, ["enqueue", "x1", "--file", str(path), "--queue", url])
    assert res.exit_code == 0, res.output
    assert _depth(url) == 3


def _endless(tmp_path: Path, chunk: bytes, cap: int) -> Path:
    """A FIFO that serves ``chunk`` again and again (like /dev/zero or ``yes ''``), up to
    ``cap`` bytes: a reader that does not stop early gets the wrong error, not all memory."""
    import os
    import threading

    fifo = tmp_path / "endless"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with open(fifo, "wb") as f:
                for _ in range(cap // len(chunk)):
                    f.write(chunk)
        except BrokenPipeError:  # the reader stopped early: what the test wants
            pass

    threading.Thread(target=feed, daemon=True).start()
    return fifo


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\0" * 65536, "longer than 256 characters"),  # /dev/zero
        (b"a" * 65536, "longer than 256 characters"),  # no line break at all
    ],
)
def test_a_file_without_line_breaks_is_refused_at_its_first_line(
    tmp_path: Path, content: bytes, words: str
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    fifo = _endless(tmp_path, content, 32 << 20)
    res = runner.invoke(app, ["enqueue", "--file", str(fifo), "--queue", url])
    assert res.exit_code == 2, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert "endless, row 1, column 'account_id'" in text and words in text, text
    assert _depth(url) == 0


def test_endless_blank_lines_stop_at_the_line_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudlens.cli import pipeline

    monkeypatch.setattr(pipeline, "MAX_ID_FILE_LINES", 1000)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    fifo = _endless(tmp_path, b"a1\n\n\r\n", 32 << 20)
    res = runner.invoke(app, ["enqueue", "--file", str(fifo), "--queue", url])
    assert res.exit_code == 2, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert "row 1001, column 'account_id': more than 1,000 lines" in text, text
    assert _depth(url) == 0


def test_old_mac_line_breaks_still_split_ids(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"account_id\ra1\ra2\r\na3")
    url = f"sqlite:///{tmp_path / 'q.db'}"
    res = runner.invoke(app, ["enqueue", "--file", str(path), "--queue", url])
    assert res.exit_code == 0, res.output
    assert _depth(url) == 3
