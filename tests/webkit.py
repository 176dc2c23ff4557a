"""Fixtures and helpers for the web app: an app on a runtime of its own, a browser that follows consent."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator
from settings import Settings
from store import runs
from store.runtime import Runtime
from tests.conftest import settings_for
from web.signing import signature

ADMIN_TOKENS = ("admin-token-one-0123456789abcdefghij", "admin-token-two-9876543210jihgfedcba")
REDIRECT = "https://rostersync.test/oauth/google/callback"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKENS[1]}"}
PLATFORM_TOKENS = ("platform-token-one-0123456789abcdefghij", "platform-token-two-9876543210jihgfedcba")
PLATFORM = {"Authorization": f"Bearer {PLATFORM_TOKENS[0]}"}
SIGNING_KEY = "link-signing-key-for-tests-0123456789"


def signed(
    teacher: str, *, tenant: str | None = None, basis: str = "school", lifetime: int = 540, provider: str = "google"
) -> dict[str, str]:
    """The query the platform puts on a /link/PROVIDER URL it hands a logged-in teacher (a fresh nonce each)."""
    expires = int(time.time()) + lifetime
    nonce = secrets.token_urlsafe(16)
    sig = signature(
        SIGNING_KEY, provider=provider, teacher=teacher, tenant=tenant, basis=basis, expires=expires, nonce=nonce
    )
    query = {"teacher": teacher, "basis": basis, "expires": str(expires), "nonce": nonce, "sig": sig}
    return query | ({"tenant": tenant} if tenant is not None else {})


def web_settings(emulator: GoogleEmulator, database_url: str, **overrides: Any) -> Settings:
    return settings_for(
        emulator,
        database_url,
        admin_tokens=",".join(ADMIN_TOKENS),
        platform_tokens=",".join(PLATFORM_TOKENS),
        link_signing_key=SIGNING_KEY,
        google_redirect_uri=REDIRECT,
        manual_sync_cooldown_seconds=300,
        **({"openapi_enabled": True} | overrides),
    )


def browser(emulator: GoogleEmulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.ca_path)
    return session


def consent(client: TestClient, emulator: GoogleEmulator, teacher: str, *, teacher_index: int = 0, **query: str) -> str:
    """Start at a signed /link/google, let the emulator approve; returns the path+query the browser lands on."""
    emulator.set_consent_user(emulator.teacher_ids[teacher_index])
    started = client.get("/link/google", params=signed(teacher, **query), follow_redirects=False)
    assert started.status_code == 302, started.text
    assert started.headers["location"].startswith(emulator.auth_uri + "?")
    approved = browser(emulator).get(started.headers["location"], allow_redirects=False, timeout=10)
    assert approved.status_code == 302
    landing = approved.headers["Location"]
    assert landing.startswith(REDIRECT + "?")
    parts = urlsplit(landing)
    return f"{parts.path}?{parts.query}"


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def first_run_done(rt: Runtime, integration_id: int) -> bool:
    return runs.latest_outcomes(rt.engine, [integration_id], after_run=0).get(integration_id) == "ok"
