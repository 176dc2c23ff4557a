"""Google steps shared by feature tests (the Google emulator is their reference provider), beside
``clever_fixtures.py`` and ``microsoft_fixtures.py``; Google's settings and headless link are in
``tests/conftest.py`` (``settings``, ``link``), which most files already use.

Why a module: the rights and retention tests both need an integration that failed after an outage; the
retention tests used to import the step from ``test_rights.py``, a test module.
"""

from __future__ import annotations

from emulators.google import GoogleEmulator
from store import integrations
from store.runtime import Runtime
from worker.retry_policy import run_with_retries


def failed_after_an_outage(runtime: Runtime, emulator: GoogleEmulator, integration_id: int) -> None:
    """A 503 with no retries left: the integration is `failed`, its token readable and its grant live."""
    runtime.settings.max_retries = 0
    emulator.fail_next("/v1/courses", 503)
    assert run_with_retries(runtime, integration_id, sleep=lambda _: None) == "transient"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "failed" and state.token_blob is not None
