"""The migrations: down and up again on both databases, the audit log kept append-only, the schema
equal to the models, concurrent start-ups serialised, ids never reused, statuses and outcomes checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy.exc
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, insert, inspect, select, text, update

import connectors.clever
import connectors.google
import connectors.microsoft
import sync.budgets
from connectors.base import ConnectorError
from store import audit, integrations, links, rights, runs
from store.db import ALEMBIC_DIR, make_engine, migrate, run_alembic, utcnow
from store.models import (
    INTEGRATION_STATUSES,
    MAX_ID,
    RUN_OUTCOMES,
    AuditEvent,
    Base,
    Enrollment,
    Integration,
    Person,
    SchoolClass,
    SyncRun,
)
from sync.outcomes import MEANING

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.fresh_database  # every test here runs the real migrations on an empty database


def alembic(engine: sqlalchemy.Engine, verb: Literal["upgrade", "downgrade"], revision: str) -> None:
    run_alembic(engine, verb, revision)


def test_migrations_downgrade_and_upgrade(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        assert {"suppressions", "account_deletions"} <= set(inspect(engine).get_table_names())
        alembic(engine, "downgrade", "0001")
        assert not {"suppressions", "account_deletions"} & set(inspect(engine).get_table_names())
        with engine.begin() as connection:  # no trigger left behind at 0001
            connection.execute(
                text(
                    "INSERT INTO audit_events (integration_id, at, actor, action, reason) "
                    "VALUES (1, '2026-01-01', 'a', 'b', '')"
                )
            )
            connection.execute(text("DELETE FROM audit_events"))
        migrate(engine)
        with pytest.raises(sqlalchemy.exc.DatabaseError), engine.begin() as connection:
            connection.execute(
                text("INSERT INTO audit_events (at, actor, action, reason) VALUES ('2026-01-01', 'a', 'b', '')")
            )
            connection.execute(text("DELETE FROM audit_events"))
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_models(database_url: str) -> None:
    """Columns, types, indexes, keys (Alembic's compare), the named CHECK constraints and, on SQLite,
    AUTOINCREMENT (which a later batch rebuild drops unless it passes ``sqlite_autoincrement`` again)."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            for table in Base.metadata.sorted_tables:
                declared = {c.name for c in table.constraints if isinstance(c, sqlalchemy.CheckConstraint)}
                assert {c["name"] for c in inspect(connection).get_check_constraints(table.name)} == declared
                if connection.dialect.name == "sqlite":
                    sql = connection.execute(
                        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                        {"name": table.name},
                    ).scalar_one()
                    assert ("AUTOINCREMENT" in sql) == table.dialect_options["sqlite"]["autoincrement"], table.name
    finally:
        engine.dispose()


def _migrate_in_processes(database_url: str, count: int) -> list[subprocess.CompletedProcess[str]]:
    """``count`` real processes that import first, then all migrate the moment their stdin says go."""
    code = (
        "import sys\n"
        "from store.db import make_engine, migrate\n"
        f"engine = make_engine({database_url!r})\n"
        "sys.stdin.readline()\n"
        "migrate(engine)\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:  # every process is started before any is told to go
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=90), *p.communicate(timeout=90)) for p in processes]


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_concurrent_start_ups_migrate_a_fresh_database_once(database_url: str) -> None:
    """Four processes starting at once on an empty database: every one comes up, the schema is made once."""
    results = _migrate_in_processes(database_url, 4)
    assert [(r.returncode, r.stderr.strip().splitlines()[-1:]) for r in results] == [(0, [])] * 4
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [_head()]
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def _link(engine: sqlalchemy.Engine, teacher: str = "teacher-1") -> int:
    return links.save_link(
        engine,
        provider="google",
        tenant="school",
        linked_by=teacher,
        account_key="a" * 64,
        scopes=frozenset(),
        token_blob=b"sealed",
        actor="admin:test",
    ).integration_id


def test_an_erased_integration_and_its_runs_leave_their_ids_unused(database_url: str) -> None:
    """SQLite reused the highest id after a delete: the next link inherited the erased one's audit trail,
    and its runs the erased runs' ids (``held approve RUN_ID`` names a run)."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        first = _link(engine)
        first_run = runs.start_run(engine, first)
        integrations.end_integration(engine, first, status="revoked", actor="admin:test", reason="test")
        rights.erase_integration(engine, first, actor="admin:test")
        second = _link(engine)
        second_run = runs.start_run(engine, second)
        assert second != first
        assert second_run != first_run
        assert [event.action for event in audit.events(engine, second)] == ["linked"]
    finally:
        engine.dispose()


def test_integration_ids_are_64_bit_wherever_they_are_stored(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            connection.execute(
                insert(Integration).values(
                    id=MAX_ID,
                    provider="google",
                    tenant="school",
                    linked_by="teacher-1",
                    granted_scopes="",
                    generation=1,
                    created_at=utcnow(),
                    status_changed_at=utcnow(),
                )
            )
        run_id = runs.start_run(engine, MAX_ID)
        runs.finish_run(engine, run_id, "ok")
        with engine.connect() as connection:
            assert connection.execute(select(SyncRun.integration_id)).scalar_one() == MAX_ID
            assert connection.execute(select(AuditEvent.integration_id)).scalar_one() == MAX_ID
    finally:
        engine.dispose()


def test_the_database_refuses_an_unknown_status_or_outcome(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        integration_id = _link(engine)
        run_id = runs.start_run(engine, integration_id)
        for status in INTEGRATION_STATUSES:
            with engine.begin() as connection:
                connection.execute(update(Integration).values(status=status))
        for outcome in RUN_OUTCOMES:
            with engine.begin() as connection:
                connection.execute(update(SyncRun).values(outcome=outcome))
        with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as connection:
            connection.execute(update(Integration).values(status="activ"))
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            runs.finish_run(engine, run_id, "bogus")
    finally:
        engine.dispose()


def _kinds(error: type[ConnectorError]) -> set[str]:
    return {error.kind} | {kind for sub in error.__subclasses__() for kind in _kinds(sub)}


def test_every_outcome_the_code_can_write_is_allowed() -> None:
    """A run's outcome is ``ok``, ``held``, a connector error's kind, an ended status or ``skipped:<why>``."""
    assert {connectors.clever, connectors.google, connectors.microsoft, sync.budgets}  # their errors are loaded
    written = _kinds(ConnectorError) | set(MEANING) | {"running", "ok", "held"}
    written |= {f"skipped:{status}" for status in INTEGRATION_STATUSES if status != "active"}
    assert written <= set(RUN_OUTCOMES)


def _rows_at_0005(engine: sqlalchemy.Engine) -> tuple[int, int]:
    """A linked integration with a roster and a run; then the newest integration and its run erased, as
    ``erase`` does, leaving their ids in the audit log only. Returns those two ids."""
    now = utcnow()
    link = {"provider": "google", "tenant": "school", "granted_scopes": "", "generation": 1}
    with engine.begin() as connection:

        def new(model: Any, **values: object) -> int:
            return int(connection.execute(insert(model).values(**values).returning(model.id)).scalar_one())

        kept = new(Integration, linked_by="t1", status="active", created_at=now, status_changed_at=now, **link)
        class_id = new(SchoolClass, integration_id=kept, external_id="c", name="C", state="ACTIVE")
        person_id = new(Person, integration_id=kept, role="student", pseudonym="p")
        new(Enrollment, integration_id=kept, class_id=class_id, person_id=person_id, role="student")
        new(SyncRun, integration_id=kept, started_at=now, outcome="ok")
        erased = new(Integration, linked_by="t2", status="revoked", created_at=now, status_changed_at=now, **link)
        erased_run = new(SyncRun, integration_id=erased, started_at=now, outcome="ok")
        new(
            AuditEvent,
            integration_id=erased,
            at=now,
            actor="a",
            action="removals_held",
            details=f'{{"run": {erased_run}}}',
        )
        connection.execute(delete(SyncRun).where(SyncRun.id == erased_run))
        connection.execute(delete(Integration).where(Integration.id == erased))
    return erased, erased_run


def _counts(engine: sqlalchemy.Engine) -> list[int]:
    with engine.connect() as connection:
        return [
            len(connection.execute(select(model.id)).all())
            for model in (Integration, SchoolClass, Person, Enrollment, SyncRun, AuditEvent)
        ]


def test_0006_keeps_every_row_and_the_append_only_audit_and_never_reuses_an_id_seen_before(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        alembic(engine, "upgrade", "0005")
        erased, erased_run = _rows_at_0005(engine)
        migrate(engine)
        assert _counts(engine) == [1, 1, 1, 1, 1, 1]  # rebuilding integrations cascaded into no roster row
        with pytest.raises(sqlalchemy.exc.DatabaseError), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_events"))
        with pytest.raises(sqlalchemy.exc.DatabaseError), engine.begin() as connection:
            connection.execute(text("UPDATE audit_events SET actor = 'x'"))
        relinked = _link(engine, "teacher-2")
        assert relinked > erased  # named in the audit log only
        assert runs.start_run(engine, relinked) > erased_run
        alembic(engine, "downgrade", "0005")
        assert _counts(engine)[:4] == [2, 1, 1, 1]
        migrate(engine)
        assert _counts(engine)[:4] == [2, 1, 1, 1]
    finally:
        engine.dispose()
