"""How many threads a job may use: the cores this process may run on, and those other
jobs leave free.

Shared by the CNN's training and scoring and by XGBoost's training (market feature
detector and card models). A multi-threaded training loop whose threads outnumber the
free cores does not slow gently, it collapses: each step waits for its slowest thread,
and a thread that has lost its core to another job stalls all the others.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

__all__ = ["free_cores", "scoring_workers", "training_threads"]

#: Rows from which an XGBoost training uses more than one thread (up to the free cores).
#: Below it a second thread saves less than it costs in synchronisation, and beside
#: another job it is ruinous: the market feature detector on 8,000 accounts trained in
#: 4 s on one thread and in 159 s on two with one core busy elsewhere.
THREADS_FROM_ROWS: Final = 100_000

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def _read_quota(directory: Path, v2: bool) -> float | None:
    """A cgroup directory's CPU quota in CPUs (quota over period), None without one."""
    try:
        if v2:  # "200000 100000", or "max 100000" for none
            quota, period = (directory / "cpu.max").read_text().split()[:2]
        else:  # -1 for none
            quota = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
        q, p = float(quota), float(period)
    except (OSError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def _cpu_quota(root: Path = _CGROUP_ROOT, own: Path = _PROC_CGROUP) -> float | None:
    """The CPUs' worth of time this process's cgroups allow (a container's or a
    service's CPU quota: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``), the least along each cgroup's path up to the root; None
    without a quota (none set, not Linux, nothing readable)."""
    try:
        lines = own.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        parts = [part for part in path.split("/") if part and part != ".."]
        if controllers == "":
            v2, bases = True, [root, root / "unified"]
        elif "cpu" in controllers.split(","):
            v2, bases = False, [root / controllers, root / "cpu"]
        else:
            continue
        for base in bases:
            # the cgroup's own directory and its parents (a container's cgroup namespace
            # shows its own cgroup at the mount's root)
            for depth in range(len(parts), -1, -1):
                limit = _read_quota(base.joinpath(*parts[:depth]), v2)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


#: (monotonic time read, quota): the quota is read again after a minute (reading it
#: costs about 0.1 ms, and scoring asks at every call).
_quota_read: tuple[float, float | None] = (-float("inf"), None)


def _usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by its cgroups' CPU quota
    (a container given 2 CPUs on a 64-core host gets 2, not 64). At least 1."""
    global _quota_read
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    now = time.monotonic()
    if now - _quota_read[0] > 60.0:
        _quota_read = (now, _cpu_quota())
    quota = _quota_read[1]
    if quota is not None:
        n = min(n, int(quota))
    return max(1, n)


def free_cores(own_threads: int = 0) -> int:
    """How many cores this process can use now without fighting other jobs for them.

    The cores it may run on (``os.sched_getaffinity``, capped by a cgroup CPU quota)
    minus the other runnable tasks, read from the one-minute load average less this
    process's own busy threads (``own_threads``). Never less than 1.

    Oversubscribing cores hurts a multi-threaded training loop far more than it slows a
    single thread: each step waits for its slowest thread, and a thread that loses its
    core to another job stalls all the others. Sizing to the free cores keeps training
    at about "cores left over" speed instead of collapsing.
    """
    n = _usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return max(1, n)
    others = max(0.0, load - max(0, own_threads))
    return int(max(1, min(n, n - int(others + 0.5))))


def _runnable_now(samples: int = 3) -> int | None:
    """Tasks runnable on the machine now (Linux ``/proc/loadavg``), or None elsewhere.

    The least of ``samples`` reads 0.2 ms apart, so a daemon's moment of work is not
    taken for a busy core; a CPU-bound job is runnable in every read. The count
    includes the calling thread itself.
    """
    counts = []
    try:
        for i in range(samples):
            if i:
                time.sleep(0.0002)
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
    except (OSError, ValueError, IndexError):
        return None
    return min(counts)


def scoring_workers() -> int:
    """How many threads scoring may use now: the free cores, read two ways.

    :func:`free_cores` reads the one-minute load average, which still counts this
    process's own work of the last minute (a training that has just finished reads as
    a busy core for a minute afterwards). The number of tasks runnable at this instant
    does not lag; a CPU-bound job elsewhere is runnable nearly all the time, so it
    shows there too. Scoring takes the larger of the two estimates of free cores: its
    threads work on separate batches and never wait for one another, so a core
    misjudged as free costs a share of that core, not a stalled step as in training.
    """
    by_load = free_cores()
    running = _runnable_now()
    if running is None:
        return by_load
    n = _usable_cores()
    by_now = max(1, min(n, n - max(0, running - 1)))
    return max(by_load, by_now)


def training_threads(rows: int, most: int | None = None) -> int:
    """Threads for an XGBoost training on ``rows`` rows: one below
    :data:`THREADS_FROM_ROWS`, else the free cores (:func:`free_cores`), at most
    ``most`` when it is given (and positive)."""
    threads = 1 if rows < THREADS_FROM_ROWS else free_cores()
    if most is not None and int(most) > 0:
        threads = min(threads, int(most))
    return max(1, threads)
