"""Microsoft fixtures shared by the Microsoft sync tests: settings pointing at the emulator, headless links,
and readers of the emulator's request log."""

from __future__ import annotations

import secrets
from typing import Any

from devtools.demo import consent_headlessly
from devtools.emulation import settings_values
from emulators.core import RequestRecord
from emulators.microsoft import MicrosoftEmulator
from services.linking import complete_link, link_org, start_link
from settings import Settings
from store.runtime import Runtime
from store.vault import new_key
from tests.helpers import classes, enrollments, people

Roster = tuple[set[str], set[str], set[tuple[int, int]]]


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


def ms_settings(emu: MicrosoftEmulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "microsoft_client_id": emu.client_id,
        "microsoft_client_secret": emu.client_secret,
        "microsoft_authority_host": emu.authority_host,
        "graph_endpoint": emu.graph_endpoint,
        "microsoft_redirect_uri": "https://platform.example/integrations/microsoft/callback",
        "ca_bundle": emu.ca_path,
        "http_timeout_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)


def link_by_kind(runtime: Runtime, microsoft: MicrosoftEmulator, kind: str) -> int:
    """A teacher link (the first teacher of the first tenant) or a tenant link (the first tenant)."""
    tenant = microsoft.tenant_ids[0]
    if kind == "teacher":
        return link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(tenant)[0])
    return link_org(runtime, provider_name="microsoft", org=tenant)


def linked_user(microsoft: MicrosoftEmulator, kind: str) -> str:
    """Whom the emulator's log names for the link's requests: the teacher, or the tenant."""
    tenant = microsoft.tenant_ids[0]
    return microsoft.teacher_ids(tenant)[0] if kind == "teacher" else tenant


def roster(runtime: Runtime, integration_id: int) -> Roster:
    return (
        {c.external_id for c in classes(runtime.engine, integration_id)},
        {p.pseudonym for p in people(runtime.engine, integration_id)},
        {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)},
    )
