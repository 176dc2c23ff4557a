"""A link's consent followed headlessly, as a browser would: the demo, the benches and the tests link this way.

Its own module because every provider's kit (``devtools/providers/<name>.py``) links with it, and the
generic modules that iterate the kits import them: here it depends on neither.
"""

from __future__ import annotations

import requests


def headless_redirect(provider: str) -> str:
    """Where a headless link's consent returns (demo, bench): the URL is read from the provider's redirect and
    never opened, so a reserved ``.example`` host does; https, as every redirect URI must be."""
    return f"https://rostersync.example/oauth/{provider}/callback"


def redirect_setting(provider: str) -> dict[str, str]:
    """The flat ``Settings`` keyword of ``provider``'s redirect URI, pointed at the headless one."""
    return {f"{provider}_redirect_uri": headless_redirect(provider)}


def consent_headlessly(session: requests.Session, consent_url: str) -> str:
    """Follow the consent URL as a browser would, up to the redirect back to us; returns the callback URL."""
    response = session.get(consent_url, allow_redirects=False, timeout=10)
    location = response.headers.get("Location")
    if response.status_code != 302 or not location:
        raise RuntimeError(f"consent did not redirect back (HTTP {response.status_code})")
    return location
