"""The mass-removal breaker, the same for every provider, on SQLite and PostgreSQL (docs/reliability.md,
"Mass-removal breaker"): what holds whatever the provider is asserted here, once, through the provider's
``World`` (tests/provider_worlds.py): a small removal is applied at once; a mass removal is held, shown,
approved (fenced: a revoke, a re-link or a running sync wins), dropped or superseded by a newer listing.
How each provider says a class is gone stays with the provider, in ``tests/providers/<name>/test_breaker.py``;
the breaker's command line and the faults of one provider's listing stay in ``tests/features/test_breaker.py``.

Merged from the per-provider copies (every assertion of each kept): Google's and Clever's "an empty listing is
held whatever the limits"; Google's held / approve / drop / revoke / re-link / busy / superseded / small-removal
tests (tests/features/test_breaker.py) with Microsoft's "held and dropped" and "a revoke wins"
(tests/providers/microsoft/test_breaker.py); each now runs against every provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.revoke import revoke_integration
from store import audit, breaker, integrations, leases
from store.fence import Lease
from store.models import HeldRemoval
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.helpers import held_rows, people, run_outcomes, snapshot
from tests.provider_worlds import PROVIDERS, World, opened

STUDENTS_PER_CLASS = 12
"""Twelve a class, so that six taken from each is half of every roster: over the share, at least ten people."""


@pytest.fixture(params=PROVIDERS, name="world")
def world_on_both_databases(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[World]:
    """One provider's world on SQLite or PostgreSQL: the breaker's rows are the database's to keep."""
    with opened(str(request.param), tmp_path, database_url, students_per_course=STUDENTS_PER_CLASS) as one:
        yield one


class Held:
    """A held sweep: the integration, the run that held, the roster before, the students taken away."""

    def __init__(self, world: World, runtime: Runtime) -> None:
        self.integration_id = world.link_full_listings(runtime)
        assert run_sync(runtime, self.integration_id).outcome == "ok"
        self.before = snapshot(runtime.engine, self.integration_id)
        self.gone = world.take_students(STUDENTS_PER_CLASS // 2)
        self.enrolments, self.people = len(self.gone), world.left(self.gone)
        assert self.people >= 10
        held = run_sync(runtime, self.integration_id)
        assert (held.outcome, held.mode, held.removed) == ("held", "full", 0)
        self.run_id = held.run_id


def test_an_empty_listing_is_held_whatever_the_limits(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = world.runtime()
    monkeypatch.setattr(runtime.settings, "breaker_min_people", 1_000_000)
    monkeypatch.setattr(runtime.settings, "breaker_share", 1.0)
    integration_id = world.link(runtime)
    assert run_sync(runtime, integration_id).outcome == "ok"
    before = snapshot(runtime.engine, integration_id)
    assert before[0], "the integration holds classes before they leave"
    world.empty_listing()
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "held", outcome
    assert snapshot(runtime.engine, integration_id) == before
    [view] = breaker.pending(runtime.engine)
    assert view.reason == "empty" and view.classes == len(before[0])
    breaker.drop(runtime.engine, outcome.run_id, actor="admin:test")
    assert snapshot(runtime.engine, integration_id) == before and breaker.pending(runtime.engine) == []


def test_a_small_removal_is_applied_at_once(world: World) -> None:
    runtime = world.runtime()
    integration_id = world.link_full_listings(runtime)
    run_sync(runtime, integration_id)
    _classes, people_before, enrolled_before = snapshot(runtime.engine, integration_id)
    gone = world.take_students(1)  # one per class: under 20% and under 10 people
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok" and outcome.removed == len(gone) + world.left(gone)
    _classes, people_after, enrolled_after = snapshot(runtime.engine, integration_id)
    assert len(enrolled_before) - len(enrolled_after) == len(gone)
    assert len(people_before) - len(people_after) == world.left(gone)
    assert breaker.pending(runtime.engine) == [] and held_rows(runtime.engine) == 0


def test_a_mass_removal_is_held_removes_nothing_and_is_shown(world: World) -> None:
    runtime = world.runtime()
    h = Held(world, runtime)
    integration_id, run_id, before = h.integration_id, h.run_id, h.before
    assert snapshot(runtime.engine, integration_id) == before, "a held sweep removes nothing"
    assert run_outcomes(runtime.engine, integration_id) == ["ok", "held"]
    [view] = breaker.pending(runtime.engine)
    assert (view.integration_id, view.run_id, view.reason, view.provider) == (
        integration_id,
        run_id,
        "share",
        world.provider,
    )
    assert (view.classes, view.enrollments, view.people) == (0, h.enrolments, h.people)
    assert (view.current_classes, view.current_people) == (len(before[0]), len(before[1]))
    [event] = [e for e in audit.events(runtime.engine, integration_id) if e.action == "removals_held"]
    assert event.details == {
        "run": run_id,
        "reason": "share",
        "classes": 0,
        "enrollments": h.enrolments,
        "people": h.people,
        "current_classes": len(before[0]),
        "current_enrollments": len(before[2]),
        "current_people": len(before[1]),
    }
    # Ids and counts only: no pseudonym of a held person is written anywhere new.
    with runtime.engine.connect() as connection:
        held = connection.execute(select(HeldRemoval.class_id, HeldRemoval.person_id)).all()
    assert {(c, p) for c, p in held} <= before[2]


def test_approve_applies_exactly_the_held_removals(world: World) -> None:
    runtime = world.runtime()
    h = Held(world, runtime)
    integration_id, run_id, before = h.integration_id, h.run_id, h.before
    decision = breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert decision.integration_id == integration_id and decision.removed == h.enrolments + h.people
    _classes, people_after, enrolled_after = snapshot(runtime.engine, integration_id)
    assert len(before[2] - enrolled_after) == h.enrolments and len(before[1] - people_after) == h.people
    assert enrolled_after <= before[2] and breaker.pending(runtime.engine) == [] and held_rows(runtime.engine) == 0
    # A complete listing now agrees: nothing more to remove, nothing held.
    after = run_sync(runtime, integration_id)
    assert (after.outcome, after.removed, after.rows_written) == ("ok", 0, 0)
    assert breaker.pending(runtime.engine) == []
    actions = audit.actions(runtime.engine, integration_id)
    assert "removals_approved" in actions
    with pytest.raises(breaker.HoldError) as again:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert again.value.kind == "gone"
    # The lease the approval took is given back: syncs go on.
    assert leases.acquire(runtime.engine, integration_id, Lease("x", 60)) is not None


def test_drop_discards_the_hold_and_removes_nothing(world: World) -> None:
    runtime = world.runtime()
    h = Held(world, runtime)
    integration_id, run_id, before = h.integration_id, h.run_id, h.before
    [view] = breaker.pending(runtime.engine)
    assert (view.provider, view.reason, view.run_id) == (world.provider, "share", run_id)
    breaker.drop(runtime.engine, run_id, actor="admin:test")
    assert snapshot(runtime.engine, integration_id) == before and held_rows(runtime.engine) == 0
    assert breaker.pending(runtime.engine) == []
    [event] = [e for e in audit.events(runtime.engine, integration_id) if e.action == "removals_dropped"]
    assert event.details == {"run": run_id, "classes": 0, "enrollments": h.enrolments} and event.actor == "admin:test"
    with pytest.raises(breaker.HoldError) as again:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert again.value.kind == "gone"
    # The provider still says they left: the next listing holds again (never applies silently).
    assert run_sync(runtime, integration_id).outcome == "held"


def test_revoke_between_hold_and_approve_wins(world: World) -> None:
    runtime = world.runtime()
    h = Held(world, runtime)
    integration_id, run_id = h.integration_id, h.run_id
    revoke_integration(runtime, integration_id, actor="admin:test", reason="test")
    assert held_rows(runtime.engine) == 0, "the purge takes the held removals along"
    assert breaker.pending(runtime.engine) == [], "the purge took the hold along"
    with pytest.raises(breaker.HoldError) as refused:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert refused.value.kind == "gone"
    assert "removals_approved" not in audit.actions(runtime.engine, integration_id)
    assert people(runtime.engine, integration_id, current=False) == []


def test_a_relink_between_hold_and_approve_wins(world: World) -> None:
    runtime = world.runtime()
    h = Held(world, runtime)
    integration_id, run_id, before = h.integration_id, h.run_id, h.before
    assert (
        world.link_full_listings(runtime) == integration_id
    )  # the same account again: a new generation, the roster kept
    with pytest.raises(breaker.HoldError) as refused:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert refused.value.kind == "fenced" and "re-linked" in str(refused.value)
    assert snapshot(runtime.engine, integration_id) == before
    # The next listing, on the new generation, decides again.
    again = run_sync(runtime, integration_id)
    assert again.outcome == "held"
    breaker.approve(runtime.engine, again.run_id, actor="admin:test", lease_seconds=60)
    assert len(before[1] - snapshot(runtime.engine, integration_id)[1]) == h.people


def test_approve_waits_for_a_running_sync(world: World) -> None:
    runtime = world.runtime()
    h = Held(world, runtime)
    integration_id, run_id, before = h.integration_id, h.run_id, h.before
    lease = Lease("a-running-sync", 600)
    assert leases.acquire(runtime.engine, integration_id, lease) is not None
    with pytest.raises(breaker.HoldError) as busy:
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert busy.value.kind == "busy" and snapshot(runtime.engine, integration_id) == before
    state = integrations.load(runtime.engine, integration_id)
    leases.release(runtime.engine, integration_id, lease, state.generation, None)
    approved = breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert approved.removed == h.enrolments + h.people


def test_a_newer_listing_supersedes_the_hold(world: World) -> None:
    runtime = world.runtime()
    held = Held(world, runtime)
    integration_id, first_run, before = held.integration_id, held.run_id, held.before
    [first] = breaker.pending(runtime.engine)
    # Still gone at the next sync: held again under the new run, once, with the first hold's age.
    second = run_sync(runtime, integration_id)
    assert second.outcome == "held"
    [view] = breaker.pending(runtime.engine)
    assert view.run_id == second.run_id and view.held_since == first.held_since and view.enrollments == held.enrolments
    with pytest.raises(breaker.HoldError) as stale:
        breaker.approve(runtime.engine, first_run, actor="admin:test", lease_seconds=60)
    assert stale.value.kind == "superseded" and f"run {second.run_id}" in str(stale.value)
    events = [e for e in audit.events(runtime.engine, integration_id) if e.action == "removals_superseded"]
    assert [e.details for e in events] == [{"run": first_run, "by_run": second.run_id}]
    # The people come back at the provider: the next listing makes the hold moot.
    world.give_back(held.gone)
    third = run_sync(runtime, integration_id)
    assert (third.outcome, third.removed) == ("ok", 0)
    assert breaker.pending(runtime.engine) == [] and snapshot(runtime.engine, integration_id) == before
