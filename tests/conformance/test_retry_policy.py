"""One retry policy wherever a sync runs (issue 10, part 2): `sync --now` in-process and the Dramatiq actor.

Waits are injected (``sleep=``) or tiny (Retry-After 0, a 10 ms backoff), and nothing here asserts on
time: what is asserted is the decision (wait how long, or give up), the outcome, and what an admin reads.
"""

from __future__ import annotations

import random
import uuid

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from connectors.base import AccessRevoked, ProviderDataError, RateLimited, ScopeMissing, TransientError
from store import integrations
from store.models import SyncRun
from store.runtime import Runtime
from tests.helpers import row_count
from tests.provider_worlds import World, world_fixture  # noqa: F401 - the parametrized fixture
from worker import broker as brokers
from worker.actors import sync_integration
from worker.retry_policy import RetryPolicy, Wait, give_up_reason, run_with_retries, wait_line
from worker.scheduler import run_due_here

POLICY = RetryPolicy(max_attempts=6, max_wait=600.0, min_backoff=2.0, max_backoff=20.0)


# ------------------------------------------------------------------------------------- the policy itself
def test_a_rate_limit_waits_at_least_what_the_provider_asked_plus_a_little_jitter() -> None:
    rng = random.Random(1)
    waits = [POLICY.wait_after(RateLimited(7), 1, 0.0, rng=rng) for _ in range(200)]
    assert all(w is not None and 7.0 <= w <= 9.0 for w in waits)
    assert len({round(w or 0, 3) for w in waits}) > 100  # jittered: a throttled fleet does not return in step


def test_transient_faults_back_off_exponentially_with_jitter_up_to_the_ceiling() -> None:
    rng = random.Random(2)
    for attempt, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 20.0)):
        waits = [POLICY.wait_after(TransientError("x"), attempt, 0.0, rng=rng) for _ in range(100)]
        assert all(w is not None and ceiling / 2 <= w <= ceiling for w in waits), attempt


def test_the_attempt_cap_and_the_total_wait_cap_end_the_retries() -> None:
    assert POLICY.wait_after(TransientError("x"), 6, 0.0) is None  # the sixth attempt was the last
    assert POLICY.wait_after(RateLimited(1), 6, 0.0) is None
    assert POLICY.wait_after(TransientError("x"), 2, 600.0) is None  # nothing left of the total wait
    # a provider asking for more than is left: give up now rather than retry too early
    assert POLICY.wait_after(RateLimited(120), 1, 500.0) is None
    assert POLICY.wait_after(RateLimited(99), 1, 500.0) is not None
    clipped = POLICY.wait_after(TransientError("x"), 5, 595.0, rng=random.Random(3))
    assert clipped is not None and clipped <= 5.0  # a backoff never runs past the cap


@pytest.mark.parametrize(
    "error",
    [AccessRevoked("gone", reason="invalid_grant"), ScopeMissing(["s"]), ProviderDataError("bad"), ValueError()],
)
def test_what_retrying_cannot_fix_is_never_retried(error: BaseException) -> None:
    assert POLICY.wait_after(error, 1, 0.0) is None


def test_the_admin_reason_is_our_words_only() -> None:
    reason = give_up_reason(RateLimited(3), 6, 61.7)
    assert reason == (
        "sync gave up after 6 attempt(s) and 62s of waiting: the provider kept rate-limiting it; "
        "resume it with rostersync resume ID (or the admin API) once the cause is fixed"
    )
    leaky = TransientError("Google answered 502 for Ada Lovelace <ada@example.org>")
    assert "Ada" not in give_up_reason(leaky, 2, 0) and "502" not in give_up_reason(leaky, 2, 0)


# ------------------------------------------------------------------------------------- sync --now, in-process
def _outcomes(runtime: Runtime, integration_id: int) -> list[str]:
    with runtime.engine.connect() as connection:
        return list(
            connection.execute(
                select(SyncRun.outcome).where(SyncRun.integration_id == integration_id).order_by(SyncRun.id)
            ).scalars()
        )


def test_sync_now_waits_out_a_429_storm_and_finishes(world: World) -> None:
    rt = world.runtime()
    integration_id = world.link(rt)
    before = len(_outcomes(rt, integration_id))
    world.emulator.fail_next(world.data_path, 429, count=2, retry_after=3)
    slept: list[float] = []
    shown: list[Wait] = []
    outcome = run_with_retries(rt, integration_id, sleep=slept.append, on_wait=shown.append)
    assert outcome == "ok"
    assert _outcomes(rt, integration_id)[before:] == ["rate_limited", "rate_limited", "ok"]
    # Clever's reset header is whole seconds, so its wait can be up to one second shorter than asked
    floor = 2.0 if world.provider == "clever" else 3.0
    assert len(slept) == 2 and all(floor <= s <= 3.0 + 0.01 for s in slept)
    assert [w.seconds for w in shown] == slept and [w.next_attempt for w in shown] == [2, 3]
    assert wait_line(shown[0]).startswith(f"integration {integration_id}: rate limited by the provider; waiting ")
    assert wait_line(shown[0]).endswith("before attempt 2 of 6")
    assert integrations.load(rt.engine, integration_id).status == "active"
    assert row_count(rt.engine, integration_id) > 0


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (503, "transient")])
def test_a_storm_past_the_attempt_cap_marks_the_integration_failed(world: World, status: int, kind: str) -> None:
    rt = world.runtime(max_retries=2)
    integration_id = world.link(rt)
    rows = row_count(rt.engine, integration_id)
    # a 503 with Retry-After is Graph's way of throttling, so the 503 storm carries none
    world.emulator.fail_next(world.data_path, status, count=50, retry_after=0 if status == 429 else None)
    slept: list[float] = []
    assert run_with_retries(rt, integration_id, sleep=slept.append) == kind
    assert len(slept) == 2  # three attempts, two waits between them
    [summary] = [s for s in integrations.summaries(rt.engine) if s.id == integration_id]
    assert summary.status == "failed"
    why = {
        "rate_limited": "the provider kept rate-limiting it",
        "transient": "the provider kept failing or could not be reached",
    }[kind]
    assert summary.status_reason == (
        f"sync gave up after 3 attempt(s) and {round(sum(slept))}s of waiting: {why}; "
        "resume it with rostersync resume ID (or the admin API) once the cause is fixed"
    )
    assert row_count(rt.engine, integration_id) == rows  # failed is not revoked: the school's roster is kept


def test_a_wait_longer_than_the_total_cap_gives_up_at_once(world: World) -> None:
    rt = world.runtime(retry_max_wait_seconds=5)
    integration_id = world.link(rt)
    world.emulator.fail_next(world.data_path, 429, count=1, retry_after=30)
    slept: list[float] = []
    assert run_with_retries(rt, integration_id, sleep=slept.append) == "rate_limited"
    assert slept == []  # never retried sooner than asked, and never waited past the cap
    state = integrations.load(rt.engine, integration_id)
    assert state.status == "failed"


# ------------------------------------------------------------------------------------- the actor, same policy
def _install(rt: Runtime) -> StubBroker:
    broker = brokers.make_broker(rt.settings)
    assert isinstance(broker, StubBroker)
    brokers.install(broker)
    return broker


def test_the_actor_retries_a_429_under_the_same_policy(world: World) -> None:
    rt = world.runtime()
    integration_id = world.link(rt)
    before = len(_outcomes(rt, integration_id))
    broker = _install(rt)
    try:
        world.emulator.fail_next(world.data_path, 429, count=2, retry_after=0)
        sync_integration.send(integration_id)
        brokers.drain(broker)
    finally:
        brokers.shutdown()
    assert _outcomes(rt, integration_id)[before:] == ["rate_limited", "rate_limited", "ok"]
    assert broker.dead_letters == []
    assert integrations.load(rt.engine, integration_id).status == "active"


def test_the_actor_gives_up_where_sync_now_does(world: World) -> None:
    """The attempt cap and the reason an admin reads are the policy's, not the Retries middleware's."""
    rt = world.runtime(max_retries=1)
    integration_id = world.link(rt)
    before = len(_outcomes(rt, integration_id))
    broker = _install(rt)
    try:
        world.emulator.fail_next(world.data_path, 503, count=50)
        sync_integration.send(integration_id)
        brokers.drain(broker)
    finally:
        brokers.shutdown()
    assert _outcomes(rt, integration_id)[before:] == ["transient", "transient"]
    [summary] = [s for s in integrations.summaries(rt.engine) if s.id == integration_id]
    assert summary.status == "failed"
    assert summary.status_reason.startswith("sync gave up after 2 attempt(s) and 0s of waiting: ")
    assert summary.status_reason.endswith(
        "the provider kept failing or could not be reached; "
        "resume it with rostersync resume ID (or the admin API) once the cause is fixed"
    )


def test_the_actor_does_not_retry_sooner_than_asked_past_the_total_cap(world: World) -> None:
    """Dramatiq alone would retry this after its own backoff; the policy says stop, and the actor stops."""
    rt = world.runtime(retry_max_wait_seconds=5)
    integration_id = world.link(rt)
    before = len(_outcomes(rt, integration_id))
    broker = _install(rt)
    try:
        world.emulator.fail_next(world.data_path, 429, count=1, retry_after=30)
        sync_integration.send(integration_id)
        brokers.drain(broker)
    finally:
        brokers.shutdown()
    assert _outcomes(rt, integration_id)[before:] == ["rate_limited"]
    assert integrations.load(rt.engine, integration_id).status == "failed"


@pytest.mark.parametrize("world", ["google"], indirect=True)  # the budget is provider-neutral worker code
def test_our_own_spent_budget_is_retried_but_never_marks_the_integration_failed(world: World) -> None:
    namespace = f"rs-retry-budget-{uuid.uuid4().hex[:10]}"
    rt = world.runtime(max_retries=1, provider_budgets="google=2/60", broker_namespace=namespace)
    integration_id = world.link(rt)
    slept: list[float] = []
    assert run_with_retries(rt, integration_id, sleep=slept.append) == "budget_spent"
    assert len(slept) == 1 and slept[0] >= 60.0  # waited for the budget's window, once
    assert _outcomes(rt, integration_id) == ["budget_spent", "budget_spent"]
    assert integrations.load(rt.engine, integration_id).status == "active"  # the provider never refused it


def test_scheduler_once_runs_each_due_sync_under_the_same_policy(world: World) -> None:
    rt = world.runtime()
    integration_id = world.link(rt)  # a fresh link is due at once
    world.emulator.fail_next(world.data_path, 429, count=2, retry_after=0)
    report = run_due_here(rt)
    assert report.syncs == [integration_id] and report.failed == []
    assert _outcomes(rt, integration_id) == ["rate_limited", "rate_limited", "ok"]
    assert integrations.load(rt.engine, integration_id).status == "active"
