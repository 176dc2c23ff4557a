"""Integration lifecycle: its state, tokens and cursor, end (revoke / degrade + purge), fail and resume, summaries.

Its neighbours hold the rest of an integration's story: the link that creates it (store.links), the
sync's lease (store.leases), the
``blocked`` wait (store.blocking), run records and their counts (store.runs), the audit log
(store.audit). Every status change bumps ``generation`` inside the same transaction as the purge, so a sync
that started before it can never write again (store.fence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, select, update

from store import audit, roster
from store.blocking import blocked_since
from store.db import utcnow
from store.fence import SYNCABLE, Fenced, fenced
from store.models import Integration
from store.retention import deletion_pending
from store.summaries import IntegrationSummary as IntegrationSummary  # read by `status` without the ORM
from store.summaries import summaries as summaries


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
    sync_cursor: str | None = None  # a small JSON document written by the sync (sync.cursor.CursorState)
    consent_basis: str | None = None  # school | parent; None: no recorded basis, so no student syncs
    sync_interval_seconds: int | None = None  # its own interval; None: the SYNC_INTERVAL_SECONDS default
    status_changed_at: datetime | None = None  # when it entered its status (a block's grace counts from here)
    # Read with the sync's lease (store.leases.begin), None when not read: whether any class, person,
    # enrolment or removal hold of it is stored (a first sync's bulk path), and whether a removal hold stands
    # (only a sync's sweep, under the lease, creates one: none at the start is none until this sync's sweep).
    roster_stored: bool | None = None
    hold_stands: bool | None = None


def load(engine: Engine, integration_id: int) -> IntegrationState:
    with engine.connect() as connection:
        return read_state(connection, integration_id)


STATE_COLUMNS = (
    Integration.id,
    Integration.provider,
    Integration.tenant,
    Integration.status,
    Integration.generation,
    Integration.granted_scopes,
    Integration.token_blob,
    Integration.sync_cursor,
    Integration.consent_basis,
    Integration.sync_interval_seconds,
    Integration.status_changed_at,
)
"""The columns of an ``IntegrationState``: read by ``read_state``, or returned by the sync's lease (store.leases)."""


def read_state(connection: Connection, integration_id: int) -> IntegrationState:
    """``load`` inside the caller's transaction."""
    row = connection.execute(select(*STATE_COLUMNS).where(Integration.id == integration_id)).one_or_none()
    if row is None:
        raise UnknownIntegration(integration_id)
    return state_of(row)


def state_of(row: Any) -> IntegrationState:
    """An ``IntegrationState`` from a row of ``STATE_COLUMNS``."""
    return IntegrationState(
        id=row.id,
        provider=row.provider,
        tenant=row.tenant,
        status=row.status,
        generation=row.generation,
        granted_scopes=frozenset(row.granted_scopes.split()),
        token_blob=row.token_blob,
        sync_cursor=row.sync_cursor,
        consent_basis=row.consent_basis,
        sync_interval_seconds=row.sync_interval_seconds,
        status_changed_at=row.status_changed_at,
    )


def store_tokens(engine: Engine, integration_id: int, generation: int, token_blob: bytes) -> None:
    """Persist rotated tokens, fenced: a revoked integration never gets its tokens back."""
    with fenced(engine, integration_id, generation) as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(token_blob=token_blob))


def store_cursor(connection: Connection, integration_id: int, cursor: str | None) -> None:
    """Save the sync cursor inside the caller's fenced transaction, with the writes it stands for."""
    connection.execute(update(Integration).where(Integration.id == integration_id).values(sync_cursor=cursor))


@dataclass(frozen=True)
class Ended:
    """An integration this call ended: the status it had and the tokens it held (to revoke at the provider)."""

    previous_status: str
    token_blob: bytes | None


def end_integration(
    engine: Engine,
    integration_id: int,
    *,
    status: str,
    actor: str,
    reason: str,
    expected_generation: int | None = None,
    blocked_before: datetime | None = None,
) -> Ended | None:
    """Revoke or degrade: bump the generation, drop the tokens, purge the roster, audit; one transaction.

    Returns None when the integration already has that status (a second, concurrent revoke is a
    no-op that writes nothing: the row lock makes it wait for the first and then see its result).
    ``expected_generation``: a sync's verdict, only on the generation it ran on, still syncable (else
    ``Fenced``). ``blocked_before``: the retention job's, only on one still blocked since before then (else
    None: a sync unblocked it meanwhile).
    """
    now = utcnow()
    with engine.begin() as connection:
        row = connection.execute(
            select(Integration.token_blob, Integration.status, Integration.generation, Integration.status_changed_at)
            .where(Integration.id == integration_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownIntegration(integration_id)
        if expected_generation is not None and (row.status not in SYNCABLE or row.generation != expected_generation):
            raise Fenced(integration_id)  # a sync's verdict on a generation that is already over: not ours to end
        if row.status == status or (blocked_before is not None and not blocked_since(row, blocked_before)):
            return None
        # The purge first: it forgets the integration's earlier events, and the new status must not be one of them.
        roster.purge(connection, integration_id)
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
        audit.record(connection, action=status, actor=actor, integration_id=integration_id, reason=reason)
        audit.record(connection, action="purged", actor=actor, integration_id=integration_id)
    return Ended(previous_status=row.status, token_blob=cast(bytes | None, row.token_blob))


def mark_failed(
    engine: Engine, integration_id: int, generation: int, *, actor: str, reason: str, drop_tokens: bool = False
) -> bool:
    """Stop syncing an integration that needs a person (e.g. its token cannot be decrypted any more).

    Not retried and not purged: the roster it holds is still the school's, only stale, and an admin
    re-links (which makes it ``active`` again) or revokes it. Fenced like every sync-side change;
    returns False when the generation is already over. ``drop_tokens``: the stored tokens are dead
    (rotated out, their successor revoked), so none is kept and ``resume`` refuses: only a re-link helps.
    """
    dropped: dict[str, Any] = {"token_blob": None, "sync_cursor": None} if drop_tokens else {}
    with engine.begin() as connection:
        changed = connection.execute(
            update(Integration)
            .where(
                Integration.id == integration_id,
                Integration.status == "active",
                Integration.generation == generation,
            )
            .values(
                status="failed",
                generation=Integration.generation + 1,
                status_changed_at=utcnow(),
                due_at=None,
                lease_owner=None,
                lease_expires_at=None,
                **dropped,
            )
        ).rowcount
        if changed == 1:
            audit.record(connection, action="failed", actor=actor, integration_id=integration_id, reason=reason)
    return changed == 1


def resume_failed(engine: Engine, integration_id: int, *, actor: str) -> bool:
    """Make a ``failed`` integration ``active`` again and due now, keeping its tokens and roster.

    Why: ``failed`` also ends a sync whose retries ran out (a provider outage longer than the retry
    caps); once the provider is back, an admin resumes it here instead of asking the teacher to consent
    again. Only a failed integration that still holds tokens resumes; one whose token no key opens fails
    again on its next sync (after ``keys rotate`` with the right key it syncs). Audited ``resumed``.
    Never one of an account marked deleted (its integrations are suspended; this is the second lock).
    """
    now = utcnow()
    with engine.begin() as connection:
        changed = connection.execute(
            update(Integration)
            .where(
                Integration.id == integration_id,
                Integration.status == "failed",
                Integration.token_blob.is_not(None),
                ~deletion_pending(Integration.linked_by),
            )
            .values(status="active", status_changed_at=now, due_at=now, lease_owner=None, lease_expires_at=None)
        ).rowcount
        if changed == 1:
            audit.record(
                connection, action="resumed", actor=actor, integration_id=integration_id, reason="resumed by an admin"
            )
    return changed == 1


def syncable_ids(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(Integration.id).where(Integration.status.in_(SYNCABLE)).order_by(Integration.id)
            ).scalars()
        )
