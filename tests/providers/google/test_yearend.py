"""School year's end on Google, through the sync cycle on SQLite and PostgreSQL (docs/reliability.md, "School
year's end"): courses a teacher archives end with their enrolments and no hold, as the teacher's own decision; a
course restored to ACTIVE comes back with its roster; what nobody explained is still held, and a hold that
stands does not swallow a later ordinary removal of another class.
"""

from __future__ import annotations

import pytest

from emulators.google import GoogleEmulator
from store import audit, breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.helpers import classes, enrollments, people

pytestmark = pytest.mark.emulator(teachers=2, courses_per_teacher=3)


def active_courses(emulator: GoogleEmulator, teacher: int = 0) -> list[str]:
    return emulator.course_ids_of(emulator.teacher_ids[teacher], states=["ACTIVE"])


def current_classes(runtime: Runtime, integration_id: int) -> set[str]:
    return {c.external_id for c in classes(runtime.engine, integration_id)}


def test_courses_archived_at_the_years_end_end_with_no_hold(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    courses = active_courses(emulator)
    assert current_classes(runtime, integration_id) == set(courses)
    for course in courses:
        emulator.archive_course(course)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full") and outcome.removed > 0
    assert breaker.pending(runtime.engine) == []
    assert current_classes(runtime, integration_id) == set()
    assert enrollments(runtime.engine, integration_id) == [] and people(runtime.engine, integration_id) == []
    assert "removals_explained" in audit.actions(runtime.engine, integration_id)
    # Nothing more to do the next time: an archived course is neither restored nor ended again.
    again = run_sync(runtime, integration_id)
    assert (again.outcome, again.removed, again.rows_written) == ("ok", 0, 0)
    assert audit.actions(runtime.engine, integration_id).count("removals_explained") == 1


def test_an_archived_course_restored_to_active_comes_back_with_its_roster(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    course = active_courses(emulator)[0]
    before = {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)}
    emulator.archive_course(course)
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert course not in current_classes(runtime, integration_id)
    emulator.set_course_state(course, "ACTIVE")
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert course in current_classes(runtime, integration_id)
    assert {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)} == before


def test_a_hold_standing_does_not_hold_a_later_ordinary_removal(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """Courses vanish unexplained (held); later one student leaves the last course: that goes through."""
    integration_id = link(0)
    run_sync(runtime, integration_id)
    courses = active_courses(emulator)
    *gone, third = courses
    for course in gone:
        emulator.set_course_state(course, "SUSPENDED")  # gone from the listing with no word why
    held = run_sync(runtime, integration_id)
    assert held.outcome == "held" and current_classes(runtime, integration_id) == set(courses)
    student = emulator.student_ids_of(third)[0]
    emulator.remove_student(third, student)
    later = run_sync(runtime, integration_id)
    assert later.outcome == "held" and later.removed > 0, "the hold still stands; the new removal went through"
    pseudonym = runtime.pseudonymiser.pseudonym("google", runtime.settings.default_tenant, student)
    third_id = next(c.id for c in classes(runtime.engine, integration_id) if c.external_id == third)
    person_id = next(p.id for p in people(runtime.engine, integration_id, current=False) if p.pseudonym == pseudonym)
    assert (third_id, person_id) not in {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)}
    [view] = breaker.pending(runtime.engine)
    assert (view.run_id, view.classes) == (later.run_id, len(gone))
    assert current_classes(runtime, integration_id) == set(courses)
    breaker.approve(runtime.engine, later.run_id, actor="admin:test", lease_seconds=60)
    assert current_classes(runtime, integration_id) == {third}


@pytest.mark.parametrize("emulator", [{"courses_page_cap": 1}], indirect=True)
def test_a_course_listing_of_several_pages_asks_for_both_states_on_every_page(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """One course a page: the client library's ``list_next`` refuses the repeated ``courseStates``."""
    integration_id = link(0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    courses = active_courses(emulator)
    emulator.archive_course(courses[-1])
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert current_classes(runtime, integration_id) == set(courses[:-1])
    listed = [r for r in emulator.requests if r.path == "/v1/courses"]
    assert len(listed) > 2 and all(r.query.get("courseStates") == ["ACTIVE", "ARCHIVED"] for r in listed)
