"""Pages gathered into larger writes, and one large page split into smaller ones, store the same roster.

``sync/coalesce.py`` changes how many fenced transactions a listing takes, never what it
stores: here the write size is made tiny so that a Clever district's one sections page is
split into many writes and a Google teacher's roster pages are gathered and split again, and
the stored roster is checked against the emulator's own.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection

from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from mappers.records import RosterBatch
from store import roster
from store.runtime import Runtime, build_runtime
from sync import coalesce
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.conftest import link_teacher
from tests.helpers import classes, enrollments, people

ROWS = 7


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Small writes, and the size of every batch the store is asked to apply."""
    monkeypatch.setattr(coalesce, "ROWS", ROWS)
    sizes: list[int] = []
    apply_batch = roster.apply_batch

    def counted(connection: Connection, integration_id: int, batch: RosterBatch, **options: Any) -> Any:
        sizes.append(len(batch.classes) + len(batch.enrollments))
        return apply_batch(connection, integration_id, batch, **options)

    monkeypatch.setattr(roster, "apply_batch", counted)
    return sizes


def test_a_clever_sections_page_split_into_small_writes_stores_every_section_and_student(
    clever: CleverEmulator, database_url: str, writes: list[int]
) -> None:
    # The page-by-page path (a first sync's bulk path, store.bulk, writes each streamed part whole).
    rt = build_runtime(clever_settings_for(clever, database_url, bulk_first_sync=False))
    try:
        integration_id = link_district(rt, clever)
        outcome = run_sync(rt, integration_id)
        assert outcome.outcome == "ok"
        district = clever.district_ids[0]
        sections = clever.section_ids(district)
        assert len(writes) > len(sections) // 2  # the one page was written in many parts
        largest_section = max(len(clever.students_of(s)) + 3 for s in sections)
        assert max(writes) <= ROWS + largest_section  # a part ends after the class that filled it
        _assert_stored(rt, integration_id, {s: set(clever.students_of(s)) for s in sections}, "clever")
        assert run_sync(rt, integration_id).rows_written == 0
    finally:
        rt.engine.dispose()


def test_google_roster_pages_gathered_into_writes_store_every_course_and_student(
    runtime: Runtime, emulator: GoogleEmulator, writes: list[int]
) -> None:
    integration_id = link_teacher(runtime, emulator, 0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    teacher = emulator.teacher_ids[0]
    courses = emulator.course_ids_of(teacher, states=["ACTIVE"])
    _assert_stored(runtime, integration_id, {c: set(emulator.student_ids_of(c)) for c in courses}, "google")
    emulator.remove_student(courses[0], emulator.student_ids_of(courses[0])[0])
    emulator.add_student(courses[-1])
    outcome = run_sync(runtime, integration_id)
    assert outcome.rows_written == 2 and outcome.removed >= 1  # the newcomer and their enrolment; the leaver
    _assert_stored(runtime, integration_id, {c: set(emulator.student_ids_of(c)) for c in courses}, "google")


def _assert_stored(rt: Runtime, integration_id: int, truth: dict[str, set[str]], provider: str) -> None:
    tenant = rt.settings.default_tenant

    def pseudonym(user_id: str) -> str:
        return rt.pseudonymiser.pseudonym(provider, tenant, user_id)

    stored_classes = {c.id: c.external_id for c in classes(rt.engine, integration_id)}
    assert set(stored_classes.values()) == set(truth)
    students = {p.id: p.pseudonym for p in people(rt.engine, integration_id, role="student")}
    assert set(students.values()) == {pseudonym(s) for members in truth.values() for s in members}
    stored: dict[str, set[str]] = {external_id: set() for external_id in truth}
    for enrollment in enrollments(rt.engine, integration_id):
        if enrollment.person_id in students:
            stored[stored_classes[enrollment.class_id]].add(students[enrollment.person_id])
    assert stored == {c: {pseudonym(s) for s in members} for c, members in truth.items()}
