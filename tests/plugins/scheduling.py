"""Order for pytest-xdist: the long tests first.

The tests that start real fleets of processes (workers, schedulers, a bench, a private Redis) are the ones
marked with a ``timeout`` above the default; the longest runs for two minutes. Left in file order one of
them may start last and keep one worker busy long after the other has run out of tests. Put first (the
longest allowance first), they start at once and the short tests fill the other worker around them.
Serially only the order changes. (``xdist_group`` would also keep them apart, but pytest-xdist 3.8's
``loadgroup`` sets a node id attribute that pytest 9.2 no longer reads, so groups are silently ignored.)
"""

from __future__ import annotations

import pytest


def _timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    return float(marker.args[0]) if marker is not None and marker.args else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    long = sorted((item for item in items if _timeout(item) > 0), key=_timeout, reverse=True)  # stable
    marked = {id(item) for item in long}
    items[:] = long + [item for item in items if id(item) not in marked]
