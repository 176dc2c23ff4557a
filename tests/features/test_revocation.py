"""Revoked access honoured on every cycle (P3, P4): every path ends the integration, purges it, and stops calling."""

from __future__ import annotations

import pytest
from dramatiq.brokers.stub import StubBroker

from emulators.google import GoogleEmulator
from services.revoke import revoke_integration
from settings import GOOGLE_SCOPES
from store import audit as audit_log
from store import integrations
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.helpers import row_count
from worker import broker as brokers
from worker.actors import sync_integration


def user_requests(emulator: GoogleEmulator, user: str, since: int = 0) -> list[str]:
    return [r.path for r in emulator.requests[since:] if r.user_id == user]


def assert_ended(runtime: Runtime, integration_id: int, status: str, audit: str) -> None:
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == status
    assert state.token_blob is None
    assert row_count(runtime.engine, integration_id) == 0
    assert audit in audit_log.actions(runtime.engine, integration_id)
    assert "purged" in audit_log.actions(runtime.engine, integration_id)


def test_user_revoke_at_google_is_honoured_on_the_next_cycle(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, stub_broker: StubBroker
) -> None:
    integration_id = link(1)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    assert row_count(runtime.engine, integration_id) > 0

    emulator.revoke_grants(emulator.teacher_ids[1])
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    assert_ended(runtime, integration_id, "revoked", "revoked")
    assert stub_broker.dead_letters == []  # ended cleanly, not failed and not retried

    # Detected: no later cycle calls Google for this integration.
    seen = len(emulator.requests)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    assert emulator.requests[seen:] == []


def test_401_after_a_fresh_token_means_revoked(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = link(0)
    emulator.fail_next("/v1/courses", 401, count=5)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "revoked"
    assert_ended(runtime, integration_id, "revoked", "revoked")
    paths = [r.path for r in emulator.requests if r.path in ("/token", "/v1/courses")]
    # stale token -> 401 -> one refresh -> 401 again -> stop: no third try, no retry storm
    assert paths[-3:] == ["/v1/courses", "/token", "/v1/courses"]


def test_admin_disabling_classroom_access_blocks_and_is_no_revocation(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """A Workspace admin's "Classroom data access" switch is the school's, and reversible (issue 23):
    the integration waits ``blocked`` with its tokens and roster; nothing is purged or revoked at Google."""
    integration_id = link(0)
    run_sync(runtime, integration_id)
    rows = row_count(runtime.engine, integration_id)
    emulator.disable_api(emulator.teacher_ids[0])
    assert run_sync(runtime, integration_id).outcome == "access_blocked"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "blocked" and state.token_blob is not None
    assert row_count(runtime.engine, integration_id) == rows
    assert "purged" not in audit_log.actions(runtime.engine, integration_id)
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1


def test_withdrawn_scope_degrades_and_purges(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    emulator.withdraw_scope(emulator.teacher_ids[0], GOOGLE_SCOPES[1])
    assert run_sync(runtime, integration_id).outcome == "degraded"
    assert_ended(runtime, integration_id, "degraded", "degraded")
    seen = len(emulator.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:degraded"
    assert emulator.requests[seen:] == []


def test_admin_revoke_revokes_at_google_and_purges(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = link(2)
    run_sync(runtime, integration_id)
    result = revoke_integration(runtime, integration_id, actor="admin:test", reason="left school")
    assert result.provider_revoked
    assert_ended(runtime, integration_id, "revoked", "provider_revoked")
    assert emulator.requests[-1].path == "/revoke" and emulator.requests[-1].status == 200
    again = revoke_integration(runtime, integration_id, actor="admin:test")
    assert again.already_revoked


def test_revoke_between_two_pages_fences_every_later_write(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """The revoke commits while the sync waits for a page; that page and everything after is discarded."""
    integration_id = link(0)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    for _ in range(35):
        emulator.add_student(course)
    fired: list[int] = []
    batches: list[str] = []

    def revoke_mid_page(record: object) -> None:
        # The first batch carries every roster's first page; the second, the follow-up of the long one.
        if getattr(record, "path", "") == "/batch":
            batches.append("/batch")
            if len(batches) == 2:
                fired.append(len(emulator.requests))
                integrations.end_integration(
                    runtime.engine, integration_id, status="revoked", actor="admin:test", reason="mid-run"
                )

    emulator.add_hook(revoke_mid_page)
    outcome = run_sync(runtime, integration_id)
    assert fired, "the second page of a roster was requested"
    in_flight = emulator.requests[fired[0] :]
    assert any(r.path.endswith("/students") and "pageToken" in r.query for r in in_flight)
    assert outcome.outcome == "fenced"
    assert row_count(runtime.engine, integration_id) == 0
    # The batch in flight was the last call (its parts are logged just before it): nothing after the fence.
    assert in_flight[-1].path == "/batch" and all(r.path.startswith("/v1/courses/") for r in in_flight[:-1])
    assert integrations.load(runtime.engine, integration_id).status == "revoked"


def test_rate_limit_is_honoured_before_the_retry(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, stub_broker: StubBroker
) -> None:
    import time

    integration_id = link(0)
    stamps: list[tuple[str, float]] = []
    emulator.add_hook(lambda record: stamps.append((record.path, time.monotonic())))
    emulator.fail_next("/v1/courses", 429, count=1, retry_after=1)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    course_calls = [t for path, t in stamps if path == "/v1/courses"]
    assert len(course_calls) == 2
    assert course_calls[1] - course_calls[0] >= 1.0
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert row_count(runtime.engine, integration_id) > 0


def test_server_errors_are_retried_with_backoff(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, stub_broker: StubBroker
) -> None:
    """A batch refused as a whole: the actor retries the sync (a failing part is retried in place, below)."""
    integration_id = link(0)
    emulator.fail_next("/batch", 503, count=2)
    sync_integration.send(integration_id)
    brokers.drain(stub_broker)
    assert stub_broker.dead_letters == []
    assert row_count(runtime.engine, integration_id) > 0
    outcomes = [o for o in _run_outcomes(runtime)]
    assert outcomes == ["transient", "transient", "ok"]


def _run_outcomes(runtime: Runtime) -> list[str]:
    from sqlalchemy import select

    from store.models import SyncRun

    with runtime.engine.connect() as connection:
        return list(connection.execute(select(SyncRun.outcome).order_by(SyncRun.id)).scalars())


@pytest.mark.parametrize("status", [500, 503])
def test_transient_errors_surface_as_transient(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, status: int
) -> None:
    from connectors.base import TransientError

    integration_id = link(0)
    emulator.fail_next("/v1/courses", status, count=1)
    with pytest.raises(TransientError):
        run_sync(runtime, integration_id)
    assert integrations.load(runtime.engine, integration_id).status == "active"


def test_a_refused_refresh_that_is_not_invalid_grant_purges_nothing(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """A bad client secret or a proxy's error page at the token endpoint is retried, never taken as a revoke."""
    from connectors.base import TransientError

    integration_id = link(0)
    run_sync(runtime, integration_id)
    rows = row_count(runtime.engine, integration_id)
    emulator.expire_access_tokens(emulator.teacher_ids[0])
    emulator.fail_next("/token", 400, count=1)
    with pytest.raises(TransientError):
        run_sync(runtime, integration_id)
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert row_count(runtime.engine, integration_id) == rows


def test_a_stale_sync_cannot_end_a_relinked_integration(runtime: Runtime, link: Linker) -> None:
    from store.fence import Fenced

    integration_id = link(0)
    started_on = integrations.load(runtime.engine, integration_id).generation
    integrations.end_integration(runtime.engine, integration_id, status="revoked", actor="admin:test", reason="")
    relinked = link(0)
    assert relinked == integration_id
    with pytest.raises(Fenced):
        integrations.end_integration(
            runtime.engine,
            integration_id,
            status="revoked",
            actor="system:sync",
            reason="stale",
            expected_generation=started_on,
        )
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "active" and state.token_blob is not None
