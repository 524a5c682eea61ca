"""A bound on how long a store call may wait on its database server.

A call on a connection whose server stopped answering without closing it (a frozen
server process, whose kernel still acknowledges; a failover that left the connection
half-open) waits for a reply that never comes: no driver timeout covers a query already
sent (a read timeout would also cut long queries short), and TCP keepalive does not help
while the server's kernel answers. In the service each such call held a worker thread
and its request for as long as the freeze lasted; enough of them and every route that
needs a thread stood still.

:class:`CallWatch` notes when each thread's outermost store call began. A thread of its
own looks every fraction of a second; a call that has run past the bound gets its
connection cut (the store's ``cut`` callback shuts down the socket), so it fails as a
dropped connection does: a :class:`~fraudlens.errors.StoreUnavailableError`, a 503 in
the service, nothing of its transaction committed. Each call is cut at most once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["CallWatch"]

log = logging.getLogger(__name__)


class _Call:
    """A thread's outermost store call: when it began, how many calls deep the thread
    is, and whether its connection was cut."""

    __slots__ = ("cut", "depth", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.depth = 1
        self.cut = False


class CallWatch:
    """Cut the connection of a store call still running ``bound`` seconds after it began.

    Parameters
    ----------
    bound
        Seconds a call may run (> 0).
    cut
        Called from the watch's thread with the thread idents of the stuck calls; shuts
        down their connections and returns how many were cut.
    name
        What the log lines call the store (its URL without password).
    """

    def __init__(self, bound: float, cut: Callable[[set[int]], int], name: str) -> None:
        if not bound > 0:
            raise ValueError(f"a store call's bound must be above 0 s, not {bound!r}")
        self.bound = float(bound)
        self._cut = cut
        self._name = name
        self._lock = threading.Lock()
        self._calls: dict[int, _Call] = {}  # by thread ident
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Calls whose connection was cut, since the watch began.
        self.calls_cut = 0

    def enter(self) -> None:
        """A store call begins on this thread (a nested call counts with its caller's)."""
        ident = threading.get_ident()
        with self._lock:
            call = self._calls.get(ident)
            if call is not None:
                call.depth += 1
                return
            self._calls[ident] = _Call(time.monotonic())
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="fraudlens-store-watch", daemon=True
                )
                self._thread.start()

    def leave(self) -> None:
        """The store call :meth:`enter` noted on this thread has returned or raised."""
        ident = threading.get_ident()
        with self._lock:
            call = self._calls.get(ident)
            if call is None:
                return
            call.depth -= 1
            if call.depth <= 0:
                del self._calls[ident]

    def stuck(self, now: float | None = None) -> set[int]:
        """Threads whose call has run past the bound and was not cut yet; they are marked
        cut."""
        now = time.monotonic() if now is None else now
        with self._lock:
            found = {
                ident
                for ident, call in self._calls.items()
                if not call.cut and now - call.start > self.bound
            }
            for ident in found:
                self._calls[ident].cut = True
        return found

    def _run(self) -> None:
        tick = max(0.01, min(0.5, self.bound / 4))
        while not self._stop.wait(tick):
            threads = self.stuck()
            if not threads:
                continue
            # counted first: a cut call fails at once, and its caller may read the count
            self.calls_cut += len(threads)
            try:
                cut = self._cut(threads)
            except Exception:  # the watch must outlive what one cut did
                log.exception("cutting the connections of %s failed", self._name)
                continue
            log.warning(
                "%d call(s) to %s had not returned in %g s: cut %d connection(s)",
                len(threads),
                self._name,
                self.bound,
                cut,
            )

    def close(self) -> None:
        """Stop watching (calls still running are left alone)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)
