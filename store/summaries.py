"""Every integration with its status, why, and its current counts: what ``rostersync status`` shows.

Read with SQLAlchemy Core on name-only tables (``table()``/``column()``), not the ORM models: ``status`` is
the command an operator runs most, and the ORM with the declarative models cost about a third of its start
(BENCHMARKS.md, "Start-up"). The names are the models' own (store.models); a test holds each of them there.
The values read are ids, short strings and counts, which need no column types to come back right.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, column, func, select, table

INTEGRATIONS = table("integrations", column("id"), column("provider"), column("tenant"), column("status"))
CLASSES = table("classes", column("integration_id"), column("removed_at"))
PEOPLE = table("people", column("integration_id"), column("role"), column("removed_at"))
AUDIT_EVENTS = table("audit_events", column("id"), column("integration_id"), column("action"), column("reason"))
REMOVAL_HOLDS = table("removal_holds", column("id"))
LIGHT_TABLES = (INTEGRATIONS, CLASSES, PEOPLE, AUDIT_EVENTS, REMOVAL_HOLDS)


@dataclass(frozen=True)
class RosterCounts:
    classes: int
    teachers: int
    students: int


@dataclass(frozen=True)
class IntegrationSummary:
    id: int
    provider: str
    tenant: str
    status: str
    status_reason: str  # why it is not active (from the audit log), empty when active
    counts: RosterCounts


def summaries(engine: Engine) -> list[IntegrationSummary]:
    """Every integration in id order, each with the reason of its status and its current roster counts."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(INTEGRATIONS.c.id, INTEGRATIONS.c.provider, INTEGRATIONS.c.tenant, INTEGRATIONS.c.status).order_by(
                INTEGRATIONS.c.id
            )
        ).all()
        return [
            IntegrationSummary(
                int(row.id),
                row.provider,
                row.tenant,
                row.status,
                status_reason(connection, int(row.id), row.status),
                counts(connection, int(row.id)),
            )
            for row in rows
        ]


def status_reason(connection: Connection, integration_id: int, status: str) -> str:
    """The reason recorded with the latest change to ``status`` (safe text written by our own code).

    The audit log is where a status's why is kept, so the admin screens read it from here.
    """
    if status == "active":
        return ""
    reason = connection.execute(
        select(AUDIT_EVENTS.c.reason)
        .where(AUDIT_EVENTS.c.integration_id == integration_id, AUDIT_EVENTS.c.action == status)
        .order_by(AUDIT_EVENTS.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return str(reason or "")


def counts(connection: Connection, integration_id: int) -> RosterCounts:
    """Current (not soft-deleted) classes, teachers and students of one integration."""
    classes = connection.execute(
        select(func.count()).where(CLASSES.c.integration_id == integration_id, CLASSES.c.removed_at.is_(None))
    ).scalar_one()
    by_role: dict[str, int] = dict(
        connection.execute(
            select(PEOPLE.c.role, func.count())
            .where(PEOPLE.c.integration_id == integration_id, PEOPLE.c.removed_at.is_(None))
            .group_by(PEOPLE.c.role)
        ).all()
    )
    return RosterCounts(classes=int(classes), teachers=by_role.get("teacher", 0), students=by_role.get("student", 0))


def any_held(engine: Engine) -> bool:
    """Whether the mass-removal breaker holds anything: only then does ``status`` read the holds (ORM path)."""
    with engine.connect() as connection:
        return connection.execute(select(REMOVAL_HOLDS.c.id).limit(1)).first() is not None
