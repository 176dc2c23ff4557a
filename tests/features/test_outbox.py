"""The transactional outbox (issue 20 items 1 and 2; P12): every roster change is an event of the change feed,
written in its transaction; revoke, purge, erase and retention are events too, and the outbox forgets.

On SQLite and PostgreSQL (``runtime`` is parametrised by ``database_url``); the concurrency proof with real
worker processes is tests/integration/test_outbox_concurrency.py.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import select

from emulators.google import GoogleEmulator
from services.retention import mark_account_deleted, purge_expired
from services.revoke import revoke_integration
from services.rights import erase_integration, erase_person
from store import integrations, outbox
from store.consent import purge_role
from store.models import ChangeEvent
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.outboxkit import FeedEvent, events, head, replayed, stored_roster

ACTOR = "admin:test"


def kinds(found: list[FeedEvent]) -> Counter[str]:
    return Counter(e.type for e in found)


def assert_in_step(runtime: Runtime) -> None:
    """A consumer that followed the feed from the start holds exactly what the tables hold."""
    assert replayed(runtime.engine).roster() == stored_roster(runtime.engine)


def synced(runtime: Runtime, link: Linker, teacher: int = 0) -> int:
    integration_id = link(teacher)
    assert run_sync(runtime, integration_id).outcome == "ok"
    return integration_id


def test_a_first_sync_tells_every_class_and_member_and_the_link(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    found = events(runtime.engine, integration_id)
    roster = stored_roster(runtime.engine)
    assert found[0].type == "integration.updated" and found[0].data["status"] == "active"
    assert kinds(found)["class.upserted"] == len(roster.classes) > 0
    assert kinds(found)["member.added"] == len(roster.members) > 0
    assert [e.seq for e in found] == sorted({e.seq for e in found})
    teachers = [e for e in found if e.type == "member.added" and e.data["role"] == "teacher"]
    students = [e for e in found if e.type == "member.added" and e.data["role"] == "student"]
    assert all(e.data["display_name"] for e in teachers) and all(e.data["display_name"] is None for e in students)
    assert all(e.person == e.data["person"] for e in teachers + students)
    assert_in_step(runtime)


def test_a_resync_with_no_change_writes_no_event(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    before = head(runtime.engine)
    assert before[0] > 0  # the first sync was told
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert head(runtime.engine) == before


def test_each_roster_change_is_its_event(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = synced(runtime, link)
    teacher = emulator.teacher_ids[0]
    course, other = emulator.course_ids_of(teacher)[:2]
    leaver = emulator.student_ids_of(course)[0]
    last = head(runtime.engine)[0]

    emulator.rename_course(course, name="Renamed")
    emulator.remove_student(course, leaver)
    newcomer = emulator.add_student(other)
    emulator.rename_user(teacher)
    assert run_sync(runtime, integration_id).outcome == "ok"
    new = [e for e in events(runtime.engine) if e.seq > last]
    assert {e.type for e in new} == {"class.upserted", "member.removed", "member.added", "person.updated"}
    [renamed] = [e for e in new if e.type == "class.upserted"]
    assert renamed.data["name"] == "Renamed"
    tenant = integrations.load(runtime.engine, integration_id).tenant
    left = runtime.pseudonymiser.pseudonym("google", tenant, leaver)
    assert [e.data for e in new if e.type == "member.removed"] == [{"class": course, "person": left}]
    joined = runtime.pseudonymiser.pseudonym("google", tenant, newcomer)
    assert [e.data["person"] for e in new if e.type == "member.added"] == [joined]
    assert_in_step(runtime)

    last = head(runtime.engine)[0]
    emulator.enroll_student(course, leaver)  # back again: the same pseudonym is added again
    emulator.archive_course(other)
    assert run_sync(runtime, integration_id).outcome == "ok"
    new = [e for e in events(runtime.engine) if e.seq > last]
    assert {"class": course, "person": left} in [
        {k: e.data[k] for k in ("class", "person")} for e in new if e.type == "member.added"
    ]
    assert_in_step(runtime)


def test_status_changes_are_integration_events(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    generation = integrations.load(runtime.engine, integration_id).generation
    assert integrations.mark_failed(runtime.engine, integration_id, generation, actor=ACTOR, reason="test")
    assert integrations.resume_failed(runtime.engine, integration_id, actor=ACTOR)
    statuses = [e.data["status"] for e in events(runtime.engine, integration_id) if e.type == "integration.updated"]
    assert statuses == ["active", "failed", "active"]
    assert_in_step(runtime)


def test_a_revoke_is_a_purge_then_the_status_and_forgets_what_came_before(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    other = synced(runtime, link, 1)
    kept = events(runtime.engine, other)
    revoke_integration(runtime, integration_id, actor=ACTOR)
    found = events(runtime.engine, integration_id)
    assert [(e.type, e.data.get("status")) for e in found] == [
        ("integration.purged", None),
        ("integration.updated", "revoked"),
    ]
    assert events(runtime.engine, other) == kept  # another integration's events are not touched
    assert_in_step(runtime)


def test_a_revoke_mid_sync_leaves_no_event_after_it(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    """The revoke commits while the sync waits for a page: the page's write is fenced, so no event follows."""
    integration_id = link(0)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    for _ in range(35):
        emulator.add_student(course)  # a roster of two pages
    batches: list[str] = []

    def revoke_mid_page(record: object) -> None:
        if getattr(record, "path", "") == "/batch":
            batches.append("/batch")
            if len(batches) == 2:
                revoke_integration(runtime, integration_id, actor=ACTOR)

    emulator.add_hook(revoke_mid_page)
    run_sync(runtime, integration_id)
    assert len(batches) >= 2
    found = events(runtime.engine, integration_id)
    assert [e.type for e in found] == ["integration.purged", "integration.updated"]
    assert found[-1].data["status"] == "revoked"
    assert_in_step(runtime)


def test_a_consumer_replaying_the_feed_after_a_purge_finds_nothing_of_the_integration_but_its_purge(
    runtime: Runtime, link: Linker
) -> None:
    """P12: the platform is told to forget, and the outbox forgot too."""
    integration_id = synced(runtime, link)
    pseudonyms = {key[2] for key in stored_roster(runtime.engine).members if key[0] == integration_id}
    erase_integration(runtime, integration_id, actor=ACTOR)  # revoke, then its record goes
    found = events(runtime.engine, integration_id)
    assert [e.type for e in found] == ["integration.purged"]  # its record went too: not even its status stays
    assert all(e.person is None and not set(e.data.values()) & pseudonyms for e in found)
    with runtime.engine.connect() as connection:
        texts = connection.execute(select(ChangeEvent.data)).scalars().all()
    assert not [p for p in pseudonyms if any(p in text for text in texts)]
    assert replayed(runtime.engine).roster().members == {}


def test_a_consumer_replaying_the_feed_after_an_erase_finds_the_pseudonym_only_in_its_erased_event(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """P12: the erase is an event, and the only one of the feed that still names the person."""
    integration_id = synced(runtime, link)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    student = emulator.student_ids_of(course)[0]
    tenant = integrations.load(runtime.engine, integration_id).tenant
    pseudonym = runtime.pseudonymiser.pseudonym("google", tenant, student)
    mirror = replayed(runtime.engine)
    assert any(key[2] == pseudonym for key in mirror.members)
    last = head(runtime.engine)[0]

    erase_person(runtime, pseudonym, actor=ACTOR)
    naming = [e for e in events(runtime.engine) if pseudonym in repr(e)]
    assert [(e.type, e.integration_id, e.data) for e in naming] == [
        ("person.erased", integration_id, {"person": pseudonym})
    ]
    for event in events(runtime.engine):
        if event.seq > last:
            mirror.apply(event)  # a consumer that had the person applies the erase and forgets them
    assert not any(key[2] == pseudonym for key in mirror.members)
    assert mirror.roster() == stored_roster(runtime.engine)
    assert_in_step(runtime)


def test_students_a_consent_no_longer_covers_leave_the_feed_too(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    with runtime.engine.begin() as connection:
        purge_role(connection, integration_id, "student")
    assert_in_step(runtime)
    assert {m["role"] for m in replayed(runtime.engine).roster().members.values()} == {"teacher"}


def test_retention_prunes_events_older_than_the_window(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    last = head(runtime.engine)[0]
    days = runtime.settings.change_feed_retention_days
    assert days == 14
    now = datetime.now(UTC)
    with time_machine.travel(now + timedelta(days=days) - timedelta(hours=1), tick=False):
        assert purge_expired(runtime).feed_events == 0
    assert head(runtime.engine) == (last, 0)
    with time_machine.travel(now + timedelta(days=days, hours=1), tick=False):
        report = purge_expired(runtime)
    assert report.feed_events == last and events(runtime.engine) == []
    assert head(runtime.engine) == (last, last)  # a reader at a lower position must take a new snapshot
    revoke_integration(runtime, integration_id, actor=ACTOR)
    assert [e.seq for e in events(runtime.engine)] == [last + 1, last + 2]  # seqs go on from the head


def test_the_retention_window_is_a_setting(runtime: Runtime, link: Linker) -> None:
    synced(runtime, link)
    short = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"change_feed_retention_days": 1}))
    with time_machine.travel(datetime.now(UTC) + timedelta(days=2), tick=False):
        assert purge_expired(short).feed_events > 0
    assert events(runtime.engine) == []


def test_a_deleted_accounts_purge_at_the_deadline_is_told(runtime: Runtime, link: Linker) -> None:
    integration_id = synced(runtime, link)
    mark_account_deleted(runtime, "teacher-0", actor=ACTOR)
    statuses = [e.data.get("status") for e in events(runtime.engine, integration_id)]
    assert statuses[-1] == "suspended"
    with time_machine.travel(datetime.now(UTC) + timedelta(days=190), tick=False):
        purge_expired(runtime)
    assert "integration.purged" in [e.type for e in events(runtime.engine, integration_id)]
    assert not [e for e in events(runtime.engine, integration_id) if e.type.startswith(("class.", "member."))]


def test_appended_events_take_the_next_seqs(runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        first = outbox.append(
            connection, [outbox.Event("integration.purged", 7), outbox.Event("integration.purged", 8)]
        )
        second = outbox.append(connection, [outbox.Event("integration.purged", 9)])
    assert first == [1, 2] and second == [3]
    assert head(runtime.engine) == (3, 0)
