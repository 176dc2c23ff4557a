"""A link's fixed cost: the fence is checked before each provider request, not after each page already in hand,
and read only where no fenced write has just checked it.

Found by profiling the 84-link Google bench (BENCHMARKS.md): a teacher's roster arrives as one batch of
twenty pages, and each page was followed by a read of the fence, eighteen reads for two requests; then each
request's own read came right after a fenced write had read the same row under its lock.
Counted, not timed: the fence reads of a sync against the requests it made.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import Connection, event

from emulators.google import GoogleEmulator
from store.db import ADVISORY_READ
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher

# Five courses of thirty, read ten students a page: a batch answers some twenty pages at once.
pytestmark = pytest.mark.emulator(teachers=1, courses_per_teacher=5, students_per_course=30, roster_page_cap=10)

FENCE_READ = "SELECT integrations.status, integrations.generation, integrations.lease_owner"


def test_the_fence_is_checked_between_any_two_requests_and_read_only_where_no_write_checked_it(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """Before each provider request the fence has been verified since the request before it: by an unlocked read,
    or by a fenced write's read under the lock (which makes the unlocked one redundant); the first request comes
    after the lease was taken and the state read with it."""
    integration_id = link_teacher(runtime, emulator, 0)
    events: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def record(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if " ".join(statement.split()).startswith(FENCE_READ):
            events.append("read" if conn.get_execution_options().get(ADVISORY_READ) else "locked")

    emulator.add_hook(lambda r: events.append("request") if r.path.startswith("/v1/") or r.path == "/batch" else None)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    assert outcome.provider_calls < 5 < outcome.members_seen / 10  # pages in hand cost no read
    requests = [n for n, what in enumerate(events) if what == "request"]
    assert len(requests) == outcome.provider_calls
    for before, after in itertools.pairwise(requests):
        assert {"read", "locked"} & set(events[before + 1 : after]), f"no fence check between requests: {events}"
    reads = events.count("read")
    assert reads < outcome.provider_calls, f"{reads} fence reads for {outcome.provider_calls} requests: {events}"
