"""Commands run on a pseudo-terminal, answering their prompts as a user would type."""

from __future__ import annotations

import os
import pty
import select
import time
from collections.abc import Mapping


def pty_session(
    args: list[str],
    answers: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal (in ``cwd``, with ``env`` if given), typing each
    answer after the next prompt; return the exit code and the screen, each answer marked
    ``<typed>`` where it was typed. A command that cannot be started exits 127, as in a
    shell; one still running after ``timeout`` seconds is killed."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            if cwd is not None:
                os.chdir(cwd)
            if env is None:
                os.execv(args[0], args)
            else:
                os.execve(args[0], args, dict(env))
        finally:  # not found (a bare `fraudlens` off PATH): exit as a shell would
            os._exit(127)
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
