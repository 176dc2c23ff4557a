"""A school's reversible setting (``AccessBlocked``): the integration waits as ``blocked``, then resumes or ends.

Why a module of its own: ``blocked`` is the one status a sync may enter and leave by itself (nothing
ended, tokens and roster kept), with a wait that grows and a grace (BLOCKED_GRACE_DAYS) after which the
sync ends it like a revoke (store.integrations.end_integration). Every write here is fenced like a sync's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from store import audit
from store.db import utcnow
from store.fence import Lease, fenced
from store.models import Integration


def blocked_since(row: Any, before: datetime) -> bool:
    return bool(row.status == "blocked" and row.status_changed_at is not None and row.status_changed_at <= before)


def blocked_wait(blocked_for: timedelta, *, first_seconds: int, longest_seconds: int) -> timedelta:
    """How long a blocked integration waits before it is tried again: as long as it has been blocked,
    at least ``first_seconds`` and at most ``longest_seconds`` (its sync interval).

    Why this shape: waiting as long as the block already lasted doubles the wait at every try (15 min,
    15, 30, 1 h, ...) without a counter to store, so a block lifted soon is seen soon and a long one
    costs the provider one call per interval, the normal schedule.
    """
    seconds = min(max(blocked_for.total_seconds(), first_seconds), max(first_seconds, longest_seconds))
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class BlockedWait:
    """The schedule of a blocked integration (``settings``: BLOCKED_RETRY_MIN_SECONDS, BLOCKED_GRACE_DAYS)."""

    first_seconds: int
    longest_seconds: int  # the integration's sync interval
    grace_days: int


def mark_blocked(
    engine: Engine, integration_id: int, generation: int, lease: Lease, *, actor: str, reason: str, wait: BlockedWait
) -> datetime:
    """The provider refuses us for now by a setting the school controls: ``blocked``, due again after a wait.

    Tokens, roster, cursor and generation are kept (nothing ended: the same grant reads again once the
    setting is switched back). ``status_changed_at`` is set only on entering, so the grace counts from the
    first refusal; the due time never passes the grace's end, where the next sync ends it like a revoke.
    Audited ``blocked`` with the admin-worded ``reason`` on entering (or when the reason changes).
    Fenced like every sync write (raises ``Fenced``); returns the next due time.
    """
    now = utcnow()
    with fenced(engine, integration_id, generation, lease) as connection:
        row = connection.execute(
            select(Integration.status, Integration.status_changed_at).where(Integration.id == integration_id)
        ).one()
        since = row.status_changed_at if blocked_since(row, now) else now
        pause = blocked_wait(now - since, first_seconds=wait.first_seconds, longest_seconds=wait.longest_seconds)
        due = min(now + pause, since + timedelta(days=wait.grace_days))
        values: dict[str, Any] = {"status": "blocked", "due_at": due}
        if row.status != "blocked":
            values["status_changed_at"] = now
        connection.execute(update(Integration).where(Integration.id == integration_id).values(**values))
        if row.status != "blocked" or audit.status_reason(connection, integration_id, "blocked") != reason:
            audit.record(connection, action="blocked", actor=actor, integration_id=integration_id, reason=reason)
    return due


UNBLOCKED_REASON = "the provider answered again: the setting that blocked it was switched back"


def unblock(engine: Engine, integration_id: int, generation: int, lease: Lease, *, actor: str) -> bool:
    """A sync of a blocked integration got through: ``active`` again, audited ``unblocked``; fenced.

    Called before the lease is released, so that the release sets the normal due time. False when it
    was not blocked (nothing to do).
    """
    with fenced(engine, integration_id, generation, lease) as connection:
        changed = connection.execute(
            update(Integration)
            .where(Integration.id == integration_id, Integration.status == "blocked")
            .values(status="active", status_changed_at=utcnow())
        ).rowcount
        if changed == 1:
            audit.record(
                connection, action="unblocked", actor=actor, integration_id=integration_id, reason=UNBLOCKED_REASON
            )
    return changed == 1


def grace_ended_reason(engine: Engine, integration_id: int, grace_days: int) -> str:
    """Why a block that outlasted BLOCKED_GRACE_DAYS was ended: the block's own reason, and the rule."""
    with engine.connect() as connection:
        why = audit.status_reason(connection, integration_id, "blocked")
    return (
        f"blocked for more than {grace_days} days (BLOCKED_GRACE_DAYS) and never switched back ({why}); "
        "ended like a revoke: roster purged, grant revoked at the provider where it can be; link it again to sync"
    )
