"""The mass-removal breaker on Google, on SQLite and PostgreSQL: a listing that fails, is cut short or comes
with a record the mapper skips never removes anyone by itself; a held sweep on the command line; the breaker's
migration. What the breaker does whatever the provider (held, shown, approved, dropped, fenced, superseded, a
small removal applied) is tests/conformance/test_breaker.py, over every provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.base import Page, TransientError
from emulators.google import GoogleEmulator
from settings import Settings
from store import breaker, integrations
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker, link_teacher
from tests.helpers import held_rows, people, run_outcomes, snapshot

# Rosters in pages of 5, so that a listing can break, or be cut short, after its first page.
pytestmark = pytest.mark.emulator(roster_page_cap=5)


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


class Held:
    """A held sweep: the integration, the run that held, the roster before, the students taken away."""

    def __init__(self, runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
        self.integration_id = link(0)
        assert run_sync(runtime, self.integration_id).outcome == "ok"
        self.before = snapshot(runtime.engine, self.integration_id)
        self.gone = remove_students(emulator, 6)
        self.enrolments, self.people = len(self.gone), left(emulator, self.gone)
        assert self.people >= 10
        held = run_sync(runtime, self.integration_id)
        assert (held.outcome, held.removed) == ("held", 0)
        self.run_id = held.run_id


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
    before = snapshot(runtime.engine, integration_id)
    remove_students(emulator, 1)  # small enough to be applied by a complete listing
    # The third roster list of the batch keeps failing: the first two courses' pages are read, the rest not.
    third = active_courses(emulator)[1]
    emulator.fail_next(f"/courses/{third}/students", 503, count=10)
    with pytest.raises(TransientError):
        run_sync(runtime, integration_id)
    assert snapshot(runtime.engine, integration_id) == before and held_rows(runtime.engine) == 0
    assert run_outcomes(runtime.engine, integration_id)[-1] == "transient"


def test_a_listing_cut_short_is_held(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    """Fault row: a listing silently cut short (200, no next page) reads as "most students left": held."""
    integration_id = link(0)
    run_sync(runtime, integration_id)
    before = snapshot(runtime.engine, integration_id)
    emulator.cut_listings("/students")
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.removed) == ("held", 0)
    assert snapshot(runtime.engine, integration_id) == before
    emulator.cut_listings(None)
    assert run_sync(runtime, integration_id).outcome == "ok" and breaker.pending(runtime.engine) == []
    assert snapshot(runtime.engine, integration_id) == before


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
    before = snapshot(runtime.engine, integration_id)
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
    assert snapshot(runtime.engine, integration_id) == before
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
