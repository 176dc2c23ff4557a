"""Batched, idempotent roster writes: upsert what a page holds, soft-delete what the provider no longer has.

Every upsert updates a row only when a value differs (or the row was soft-deleted), so a re-sync
with no change writes no rows. ``RETURNING`` tells which rows were written, portably.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mappers.records import ClassRecord, EnrollmentRecord, PersonRecord
from store import suppressions
from store.db import utcnow
from store.models import Base, Enrollment, Person, SchoolClass

CHUNK = 500


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _upsert(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str], values: Sequence[str]
) -> int:
    """INSERT .. ON CONFLICT DO UPDATE .. WHERE changed; returns how many rows were really written."""
    if not rows:
        return 0
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    changed = or_(
        table.c.removed_at.is_not(None), *(table.c[name].is_distinct_from(statement.excluded[name]) for name in values)
    )
    set_ = {name: statement.excluded[name] for name in values} | {"removed_at": None}
    upsert = statement.on_conflict_do_update(index_elements=list(keys), set_=set_, where=changed)
    return len(connection.execute(upsert.returning(table.c.id), list(rows)).all())


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def upsert_classes(
    connection: Connection, integration_id: int, records: Sequence[ClassRecord]
) -> tuple[int, dict[str, int]]:
    """Returns rows written and ``external_id -> class id`` for the page."""
    rows = [
        {
            "integration_id": integration_id,
            "external_id": r.external_id,
            "name": r.name,
            "section": r.section,
            "state": r.state,
        }
        for r in records
    ]
    written = _upsert(
        connection, _table(SchoolClass), rows, ("integration_id", "external_id"), ("name", "section", "state")
    )
    ids: dict[str, int] = {}
    for chunk in _chunks([r.external_id for r in records]):
        rows_found = connection.execute(
            select(SchoolClass.external_id, SchoolClass.id).where(
                SchoolClass.integration_id == integration_id, SchoolClass.external_id.in_(chunk)
            )
        )
        ids.update({external_id: class_id for external_id, class_id in rows_found})
    return written, ids


def upsert_members(
    connection: Connection,
    integration_id: int,
    class_id: int,
    people: Sequence[PersonRecord],
    enrollments: Sequence[EnrollmentRecord],
) -> tuple[int, set[int]]:
    """Upserts one page of people and their enrolments in ``class_id``; returns rows written and person ids.

    A suppressed (erased) person is dropped here, inside the fenced transaction, so no sync brings them back.
    """
    blocked = suppressions.suppressed(connection, integration_id, {p.pseudonym for p in people})
    people = [p for p in people if p.pseudonym not in blocked]
    enrollments = [e for e in enrollments if e.pseudonym not in blocked]
    unique_people = {(p.role, p.pseudonym): p for p in people}
    person_rows = [
        {
            "integration_id": integration_id,
            "role": p.role,
            "pseudonym": p.pseudonym,
            "display_name": p.display_name,
            "email_address": p.email_address,
        }
        for p in unique_people.values()
    ]
    written = _upsert(
        connection,
        _table(Person),
        person_rows,
        ("integration_id", "role", "pseudonym"),
        ("display_name", "email_address"),
    )
    person_ids: dict[tuple[str, str], int] = {}
    for role in {role for role, _ in unique_people}:
        # One equality per key column (not a row-value IN), so SQLite too looks rows up by the unique index.
        pseudonyms = [pseudonym for person_role, pseudonym in unique_people if person_role == role]
        for chunk in _chunks(pseudonyms):
            found = connection.execute(
                select(Person.pseudonym, Person.id).where(
                    Person.integration_id == integration_id, Person.role == role, Person.pseudonym.in_(chunk)
                )
            )
            person_ids.update({(role, pseudonym): person_id for pseudonym, person_id in found})
    enrollment_rows = {
        person_ids[(e.role, e.pseudonym)]: {
            "integration_id": integration_id,
            "class_id": class_id,
            "person_id": person_ids[(e.role, e.pseudonym)],
            "role": e.role,
        }
        for e in enrollments
    }
    written += _upsert(
        connection, _table(Enrollment), list(enrollment_rows.values()), ("class_id", "person_id"), ("role",)
    )
    return written, set(enrollment_rows)


def remove_unseen(
    connection: Connection,
    integration_id: int,
    seen_classes: set[int],
    seen_enrollments: set[tuple[int, int]],
    incomplete_classes: set[int],
    *,
    sweep_classes: bool = True,
) -> int:
    """Soft-delete what a complete sync did not see; people left with no enrolment go too.

    Enrolments of a class whose roster could not be read in full are left alone, and so are classes
    (with their enrolments) when a class record of this run was malformed (``sweep_classes=False``).
    """
    now = utcnow()
    removed = 0
    active_classes = connection.execute(
        select(SchoolClass.id).where(SchoolClass.integration_id == integration_id, SchoolClass.removed_at.is_(None))
    ).scalars()
    gone_classes = [class_id for class_id in active_classes if class_id not in seen_classes] if sweep_classes else []
    active_enrollments = connection.execute(
        select(Enrollment.id, Enrollment.class_id, Enrollment.person_id).where(
            Enrollment.integration_id == integration_id, Enrollment.removed_at.is_(None)
        )
    ).all()
    gone_enrollments = [
        enrollment_id
        for enrollment_id, class_id, person_id in active_enrollments
        if (class_id, person_id) not in seen_enrollments
        and class_id not in incomplete_classes
        and (sweep_classes or class_id in seen_classes)
    ]
    for model, ids in ((SchoolClass, gone_classes), (Enrollment, gone_enrollments)):
        for chunk in _chunks(ids):
            removed += connection.execute(update(model).where(model.id.in_(chunk)).values(removed_at=now)).rowcount
    has_enrollment = exists().where(Enrollment.person_id == Person.id, Enrollment.removed_at.is_(None))
    removed += connection.execute(
        update(Person)
        .where(Person.integration_id == integration_id, Person.removed_at.is_(None), ~has_enrollment)
        .values(removed_at=now)
    ).rowcount
    return removed


def purge(connection: Connection, integration_id: int) -> None:
    """Hard-delete every roster row that came through the integration."""
    for model in (Enrollment, Person, SchoolClass):
        connection.execute(delete(model).where(model.integration_id == integration_id))


@dataclass(frozen=True)
class RosterCounts:
    classes: int
    teachers: int
    students: int


def counts(connection: Connection, integration_id: int) -> RosterCounts:
    """Current (not soft-deleted) classes, teachers and students of one integration."""
    classes = connection.execute(
        select(func.count()).where(SchoolClass.integration_id == integration_id, SchoolClass.removed_at.is_(None))
    ).scalar_one()
    by_role = dict(
        connection.execute(
            select(Person.role, func.count())
            .where(and_(Person.integration_id == integration_id, Person.removed_at.is_(None)))
            .group_by(Person.role)
        ).all()
    )
    return RosterCounts(classes=classes, teachers=by_role.get("teacher", 0), students=by_role.get("student", 0))
