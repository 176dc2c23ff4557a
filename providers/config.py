"""Whether a provider can link on this server, and if not, which settings stop it.

Every provider's settings model has ``client_id``, ``client_secret`` and ``redirect_uri``
(``settings.ProviderSettings``), so a provider that lands with its row in providers/registry.py and its
settings needs nothing here. Every problem names the setting's variable, never its value.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from settings import Settings, env_name

REQUIRED = ("client_id", "client_secret", "redirect_uri")
CALLBACK_PATH = "/oauth/{provider}/callback"
"""The path web/linking.py serves; a redirect URI for linking in the browser must end in it."""


def _is_set(settings: Settings, provider: str, field: str) -> bool:
    value = getattr(settings.provider(provider), field)
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
    return bool(text.strip())


def missing(settings: Settings, provider: str) -> list[str]:
    """What stops the provider linking at all, from the command line or the browser."""
    return [
        f"{env_name(provider, field)} is not set" for field in REQUIRED if not _is_set(settings, provider, field)
    ]


def configured(settings: Settings, provider: str) -> bool:
    return not missing(settings, provider)


def browser_problems(settings: Settings, provider: str) -> list[str]:
    """``missing`` plus what linking in the browser needs: this app's callback, and the platform's signing key."""
    problems = missing(settings, provider)
    redirect = settings.provider(provider).redirect_uri
    path = CALLBACK_PATH.format(provider=provider)
    if redirect and not urlsplit(redirect).path.endswith(path):
        problems.append(f"{env_name(provider, 'redirect_uri')} does not end in {path}")
    if settings.link_signing_key is None:
        problems.append("ROSTERSYNC_LINK_SIGNING_KEY is not set (no linking in the browser)")
    return problems
