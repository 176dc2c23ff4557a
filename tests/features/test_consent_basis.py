"""Promise P7: every link records its consent basis; without one, only teachers and classes sync, never students."""

from __future__ import annotations

from sqlalchemy import update

from emulators.google import GoogleEmulator
from settings import Settings
from store import integrations
from store.models import Integration
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.clikit import env_for, one_line_error, run
from tests.conftest import Linker
from tests.helpers import classes, people


def test_a_teacher_link_records_the_school_basis_by_default(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    assert integrations.load(runtime.engine, integration_id).consent_basis == "school"
    run_sync(runtime, integration_id)
    assert people(runtime.engine, integration_id, role="student")


def test_without_a_basis_no_student_is_requested_or_kept(
    runtime: Runtime, link: Linker, emulator: GoogleEmulator
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    assert people(runtime.engine, integration_id, role="student")  # synced under the school basis
    with runtime.engine.begin() as connection:  # e.g. a link made before bases were recorded
        connection.execute(update(Integration).where(Integration.id == integration_id).values(consent_basis=None))
    seen = len(emulator.requests)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    assert people(runtime.engine, integration_id, role="student", current=False) == []  # deleted, not soft-deleted
    assert people(runtime.engine, integration_id, role="teacher") and classes(runtime.engine, integration_id)
    assert not [r for r in emulator.requests[seen:] if r.path.endswith("/students")]


def test_link_start_takes_a_basis_and_refuses_others(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    assert run("link", "start", "--provider", "google", "--teacher", "t1", "--basis", "parent", env=env).returncode == 0
    one_line_error(
        run("link", "start", "--provider", "google", "--teacher", "t1", "--basis", "[/x]", env=env),
        "unknown consent basis",
        "school, parent",
    )
