"""Functions run in spawned processes by test_sqlite_queue.py.

Kept apart from the test module so a child process imports only the queue code, not pytest
or the settings machinery, and starts fast.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from fraudlens.queues.sqlite import SQLiteQueue


def consume(path: str, start: Any, out_file: str) -> None:
    """Consume queue ``mp`` until it stays empty, writing each received ``n`` to ``out_file``."""
    q = SQLiteQueue(path, name="mp")
    start.wait()  # every process is ready: the race starts now
    seen: list[str] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 0.3:
        batch = q.receive(10, visibility_timeout=30, wait=0.05)
        if not batch:
            continue
        idle_since = time.monotonic()
        seen.extend(str(m.body["n"]) for m in batch)
        time.sleep(0.002)  # some work, so the two processes interleave
        q.ack_many(batch)
    q.close()
    Path(out_file).write_text("\n".join(seen))


def crash_after_receive(path: str, n: int) -> None:
    """Lease ``n`` messages of queue ``crash`` and die without acking, like a killed worker."""
    q = SQLiteQueue(path, name="crash")
    got = q.receive(n, visibility_timeout=0.5)
    os._exit(3 if len(got) == n else 4)
