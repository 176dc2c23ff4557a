"""Microsoft fixtures shared by the Microsoft sync tests: settings pointing at the emulator, headless links,
and readers of the emulator's request log."""

from __future__ import annotations

import secrets
from typing import Any

from devtools.demo import consent_headlessly
from devtools.emulation import settings_values
from emulators.core import RequestRecord
from emulators.microsoft import MicrosoftEmulator
from services.linking import complete_link, start_link
from settings import Settings
from store.runtime import Runtime
from store.vault import new_key


def microsoft_settings_for(emu: MicrosoftEmulator, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": None,
        "pseudonym_key": secrets.token_urlsafe(48),
        "token_keys": new_key(),
        **settings_values("microsoft", emu),
        "microsoft_redirect_uri": "https://platform.example/integrations/microsoft/callback",
        "retry_min_backoff_ms": 50,
        "retry_max_backoff_ms": 200,
        "http_timeout_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)


def microsoft_env(settings: Settings) -> dict[str, str]:
    """The ``ROSTERSYNC_MICROSOFT_*`` and ``GRAPH_ENDPOINT`` variables a worker process needs."""
    return {
        "ROSTERSYNC_MICROSOFT_CLIENT_ID": settings.microsoft.client_id,
        "ROSTERSYNC_MICROSOFT_CLIENT_SECRET": settings.microsoft.client_secret.get_secret_value(),
        "ROSTERSYNC_MICROSOFT_AUTHORITY_HOST": settings.microsoft.authority_host,
        "ROSTERSYNC_MICROSOFT_REDIRECT_URI": settings.microsoft.redirect_uri,
        "ROSTERSYNC_GRAPH_ENDPOINT": settings.microsoft.graph_endpoint,
    }


def link_microsoft_teacher(
    runtime: Runtime, emu: MicrosoftEmulator, user_id: str, platform_teacher: str = "t-1", tenant: str | None = None
) -> int:
    """link start -> the emulator's consent screen (headless) -> link complete."""
    from connectors.microsoft import http_session

    emu.set_signin_user(user_id)
    url = start_link(runtime, provider_name="microsoft", teacher=platform_teacher, tenant=tenant)
    with http_session(runtime.settings) as browser:
        callback = consent_headlessly(browser, url)
    return complete_link(runtime, callback)


def graph_reads(emu: MicrosoftEmulator, since: int = 0) -> list[RequestRecord]:
    """Graph requests in the log from ``since`` on: each ``$batch`` POST and each of its sub-requests."""
    return [r for r in emu.requests[since:] if r.path.startswith("/v1.0/")]


def token_calls(emu: MicrosoftEmulator, since: int = 0) -> list[RequestRecord]:
    return [r for r in emu.requests[since:] if r.path.endswith("/oauth2/v2.0/token")]
