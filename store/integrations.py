"""Integration lifecycle: link, lease, tokens, end (revoke / degrade + purge), runs and audit.

Every status change bumps ``generation`` inside the same transaction as the purge, so a sync
that started before it can never write again (store.fence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Engine, func, insert, or_, select, update

from store import audit, roster
from store.db import utcnow
from store.fence import Fenced, fenced
from store.models import AuditEvent, Integration, SyncRun


class UnknownIntegration(LookupError):
    def __init__(self, integration_id: int) -> None:
        super().__init__(f"no integration with id {integration_id}")
        self.integration_id = integration_id


@dataclass(frozen=True)
class IntegrationState:
    """What a sync needs to know about its integration when it starts."""

    id: int
    provider: str
    tenant: str
    status: str
    generation: int
    granted_scopes: frozenset[str]
    token_blob: bytes | None


@dataclass(frozen=True)
class IntegrationSummary:
    id: int
    provider: str
    tenant: str
    status: str
    counts: roster.RosterCounts


def record_audit(connection: Connection, integration_id: int, actor: str, action: str, reason: str = "") -> None:
    connection.execute(
        insert(AuditEvent).values(integration_id=integration_id, at=utcnow(), actor=actor, action=action, reason=reason)
    )


def save_link(
    engine: Engine, *, provider: str, tenant: str, linked_by: str, scopes: frozenset[str], token_blob: bytes, actor: str
) -> int:
    """Create the integration, or bring a revoked one back to life under a new generation."""
    now = utcnow()
    values = {
        "status": "active",
        "granted_scopes": " ".join(sorted(scopes)),
        "token_blob": token_blob,
        "sync_cursor": None,
        "due_at": now,
        "status_changed_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    with engine.begin() as connection:
        existing = connection.execute(
            select(Integration.id)
            .where(Integration.provider == provider, Integration.tenant == tenant, Integration.linked_by == linked_by)
            .with_for_update()
        ).scalar_one_or_none()
        if existing is None:
            integration_id = connection.execute(
                insert(Integration)
                .values(provider=provider, tenant=tenant, linked_by=linked_by, generation=1, created_at=now, **values)
                .returning(Integration.id)
            ).scalar_one()
            record_audit(connection, integration_id, actor, "linked")
        else:
            integration_id = existing
            connection.execute(
                update(Integration)
                .where(Integration.id == existing)
                .values(generation=Integration.generation + 1, **values)
            )
            record_audit(connection, integration_id, actor, "relinked")
    return integration_id


def load(engine: Engine, integration_id: int) -> IntegrationState:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                Integration.id,
                Integration.provider,
                Integration.tenant,
                Integration.status,
                Integration.generation,
                Integration.granted_scopes,
                Integration.token_blob,
            ).where(Integration.id == integration_id)
        ).one_or_none()
    if row is None:
        raise UnknownIntegration(integration_id)
    return IntegrationState(
        id=row.id,
        provider=row.provider,
        tenant=row.tenant,
        status=row.status,
        generation=row.generation,
        granted_scopes=frozenset(row.granted_scopes.split()),
        token_blob=row.token_blob,
    )


def acquire_lease(engine: Engine, integration_id: int, owner: str, seconds: int) -> IntegrationState | None:
    """Take the per-integration lease so one sync runs at a time; None if busy or no longer active."""
    now = utcnow()
    with engine.begin() as connection:
        taken = connection.execute(
            update(Integration)
            .where(
                Integration.id == integration_id,
                Integration.status == "active",
                or_(Integration.lease_expires_at.is_(None), Integration.lease_expires_at < now),
            )
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
        ).rowcount
    return load(engine, integration_id) if taken == 1 else None


def release_lease(engine: Engine, integration_id: int, owner: str, next_due: datetime | None) -> None:
    with engine.begin() as connection:
        values: dict[str, object] = {"lease_owner": None, "lease_expires_at": None}
        if next_due is not None:
            values["due_at"] = next_due
        connection.execute(
            update(Integration)
            .where(Integration.id == integration_id, Integration.lease_owner == owner)
            .values(**values)
        )


def store_tokens(engine: Engine, integration_id: int, generation: int, token_blob: bytes) -> None:
    """Persist rotated tokens, fenced: a revoked integration never gets its tokens back."""
    with fenced(engine, integration_id, generation) as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(token_blob=token_blob))


def end_integration(
    engine: Engine, integration_id: int, *, status: str, actor: str, reason: str, expected_generation: int | None = None
) -> bytes | None:
    """Revoke or degrade: bump the generation, drop the tokens, purge the roster, audit; one transaction.

    Returns the token blob it removed, so the caller can revoke the grant at the provider too.
    """
    now = utcnow()
    with engine.begin() as connection:
        row = connection.execute(
            select(Integration.token_blob, Integration.status, Integration.generation)
            .where(Integration.id == integration_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownIntegration(integration_id)
        if expected_generation is not None and (row.status != "active" or row.generation != expected_generation):
            raise Fenced(integration_id)  # a sync's verdict on a generation that is already over: not ours to end
        connection.execute(
            update(Integration)
            .where(Integration.id == integration_id)
            .values(
                status=status,
                generation=Integration.generation + 1,
                token_blob=None,
                sync_cursor=None,
                status_changed_at=now,
                due_at=None,
            )
        )
        roster.purge(connection, integration_id)
        record_audit(connection, integration_id, actor, status, reason)
        record_audit(connection, integration_id, actor, "purged")
    return cast(bytes | None, row.token_blob)


def summaries(engine: Engine) -> list[IntegrationSummary]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Integration.id, Integration.provider, Integration.tenant, Integration.status).order_by(
                Integration.id
            )
        ).all()
        return [
            IntegrationSummary(row.id, row.provider, row.tenant, row.status, roster.counts(connection, row.id))
            for row in rows
        ]


def syncable_ids(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(Integration.id).where(Integration.status == "active").order_by(Integration.id)
            ).scalars()
        )


def start_run(engine: Engine, integration_id: int) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(SyncRun).values(integration_id=integration_id, started_at=utcnow()).returning(SyncRun.id)
            ).scalar_one()
        )


def finish_run(engine: Engine, run_id: int, outcome: str, **counters: int) -> None:
    """Close the run and audit it (counts and outcome only) in the same transaction."""
    with engine.begin() as connection:
        integration_id = connection.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id)
            .values(finished_at=utcnow(), outcome=outcome, **counters)
            .returning(SyncRun.integration_id)
        ).scalar_one_or_none()
        if integration_id is not None:
            audit.record(
                connection,
                action="synced",
                actor="system:sync",
                integration_id=integration_id,
                details={"outcome": audit.word(outcome), **counters},
            )


def audit_actions(engine: Engine, integration_id: int) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(AuditEvent.action).where(AuditEvent.integration_id == integration_id).order_by(AuditEvent.id)
            ).scalars()
        )


def run_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(SyncRun)).scalar_one())
