"""Redirect URIs (issue 18, item 8): one rule for Google, Clever and Microsoft. https only; required before a
provider can link; in the browser it must be this app's callback; ``/providers`` says what is missing and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from emulators.google import GoogleEmulator
from settings import Settings
from store.runtime import build_runtime
from tests.clikit import env_for, one_line_error, run
from tests.conftest import settings_for
from tests.webkit import SIGNING_KEY, signed
from web.app import create_app

NAMES = ("google_redirect_uri", "clever_redirect_uri", "microsoft_redirect_uri")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("url", ["http://evil.example/cb", "https:///no-host", "javascript:alert(1)"])
def test_every_redirect_uri_must_be_https(name: str, url: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        Settings(**{name: url})


def test_no_placeholder_redirect_uri_by_default() -> None:
    flat = Settings().flat_values()
    assert {name: flat[name] for name in NAMES} == dict.fromkeys(NAMES, "")


def test_providers_say_what_is_missing_and_the_link_page_refuses(emulator: GoogleEmulator, tmp_path: Path) -> None:
    settings = settings_for(
        emulator, f"sqlite:///{tmp_path / 'web.db'}", google_redirect_uri="", link_signing_key=SIGNING_KEY
    )
    rt = build_runtime(settings)
    with TestClient(create_app(rt)) as web:
        listed = {one["name"]: one for one in web.get("/providers").json()}
        assert listed["google"] == {
            "name": "google",
            "configured": False,
            "problems": ["ROSTERSYNC_GOOGLE_REDIRECT_URI is not set"],
        }
        assert listed["clever"]["problems"] == [
            "ROSTERSYNC_CLEVER_CLIENT_ID is not set",
            "ROSTERSYNC_CLEVER_CLIENT_SECRET is not set",
            "ROSTERSYNC_CLEVER_REDIRECT_URI is not set",
        ]
        page = web.get("/link/google", params=signed("t"), follow_redirects=False)
        assert page.status_code == 503 and "Connecting Google Classroom is not available yet" in page.text
    rt.engine.dispose()


def test_in_the_browser_the_redirect_uri_is_this_apps_callback(emulator: GoogleEmulator, tmp_path: Path) -> None:
    elsewhere = "https://platform.example/integrations/google/callback"
    settings = settings_for(
        emulator, f"sqlite:///{tmp_path / 'web.db'}", google_redirect_uri=elsewhere, link_signing_key=SIGNING_KEY
    )
    rt = build_runtime(settings)
    with TestClient(create_app(rt)) as web:
        [google] = [one for one in web.get("/providers").json() if one["name"] == "google"]
        assert google["configured"] is False
        assert google["problems"] == ["ROSTERSYNC_GOOGLE_REDIRECT_URI does not end in /oauth/google/callback"]
        assert web.get("/link/google", params=signed("t"), follow_redirects=False).status_code == 503
    rt.engine.dispose()


def test_without_a_signing_key_providers_say_so(emulator: GoogleEmulator, tmp_path: Path) -> None:
    rt = build_runtime(settings_for(emulator, f"sqlite:///{tmp_path / 'web.db'}"))
    with TestClient(create_app(rt)) as web:
        [google] = [one for one in web.get("/providers").json() if one["name"] == "google"]
        assert google == {
            "name": "google",
            "configured": False,
            "problems": ["ROSTERSYNC_LINK_SIGNING_KEY is not set (no linking in the browser)"],
        }
    rt.engine.dispose()


def test_link_start_without_a_redirect_uri_is_one_line(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings) | {"ROSTERSYNC_GOOGLE_REDIRECT_URI": ""}
    result = run("link", "start", "--provider", "google", "--teacher", "t", env=env)
    one_line_error(result, "google is not configured", "ROSTERSYNC_GOOGLE_REDIRECT_URI is not set")
