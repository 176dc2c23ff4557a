"""A provider revoke that fails transiently is kept sealed, retried by the worker, then confirmed or given up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from emulators.google import GoogleEmulator
from services.revoke import revoke_integration
from store import audit, overview, pending_revokes
from store.db import utcnow
from store.models import PendingRevoke
from store.runtime import Runtime
from store.secrets import reseal_all
from store.vault import TokenVault, new_key
from sync.cycle import run_sync
from sync.grants import AtProvider
from tests.conftest import Linker
from tests.helpers import dump_tables, row_count
from worker.scheduler import run_due_here


def make_due(runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(update(PendingRevoke).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_a_failed_provider_revoke_is_retried_then_confirmed(
    runtime: Runtime, link: Linker, emulator: GoogleEmulator
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    teacher = emulator.teacher_ids[0]
    emulator.fail_next("/revoke", 503, count=2)

    result = revoke_integration(runtime, integration_id, actor="admin:test", reason="left")
    assert result.at_provider is AtProvider.PENDING
    assert row_count(runtime.engine, integration_id) == 0  # the local revoke did not wait for the provider
    assert emulator.live_grants(teacher) == 1
    [pending] = pending_revokes.summaries(runtime.engine)
    assert pending.attempts == 1 and "503" in pending.last_error
    assert run_due_here(runtime).revokes == 0  # not due yet: backoff

    make_due(runtime)
    assert run_due_here(runtime).revokes == 1  # second failure, still pending
    assert pending_revokes.summaries(runtime.engine)[0].attempts == 2
    make_due(runtime)
    run_due_here(runtime)
    assert emulator.live_grants(teacher) == 0
    assert pending_revokes.summaries(runtime.engine) == []
    assert audit.actions(runtime.engine, integration_id)[-2:] == [
        "provider_revoke_pending",
        "provider_revoked",
    ]
    # Revoking twice is harmless: nothing new at the provider, nothing new pending.
    assert revoke_integration(runtime, integration_id, actor="admin:test").already_revoked
    assert pending_revokes.summaries(runtime.engine) == []


def test_a_revoke_that_never_succeeds_is_audited_as_failed_and_forgotten(
    runtime: Runtime, link: Linker, emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "revoke_retry_max_attempts", 3)
    integration_id = link(0)
    emulator.fail_next("/revoke", 503, count=100)
    assert revoke_integration(runtime, integration_id, actor="admin:test").at_provider is AtProvider.PENDING
    for _ in range(2):
        make_due(runtime)
        run_due_here(runtime)
    assert pending_revokes.summaries(runtime.engine) == []
    assert audit.actions(runtime.engine, integration_id)[-1] == "provider_revoke_failed"
    assert "after 3 attempts" in overview.audit(runtime.engine, integration_id=integration_id)[0].reason
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1  # for an admin to end at the provider
    assert b"refresh_token" not in dump_tables(runtime.engine).encode()


def test_the_pending_token_is_sealed(runtime: Runtime, link: Linker, emulator: GoogleEmulator) -> None:
    integration_id = link(0)
    emulator.fail_next("/revoke", 503)
    revoke_integration(runtime, integration_id, actor="admin:test")
    dump = dump_tables(runtime.engine)
    assert not [token for token in emulator.issued_tokens() if token in dump]


def test_keys_rotate_reseals_pending_revokes(runtime: Runtime, link: Linker, emulator: GoogleEmulator) -> None:
    integration_id = link(0)
    emulator.fail_next("/revoke", 503)
    revoke_integration(runtime, integration_id, actor="admin:test")
    assert runtime.settings.token_keys is not None
    old = runtime.settings.token_keys.get_secret_value()
    fresh = new_key()
    report = reseal_all(runtime.engine, TokenVault(f"{fresh},{old}"))
    assert report.pending_revokes == 1
    with runtime.engine.connect() as connection:
        blob = connection.execute(select(PendingRevoke.token_blob)).scalar_one()
    Fernet(fresh.encode()).decrypt(blob)  # opens with the new key alone
