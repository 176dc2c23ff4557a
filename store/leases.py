"""The per-integration lease: one sync of an integration at a time, and who may set its next due time.

Why apart from store.integrations: the lease is the sync's own bookkeeping (taken at its start,
renewed by every fenced write in store.fence, given back at its end), not a change of the
integration's lifecycle. The mass-removal breaker takes it too, to apply an approved hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, or_, update

from store import integrations, runs
from store.db import utcnow
from store.fence import SYNCABLE, Lease
from store.models import Integration


def acquire(engine: Engine, integration_id: int, lease: Lease) -> integrations.IntegrationState | None:
    """Take the per-integration lease so one sync runs at a time; None if busy or not syncable (``SYNCABLE``:
    active, or blocked, which only a sync can find lifted)."""
    with engine.begin() as connection:
        return _take(connection, integration_id, lease)


def begin(engine: Engine, integration_id: int, lease: Lease) -> tuple[integrations.IntegrationState | None, int]:
    """``acquire`` and the sync's run record (``store.runs``) in one transaction: the state as the lease found
    it (None: busy or not syncable, a run to be closed as skipped) and the run's id.

    One transaction, not three: a teacher link's sync is two provider round trips, and each transaction
    (a pool check-out, its ping, BEGIN, COMMIT) was a visible share of its time.
    """
    with engine.begin() as connection:
        state = _take(connection, integration_id, lease)
        return state, runs.open_run(connection, integration_id)


def _take(connection: Connection, integration_id: int, lease: Lease) -> integrations.IntegrationState | None:
    now = utcnow()
    taken = connection.execute(
        update(Integration)
        .where(
            Integration.id == integration_id,
            Integration.status.in_(SYNCABLE),
            or_(Integration.lease_expires_at.is_(None), Integration.lease_expires_at < now),
        )
        .values(lease_owner=lease.owner, lease_expires_at=now + timedelta(seconds=lease.seconds))
    ).rowcount
    return integrations.read_state(connection, integration_id) if taken == 1 else None


def release(
    engine: Engine,
    integration_id: int,
    lease: Lease,
    generation: int,
    next_due: datetime | None,
    *,
    finished: runs.Finished | None = None,
) -> None:
    """Give the lease back; the next due time is set only on the generation the sync ran on, still active.

    A revoke that landed after the sync's last write must not be followed by a due time: a revoked
    (or failed, or re-linked) integration is never scheduled by a sync that belonged to its past.
    ``finished``: the sync's run, closed and audited in the same transaction (``store.runs.close_run``).
    """
    with engine.begin() as connection:
        owned = and_(Integration.id == integration_id, Integration.lease_owner == lease.owner)
        connection.execute(update(Integration).where(owned).values(lease_owner=None, lease_expires_at=None))
        if next_due is not None:
            connection.execute(
                update(Integration)
                .where(
                    Integration.id == integration_id,
                    Integration.status == "active",
                    Integration.generation == generation,
                )
                .values(due_at=next_due)
            )
        if finished is not None:  # after the integration's row, in the order begin() takes them
            runs.close_run(connection, finished)
