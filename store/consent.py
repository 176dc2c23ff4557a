"""Roster rows a consent basis no longer covers, deleted at once (promise P8), not soft-deleted."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from store.models import Enrollment, Person


def purge_role(connection: Connection, integration_id: int, role: str) -> int:
    """Hard-delete every person of ``role`` in the integration, with their enrolments; returns rows deleted."""
    people = select(Person.id).where(Person.integration_id == integration_id, Person.role == role)
    removed = connection.execute(
        delete(Enrollment).where(Enrollment.integration_id == integration_id, Enrollment.person_id.in_(people))
    ).rowcount
    removed += connection.execute(
        delete(Person).where(Person.integration_id == integration_id, Person.role == role)
    ).rowcount
    return int(removed)
