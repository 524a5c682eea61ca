"""The worker pauses Python's cyclic garbage collector while it works a batch."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from fraudlens.worker import CheckHandler, _collection_paused


@pytest.fixture(autouse=True)
def _collector_back_on() -> Any:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


class _Spy:
    """Stands in for CheckHandler._work: records whether the collector ran."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.seen: list[bool] = []
        self.fail = fail

    def __call__(self, items: Any, result: Any) -> None:
        self.seen.append(gc.isenabled())
        if self.fail is not None:
            raise self.fail


def _handler(work: _Spy) -> CheckHandler:
    handler = CheckHandler.__new__(CheckHandler)
    handler._work = work  # type: ignore[method-assign]
    return handler


def test_a_batch_is_worked_with_the_collector_paused_and_it_resumes_after() -> None:
    gc.enable()
    spy = _Spy()
    _handler(spy)._work_reconnecting([], None)  # type: ignore[arg-type]
    assert spy.seen == [False]
    assert gc.isenabled()


def test_the_collector_resumes_when_the_batch_fails() -> None:
    gc.enable()
    spy = _Spy(fail=RuntimeError("bad account data"))
    with pytest.raises(RuntimeError):
        _handler(spy)._work_reconnecting([], None)  # type: ignore[arg-type]
    assert spy.seen == [False]
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    spy = _Spy()
    _handler(spy)._work_reconnecting([], None)  # type: ignore[arg-type]
    assert spy.seen == [False]
    assert not gc.isenabled()


def test_nested_and_concurrent_pauses_resume_once_the_last_ends() -> None:
    gc.enable()
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with _collection_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with _collection_paused():
        t.start()
        assert inside.wait(10)
        with _collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    # this thread's pause ended, the other thread's has not
    assert not gc.isenabled()
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_what_a_batch_leaves_in_cycles_is_collected_when_it_ends() -> None:
    import weakref

    gc.enable()
    gc.collect()

    class Node:
        pass

    refs: list[weakref.ref[Node]] = []
    with _collection_paused():
        for _ in range(2000):  # past the young generation's threshold
            a, b = Node(), Node()
            a.other, b.other = b, a  # type: ignore[attr-defined]
            refs.append(weakref.ref(a))
            del a, b
        assert all(r() is not None for r in refs)  # nothing collected during the batch
    assert all(r() is None for r in refs)
