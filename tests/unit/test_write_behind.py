"""A first sync's writes behind its listing (sync/behind.py): one at a time, in order, each result taken in the
listing's thread, a write's error raised before anything that came after it, and none left running."""

from __future__ import annotations

import threading

import pytest

from sync.behind import WriteBehind


def test_writes_run_one_at_a_time_in_order_on_another_thread() -> None:
    ran: list[tuple[int, str]] = []
    taken: list[int] = []
    busy = threading.Lock()
    main = threading.current_thread().name

    def write(n: int) -> int:
        assert busy.acquire(blocking=False), "two writes in flight at once"
        try:
            ran.append((n, threading.current_thread().name))
            return n
        finally:
            busy.release()

    with WriteBehind() as writes:
        for n in range(5):
            writes.submit(lambda n=n: write(n), taken.append)  # type: ignore[misc]
            assert taken == list(range(n))  # the write before has ended and been taken in this thread
    assert taken == list(range(5))  # the last one was waited for on leaving
    assert [n for n, _ in ran] == list(range(5))
    assert all(name != main for _, name in ran)


def test_a_writes_error_is_raised_at_the_next_write_which_does_not_start() -> None:
    started: list[int] = []

    def fails() -> None:
        started.append(1)
        raise RuntimeError("fenced")

    with pytest.raises(RuntimeError, match="fenced"), WriteBehind() as writes:
        writes.submit(fails, lambda _: None)
        writes.submit(lambda: started.append(2), lambda _: None)
    assert started == [1]


def test_the_listings_own_error_waits_for_the_write_in_flight_whose_error_came_first() -> None:
    release = threading.Event()
    ended: list[str] = []

    def slow_failure() -> None:
        release.wait(timeout=10)
        ended.append("write")
        raise RuntimeError("the write's error")

    with pytest.raises(RuntimeError, match="the write's error") as raised, WriteBehind() as writes:
        writes.submit(slow_failure, lambda _: None)
        release.set()
        raise ValueError("the listing's error, after it")
    assert ended == ["write"]
    assert isinstance(raised.value.__context__, ValueError)


def test_the_listings_own_error_goes_up_once_the_write_in_flight_has_committed() -> None:
    committed: list[int] = []
    with pytest.raises(ValueError, match="provider"), WriteBehind() as writes:
        writes.submit(lambda: 7, committed.append)
        raise ValueError("provider")
    assert committed == [7]
