"""The schedule in the database: which integrations are due, and the marks that keep a sync from being queued twice.

A sync is *queued* from the moment someone claims it (``queued_at`` set) until its run ends
(cleared): the scheduler's claim, an immediate sync after a link and a manual request all take
the same mark, so a request made while a sync is queued or running is coalesced into it.

The claim is one ``UPDATE .. WHERE due_at <= now AND queued_at IS NULL ..`` (a due time too far
ahead to believe counts as due: see ``CLOCK_SLACK``). On PostgreSQL the
candidate rows are picked ``FOR UPDATE SKIP LOCKED`` and the outer UPDATE re-checks every
condition, so several schedulers claiming at once never get the same row; on SQLite the
``BEGIN IMMEDIATE`` write lock (store.db) serialises them. A mark older than
``stale_seconds`` belongs to a message that was lost (a worker killed, retries exhausted): it is
claimed again, so no integration is stuck for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Engine, and_, func, literal, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from store.db import utcnow
from store.fence import SYNCABLE
from store.models import Integration

DEFAULT_INTERVAL = 86_400
"""``SYNC_INTERVAL_SECONDS``' default, for callers that do not pass the setting."""
CLOCK_SLACK = timedelta(hours=1)
"""How far apart the clocks of the machines that write due times may be before a due time is not believed.

Every due time is set to (a clock's) now + the integration's interval. One further from now than
that interval plus this slack was written by a clock that ran ahead: it is due at once, so a clock
set right does not leave the integration unsynced for as long as it was wrong."""


class _SecondsLater(FunctionElement[datetime]):
    """``moment`` + ``seconds`` (a column expression), in each dialect's own date arithmetic."""

    type = DateTime()
    inherit_cache = True


@compiles(_SecondsLater, "postgresql")
def _seconds_later_postgresql(element: _SecondsLater, compiler: Any, **kw: Any) -> str:
    moment, seconds = list(element.clauses)
    return f"({compiler.process(moment, **kw)} + ({compiler.process(seconds, **kw)}) * INTERVAL '1 second')"


@compiles(_SecondsLater, "sqlite")
def _seconds_later_sqlite(element: _SecondsLater, compiler: Any, **kw: Any) -> str:
    moment, seconds = list(element.clauses)
    # SQLite stores naive datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text; strftime keeps that order.
    shifted = f"{compiler.process(moment, **kw)}, '+' || ({compiler.process(seconds, **kw)}) || ' seconds'"
    return f"strftime('%Y-%m-%d %H:%M:%f', {shifted})"


def _believable_until(now: datetime, default_interval: int) -> ColumnElement[datetime]:
    """The furthest due time this row's own interval could have set from ``now`` (plus the clock slack)."""
    seconds = func.coalesce(Integration.sync_interval_seconds, literal(default_interval))
    return _SecondsLater(literal(now, DateTime()), seconds + int(CLOCK_SLACK.total_seconds()))


def _due(now: datetime, default_interval: int) -> ColumnElement[bool]:
    """Due now, or due so far ahead that a clock running ahead must have set it."""
    return and_(
        Integration.due_at.is_not(None),
        or_(Integration.due_at <= now, Integration.due_at > _believable_until(now, default_interval)),
    )


def overdue(due_at: datetime | None, interval_seconds: int, now: datetime) -> bool:
    """The Python twin of ``_due`` for one row already read: no due time, a past one, or an unbelievable one."""
    return due_at is None or due_at <= now or due_at > now + timedelta(seconds=interval_seconds) + CLOCK_SLACK


def _claimable(now: datetime, stale_seconds: int) -> ColumnElement[bool]:
    """Syncable (active, or blocked: its backoff is its due time), not queued (or queued so long ago that the
    message was lost), and not running."""
    return and_(
        Integration.status.in_(SYNCABLE),
        or_(Integration.queued_at.is_(None), Integration.queued_at < now - timedelta(seconds=stale_seconds)),
        or_(Integration.lease_expires_at.is_(None), Integration.lease_expires_at < now),
    )


def claim_due(
    engine: Engine,
    *,
    limit: int,
    stale_seconds: int,
    default_interval: int = DEFAULT_INTERVAL,
    now: datetime | None = None,
) -> list[int]:
    """Mark up to ``limit`` due integrations queued and return their ids (oldest due first).

    A due time further ahead than the row's interval (``default_interval`` when it has none of its
    own) plus ``CLOCK_SLACK`` counts as due now: a clock that ran ahead set it.
    """
    now = now or utcnow()
    due = and_(_due(now, default_interval), _claimable(now, stale_seconds))
    candidates = (
        select(Integration.id).where(due).order_by(Integration.due_at).limit(limit).with_for_update(skip_locked=True)
    )
    with engine.begin() as connection:
        ids = connection.execute(
            update(Integration)
            .where(Integration.id.in_(candidates.scalar_subquery()), due)
            .values(queued_at=now)
            .returning(Integration.id)
        ).scalars()
        return sorted(ids)


def mark_queued(engine: Engine, integration_id: int, *, stale_seconds: int, now: datetime | None = None) -> bool:
    """Claim one integration for an immediate sync; False when it is already queued, running or not active."""
    now = now or utcnow()
    with engine.begin() as connection:
        return (
            connection.execute(
                update(Integration)
                .where(Integration.id == integration_id, _claimable(now, stale_seconds))
                .values(queued_at=now)
            ).rowcount
            == 1
        )


class ManualRequest(StrEnum):
    """What became of a manual sync request."""

    QUEUED = "queued"
    COALESCED = "coalesced"  # one is queued or running already: that one will do
    COOLDOWN = "cooldown"  # asked too recently
    NOT_ACTIVE = "not_active"  # revoked, degraded, failed or suspended: nothing to sync (a blocked one is tried)


@dataclass(frozen=True)
class ManualVerdict:
    request: ManualRequest
    retry_after_seconds: int = 0


def request_manual(
    engine: Engine, integration_id: int, *, cooldown_seconds: int, stale_seconds: int, now: datetime | None = None
) -> ManualVerdict:
    """A person asks for a sync now: queued once per cooldown, coalesced with one already queued or running."""
    now = now or utcnow()
    with engine.begin() as connection:
        row = connection.execute(
            select(Integration.status, Integration.manual_sync_at)
            .where(Integration.id == integration_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise LookupError(integration_id)
        if row.status not in SYNCABLE:
            return ManualVerdict(ManualRequest.NOT_ACTIVE)
        if row.manual_sync_at is not None and row.manual_sync_at > now - timedelta(seconds=cooldown_seconds):
            left = row.manual_sync_at + timedelta(seconds=cooldown_seconds) - now
            return ManualVerdict(ManualRequest.COOLDOWN, max(1, int(left.total_seconds()) + 1))
        queued = connection.execute(
            update(Integration)
            .where(Integration.id == integration_id, _claimable(now, stale_seconds))
            .values(queued_at=now, manual_sync_at=now)
        ).rowcount
    return ManualVerdict(ManualRequest.QUEUED if queued == 1 else ManualRequest.COALESCED)


def unqueue(engine: Engine, integration_ids: list[int]) -> None:
    """Take the mark back from claims whose message could not be sent (the broker refused it)."""
    if integration_ids:
        with engine.begin() as connection:
            connection.execute(update(Integration).where(Integration.id.in_(integration_ids)).values(queued_at=None))


def run_ended(engine: Engine, integration_id: int, *, default_interval: int, now: datetime | None = None) -> None:
    """A sync's last attempt is over: clear the mark; a run that set no next due time gets one interval on.

    A good run set ``due_at`` itself (store.leases.release). One that ended otherwise (the provider's
    data broke the schema, retries exhausted) leaves it in the past (or where a clock that ran
    ahead put it), and would be claimed again at the very next tick: it waits one interval instead
    of looping. A run that found the lease held (``skipped:busy``: a redelivered message meeting
    the lease of the worker that died with it, or a sync still running) leaves the due time alone:
    the holder sets it when it ends, or, if it died, the first claim after its lease lapses runs
    the sync that never completed.
    """
    now = now or utcnow()
    with engine.begin() as connection:
        row = connection.execute(
            select(
                Integration.status, Integration.due_at, Integration.sync_interval_seconds, Integration.lease_expires_at
            )
            .where(Integration.id == integration_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            return
        values: dict[str, object] = {"queued_at": None}
        interval = row.sync_interval_seconds or default_interval
        leased = row.lease_expires_at is not None and row.lease_expires_at >= now
        if row.status in SYNCABLE and not leased and overdue(row.due_at, interval, now):
            values["due_at"] = now + timedelta(seconds=interval)
        connection.execute(update(Integration).where(Integration.id == integration_id).values(**values))


def set_interval(engine: Engine, integration_id: int, seconds: int | None) -> bool:
    """An integration's own interval (None: back to the default); False if there is no such integration."""
    with engine.begin() as connection:
        return (
            connection.execute(
                update(Integration).where(Integration.id == integration_id).values(sync_interval_seconds=seconds)
            ).rowcount
            == 1
        )


def change_interval(
    engine: Engine, integration_id: int, seconds: int | None, *, default_interval: int, now: datetime | None = None
) -> bool:
    """An integration's own interval (None: back to the default) that moves its next sync already scheduled.

    A scheduled due time is the last sync's end plus the interval then in force, so the new one
    is that moment plus the new interval (never before now): a shorter interval brings the next
    sync forward, a longer one puts it off. A sync that is due already (just linked, resumed,
    overdue) stays due. False if there is no such integration.
    """
    now = now or utcnow()
    with engine.begin() as connection:
        row = connection.execute(
            select(Integration.due_at, Integration.sync_interval_seconds)
            .where(Integration.id == integration_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            return False
        values: dict[str, object] = {"sync_interval_seconds": seconds}
        if row.due_at is not None and row.due_at > now:
            shift = (seconds or default_interval) - (row.sync_interval_seconds or default_interval)
            values["due_at"] = max(now, row.due_at + timedelta(seconds=shift))
        connection.execute(update(Integration).where(Integration.id == integration_id).values(**values))
    return True
