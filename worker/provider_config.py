"""Whether a provider is configured on this server: its OAuth client id and secret are set.

By convention the settings are ``<provider>_client_id`` and ``<provider>_client_secret``, so a
provider that lands with its row in worker/providers.py and its settings needs nothing here.
"""

from __future__ import annotations

from pydantic import SecretStr

from settings import Settings


def configured(settings: Settings, provider: str) -> bool:
    client_id = getattr(settings, f"{provider}_client_id", "")
    secret = getattr(settings, f"{provider}_client_secret", SecretStr(""))
    secret_value = secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret or "")
    return bool(str(client_id or "").strip() and secret_value.strip())
