"""The mass-removal breaker, the same for every provider, on SQLite and PostgreSQL (docs/reliability.md,
"Mass-removal breaker"): what holds whatever the provider is asserted here, once, through the provider's
``World`` (tests/provider_worlds.py); how each provider says a class is gone stays with the provider, in
``tests/providers/<name>/test_breaker.py``.

Merged from the per-provider copies: Google's and Clever's "an empty listing is held whatever the limits"
(every assertion of both kept), now also run against Microsoft.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.helpers import classes, enrollments, people
from tests.provider_worlds import PROVIDERS, World, opened

Snapshot = tuple[set[int], set[int], set[tuple[int, int]]]


@pytest.fixture(params=PROVIDERS, name="world")
def world_on_both_databases(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[World]:
    """One provider's world on SQLite or PostgreSQL: the breaker's rows are the database's to keep."""
    with opened(str(request.param), tmp_path, database_url) as one:
        yield one


def snapshot(runtime: Runtime, integration_id: int) -> Snapshot:
    """Current class ids, person ids and enrolment keys of one integration."""
    return (
        {c.id for c in classes(runtime.engine, integration_id)},
        {p.id for p in people(runtime.engine, integration_id)},
        {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)},
    )


def test_an_empty_listing_is_held_whatever_the_limits(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = world.runtime()
    monkeypatch.setattr(runtime.settings, "breaker_min_people", 1_000_000)
    monkeypatch.setattr(runtime.settings, "breaker_share", 1.0)
    integration_id = world.link(runtime)
    assert run_sync(runtime, integration_id).outcome == "ok"
    before = snapshot(runtime, integration_id)
    assert before[0], "the integration holds classes before they leave"
    world.empty_listing()
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "held", outcome
    assert snapshot(runtime, integration_id) == before
    [view] = breaker.pending(runtime.engine)
    assert view.reason == "empty" and view.classes == len(before[0])
    breaker.drop(runtime.engine, outcome.run_id, actor="admin:test")
    assert snapshot(runtime, integration_id) == before and breaker.pending(runtime.engine) == []
