"""A store call that waits on its server past ``call_timeout`` has its connection cut.

The unit tests drive :class:`CallWatch` alone; the server tests put a relay between the
store and the real PostgreSQL or MariaDB server that leaves open connections half-open
(the server's end gone, the client's silent), which is what a frozen server or a
failover does to a call: it waited for ever.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _services import (  # type: ignore[import-not-found]
    error_within,
    private_database,
    relayed_database,
)
from fraudlens.errors import StoreUnavailableError
from fraudlens.store._watch import CallWatch

pytest.importorskip("sqlalchemy")

from fraudlens.store import Store


def _watch(bound: float) -> tuple[CallWatch, list[set[int]]]:
    cuts: list[set[int]] = []

    def cut(threads: set[int]) -> int:
        cuts.append(set(threads))
        return len(threads)

    return CallWatch(bound, cut, "test"), cuts


def test_a_call_past_the_bound_is_cut_once_and_a_quick_one_never() -> None:
    watch, cuts = _watch(0.4)
    try:
        watch.enter()  # a quick call
        watch.leave()
        time.sleep(0.8)
        assert cuts == []
        watch.enter()  # a call that does not return
        watch.enter()  # a nested call counts with its caller's
        watch.leave()
        deadline = time.monotonic() + 5
        while not cuts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cuts == [{threading.get_ident()}]
        time.sleep(0.8)
        assert len(cuts) == 1, "the same call was cut twice"
        assert watch.calls_cut == 1
        watch.leave()
        watch.enter()  # the thread's next call has a bound of its own
        assert watch.stuck(time.monotonic() + 0.1) == set()
        assert watch.stuck(time.monotonic() + 1.0) == {threading.get_ident()}
        watch.leave()
    finally:
        watch.close()


def test_only_the_threads_whose_call_is_stuck_are_named() -> None:
    watch, _cuts = _watch(60)
    entered = threading.Event()
    release = threading.Event()
    other: list[int] = []

    def slow() -> None:
        other.append(threading.get_ident())
        watch.enter()
        entered.set()
        release.wait(10)
        watch.leave()

    t = threading.Thread(target=slow)
    t.start()
    try:
        assert entered.wait(5)
        time.sleep(0.3)
        watch.enter()  # this thread's call began 0.3 s later
        now = time.monotonic()
        assert watch.stuck(now + 59.85) == {other[0]}
        assert watch.stuck(now + 120) == {threading.get_ident()}  # the other is cut already
        watch.leave()
    finally:
        release.set()
        t.join(5)
        watch.close()


@pytest.mark.parametrize("bound", [0, -1.0, float("nan")])
def test_a_bound_that_is_not_above_zero_is_refused(bound: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        CallWatch(bound, lambda threads: 0, "test")


def test_a_sqlite_store_sets_no_watch(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 's.db'}", call_timeout=1) as store:
        assert store._watch is None and store.calls_cut == 0


@pytest.mark.services
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_call_on_a_connection_left_half_open_fails_after_the_bound(
    kind: str, tmp_path: Path
) -> None:
    """A call on a pinned connection whose server's end is gone: on the old code it
    waited for ever (still waiting after 40 s); now it fails as an outage once it has
    run 2 s, and the next call takes a fresh connection."""
    with relayed_database(kind, tmp_path) as (url, proxy):
        store = Store(url, call_timeout=2)
        try:
            said: list[Any] = []

            def stuck_call() -> None:
                with store.pinned():
                    said.append(store.count_risk_events())
                    assert proxy.fail_over() >= 1
                    started = time.monotonic()
                    try:
                        store.count_risk_events()
                    finally:
                        said.append(time.monotonic() - started)

            err = error_within(stuck_call, 40)
            assert isinstance(err, StoreUnavailableError), err
            assert said[0] == 1
            assert 1.9 <= said[1] < 10, f"failed after {said[1]:.1f} s"
            assert store.calls_cut == 1
            assert store.count_risk_events() == 1  # over a fresh connection
        finally:
            store.close()


@pytest.mark.services
def test_a_call_that_is_slow_but_within_the_bound_is_left_alone(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from fraudlens.store.db import _mapped

    def sleep(s: Store) -> None:
        with s.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_sleep(1.5)"))

    with private_database("postgresql", tmp_path) as url, Store(url, call_timeout=3) as store:
        _mapped(sleep)(store)  # a store call of 1.5 s, half its bound
        time.sleep(0.5)
        assert store.calls_cut == 0
