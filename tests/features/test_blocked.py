"""A setting the school can switch back is not a revocation (issue 23): ``blocked`` keeps tokens and roster,
is retried with a growing wait, comes back by itself, and ends like a revoke only past BLOCKED_GRACE_DAYS.

Through the sync cycle against the Google emulator, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from cli.status import status_payload
from emulators.google import GoogleEmulator
from services.linking import LinkError
from services.retention import mark_account_deleted, purge_expired
from services.revoke import revoke_integration
from store import audit, integrations, scheduling
from store.db import utcnow
from store.models import Integration
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.helpers import row_count
from worker.retry_policy import run_with_retries

Switch = Callable[[GoogleEmulator, str], None]
SWITCHES: dict[str, tuple[Switch, Switch, str]] = {
    # what a Workspace admin switches off, how it is switched back, what the admin is told
    "classroom_data_access": (GoogleEmulator.disable_api, GoogleEmulator.enable_api, "Classroom data access"),
    "classroom_service": (GoogleEmulator.disable_classroom, GoogleEmulator.enable_classroom, "turned off Classroom"),
}


def due_at(runtime: Runtime, integration_id: int) -> datetime | None:
    with runtime.engine.connect() as connection:
        return connection.execute(select(Integration.due_at).where(Integration.id == integration_id)).scalar_one()


def blocked_integration(runtime: Runtime, emulator: GoogleEmulator, link: Linker, switch: str = "") -> tuple[int, int]:
    """A synced integration whose teacher a Workspace admin then cut off; returns (id, rows it holds)."""
    integration_id = link(0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    rows = row_count(runtime.engine, integration_id)
    assert rows > 0
    SWITCHES[switch or "classroom_data_access"][0](emulator, emulator.teacher_ids[0])
    assert run_sync(runtime, integration_id).outcome == "access_blocked"
    return integration_id, rows


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_a_switched_off_classroom_blocks_and_keeps_everything(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, switch: str
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    rows = row_count(runtime.engine, integration_id)
    SWITCHES[switch][0](emulator, emulator.teacher_ids[0])
    seen = len(emulator.requests)

    assert run_sync(runtime, integration_id).outcome == "access_blocked"

    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "blocked" and state.token_blob is not None
    assert row_count(runtime.engine, integration_id) == rows  # nothing purged, nothing swept
    calls = [r.path for r in emulator.requests[seen:]]
    assert [path for path in calls if path.startswith("/v1/") or path == "/batch"] == ["/v1/courses"]
    assert "/revoke" not in calls and emulator.live_grants(emulator.teacher_ids[0]) == 1
    actions = audit.actions(runtime.engine, integration_id)
    assert "blocked" in actions and "purged" not in actions and "revoked" not in actions
    row = next(row for row in status_payload(runtime.engine)["integrations"] if row["id"] == integration_id)
    assert row["status"] == "blocked"
    assert SWITCHES[switch][2] in str(row["status_reason"]) and "Admin console" in str(row["status_reason"])


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_switched_back_on_the_next_sync_is_active_and_syncs(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, switch: str
) -> None:
    integration_id, rows = blocked_integration(runtime, emulator, link, switch)
    SWITCHES[switch][1](emulator, emulator.teacher_ids[0])
    course = emulator.course_ids_of(emulator.teacher_ids[0], states={"ACTIVE"})[0]
    emulator.add_student(course)

    assert run_sync(runtime, integration_id).outcome == "ok"

    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "active"
    assert row_count(runtime.engine, integration_id) == rows + 2  # the new student and their enrolment
    assert audit.actions(runtime.engine, integration_id)[-2:] == ["unblocked", "synced"]
    assert status_payload(runtime.engine)["integrations"][0]["status_reason"] == ""
    next_due = due_at(runtime, integration_id)
    assert next_due is not None and next_due > utcnow() + timedelta(hours=23)  # the normal interval again


def test_blocked_past_the_grace_ends_like_a_revoke_at_its_next_sync(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, _rows = blocked_integration(runtime, emulator, link)
    grace = timedelta(days=runtime.settings.blocked_grace_days)
    with time_machine.travel(utcnow() + grace - timedelta(hours=1), tick=False):
        assert run_sync(runtime, integration_id).outcome == "access_blocked"  # still within: asked again
    seen = len(emulator.requests)
    with time_machine.travel(utcnow() + grace + timedelta(minutes=1), tick=False):
        assert run_sync(runtime, integration_id).outcome == "revoked"

    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "revoked" and state.token_blob is None
    assert row_count(runtime.engine, integration_id) == 0
    actions = audit.actions(runtime.engine, integration_id)
    assert {"revoked", "purged", "provider_revoked"} <= set(actions)
    assert [r.path for r in emulator.requests[seen:] if r.path != "/token"] == ["/revoke"]  # no roster call
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
    reason = status_payload(runtime.engine)["integrations"][0]["status_reason"]
    assert f"blocked for more than {grace.days} days" in str(reason)


def test_blocked_past_the_grace_is_ended_by_the_retention_job(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, rows = blocked_integration(runtime, emulator, link)
    grace = timedelta(days=runtime.settings.blocked_grace_days)
    with time_machine.travel(utcnow() + grace - timedelta(hours=1), tick=False):
        assert purge_expired(runtime).revoked == []
    assert integrations.load(runtime.engine, integration_id).status == "blocked"
    assert row_count(runtime.engine, integration_id) == rows

    with time_machine.travel(utcnow() + grace + timedelta(minutes=1), tick=False):
        report = purge_expired(runtime)

    assert report.revoked == [integration_id]
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "revoked" and state.token_blob is None
    assert row_count(runtime.engine, integration_id) == 0
    assert "provider_revoked" in audit.actions(runtime.engine, integration_id)
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0


def test_the_scheduler_claims_a_blocked_integration_after_a_growing_wait(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, _rows = blocked_integration(runtime, emulator, link)
    first = runtime.settings.blocked_retry_min_seconds
    stale = runtime.settings.queue_stale_seconds

    def claim(at: datetime) -> list[int]:
        return scheduling.claim_due(runtime.engine, limit=10, stale_seconds=stale, now=at)

    start = utcnow()
    assert claim(start) == []  # not at once: it waits
    waits = []
    moment = start
    for _ in range(4):
        due = due_at(runtime, integration_id)
        assert due is not None
        waits.append((due - moment).total_seconds())
        assert claim(due - timedelta(seconds=5)) == []
        moment = due + timedelta(seconds=1)
        assert claim(moment) == [integration_id]
        with time_machine.travel(moment, tick=False):
            assert run_sync(runtime, integration_id).outcome == "access_blocked"
        scheduling.run_ended(runtime.engine, integration_id, default_interval=runtime.settings.sync_interval_seconds)
    assert first - 5 <= waits[0] <= first + 5
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(waits[1:]))  # doubling
    # The wait never passes the integration's own interval: the normal schedule is the ceiling.
    with time_machine.travel(start + timedelta(days=20), tick=False):
        assert run_sync(runtime, integration_id).outcome == "access_blocked"
        due = due_at(runtime, integration_id)
        assert due is not None and due - utcnow() == timedelta(seconds=runtime.settings.sync_interval_seconds)


def test_a_blocked_integration_that_then_keeps_failing_stays_blocked(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """The retry caps mark an active integration failed; a blocked one keeps its status (and its grace clock)."""
    integration_id, rows = blocked_integration(runtime, emulator, link)
    emulator.enable_api(emulator.teacher_ids[0])
    emulator.fail_next("/v1/courses", 503, count=100)

    outcome = run_with_retries(runtime, integration_id, sleep=lambda _seconds: None)

    assert outcome == "transient"
    assert integrations.load(runtime.engine, integration_id).status == "blocked"
    assert row_count(runtime.engine, integration_id) == rows
    assert "failed" not in audit.actions(runtime.engine, integration_id)


def test_a_blocked_integration_holds_a_live_grant_for_revoke_and_account_deletion(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, _rows = blocked_integration(runtime, emulator, link)
    other = link(1, platform_teacher="teacher-other")
    run_sync(runtime, other)
    emulator.disable_api(emulator.teacher_ids[1])
    assert run_sync(runtime, other).outcome == "access_blocked"

    # An account deleted by the platform: its blocked integration stops syncing, like an active one.
    mark_account_deleted(runtime, "teacher-other", actor="admin:test")
    assert integrations.load(runtime.engine, other).status == "suspended"
    assert run_sync(runtime, other).outcome == "skipped:suspended"

    # An admin's revoke of a blocked integration revokes the grant it still holds at Google.
    result = revoke_integration(runtime, integration_id, actor="admin:test", reason="left school")
    assert result.provider_revoked
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
    assert row_count(runtime.engine, integration_id) == 0


def test_a_link_while_classroom_is_switched_off_is_refused_with_the_reason_and_stores_nothing(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """At link time there is nothing to keep: the link is refused in the admin's words and the grant given back."""
    emulator.disable_classroom(emulator.teacher_ids[0])
    with pytest.raises(LinkError, match="turned off Classroom for this user"):
        link(0)
    assert status_payload(runtime.engine)["integrations"] == []
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
