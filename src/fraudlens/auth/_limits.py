"""Sign-in rate limiting: failed attempts per user name and per client address.

The counts live in the memory of one process. A service run with ``--workers N`` (or N
containers) therefore allows up to N times the limits below in all; each process still
holds an attacker to its own share. Counting in memory means a flood of wrong passwords
costs no database writes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginLimiter"]


class LoginLimiter:
    """Sliding-window limits on failed sign-ins.

    Parameters
    ----------
    per_user
        Failed attempts allowed for one user name within ``window_seconds``, from any
        address; past that the name is refused until the oldest failure leaves the window.
    per_address
        Failed attempts allowed from one client address within ``window_seconds``, for
        any user names (password spraying).
    window_seconds
        Length of the sliding window.
    max_keys
        Most names and addresses tracked at once; the least recently failed are forgotten
        first, so a flood of random names cannot grow memory without bound.
    clock
        Monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        *,
        per_user: int = 10,
        per_address: int = 30,
        window_seconds: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_user < 1 or per_address < 1 or window_seconds <= 0 or max_keys < 2:
            raise ValueError("limits must be positive")
        self.per_user = int(per_user)
        self.per_address = int(per_address)
        self.window = float(window_seconds)
        self.max_keys = int(max_keys)
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _keys(self, username: str, address: str) -> tuple[tuple[tuple[str, str], int], ...]:
        return ((("u", username), self.per_user), (("a", address), self.per_address))

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until an attempt for ``username`` from ``address`` may be made (0: now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in (
                (("u", username), self.per_user),
                (("a", address), self.per_address),
            ):
                times = self._recent(key, now)
                if times is not None and len(times) >= limit:
                    # Free again when enough failures have aged out of the window.
                    wait = max(wait, times[len(times) - limit] + self.window - now)
        return max(wait, 0.0)

    def failed(self, username: str, address: str) -> None:
        """Count a failed attempt against the name and the address."""
        now = self._clock()
        with self._lock:
            for key, limit in (
                (("u", username), self.per_user),
                (("a", address), self.per_address),
            ):
                times = self._recent(key, now)
                if times is None:
                    times = self._failures[key] = deque(maxlen=limit)
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """Forget the name's failures after a correct password (the address's stay)."""
        with self._lock:
            self._failures.pop(("u", username), None)
