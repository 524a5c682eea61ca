"""Hostile command-line arguments: refused with exit code 2 and a one-line reason, never
a traceback; formula-like ids (``=1+1``) are ids like any other."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import one_line, run_cli

pytest.importorskip("sqlalchemy")


@pytest.fixture
def db(tmp_path: Path) -> str:
    from fraudlens.store import open_store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        store.upgrade()
    return url


@pytest.mark.parametrize(
    ("account", "says"),
    [
        # The shell passes the bytes as given; Python reads 0xFF as a lone surrogate, which
        # the database driver could not encode (a UnicodeEncodeError traceback, exit 1).
        ("ab\udcff", "the account id is not UTF-8 text: byte 0xFF"),
        ("a\x01b", "the account id contains a control character (U+0001 at position 2)"),
        ("a" * 65, "the account id has 65 characters; at most 64 are allowed"),
    ],
)
def test_db_events_refuses_an_account_that_is_no_id(db: str, account: str, says: str) -> None:
    proc = run_cli(["db", "events", "--db", db, "--account", account])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "Invalid value for --account" in out and says in out, out


@pytest.mark.parametrize("account", ["=1+1", "@SUM(A1)", "-2+3", "+cmd"])
def test_db_events_takes_a_formula_like_account_id(db: str, account: str) -> None:
    proc = run_cli(["db", "events", "--db", db, "--account", account])
    assert proc.returncode == 0, proc.stderr
    assert "risk events (0 of 0)" in one_line(proc.stdout + proc.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["market", "simulate", "--accounts", "2"],
        ["cards", "simulate", "--customers", "5", "--days", "1"],
        ["cards", "process", "--source", "generate", "--limit", "5"],
    ],
)
@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_seed_no_random_source_takes_is_refused(
    args: list[str], seed: str, tmp_path: Path
) -> None:
    """A negative --seed ended every command that draws random numbers in a ValueError
    traceback from numpy (exit 1), and one past 32 bits `market train` in an XGBoostError."""
    out = ["--sink" if args[0:2] == ["cards", "process"] else "--out", str(tmp_path / "o")]
    proc = run_cli([*args, *out, "--seed", seed], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Invalid value for '--seed'" in one_line(proc.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["market", "simulate", "--accounts", "99999999999"],
        ["cards", "simulate", "--customers", "99999999999", "--days", "1"],
    ],
)
def test_a_size_no_machine_holds_is_one_line(args: list[str], tmp_path: Path) -> None:
    """A count whose arrays cannot be allocated ended in a MemoryError traceback (exit 1):
    numpy's message, how much it could not allocate, is the useful line."""
    proc = run_cli([*args, "--out", str(tmp_path / "o"), "--seed", "1"], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "not enough memory (Unable to allocate" in out, out
