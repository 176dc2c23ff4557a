"""A first sync's writes, one at a time on a thread of their own, while the next page is read and mapped.

Why: a first sync of a district spends its time on two things that need not wait for each other: the
database taking in a page's rows (``COPY`` on PostgreSQL, one ``INSERT .. SELECT`` a table on SQLite,
both of which run with Python's lock released), and this process parsing and mapping the next page
(pure Python). Done in turn, a 100,000-student district's full sync was their sum; with one write
behind, it is nearer the larger of the two, on a machine's second core.

The order of what is stored does not change: at most ONE write is in flight, each waits for the one
before it (whose committed rows it builds on), and the listing waits for the last before anything that
reads what they stored (the members' requests, the sweep). A write's error is raised in the listing's
thread at its next write or wait, before anything that came after it in the listing; when the listing
itself fails while a write is in flight, that write is waited for first (so no transaction of the sync
outlives it), and its error, which came first, is the one that goes up.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class WriteBehind:
    """At most one write in flight; ``done`` takes its result in the caller's thread once it has ended.

    Used as a context manager: when the block is left, the last write has ended (committed, or its error
    raised), and the thread is gone.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._flight: tuple[Future[Any], Callable[[Any], None]] | None = None

    def submit(self, write: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Wait for the write before (raising its error), then start this one."""
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rostersync-write")
        self._flight = (self._pool.submit(write), done)

    def wait(self) -> None:
        """Block until the write in flight (if any) has ended: its result to its ``done``, or its error raised."""
        if self._flight is None:
            return
        future, done = self._flight
        self._flight = None
        done(future.result())

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        try:
            # On the block's error too: the write in flight ends first, and its own error, which came
            # first in the listing's order, goes up (with the block's as its context).
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
