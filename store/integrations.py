"""Integration lifecycle: link, tokens and cursor, end (revoke / degrade + purge), fail and resume, summaries.

Its neighbours hold the rest of an integration's story: the sync's lease (store.leases), the
``blocked`` wait (store.blocking), run records and their counts (store.runs), the audit log
(store.audit). Every status change bumps ``generation`` inside the same transaction as the purge, so a sync
that started before it can never write again (store.fence).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from store import audit, roster
from store.blocking import blocked_since
from store.db import utcnow
from store.fence import SYNCABLE, Fenced, fenced
from store.models import AccountDeletion, Integration


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


@dataclass(frozen=True)
class IntegrationSummary:
    id: int
    provider: str
    tenant: str
    status: str
    status_reason: str  # why it is not active (from the audit log), empty when active
    counts: roster.RosterCounts


@dataclass(frozen=True)
class SavedLink:
    """What a link did: the grant it replaced (for the caller to revoke at the provider) and to what."""

    integration_id: int
    replaced_token_blob: bytes | None
    ended_other_account: bool  # the previous link was another provider account: ended and purged here


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


class AccountTaken(Exception):
    """The provider account is linked by another platform teacher of the tenant; nothing was written."""

    def __init__(self, owner_id: int) -> None:
        super().__init__(f"the provider account is linked by integration {owner_id}")
        self.owner_id = owner_id


def _account_owner(
    connection: Connection, *, provider: str, tenant: str, account_key: str, linked_by: str
) -> int | None:
    """The integration of another platform id that holds a grant of this account in this tenant, if any.

    One provider account belongs to one platform teacher per tenant at a time (issue 18): a second
    teacher's link of it is refused, never merged (it would sync one teacher's classes to another).
    On PostgreSQL a transaction lock on the account serialises two such links racing; SQLite's
    ``BEGIN IMMEDIATE`` already does.
    """
    if connection.dialect.name == "postgresql":
        digest = hashlib.sha256(json.dumps([provider, tenant, account_key]).encode()).digest()
        connection.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))
    return connection.execute(
        select(Integration.id)
        .where(
            Integration.provider == provider,
            Integration.tenant == tenant,
            Integration.account_key == account_key,
            Integration.linked_by != linked_by,
            Integration.token_blob.is_not(None),
        )
        .limit(1)
    ).scalar_one_or_none()


def save_link(
    engine: Engine,
    *,
    provider: str,
    tenant: str,
    linked_by: str,
    account_key: str,
    scopes: frozenset[str],
    token_blob: bytes,
    actor: str,
    consent_basis: str | None = None,
) -> SavedLink:
    """Create the integration, or re-link it under a new generation; safe when two links race.

    ``INSERT .. ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same key and then
    yields to it, so the second link becomes a re-link of the row the first one created instead of
    a uniqueness error. A re-link to another provider account first ends the old link as a revoke
    would (purged, audited); a re-link to the same account keeps its roster. Either way the grant it
    replaces is handed back, so that no grant we no longer keep stays alive at the provider.
    Raises ``AccountTaken`` when another platform teacher of the tenant holds the account.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "status": "active",
        "account_key": account_key,
        "granted_scopes": " ".join(sorted(scopes)),
        "token_blob": token_blob,
        "sync_cursor": None,
        "due_at": now,
        "status_changed_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "consent_basis": consent_basis,
    }
    with engine.begin() as connection:
        owner = _account_owner(
            connection, provider=provider, tenant=tenant, account_key=account_key, linked_by=linked_by
        )
        if owner is not None:
            raise AccountTaken(owner)
        created = connection.execute(
            _insert(connection)(Integration)
            .values(provider=provider, tenant=tenant, linked_by=linked_by, generation=1, created_at=now, **values)
            .on_conflict_do_nothing(index_elements=["provider", "tenant", "linked_by"])
            .returning(Integration.id)
        ).scalar_one_or_none()
        if created is not None:
            audit.record(connection, action="linked", actor=actor, integration_id=created)
            return SavedLink(created, None, ended_other_account=False)
        return _relink(
            connection,
            provider=provider,
            tenant=tenant,
            linked_by=linked_by,
            account_key=account_key,
            actor=actor,
            values=values,
        )


def _relink(
    connection: Connection,
    *,
    provider: str,
    tenant: str,
    linked_by: str,
    account_key: str,
    actor: str,
    values: dict[str, Any],
) -> SavedLink:
    """The teacher's integration exists: a new generation; a link to another account first ends the old one."""
    row = connection.execute(
        select(Integration.id, Integration.status, Integration.account_key, Integration.token_blob)
        .where(Integration.provider == provider, Integration.tenant == tenant, Integration.linked_by == linked_by)
        .with_for_update()
    ).one()
    # An unknown previous account (linked before accounts were recorded) counts as another one:
    # keeping a stranger's roster would be the worse mistake, and a re-sync restores our own.
    other_account = row.status != "revoked" and row.account_key != account_key
    if other_account:
        roster.purge(connection, row.id)
        audit.record(
            connection,
            action="revoked",
            actor=actor,
            integration_id=row.id,
            reason="re-linked to another provider account",
        )
        audit.record(connection, action="purged", actor=actor, integration_id=row.id)
    connection.execute(
        update(Integration).where(Integration.id == row.id).values(generation=Integration.generation + 1, **values)
    )
    audit.record(connection, action="relinked", actor=actor, integration_id=row.id)
    return SavedLink(row.id, cast(bytes | None, row.token_blob), ended_other_account=other_account)


ACCOUNT_DELETED_REFUSAL = (
    "this platform account is marked deleted: it cannot link until its data is purged at the retention "
    "deadline (a person who comes back gets a new platform account); nothing was stored"
)


def _deletion_pending(account: Any) -> Any:
    """SQL: the account is marked deleted and its data not purged yet (the rule of ``store.retention``)."""
    return (
        select(AccountDeletion.id)
        .where(AccountDeletion.account == account, AccountDeletion.purged_at.is_(None))
        .exists()
    )


def link_refusal(engine: Engine, linked_by: str) -> str | None:
    """Why this platform account may not link now (its deletion is pending), or None.

    Checked when a link completes, before the code is exchanged, so a refused link makes no token.
    """
    with engine.connect() as connection:
        pending = connection.execute(select(_deletion_pending(linked_by))).scalar_one()
    return ACCOUNT_DELETED_REFUSAL if pending else None


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
                Integration.sync_cursor,
                Integration.consent_basis,
                Integration.sync_interval_seconds,
                Integration.status_changed_at,
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
                ~_deletion_pending(Integration.linked_by),
            )
            .values(status="active", status_changed_at=now, due_at=now, lease_owner=None, lease_expires_at=None)
        ).rowcount
        if changed == 1:
            audit.record(
                connection, action="resumed", actor=actor, integration_id=integration_id, reason="resumed by an admin"
            )
    return changed == 1


def summaries(engine: Engine) -> list[IntegrationSummary]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Integration.id, Integration.provider, Integration.tenant, Integration.status).order_by(
                Integration.id
            )
        ).all()
        return [
            IntegrationSummary(
                row.id,
                row.provider,
                row.tenant,
                row.status,
                audit.status_reason(connection, row.id, row.status),
                roster.counts(connection, row.id),
            )
            for row in rows
        ]


def syncable_ids(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(Integration.id).where(Integration.status.in_(SYNCABLE)).order_by(Integration.id)
            ).scalars()
        )
