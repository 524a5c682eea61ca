"""Steps without a count (``working``: loading, training the feature detector, comparing,
the card processor) off a terminal: plain lines when the step starts and ends, with its
seconds, instead of rich's spinner, which prints nothing there. On a terminal, the
spinner."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from _terminal import pty_session  # type: ignore[import-not-found]
from fraudlens.cli import _common
from fraudlens.cli._common import LINE_SECONDS, LineStatus, working


def _piped() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def test_a_step_writes_a_line_at_its_start_one_while_it_runs_and_one_at_its_end() -> None:
    console, out = _piped()
    now = [100.0]
    with LineStatus(
        "comparing...", console=console, get_time=lambda: now[0], heartbeat=False
    ) as status:
        assert out.getvalue().splitlines() == ["comparing ..."]
        now[0] += LINE_SECONDS - 1
        status.tick()  # not due yet
        status.update("[bold]2,000[/] of 5,000 events")
        now[0] += 1
        status.tick()
        status.tick()  # once per LINE_SECONDS
        now[0] += 2.25
    assert out.getvalue().splitlines() == [
        "comparing ...",
        "comparing: 2,000 of 5,000 events, 30s elapsed",
        "comparing: done in 32.2 s",
    ]


def test_a_step_that_fails_says_when_it_stopped() -> None:
    console, out = _piped()
    now = [0.0]
    with (
        pytest.raises(ValueError),
        LineStatus("loading x.csv", console=console, get_time=lambda: now[0]),
    ):
        now[0] = 1.5
        raise ValueError("bad row")
    assert out.getvalue().splitlines() == [
        "loading x.csv ...",
        "loading x.csv: stopped after 1.5 s",
    ]


def test_working_is_lines_off_a_terminal_and_the_spinner_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.status import Status

    console, out = _piped()
    monkeypatch.setattr(_common, "console", console)
    with working("training") as status:
        assert isinstance(status, LineStatus)
    assert re.fullmatch(r"training \.\.\.\ntraining: done in \d+\.\d s\n", out.getvalue())

    tty = Console(file=io.StringIO(), force_terminal=True, width=80)
    monkeypatch.setattr(_common, "console", tty)
    with working("training") as status:
        assert isinstance(status, Status)


def _train(data: Path, models: Path) -> list[str]:
    return [sys.executable, "-m", "fraudlens", "market", "train", "--data", str(data),
            "-m", str(models)]  # fmt: skip


@pytest.mark.slow
def test_market_train_through_a_pipe_says_when_training_starts_and_ends(
    market_dir: Path, tmp_path: Path
) -> None:
    res = subprocess.run(
        _train(market_dir, tmp_path / "models"),
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,  # both pipes: neither is a terminal
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    step = "training the feature detector (hold-out validation)"
    start = lines.index(f"{step} ...")
    end = next(i for i, line in enumerate(lines) if line.startswith(f"{step}: done in "))
    assert start < end, lines
    done = re.fullmatch(rf"{re.escape(step)}: done in (\d+\.\d) s", lines[end])
    assert done is not None, lines[end]
    seconds = float(done[1])
    reported = re.search(r"trained market-features v\d+ in (\d+\.\d) s", res.stderr)
    assert reported is not None, res.stderr
    assert 0 < seconds <= float(reported[1]) + 0.1
    assert f"loading {market_dir} ..." in lines


@pytest.mark.slow
def test_market_train_on_a_terminal_keeps_the_spinner(market_dir: Path, tmp_path: Path) -> None:
    code, screen = pty_session(
        _train(market_dir, tmp_path / "models"),
        [],
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"},
        timeout=300,
    )
    assert code == 0, screen
    step = "training the feature detector (hold-out validation)"
    # the spinner's frames redraw the step's text in place ...
    assert screen.count(step) >= 2, screen
    assert "\x1b[2K" in screen
    # ... and none of the plain lines of a pipe
    assert f"{step} ..." not in screen and "done in" not in screen, screen
