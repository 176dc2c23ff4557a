"""Suppressions: an erased person stays out of every later sync of that provider and tenant until lifted.

An entry holds the pseudonym only (P8): the same keyed pseudonym a sync computes for that person in
that tenant, so the sync can refuse the record without ever knowing who it was. The check runs inside
each fenced write transaction (store.roster), so a sync that was mid-page when the erase committed
cannot bring the person back either.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from store.db import one_of, utcnow
from store.models import Integration, Suppression

CHUNK = 500


@dataclass(frozen=True)
class Entry:
    provider: str
    tenant: str
    pseudonym: str
    created_at: datetime
    created_by: str


def add(connection: Connection, *, provider: str, tenant: str, pseudonym: str, actor: str) -> None:
    """Idempotent: suppressing someone already suppressed keeps the first entry."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    connection.execute(
        insert(Suppression)
        .values(provider=provider, tenant=tenant, pseudonym=pseudonym, created_at=utcnow(), created_by=actor)
        .on_conflict_do_nothing(index_elements=["provider", "tenant", "pseudonym"])
    )


def lift(connection: Connection, pseudonym: str) -> tuple[int, list[int]]:
    """Remove every entry for the pseudonym; returns how many there were and the integrations they covered."""
    covered = connection.execute(
        select(Integration.id)
        .join(
            Suppression,
            (Integration.provider == Suppression.provider) & (Integration.tenant == Suppression.tenant),
        )
        .where(Suppression.pseudonym == pseudonym)
    ).scalars()
    integration_ids = sorted(set(covered))
    lifted = int(connection.execute(delete(Suppression).where(Suppression.pseudonym == pseudonym)).rowcount)
    return lifted, integration_ids


def suppressed(connection: Connection, integration_id: int, pseudonyms: Collection[str]) -> set[str]:
    """Which of these pseudonyms are suppressed in the integration's provider and tenant.

    Asked of every page with all its people, and nearly always answered "none": one small query says
    whether the tenant has any entry before the pseudonyms are sent, 500 a statement (one statement
    of 26,000 bound values cost a change page more than its writes).
    """
    if not pseudonyms:
        return set()
    of_integration = {"integration_id": integration_id}
    if connection.execute(_ANY_ENTRY, of_integration).first() is None:
        return set()
    found: set[str] = set()
    wanted = sorted(pseudonyms)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        listed = _ENTRIES.where(one_of(connection, Suppression.pseudonym, chunk))
        found.update(connection.execute(listed, of_integration).scalars())
    return found


_ENTRIES = (
    select(Suppression.pseudonym)
    .join(Integration, (Integration.provider == Suppression.provider) & (Integration.tenant == Suppression.tenant))
    .where(Integration.id == bindparam("integration_id"))
)
_ANY_ENTRY = _ENTRIES.limit(1)
"""Built once, the integration a parameter: every page asks ``suppressed``, and building the statement (and its
cache key) each time cost a teacher link's re-sync more than running it."""


def entries(engine: Engine) -> list[Entry]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Suppression.provider,
                Suppression.tenant,
                Suppression.pseudonym,
                Suppression.created_at,
                Suppression.created_by,
            ).order_by(Suppression.id)
        ).all()
    return [Entry(row.provider, row.tenant, row.pseudonym, row.created_at, row.created_by) for row in rows]
