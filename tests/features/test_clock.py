"""A clock that ran ahead, then was set right (issue 18, item 19): the schedule and the change-feed cursor
written under the wrong time must not stall the integration; on SQLite and PostgreSQL, with time-machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from emulators.clever import CleverEmulator
from store import scheduling
from store.db import utcnow
from store.models import Integration
from store.runtime import Runtime, build_runtime, set_runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.conftest import Linker
from worker.scheduler import run_due_here

AHEAD = timedelta(days=30)


def due_of(runtime: Runtime, integration_id: int) -> datetime | None:
    with runtime.engine.connect() as connection:
        due: datetime | None = connection.execute(
            select(Integration.due_at).where(Integration.id == integration_id)
        ).scalar_one()
        return due


def test_a_sync_made_while_the_clock_ran_ahead_is_due_again_once_it_is_set_right(
    runtime: Runtime, link: Linker
) -> None:
    integration_id = link(0)
    interval = timedelta(seconds=runtime.settings.sync_interval_seconds)
    with time_machine.travel(utcnow() + AHEAD, tick=False):
        assert run_due_here(runtime).syncs == [integration_id]
    assert due_of(runtime, integration_id) == pytest.approx(utcnow() + AHEAD + interval, abs=timedelta(minutes=1))
    # The clock is right again: a due time a month out is not one this integration's interval could set.
    assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=runtime.settings.queue_stale_seconds) == [
        integration_id
    ]
    scheduling.unqueue(runtime.engine, [integration_id])
    report = run_due_here(runtime)
    assert report.syncs == [integration_id] and report.failed == []
    assert due_of(runtime, integration_id) == pytest.approx(utcnow() + interval, abs=timedelta(minutes=1))
    assert run_due_here(runtime).syncs == []


def test_a_due_time_within_the_interval_and_the_clock_slack_is_left_alone(runtime: Runtime, link: Linker) -> None:
    """Machines whose clocks differ a little (under ``CLOCK_SLACK``) do not sync twice."""
    integration_id = link(0)
    with time_machine.travel(utcnow() + scheduling.CLOCK_SLACK - timedelta(minutes=5), tick=False):
        assert run_due_here(runtime).syncs == [integration_id]
    assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=3600) == []
    assert run_due_here(runtime).syncs == []


@pytest.fixture
def clever_runtime(clever: CleverEmulator, database_url: str) -> Iterator[Runtime]:
    runtime = build_runtime(clever_settings_for(clever, database_url))
    set_runtime(runtime)
    yield runtime
    set_runtime(None)
    runtime.engine.dispose()


def test_a_cursor_taken_while_the_clock_ran_ahead_gets_a_full_listing(
    clever_runtime: Runtime, clever: CleverEmulator
) -> None:
    """Its ``full_at`` lies a month ahead: trusted, the change feed would stand in for a full listing for a month."""
    runtime = clever_runtime
    integration_id = link_district(runtime, clever)
    with time_machine.travel(utcnow() + AHEAD, tick=False):
        assert run_sync(runtime, integration_id).mode == "full"
    section = clever.section_ids(clever.district_ids[0])[0]
    clever.remove_student(section, clever.students_of(section)[0])
    assert run_sync(runtime, integration_id).mode == "full"
    assert run_sync(runtime, integration_id).mode == "changes"  # and the new cursor is trusted again
