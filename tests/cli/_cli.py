"""Run the real ``fraudlens`` command in a child process, optionally with some modules
made impossible to import (as if their extra were not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

# Installed before fraudlens is imported: a meta path finder that refuses the blocked
# top-level packages exactly as Python refuses a package that is not installed.
_BOOT = """
import sys
blocked = set(filter(None, sys.argv[1].split(",")))

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
sys.argv = ["fraudlens", *sys.argv[2:]]
from fraudlens.cli import main
main()
"""


def run_cli(
    args: Sequence[str],
    *,
    block: Iterable[str] = (),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``fraudlens ARGS`` in a fresh interpreter; return the finished process.

    ``block`` names top-level modules to make unimportable in the child.
    """
    child_env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", **(env or {})}
    child_env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-c", _BOOT, ",".join(block), *args],
        cwd=cwd,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(text: str) -> str:
    """``text`` with its whitespace runs (and any wrapping) collapsed to single spaces."""
    return " ".join(text.split())
