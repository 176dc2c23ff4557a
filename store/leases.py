"""The per-integration lease: one sync of an integration at a time, and who may set its next due time.

Why apart from store.integrations: the lease is the sync's own bookkeeping (taken at its start,
renewed by every fenced write in store.fence, given back at its end), not a change of the
integration's lifecycle. The mass-removal breaker takes it too, to apply an approved hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Update, and_, bindparam, case, exists, or_, update

from store import integrations, runs
from store.db import utcnow
from store.fence import SYNCABLE, Lease
from store.models import Enrollment, Integration, Person, RemovalHold, SchoolClass


def acquire(engine: Engine, integration_id: int, lease: Lease) -> integrations.IntegrationState | None:
    """Take the per-integration lease so one sync runs at a time; None if busy or not syncable (``SYNCABLE``:
    active, or blocked, which only a sync can find lifted)."""
    with engine.begin() as connection:
        return _take(connection, integration_id, lease)


@dataclass
class Held:
    """What a sync's ``begin`` may have committed and whether ``release`` has given it back.

    Why: a worker's shutdown notice and its time limit are asynchronous exceptions (dramatiq raises
    them in the sync's thread); one can land at any line, after ``begin``'s commit but before the
    sync's ``try``, or inside ``release`` itself. ``run_id`` is set inside begin's transaction, before
    its commit, so whatever it committed can still be found and given back (``abandon``).
    """

    run_id: int | None = None
    given_back: bool = False


def begin(
    engine: Engine, integration_id: int, lease: Lease, held: Held
) -> tuple[integrations.IntegrationState | None, int]:
    """``acquire`` and the sync's run record (``store.runs``) in one transaction: the state as the lease found
    it (None: busy or not syncable, a run to be closed as skipped) and the run's id, also kept in ``held``.

    One transaction, not three: a teacher link's sync is two provider round trips, and each transaction
    (a pool check-out, its ping, BEGIN, COMMIT) was a visible share of its time.
    """
    with engine.begin() as connection:
        state = _take(connection, integration_id, lease)
        held.run_id = runs.open_run(connection, integration_id)
        return state, held.run_id


def _param(name: str, column: Any) -> Any:
    """A parameter of a statement built once, typed as the column it is compared with or written to."""
    return bindparam(name, type_=column.type)


def _stored() -> tuple[Any, Any]:
    """Whether any roster row or removal hold of the integration is stored, and whether a hold is.

    Compared with the integration's id as a value (``leased``), not correlated: SQLite names ``RETURNING``'s
    columns unqualified, and a correlated ``id`` would then be the subquery's own table's."""
    leased = _param("leased", Integration.id)
    hold = exists().where(RemovalHold.integration_id == leased)
    roster = (exists().where(model.integration_id == leased) for model in (SchoolClass, Person, Enrollment))
    return or_(*roster, hold), hold


def _taking() -> Update:
    """The lease's statement, built once (``_TAKE``): its values are given at each execution."""
    roster_stored, hold_stands = _stored()
    expired = Integration.lease_expires_at < _param("taken_at", Integration.lease_expires_at)
    return (
        update(Integration)
        .where(
            Integration.id == _param("leased", Integration.id),
            Integration.status.in_(SYNCABLE),
            or_(Integration.lease_expires_at.is_(None), expired),
        )
        .values(
            lease_owner=_param("taker", Integration.lease_owner),
            lease_expires_at=_param("expires", Integration.lease_expires_at),
        )
        .returning(*integrations.STATE_COLUMNS, roster_stored.label("roster_stored"), hold_stands.label("hold"))
    )


_TAKE = _taking()
"""Why built once: a sync takes the lease once, but building this statement (its ``EXISTS`` subqueries, its
returned columns, and SQLAlchemy's cache key of all that) cost more of a teacher link's sync than sending it."""


def _take(connection: Connection, integration_id: int, lease: Lease) -> integrations.IntegrationState | None:
    """One statement: the lease taken, and the state returned with what the sync asks of its stored rows at once
    (``IntegrationState.roster_stored``, ``hold_stands``), instead of a statement (or a transaction) each."""
    now = utcnow()
    values = {"leased": integration_id, "taken_at": now, "taker": lease.owner}
    row = connection.execute(_TAKE, values | {"expires": now + timedelta(seconds=lease.seconds)}).one_or_none()
    if row is None:
        return None
    return replace(integrations.state_of(row), roster_stored=bool(row.roster_stored), hold_stands=bool(row.hold))


def _giving_back(set_due: bool) -> Update:
    """The release's statement, built once per shape (``_GIVE_BACK``): with the next due time or without."""
    mine = Integration.lease_owner == _param("giver", Integration.lease_owner)
    values: dict[str, Any] = {
        "lease_owner": case((mine, None), else_=Integration.lease_owner),
        "lease_expires_at": case((mine, None), else_=Integration.lease_expires_at),
    }
    touched = mine
    if set_due:
        due_here = and_(
            Integration.status == "active", Integration.generation == _param("ran_on", Integration.generation)
        )
        values["due_at"] = case((due_here, _param("next_due", Integration.due_at)), else_=Integration.due_at)
        touched = or_(mine, due_here)
    return update(Integration).where(Integration.id == _param("released", Integration.id), touched).values(**values)


_GIVE_BACK = {set_due: _giving_back(set_due) for set_due in (False, True)}


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
    values: dict[str, Any] = {"released": integration_id, "giver": lease.owner}
    if next_due is not None:
        values |= {"ran_on": generation, "next_due": next_due}
    with engine.begin() as connection:  # one statement: the lease given back, the due time set where it may be
        connection.execute(_GIVE_BACK[next_due is not None], values)
        if finished is not None:  # after the integration's row, in the order begin() takes them
            runs.close_run(connection, finished)


def abandon(engine: Engine, integration_id: int, lease: Lease, run_id: int) -> None:
    """Give back what a sync cut short still holds: the lease if it is still this sync's, and its run closed
    as ``error`` if still open; no due time is set. A no-op for what ``begin`` never committed or ``release``
    already gave back, so it is safe to repeat after an interrupt landed anywhere (see ``Held``)."""
    release(engine, integration_id, lease, generation=0, next_due=None, finished=runs.Finished(run_id, "error", {}))
