"""Provider revokes still to be confirmed: the sealed tokens of a grant we ended here, kept only until then.

Each row is retried (claimed like a due sync: ``UPDATE .. WHERE next_attempt_at <= now``) until
the provider answers; its deletion and the audit of the verdict are one transaction, so the last
copy of the token and the record of what became of it never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from store import audit
from store.db import utcnow
from store.models import PendingRevoke

PENDING_ACTION = "provider_revoke_pending"


@dataclass(frozen=True)
class Pending:
    id: int
    integration_id: int
    provider: str
    token_blob: bytes
    attempts: int


@dataclass(frozen=True)
class PendingSummary:
    """What an admin sees of a pending revoke: never the token."""

    id: int
    integration_id: int
    provider: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str


def keep(
    engine: Engine,
    *,
    integration_id: int,
    provider: str,
    token_blob: bytes,
    actor: str,
    error: str,
    retry_in_seconds: int,
) -> int:
    """Keep a grant whose provider revoke failed transiently, to be retried; audited as pending."""
    now = utcnow()
    with engine.begin() as connection:
        pending_id = connection.execute(
            insert(PendingRevoke)
            .values(
                integration_id=integration_id,
                provider=provider,
                token_blob=token_blob,
                attempts=1,
                created_at=now,
                next_attempt_at=now + timedelta(seconds=retry_in_seconds),
                last_error=error,
            )
            .returning(PendingRevoke.id)
        ).scalar_one()
        audit.record(connection, action=PENDING_ACTION, actor=actor, integration_id=integration_id, reason=error)
    return int(pending_id)


def claim_due(engine: Engine, *, limit: int, hold_seconds: int, now: datetime | None = None) -> list[int]:
    """Ids of revokes due for another attempt; each is pushed ``hold_seconds`` on so no one else takes it meanwhile."""
    now = now or utcnow()
    candidates = (
        select(PendingRevoke.id)
        .where(PendingRevoke.next_attempt_at <= now)
        .order_by(PendingRevoke.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with engine.begin() as connection:
        return sorted(
            connection.execute(
                update(PendingRevoke)
                .where(PendingRevoke.id.in_(candidates.scalar_subquery()), PendingRevoke.next_attempt_at <= now)
                .values(next_attempt_at=now + timedelta(seconds=hold_seconds))
                .returning(PendingRevoke.id)
            ).scalars()
        )


def load(engine: Engine, pending_id: int) -> Pending | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                PendingRevoke.id,
                PendingRevoke.integration_id,
                PendingRevoke.provider,
                PendingRevoke.token_blob,
                PendingRevoke.attempts,
            ).where(PendingRevoke.id == pending_id)
        ).one_or_none()
    return None if row is None else Pending(row.id, row.integration_id, row.provider, row.token_blob, row.attempts)


def settle(engine: Engine, pending_id: int, *, actor: str, action: str, reason: str = "") -> bool:
    """The provider answered (or we gave up): drop the token and audit the verdict; False if already settled."""
    with engine.begin() as connection:
        integration_id = connection.execute(
            delete(PendingRevoke).where(PendingRevoke.id == pending_id).returning(PendingRevoke.integration_id)
        ).scalar_one_or_none()
        if integration_id is None:
            return False
        audit.record(connection, action=action, actor=actor, integration_id=integration_id, reason=reason)
    return True


def retry_later(engine: Engine, pending_id: int, *, attempts: int, retry_in_seconds: int, error: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(PendingRevoke)
            .where(PendingRevoke.id == pending_id)
            .values(
                attempts=attempts,
                next_attempt_at=utcnow() + timedelta(seconds=retry_in_seconds),
                last_error=error,
            )
        )


def summaries(engine: Engine) -> list[PendingSummary]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                PendingRevoke.id,
                PendingRevoke.integration_id,
                PendingRevoke.provider,
                PendingRevoke.attempts,
                PendingRevoke.created_at,
                PendingRevoke.next_attempt_at,
                PendingRevoke.last_error,
            ).order_by(PendingRevoke.id)
        ).all()
    return [PendingSummary(**row._mapping) for row in rows]
