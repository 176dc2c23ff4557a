"""A link's fixed cost: the fence is checked before each provider request, not after each page already in hand,
and read only where no fenced write has just checked it; a no-change re-sync commits nothing but its lease and
its release, and tries no roster write; a pooled connection is pinged only after it sat idle.

Found by profiling the 84-link Google bench (BENCHMARKS.md): a teacher's roster arrives as one batch of
twenty pages, and each page was followed by a read of the fence, eighteen reads for two requests; then each
request's own read came right after a fenced write had read the same row under its lock.
Counted, not timed: the fence reads of a sync against the requests it made.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Connection, event, select, update

import store.db
from emulators.google import GoogleEmulator
from store import audit, leases, runs
from store.db import ADVISORY_READ, utcnow
from store.fence import Lease
from store.models import Integration, SyncRun
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import PG_ADMIN_URL, link_teacher
from tests.helpers import people

# Five courses of thirty, read ten students a page: a batch answers some twenty pages at once.
pytestmark = pytest.mark.emulator(teachers=1, courses_per_teacher=5, students_per_course=30, roster_page_cap=10)

FENCE_READ = "SELECT integrations.status, integrations.generation, integrations.lease_owner"
WRITE = re.compile(r"UPDATE \w+ SET|INSERT INTO \w+")
LOCKED = "the fence, locked"  # a fenced write's read of the fence (FOR UPDATE on PostgreSQL)


def test_the_fence_is_checked_between_any_two_requests_and_read_only_where_no_write_checked_it(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """Before each provider request the fence has been verified since the request before it: by an unlocked read,
    or by a fenced write's read under the lock (which makes the unlocked one redundant); the first request comes
    after the lease was taken and the state read with it."""
    integration_id = link_teacher(runtime, emulator, 0)
    events: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def record(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if " ".join(statement.split()).startswith(FENCE_READ):
            events.append("read" if conn.get_execution_options().get(ADVISORY_READ) else "locked")

    emulator.add_hook(lambda r: events.append("request") if r.path.startswith("/v1/") or r.path == "/batch" else None)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    assert outcome.provider_calls < 5 < outcome.members_seen / 10  # pages in hand cost no read
    requests = [n for n, what in enumerate(events) if what == "request"]
    assert len(requests) == outcome.provider_calls
    for before, after in itertools.pairwise(requests):
        assert {"read", "locked"} & set(events[before + 1 : after]), f"no fence check between requests: {events}"
    reads = events.count("read")
    assert reads < outcome.provider_calls, f"{reads} fence reads for {outcome.provider_calls} requests: {events}"


def test_a_no_change_resync_commits_only_its_lease_and_release_and_tries_no_roster_write(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """Its fenced writes wrote nothing, so on PostgreSQL they end in a rollback (no wait for the log's flush);
    a change is still committed. The only writes it sends are the lease, the run and its audit."""
    integration_id = link_teacher(runtime, emulator, 0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    ended: list[str] = []
    written: list[str] = []
    event.listen(runtime.engine, "commit", lambda _conn: ended.append("commit"))
    event.listen(runtime.engine, "rollback", lambda _conn: ended.append("rollback"))

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def record(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "BEGIN")):  # on PostgreSQL some come nested in one
            written.extend(WRITE.findall(" ".join(statement.split())))

    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok" and outcome.rows_written == 0
    lease_and_run = ["UPDATE integrations SET", "INSERT INTO sync_runs"]  # taken, opened
    release = ["UPDATE integrations SET", "UPDATE sync_runs SET", "INSERT INTO audit_events"]  # given back, closed
    assert sorted(written) == sorted(lease_and_run + release)
    if runtime.engine.dialect.name == "postgresql":
        assert ended.count("commit") == 2, ended  # the lease with its run, the release with its close
    stored = len(people(runtime.engine, integration_id))
    course = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])[0]
    emulator.add_student(course)
    ended.clear()
    assert run_sync(runtime, integration_id).rows_written == 2  # the student and the enrolment, committed
    assert len(people(runtime.engine, integration_id)) == stored + 1
    if runtime.engine.dialect.name == "postgresql":
        assert ended.count("commit") == 3, ended  # and the members' write with the sweep


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has no server connection to lose
def test_a_pooled_connection_is_pinged_only_after_it_sat_idle(
    runtime: Runtime, emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: one closed while idle is found before use and replaced; one used just now is not pinged."""
    integration_id = link_teacher(runtime, emulator, 0)
    pings: list[int] = []
    ping = runtime.engine.dialect.do_ping
    monkeypatch.setattr(runtime.engine.dialect, "do_ping", lambda dbapi: pings.append(1) or ping(dbapi))
    monkeypatch.setattr(store.db, "IDLE_PING_SECONDS", 3600.0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert pings == []
    with runtime.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = sqlalchemy.create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as other:  # this test's own backend, by pid: nobody else's
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    finally:
        admin.dispose()
    monkeypatch.setattr(store.db, "IDLE_PING_SECONDS", 0.0)  # every connection counts as idle now
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert pings
    with runtime.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid


def test_the_lease_tells_whether_a_roster_or_a_hold_is_stored(runtime: Runtime, emulator: GoogleEmulator) -> None:
    """What the sync asks of its stored rows comes with its lease (one statement): a first sync's bulk path, and
    whether a removal hold can be in the way of a page."""
    integration_id = link_teacher(runtime, emulator, 0)
    lease = Lease("test", 60)
    state = leases.acquire(runtime.engine, integration_id, lease)
    assert state is not None and (state.roster_stored, state.hold_stands) == (False, False)
    leases.release(runtime.engine, integration_id, lease, state.generation, None)
    assert run_sync(runtime, integration_id).outcome == "ok"
    state = leases.acquire(runtime.engine, integration_id, lease)
    assert state is not None and (state.roster_stored, state.hold_stands) == (True, False)


def test_the_lease_opens_its_run_and_the_release_closes_and_audits_it_in_one_statement_each(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """On PostgreSQL the lease and the run's opening are one statement, and the lease's give-back, the run's close
    and its audit event another (in autocommit: one round trip, not five). What they write is what the separate
    statements wrote, on both databases: a busy lease still opens a run, a repeated release (``abandon``) changes
    nothing, and a release whose lease was taken over still closes and audits the run but leaves the lease alone."""
    integration_id = link_teacher(runtime, emulator, 0)
    statements: list[str] = []
    event.listen(runtime.engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: statements.append(sql))
    lease, other = Lease("ours", 600), Lease("theirs", 600)
    held = leases.Held()
    state, run_id = leases.begin(runtime.engine, integration_id, lease, held)
    assert state is not None and held.run_id == run_id and state.roster_stored is False
    busy, busy_run = leases.begin(runtime.engine, integration_id, other, leases.Held())
    assert busy is None and busy_run > run_id  # a run is opened all the same, to be closed as skipped
    if runtime.engine.dialect.name == "postgresql":
        assert len(statements) == 2, statements
    statements.clear()
    due = utcnow() + timedelta(hours=1)
    finished = runs.Finished(run_id, "ok", {"classes_seen": 3, "members_seen": 7, "provider_calls": 2})
    leases.release(runtime.engine, integration_id, lease, state.generation, due, finished=finished)
    if runtime.engine.dialect.name == "postgresql":
        assert len(statements) == 1, statements
    leases.abandon(runtime.engine, integration_id, lease, run_id)  # already given back: a no-op
    leases.release(
        runtime.engine,
        integration_id,
        other,
        state.generation,
        None,
        finished=runs.Finished(busy_run, "skipped:busy", {}),
    )
    with runtime.engine.connect() as connection:
        row = connection.execute(
            select(Integration.lease_owner, Integration.due_at).where(Integration.id == integration_id)
        ).one()
        closed = connection.execute(
            select(SyncRun).where(SyncRun.id.in_([run_id, busy_run])).order_by(SyncRun.id)
        ).all()
    assert row.lease_owner is None and row.due_at == due
    assert [(run.outcome, run.classes_seen, run.members_seen, run.provider_calls) for run in closed] == [
        ("ok", 3, 7, 2),
        ("skipped:busy", 0, 0, 0),
    ]
    assert all(run.finished_at is not None for run in closed)
    synced = [e for e in audit.events(runtime.engine, integration_id) if e.action in runs.RUN_ACTIONS]
    assert [(e.action, e.actor, e.details) for e in synced] == [
        ("synced", "system:sync", {"outcome": "ok", "classes_seen": 3, "members_seen": 7, "provider_calls": 2}),
        ("sync_skipped", "system:sync", {"outcome": "skipped:busy"}),
    ]


def test_a_release_after_a_take_over_leaves_the_new_lease_and_sets_no_due_time_on_another_generation(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """The give-back touches the lease only where it is still this sync's, and the due time only on the generation
    the sync ran on: with all three statements in one, neither is given up."""
    integration_id = link_teacher(runtime, emulator, 0)
    lease = Lease("ours", 600)
    state, run_id = leases.begin(runtime.engine, integration_id, lease, leases.Held())
    assert state is not None
    with runtime.engine.begin() as connection:  # the lease expired and another sync took it
        connection.execute(
            update(Integration).where(Integration.id == integration_id).values(lease_owner="theirs", due_at=None)
        )
    finished = runs.Finished(run_id, "ok", {})
    leases.release(runtime.engine, integration_id, lease, state.generation + 1, utcnow(), finished=finished)
    with runtime.engine.connect() as connection:
        row = connection.execute(
            select(Integration.lease_owner, Integration.due_at).where(Integration.id == integration_id)
        ).one()
        outcome = connection.execute(select(SyncRun.outcome).where(SyncRun.id == run_id)).scalar_one()
    assert (row.lease_owner, row.due_at, outcome) == ("theirs", None, "ok")
    assert audit.actions(runtime.engine, integration_id).count("synced") == 1


def test_a_teachers_class_list_is_written_with_its_members_in_one_fenced_write(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """The class page is gathered with the member pages (sync.listing ``gather_classes``): a teacher's first sync
    and re-syncs take one fenced write each, the sweep's, and read the class list once. On PostgreSQL the first
    sync commits three times (lease, roster, release) and sends no savepoint and one statement for the tenant's
    suppressions and both tables' ids (store.bulk ``_take_ids``). What it stores and tells is the page-by-page
    path's (tests/conformance/test_bulk_first_sync.py); the roster here is the emulator's."""
    integration_id = link_teacher(runtime, emulator, 0)
    statements: list[str] = []
    ended: list[str] = []
    event.listen(runtime.engine, "commit", lambda _conn: ended.append("commit"))

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def record(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        flat = " ".join(statement.split())
        locked = flat.startswith(FENCE_READ) and not conn.get_execution_options().get(ADVISORY_READ)
        statements.append(LOCKED if locked else flat)

    def sent(prefix: str) -> int:
        return sum(1 for sql in statements if sql.startswith(prefix))

    first = run_sync(runtime, integration_id)
    assert first.outcome == "ok" and first.rows_written > 0
    assert sent(LOCKED) == 1  # one fenced write: classes, people, enrolments and the sweep
    assert sent("SELECT classes.external_id") == 0  # a first sync reads nothing back
    if runtime.engine.dialect.name == "postgresql":
        assert ended.count("commit") == 3, ended
        assert sent("SAVEPOINT") == 0 and sent("WITH sup AS MATERIALIZED") == 1
        assert sent("SELECT suppressions") == 0 and sent("WITH s AS MATERIALIZED") == 0
    teacher = emulator.teacher_ids[0]
    courses = emulator.course_ids_of(teacher, states=["ACTIVE"])
    truth = {course: set(emulator.student_ids_of(course)) for course in courses}
    assert len(people(runtime.engine, integration_id)) == len(set().union(*truth.values())) + 1  # and the teacher
    statements.clear()
    emulator.add_student(courses[-1])
    again = run_sync(runtime, integration_id)
    assert again.outcome == "ok" and again.rows_written == 2  # the newcomer and their enrolment
    assert sent(LOCKED) == 1
    assert sent("SELECT classes.external_id, classes.name") == 1  # the class list read once, in the one write
    statements.clear()
    assert run_sync(runtime, integration_id).rows_written == 0
    assert sent(LOCKED) == 1
