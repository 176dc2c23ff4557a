"""A first sync on the bulk path ANALYZEs the roster tables only where their growth calls for it.

Found with the 84-link Google bench (BENCHMARKS.md): an ANALYZE of the three roster tables after every
teacher's first sync cost about 40 ms a link, more than the rest of the link; yet tables never analyzed
plan the look-ups so badly that the same bench took five times as long without it (store.statistics).
Counted, not timed: the ANALYZE statements each first sync sends, and the tables they name.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, event

from emulators.google import GoogleEmulator
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher

# Nine teachers of equal rosters: each first sync adds about the same rows (a few pages a table).
pytestmark = pytest.mark.emulator(teachers=9, courses_per_teacher=5, students_per_course=30)
ROSTER = {"classes", "people", "enrollments"}


def first_sync(runtime: Runtime, emulator: GoogleEmulator, teacher: int) -> list[set[str]]:
    """Link the teacher and run their first sync; the tables of each ANALYZE statement it sent."""
    integration_id = link_teacher(runtime, emulator, teacher)
    analyzed: list[set[str]] = []

    def record(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("ANALYZE"):
            analyzed.append({name.strip() for name in statement.strip()[len("ANALYZE") :].split(",")})

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        outcome = run_sync(runtime, integration_id)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    assert outcome.outcome == "ok" and 0 < outcome.rows_written < 5_000  # small: the growth rule decides
    return analyzed


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite plans without statistics
def test_a_first_sync_analyzes_tables_never_analyzed_or_grown_past_twice_their_analyzed_size(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    assert first_sync(runtime, emulator, 0) == [ROSTER]  # fresh tables
    for teacher in (1, 2):
        first_sync(runtime, emulator, teacher)
    with runtime.engine.connect() as connection:  # statistics fresh at three teachers' rows
        connection.exec_driver_sql("ANALYZE classes, people, enrollments")
        connection.commit()
    assert first_sync(runtime, emulator, 3) == []  # four teachers' rows: not yet twice three
    later = [first_sync(runtime, emulator, teacher) for teacher in range(4, 9)]  # nine teachers: past six
    assert later[0] == []
    analyzed = [table for statements in later for tables in statements for table in tables]
    # each table by its own growth: people and enrollments once each (their pages doubled), not once a link
    assert sorted(analyzed) == sorted(set(analyzed)) and {"people", "enrollments"} <= set(analyzed), later
