"""The mass-removal breaker: a sweep that would remove too much of an integration is held for an admin.

The worst a roster sync can do is read a partial listing as "everyone left". A sweep runs only
after a listing completed without error (sync.cycle); on top of that, this module holds the sweep
instead of applying it when it would remove more than ``share`` of the integration's current
people or classes while touching at least ``min_people`` people, and always when it would remove
every current person or every current class (an empty listing where there were members).

A run's change-feed pages are judged by the same rule, on what they remove together
(``ChangeGuard``): the page that would tip them over is rolled back and the sync runs a full
listing instead, whose sweep is applied or held as above.

Removals the provider explained (a class archived or expired, a class deletion the provider
stated, a teacher-scoped listing that is complete and empty) are the school's decision: they are
applied with no verdict and audited ``removals_explained`` (``end_explained``), and the rules above
judge only what is left, what nobody explained (docs/reliability.md, "School year's end").

A held sweep is stored (store.holds, ids only), one per integration: a newer full listing
supersedes it and decides afresh, so the same removals are never held twice side by side; what the
newer listing would remove beyond the old hold is judged on its own (``sweep``). An
admin approves (the held removals are applied, fenced: a revoke, a re-link or a running sync wins)
or drops it; each step is audited with ids and counts only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select

from mappers.records import ChangeBatch
from store import audit, holds, integrations, leases, roster
from store.db import utcnow
from store.fence import SYNCABLE, Fenced, Lease, fenced
from store.models import Enrollment, Integration, Person, SchoolClass, SyncRun

EXPLAINED_APART = timedelta(microseconds=1)
"""How far before a change page's moment its explained removals are stamped, so the two are counted apart."""
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


def verdict(measure: roster.Measure, limits: Limits) -> str | None:
    """Why this removal must be held (``empty`` or ``share``), or None to apply it.

    Classes, enrolments and people are each judged against their current count: a removal that
    takes too large a share of any one of them is held.
    """
    shares = measure.shares()
    if not any(removed for removed, _ in shares):
        return None
    if any(current and removed >= current for removed, current in shares):
        return "empty"
    if measure.touched < limits.min_people:
        return None
    if any(removed > limits.share * current for removed, current in shares):
        return "share"
    return None


@dataclass(frozen=True)
class Swept:
    removed: int
    held: str | None  # the verdict when held


def sweep(
    connection: Connection,
    *,
    integration_id: int,
    run_id: int,
    generation: int,
    plan: roster.Removals,
    limits: Limits,
    explained: bool = False,
    hold_possible: bool = True,
) -> Swept:
    """Apply a complete listing's unexplained removals, or hold them; inside the sync's fenced sweep transaction.

    An older hold of the integration is superseded: this listing is newer, so its plan is the one
    that counts. When it is still too much, what the older hold named is held again (with its
    ``held_since``), and the removals it did not name are judged on their own: an ordinary removal
    of another class is applied, not swallowed by a hold that stands for something else.
    ``explained``: the listing itself explains the plan (see ``end_explained``); it is applied unjudged.
    ``hold_possible=False``: the caller knows no hold stands (store.leases), so none is looked for. A plan
    that removes nothing runs no statement: no current person is then left without an enrolment.
    """
    previous = _supersede(connection, integration_id, run_id) if hold_possible else None
    if plan.empty:
        return Swept(0, None)
    if explained:
        return Swept(end_explained(connection, integration_id=integration_id, run_id=run_id, plan=plan), None)
    reason = verdict(plan.measure(), limits)
    if reason is None:
        return Swept(roster.apply_removals(connection, integration_id, plan), None)
    if previous is not None:
        hold, held_classes, held_keys = previous
        old, new = roster.split(connection, integration_id, plan, set(held_classes), set(held_keys))
        if not new.empty and not old.empty and verdict(new.measure(), limits) is None:
            removed = roster.apply_removals(connection, integration_id, new)
            _hold(connection, run_id, generation, old, hold.reason, hold.held_since, integration_id)
            return Swept(removed, hold.reason)
    held_since = previous[0].held_since if previous is not None else None
    _hold(connection, run_id, generation, plan, reason, held_since, integration_id)
    return Swept(0, reason)


def _supersede(
    connection: Connection, integration_id: int, run_id: int
) -> tuple[holds.Hold, list[int], list[tuple[int, int]]] | None:
    """Forget the integration's standing hold (audited), returning it and what it named."""
    previous = holds.of_integration(connection, integration_id)
    if previous is None:
        return None
    classes, keys = holds.items(connection, previous.id)
    holds.forget(connection, previous.id)
    audit.record(
        connection,
        action="removals_superseded",
        actor="system:sync",
        integration_id=integration_id,
        details={"run": previous.run_id, "by_run": run_id},
    )
    return previous, classes, keys


def _hold(
    connection: Connection,
    run_id: int,
    generation: int,
    plan: roster.Removals,
    reason: str,
    held_since: datetime | None,
    integration_id: int,
) -> None:
    holds.create(
        connection,
        integration_id=integration_id,
        run_id=run_id,
        generation=generation,
        reason=reason,
        held_since=held_since,
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


def end_explained(
    connection: Connection,
    *,
    integration_id: int,
    run_id: int,
    plan: roster.Removals | None = None,
    current: dict[int, str | None] | None = None,
) -> int:
    """Apply removals the provider explained, with no verdict: the school ended these classes itself.

    By default the current classes whose state says they ended (``mappers.records.ENDED_STATES``);
    or ``plan``, e.g. a teacher-scoped listing that is complete and empty (a teacher with zero
    classes is a teacher with zero classes). Audited as ``removals_explained``, counts only. ``current``: the
    integration's current classes and their states, when the caller has read them (``roster.current_classes``).
    """
    if plan is None:
        plan = roster.plan_ended(connection, integration_id, current)
    if plan is None or plan.empty:
        return 0
    removed = roster.apply_removals(connection, integration_id, plan)
    _explained(connection, integration_id, run_id, _counts(plan))
    return removed


def _explained(connection: Connection, integration_id: int, run_id: int, counts: dict[str, audit.Detail]) -> None:
    audit.record(
        connection,
        action="removals_explained",
        actor="system:sync",
        integration_id=integration_id,
        details={"run": run_id, **counts},
    )


def _counts(plan: roster.Removals) -> dict[str, audit.Detail]:
    return {
        "classes": len(plan.classes),
        "enrollments": len(plan.enrollments),
        "people": plan.people,
        "current_classes": plan.active_classes,
        "current_enrollments": plan.active_enrollments,
        "current_people": plan.active_people,
    }


class ChangesTooLarge(Exception):
    """A run's change pages would remove too much: the page's transaction rolls back, a full listing decides."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the change feed would remove too much ({reason}); a full listing decides instead")
        self.reason = reason


class ChangeGuard:
    """``roster.apply_changes`` under the breaker for one run's change pages, each in its fenced transaction.

    What the pages remove (classes, enrolments, people, people touched) is added up over the run
    and judged against the integration's counts before its first deleting page, by the same rule as
    a sweep: a feed that spreads a mass removal over many small pages is stopped as soon as the
    run's total would be held. That page raises ``ChangesTooLarge`` after applying it, so the
    caller's transaction (the page and its cursor) rolls back; the sync then runs a full listing,
    whose sweep is the one applied or held. Pages without deletions cost nothing extra.
    """

    def __init__(self, integration_id: int, limits: Limits, run_id: int = 0) -> None:
        self._integration_id = integration_id
        self._limits = limits
        self._run_id = run_id
        self._removed: roster.Measure | None = None  # the run's total so far, with the counts before it

    def apply(self, connection: Connection, changes: ChangeBatch) -> int:
        """Apply one page; the classes the provider says ended are applied and audited, never judged.

        The page's removals are counted by the statements that make them (``roster.PageResult``), not
        by counting the integration's rows afterwards.
        """
        integration_id = self._integration_id
        explained = set(roster.ended_classes(changes))
        unexplained = [c for c in changes.deleted_classes if c not in explained]
        now = utcnow()
        ended_at = now - EXPLAINED_APART  # its own moment: the pages' judged total never counts these rows
        if not (unexplained or changes.deleted_people or changes.replaced_classes):
            result = roster.apply_change_page(connection, integration_id, changes, now=now, ended_at=ended_at)
            self._audit_explained(connection, explained, result.ended)
            return result.written
        before = self._removed or _current(connection, integration_id)
        result = roster.apply_change_page(connection, integration_id, changes, now=now, ended_at=ended_at)
        page = result.removed
        total = replace(
            before,
            classes=before.classes + page.classes,
            enrollments=before.enrollments + page.enrollments,
            people=before.people + page.people,
            touched=before.touched + page.touched,
        )
        reason = verdict(total, self._limits)
        if reason is not None:
            raise ChangesTooLarge(reason)
        self._removed = total
        self._audit_explained(connection, explained, result.ended)
        return result.written

    def _audit_explained(self, connection: Connection, explained: set[str], gone: roster.Measure) -> None:
        if not explained:
            return
        if gone.classes or gone.enrollments or gone.people:
            counts: dict[str, audit.Detail] = {
                "classes": gone.classes,
                "enrollments": gone.enrollments,
                "people": gone.people,
            }
            _explained(connection, self._integration_id, self._run_id, counts)


def _current(connection: Connection, integration_id: int) -> roster.Measure:
    """Nothing removed yet, against the integration's current classes, enrolments and people: the three counts
    in one statement (one round trip, not three; the same counts)."""
    counts = [
        select(func.count()).where(model.integration_id == integration_id, model.removed_at.is_(None)).scalar_subquery()
        for model in (SchoolClass, Enrollment, Person)
    ]
    classes, enrollments, people = (int(n) for n in connection.execute(select(*counts)).one())
    return roster.Measure(0, 0, 0, 0, active_classes=classes, active_enrollments=enrollments, active_people=people)


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
    current_enrollments: int
    current_people: int

    def as_json(self) -> dict[str, object]:
        return self.__dict__ | {
            "held_at": self.held_at.isoformat() + "Z",
            "held_since": self.held_since.isoformat() + "Z",
        }


def pending(engine: Engine, integration_id: int | None = None) -> list[HeldView]:
    """Every open hold, by integration; or only the one of ``integration_id`` (an integration's own page)."""
    views = []
    with engine.connect() as connection:
        if integration_id is None:
            found = holds.every(connection)
        else:
            found = [hold for hold in [holds.of_integration(connection, integration_id)] if hold is not None]
        for hold in found:
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
                    current_enrollments=plan.active_enrollments,
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
    state = leases.acquire(engine, hold.integration_id, lease)
    if state is None:
        status = integrations.load(engine, hold.integration_id).status
        if status in SYNCABLE:  # a blocked integration is synced too: its lease is held by a sync
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
        leases.release(engine, hold.integration_id, lease, state.generation, None)
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
