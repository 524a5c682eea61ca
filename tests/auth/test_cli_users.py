"""``fraudlens users`` and ``fraudlens tokens`` as a user runs them: the real console script,
a real terminal for the password prompt, the rows read back from the database."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fraudlens.auth import Authenticator, Passwords
from fraudlens.store import open_store

pytest.importorskip("sqlalchemy")
pytest.importorskip("argon2")

FRAUDLENS = Path(sys.executable).with_name("fraudlens")
PASSWORD = "a long enough passphrase"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(FRAUDLENS), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_users_and_tokens_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fl.db'}"
    r = run("users", "list", "--db", db)
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run("users", "add", "Ana", "--password-stdin", "--db", db, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    r = run(
        "users", "add", "bo", "--role", "admin", "--password-stdin", "--db", db, stdin="short\n"
    )
    assert r.returncode == 2 and "at least 12" in r.stderr
    r = run("users", "add", "bo", "--db", db, stdin="")  # no terminal, no --password-stdin
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    r = run("users", "add", "scorer", "--role", "service", "--db", db)
    assert r.returncode == 0, r.stderr
    r = run("tokens", "create", "scorer", "--name", "batch", "--db", db)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("flk_") and "\n" not in token and token not in r.stderr
    r = run("users", "list", "--db", db)
    assert r.returncode == 0
    assert "ana" in r.stderr and "analyst" in r.stderr and "scorer" in r.stderr
    r = run("tokens", "list", "--db", db)
    assert r.returncode == 0 and token[:12] in r.stderr and token not in r.stderr + r.stdout

    with open_store(db) as store:
        auth = Authenticator(store, token_cache_seconds=0)
        user = auth.check_token(token)
        assert user is not None and user.username == "scorer"
        assert auth.sign_in("ana", PASSWORD, "a").user.role == "analyst"
        tid = auth.tokens("scorer")[0].id
    r = run("tokens", "revoke", str(tid), "--db", db)
    assert r.returncode == 0, r.stderr
    # Ids no key holds: one line (SQLite's OverflowError had been a traceback, exit 1).
    for unknown in ("999", str(2**31), "9" * 30):
        r = run("tokens", "revoke", unknown, "--db", db)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.strip() == f"error: no API token with id {unknown}", r.stderr[-2000:]
    r = run("users", "disable", "ana", "--db", db)
    assert r.returncode == 0, r.stderr
    with open_store(db) as store:
        auth = Authenticator(store, token_cache_seconds=0)
        assert auth.check_token(token) is None
        ana = store.get_user("ana")
        assert ana is not None and ana.disabled
    r = run("users", "disable", "nobody", "--db", db)
    assert r.returncode == 2 and "nobody" in r.stderr


def _pty_session(args: list[str], answers: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run a command on a pseudo-terminal, typing each answer after the next prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(args[0], args)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            # click prints "Password:" and getpass then prints " " after switching echo off
            # (and flushing typed-ahead input): answer only once the space is there.
            if pending and out.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\r")
                out += b"\n<typed>\n"
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_the_password_prompt_does_not_echo(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fl.db'}"
    code, screen = _pty_session(
        [str(FRAUDLENS), "users", "add", "cy", "--role", "admin", "--db", db],
        [PASSWORD, PASSWORD],
    )
    assert code == 0, screen
    assert screen.count("<typed>") == 2  # asked, then asked to confirm
    assert PASSWORD not in screen
    with open_store(db) as store:
        found = store.user_credentials("cy")
        assert found is not None and found[0].role == "admin"
        assert found[1] is not None and Passwords().verify(found[1], PASSWORD)
