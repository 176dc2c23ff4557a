"""The per-integration lease: one sync of an integration at a time, and who may set its next due time.

Why apart from store.integrations: the lease is the sync's own bookkeeping (taken at its start,
renewed by every fenced write in store.fence, given back at its end), not a change of the
integration's lifecycle. The mass-removal breaker takes it too, to apply an approved hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)

from store import integrations, runs
from store.db import utcnow
from store.fence import SYNCABLE, Lease
from store.models import AuditEvent, Enrollment, Integration, Person, RemovalHold, SchoolClass, SyncRun


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
        if connection.dialect.name == "postgresql":
            return _take_and_open(connection, integration_id, lease, held)
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
    row = connection.execute(_TAKE, _taking_values(integration_id, lease)).one_or_none()
    return None if row is None else _taken(row)


def _taking_values(integration_id: int, lease: Lease) -> dict[str, Any]:
    now = utcnow()
    expires = now + timedelta(seconds=lease.seconds)
    return {"leased": integration_id, "taken_at": now, "taker": lease.owner, "expires": expires}


def _taken(row: Any) -> integrations.IntegrationState:
    return replace(integrations.state_of(row), roster_stored=bool(row.roster_stored), hold_stands=bool(row.hold))


def _taking_and_opening() -> Select[Any]:
    """``_TAKE`` and the run's opening (``store.runs``) as one PostgreSQL statement (``_TAKE_AND_OPEN``).

    The run is opened whether the lease was taken or not (a run that did not take it is closed as skipped),
    so the state comes back outer-joined to the run: its columns are null when the lease was busy. The run
    starts when the lease is taken (``taken_at``); its other columns get their defaults here, since SQLAlchemy
    fills a column's default only into a statement it executes itself, not into one nested in a ``WITH``.
    SQLite cannot nest an ``UPDATE`` in a ``WITH``: it sends the two statements, as before."""
    taken = _TAKE.cte("taken")
    opened_at = _param("taken_at", SyncRun.started_at)
    defaults = {column.name: column.default.arg for column in SyncRun.__table__.c if column.default is not None}
    started = {"integration_id": _param("leased", SyncRun.integration_id), "started_at": opened_at}
    opened = insert(SyncRun).values(defaults | started).returning(SyncRun.id).cte("opened")
    return select(opened.c.id.label("run_id"), *taken.c).select_from(opened.outerjoin(taken, true()))


_TAKE_AND_OPEN = _taking_and_opening()


def _take_and_open(
    connection: Connection, integration_id: int, lease: Lease, held: Held
) -> tuple[integrations.IntegrationState | None, int]:
    """``begin`` on PostgreSQL: one statement instead of two, in the same transaction, so the run's id is still
    known (``held``) before the commit: the round trip saved is the statement's, not the transaction's."""
    row = connection.execute(_TAKE_AND_OPEN, _taking_values(integration_id, lease)).one()
    held.run_id = int(row.run_id)
    return (None if row.id is None else _taken(row)), held.run_id


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
    if finished is not None and engine.dialect.name == "postgresql":
        _give_back_and_close(engine, values, finished)
        return
    with engine.begin() as connection:  # one statement: the lease given back, the due time set where it may be
        connection.execute(_GIVE_BACK[next_due is not None], values)
        if finished is not None:  # after the integration's row, in the order begin() takes them
            runs.close_run(connection, finished)


@cache
def _giving_back_and_closing(set_due: bool, counters: tuple[str, ...]) -> Insert:
    """``_GIVE_BACK``, ``runs.close_run``'s close and its audit event as one PostgreSQL statement, built once a shape.

    The statements of a ``WITH`` run in no set order; here each reads what the one before it returned, so
    they lock and write in the order of the three statements they replace: the integration's row first (the
    order ``begin`` takes them in), then the run, then its event (only for a run that this closed)."""
    given = _GIVE_BACK[set_due].returning(Integration.id).cte("given")
    after_given = select(func.count()).select_from(given).scalar_subquery() >= 0
    closed = runs.closing(counters).where(after_given).cte("closed")
    names = ("at", "actor", "action", "reason", "details")
    columns = AuditEvent.__table__.c
    event = select(closed.c.integration_id, *(bindparam(name, type_=columns[name].type) for name in names))
    return insert(AuditEvent).from_select(["integration_id", *names], event)


def _give_back_and_close(engine: Engine, values: dict[str, Any], finished: runs.Finished) -> None:
    """``release`` on PostgreSQL: its three statements sent as one, in autocommit (one statement is its own
    transaction, as durable as the commit of three): one round trip instead of five (``BEGIN``, three
    statements, ``COMMIT``). Safe to repeat like ``release`` (``abandon``): a run already closed is left
    as it is, unaudited."""
    counters = tuple(name for name in runs.RUN_COUNTERS if name in finished.counters)
    statement = _giving_back_and_closing("next_due" in values, counters)
    values = values | runs.close_values(finished) | runs.closed_event(finished)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(statement, values)
        connection.commit()  # sends nothing: the statement committed itself; said so that the release reads as one


def abandon(engine: Engine, integration_id: int, lease: Lease, run_id: int) -> None:
    """Give back what a sync cut short still holds: the lease if it is still this sync's, and its run closed
    as ``error`` if still open; no due time is set. A no-op for what ``begin`` never committed or ``release``
    already gave back, so it is safe to repeat after an interrupt landed anywhere (see ``Held``)."""
    release(engine, integration_id, lease, generation=0, next_due=None, finished=runs.Finished(run_id, "error", {}))
