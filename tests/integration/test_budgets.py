"""Per-provider request budgets: shared by every worker through Redis, and a spent budget is a rate limit."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from connectors.base import RateLimited
from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from settings import Settings
from store.runtime import Runtime, build_runtime
from sync.budgets import give_back, take_one
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.conftest import REDIS_URL, Linker, settings_for


def test_workers_share_one_budget_through_redis(emulator: GoogleEmulator) -> None:
    namespace = f"rs-budget-{uuid.uuid4().hex[:10]}"
    common = {"broker_url": REDIS_URL, "broker_namespace": namespace, "provider_budgets": "google=5/60"}
    # Two processes' worth of settings (the limiter cache is keyed by broker URL; the key by namespace).
    first = settings_for(emulator, "sqlite://", **common)
    second = settings_for(emulator, "sqlite://", **common)
    try:
        for _ in range(3):
            take_one(first, "google")
        for _ in range(2):
            take_one(second, "google")
        with pytest.raises(RateLimited) as refused:
            take_one(first, "google")
        assert refused.value.retry_after == 60
        take_one(first, "clever")  # no budget configured for it: never limited
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{namespace}*"):
            client.delete(key)


def test_a_spent_budget_stops_the_sync_as_a_rate_limit(
    runtime: Runtime, link: Linker, emulator: GoogleEmulator
) -> None:
    integration_id = link(0)
    limited: Settings = runtime.settings.model_copy(
        update={"provider_budgets": "google=3/60", "broker_namespace": f"rs-budget-{uuid.uuid4().hex[:10]}"}
    )
    rt = Runtime(limited, runtime.engine, runtime.vault, runtime.pseudonymiser)
    seen = len(emulator.requests)
    with pytest.raises(RateLimited):
        run_sync(rt, integration_id)
    roster_calls = [r for r in emulator.requests[seen:] if r.path.startswith("/v1/courses")]
    batches = [r for r in emulator.requests[seen:] if r.path == "/batch"]
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    # 3 units: the class list (one page; the unit that found it ended is given back), two roster pages.
    # Those came in one batch with the other courses' first pages (calls Google counts: the budget sees
    # them as they are handed out, up to one batch late); no further batch once the budget was spent.
    assert len(batches) == 1 and len(roster_calls) == 1 + 2 * len(courses)


def test_a_unit_spent_on_no_request_is_given_back(emulator: GoogleEmulator) -> None:
    namespace = f"rs-budget-{uuid.uuid4().hex[:10]}"
    settings = settings_for(
        emulator, "sqlite://", broker_url=REDIS_URL, broker_namespace=namespace, provider_budgets="google=2/60"
    )
    try:
        take_one(settings, "google")
        give_back(settings, "google", take_one(settings, "google"))
        take_one(settings, "google")  # the unit given back is spent again
        with pytest.raises(RateLimited):
            take_one(settings, "google")
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{namespace}*"):
            client.delete(key)


def test_a_page_read_in_parts_spends_one_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Clever sections page streamed in parts is one request: its later parts give their units back."""
    monkeypatch.setattr("connectors.streaming.PART_RECORDS", 2)
    with CleverEmulator(cert_dir=tmp_path, districts=1, teachers=2, students_per_course=4) as clever:
        namespace = f"rs-budget-{uuid.uuid4().hex[:10]}"
        # The district sync is three requests (the event cursor, the sections, the teachers), and a unit is
        # taken, then given back, to learn that a list ended: four units, if every later part gives its own back.
        settings = clever_settings_for(
            clever, f"sqlite:///{tmp_path / 'budget.db'}", provider_budgets="clever=4/60", broker_namespace=namespace
        )
        runtime = build_runtime(settings)
        try:
            integration_id = link_district(runtime, clever)
            outcome = run_sync(runtime, integration_id)
        finally:
            runtime.engine.dispose()
    assert len(clever.section_ids(clever.district_ids[0])) > 2, "the sections page came in several parts"
    assert (outcome.outcome, outcome.provider_calls) == ("ok", 3)
