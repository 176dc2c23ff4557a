"""The callback URL a provider's code is exchanged with: the configured redirect URI, never the request's.

Behind a TLS-terminating proxy the web app sees plain http and whatever Host the proxy passes on;
requests-oauthlib refuses an http callback (``insecure_transport``) and a provider compares the
redirect URI it was given with the one it sent the teacher to. The configured
``<PROVIDER>_REDIRECT_URI`` is the one URL both sides agreed on, so only the query comes from
the request.
"""

from __future__ import annotations

from settings import Settings


def provider_callback_url(settings: Settings, provider: str, query: str) -> str:
    """The provider's ``redirect_uri`` plus the query string the browser brought back."""
    redirect_uri = settings.provider(provider).redirect_uri
    return f"{redirect_uri}?{query}" if query else redirect_uri
