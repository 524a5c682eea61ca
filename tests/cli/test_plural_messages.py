"""Counts in CLI messages agree with their noun: "queued 1 check", "mean, 1 week"."""

from __future__ import annotations

from pathlib import Path

from _cli import one_line
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.cli._common import plural


def test_plural() -> None:
    assert plural(1, "check") == "1 check"
    assert plural(0, "check") == "0 checks"
    assert plural(2, "week") == "2 weeks"
    assert plural(1234, "new risk event") == "1,234 new risk events"
    assert plural(1, "pass", "passes") == "1 pass"
    assert plural(3, "pass", "passes") == "3 passes"


def test_enqueue_says_check_for_one(tmp_path: Path) -> None:
    queue = f"sqlite:///{tmp_path / 'q.db'}"
    runner = CliRunner()
    one = runner.invoke(app, ["enqueue", "acc-1", "--queue", queue])
    assert one.exit_code == 0, one.output
    assert f"queued 1 check on {queue} (checks)" in one_line(one.output)
    two = runner.invoke(app, ["enqueue", "acc-2", "acc-3", "--queue", queue])
    assert two.exit_code == 0, two.output
    assert f"queued 2 checks on {queue} (checks)" in one_line(two.output)
