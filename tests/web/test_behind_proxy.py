"""A Clever teacher link through a real TLS-terminating proxy (Caddy) in front of `rostersync web`.

The web process sees plain http from the proxy. Where the proxy is not one of its trusted
addresses (a load balancer on another host, say), the forwarded scheme is ignored, as it must
be; the callback must complete anyway, because its URL is the configured redirect URI.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from emulators.clever import CleverEmulator
from store.vault import new_key
from tests.proxykit import caddy, free_port, rostersync_web, session
from tests.webkit import SIGNING_KEY, signed

pytestmark = pytest.mark.clever(teachers=1, students_per_course=3)

ELSEWHERE = "192.0.2.10"
"""A proxy address that is not this machine's (TEST-NET-1): nothing is ever sent there."""


def web_env(clever: CleverEmulator, tmp_path: Path, proxy_port: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
    return base | {
        "ROSTERSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "ROSTERSYNC_PSEUDONYM_KEY": secrets.token_urlsafe(48),
        "ROSTERSYNC_TOKEN_KEYS": new_key(),
        "ROSTERSYNC_LINK_SIGNING_KEY": SIGNING_KEY,
        "ROSTERSYNC_CA_BUNDLE": str(clever.ca_path),
        "ROSTERSYNC_CLEVER_CLIENT_ID": clever.client_id,
        "ROSTERSYNC_CLEVER_CLIENT_SECRET": clever.client_secret,
        "ROSTERSYNC_CLEVER_AUTHORIZE_URL": clever.authorize_url,
        "ROSTERSYNC_CLEVER_TOKEN_URL": clever.token_url,
        "ROSTERSYNC_CLEVER_API_BASE": clever.api_base,
        "ROSTERSYNC_CLEVER_REDIRECT_URI": f"https://127.0.0.1:{proxy_port}/oauth/clever/callback",
        # The proxy is not trusted: neither our setting nor uvicorn's own variable lists it.
        "ROSTERSYNC_FORWARDED_ALLOW_IPS": ELSEWHERE,
        "FORWARDED_ALLOW_IPS": ELSEWHERE,
    }


def test_a_clever_teacher_links_through_a_tls_terminating_proxy(clever: CleverEmulator, tmp_path: Path) -> None:
    web_port, proxy_port = free_port(), free_port()
    public = f"https://127.0.0.1:{proxy_port}"
    with (
        rostersync_web(web_env(clever, tmp_path, proxy_port), web_port),
        caddy(tmp_path / "caddy", port=proxy_port, upstream=web_port) as proxy_ca,
    ):
        trust = tmp_path / "browser-trust.pem"
        trust.write_text(proxy_ca.read_text() + Path(clever.ca_path).read_text())
        clever.set_consent_user(clever.teacher_ids()[0])
        with session(trust) as browser:
            query = signed("teacher-1", provider="clever")
            started = browser.get(f"{public}/link/clever", params=query, allow_redirects=False)
            assert started.status_code == 302, started.text
            consent = browser.get(started.headers["location"], allow_redirects=False, timeout=10)
            assert consent.status_code == 302
            back = consent.headers["location"]
            assert back.startswith(f"{public}/oauth/clever/callback?")
            landed = browser.get(back, timeout=30)
    assert "insecure_transport" not in landed.text
    assert landed.status_code == 200, landed.text
    assert "Your Clever account is linked" in landed.text
    assert [record.path for record in clever.requests if record.path.endswith("/oauth/tokens")]
