"""Rotated tokens and the database (issue 18, items 9 and 12), through the real sync cycle on SQLite and
PostgreSQL against the Google and Microsoft emulators (both rotate the refresh token on every refresh
and refuse the old one).

A failure to store is never a revocation: a blip while storing the rotated tokens is retried within
the run and loses neither the roster nor the grant; tokens that can never be stored are revoked at
the provider and the integration waits for a re-link with its roster kept. A re-seal by
``keys rotate`` changes the ciphertext, not the tokens: a revocation that lands meanwhile is still
read as one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from store import integrations
from store.models import AuditEvent
from store.runtime import Runtime, build_runtime, set_runtime
from store.secrets import reseal_all
from store.vault import new_key
from sync import tokens
from sync.cycle import run_sync
from tests.conftest import MessageRecorder
from tests.faults import Case, base_settings, once_on, outcomes, roster_of, started
from tests.helpers import row_count
from worker import broker as brokers
from worker.actors import sync_integration


@pytest.fixture(params=["google", "microsoft"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    yield from started(request.param, tmp_path)


@pytest.fixture
def runtime(case: Case, database_url: str) -> Iterator[Runtime]:
    rt = build_runtime(base_settings(database_url, case.emulator.ca_path, **case.settings_values()))
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.engine.dispose()


@pytest.fixture
def no_store_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-run retries of a store keep their count; the test does not sit through their waits."""
    monkeypatch.setattr(tokens, "STORE_WAITS", (0.0,) * len(tokens.STORE_WAITS))


def blip(*args: Any, **kwargs: Any) -> None:
    raise sqlalchemy.exc.OperationalError("UPDATE integrations", {}, Exception("server closed the connection"))


def failing_store(monkeypatch: pytest.MonkeyPatch, times: int | None) -> list[int]:
    """``integrations.store_tokens`` raises ``OperationalError`` ``times`` times (None: always); returns the calls."""
    real = integrations.store_tokens
    calls: list[int] = []

    def store(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if times is None or len(calls) <= times:
            blip()
        real(*args, **kwargs)

    monkeypatch.setattr(integrations, "store_tokens", store)
    return calls


def actions(runtime: Runtime, integration_id: int) -> list[str]:
    with runtime.engine.connect() as connection:
        return list(
            connection.execute(
                select(AuditEvent.action).where(AuditEvent.integration_id == integration_id).order_by(AuditEvent.id)
            ).scalars()
        )


def synced(runtime: Runtime, case: Case, broker: StubBroker) -> int:
    integration_id = case.link(runtime)
    sync_integration.send(integration_id)
    brokers.drain(broker)
    assert roster_of(runtime, integration_id) == case.expected()
    return integration_id


@pytest.fixture
def broker(runtime: Runtime) -> Iterator[StubBroker]:
    made = brokers.make_broker(runtime.settings)
    assert isinstance(made, StubBroker)
    made.add_middleware(MessageRecorder())
    brokers.install(made)
    yield made
    brokers.shutdown()


def test_a_database_blip_while_storing_rotated_tokens_keeps_the_roster_and_the_grant(
    case: Case, runtime: Runtime, broker: StubBroker, monkeypatch: pytest.MonkeyPatch, no_store_waits: None
) -> None:
    integration_id = synced(runtime, case, broker)
    rows = row_count(runtime.engine, integration_id)
    case.expire_access()  # the next sync refreshes, and the provider rotates the refresh token
    calls = failing_store(monkeypatch, times=1)
    sync_integration.send(integration_id)
    brokers.drain(broker)

    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert roster_of(runtime, integration_id) == case.expected()
    assert row_count(runtime.engine, integration_id) == rows
    assert "revoked" not in actions(runtime, integration_id) and "purged" not in actions(runtime, integration_id)
    assert len(calls) == 2  # the blip, then the store of the same tokens within the same run
    assert outcomes(runtime, integration_id)[-1] == "ok"
    assert broker.dead_letters == []

    # The stored tokens are the live ones: the next refresh goes through with them.
    monkeypatch.undo()
    case.expire_access()
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert roster_of(runtime, integration_id) == case.expected()


def test_rotated_tokens_that_can_never_be_stored_are_revoked_and_nothing_is_purged(
    case: Case, runtime: Runtime, broker: StubBroker, monkeypatch: pytest.MonkeyPatch, no_store_waits: None
) -> None:
    integration_id = synced(runtime, case, broker)
    rows = row_count(runtime.engine, integration_id)
    case.expire_access()
    calls = failing_store(monkeypatch, times=None)
    sync_integration.send(integration_id)
    brokers.drain(broker)

    state = integrations.load(runtime.engine, integration_id)
    assert row_count(runtime.engine, integration_id) == rows  # a failure to store is not a revocation
    assert state.status == "failed" and state.token_blob is None  # the rotated-out token is dead: kept nowhere
    assert outcomes(runtime, integration_id)[-1] == "tokens_not_stored"
    assert len(calls) == len(tokens.STORE_WAITS) + 1  # every attempt of the one run, then no retry of the run
    trail = actions(runtime, integration_id)
    assert "revoked" not in trail and "purged" not in trail
    if case.name == "google":  # the rotated grant, held by this run alone, ended at the provider
        assert "/revoke" in [r.path for r in case.emulator.requests]
        assert case.emulator.live_grants(case.emulator.teacher_ids[0]) == 0  # type: ignore[attr-defined]
        assert "provider_revoked" in trail
    else:  # Microsoft offers no revoke endpoint: said so in the audit log, never claimed as revoked
        assert "provider_revoke_unsupported" in trail
    assert trail[-2:] == ["failed", "sync_failed"]  # the run ends the integration as failed, then is audited
    assert integrations.resume_failed(runtime.engine, integration_id, actor="admin:test") is False  # re-link
    assert broker.dead_letters == []


def test_a_revocation_during_keys_rotate_is_still_a_revocation(
    case: Case, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync compares what its tokens are, not their ciphertext: a re-seal meanwhile changes only the latter."""
    old_key = new_key()
    values = case.settings_values()
    before = build_runtime(base_settings(database_url, case.emulator.ca_path, token_keys=old_key, **values))
    rotating = build_runtime(
        base_settings(
            database_url,
            case.emulator.ca_path,
            token_keys=f"{new_key()},{old_key}",
            pseudonym_key=before.settings.pseudonym_key.get_secret_value(),  # type: ignore[union-attr]
            **values,
        )
    )
    try:
        set_runtime(before)
        integration_id = case.link(before)
        assert run_sync(before, integration_id).outcome == "ok"
        set_runtime(rotating)

        def rotate_keys_and_revoke() -> None:
            assert reseal_all(rotating.engine, rotating.vault).tokens == 1
            case.end_grant()
            case.expire_access()

        fired = once_on(case.emulator, case.later_path, rotate_keys_and_revoke)
        assert run_sync(rotating, integration_id).outcome == "revoked"
        assert fired
        assert integrations.load(rotating.engine, integration_id).status == "revoked"
        assert row_count(rotating.engine, integration_id) == 0
    finally:
        set_runtime(None)
        before.engine.dispose()
        rotating.engine.dispose()
