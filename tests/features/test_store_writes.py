"""How the store's writes reach the database: batched upserts, and planner statistics kept fresh on PostgreSQL.

Both were found by profiling a district's first sync (BENCHMARKS.md): an upsert sent row by row, and
look-ups planned from statistics of the still-empty tables, each cost more than the download itself.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from emulators.clever import CleverEmulator
from store.models import Person
from store.runtime import Runtime, build_runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district

# Some 3,000 students: a page is many writes' worth of rows, and a table where an index probe beats a scan.
pytestmark = pytest.mark.clever(teachers=60, students_per_course=30)


def statements(engine: Engine) -> list[str]:
    """Every statement sent to the database from now on, as the driver got it."""
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    return sent


def synced(clever: CleverEmulator, database_url: str, **overrides: Any) -> tuple[Runtime, int, list[str]]:
    runtime = build_runtime(clever_settings_for(clever, database_url, **overrides))
    integration_id = link_district(runtime, clever)
    sent = statements(runtime.engine)
    assert run_sync(runtime, integration_id).outcome == "ok"
    return runtime, integration_id, sent


def test_upserts_send_many_rows_a_statement(clever: CleverEmulator, database_url: str) -> None:
    """A restored ``removed_at`` is a literal NULL, not a parameter: SQLAlchemy then sends a thousand rows an
    INSERT instead of one (a parameter outside the VALUES rows turns its "insertmanyvalues" off). The page-by-page
    path's upserts: a first sync's bulk path (store.bulk) loads its rows with COPY or one statement a page."""
    runtime, integration_id, sent = synced(clever, database_url, bulk_first_sync=False)
    with runtime.engine.connect() as connection:
        stored = connection.execute(select(func.count()).where(Person.integration_id == integration_id)).scalar_one()
    inserts = [s for s in sent if s.startswith("INSERT INTO people")]
    assert stored > 1_000
    assert 0 < len(inserts) <= stored / 100, f"{len(inserts)} INSERTs for {stored} people"
    runtime.engine.dispose()


def test_a_large_first_sync_leaves_postgresql_planning_from_fresh_statistics(
    clever: CleverEmulator, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a sync that wrote the district, the planner probes the unique index for each pseudonym looked
    up, instead of scanning every row of the integration it still believed to be empty."""
    monkeypatch.setattr("store.statistics.FIRST_AT", 500)
    runtime, integration_id, sent = synced(clever, pg_url)
    assert any(s.startswith("ANALYZE") for s in sent)
    with runtime.engine.connect() as connection:
        people = connection.execute(select(func.count()).where(Person.integration_id == integration_id)).scalar_one()
        estimated = connection.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'people'::regclass"
        ).scalar_one()
        wanted = list(
            connection.execute(
                select(Person.pseudonym).where(Person.integration_id == integration_id).limit(5)
            ).scalars()
        )
        query = select(Person.id).where(
            Person.integration_id == integration_id, Person.role == "student", Person.pseudonym.in_(wanted)
        )
        compiled = query.compile(runtime.engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert estimated >= people / 2, "the statistics know the district is there"
    conditions = " ".join(re.findall(r"Index Cond: (.*)", plan))
    assert "pseudonym" in conditions, plan
    runtime.engine.dispose()
