"""``fraudlens users`` and ``fraudlens tokens`` as a user runs them: the real console script,
a real terminal for the password prompt, the rows read back from the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _terminal import pty_session  # type: ignore[import-not-found]
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


def test_the_password_prompt_does_not_echo(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fl.db'}"
    code, screen = pty_session(
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


def _not_activated() -> dict[str, str]:
    # A shell where the virtualenv is not activated and no setting points at a store.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLENS_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", COLUMNS="200", NO_COLOR="1")
    return env


def test_the_printed_next_commands_run_as_printed(tmp_path: Path) -> None:
    # The hints named a bare `fraudlens` (not on PATH when the virtualenv is not
    # activated) and no --db, so they went to the default store, not the one given.
    import re
    import shlex

    home = tmp_path / "home"
    home.mkdir()
    db = f"sqlite:///{tmp_path / 'auth store.db'}"
    env = _not_activated()

    def run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``argv`` from the home folder, the virtualenv not activated."""
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=home,
            env=env,
            timeout=120,
            check=False,
        )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run([str(FRAUDLENS), *args])

    r = cli("db", "upgrade", "--db", db)
    assert r.returncode == 0, r.stderr
    r = cli("users", "list", "--db", db)
    found = re.search(r"no users yet: add one with `([^`]+)`", r.stderr)
    assert r.returncode == 0 and found is not None, r.stderr
    add = [*shlex.split(found.group(1).replace("NAME", "ana")), "--password-stdin"]
    r = run(add, stdin=PASSWORD + "\n")
    assert r.returncode == 0, (add, r.stderr)

    r = cli("users", "add", "scorer", "--role", "service", "--db", db)
    found = re.search(r"^give it a token: (.+)$", r.stderr, flags=re.M)
    assert r.returncode == 0 and found is not None, r.stderr
    r = run(shlex.split(found.group(1)))
    assert r.returncode == 0, (found.group(1), r.stderr)
    assert r.stdout.startswith("flk_")
    assert not (home / "fraudlens.db").exists()  # nothing went to the default store
    with open_store(db) as store:
        assert {u.username for u in store.list_users()} == {"ana", "scorer"}


def test_a_printed_database_password_is_hidden() -> None:
    from fraudlens.cli._common import db_option

    assert db_option(None) == ("", "")
    assert db_option("sqlite:///a b.db") == (" --db 'sqlite:///a b.db'", "")
    words, note = db_option("postgresql+psycopg://fraud:s3cret@db:5432/risk")
    assert "s3cret" not in words and "***" in words and "password" in note


def test_a_bad_role_is_refused_before_the_password_is_asked_for(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fl.db'}"
    r = run("users", "add", "bo", "--role", "superuser", "--db", db, stdin="")
    assert r.returncode == 2
    assert "role 'superuser' is not one of analyst, admin, service" in r.stderr, r.stderr
    r = run("users", "add", "Bad Name!", "--db", db, stdin="")
    assert r.returncode == 2 and "is not allowed" in r.stderr, r.stderr


def test_serve_names_its_store_in_its_hints_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `serve` with sign-in on printed `fraudlens users add NAME --db <the URL>`, password
    # and all, into the service's log.
    import importlib

    from fraudlens.config import get_settings

    serve = importlib.import_module("fraudlens.cli.serve")

    monkeypatch.setenv("FRAUDLENS_AUTH", "on")
    monkeypatch.setenv("FRAUDLENS_DATABASE_URL", "postgresql+psycopg://fraud:S3CRET@127.0.0.1:1/x")
    get_settings.cache_clear()
    try:
        serve._say_auth("0.0.0.0", 8080)
        said = " ".join(capsys.readouterr().err.split())
        assert "S3CRET" not in said and "tokens create NAME --db" in said, said
        assert "fraud:***@127.0.0.1:1/x" in said and "in place of ***" in said, said

        db = f"sqlite:///{tmp_path / 'serve.db'}"
        with open_store(db) as store:
            store.upgrade()
        monkeypatch.setenv("FRAUDLENS_DATABASE_URL", db)
        get_settings.cache_clear()
        serve._say_auth("0.0.0.0", 8080)
        said = " ".join(capsys.readouterr().err.split())
        assert f"users add NAME --db {db}`" in said, said
    finally:
        get_settings.cache_clear()


def _address_space(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        # Endless input without a line break had been read whole: a MemoryError traceback.
        ("/dev/zero", "the password is longer than 1024 characters"),
        # A byte that is not UTF-8 had been a UnicodeEncodeError traceback.
        (b"passphrase\xff with a bad byte\n", "the password is not UTF-8 text (byte 0xFF)"),
        # A NUL had been stored: no one could type that password at the login page.
        (b"passphrase\x00 with a NUL\n", "the password holds a control character (U+0000"),
    ],
)
def test_password_stdin_that_is_no_password_line_is_one_line(
    tmp_path: Path, stdin: str | bytes, says: str
) -> None:
    db = f"sqlite:///{tmp_path / 'fl.db'}"
    args = [str(FRAUDLENS), "users", "add", "ana", "--password-stdin", "--db", db]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": open(stdin, "rb")}  # noqa: SIM115
    try:
        r = subprocess.run(
            args,
            capture_output=True,
            timeout=120,
            env=env,
            check=False,
            preexec_fn=lambda: _address_space(3 << 30),
            **feed,
        )
    finally:
        if "stdin" in feed:
            feed["stdin"].close()
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, err
    assert "Traceback" not in err and says in " ".join(err.split()), err
