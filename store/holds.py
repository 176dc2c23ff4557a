"""The held-removals table: what the mass-removal breaker kept back, by internal row id only.

One hold per integration at most (the newest listing's); its rows name classes, or ``(class,
person)`` enrolments. This module only stores, lists and forgets holds; deciding to hold and
applying a hold is ``store.breaker``. A page that lists a held class or enrolment again releases it
here (called from ``store.roster.apply_batch``), so a hold only ever shrinks towards what is still gone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select

from store.db import utcnow
from store.models import HeldRemoval, RemovalHold

CHUNK = 500


@dataclass(frozen=True)
class Hold:
    id: int
    integration_id: int
    run_id: int
    generation: int
    reason: str
    held_at: datetime
    held_since: datetime


COLUMNS = (
    RemovalHold.id,
    RemovalHold.integration_id,
    RemovalHold.run_id,
    RemovalHold.generation,
    RemovalHold.reason,
    RemovalHold.held_at,
    RemovalHold.held_since,
)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def of_integration(connection: Connection, integration_id: int) -> Hold | None:
    row = connection.execute(select(*COLUMNS).where(RemovalHold.integration_id == integration_id)).one_or_none()
    return Hold(**row._mapping) if row is not None else None


def of_run(connection: Connection, run_id: int) -> Hold | None:
    row = connection.execute(select(*COLUMNS).where(RemovalHold.run_id == run_id)).one_or_none()
    return Hold(**row._mapping) if row is not None else None


def every(connection: Connection) -> list[Hold]:
    return [Hold(**row._mapping) for row in connection.execute(select(*COLUMNS).order_by(RemovalHold.integration_id))]


def items(connection: Connection, hold_id: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The held class ids and ``(class id, person id)`` enrolment keys."""
    rows = connection.execute(
        select(HeldRemoval.class_id, HeldRemoval.person_id).where(HeldRemoval.hold_id == hold_id)
    ).all()
    classes = sorted(class_id for class_id, person_id in rows if person_id is None)
    keys = sorted((class_id, person_id) for class_id, person_id in rows if person_id is not None)
    return classes, keys


def create(
    connection: Connection,
    *,
    integration_id: int,
    run_id: int,
    generation: int,
    reason: str,
    held_since: datetime | None,
    classes: Sequence[int],
    enrollments: Sequence[tuple[int, int]],
) -> int:
    """Store a hold and its removals inside the caller's (fenced) transaction; returns its id."""
    now = utcnow()
    hold_id = int(
        connection.execute(
            insert(RemovalHold)
            .values(
                integration_id=integration_id,
                run_id=run_id,
                generation=generation,
                reason=reason,
                held_at=now,
                held_since=held_since or now,
            )
            .returning(RemovalHold.id)
        ).scalar_one()
    )
    rows = [{"class_id": class_id, "person_id": None} for class_id in classes] + [
        {"class_id": class_id, "person_id": person_id} for class_id, person_id in enrollments
    ]
    for chunk in _chunks(rows):
        connection.execute(
            insert(HeldRemoval), [row | {"hold_id": hold_id, "integration_id": integration_id} for row in chunk]
        )
    return hold_id


def forget(connection: Connection, hold_id: int) -> bool:
    """Delete a hold and its removals; False when another caller got there first."""
    return bool(connection.execute(delete(RemovalHold).where(RemovalHold.id == hold_id)).rowcount)


def release_listed(
    connection: Connection, integration_id: int, classes: set[int], enrollments: set[tuple[int, int]]
) -> None:
    """Take what a page listed again out of the integration's hold (cheap when it has none)."""
    if not (classes or enrollments):
        return
    held = connection.execute(
        select(RemovalHold.id).where(RemovalHold.integration_id == integration_id)
    ).scalar_one_or_none()
    if held is None:
        return
    mine = HeldRemoval.hold_id == held
    for chunk in _chunks(sorted(classes)):
        held_classes = and_(HeldRemoval.person_id.is_(None), HeldRemoval.class_id.in_(chunk))
        connection.execute(delete(HeldRemoval).where(mine, held_classes))
    by_class: dict[int, list[int]] = defaultdict(list)
    for class_id, person_id in enrollments:
        by_class[class_id].append(person_id)
    for class_id, people in by_class.items():
        for chunk in _chunks(sorted(people)):
            held_enrollments = and_(HeldRemoval.class_id == class_id, HeldRemoval.person_id.in_(chunk))
            connection.execute(delete(HeldRemoval).where(mine, held_enrollments))
