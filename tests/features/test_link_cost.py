"""A link's fixed cost: the fence is read before each provider request, not after each page already in hand.

Found by profiling the 84-link Google bench (BENCHMARKS.md): a teacher's roster arrives as one batch of
twenty pages, and each page was followed by a read of the fence, eighteen reads for two requests.
Counted, not timed: the fence reads of a sync against the requests it made.
"""

from __future__ import annotations

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


def test_a_listing_reads_the_fence_once_per_request_not_once_per_page(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(runtime, emulator, 0)
    advisory: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def record(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.get_execution_options().get(ADVISORY_READ) and " ".join(statement.split()).startswith(FENCE_READ):
            advisory.append(statement)  # each fenced write reads it again under the lock: not counted here

    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    assert outcome.provider_calls < 5 < outcome.members_seen / 10
    assert len(advisory) == outcome.provider_calls, f"{len(advisory)} fence reads, {outcome.provider_calls} requests"
