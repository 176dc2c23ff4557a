"""Consents in flight: each ``state`` is stored hashed, with its PKCE verifier encrypted, and used once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, insert, select, update

from store.db import utcnow
from store.models import LinkAttempt


class LinkStateError(Exception):
    """The callback's state is unknown, already used or expired; nothing is written."""


@dataclass(frozen=True)
class PendingLink:
    provider: str
    tenant: str
    linked_by: str
    verifier_blob: bytes
    consent_basis: str | None = None


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def remember(
    engine: Engine,
    *,
    state: str,
    provider: str,
    tenant: str,
    linked_by: str,
    verifier_blob: bytes,
    consent_basis: str | None = None,
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
            )
        )


def claim(engine: Engine, state: str, ttl_seconds: int) -> PendingLink:
    """Mark the state used and return what it was issued for; a second claim of the same state fails."""
    now = utcnow()
    with engine.begin() as connection:
        row = connection.execute(
            select(
                LinkAttempt.id,
                LinkAttempt.provider,
                LinkAttempt.tenant,
                LinkAttempt.linked_by,
                LinkAttempt.verifier_blob,
                LinkAttempt.created_at,
                LinkAttempt.used_at,
                LinkAttempt.consent_basis,
            )
            .where(LinkAttempt.state_hash == _hash(state))
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise LinkStateError("unknown state: this callback was not issued by `rostersync link start`")
        attempt = row
        if attempt.used_at is not None:
            raise LinkStateError("state already used: start the link again")
        if attempt.created_at < now - timedelta(seconds=ttl_seconds):
            raise LinkStateError("state expired: start the link again")
        connection.execute(update(LinkAttempt).where(LinkAttempt.id == attempt.id).values(used_at=now))
        return PendingLink(
            attempt.provider, attempt.tenant, attempt.linked_by, attempt.verifier_blob, attempt.consent_basis
        )
