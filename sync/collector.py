"""Python's cyclic garbage collector paused while one page of a sync is read, mapped and written.

A page allocates hundreds of thousands of containers (decoded records, mapped records, statement
parameters) that hold no reference cycle and die by their reference counts; the collector's runs over
them, and its full runs over everything the process holds, were a quarter of a change page's CPU and
an eighth of a district's first sync (issue 22, BENCHMARKS.md). Paused a page at a time, not a whole
sync: a worker's other threads' cyclic garbage waits at most one page.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one page, and back on after it (even when the page fails).

    Why: reading, mapping and writing a page of 3,000 events allocates some 200,000 containers (the
    decoded events, the records, the statements' parameters) that hold no reference cycle and are freed
    by their reference counts; meanwhile the collector ran about 150 times over them and, once, over every
    object of the process: a quarter of the page's CPU (issue 22). A page's cyclic garbage, if any, waits
    for the collector until the page ends. A collector someone else turned off stays off.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
