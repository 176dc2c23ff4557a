"""The fault matrix, in-process part (issue 10, part 3): each fault once per provider, on PostgreSQL.

Every test injects one fault into a real sync against the provider's emulator and asserts what
matters to a school: the run ends in the state the taxonomy promises, the roster is complete
afterwards (checked against the emulator's own data), nothing is removed that the provider still
lists, and a lost grant stops every later call. The faults that need a real worker process or a
real Redis are in ``test_faults_processes.py``; docs/reliability.md lists them all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Connection, update

from services.revoke import revoke_integration
from store import bulk, integrations, roster
from store.db import utcnow
from store.models import Integration
from store.runtime import Runtime, build_runtime, set_runtime
from sync.cycle import run_sync
from tests.conftest import PG_ADMIN_URL
from tests.faults import PROVIDERS, Case, base_settings, once_on, outcomes, roster_of, run_at_once, started
from tests.helpers import classes, row_count
from worker import broker as brokers
from worker.actors import sync_integration

ROSTER_READS = ("/v1/courses", "/v3.0/", "/v1.0/")


@pytest.fixture(params=PROVIDERS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    yield from started(request.param, tmp_path)


@pytest.fixture(params=["google", "microsoft"])
def refreshing_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """The providers whose links hold a rotating refresh token (a Clever district token has none)."""
    yield from started(request.param, tmp_path)


@pytest.fixture
def runtime(request: pytest.FixtureRequest, pg_url: str) -> Iterator[Runtime]:
    chosen: Case = request.getfixturevalue("refreshing_case" if "refreshing_case" in request.fixturenames else "case")
    rt = build_runtime(base_settings(pg_url, chosen.emulator.ca_path, **chosen.settings_values()))
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.engine.dispose()


def assert_complete(runtime: Runtime, case: Case, integration_id: int) -> None:
    """The stored roster is the provider's, whole; no class or member was swept on the way."""
    assert roster_of(runtime, integration_id) == case.expected()
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert len(classes(runtime.engine, integration_id, current=False)) == len(case.expected()[0])


def roster_reads(case: Case, since: int) -> list[str]:
    return [r.path for r in case.emulator.requests[since:] if any(p in r.path for p in ROSTER_READS)]


def after_firing(case: Case, fired_at: int, path: str) -> int:
    """Log index just past the firing request's own record (a Graph $batch logs its sub-requests first)."""
    log = case.emulator.requests
    return next(n for n in range(fired_at, len(log)) if path in log[n].path) + 1


# --------------------------------------------------------------------------------- provider faults
def test_a_429_storm_is_waited_out_then_the_sync_completes(
    case: Case, runtime: Runtime, stub_broker: StubBroker
) -> None:
    integration_id = case.link(runtime)
    stamps: list[float] = []
    case.emulator.add_hook(lambda record: stamps.append(time.time()) if case.classes_path in record.path else None)
    case.emulator.fail_next(case.classes_path, 429, count=2, retry_after=1)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    assert outcomes(runtime, integration_id) == ["rate_limited", "rate_limited", "ok"]
    for earlier, later in pairwise(stamps[:3]):  # never sooner than asked
        if case.name == "clever":  # X-RateLimit-Reset: the Unix second the window opens again
            assert later >= int(earlier) + 1
        else:  # Retry-After: seconds from the answer
            assert later - earlier >= 1.0
    assert stub_broker.dead_letters == []
    assert_complete(runtime, case, integration_id)


def test_a_5xx_burst_is_retried_with_backoff_and_loses_nothing(
    case: Case, runtime: Runtime, stub_broker: StubBroker
) -> None:
    integration_id = case.link(runtime)
    case.emulator.fail_next(case.classes_path, 503, count=3)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    assert outcomes(runtime, integration_id) == ["transient", "transient", "transient", "ok"]
    assert stub_broker.dead_letters == []
    assert_complete(runtime, case, integration_id)


@pytest.mark.parametrize("fault", ["read_timeout", "connection_reset"])
def test_read_timeouts_and_connection_resets_are_transient_and_retried(
    case: Case, runtime: Runtime, stub_broker: StubBroker, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Mid-run, after the class list was written: the page that never came is fetched again, nothing swept."""
    integration_id = case.link(runtime)
    monkeypatch.setattr(runtime.settings, "http_timeout_seconds", 1)
    if fault == "read_timeout":
        case.emulator.stall_next(case.later_path, seconds=2.5)
    else:
        case.emulator.reset_next(case.later_path, count=2)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    runs = outcomes(runtime, integration_id)
    assert runs[-1] == "ok" and len(runs) >= 2 and set(runs[:-1]) == {"transient"}, runs
    assert stub_broker.dead_letters == []
    assert_complete(runtime, case, integration_id)


def test_an_access_token_expiring_mid_run_is_renewed_once_and_the_run_completes(case: Case, runtime: Runtime) -> None:
    """Google and Microsoft refresh on the 401; Clever's district token is rotated, and refetched."""
    integration_id = case.link(runtime)
    fired = once_on(case.emulator, case.later_path, case.expire_access)
    outcome = run_sync(runtime, integration_id)
    assert fired and outcome.outcome == "ok"
    renewals = [r for r in case.emulator.requests[fired[0] :] if (case.token_path or "/oauth/tokens") in r.path]
    assert len(renewals) == 1
    assert_complete(runtime, case, integration_id)


def test_provider_side_revocation_mid_run_ends_purges_and_stops_calling(case: Case, runtime: Runtime) -> None:
    """Google: the teacher removes the app; Clever: the district disconnects; Microsoft: consent withdrawn."""
    integration_id = case.link(runtime)
    fired = once_on(case.emulator, case.later_path, case.end_grant)
    outcome = run_sync(runtime, integration_id)
    assert fired and outcome.outcome == "revoked"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "revoked" and state.token_blob is None
    assert row_count(runtime.engine, integration_id) == 0
    assert roster_reads(case, after_firing(case, fired[0], case.later_path)) == []  # stopped at the first refusal
    seen = len(case.emulator.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:revoked"
    assert case.emulator.requests[seen:] == []


def test_admin_revoke_mid_run_fences_the_page_in_flight(case: Case, runtime: Runtime) -> None:
    integration_id = case.link(runtime)
    fired = once_on(
        case.emulator, case.later_path, lambda: revoke_integration(runtime, integration_id, actor="admin:test")
    )
    outcome = run_sync(runtime, integration_id)
    assert fired and outcome.outcome == "fenced"
    assert integrations.load(runtime.engine, integration_id).status == "revoked"
    assert row_count(runtime.engine, integration_id) == 0  # the page in flight landed nowhere
    assert roster_reads(case, after_firing(case, fired[0], case.later_path)) == []


@pytest.mark.parametrize("skew", ["our clock behind", "our clock ahead"])
def test_clock_skew_on_token_expiry_costs_one_refresh(refreshing_case: Case, runtime: Runtime, skew: str) -> None:
    """Behind: the provider has expired a token we think valid (401, refresh, resend). Ahead: we think a
    valid token expired and refresh before the first call. Either way one refresh, no revocation."""
    case = refreshing_case
    integration_id = case.link(runtime)
    if skew == "our clock behind":
        case.expire_access()
    else:
        age_stored_access_token(runtime, integration_id)
    seen = len(case.emulator.requests)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    assert len([r for r in case.emulator.requests[seen:] if case.token_path and case.token_path in r.path]) == 1
    assert_complete(runtime, case, integration_id)


def age_stored_access_token(runtime: Runtime, integration_id: int) -> None:
    """Rewrite the sealed tokens as a clock an hour ahead would see them: the access token already expired."""
    payload: dict[str, Any] = runtime.vault.open(integrations.load(runtime.engine, integration_id).token_blob or b"")
    past = utcnow() - timedelta(hours=1)
    payload["expiry"] = past.isoformat()
    if "token_cache" in payload.get("extra", {}):  # MSAL keeps its own expiry in the cache it serialises
        cache = json.loads(payload["extra"]["token_cache"])
        for entry in cache.get("AccessToken", {}).values():
            entry["expires_on"] = entry["extended_expires_on"] = str(int(time.time()) - 3600)
        payload["extra"]["token_cache"] = json.dumps(cache)
    with runtime.engine.begin() as connection:
        connection.execute(
            update(Integration).where(Integration.id == integration_id).values(token_blob=runtime.vault.seal(payload))
        )


# ------------------------------------------------------------------------------- races and leases
def test_a_refresh_token_rotated_by_a_second_worker_is_not_taken_for_a_revocation(
    refreshing_case: Case, runtime: Runtime
) -> None:
    """The first sync outlives its lease while its refresh is on the wire; a second worker takes the lease,
    refreshes (the provider rotates the refresh token) and completes. The first one's refresh then meets
    the rotated-out token: ``invalid_grant``. That is not a revocation: it stops fenced, the grant lives."""
    case = refreshing_case
    integration_id = case.link(runtime)
    assert case.token_path is not None
    case.expire_access()
    second: list[Any] = []

    def second_worker_takes_over() -> None:
        with runtime.engine.begin() as connection:  # the first sync's lease has run out meanwhile
            connection.execute(
                update(Integration)
                .where(Integration.id == integration_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        worker = threading.Thread(target=lambda: second.append(run_sync(runtime, integration_id)))
        worker.start()
        worker.join()

    fired = once_on(case.emulator, case.token_path, second_worker_takes_over)
    first = run_sync(runtime, integration_id)
    assert fired and [run.outcome for run in second] == ["ok"]
    assert first.outcome == "fenced"
    assert_complete(runtime, case, integration_id)
    assert run_sync(runtime, integration_id).outcome == "ok"  # the rotated tokens the second worker kept work


def test_a_sync_that_outlives_its_lease_stops_at_its_next_write_and_the_taker_completes(
    case: Case, runtime: Runtime
) -> None:
    """The first sync stalls on a page past its lease; a second takes the lease over and syncs the whole
    roster; the first wakes up, and its next write is fenced: two syncs never write at once."""
    integration_id = case.link(runtime)
    second: list[Any] = []

    def lease_runs_out_and_is_taken() -> None:
        with runtime.engine.begin() as connection:
            connection.execute(
                update(Integration)
                .where(Integration.id == integration_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        worker = threading.Thread(target=lambda: second.append(run_sync(runtime, integration_id)))
        worker.start()
        worker.join()

    fired = once_on(case.emulator, case.later_path, lease_runs_out_and_is_taken)
    first = run_sync(runtime, integration_id)
    assert fired and [run.outcome for run in second] == ["ok"]
    assert first.outcome == "fenced"
    assert_complete(runtime, case, integration_id)


def test_two_syncs_of_one_integration_started_at_once_run_once(case: Case, runtime: Runtime) -> None:
    integration_id = case.link(runtime)
    case.emulator.latency = 0.2  # the first is still running when the second asks for the lease
    results = run_at_once([lambda: run_sync(runtime, integration_id) for _ in range(2)])
    assert sorted(r.outcome for r in results) == ["ok", "skipped:busy"]
    assert_complete(runtime, case, integration_id)


# ------------------------------------------------------------------------------------- PostgreSQL
def test_a_postgresql_connection_dropped_mid_transaction_is_retried_and_loses_nothing(
    case: Case, runtime: Runtime, stub_broker: StubBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend of the sync's first write transaction is terminated after its fence lock is taken.

    A first sync writes through the bulk path (store.bulk), a later one page by page (store.roster): the
    first write of either is the one dropped."""
    integration_id = case.link(runtime)
    dropped: list[int] = []
    admin = sqlalchemy.create_engine(PG_ADMIN_URL)

    def dropping(apply_batch: Callable[..., Any]) -> Callable[..., Any]:
        def drop_then_apply(connection: Connection, *args: Any, **kwargs: Any) -> Any:
            if not dropped:
                pid = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
                with admin.connect() as other:  # this test's own backend, by pid: nobody else's
                    other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
                dropped.append(pid)
            return apply_batch(connection, *args, **kwargs)

        return drop_then_apply

    monkeypatch.setattr(roster, "apply_batch", dropping(roster.apply_batch))
    monkeypatch.setattr(bulk, "apply_batch", dropping(bulk.apply_batch))
    monkeypatch.setattr(bulk, "begin_batch", dropping(bulk.begin_batch))  # PostgreSQL's first sync (sync.listing)
    try:
        sync_integration.send(integration_id)
        brokers.drain(stub_broker)
    finally:
        admin.dispose()
    assert dropped
    assert outcomes(runtime, integration_id) == ["error", "ok"]
    assert stub_broker.dead_letters == []
    assert_complete(runtime, case, integration_id)
    with runtime.engine.connect() as connection:
        row = connection.execute(
            sqlalchemy.select(Integration.lease_owner).where(Integration.id == integration_id)
        ).one()
    assert row.lease_owner is None
