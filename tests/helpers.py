"""Small test helpers: dump every table, read the roster of one integration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, select, text

from store.db import utcnow
from store.models import Base, Enrollment, HeldRemoval, Integration, Person, RemovalHold, SchoolClass, SyncRun

Snapshot = tuple[set[int], set[int], set[tuple[int, int]]]


def dump_tables(engine: Engine) -> str:
    """Every row of every table as text, blobs included, for needle-in-haystack privacy checks."""
    chunks: list[str] = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                chunks.append(repr(tuple(row)))
        chunks.extend(repr(tuple(row)) for row in connection.execute(text("SELECT * FROM alembic_version")))
    return "\n".join(chunks)


def people(engine: Engine, integration_id: int, *, role: str | None = None, current: bool = True) -> list[Any]:
    query = select(Person).where(Person.integration_id == integration_id)
    if role:
        query = query.where(Person.role == role)
    if current:
        query = query.where(Person.removed_at.is_(None))
    with engine.connect() as connection:
        return list(connection.execute(query))


def classes(engine: Engine, integration_id: int, *, current: bool = True) -> list[Any]:
    query = select(SchoolClass).where(SchoolClass.integration_id == integration_id)
    if current:
        query = query.where(SchoolClass.removed_at.is_(None))
    with engine.connect() as connection:
        return list(connection.execute(query))


def enrollments(engine: Engine, integration_id: int, *, current: bool = True) -> list[Any]:
    query = select(Enrollment).where(Enrollment.integration_id == integration_id)
    if current:
        query = query.where(Enrollment.removed_at.is_(None))
    with engine.connect() as connection:
        return list(connection.execute(query))


def row_count(engine: Engine, integration_id: int) -> int:
    return (
        len(classes(engine, integration_id, current=False))
        + len(people(engine, integration_id, current=False))
        + len(enrollments(engine, integration_id, current=False))
    )


def snapshot(engine: Engine, integration_id: int) -> Snapshot:
    """Current class ids, person ids and enrolment keys of one integration: what a held sweep must not change."""
    return (
        {c.id for c in classes(engine, integration_id)},
        {p.id for p in people(engine, integration_id)},
        {(e.class_id, e.person_id) for e in enrollments(engine, integration_id)},
    )


def run_outcomes(engine: Engine, integration_id: int) -> list[str]:
    """The outcomes of an integration's sync runs, oldest first."""
    with engine.connect() as connection:
        query = select(SyncRun.outcome).where(SyncRun.integration_id == integration_id).order_by(SyncRun.id)
        return list(connection.execute(query).scalars())


def held_rows(engine: Engine) -> int:
    """Rows the breaker keeps for held sweeps (holds and their removals): zero once nothing is held."""
    with engine.connect() as connection:
        return len(connection.execute(select(HeldRemoval.id)).all()) + len(
            connection.execute(select(RemovalHold.id)).all()
        )


def classes_named(engine: Engine, external_ids: list[str]) -> dict[str, int]:
    """One integration holding a class for each of ``external_ids`` (awkward texts, for the list binders'
    tests: store.db.one_of, store.pgarrays); returns each external id's class id."""
    now = utcnow()
    with engine.begin() as connection:
        link = connection.execute(
            insert(Integration)
            .values(provider="google", tenant="t", linked_by="a", created_at=now, status_changed_at=now)
            .returning(Integration.id)
        ).scalar_one()
        rows = [{"integration_id": link, "external_id": text, "name": "n", "state": "ACTIVE"} for text in external_ids]
        connection.execute(insert(SchoolClass), rows)
        found = connection.execute(select(SchoolClass.external_id, SchoolClass.id)).all()
    return {external_id: class_id for external_id, class_id in found}
