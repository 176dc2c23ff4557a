"""Whether a provider can link on this server, and if not, which settings stop it.

By convention the settings are ``<provider>_client_id``, ``<provider>_client_secret`` and
``<provider>_redirect_uri``, so a provider that lands with its row in providers/registry.py and its
settings needs nothing here. Every problem names the setting, never its value.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from settings import Settings

REQUIRED = ("client_id", "client_secret", "redirect_uri")
CALLBACK_PATH = "/oauth/{provider}/callback"
"""The path web/linking.py serves; a redirect URI for linking in the browser must end in it."""


def _is_set(settings: Settings, name: str) -> bool:
    value = getattr(settings, name, "")
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
    return bool(text.strip())


def missing(settings: Settings, provider: str) -> list[str]:
    """What stops the provider linking at all, from the command line or the browser."""
    return [
        f"ROSTERSYNC_{provider.upper()}_{suffix.upper()} is not set"
        for suffix in REQUIRED
        if not _is_set(settings, f"{provider}_{suffix}")
    ]


def configured(settings: Settings, provider: str) -> bool:
    return not missing(settings, provider)


def browser_problems(settings: Settings, provider: str) -> list[str]:
    """``missing`` plus what linking in the browser needs: this app's callback, and the platform's signing key."""
    problems = missing(settings, provider)
    redirect = str(getattr(settings, f"{provider}_redirect_uri", "") or "")
    path = CALLBACK_PATH.format(provider=provider)
    if redirect and not urlsplit(redirect).path.endswith(path):
        problems.append(f"ROSTERSYNC_{provider.upper()}_REDIRECT_URI does not end in {path}")
    if settings.link_signing_key is None:
        problems.append("ROSTERSYNC_LINK_SIGNING_KEY is not set (no linking in the browser)")
    return problems
