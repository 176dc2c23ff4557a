"""``rostersync bench --without-outbox``: the same syncs beside a copy of each database without the outbox triggers.

What is asserted is what the comparison must mean: the copy has none of the triggers, so its syncs write the
same roster and no event; the bench reports both side by side; the database the bench was pointed at keeps its
own triggers (only the bench's throwaway databases lose them).
"""

from __future__ import annotations

import pytest
import sqlalchemy

from devtools.outbox_off import drop_outbox_triggers, outbox_triggers
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.clikit import bench_json
from tests.conftest import Linker
from tests.outboxkit import events, stored_roster


def test_without_its_triggers_a_sync_writes_the_roster_and_no_event(runtime: Runtime, link: Linker) -> None:
    """Every ``outbox_`` trigger of 0009 is found and dropped, on either database; the link's own event (written
    before) stays, and the sync after writes its roster without one event more."""
    found = outbox_triggers(runtime.engine)
    assert {name for name, _ in found} >= {"outbox_integration_created", "outbox_integration_status"}
    assert {table for _, table in found} == {"classes", "enrollments", "people", "integrations"}
    integration_id = link(0)
    before = events(runtime.engine)
    assert drop_outbox_triggers(runtime.engine) == len(found)
    assert outbox_triggers(runtime.engine) == []
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert stored_roster(runtime.engine).members
    assert events(runtime.engine) == before


@pytest.mark.timeout(600)
def test_bench_without_outbox_reports_each_database_beside_its_copy(pg_url: str) -> None:
    report, progress = bench_json(pg_url, "--provider", "google", "--students", "60", "--without-outbox")
    figures = report["google"]
    assert list(figures["databases"]) == [
        "sqlite",
        "sqlite_without_outbox",
        "postgresql",
        "postgresql_without_outbox",
    ]
    for database, row in figures["databases"].items():
        assert row["outcomes"] == ["ok"], database
        assert row["full_rows_written"] > 0 and row["resync_rows_written"] == 0, database
    assert "dropped the" in progress
    configured = sqlalchemy.create_engine(pg_url)
    try:
        assert outbox_triggers(configured), "the configured database keeps its triggers"
    finally:
        configured.dispose()
