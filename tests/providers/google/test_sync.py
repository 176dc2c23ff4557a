"""The sync path end to end against the emulator, on SQLite and on PostgreSQL (promises P1, P2)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from sqlalchemy import select

from emulators.google import GoogleEmulator
from mappers.google import EMAILS_SCOPE as GOOGLE_EMAILS_SCOPE
from providers.registry import tokens_from_payload
from settings import GOOGLE_SCOPES
from store import integrations
from store.models import SyncRun
from store.runtime import Runtime
from sync import listing
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.helpers import classes, enrollments, people
from tests.providers.google.raw_google import full_token, list_all

PHOTOS_SCOPE = "https://www.googleapis.com/auth/classroom.profile.photos"


def test_first_sync_stores_exactly_the_allowlist_projection(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    # The grant includes the emails and photos scopes, so Google sends emails and photos;
    # teachers keep their email (the scope returns it), students keep nothing but a pseudonym.
    everything = [*GOOGLE_SCOPES, GOOGLE_EMAILS_SCOPE, PHOTOS_SCOPE]
    emulator.set_granted_scopes(everything)
    integration_id = link(0)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"

    teacher = emulator.teacher_ids[0]
    token = full_token(emulator, teacher, everything)
    raw_courses = list_all(emulator, token, "/v1/courses", "courses", teacherId="me", courseStates="ACTIVE")
    expected_classes = {(c["id"], c["name"], c.get("section"), c["courseState"]) for c in raw_courses}
    stored_classes = {(c.external_id, c.name, c.section, c.state) for c in classes(runtime.engine, integration_id)}
    assert stored_classes == expected_classes

    pseudonym = runtime.pseudonymiser.pseudonym
    tenant = integrations.load(runtime.engine, integration_id).tenant
    expected_students: set[tuple[str, None, None]] = set()
    expected_teachers: set[tuple[str, str, str]] = set()
    for course in raw_courses:
        for student in list_all(emulator, token, f"/v1/courses/{course['id']}/students", "students"):
            assert student["profile"]["emailAddress"]  # the provider does send it ...
            expected_students.add((pseudonym("google", tenant, student["userId"]), None, None))
        for t in list_all(emulator, token, f"/v1/courses/{course['id']}/teachers", "teachers"):
            expected_teachers.add(
                (
                    pseudonym("google", tenant, t["userId"]),
                    t["profile"]["name"]["fullName"],
                    t["profile"]["emailAddress"],
                )
            )
    stored_students = {
        (p.pseudonym, p.display_name, p.email_address) for p in people(runtime.engine, integration_id, role="student")
    }
    stored_teachers = {
        (p.pseudonym, p.display_name, p.email_address) for p in people(runtime.engine, integration_id, role="teacher")
    }
    assert stored_students == expected_students  # ... and we keep none of it for students
    assert stored_teachers == expected_teachers
    assert len(enrollments(runtime.engine, integration_id)) == sum(
        len(list_all(emulator, token, f"/v1/courses/{c['id']}/{kind}", kind))
        for c in raw_courses
        for kind in ("students", "teachers")
    )


def test_field_masks_on_the_wire_name_only_allowlisted_fields(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    masks = {
        r.path.rsplit("/", 1)[-1]: r.query.get("fields", [""])[0]
        for r in emulator.requests
        if r.path.startswith("/v1/")
    }
    assert masks == {
        "courses": "courses(id,name,section,courseState),nextPageToken",
        "students": "students(userId),nextPageToken",
        "teachers": "teachers(userId,profile(name(fullName))),nextPageToken",
        "me": "id",  # linking learns which account granted access, and nothing else about it
    }


def test_unknown_and_unlisted_fields_never_reach_a_table(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    from tests.helpers import dump_tables

    emulator.set_granted_scopes([*GOOGLE_SCOPES, GOOGLE_EMAILS_SCOPE, PHOTOS_SCOPE])
    integration_id = link(0)
    run_sync(runtime, integration_id)
    dump = dump_tables(runtime.engine)
    teacher_names = {p.display_name for p in people(runtime.engine, integration_id, role="teacher")}
    teacher_emails = {p.email_address for p in people(runtime.engine, integration_id, role="teacher")}
    leaked = {s for s in emulator.personal_strings() if s in dump} - teacher_names - teacher_emails
    # A teacher's given or family name is part of the full name we keep; nothing else may appear.
    leaked = {s for s in leaked if not any(s in kept for kept in teacher_names | teacher_emails)}
    assert leaked == set()
    assert "googleusercontent" not in dump and "enrollmentCode" not in dump


def test_resync_without_change_writes_no_rows_and_keeps_pseudonyms(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    first = run_sync(runtime, integration_id)
    before = {p.pseudonym for p in people(runtime.engine, integration_id)}
    second = run_sync(runtime, integration_id)
    assert first.rows_written > 0
    assert second.outcome == "ok" and second.rows_written == 0 and second.removed == 0
    assert {p.pseudonym for p in people(runtime.engine, integration_id)} == before
    with runtime.engine.connect() as connection:
        runs = connection.execute(select(SyncRun.outcome, SyncRun.rows_written).order_by(SyncRun.id)).all()
    assert [tuple(r) for r in runs] == [("ok", first.rows_written), ("ok", 0)]


def test_a_teacher_links_last_write_is_made_with_the_collector_paused(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The members gathered last are written in the sweep's transaction (``Listing.apply``), a page's write like
    any other (sync.collector): on a first sync that is every member of the link; back on after."""
    during: list[bool] = []
    apply = listing.Listing.apply

    def watched(self: listing.Listing, connection: Any, batch: Any) -> Any:
        during.append(gc.isenabled())
        return apply(self, connection, batch)

    monkeypatch.setattr(listing.Listing, "apply", watched)
    integration_id = link(0)
    first = run_sync(runtime, integration_id)
    second = run_sync(runtime, integration_id)
    assert (first.outcome, first.mode, second.outcome, second.rows_written) == ("ok", "full", "ok", 0)
    assert first.rows_written > 0 and during and not any(during) and gc.isenabled()


def test_pseudonyms_differ_across_tenants(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    in_school_a = link(0, tenant="school-a", platform_teacher="t-1")
    in_school_b = link(0, tenant="school-b", platform_teacher="t-1")
    run_sync(runtime, in_school_a)
    run_sync(runtime, in_school_b)
    a = {p.pseudonym for p in people(runtime.engine, in_school_a, role="student")}
    b = {p.pseudonym for p in people(runtime.engine, in_school_b, role="student")}
    assert len(a) == len(b) > 0
    assert a.isdisjoint(b)


def test_removed_member_is_soft_deleted_and_restored_when_back(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    leaver = emulator.student_ids_of(course)[-1]
    emulator.remove_student(course, leaver)
    newcomer = emulator.add_student(course)
    run_sync(runtime, integration_id)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    leaver_pseudonym = runtime.pseudonymiser.pseudonym("google", tenant, leaver)
    newcomer_pseudonym = runtime.pseudonymiser.pseudonym("google", tenant, newcomer)
    all_people = {p.pseudonym: p for p in people(runtime.engine, integration_id, current=False)}
    current = {p.pseudonym for p in people(runtime.engine, integration_id)}
    assert newcomer_pseudonym in current
    if leaver_pseudonym not in current:  # not enrolled in another of the teacher's courses
        assert all_people[leaver_pseudonym].removed_at is not None
    removed = [e for e in enrollments(runtime.engine, integration_id, current=False) if e.removed_at is not None]
    assert len(removed) == 1

    emulator.enroll_student(course, leaver)
    run_sync(runtime, integration_id)
    assert leaver_pseudonym in {p.pseudonym for p in people(runtime.engine, integration_id)}
    assert all(
        e.removed_at is None
        for e in enrollments(runtime.engine, integration_id, current=False)
        if e.id == removed[0].id
    )


def test_rotated_refresh_token_is_persisted_encrypted(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = link(0)
    original = tokens_from_payload(
        runtime.vault.open(integrations.load(runtime.engine, integration_id).token_blob or b"")
    )
    # Force a refresh: the stored access token is thrown away, as after its expiry.
    from providers.registry import tokens_to_payload
    from store.models import Integration

    expired = tokens_to_payload(original) | {"access_token": None, "expiry": None}
    with runtime.engine.begin() as connection:
        connection.execute(Integration.__table__.update().values(token_blob=runtime.vault.seal(expired)))
    assert run_sync(runtime, integration_id).outcome == "ok"
    rotated = tokens_from_payload(
        runtime.vault.open(integrations.load(runtime.engine, integration_id).token_blob or b"")
    )
    assert rotated.refresh_token != original.refresh_token
    assert rotated.refresh_token in emulator.issued_tokens()
    # The old refresh token is dead at Google, so only the persisted one can keep the integration alive.
    with runtime.engine.begin() as connection:
        connection.execute(
            Integration.__table__.update().values(
                token_blob=runtime.vault.seal(tokens_to_payload(rotated) | {"access_token": None, "expiry": None})
            )
        )
    assert run_sync(runtime, integration_id).outcome == "ok"
