"""The service on a real port and a real browser, for the tests that need both.

- :func:`serve_in_thread`: the app under uvicorn in a thread of the test process, on a
  free loopback port (page tests: the test reads the database the app writes to);
- :func:`serve_in_process`: a Python snippet that runs uvicorn in a child process, waited
  for until ``/ping`` answers 200 (fuzzing and memory tests: the server's own RSS);
- :func:`chromium` and :func:`watched_page`: Debian's chromium through Playwright, and a
  page that fails the test on any JavaScript error.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _services import unavailable  # type: ignore[import-not-found]

#: Debian's chromium (override with FRAUDLENS_TEST_CHROMIUM).
CHROMIUM = os.environ.get("FRAUDLENS_TEST_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    """A loopback port nobody listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free loopback port; yield its base URL.

    The socket is bound before the server starts, so no other process can take the port
    between choosing and binding it.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    waited = threading.Event()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        waited.wait(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def serve_in_process(code: str, port: int, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -c code`` (which serves on ``port``) until ``/ping`` answers 200; yield
    the process, and stop it afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", code], **popen)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the server died"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (skipped, or failed under CI, when it is not installed)."""
    if not Path(CHROMIUM).exists():
        unavailable(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(browser: Any, width: int, height: int) -> Iterator[Any]:
    """A page in a fresh browser context; any uncaught JavaScript error fails the test."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def desk_event(account: str, hours: int, **extra: Any) -> dict[str, Any]:
    """An open risk event of ``account`` for a page test: score 0.95 over the 0.9
    threshold, its 24 h window ending (and recorded) ``hours`` after 2024-03-01 12:00
    UTC; ``extra`` overrides fields (``status="dismissed"``)."""
    end = datetime(2024, 3, 1, 12, tzinfo=UTC) + timedelta(hours=hours)
    return {
        "account_id": account,
        "score": 0.95,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "window_start": end - timedelta(hours=24),
        "window_end": end,
        "created_at": end,
        "details": {"trades": []},
        **extra,
    }
