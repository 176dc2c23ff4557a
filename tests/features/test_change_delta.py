"""A Clever section event applied from who joined and who left (``previous_attributes``) leaves the roster a full
listing would: the members who stayed are neither pseudonymised nor read, and wherever the store does not hold
what Clever had before the event, the class is replaced whole as before (store.membership.settle).

Each case ends with the roster compared against a full listing of the same district.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

import mappers.clever
from emulators.clever import CleverEmulator
from store import membership
from store.db import utcnow
from store.models import Enrollment, Integration, Person, SchoolClass
from store.runtime import Runtime, build_runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.plugins.emulators import MakeEmulator

Roster = set[tuple[str, str, str]]


def roster(runtime: Runtime, integration_id: int) -> Roster:
    """Current enrolments as ``(section id, role, pseudonym)``."""
    query = (
        select(SchoolClass.external_id, Enrollment.role, Person.pseudonym)
        .join(Enrollment, Enrollment.class_id == SchoolClass.id)
        .join(Person, Person.id == Enrollment.person_id)
        .where(SchoolClass.integration_id == integration_id, Enrollment.removed_at.is_(None))
    )
    with runtime.engine.connect() as connection:
        return {tuple(row) for row in connection.execute(query)}  # type: ignore[misc]


def listed(runtime: Runtime, integration_id: int) -> Roster:
    """The roster after a full listing of the district now (the cursor dropped first)."""
    with runtime.engine.begin() as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(sync_cursor=None))
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    return roster(runtime, integration_id)


@pytest.fixture
def wholes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sections taken whole by the store (a delta it could not settle)."""
    taken: list[str] = []
    original: Callable[..., Any] = mappers.clever._whole

    def counting(section: Any, context: Any) -> Any:
        taken.append(section.klass.external_id)
        return original(section, context)

    monkeypatch.setattr(mappers.clever, "_whole", counting)
    return taken


def synced(make_emulator: MakeEmulator, database_url: str) -> tuple[CleverEmulator, Runtime, int]:
    sizes = {"teachers": 4, "courses_per_teacher": 3, "students_per_course": 8}
    clever = make_emulator(CleverEmulator, districts=1, library_teachers=0, **sizes)
    runtime = build_runtime(clever_settings_for(clever, database_url))
    integration_id = link_district(runtime, clever)
    assert run_sync(runtime, integration_id).outcome == "ok"
    return clever, runtime, integration_id


def change(runtime: Runtime, integration_id: int) -> Roster:
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    return roster(runtime, integration_id)


def test_moves_joins_and_renames_are_applied_from_the_delta_as_a_listing_would_leave_them(
    make_emulator: MakeEmulator, database_url: str, wholes: list[str]
) -> None:
    clever, runtime, integration_id = synced(make_emulator, database_url)
    sections = clever.section_ids(clever.district_ids[0])
    for section in sections[:4]:
        clever.remove_student(section, clever.students_of(section)[0])
        clever.add_student(section)
    clever.enroll_student(sections[5], clever.students_of(sections[6])[1])  # a student in a second section
    clever.remove_student(sections[7], clever.students_of(sections[7])[2])
    clever.enroll_student(sections[7], clever.students_of(sections[8])[0])
    clever.rename_section(sections[9], "Renamed")  # previous_attributes name no member list
    after = change(runtime, integration_id)
    assert wholes == [], "every section was settled from its delta"
    assert after == listed(runtime, integration_id)
    runtime.engine.dispose()


def test_a_section_the_store_does_not_hold_as_clever_had_it_is_replaced_whole(
    make_emulator: MakeEmulator, database_url: str, wholes: list[str]
) -> None:
    """One member of the section ended here behind the feed's back: the store holds one fewer than Clever had."""
    clever, runtime, integration_id = synced(make_emulator, database_url)
    section, other = clever.section_ids(clever.district_ids[0])[:2]
    with runtime.engine.begin() as connection:
        class_id = connection.execute(select(SchoolClass.id).where(SchoolClass.external_id == section)).scalar_one()
        first = connection.execute(select(Enrollment.id).where(Enrollment.class_id == class_id).limit(1)).scalar_one()
        connection.execute(update(Enrollment).where(Enrollment.id == first).values(removed_at=utcnow()))
    clever.remove_student(section, clever.students_of(section)[0])
    clever.add_student(section)
    clever.remove_student(other, clever.students_of(other)[0])
    after = change(runtime, integration_id)
    assert wholes == [section], "the drifted section whole; the other from its delta"
    assert after == listed(runtime, integration_id)
    runtime.engine.dispose()


def test_settle_finds_by_key_what_the_joins_found(make_emulator: MakeEmulator, database_url: str) -> None:
    """Settle's statements give the counts and members the joins they replaced gave (PostgreSQL: a ``LATERAL``
    count a class, the named members looked up by key; SQLite: the named members looked up by the people's key,
    then their enrolments), on a roster that drifted: a person removed under a current enrolment, an enrolment
    whose role is not its person's, a removed class, a named member the store lacks, a member named under
    another role than theirs, a person named in a class of the chunk they are not enrolled in."""
    _, runtime, integration_id = synced(make_emulator, database_url)
    members = (
        select(SchoolClass.external_id, Person.role, Person.pseudonym, Enrollment.id, Person.id)
        .join(Enrollment, Enrollment.class_id == SchoolClass.id)
        .join(Person, Person.id == Enrollment.person_id)
        .where(SchoolClass.integration_id == integration_id)
        .order_by(Enrollment.id)
    )
    with runtime.engine.begin() as connection:
        rows = connection.execute(members).all()
        sections = sorted({row[0] for row in rows})
        connection.execute(update(Person).where(Person.id == rows[0][4]).values(removed_at=utcnow()))
        connection.execute(update(Enrollment).where(Enrollment.id == rows[1][3]).values(role="teacher"))
        connection.execute(
            update(SchoolClass).where(SchoolClass.external_id == sections[1]).values(removed_at=utcnow())
        )
        named: dict[str, set[tuple[str, str]]] = {section: set() for section in sections}
        for external_id, role, pseudonym, *_ in rows[::3]:
            named[external_id].add((role, pseudonym))
        named[sections[2]].add(("student", "not-stored"))
        student = next(row[2] for row in rows if row[0] == sections[3] and row[1] == "student")
        named[sections[3]].add(("teacher", student))
        named[sections[4]].add(next((row[1], row[2]) for row in rows if row[0] == sections[5]))

        counts = membership._counts(connection, integration_id, sections)
        joined: dict[str, dict[str, tuple[int, int]]] = {}
        for external_id, role, total, good in connection.execute(
            membership._counted(connection, integration_id, sections)
        ):
            joined.setdefault(external_id, {})[role] = (int(total), int(good or 0))
        assert counts == joined
        assert any(good < total for roles in counts.values() for total, good in roles.values()), "the drift counted"

        pseudonyms = sorted({pseudonym for keys in named.values() for _, pseudonym in keys})
        query = membership._members_of(connection, integration_id, sections).where(Person.pseudonym.in_(pseudonyms))
        by_join = membership.Stored()
        membership._read_into(by_join, connection, query, named)
        assert membership._read_named(connection, integration_id, named).classes == by_join.classes
        assert sections[1] in by_join.classes, "the removed class's members are read, as before"
    runtime.engine.dispose()
