"""A first sync's bulk write tells its new rows' events itself on SQLite (store.bulk_events, migration 0010).

The insert triggers are paused for the integration only around the write's own inserts, inside its
transaction: the feed holds the same events as the triggers would write (tests/conformance/
test_bulk_first_sync.py compares whole syncs), each once, one seq each in write order, and every other
writer's inserts are still told by the triggers. On SQLite and PostgreSQL (``runtime``): PostgreSQL's
statement triggers tell the same feed; an erase uses the person index on both.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from mappers.records import ClassRecord, EnrollmentRecord, PersonRecord, RosterBatch
from store import bulk, bulk_events, outbox, roster
from store.models import ChangeEvent, OutboxPause
from store.runtime import Runtime
from tests.conftest import Linker
from tests.outboxkit import events, head

STUDENTS = ("ab" * 32, "cd" * 32)
TEACHER = "ef" * 32


def _page(*students: str, teacher_name: str | None = None) -> RosterBatch:
    teacher = PersonRecord("teacher", TEACHER, teacher_name, None, complete=teacher_name is not None)
    return RosterBatch(
        classes=[ClassRecord("c-1", "Maths", "B", "ACTIVE")],
        people=[teacher, *(PersonRecord("student", s) for s in students)],
        enrollments=[
            EnrollmentRecord("c-1", TEACHER, "teacher"),
            *(EnrollmentRecord("c-1", s, "student") for s in students),
        ],
    )


def _write(runtime: Runtime, integration_id: int, pages: list[RosterBatch]) -> None:
    stored = bulk.FirstSync()
    for page in pages:
        with runtime.engine.begin() as connection:
            _, _, written = bulk.apply_batch(connection, integration_id, page, stored)
        stored.merge(written)


def test_a_bulk_write_tells_each_new_row_once_in_write_order(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    _write(runtime, integration_id, [_page(STUDENTS[0], teacher_name="Ms Smith")])
    told = [e for e in events(runtime.engine, integration_id) if e.type != "integration.updated"]
    assert [(e.type, e.person, e.data) for e in told] == [
        ("class.upserted", None, {"key": "c-1", "name": "Maths", "section": "B", "state": "ACTIVE"}),
        ("member.added", TEACHER, {"class": "c-1", "person": TEACHER, "role": "teacher", "display_name": "Ms Smith"}),
        ("member.added", STUDENTS[0], {"class": "c-1", "person": STUDENTS[0], "role": "student", "display_name": None}),
    ]
    seqs = [e.seq for e in events(runtime.engine)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and head(runtime.engine)[0] == seqs[-1]
    with runtime.engine.connect() as connection:  # the pause never outlives the write's transaction
        assert connection.execute(select(OutboxPause)).all() == []


def test_a_page_meeting_stored_enrolments_is_told_by_the_trigger_each_once(runtime: Runtime, link: Linker) -> None:
    """The second page lists the first's enrolments again and one new student: its insert is taken back and
    written ignoring the stored rows, whose trigger tells only the new one (and the teacher's new name)."""
    integration_id = link(0)
    _write(runtime, integration_id, [_page(STUDENTS[0]), _page(*STUDENTS, teacher_name="Ms Smith")])
    told = [(e.type, e.person) for e in events(runtime.engine, integration_id) if e.type != "integration.updated"]
    assert told == [
        ("class.upserted", None),
        ("member.added", TEACHER),
        ("member.added", STUDENTS[0]),
        ("person.updated", TEACHER),
        ("member.added", STUDENTS[1]),
    ]


def test_other_writers_inserts_are_still_told_by_the_triggers(runtime: Runtime, link: Linker) -> None:
    """After a bulk write, the page-by-page path's inserts (another integration's first rows) write their events."""
    bulk_id, other_id = link(0), link(1)
    _write(runtime, bulk_id, [_page(STUDENTS[0])])
    with runtime.engine.begin() as connection:
        roster.apply_batch(connection, other_id, _page(STUDENTS[1]), hold_possible=False)
    told = [(e.type, e.person) for e in events(runtime.engine, other_id) if e.type != "integration.updated"]
    assert told == [("class.upserted", None), ("member.added", TEACHER), ("member.added", STUDENTS[1])]


def test_an_erase_finds_a_persons_events_through_the_index(runtime: Runtime, link: Linker) -> None:
    """``ix_change_events_person`` keys the pseudonym's prefix (migration 0010; a hash index on PostgreSQL since
    0011): the erase's query uses it on both databases (no scan of the whole feed), and deletes that person's
    events only."""
    integration_id = link(0)
    _write(runtime, integration_id, [_page(*STUDENTS)])
    query = delete(ChangeEvent).where(outbox.naming(STUDENTS[0]))  # the erase's own statement
    with runtime.engine.begin() as connection:
        compiled = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a tiny table: would be scanned anyway
            plan = " ".join(connection.exec_driver_sql(f"EXPLAIN {compiled}").scalars())
        else:
            plan = " ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        assert "ix_change_events_person" in plan
        assert outbox.forget_person(connection, STUDENTS[0]) == 1
    assert {e.person for e in events(runtime.engine, integration_id)} == {None, TEACHER, STUDENTS[1]}


def test_a_bulk_write_after_another_writers_rows_tells_only_its_own(runtime: Runtime, link: Linker) -> None:
    """The events are read back from the ids the bulk write's inserts took: rows another integration stored
    before (lower ids, in the same tables) are not told again, and the bulk write's are told with their
    stored values (a teacher's name as the people table holds it)."""
    bulk_id, other_id = link(0), link(1)
    with runtime.engine.begin() as connection:
        roster.apply_batch(connection, other_id, _page(STUDENTS[1]), hold_possible=False)
    before = len(events(runtime.engine, other_id))
    _write(runtime, bulk_id, [_page(*STUDENTS, teacher_name="Ms Smith")])
    told = [(e.type, e.person, e.data) for e in events(runtime.engine, bulk_id) if e.type != "integration.updated"]
    assert told == [
        ("class.upserted", None, {"key": "c-1", "name": "Maths", "section": "B", "state": "ACTIVE"}),
        ("member.added", TEACHER, {"class": "c-1", "person": TEACHER, "role": "teacher", "display_name": "Ms Smith"}),
        *(
            ("member.added", s, {"class": "c-1", "person": s, "role": "student", "display_name": None})
            for s in STUDENTS
        ),
    ]
    assert len(events(runtime.engine, other_id)) == before


def test_events_for_ids_no_insert_took_are_refused(runtime: Runtime, link: Linker) -> None:
    """SQLite: telling more rows than hold the ids fails the write (its transaction rolls back), never a short feed."""
    integration_id = link(0)
    _write(runtime, integration_id, [_page(STUDENTS[0])])
    if runtime.engine.dialect.name == "postgresql":
        return  # the statement triggers tell PostgreSQL's rows
    last = head(runtime.engine)[0]
    with pytest.raises(RuntimeError, match="told of"), runtime.engine.begin() as connection:
        bulk_events.write(connection, "enrollments", 1, 5)
    assert head(runtime.engine)[0] == last
