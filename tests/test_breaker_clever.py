"""The mass-removal breaker on Clever district links, on SQLite and PostgreSQL: a full listing that loses half
the district's sections is held and approved; an empty listing is held whatever the limits; a change page that
deletes too much is rolled back and a full listing decides (docs/reliability.md, "Mass-removal breaker").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.clever import CleverEmulator
from settings import Settings
from store import breaker, integrations
from tests.clever_fixtures import clever_settings_for, link_district
from tests.helpers import classes, enrollments, people
from worker.runtime import Runtime
from worker.sync import run_sync


@pytest.fixture
def clever(tmp_path: Path) -> Iterator[CleverEmulator]:
    with CleverEmulator(cert_dir=tmp_path, districts=1, teachers=3, students_per_course=12) as emu:
        yield emu


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
    assert "removals_approved" in integrations.audit_actions(runtime.engine, integration_id)


def test_an_empty_district_listing_is_held_whatever_the_limits(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "breaker_min_people", 1_000_000)
    monkeypatch.setattr(runtime.settings, "breaker_share", 1.0)
    district = clever.district_ids[0]
    clever.set_events_enabled(district, False)
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    before = current(runtime, integration_id)
    for section in clever.section_ids(district):
        clever.unshare_section(section)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "held" and current(runtime, integration_id) == before
    [view] = breaker.pending(runtime.engine)
    assert view.reason == "empty" and view.classes == len(before[0])
    breaker.drop(runtime.engine, outcome.run_id, actor="admin:test")
    assert current(runtime, integration_id) == before and breaker.pending(runtime.engine) == []


def test_a_change_page_deleting_too_much_falls_back_to_a_held_full_listing(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    """Events deleting half the district are rolled back; the full listing that follows holds its sweep."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    before = current(runtime, integration_id)
    sections = clever.section_ids(district)
    gone = sections[: len(sections) // 2]
    for section in gone:
        clever.unshare_section(section)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode, outcome.removed) == ("held", "full", 0)
    assert current(runtime, integration_id) == before
    [view] = breaker.pending(runtime.engine)
    assert view.classes == len(gone)
    # The listing's cursor is past those events: the next run applies changes again, and holds nothing new.
    after = run_sync(runtime, integration_id)
    assert (after.outcome, after.mode) == ("ok", "changes") and current(runtime, integration_id) == before
    breaker.approve(runtime.engine, outcome.run_id, actor="admin:test", lease_seconds=60)
    assert current(runtime, integration_id)[0] == set(sections) - set(gone)


def test_a_small_change_page_is_applied_as_it_comes(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section = clever.section_ids(district)[0]
    clever.remove_student(section, clever.students_of(section)[0])
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes") and outcome.rows_written > 0
    assert breaker.pending(runtime.engine) == []
