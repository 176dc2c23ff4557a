"""A change page costs statements by the chunk of rows it changes, never by the class or by the district.

Found by profiling a 1% change at 100,000 students (BENCHMARKS.md): a replaced class cost a query and an
update of its own, and judging each page counted every row of the integration. Counted, not timed: the
statements the change sync sends, against the size of the change and the size of the district.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from sqlalchemy import Engine, event

from emulators.clever import CleverEmulator
from store.runtime import build_runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.plugins.emulators import MakeEmulator

WHOLE_INTEGRATION = re.compile(r"WHERE \w+\.integration_id = \S+ AND \w+\.removed_at = ")
"""A count of what a page removed by its ``removed_at``, which has no index: a scan of the whole integration."""


def statements(engine: Engine) -> list[str]:
    """Every statement sent to the database from now on, as the driver got it."""
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    return sent


def change_statements(make_emulator: MakeEmulator, database_url: str, *, teachers: int, moved: int) -> list[str]:
    """The statements of a change sync in which ``moved`` students each leave a section and a new one joins it."""
    sizes = {"teachers": teachers, "courses_per_teacher": 5, "students_per_course": 12}
    clever = make_emulator(CleverEmulator, districts=1, library_teachers=0, **sizes)
    runtime = build_runtime(clever_settings_for(clever, database_url))
    integration_id = link_district(runtime, clever)
    assert run_sync(runtime, integration_id).outcome == "ok"
    for section in clever.section_ids(clever.district_ids[0])[:moved]:
        clever.remove_student(section, clever.students_of(section)[0])
        clever.add_student(section)
    sent = statements(runtime.engine)
    outcome = run_sync(runtime, integration_id)
    runtime.engine.dispose()
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    assert outcome.rows_written >= 2 * moved  # at least an enrolment ended and one written per class
    return sent


def test_a_change_page_sends_as_many_statements_for_thirty_classes_as_for_ten(
    make_emulator: MakeEmulator, database_url: str
) -> None:
    """The enrolments a replaced class no longer lists are read and ended for all the page's classes at once."""
    ten = change_statements(make_emulator, database_url, teachers=8, moved=10)
    thirty = change_statements(make_emulator, database_url, teachers=8, moved=30)
    assert len(thirty) == len(ten), f"{len(ten)} statements for 10 classes, {len(thirty)} for 30"


def test_a_change_page_sends_the_same_statements_to_a_district_three_times_larger(
    make_emulator: MakeEmulator, database_url: str
) -> None:
    """No statement of a page counts over the integration: the page's removals are counted as they are made."""
    small = change_statements(make_emulator, database_url, teachers=4, moved=10)
    large = change_statements(make_emulator, database_url, teachers=12, moved=10)
    assert len(large) == len(small)
    assert not [s for s in large if WHOLE_INTEGRATION.search(s)]


def microsoft_change_writes(
    make_emulator: MakeEmulator, database_url: str, monkeypatch: pytest.MonkeyPatch, *, moved: int
) -> tuple[int, int]:
    """Fenced writes and rows of a Graph delta sync in which ``moved`` classes each gain a student."""
    from emulators.microsoft import MicrosoftEmulator
    from services.linking import link_org
    from store import breaker
    from tests.microsoft_fixtures import microsoft_settings_for

    microsoft = make_emulator(MicrosoftEmulator, tenants=1, teachers=8, courses_per_teacher=5)
    runtime = build_runtime(microsoft_settings_for(microsoft, database_url))
    integration_id = link_org(runtime, provider_name="microsoft", org=microsoft.tenant_ids[0])
    assert run_sync(runtime, integration_id).outcome == "ok"
    for class_id in microsoft.class_ids(microsoft.tenant_ids[0])[:moved]:
        microsoft.add_student(class_id)
    writes: list[int] = []
    apply = breaker.ChangeGuard.apply

    def counted(guard: breaker.ChangeGuard, connection: Any, changes: Any) -> int:
        writes.append(1)
        return apply(guard, connection, changes)

    monkeypatch.setattr(breaker.ChangeGuard, "apply", counted)
    outcome = run_sync(runtime, integration_id)
    runtime.engine.dispose()
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    return len(writes), outcome.rows_written


def test_a_graph_delta_writes_the_changed_classes_member_lists_together(
    make_emulator: MakeEmulator, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each changed class's members and teachers arrive as pages of their own that leave the cursor where it was:
    gathered, thirty changed classes cost as many fenced writes as ten (each was one write a page)."""
    ten, ten_rows = microsoft_change_writes(make_emulator, database_url, monkeypatch, moved=10)
    thirty, thirty_rows = microsoft_change_writes(make_emulator, database_url, monkeypatch, moved=30)
    assert thirty == ten, f"{ten} writes for 10 classes, {thirty} for 30"
    assert (ten_rows, thirty_rows) == (20, 60), "a person and an enrolment a class"


MEMBERS_READ = ("SELECT classes.external_id, enrollments.id", "SELECT classes.external_id, enrolment.id")
"""The read of a class's stored members (store.membership): who left and who joined, for a class delta (on
PostgreSQL the enrolments are looked up in a ``LATERAL`` subquery named ``enrolment``)."""


def test_a_page_of_class_deltas_reads_their_members_once(make_emulator: MakeEmulator, database_url: str) -> None:
    """Settling the deltas reads who left and who joined; writing them reuses that read instead of sending it again."""
    sent = change_statements(make_emulator, database_url, teachers=4, moved=10)
    assert len([s for s in sent if s.startswith(MEMBERS_READ)]) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has no arrays: its IN lists stay
def test_a_change_page_on_postgresql_binds_a_list_of_keys_as_one_array(
    make_emulator: MakeEmulator, database_url: str
) -> None:
    """On PostgreSQL the page's look-ups by key send the keys as one array, not one parameter each: an IN list of
    500 parameters was rendered by SQLAlchemy and rewritten by psycopg at every execution, in Python."""
    sent = change_statements(make_emulator, database_url, teachers=4, moved=30)
    expanded = re.compile(r"IN \((%\(\w+\)s(::[\w ]+)?, ){10}")  # an IN list of ten parameters or more
    many = [s for s in sent if expanded.search(s)]
    assert not many, many[:1]
    assert any("= ANY (" in s for s in sent)


ID_LOOK_UPS = (
    "SELECT people.pseudonym, people.id FROM people",
    "SELECT classes.external_id, classes.id, classes.state",
)
"""Look-ups of ids alone (store.roster ``_person_ids``, ``_stored_classes``): after the page's reads and writes."""


def test_a_change_page_looks_up_no_id_it_has_read_or_written(make_emulator: MakeEmulator, database_url: str) -> None:
    """The page's classes are read once (none of them changes), and the new students' ids come back from their
    insert: neither is looked up again, once after the writes and once more for the orphan check (issue 22)."""
    sent = change_statements(make_emulator, database_url, teachers=4, moved=10)
    again = [s for s in sent if s.startswith(ID_LOOK_UPS)]
    assert not again, again[:1]


def test_a_graph_delta_gathered_into_one_write_stores_and_tells_what_page_by_page_writes_did(
    make_emulator: MakeEmulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change path gathers many more rows into a write than the listing (``sync.changes.CHANGE_ROWS``): two
    databases linked to one tenant, the same delta written page by page in one and gathered in the other, hold
    the same roster and the same events in the same order."""
    from emulators.microsoft import MicrosoftEmulator
    from services.linking import link_org
    from store import breaker
    from sync import changes
    from tests.features.test_change_delta import roster
    from tests.microsoft_fixtures import microsoft_settings_for
    from tests.outboxkit import events

    microsoft = make_emulator(MicrosoftEmulator, tenants=1, teachers=8, courses_per_teacher=5)
    tenant, key = microsoft.tenant_ids[0], secrets.token_urlsafe(48)
    runtimes = [
        build_runtime(microsoft_settings_for(microsoft, f"sqlite:///{tmp_path}/{name}.db", pseudonym_key=key))
        for name in ("pages", "gathered")
    ]
    ids = [link_org(runtime, provider_name="microsoft", org=tenant) for runtime in runtimes]
    assert all(run_sync(r, i).outcome == "ok" for r, i in zip(runtimes, ids, strict=True))
    told = [len(events(runtime.engine)) for runtime in runtimes]
    for class_id in microsoft.class_ids(tenant)[:12]:
        microsoft.remove_member(class_id, microsoft.members_of(class_id)[0])
        microsoft.add_student(class_id)
    writes = [0, 0]
    apply = breaker.ChangeGuard.apply
    for which, rows in enumerate((1, changes.CHANGE_ROWS)):

        def counted(guard: breaker.ChangeGuard, connection: Any, batch: Any, which: int = which) -> int:
            writes[which] += 1
            return apply(guard, connection, batch)

        monkeypatch.setattr(breaker.ChangeGuard, "apply", counted)
        monkeypatch.setattr(changes, "CHANGE_ROWS", rows)
        outcome = run_sync(runtimes[which], ids[which])
        assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    assert writes[0] > writes[1] == 2, writes  # the member lists in one write, then the page with the cursor
    feeds = [
        [(e.type, e.person, e.data) for e in events(runtime.engine)[count:]]
        for runtime, count in zip(runtimes, told, strict=True)
    ]
    assert feeds[0] == feeds[1] and len(feeds[0]) >= 12  # the new enrolment of each class at least
    assert roster(runtimes[0], ids[0]) == roster(runtimes[1], ids[1])
    for runtime in runtimes:
        runtime.engine.dispose()
