"""`rostersync web` as deploy.md runs it: a real uvicorn process answering /healthz and /openapi.json."""

from __future__ import annotations

import socket
import subprocess
import time

import requests

from settings import Settings
from tests.clikit import ROSTERSYNC, env_for


def test_rostersync_web_serves(sqlite_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = env_for(sqlite_settings) | {
        "ROSTERSYNC_ADMIN_TOKENS": "served-admin-token-0123456789abcdefghij",
        "ROSTERSYNC_OPENAPI_ENABLED": "true",
    }
    process = subprocess.Popen(
        [ROSTERSYNC, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.trust_env = False
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = session.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.1)
        assert health.json() == {"status": "ok", "database": "ok", "broker": "in-memory"}
        assert "/admin/integrations" in session.get(f"{base}/openapi.json", timeout=5).json()["paths"]
        assert session.get(f"{base}/admin/integrations", timeout=5).status_code == 401
        admin = {"Authorization": "Bearer served-admin-token-0123456789abcdefghij"}
        assert session.get(f"{base}/admin/integrations", headers=admin, timeout=5).json() == []
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, -15), stderr  # uvicorn shuts down gracefully, then re-raises SIGTERM
    assert b"Traceback" not in stderr
    assert b"GET /" not in stderr  # no access log: callback URLs carry the consent state
    said = stderr.decode()
    assert f"listening on {base}" in said  # where to point the proxy, said once it listens
    # What is unset is said at the start: here the admin API is configured, the rest is not.
    assert "ROSTERSYNC_LINK_SIGNING_KEY is not set" in said and "ROSTERSYNC_PLATFORM_TOKENS is not set" in said
    assert "ROSTERSYNC_ADMIN_TOKENS" not in said
