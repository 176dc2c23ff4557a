"""School year's end on Clever, through the sync cycle on SQLite and PostgreSQL (docs/reliability.md, "School
year's end"): a rollover the district approved at Clever arrives as ``sections.deleted`` events and is applied
with no hold, however many 500-event parts it is cut into, and also when a full listing runs after it; a Library
teacher whose sections all end is a teacher with zero sections, not a listing that lost data.
"""

from __future__ import annotations

import pytest

from emulators.clever import CleverEmulator
from settings import Settings
from store import audit, breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_clever_teacher, link_district
from tests.helpers import classes, enrollments

# A district of six sections (one teacher each, two students each); a test asks for more teachers.
pytestmark = pytest.mark.clever(teachers=6, courses_per_teacher=1, students_per_course=2)


@pytest.fixture
def settings(clever: CleverEmulator, database_url: str) -> Settings:
    return clever_settings_for(clever, database_url)


def current(runtime: Runtime, integration_id: int) -> set[str]:
    return {c.external_id for c in classes(runtime.engine, integration_id)}


@pytest.mark.parametrize("clever", [{"teachers": 520}], indirect=True, ids=["520"])
def test_a_rollover_of_more_than_500_sections_through_events_is_applied_with_no_hold(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    """520 ``sections.deleted`` then 520 ``sections.created``: several 500-event parts of one run, one verdict."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    assert run_sync(runtime, integration_id).outcome == "ok"
    old, new = clever.rollover(district)
    assert len(old) > 500
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    assert breaker.pending(runtime.engine) == []
    assert current(runtime, integration_id) == set(new)
    assert {e.class_id for e in enrollments(runtime.engine, integration_id)} == {
        c.id for c in classes(runtime.engine, integration_id)
    }
    assert "removals_explained" in audit.actions(runtime.engine, integration_id)


def test_a_rollover_seen_by_a_full_listing_is_applied_with_no_hold(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full reconcile is due when the rollover lands: the events are read first, so the listing holds nothing."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    assert run_sync(runtime, integration_id).outcome == "ok"
    old, new = clever.rollover(district)
    monkeypatch.setattr(runtime.settings, "full_reconcile_seconds", 0)  # every run is now a full listing
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    assert breaker.pending(runtime.engine) == []
    assert current(runtime, integration_id) == set(new) and not set(old) & current(runtime, integration_id)


def test_a_rollover_only_a_listing_shows_is_still_held(runtime: Runtime, clever: CleverEmulator) -> None:
    """A district without events: the sections are merely absent from the listing, which nobody explained."""
    district = clever.district_ids[0]
    clever.set_events_enabled(district, False)
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    old, new = clever.rollover(district)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "held"
    assert current(runtime, integration_id) == set(old) | set(new)
    [view] = breaker.pending(runtime.engine)
    assert view.classes == len(old)


def test_a_library_teacher_whose_sections_all_end_is_not_held(runtime: Runtime, clever: CleverEmulator) -> None:
    teacher = clever.teacher_ids(None)[0]
    integration_id = link_clever_teacher(runtime, clever, teacher, "teacher-lib")
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert current(runtime, integration_id)
    for section in clever.section_ids(None, teacher_id=teacher):
        clever.unshare_section(section)
    for _ in range(2):  # and at every later sync
        outcome = run_sync(runtime, integration_id)
        assert outcome.outcome == "ok", outcome
        assert breaker.pending(runtime.engine) == []
    assert current(runtime, integration_id) == set() and enrollments(runtime.engine, integration_id) == []
    assert "removals_explained" in audit.actions(runtime.engine, integration_id)
