"""Progress off a terminal: a few plain lines while the work runs, not one bar at its end."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.progress import Progress

from fraudlens.cli import _common
from fraudlens.cli._common import LINE_SECONDS, LineProgress, progress


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _piped() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80), out


def test_a_counted_bar_writes_at_most_every_tenth_and_thirty_seconds() -> None:
    console, out = _piped()
    clock = _Clock()
    with LineProgress(console=console, get_time=clock) as bar:
        task = bar.add_task("scoring accounts", total=1000)
        for _ in range(1000):  # one account a second: 10 % every 100 s
            clock.now += 1.0
            bar.advance(task, 1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "scoring accounts: 100/1,000 (10%), 1m40s elapsed, about 15m00s left"
    assert lines[4] == "scoring accounts: 500/1,000 (50%), 8m20s elapsed, about 8m20s left"
    assert lines[-1] == "scoring accounts: 1,000/1,000 (100%), 16m40s elapsed"
    assert len(lines) == 10  # each tenth (the last is the end), nothing more at stop


def test_a_fast_bar_writes_its_end_only() -> None:
    console, out = _piped()
    clock = _Clock()
    with LineProgress(console=console, get_time=clock) as bar:
        task = bar.add_task("simulating accounts", total=500)
        for _ in range(500):  # done in 15.6 s: under the 30 s floor
            clock.now += 1 / 32
            bar.advance(task, 1)
    lines = out.getvalue().splitlines()
    assert lines == ["simulating accounts: 500/500 (100%), 15s elapsed"]


def test_a_slow_bar_writes_every_thirty_seconds_at_most() -> None:
    console, out = _piped()
    clock = _Clock()
    with LineProgress(console=console, get_time=clock) as bar:
        task = bar.add_task("weeks", total=4)
        for _ in range(4):  # 25 % every 10 s: a line each 30 s
            clock.now += 10.0
            bar.advance(task, 1)
    stamps = [re.search(r"(\d+)s elapsed", line) for line in out.getvalue().splitlines()]
    assert [int(m.group(1)) for m in stamps if m] == [30, 40]


def test_a_bar_without_total_says_it_is_running() -> None:
    console, out = _piped()
    clock = _Clock()
    with LineProgress(console=console, get_time=clock, transient=True) as bar:
        bar.add_task("validating xgb: training on 1,000 rows", total=None)
        clock.now += 10.0
        bar.tick()  # a transient step says nothing while it is short
        assert out.getvalue() == ""
        clock.now += LINE_SECONDS
        bar.tick()
        bar.tick()
    assert out.getvalue().splitlines() == [
        "validating xgb: training on 1,000 rows: running, 40s elapsed",
        "validating xgb: training on 1,000 rows: done, 40s elapsed",
    ]


def test_a_short_transient_step_writes_nothing() -> None:
    console, out = _piped()
    with LineProgress(console=console, transient=True) as bar:
        bar.add_task("scoring and plotting", total=None)
    assert out.getvalue() == ""


def test_each_step_lines_name_the_unit_and_detail() -> None:
    console, out = _piped()
    clock = _Clock()
    with LineProgress(console=console, get_time=clock) as bar:
        task = bar.add_task(
            "training (epochs)", total=3, name="training", unit="epoch", line_each_step=True
        )
        for epoch in (1, 2, 3):
            clock.now += 2.0
            bar.update(task, completed=epoch, total=3, detail=f"loss 0.{epoch}000")
    assert out.getvalue().splitlines() == [
        "training: epoch 0/3 (0%), 0s elapsed",
        "training: epoch 1/3 (33%), loss 0.1000, 2s elapsed, about 4s left",
        "training: epoch 2/3 (67%), loss 0.2000, 4s elapsed, about 2s left",
        "training: epoch 3/3 (100%), loss 0.3000, 6s elapsed",
    ]


def test_the_cli_bar_is_lines_off_a_terminal_and_live_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    console, out = _piped()
    monkeypatch.setattr(_common, "console", console)
    bar = progress()
    assert isinstance(bar, LineProgress)
    with bar:
        task = bar.add_task("enqueue", total=3)
        bar.advance(task, 3)
    assert out.getvalue().splitlines()[-1].startswith("enqueue: 3/3 (100%), ")

    tty = Console(file=io.StringIO(), force_terminal=True, width=80)
    monkeypatch.setattr(_common, "console", tty)
    live = progress()
    assert type(live) is Progress and not live.disable


def test_cnn_training_writes_a_line_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from fraudlens.cli.market import DetectorChoice, _fit
    from fraudlens.market.data import window
    from fraudlens.market.simulate import simulate

    console, out = _piped()
    monkeypatch.setattr(_common, "console", console)
    monkeypatch.setenv("FRAUDLENS_TORCH_THREADS", "1")
    data = window(simulate(120, seed=3, n_symbols=6, days=2))
    _fit(DetectorChoice.cnn, data, seed=0, epochs=2, arch="bars")
    lines = [line for line in out.getvalue().splitlines() if line.startswith("training the CNN")]
    assert [line.split(",")[0] for line in lines] == [
        "training the CNN: epoch 0/2 (0%)",
        "training the CNN: epoch 1/2 (50%)",
        "training the CNN: epoch 2/2 (100%)",
    ]
    ends = r"loss \d\.\d{4}.*, \d+s elapsed(, about \d+s left)?$"
    assert all(re.search(ends, line) for line in lines[1:])
