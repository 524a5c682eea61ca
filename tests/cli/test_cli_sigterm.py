"""A command stopped by SIGTERM leaves no half-written output and no hidden temporary file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import os, signal, sys
from pathlib import Path

import fraudlens.cli as cli
from fraudlens._io import _replace

def write(f):
    f.write("account_id,score\\\\n")
    os.kill(os.getpid(), signal.SIGTERM)  # stopped in the middle of the output
    f.write("a1,0.5\\\\n")

def command():
    _replace(Path(sys.argv[1]), write, binary=False, suffix=".tmp")

cli.app = command  # what main() runs
cli.main()
"""


def test_sigterm_mid_write_removes_the_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 128 + signal.SIGTERM, run.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_existing_output_survives_sigterm_mid_write(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 128 + signal.SIGTERM, run.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]
    assert out.read_text() == "old\n"
