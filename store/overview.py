"""Read-only views for the admin API: integrations with counts and last run, runs, audit events.

Only what an admin needs to act, and never a token or a roster row's personal field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from store import roster
from store.audit import status_reason
from store.models import AuditEvent, Integration, SyncRun
from store.runs import RUN_COUNTERS, RunCounts


@dataclass(kw_only=True)
class RunView(RunCounts):
    """One run as the admin sees it: when, how it ended, and its counts (store.runs.RunCounts)."""

    id: int
    integration_id: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str


@dataclass(frozen=True)
class IntegrationView:
    id: int
    provider: str
    tenant: str
    linked_by: str
    status: str
    status_reason: str
    consent_basis: str | None
    sync_interval_seconds: int | None
    due_at: datetime | None
    queued: bool
    counts: roster.RosterCounts
    last_run: RunView | None


@dataclass(frozen=True)
class AuditView:
    id: int
    integration_id: int
    at: datetime
    actor: str
    action: str
    reason: str


AUDITED_ID_MAX = 2**31 - 1
"""``sync_runs`` and ``audit_events`` keep the integration id in a 32-bit column: a larger id has no rows there."""

RUN_COLUMNS = (
    SyncRun.id,
    SyncRun.integration_id,
    SyncRun.started_at,
    SyncRun.finished_at,
    SyncRun.outcome,
    *(SyncRun.__table__.c[counter] for counter in RUN_COUNTERS),
)


def integration_views(
    engine: Engine,
    *,
    integration_id: int | None = None,
    tenant: str | None = None,
    status: str | None = None,
    provider: str | None = None,
    linked_by: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[IntegrationView]:
    query = select(
        Integration.id,
        Integration.provider,
        Integration.tenant,
        Integration.linked_by,
        Integration.status,
        Integration.consent_basis,
        Integration.sync_interval_seconds,
        Integration.due_at,
        Integration.queued_at,
    ).order_by(Integration.id)
    if integration_id is not None:
        query = query.where(Integration.id == integration_id)
    if tenant is not None:
        query = query.where(Integration.tenant == tenant)
    if status is not None:
        query = query.where(Integration.status == status)
    if provider is not None:
        query = query.where(Integration.provider == provider)
    if linked_by is not None:
        query = query.where(Integration.linked_by == linked_by)
    views = []
    with engine.connect() as connection:
        for row in connection.execute(query.limit(limit).offset(offset)).all():
            last = connection.execute(
                select(*RUN_COLUMNS).where(SyncRun.integration_id == row.id).order_by(SyncRun.id.desc()).limit(1)
            ).one_or_none()
            views.append(
                IntegrationView(
                    id=row.id,
                    provider=row.provider,
                    tenant=row.tenant,
                    linked_by=row.linked_by,
                    status=row.status,
                    status_reason=status_reason(connection, row.id, row.status),
                    consent_basis=row.consent_basis,
                    sync_interval_seconds=row.sync_interval_seconds,
                    due_at=row.due_at,
                    queued=row.queued_at is not None,
                    counts=roster.counts(connection, row.id),
                    last_run=RunView(**last._mapping) if last is not None else None,
                )
            )
    return views


def tenant_integration_ids(engine: Engine, tenant: str) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(Integration.id).where(Integration.tenant == tenant).order_by(Integration.id)
            ).scalars()
        )


def runs(engine: Engine, *, integration_id: int | None = None, held: bool = False, limit: int = 100) -> list[RunView]:
    """Newest first; ``held``: runs not finished yet, i.e. holding their integration's lease right now."""
    query = select(*RUN_COLUMNS).order_by(SyncRun.id.desc()).limit(limit)
    if integration_id is not None and integration_id > AUDITED_ID_MAX:
        return []
    if integration_id is not None:
        query = query.where(SyncRun.integration_id == integration_id)
    if held:
        query = query.where(SyncRun.finished_at.is_(None))
    with engine.connect() as connection:
        return [RunView(**row._mapping) for row in connection.execute(query).all()]


def audit(engine: Engine, *, integration_id: int | None = None, limit: int = 100) -> list[AuditView]:
    query = (
        select(
            AuditEvent.id,
            AuditEvent.integration_id,
            AuditEvent.at,
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.reason,
        )
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    if integration_id is not None and integration_id > AUDITED_ID_MAX:
        return []
    if integration_id is not None:
        query = query.where(AuditEvent.integration_id == integration_id)
    with engine.connect() as connection:
        return [AuditView(**row._mapping) for row in connection.execute(query).all()]


def status_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """(provider, status) -> integrations, for the metrics endpoint."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Integration.provider, Integration.status, func.count()).group_by(
                Integration.provider, Integration.status
            )
        ).all()
    return {(row[0], row[1]): int(row[2]) for row in rows}


def queue_counts(engine: Engine) -> tuple[int, int]:
    """(queued or running syncs, unfinished runs)."""
    with engine.connect() as connection:
        queued = connection.execute(
            select(func.count()).select_from(Integration).where(Integration.queued_at.is_not(None))
        ).scalar_one()
        running = connection.execute(
            select(func.count()).select_from(SyncRun).where(SyncRun.finished_at.is_(None))
        ).scalar_one()
    return int(queued), int(running)


@dataclass(frozen=True)
class RunActivity:
    """One run of the recent past, for the console's charts: when, how it ended, whose provider."""

    started_at: datetime
    outcome: str | None
    provider: str


def activity_since(engine: Engine, since: datetime) -> list[RunActivity]:
    """Runs started at or after ``since``, oldest first (a day of them, for the home page's charts)."""
    query = (
        select(SyncRun.started_at, SyncRun.outcome, Integration.provider)
        .join(Integration, Integration.id == SyncRun.integration_id)
        .where(SyncRun.started_at >= since)
        .order_by(SyncRun.id)
    )
    with engine.connect() as connection:
        return [RunActivity(row.started_at, row.outcome, row.provider) for row in connection.execute(query).all()]


def manual_sync_at(engine: Engine, integration_id: int) -> datetime | None:
    """When a person last asked this integration for a sync (the cooldown runs from there)."""
    with engine.connect() as connection:
        return connection.execute(
            select(Integration.manual_sync_at).where(Integration.id == integration_id)
        ).scalar_one_or_none()
