"""The retention job (P10) with a controlled clock: time-machine moves every ``datetime.now`` of the process."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import insert, select

from emulators.google import GoogleEmulator
from services.linking import LinkError
from services.retention import mark_account_deleted, purge_expired
from store import audit, integrations
from store.models import Integration, Person
from store.retention import AlreadyDeleted, add_months
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.google_fixtures import failed_after_an_outage
from tests.helpers import people, row_count

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_add_months_is_calendar_months() -> None:
    assert add_months(datetime(2026, 11, 29, 12), 6) == datetime(2027, 5, 29, 12)
    assert add_months(datetime(2026, 8, 31), 6) == datetime(2027, 2, 28)
    assert add_months(datetime(2027, 8, 31), 6) == datetime(2028, 2, 29)


def test_a_deleted_accounts_data_survives_5_months_29_days_and_is_gone_at_6_months(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    with time_machine.travel(START, tick=True):
        integration_id = link(0, platform_teacher="teacher-gone")
        kept = link(1, platform_teacher="teacher-stays")
        run_sync(runtime, integration_id)
        run_sync(runtime, kept)
    with time_machine.travel(START, tick=False):
        assert mark_account_deleted(runtime, "teacher-gone", actor="admin:test") == [integration_id]
    rows = row_count(runtime.engine, integration_id)
    assert rows > 0
    # From the deletion on, no new data is pulled for that account: its integration is suspended, not synced.
    assert integrations.load(runtime.engine, integration_id).status == "suspended"
    assert integrations.load(runtime.engine, integration_id).token_blob is not None  # kept to revoke at the deadline
    seen = len(emulator.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:suspended"
    assert emulator.requests[seen:] == []

    with time_machine.travel(add_months(START, 5) + timedelta(days=29), tick=False):
        report = purge_expired(runtime)
    assert report.accounts == 0 and report.revoked == []
    assert row_count(runtime.engine, integration_id) == rows
    assert integrations.load(runtime.engine, integration_id).status == "suspended"

    with time_machine.travel(add_months(START, 6), tick=False):
        report = purge_expired(runtime)
    assert report.accounts == 1 and report.revoked == [integration_id]
    assert row_count(runtime.engine, integration_id) == 0
    with runtime.engine.connect() as connection:
        assert connection.execute(select(Integration.id)).scalars().all() == [kept]
    assert "/revoke" in [r.path for r in emulator.requests]  # the grant ended at Google too
    assert row_count(runtime.engine, kept) > 0  # another account's data is untouched

    runs = [e for e in audit.events(runtime.engine) if e.action == "purged_expired"]
    assert len(runs) == 2  # one event per run, with counts
    assert runs[1].details["deleted_accounts"] == 1 and runs[1].details["integrations"] == [integration_id]
    assert audit.count(runtime.engine, "account_deleted") == 1
    text = json.dumps([e.as_json() for e in audit.events(runtime.engine)])
    assert not [s for s in emulator.personal_strings() if s in text]
    assert "teacher-gone" not in text.replace("teacher:teacher-gone", "")  # only the linking actor names it


def test_soft_deleted_members_are_deleted_after_the_set_time(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    with time_machine.travel(START, tick=True):
        integration_id = link(0)
        run_sync(runtime, integration_id)
        course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
        leaver = emulator.student_ids_of(course)[0]
        emulator.remove_student(course, leaver)
        run_sync(runtime, integration_id)
    removed = [p for p in people(runtime.engine, integration_id, current=False) if p.removed_at is not None]
    assert len(removed) == 1

    days = runtime.settings.removed_retention_days
    with time_machine.travel(START + timedelta(days=days) - timedelta(minutes=1), tick=False):
        assert purge_expired(runtime).removed_rows == 0
    with time_machine.travel(START + timedelta(days=days, minutes=1), tick=False):
        report = purge_expired(runtime)
    assert report.removed_rows >= 2  # the person and their enrolment
    assert [p for p in people(runtime.engine, integration_id, current=False) if p.removed_at is not None] == []
    assert people(runtime.engine, integration_id)  # current members stay


def test_ended_integrations_keep_nothing_after_the_grace_period(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    integrations.end_integration(runtime.engine, integration_id, status="revoked", actor="admin:test", reason="")
    with runtime.engine.begin() as connection:  # a leftover, whatever path left it
        connection.execute(insert(Person).values(integration_id=integration_id, role="student", pseudonym="f" * 64))
    waiting = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"revoked_grace_seconds": 3600}))
    assert purge_expired(waiting).ended_rows == 0  # inside a one-hour grace
    assert row_count(runtime.engine, integration_id) == 1
    assert runtime.settings.revoked_grace_seconds == 0  # the default: at once
    report = purge_expired(runtime)
    assert report.ended_rows == 1 and report.integrations == [integration_id]
    assert row_count(runtime.engine, integration_id) == 0


def test_the_retention_actor_runs_the_job_from_the_queue(runtime: Runtime, stub_broker: StubBroker) -> None:
    from worker import broker as brokers
    from worker.actors import purge_expired as purge_actor

    purge_actor.send()
    brokers.drain(stub_broker)
    assert stub_broker.dead_letters == []
    assert audit.count(runtime.engine, "purged_expired") == 1


# --- issue 18, items 10 and 11: failed integrations and deleted accounts ---------------------------------
def test_the_deadline_revokes_the_grant_of_a_deleted_accounts_failed_integration(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    with time_machine.travel(START, tick=True):
        integration_id = link(0, platform_teacher="teacher-gone")
        run_sync(runtime, integration_id)
        failed_after_an_outage(runtime, emulator, integration_id)
        mark_account_deleted(runtime, "teacher-gone", actor="admin:test")
    with time_machine.travel(add_months(START, 6) + timedelta(minutes=1), tick=False):
        report = purge_expired(runtime)
    assert report.revoked == [integration_id]
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0  # the grant ended at Google, not only here
    with runtime.engine.connect() as connection:
        assert connection.execute(select(Integration.id)).scalars().all() == []


def test_a_failed_integration_of_a_deleted_account_is_suspended_and_cannot_be_resumed(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0, platform_teacher="teacher-gone")
    run_sync(runtime, integration_id)
    failed_after_an_outage(runtime, emulator, integration_id)
    assert mark_account_deleted(runtime, "teacher-gone", actor="admin:test") == [integration_id]
    assert integrations.load(runtime.engine, integration_id).status == "suspended"
    assert integrations.resume_failed(runtime.engine, integration_id, actor="admin:test") is False
    seen = len(emulator.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:suspended"
    assert emulator.requests[seen:] == []


def test_a_deleted_account_cannot_link_again_until_its_data_is_purged(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """The rule (docs/privacy.md): a deletion stands until the deadline; a link by that account is refused."""
    with time_machine.travel(START, tick=True):
        integration_id = link(0, platform_teacher="teacher-gone")
        run_sync(runtime, integration_id)
        mark_account_deleted(runtime, "teacher-gone", actor="admin:test")
        grants = emulator.live_grants(emulator.teacher_ids[0])
        with pytest.raises(LinkError, match="marked deleted"):
            link(0, platform_teacher="teacher-gone")
        with pytest.raises(LinkError, match="marked deleted"):  # another provider account, a new integration
            link(1, platform_teacher="teacher-gone")
        assert emulator.live_grants(emulator.teacher_ids[0]) == grants  # no code was exchanged: no new grant
        assert emulator.live_grants(emulator.teacher_ids[1]) == 0
        state = integrations.load(runtime.engine, integration_id)
        assert state.status == "suspended"
        with runtime.engine.connect() as connection:
            assert connection.execute(select(Integration.id)).scalars().all() == [integration_id]
        with pytest.raises(AlreadyDeleted):  # the first deletion still stands, and its deadline
            mark_account_deleted(runtime, "teacher-gone", actor="admin:test")
    with time_machine.travel(add_months(START, 6) + timedelta(minutes=1), tick=True):
        assert purge_expired(runtime).revoked == [integration_id]
        # Purged: the account id is free again, and a new deletion of it starts a new clock.
        again = link(0, platform_teacher="teacher-gone")
        assert mark_account_deleted(runtime, "teacher-gone", actor="admin:test") == [again]
        assert integrations.load(runtime.engine, again).status == "suspended"
