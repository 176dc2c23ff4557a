"""The mass-removal breaker on Clever district links, on SQLite and PostgreSQL: a full listing that loses half
the district's sections is held and approved; an empty listing is held whatever the limits; a change page that
removes too much is rolled back and a full listing decides, while sections Clever says were deleted are applied
(docs/reliability.md, "Mass-removal breaker" and "School year's end").
"""

from __future__ import annotations

import pytest

from emulators.clever import CleverEmulator
from settings import Settings
from store import audit, breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.helpers import classes, enrollments, people

pytestmark = pytest.mark.clever(teachers=3, students_per_course=12)


@pytest.fixture
def settings(clever: CleverEmulator, database_url: str) -> Settings:
    return clever_settings_for(clever, database_url)


def current(runtime: Runtime, integration_id: int) -> tuple[set[str], int, int]:
    return (
        {c.external_id for c in classes(runtime.engine, integration_id)},
        len(people(runtime.engine, integration_id)),
        len(enrollments(runtime.engine, integration_id)),
    )


def test_half_the_sections_gone_is_held_then_approved(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    clever.set_events_enabled(district, False)  # every sync is a full listing
    integration_id = link_district(runtime, clever)
    assert run_sync(runtime, integration_id).outcome == "ok"
    before = current(runtime, integration_id)
    sections = clever.section_ids(district)
    gone = sections[: len(sections) // 2]
    for section in gone:
        clever.unshare_section(section)
    held = run_sync(runtime, integration_id)
    assert (held.outcome, held.removed) == ("held", 0)
    assert current(runtime, integration_id) == before
    [view] = breaker.pending(runtime.engine)
    assert (view.provider, view.reason, view.classes, view.current_classes) == (
        "clever",
        "share",
        len(gone),
        len(sections),
    )
    breaker.approve(runtime.engine, held.run_id, actor="admin:test", lease_seconds=60)
    assert current(runtime, integration_id)[0] == set(sections) - set(gone)
    assert run_sync(runtime, integration_id).outcome == "ok" and breaker.pending(runtime.engine) == []
    assert "removals_approved" in audit.actions(runtime.engine, integration_id)


def test_sections_deleted_through_events_are_explained_and_applied(runtime: Runtime, clever: CleverEmulator) -> None:
    """Half the district's sections deleted by ``sections.deleted`` events: Clever's own word, applied with no hold.

    (Before issue 23 the page was rolled back and the full listing held it.) An absence only a listing
    shows is still judged: see ``test_half_the_sections_gone_is_held_then_approved``.
    """
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    sections = clever.section_ids(district)
    gone = sections[: len(sections) // 2]
    for section in gone:
        clever.unshare_section(section)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    assert current(runtime, integration_id)[0] == set(sections) - set(gone) and breaker.pending(runtime.engine) == []
    assert "removals_explained" in audit.actions(runtime.engine, integration_id)


def test_a_small_change_page_is_applied_as_it_comes(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section = clever.section_ids(district)[0]
    clever.remove_student(section, clever.students_of(section)[0])
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes") and outcome.rows_written > 0
    assert breaker.pending(runtime.engine) == []


def in_two_sections(clever: CleverEmulator) -> list[tuple[str, list[str]]]:
    """Enrol every student in one more section (the next one, in a ring, that does not have them yet).

    Returns ``(section, the students it gained)``: taking those out again leaves every student in
    their own section(s), with no class and no person gone.
    """
    sections = clever.section_ids(clever.district_ids[0])
    rosters = {section: set(clever.students_of(section)) for section in sections}
    gained: dict[str, list[str]] = {section: [] for section in sections}
    for student in sorted(set().union(*rosters.values())):
        first = next(n for n, section in enumerate(sections) if student in rosters[section])
        extra = next(
            sections[(first + step) % len(sections)]
            for step in range(1, len(sections))
            if student not in rosters[sections[(first + step) % len(sections)]]
        )
        clever.enroll_student(extra, student)
        gained[extra].append(student)
    return list(gained.items())


def half_of_every_roster_leaves(clever: CleverEmulator, pairs: list[tuple[str, list[str]]]) -> None:
    for section, theirs in pairs:
        for student in theirs:
            clever.remove_student(section, student)


@pytest.mark.parametrize("mode", ["full", "events"])
def test_every_student_losing_one_of_two_sections_is_held(runtime: Runtime, clever: CleverEmulator, mode: str) -> None:
    """No class and no person goes, but half the enrolments do: the breaker counts enrolments too."""
    district = clever.district_ids[0]
    clever.set_events_enabled(district, mode == "events")
    integration_id = link_district(runtime, clever)
    pairs = in_two_sections(clever)
    assert run_sync(runtime, integration_id).outcome == "ok"
    if mode == "events":  # the doubled rosters arrived by events; the next run is a change run too
        assert run_sync(runtime, integration_id).mode == "changes"
    before = current(runtime, integration_id)
    half_of_every_roster_leaves(clever, pairs)
    held = run_sync(runtime, integration_id)
    assert (held.outcome, held.mode, held.removed) == ("held", "full", 0)
    assert current(runtime, integration_id) == before
    [view] = breaker.pending(runtime.engine)
    removed = sum(len(theirs) for _section, theirs in pairs)
    assert (view.reason, view.classes, view.people, view.enrollments) == ("share", 0, 0, removed)
    assert view.current_enrollments == before[2]
    breaker.approve(runtime.engine, held.run_id, actor="admin:test", lease_seconds=60)
    assert current(runtime, integration_id) == (before[0], before[1], before[2] - removed)


def test_a_mass_removal_spread_over_many_change_pages_is_stopped(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One event a page: each page alone is small, the run's pages together are judged."""
    integration_id = link_district(runtime, clever)
    pairs = in_two_sections(clever)
    run_sync(runtime, integration_id)
    assert run_sync(runtime, integration_id).mode == "changes"
    before = current(runtime, integration_id)
    half_of_every_roster_leaves(clever, pairs)
    monkeypatch.setattr("connectors.clever.PAGE_LIMIT", 1)
    held = run_sync(runtime, integration_id)
    assert (held.outcome, held.mode) == ("held", "full")
    share = (before[2] - current(runtime, integration_id)[2]) / before[2]
    assert share <= runtime.settings.breaker_share  # what the pages before the stop removed stays under the share
    [view] = breaker.pending(runtime.engine)
    assert view.reason == "share" and view.classes == 0 and view.people == 0
