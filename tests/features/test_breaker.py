"""The mass-removal breaker on Google, on SQLite and PostgreSQL: a sweep that would remove too much is held,
shown, approved (fenced) or dropped; a listing that fails or is cut short never removes anyone by itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from connectors.base import Page, TransientError
from emulators.google import GoogleEmulator
from services.revoke import revoke_integration
from settings import Settings
from store import audit, breaker, integrations, leases
from store.fence import Lease
from store.models import HeldRemoval, RemovalHold, SyncRun
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker, link_teacher
from tests.helpers import classes, enrollments, people

# Rosters in pages of 5, so that a listing can break, or be cut short, after its first page.
pytestmark = pytest.mark.emulator(roster_page_cap=5)

Snapshot = tuple[set[int], set[int], set[tuple[int, int]]]


def snapshot(runtime: Runtime, integration_id: int) -> Snapshot:
    """Current class ids, person ids and enrolment keys of one integration."""
    return (
        {c.id for c in classes(runtime.engine, integration_id)},
        {p.id for p in people(runtime.engine, integration_id)},
        {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)},
    )


def remove_students(emulator: GoogleEmulator, per_course: int, teacher: int = 0) -> list[tuple[str, str]]:
    """Take ``per_course`` students out of each of the teacher's courses at the provider."""
    gone = []
    for course in active_courses(emulator, teacher):
        for student in emulator.student_ids_of(course)[:per_course]:
            emulator.remove_student(course, student)
            gone.append((course, student))
    return gone


def active_courses(emulator: GoogleEmulator, teacher: int = 0) -> list[str]:
    return emulator.course_ids_of(emulator.teacher_ids[teacher], states=["ACTIVE"])


def left(emulator: GoogleEmulator, gone: list[tuple[str, str]], teacher: int = 0) -> int:
    """How many of the students taken away are in none of the teacher's active courses any more."""
    still = {s for course in active_courses(emulator, teacher) for s in emulator.student_ids_of(course)}
    return len({student for _, student in gone} - still)


def run_outcomes(runtime: Runtime, integration_id: int) -> list[str]:
    with runtime.engine.connect() as connection:
        query = select(SyncRun.outcome).where(SyncRun.integration_id == integration_id).order_by(SyncRun.id)
        return list(connection.execute(query).scalars())


def held_rows(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return len(connection.execute(select(HeldRemoval.id)).all()) + len(
            connection.execute(select(RemovalHold.id)).all()
        )


class Held:
    """A held sweep: the integration, the run that held, the roster before, the students taken away."""

    def __init__(self, runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
        self.integration_id = link(0)
        assert run_sync(runtime, self.integration_id).outcome == "ok"
        self.before = snapshot(runtime, self.integration_id)
        self.gone = remove_students(emulator, 6)
        self.enrolments, self.people = len(self.gone), left(emulator, self.gone)
        assert self.people >= 10
        held = run_sync(runtime, self.integration_id)
        assert (held.outcome, held.removed) == ("held", 0)
        self.run_id = held.run_id


def held_sync(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> tuple[int, int, Snapshot, Held]:
    """Link, sync, take half of every course away at the provider, sync again: that sweep is held."""
    held = Held(runtime, emulator, link)
    return held.integration_id, held.run_id, held.before, held


def test_a_small_removal_is_applied_at_once(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    _classes, people_before, enrolled_before = snapshot(runtime, integration_id)
    gone = remove_students(emulator, 1)  # one per course: under 20% and under 10 people
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok" and outcome.removed == len(gone) + left(emulator, gone)
    _classes, people_after, enrolled_after = snapshot(runtime, integration_id)
    assert len(enrolled_before) - len(enrolled_after) == len(gone)
    assert len(people_before) - len(people_after) == left(emulator, gone)
    assert breaker.pending(runtime.engine) == [] and held_rows(runtime) == 0


def test_a_mass_removal_is_held_removes_nothing_and_is_shown(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, run_id, before, h = held_sync(runtime, emulator, link)
    assert snapshot(runtime, integration_id) == before, "a held sweep removes nothing"
    assert run_outcomes(runtime, integration_id) == ["ok", "held"]
    [view] = breaker.pending(runtime.engine)
    assert (view.integration_id, view.run_id, view.reason, view.provider) == (integration_id, run_id, "share", "google")
    assert (view.classes, view.enrollments, view.people) == (0, h.enrolments, h.people)
    assert (view.current_classes, view.current_people) == (len(before[0]), len(before[1]))
    [event] = [e for e in audit.events(runtime.engine, integration_id) if e.action == "removals_held"]
    assert event.details == {
        "run": run_id,
        "reason": "share",
        "classes": 0,
        "enrollments": h.enrolments,
        "people": h.people,
        "current_classes": len(before[0]),
        "current_enrollments": len(before[2]),
        "current_people": len(before[1]),
    }
    # Ids and counts only: no pseudonym of a held person is written anywhere new.
    with runtime.engine.connect() as connection:
        held = connection.execute(select(HeldRemoval.class_id, HeldRemoval.person_id)).all()
    assert {(c, p) for c, p in held} <= before[2]


def test_approve_applies_exactly_the_held_removals(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id, run_id, before, h = held_sync(runtime, emulator, link)
    decision = breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert decision.integration_id == integration_id and decision.removed == h.enrolments + h.people
    _classes, people_after, enrolled_after = snapshot(runtime, integration_id)
    assert len(before[2] - enrolled_after) == h.enrolments and len(before[1] - people_after) == h.people
    assert enrolled_after <= before[2] and breaker.pending(runtime.engine) == [] and held_rows(runtime) == 0
    # A complete listing now agrees: nothing more to remove, nothing held.
    after = run_sync(runtime, integration_id)
    assert (after.outcome, after.removed, after.rows_written) == ("ok", 0, 0)
    actions = audit.actions(runtime.engine, integration_id)
    assert "removals_approved" in actions
    with pytest.raises(breaker.HoldError) as again:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert again.value.kind == "gone"
    # The lease the approval took is given back: syncs go on.
    assert leases.acquire(runtime.engine, integration_id, Lease("x", 60)) is not None


def test_drop_discards_the_hold_and_removes_nothing(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id, run_id, before, h = held_sync(runtime, emulator, link)
    breaker.drop(runtime.engine, run_id, actor="admin:test")
    assert snapshot(runtime, integration_id) == before and held_rows(runtime) == 0
    [event] = [e for e in audit.events(runtime.engine, integration_id) if e.action == "removals_dropped"]
    assert event.details == {"run": run_id, "classes": 0, "enrollments": h.enrolments} and event.actor == "admin:test"
    with pytest.raises(breaker.HoldError) as again:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert again.value.kind == "gone"
    # The provider still says they left: the next listing holds again (never applies silently).
    assert run_sync(runtime, integration_id).outcome == "held"


def test_revoke_between_hold_and_approve_wins(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id, run_id, _before, _held = held_sync(runtime, emulator, link)
    revoke_integration(runtime, integration_id, actor="admin:test", reason="test")
    assert held_rows(runtime) == 0, "the purge takes the held removals along"
    with pytest.raises(breaker.HoldError) as refused:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert refused.value.kind == "gone"
    assert "removals_approved" not in audit.actions(runtime.engine, integration_id)


def test_a_relink_between_hold_and_approve_wins(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id, run_id, before, h = held_sync(runtime, emulator, link)
    assert link(0) == integration_id  # the same account again: a new generation, the roster kept
    with pytest.raises(breaker.HoldError) as refused:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert refused.value.kind == "fenced" and "re-linked" in str(refused.value)
    assert snapshot(runtime, integration_id) == before
    # The next listing, on the new generation, decides again.
    again = run_sync(runtime, integration_id)
    assert again.outcome == "held"
    breaker.approve(runtime.engine, again.run_id, actor="admin:test", lease_seconds=60)
    assert len(before[1] - snapshot(runtime, integration_id)[1]) == h.people


def test_approve_waits_for_a_running_sync(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id, run_id, before, h = held_sync(runtime, emulator, link)
    lease = Lease("a-running-sync", 600)
    assert leases.acquire(runtime.engine, integration_id, lease) is not None
    with pytest.raises(breaker.HoldError) as busy:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert busy.value.kind == "busy" and snapshot(runtime, integration_id) == before
    state = integrations.load(runtime.engine, integration_id)
    leases.release(runtime.engine, integration_id, lease, state.generation, None)
    approved = breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert approved.removed == h.enrolments + h.people


def test_a_newer_listing_supersedes_the_hold(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    held = Held(runtime, emulator, link)
    integration_id, first_run, before = held.integration_id, held.run_id, held.before
    [first] = breaker.pending(runtime.engine)
    # Still gone at the next sync: held again under the new run, once, with the first hold's age.
    second = run_sync(runtime, integration_id)
    assert second.outcome == "held"
    [view] = breaker.pending(runtime.engine)
    assert view.run_id == second.run_id and view.held_since == first.held_since and view.enrollments == held.enrolments
    with pytest.raises(breaker.HoldError) as stale:
        breaker.approve(runtime.engine, first_run, actor="admin:test", lease_seconds=60)
    assert stale.value.kind == "superseded" and f"run {second.run_id}" in str(stale.value)
    events = [e for e in audit.events(runtime.engine, integration_id) if e.action == "removals_superseded"]
    assert [e.details for e in events] == [{"run": first_run, "by_run": second.run_id}]
    # The people come back at the provider: the next listing makes the hold moot.
    for course, student in held.gone:
        emulator.enroll_student(course, student)
    third = run_sync(runtime, integration_id)
    assert (third.outcome, third.removed) == ("ok", 0)
    assert breaker.pending(runtime.engine) == [] and snapshot(runtime, integration_id) == before


def test_a_listing_seen_again_in_part_leaves_the_hold(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    """A page that lists a held member again takes them out of the hold, even when its run fails later."""
    held = Held(runtime, emulator, link)
    course, back = held.gone[0]
    emulator.enroll_student(course, back)
    later_course = active_courses(emulator)[-1]  # read last: courses are read in listing order
    assert later_course != course
    emulator.fail_next(f"/courses/{later_course}/teachers", 503, count=10)  # the run breaks after that page
    with pytest.raises(TransientError):
        run_sync(runtime, held.integration_id)
    [view] = breaker.pending(runtime.engine)
    assert (view.run_id, view.enrollments, view.people) == (held.run_id, held.enrolments - 1, held.people - 1)
    breaker.approve(runtime.engine, held.run_id, actor="admin:test", lease_seconds=60)
    tenant = integrations.load(runtime.engine, held.integration_id).tenant
    current = {p.pseudonym for p in people(runtime.engine, held.integration_id)}
    assert runtime.pseudonymiser.pseudonym("google", tenant, back) in current
    assert len(held.before[1] - {p.id for p in people(runtime.engine, held.integration_id)}) == held.people - 1


def test_a_page_failing_mid_listing_removes_nothing(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    """Fault row: a listing truncated mid-way by an error. No sweep at all, not even a small one."""
    integration_id = link(0)
    run_sync(runtime, integration_id)
    before = snapshot(runtime, integration_id)
    remove_students(emulator, 1)  # small enough to be applied by a complete listing
    # The third roster list of the batch keeps failing: the first two courses' pages are read, the rest not.
    third = active_courses(emulator)[1]
    emulator.fail_next(f"/courses/{third}/students", 503, count=10)
    with pytest.raises(TransientError):
        run_sync(runtime, integration_id)
    assert snapshot(runtime, integration_id) == before and held_rows(runtime) == 0
    assert run_outcomes(runtime, integration_id)[-1] == "transient"


def test_a_listing_cut_short_is_held(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    """Fault row: a listing silently cut short (200, no next page) reads as "most students left": held."""
    integration_id = link(0)
    run_sync(runtime, integration_id)
    before = snapshot(runtime, integration_id)
    emulator.cut_listings("/students")
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.removed) == ("held", 0)
    assert snapshot(runtime, integration_id) == before
    emulator.cut_listings(None)
    assert run_sync(runtime, integration_id).outcome == "ok" and breaker.pending(runtime.engine) == []
    assert snapshot(runtime, integration_id) == before


def test_held_removals_on_the_command_line(sqlite_settings: Settings, emulator: GoogleEmulator) -> None:
    from store.runtime import build_runtime, set_runtime
    from tests.clikit import env_for, one_line_error, run

    rt = build_runtime(sqlite_settings)
    set_runtime(rt)
    try:
        integration_id = link_teacher(rt, emulator, 0)
        run_sync(rt, integration_id)
        remove_students(emulator, 6)
    finally:
        set_runtime(None)
        rt.engine.dispose()
    env = env_for(sqlite_settings)
    synced = run("sync", str(integration_id), "--now", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "removals held by the mass-removal breaker" in synced.stderr and "held list" in synced.stderr

    status = json.loads(run("status", "--json", env=env).stdout)
    [held] = status["held"]
    assert held["integration_id"] == integration_id and held["reason"] == "share" and held["provider"] == "google"
    run_id = held["run_id"]
    listed = json.loads(run("held", "list", "--json", env=env).stdout)
    assert listed == {"held": [held]}
    table = run("status", env=env)
    assert "held" in table.stdout and str(run_id) in table.stdout and "held approve RUN_ID" in table.stderr

    one_line_error(run("held", "approve", "999", env=env), "no sync run with id 999")
    one_line_error(run("held", "drop", "1", env=env), "run 1 held no removals")
    dropped = run("held", "drop", str(run_id), env=env)
    assert dropped.returncode == 0 and "dropped; nothing removed" in dropped.stderr
    one_line_error(run("held", "approve", str(run_id), env=env), f"run {run_id}'s held removals are no longer held")
    assert run("held", "list", env=env).stderr.strip() == "no removals are held"

    again = run("sync", str(integration_id), "--now", env=env)
    assert again.returncode == 0, again.stderr
    [held] = json.loads(run("held", "list", "--json", env=env).stdout)["held"]
    approved = run("held", "approve", str(held["run_id"]), env=env)
    assert approved.returncode == 0, approved.stderr
    assert f"run {held['run_id']}'s held removals applied" in approved.stderr
    assert json.loads(run("status", "--json", env=env).stdout)["held"] == []
    audit_log = run("audit", "--integration", str(integration_id), env=env).stdout
    assert "removals_dropped\tadmin:cli" in audit_log and "removals_approved\tadmin:cli" in audit_log

    one_line_error(run("status", env=env | {"ROSTERSYNC_BREAKER_SHARE": "0"}), "ROSTERSYNC_BREAKER_SHARE")
    one_line_error(run("status", env=env | {"ROSTERSYNC_BREAKER_MIN_PEOPLE": "0"}), "ROSTERSYNC_BREAKER_MIN_PEOPLE")


def test_a_skipped_member_record_keeps_its_class_out_of_the_sweep(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class whose roster came with a record the mapper had to skip was not fully received: not swept."""
    from dataclasses import replace

    from connectors.google import GoogleConnector

    integration_id = link(0)
    run_sync(runtime, integration_id)
    before = snapshot(runtime, integration_id)
    course = active_courses(emulator)[0]
    emulator.remove_student(course, emulator.student_ids_of(course)[0])  # a whole read would remove one
    original = GoogleConnector.members

    def one_broken_record(self: GoogleConnector, *args: Any) -> Iterator[Page]:
        for page in original(self, *args):
            if page.kind == "students" and page.parent_id == course and page.records:
                page = replace(page, records=[{"profile": {}}, *page.records[1:]])  # no userId
            yield page

    monkeypatch.setattr(GoogleConnector, "members", one_broken_record)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok" and outcome.records_skipped >= 1 and outcome.removed == 0
    assert snapshot(runtime, integration_id) == before
    monkeypatch.undo()
    assert run_sync(runtime, integration_id).removed >= 1


@pytest.mark.fresh_database  # a test of the migrations: they run for real on an empty database
def test_migration_0005_matches_the_models_and_goes_down_and_up(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from store.db import make_engine, migrate
    from store.db import run_alembic as alembic
    from store.models import Base

    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert [d for d in drift if "removal_holds" in repr(d) or "held_removals" in repr(d)] == []
        alembic(engine, "downgrade", "0004")
        assert not {"removal_holds", "held_removals"} & set(inspect(engine).get_table_names())
        migrate(engine)
        assert {"removal_holds", "held_removals"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
