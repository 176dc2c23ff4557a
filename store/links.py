"""Consents in flight: each ``state`` is stored hashed, with its PKCE verifier encrypted, and used once.

A state is finished only by the kind of client that began it (issue 18): one begun in a browser
(``/link``) carries the hash of that browser's cookie value, and the callback must present the same
value; one begun headless (``rostersync link start``) carries none, and only ``link complete``
finishes it. Spent nonces of signed ``/link`` requests live here too, until their signature expires.

The link a consent ends in is saved here as well (``save_link``): a new integration, or a re-link of
the teacher's under a new generation; one provider account per platform teacher of a tenant
(``AccountTaken``); none for an account whose deletion is pending (``link_refusal``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from store import audit, roster
from store.db import utcnow
from store.models import Integration, LinkAttempt, LinkNonce
from store.retention import deletion_pending


class LinkStateError(Exception):
    """The callback's state is unknown, already used, expired or not this client's; nothing is linked."""


class WrongFinisher(LinkStateError):
    """The state was begun by another client (browser, headless, provider path); it is spent all the same."""


@dataclass(frozen=True)
class PendingLink:
    provider: str
    tenant: str
    linked_by: str
    verifier_blob: bytes
    consent_basis: str | None = None


@dataclass(frozen=True)
class Finisher:
    """Who presents a callback: a browser (its cookie value, None when it sent none) or the command line."""

    browser: bool
    cookie: str | None = None
    provider: str | None = None  # the provider the callback's path names (the web's), None: any


HEADLESS = Finisher(browser=False)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def remember(
    engine: Engine,
    *,
    state: str,
    provider: str,
    tenant: str,
    linked_by: str,
    verifier_blob: bytes,
    consent_basis: str | None = None,
    browser_cookie: str | None = None,
) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(LinkAttempt).values(
                state_hash=_hash(state),
                provider=provider,
                tenant=tenant,
                linked_by=linked_by,
                verifier_blob=verifier_blob,
                created_at=utcnow(),
                consent_basis=consent_basis,
                browser_hash=_hash(browser_cookie) if browser_cookie is not None else None,
            )
        )


def _refusal(attempt: Any, finisher: Finisher) -> str | None:
    """Why this finisher may not use this state (None: it may); checked after the state is spent."""
    if finisher.provider is not None and attempt.provider != finisher.provider:
        return f"this callback is not a {finisher.provider} link: start again from the platform"
    if attempt.browser_hash is None:
        if finisher.browser:
            return "this link was started by `rostersync link start`: finish it with `rostersync link complete`"
        return None
    if not finisher.browser:
        return "this link was started in a browser: finish it in that browser"
    if finisher.cookie is None or _hash(finisher.cookie) != attempt.browser_hash:
        return "this link was started in another browser (or its cookie is gone): start again from the platform"
    return None


def claim(engine: Engine, state: str, ttl_seconds: int, finisher: Finisher = HEADLESS) -> PendingLink:
    """Mark the state used and return what it was issued for; a second claim of the same state fails.

    A state presented by the wrong client (another browser, a headless finisher, another provider's
    callback) is spent all the same: whoever began it starts again, and nobody can retry it.
    """
    now = utcnow()
    with engine.begin() as connection:
        attempt = connection.execute(
            select(
                LinkAttempt.id,
                LinkAttempt.provider,
                LinkAttempt.tenant,
                LinkAttempt.linked_by,
                LinkAttempt.verifier_blob,
                LinkAttempt.created_at,
                LinkAttempt.used_at,
                LinkAttempt.consent_basis,
                LinkAttempt.browser_hash,
            )
            .where(LinkAttempt.state_hash == _hash(state))
            .with_for_update()
        ).one_or_none()
        if attempt is None:
            raise LinkStateError("unknown state: this callback was not issued by rostersync")
        if attempt.used_at is not None:
            raise LinkStateError("state already used: start the link again")
        if attempt.created_at < now - timedelta(seconds=ttl_seconds):
            raise LinkStateError("state expired: start the link again")
        connection.execute(update(LinkAttempt).where(LinkAttempt.id == attempt.id).values(used_at=now))
        refused = _refusal(attempt, finisher)
        pending = PendingLink(
            attempt.provider, attempt.tenant, attempt.linked_by, attempt.verifier_blob, attempt.consent_basis
        )
    if refused is not None:
        raise WrongFinisher(refused)
    return pending


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def spend_nonce(engine: Engine, nonce: str, expires_at: datetime) -> bool:
    """Spend a signed request's nonce: True the first time, False on every replay.

    The row lives as long as the signature it came with (a later use is refused as expired anyway);
    spent nonces past that are dropped here, so the table holds at most ten minutes of links.
    """
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(delete(LinkNonce).where(LinkNonce.expires_at < now))
        spent = connection.execute(
            _insert(connection)(LinkNonce)
            .values(nonce_hash=_hash(nonce), expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["nonce_hash"])
            .returning(LinkNonce.nonce_hash)
        ).scalar_one_or_none()
    return spent is not None


@dataclass(frozen=True)
class SavedLink:
    """What a link did: the grant it replaced (for the caller to revoke at the provider) and to what."""

    integration_id: int
    replaced_token_blob: bytes | None
    ended_other_account: bool  # the previous link was another provider account: ended and purged here


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


def link_refusal(engine: Engine, linked_by: str) -> str | None:
    """Why this platform account may not link now (its deletion is pending), or None.

    Checked when a link completes, before the code is exchanged, so a refused link makes no token.
    """
    with engine.connect() as connection:
        pending = connection.execute(select(deletion_pending(linked_by))).scalar_one()
    return ACCOUNT_DELETED_REFUSAL if pending else None
