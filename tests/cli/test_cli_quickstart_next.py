"""A new user's first run: the README's quickstart, then every command its closing lines
print, run exactly as printed from the same folder, with the virtualenv not activated."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _terminal import pty_session  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).parent / "fraudlens"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(port: int) -> dict[str, str]:
    # A shell where the virtualenv is not activated: its bin folder is not on PATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLENS_")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["FRAUDLENS_PORT"] = str(port)
    env["COLUMNS"] = "80"
    return env


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    if not SCRIPT.is_file():
        pytest.skip(f"no console script at {SCRIPT}")
    home = tmp_path_factory.mktemp("newcomer")
    port = _free_port()
    proc = subprocess.run(
        [str(SCRIPT), "quickstart", "--accounts", "200", "--no-cnn"],
        cwd=home,
        env=_env(port),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, proc.stderr, port


def _commands(output: str) -> list[str]:
    return [line.split("$ ", 1)[1] for line in output.splitlines() if line.startswith("    $ ")]


def test_the_folder_matches_quickstart_help(quickstart: tuple[Path, str, int]) -> None:
    home, _, port = quickstart
    out = home / "fraudlens-quickstart"
    help_text = subprocess.run(
        [str(SCRIPT), "quickstart", "--help"], capture_output=True, text=True, env=_env(port)
    ).stdout
    listed = re.findall(r"^\s{4}(\S+(?:, \S+)?)\s{2,}", help_text, flags=re.M)
    assert "models/" in listed and "sink/" in listed, help_text
    for entry in listed:
        for name in entry.split(", "):
            assert "<model>" in name or (out / name).exists(), f"{name} is in --help, not in {out}"
    for name in ("market-features", "cards-xgboost", "cards-anomaly"):
        assert (out / "reports" / name / "report.json").is_file()


def test_every_printed_command_runs_as_printed(quickstart: tuple[Path, str, int]) -> None:
    home, output, port = quickstart
    commands = _commands(output)
    assert len(commands) == 4, output[-2000:]
    exe = shlex.split(commands[0])[0]
    # Not activated: the printed program is the virtualenv's script, by its path.
    assert exe != "fraudlens" and Path(home, exe).resolve() == SCRIPT.resolve()
    *finite, serve = commands
    for command in finite:
        proc = subprocess.run(
            shlex.split(command), cwd=home, env=_env(port), capture_output=True, text=True
        )
        assert proc.returncode == 0, (command, proc.stderr)
        assert "error" not in proc.stderr.lower(), (command, proc.stderr)
    listing = subprocess.run(
        shlex.split(finite[0]), cwd=home, env=_env(port), capture_output=True, text=True
    ).stdout
    assert "market-features" in listing and "cards-xgboost" in listing
    assert (home / "fraudlens-quickstart" / "market" / "scores-again.csv").is_file()

    # The service: bound to loopback on the printed port, serving the review page.
    argv = shlex.split(serve)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert int(argv[argv.index("--port") + 1]) == port
    proc = subprocess.Popen(
        argv, cwd=home, env=_env(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/ping")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        review, page = _get(f"http://127.0.0.1:{port}/review")
        assert review == 200 and "<html" in page.lower()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_activation_hint_works(quickstart: tuple[Path, str, int]) -> None:
    home, output, port = quickstart
    hint = re.search(r"`source (\S+)`", output)
    assert hint is not None, output[-1500:]
    first = _commands(output)[0]
    plain = "fraudlens " + first.split(" ", 1)[1]
    proc = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(hint.group(1))} && {plain}"],
        cwd=home,
        env=_env(port),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "market-features" in proc.stdout


def test_the_printed_password_command_runs_as_printed(
    quickstart: tuple[Path, str, int],
) -> None:
    # The closing line's `users password` command had named a bare `fraudlens`, which a
    # shell without the virtualenv activated does not find.
    home, output, port = quickstart
    found = re.search(
        r"`([^`]+ users password analyst [^`]+)` sets another", " ".join(output.split())
    )
    assert found is not None, output[-1500:]
    argv = shlex.split(found.group(1))
    password = "a new long passphrase"
    # The printed command, from the same folder.
    code, screen = pty_session(
        argv, [password, password], env={**_env(port), "NO_COLOR": "1"}, cwd=home, timeout=120
    )
    assert code == 0, screen
    assert "password of 'analyst' changed" in screen
