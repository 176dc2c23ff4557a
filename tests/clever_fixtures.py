"""Clever fixtures shared by the Clever sync tests: an emulator, settings pointing at it, headless links."""

from __future__ import annotations

import secrets
from typing import Any

from devtools.demo import consent_headlessly, headless_redirect
from devtools.emulation import settings_values
from emulators.clever import CleverEmulator
from services.linking import complete_link, link_org, start_link
from settings import Settings
from store.runtime import Runtime
from store.vault import new_key


def clever_settings_for(clever: CleverEmulator, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": None,
        "pseudonym_key": secrets.token_urlsafe(48),
        "token_keys": new_key(),
        **settings_values("clever", clever),
        "clever_redirect_uri": headless_redirect("clever"),
        "retry_min_backoff_ms": 50,
        "retry_max_backoff_ms": 200,
        "http_timeout_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)


def link_district(runtime: Runtime, clever: CleverEmulator, index: int = 0, *, tenant: str | None = None) -> int:
    return link_org(runtime, provider_name="clever", org=clever.district_ids[index], tenant=tenant)


def link_clever_teacher(runtime: Runtime, clever: CleverEmulator, teacher_id: str, platform_teacher: str) -> int:
    """A teacher signs in with Clever headlessly (consent URL -> emulator -> callback)."""
    from connectors.clever import http_session

    clever.set_consent_user(teacher_id)
    url = start_link(runtime, provider_name="clever", teacher=platform_teacher)
    with http_session(runtime.settings) as browser:
        callback = consent_headlessly(browser, url)
    return complete_link(runtime, callback)


def clever_settings(emu: CleverEmulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "clever_client_id": emu.client_id,
        "clever_client_secret": emu.client_secret,
        "clever_authorize_url": emu.authorize_url,
        "clever_token_url": emu.token_url,
        "clever_api_base": emu.api_base,
        "clever_redirect_uri": "https://platform.example/integrations/clever/callback",
        "ca_bundle": emu.ca_path,
        "http_timeout_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)
