"""The mass-removal breaker: a sweep that would remove too much of an integration is held for an admin.

The worst a roster sync can do is read a partial listing as "everyone left". A sweep runs only
after a listing completed without error (worker.sync); on top of that, this module holds the sweep
instead of applying it when it would remove more than ``share`` of the integration's current
people or classes while touching at least ``min_people`` people, and always when it would remove
every current person or every current class (an empty listing where there were members).

A change-feed page is judged by the same rule (``apply_changes``): one that would be held is rolled
back and the sync runs a full listing instead, whose sweep is applied or held as above.

A held sweep is stored (store.holds, ids only), one per integration: a newer full listing
supersedes it and decides afresh, so the same removals are never held twice side by side. An
admin approves (the held removals are applied, fenced: a revoke, a re-link or a running sync wins)
or drops it; each step is audited with ids and counts only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, distinct, func, select

from mappers.records import ChangeBatch
from store import audit, holds, integrations, roster
from store.db import utcnow
from store.fence import Fenced, Lease, fenced
from store.models import Enrollment, Integration, Person, SchoolClass, SyncRun

ACTIVE_SYNC = "a sync of integration {id} is running; try again when it has finished"


@dataclass(frozen=True)
class Limits:
    """From ``BREAKER_SHARE`` and ``BREAKER_MIN_PEOPLE``."""

    share: float
    min_people: int


class HoldError(Exception):
    """An approve or drop that cannot be done; the text is ours (ids and fixed words), safe to show.

    ``kind``: ``unknown`` (no such run), ``not_held`` (the run held nothing), ``gone`` (no longer
    held), ``superseded`` (a newer listing holds instead), ``busy`` (a sync is running), ``fenced``
    (revoked, re-linked or failed since the hold).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def verdict(plan: roster.Removals, limits: Limits) -> str | None:
    """Why this sweep must be held (``empty`` or ``share``), or None to apply it."""
    if plan.empty:
        return None
    if (plan.active_people and plan.people >= plan.active_people) or (
        plan.active_classes and len(plan.classes) >= plan.active_classes
    ):
        return "empty"
    if plan.touched < limits.min_people:
        return None
    if plan.people > limits.share * plan.active_people or len(plan.classes) > limits.share * plan.active_classes:
        return "share"
    return None


@dataclass(frozen=True)
class Swept:
    removed: int
    held: str | None  # the verdict when held


def sweep(
    connection: Connection, *, integration_id: int, run_id: int, generation: int, plan: roster.Removals, limits: Limits
) -> Swept:
    """Apply a complete listing's removals, or hold them; inside the sync's fenced sweep transaction.

    An older hold of the integration is superseded: this listing is newer, so its plan is the one
    that counts (held again, with the older hold's ``held_since``, if it is still too much).
    """
    previous = holds.of_integration(connection, integration_id)
    if previous is not None:
        holds.forget(connection, previous.id)
        audit.record(
            connection,
            action="removals_superseded",
            actor="system:sync",
            integration_id=integration_id,
            details={"run": previous.run_id, "by_run": run_id},
        )
    reason = verdict(plan, limits)
    if reason is None:
        return Swept(roster.apply_removals(connection, integration_id, plan), None)
    holds.create(
        connection,
        integration_id=integration_id,
        run_id=run_id,
        generation=generation,
        reason=reason,
        held_since=previous.held_since if previous is not None else None,
        classes=plan.classes,
        enrollments=[(class_id, person_id) for _, class_id, person_id in plan.enrollments],
    )
    audit.record(
        connection,
        action="removals_held",
        actor="system:sync",
        integration_id=integration_id,
        details={"run": run_id, "reason": reason, **_counts(plan)},
    )
    return Swept(0, reason)


def _counts(plan: roster.Removals) -> dict[str, audit.Detail]:
    return {
        "classes": len(plan.classes),
        "enrollments": len(plan.enrollments),
        "people": plan.people,
        "current_classes": plan.active_classes,
        "current_people": plan.active_people,
    }


class ChangesTooLarge(Exception):
    """A change-feed page would remove too much: its transaction is rolled back, a full listing decides."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"a change page would remove too much ({reason}); a full listing decides instead")
        self.reason = reason


def apply_changes(connection: Connection, integration_id: int, changes: ChangeBatch, limits: Limits) -> int:
    """``roster.apply_changes`` under the breaker, inside the sync's fenced page transaction.

    A page whose deletions the breaker would hold raises ``ChangesTooLarge`` after applying it, so
    the caller's transaction (the page and its cursor) rolls back; the sync then runs a full listing,
    whose sweep is the one that is applied or held. Pages without deletions cost nothing extra.
    """
    if not (changes.deleted_classes or changes.deleted_people or changes.replaced_classes):
        return roster.apply_changes(connection, integration_id, changes)
    started = utcnow()
    current = _current(connection, integration_id)
    written = roster.apply_changes(connection, integration_id, changes)
    gone = roster.Removals(
        classes=list(
            connection.execute(
                select(SchoolClass.id).where(
                    SchoolClass.integration_id == integration_id, SchoolClass.removed_at >= started
                )
            ).scalars()
        ),
        enrollments=[],
        people=_removed_since(connection, integration_id, Person, started),
        touched=int(
            connection.execute(
                select(func.count(distinct(Enrollment.person_id))).where(
                    Enrollment.integration_id == integration_id, Enrollment.removed_at >= started
                )
            ).scalar_one()
        ),
        active_classes=current[0],
        active_people=current[1],
    )
    reason = verdict(gone, limits) if gone.classes or gone.people or gone.touched else None
    if reason is not None:
        raise ChangesTooLarge(reason)
    return written


def _current(connection: Connection, integration_id: int) -> tuple[int, int]:
    counts = [
        connection.execute(
            select(func.count()).where(model.integration_id == integration_id, model.removed_at.is_(None))
        ).scalar_one()
        for model in (SchoolClass, Person)
    ]
    return int(counts[0]), int(counts[1])


def _removed_since(connection: Connection, integration_id: int, model: type[Person], since: datetime) -> int:
    query = select(func.count()).where(model.integration_id == integration_id, model.removed_at >= since)
    return int(connection.execute(query).scalar_one())


@dataclass(frozen=True)
class HeldView:
    """One open hold as an admin sees it: counts of what approving would remove now."""

    integration_id: int
    provider: str
    run_id: int
    reason: str
    held_at: datetime
    held_since: datetime
    classes: int
    enrollments: int
    people: int
    current_classes: int
    current_people: int

    def as_json(self) -> dict[str, object]:
        return self.__dict__ | {
            "held_at": self.held_at.isoformat() + "Z",
            "held_since": self.held_since.isoformat() + "Z",
        }


def pending(engine: Engine) -> list[HeldView]:
    """Every open hold, by integration."""
    views = []
    with engine.connect() as connection:
        for hold in holds.every(connection):
            classes, keys = holds.items(connection, hold.id)
            plan = roster.impact(connection, hold.integration_id, classes, keys)
            provider = connection.execute(
                select(Integration.provider).where(Integration.id == hold.integration_id)
            ).scalar_one()
            views.append(
                HeldView(
                    integration_id=hold.integration_id,
                    provider=provider,
                    run_id=hold.run_id,
                    reason=hold.reason,
                    held_at=hold.held_at,
                    held_since=hold.held_since,
                    classes=len(plan.classes),
                    enrollments=len(plan.enrollments),
                    people=plan.people,
                    current_classes=plan.active_classes,
                    current_people=plan.active_people,
                )
            )
    return views


@dataclass(frozen=True)
class Decision:
    integration_id: int
    run_id: int
    removed: int  # rows soft-deleted (approve); 0 for a drop


def _missing(connection: Connection, run_id: int) -> HoldError:
    """Why run ``run_id`` has no open hold, in words an admin can act on."""
    query = select(SyncRun.integration_id, SyncRun.outcome).where(SyncRun.id == run_id)
    run = connection.execute(query).one_or_none()
    if run is None:
        return HoldError(f"no sync run with id {run_id}", "unknown")
    if run.outcome != "held":
        return HoldError(f"run {run_id} held no removals (it ended {audit.word(run.outcome)})", "not_held")
    newer = holds.of_integration(connection, run.integration_id)
    if newer is not None:
        return HoldError(
            f"run {run_id}'s hold was superseded by run {newer.run_id}, a newer listing of integration "
            f"{run.integration_id}; see `rostersync held list`",
            "superseded",
        )
    return HoldError(
        f"run {run_id}'s held removals are no longer held (approved, dropped, superseded by a newer listing, "
        f"or gone with a revoke); see `rostersync audit --integration {run.integration_id}`",
        "gone",
    )


def approve(engine: Engine, run_id: int, *, actor: str, lease_seconds: int) -> Decision:
    """Apply exactly the removals run ``run_id`` held (minus what was listed again since), fenced.

    The approval takes the integration's lease like a sync (so it never interleaves with one) and
    writes in a fenced transaction on the generation the hold was made on: a revoke, re-link or
    failure since then wins and nothing is removed.
    """
    with engine.connect() as connection:
        hold = holds.of_run(connection, run_id)
        if hold is None:
            raise _missing(connection, run_id)
    lease = Lease(owner=uuid.uuid4().hex, seconds=lease_seconds)
    state = integrations.acquire_lease(engine, hold.integration_id, lease)
    if state is None:
        status = integrations.load(engine, hold.integration_id).status
        if status == "active":
            raise HoldError(ACTIVE_SYNC.format(id=hold.integration_id), "busy")
        raise HoldError(f"integration {hold.integration_id} is {status}; nothing removed", "fenced")
    try:
        with fenced(engine, hold.integration_id, hold.generation, lease) as connection:
            current = holds.of_run(connection, run_id)
            if current is None:
                raise _missing(connection, run_id)
            classes, keys = holds.items(connection, current.id)
            plan = roster.impact(connection, hold.integration_id, classes, keys)
            removed = roster.apply_removals(connection, hold.integration_id, plan)
            holds.forget(connection, current.id)
            audit.record(
                connection,
                action="removals_approved",
                actor=actor,
                integration_id=hold.integration_id,
                details={"run": run_id, "removed": removed, **_counts(plan)},
            )
    except Fenced:
        raise HoldError(
            f"integration {hold.integration_id} was revoked or re-linked after run {run_id} held these removals; "
            "nothing removed (the next full sync decides again)",
            "fenced",
        ) from None
    finally:
        integrations.release_lease(engine, hold.integration_id, lease, state.generation, None)
    return Decision(hold.integration_id, run_id, removed)


def drop(engine: Engine, run_id: int, *, actor: str) -> Decision:
    """Discard run ``run_id``'s hold: nothing is removed (a later listing that still misses them holds again)."""
    with engine.begin() as connection:
        hold = holds.of_run(connection, run_id)
        if hold is None:
            raise _missing(connection, run_id)
        classes, keys = holds.items(connection, hold.id)
        if not holds.forget(connection, hold.id):
            raise _missing(connection, run_id)
        audit.record(
            connection,
            action="removals_dropped",
            actor=actor,
            integration_id=hold.integration_id,
            details={"run": run_id, "classes": len(classes), "enrollments": len(keys)},
        )
    return Decision(hold.integration_id, run_id, 0)
