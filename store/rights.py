"""Data-subject rights at the store: read back exactly what is stored (export), and remove it (erase).

Export reads every row that came through an integration, soft-deleted ones included, so that what
it says is stored is what is stored (P9). Erase deletes a person's rows and enrolments and writes a
suppression in one transaction (P8); that transaction locks the integrations it touches the way a
fenced sync write does, so a sync mid-page either wrote before it (and is erased) or after it (and
is refused by the suppression).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, select

from store import audit, outbox, suppressions
from store.integrations import UnknownIntegration
from store.models import Enrollment, Integration, LinkAttempt, Person, SchoolClass, SyncRun


class PersonNotFound(LookupError):
    def __init__(self) -> None:
        super().__init__("no person with that pseudonym is stored (nothing to export or erase)")


class StillActive(Exception):
    """An integration must be revoked (grant ended at the provider) before its record can be erased."""


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None


def _integration(connection: Connection, integration_id: int) -> Any:
    row = connection.execute(
        select(
            Integration.id,
            Integration.provider,
            Integration.tenant,
            Integration.linked_by,
            Integration.status,
            Integration.consent_basis,
            Integration.granted_scopes,
            Integration.created_at,
            Integration.status_changed_at,
        ).where(Integration.id == integration_id)
    ).one_or_none()
    if row is None:
        raise UnknownIntegration(integration_id)
    return row


def export_integration(engine: Engine, integration_id: int) -> dict[str, Any]:
    """Every stored row of one integration, soft-deleted rows with their ``removed_at``."""
    with engine.connect() as connection:
        row = _integration(connection, integration_id)
        return {
            "integration": {
                "id": row.id,
                "provider": row.provider,
                "tenant": row.tenant,
                "linked_by": row.linked_by,
                "status": row.status,
                "consent_basis": row.consent_basis or audit.NOT_RECORDED,
                "granted_scopes": sorted(row.granted_scopes.split()),
                "created_at": _when(row.created_at),
                "status_changed_at": _when(row.status_changed_at),
            },
            "classes": _exported_classes(connection, integration_id),
            "people": _exported_people(connection, integration_id),
            "enrollments": _exported_enrollments(connection, integration_id),
        }


def _exported_classes(connection: Connection, integration_id: int) -> list[dict[str, Any]]:
    return _exported(
        connection,
        select(
            SchoolClass.external_id, SchoolClass.name, SchoolClass.section, SchoolClass.state, SchoolClass.removed_at
        )
        .where(SchoolClass.integration_id == integration_id)
        .order_by(SchoolClass.id),
    )


def _exported_people(connection: Connection, integration_id: int) -> list[dict[str, Any]]:
    return _exported(
        connection,
        select(Person.pseudonym, Person.role, Person.display_name, Person.email_address, Person.removed_at)
        .where(Person.integration_id == integration_id)
        .order_by(Person.id),
    )


def _exported_enrollments(connection: Connection, integration_id: int) -> list[dict[str, Any]]:
    return _exported(
        connection,
        select(
            SchoolClass.external_id.label("class_external_id"), Person.pseudonym, Enrollment.role, Enrollment.removed_at
        )
        .join(SchoolClass, SchoolClass.id == Enrollment.class_id)
        .join(Person, Person.id == Enrollment.person_id)
        .where(Enrollment.integration_id == integration_id)
        .order_by(Enrollment.id),
    )


def _exported(connection: Connection, rows: Select[*tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Each row as its columns, named as selected (the export's keys), with ``removed_at`` as ISO text."""
    return [{**row._asdict(), "removed_at": _when(row.removed_at)} for row in connection.execute(rows)]


def export_person(engine: Engine, pseudonym: str) -> dict[str, Any]:
    """Everything stored about one pseudonym, in every integration that holds it."""
    with engine.connect() as connection:
        people = connection.execute(
            select(
                Person.id,
                Person.integration_id,
                Person.role,
                Person.display_name,
                Person.email_address,
                Person.removed_at,
                Integration.provider,
                Integration.tenant,
                Integration.consent_basis,
            )
            .join(Integration, Integration.id == Person.integration_id)
            .where(Person.pseudonym == pseudonym)
            .order_by(Person.id)
        ).all()
        if not people:
            raise PersonNotFound()
        records = []
        for person in people:
            enrollments = connection.execute(
                select(
                    SchoolClass.external_id,
                    SchoolClass.name,
                    SchoolClass.section,
                    Enrollment.role,
                    Enrollment.removed_at,
                )
                .join(SchoolClass, SchoolClass.id == Enrollment.class_id)
                .where(Enrollment.person_id == person.id)
                .order_by(Enrollment.id)
            ).all()
            records.append(
                {
                    "integration": {
                        "id": person.integration_id,
                        "provider": person.provider,
                        "tenant": person.tenant,
                        "consent_basis": person.consent_basis or audit.NOT_RECORDED,
                    },
                    "role": person.role,
                    "display_name": person.display_name,
                    "email_address": person.email_address,
                    "removed_at": _when(person.removed_at),
                    "enrollments": [
                        {
                            "class_external_id": e.external_id,
                            "class_name": e.name,
                            "section": e.section,
                            "role": e.role,
                            "removed_at": _when(e.removed_at),
                        }
                        for e in enrollments
                    ],
                }
            )
    return {"pseudonym": pseudonym, "records": records}


def integrations_of(export: dict[str, Any]) -> list[int]:
    """The integration ids a person export touched (for its audit event)."""
    return audit.ids_of([record["integration"]["id"] for record in export["records"]])


@dataclass(frozen=True)
class Holding:
    """One integration that holds a pseudonym, and whether that person is the account the grant belongs to."""

    integration_id: int
    provider: str
    tenant: str
    status: str
    owner: bool


def holdings(engine: Engine, pseudonym: str) -> list[Holding]:
    """Where a pseudonym is stored, and whether it is the account that granted the integration.

    A link records the pseudonym of the account that granted it (``integrations.account_key``, the
    same keyed HMAC a teacher's row carries), so the owner is recognised exactly. For an integration
    linked before accounts were recorded, the owner is inferred as the teacher present in every
    current class (a grant lists exactly the courses its account teaches); a co-teacher of every
    class then counts as owner too, which errs on the side of ending the grant.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Person.id,
                Person.role,
                Integration.id,
                Integration.provider,
                Integration.tenant,
                Integration.status,
                Integration.account_key,
            )
            .join(Integration, Integration.id == Person.integration_id)
            .where(Person.pseudonym == pseudonym)
            .order_by(Integration.id)
        ).all()
        found: dict[int, Holding] = {}
        for person_id, role, integration_id, provider, tenant, status, account_key in rows:
            if account_key is not None:
                owner = role == "teacher" and status != "revoked" and account_key == pseudonym
            else:
                owner = (
                    role == "teacher"
                    and status != "revoked"
                    and _teaches_every_class(connection, integration_id, person_id)
                )
            previous = found.get(integration_id)
            found[integration_id] = Holding(
                integration_id, provider, tenant, status, owner or (previous.owner if previous else False)
            )
    return list(found.values())


def _teaches_every_class(connection: Connection, integration_id: int, person_id: int) -> bool:
    current = connection.execute(
        select(func.count()).where(SchoolClass.integration_id == integration_id, SchoolClass.removed_at.is_(None))
    ).scalar_one()
    taught = connection.execute(
        select(func.count())
        .select_from(Enrollment)
        .join(SchoolClass, SchoolClass.id == Enrollment.class_id)
        .where(
            Enrollment.person_id == person_id,
            Enrollment.role == "teacher",
            Enrollment.removed_at.is_(None),
            SchoolClass.removed_at.is_(None),
        )
    ).scalar_one()
    return bool(current > 0 and taught == current)


@dataclass(frozen=True)
class Erasure:
    integrations: list[int]
    people: int
    enrollments: int


def erase_person(
    engine: Engine, pseudonym: str, *, scopes: set[tuple[str, str]], actor: str, revoked: list[int]
) -> Erasure:
    """Delete the person's rows and enrolments everywhere, suppress them in every (provider, tenant); one event.

    ``scopes`` are the (provider, tenant) pairs found before any owner's integration was revoked, so
    the suppression also covers integrations whose rows the revoke already purged.
    """
    with engine.begin() as connection:
        integration_ids = sorted(
            set(connection.execute(select(Person.integration_id).where(Person.pseudonym == pseudonym)).scalars())
        )
        for integration_id in integration_ids:  # the lock a fenced sync write takes, in id order
            connection.execute(select(Integration.id).where(Integration.id == integration_id).with_for_update())
        rows = connection.execute(
            select(Person.id, Integration.provider, Integration.tenant)
            .join(Integration, Integration.id == Person.integration_id)
            .where(Person.pseudonym == pseudonym)
        ).all()
        person_ids = [row.id for row in rows]
        every_scope = scopes | {(row.provider, row.tenant) for row in rows}
        enrollments = 0
        people = 0
        if person_ids:
            outbox.pause(connection, integration_ids)  # no member.removed: person.erased says it all
            enrollments = connection.execute(delete(Enrollment).where(Enrollment.person_id.in_(person_ids))).rowcount
            people = connection.execute(delete(Person).where(Person.id.in_(person_ids))).rowcount
            outbox.unpause(connection, integration_ids)
        outbox.erased(connection, pseudonym, integration_ids)
        for provider, tenant in sorted(every_scope):
            suppressions.add(connection, provider=provider, tenant=tenant, pseudonym=pseudonym, actor=actor)
        touched = audit.ids_of(integration_ids + revoked)
        audit.record(
            connection,
            action="erased",
            actor=actor,
            integration_id=touched[0] if len(touched) == 1 else None,
            details={
                "subject": "person",
                "pseudonym": pseudonym,
                "integrations": touched,
                "revoked_first": audit.ids_of(revoked),
                "people": people,
                "enrollments": enrollments,
                "suppressions": len(every_scope),
            },
        )
    return Erasure(touched, people, enrollments)


def delete_integration(connection: Connection, integration_id: int) -> int:
    """Remove an ended integration's own record and everything hanging off it; returns rows removed."""
    row = connection.execute(
        select(Integration.status).where(Integration.id == integration_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise UnknownIntegration(integration_id)
    if row.status != "revoked":  # failed and suspended ones hold a live grant too; degraded ones end as revoked
        raise StillActive(f"integration {integration_id} still holds a live grant: revoke it first")
    removed = 0
    outbox.pause(connection, [integration_id])
    for model in (Enrollment, Person, SchoolClass):
        removed += connection.execute(delete(model).where(model.integration_id == integration_id)).rowcount
    outbox.unpause(connection, [integration_id])
    outbox.purged(connection, integration_id)  # its record goes: so does everything the feed said of it
    removed += connection.execute(delete(SyncRun).where(SyncRun.integration_id == integration_id)).rowcount
    removed += connection.execute(delete(Integration).where(Integration.id == integration_id)).rowcount
    return removed


def delete_link_attempts(connection: Connection, linked_by: str) -> int:
    """Consents in flight started by an account whose data is being removed."""
    return int(connection.execute(delete(LinkAttempt).where(LinkAttempt.linked_by == linked_by)).rowcount)


def erase_integration(engine: Engine, integration_id: int, *, actor: str) -> int:
    """Erase an ended integration: its record, runs and any roster row left; one event. Returns rows removed."""
    with engine.begin() as connection:
        removed = delete_integration(connection, integration_id)
        audit.record(
            connection,
            action="erased",
            actor=actor,
            integration_id=integration_id,
            details={"subject": "integration", "integrations": [integration_id], "rows": removed},
        )
    return removed
