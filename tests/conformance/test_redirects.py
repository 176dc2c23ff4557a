"""No connector follows a redirect (issue 18, item 23): every endpoint of every provider, answered 307 or 308.

A 307 or 308 tells a client to send the same method and body to another address. Followed, a
``/token`` call re-posts the client secret, the code and its PKCE verifier; ``/revoke`` the refresh
token; Google's ``/batch`` a bearer token in every part; and any API call its Authorization header
where the library does not strip it. The emulators' ``redirect_next`` control answers one endpoint
with a redirect to a ``trap`` (another port of 127.0.0.1 with the emulator's own certificate, so a
client that trusts the provider trusts the trap too). For each endpoint the connector must stop
with a ``TransientError`` and the trap must have received nothing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors import clever as clever_connector
from connectors import google as google_connector
from connectors import microsoft as microsoft_connector
from connectors.base import TokenSet, TransientError
from devtools.demo import headless_redirect
from emulators.clever import CleverEmulator
from emulators.core import EmulatorCore, Trap
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from tests.conftest import settings_for
from tests.faults import provider_values

# One teacher, one class of three: every endpoint is called once, so the smallest roster will do.
pytestmark = [
    pytest.mark.emulator(teachers=1, courses_per_teacher=1, students_per_course=3),
    pytest.mark.clever(teachers=1, courses_per_teacher=1, students_per_course=3),
    pytest.mark.microsoft(tenants=1, teachers=1, courses_per_teacher=1, students_per_course=3),
]

STATUSES = (307, 308)
GOOGLE_MASKS = {
    "class": "courses(id,name,section,courseState),nextPageToken",
    "student": "students(userId),nextPageToken",
    "teacher": "teachers(userId),nextPageToken",
}
GRAPH_MASKS = {"class": "id,displayName", "member": "id,primaryRole", "teacher": "id,displayName"}


def assert_refused(emulator: EmulatorCore, trap: Trap, path: str, status: int, call: Callable[[], Any]) -> None:
    """``call`` meets a redirect on ``path``: a TransientError, and the trap got nothing."""
    emulator.redirect_next(path, trap.base_url, status=status)
    with pytest.raises(TransientError):
        call()
    assert [r.status for r in emulator.requests if path in r.path][-1] == status, "the redirect was served"
    assert trap.received == [], f"a redirect from {path} was followed"


def test_the_trap_gets_what_a_client_that_follows_sends(tmp_path: Path) -> None:
    """The control is real: a plain requests session follows the 307 and hands the trap the form."""
    with GoogleEmulator(cert_dir=tmp_path, teachers=1, courses_per_teacher=1, students_per_course=1) as emu:
        trap = emu.trap()
        emu.redirect_next("/token", trap.base_url, status=307)
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(emu.ca_path)
            answer = session.post(emu.token_uri, data={"client_secret": "s3cret"}, timeout=5)
        assert answer.status_code == 200 and answer.history[0].status_code == 307
        assert [(r.method, r.path, r.form_value("client_secret")) for r in trap.received] == [
            ("POST", "/token", "s3cret")
        ]


# --------------------------------------------------------------------------------------- Google
def google_code(settings: Settings) -> tuple[str, str]:
    """A consent approved by the emulator: the code and its PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    url = google_connector.consent_url(settings, state="s", code_challenge=challenge)
    with google_connector.http_session(settings) as browser:
        location = browser.get(url, allow_redirects=False).headers["Location"]
    return parse_qs(urlsplit(location).query)["code"][0], verifier


def google_tokens(settings: Settings) -> TokenSet:
    code, verifier = google_code(settings)
    return google_connector.exchange_code(settings, code=code, code_verifier=verifier)


GOOGLE_CALLS: dict[str, tuple[str, Callable[[Settings, TokenSet], Any]]] = {
    "refresh": ("/token", lambda s, t: google_connector.GoogleConnector(s, t, lambda _t: None).refresh()),
    "revoke": ("/revoke", lambda s, t: google_connector.revoke_token(s, t.refresh_token)),
    "profile": ("/v1/userProfiles", lambda s, t: google_connector.account_id(s, t)),
    "courses": (
        "/v1/courses",
        lambda s, t: list(google_connector.GoogleConnector(s, t, lambda _t: None).classes(GOOGLE_MASKS)),
    ),
    "batch": ("/batch", lambda s, t: google_members(s, t)),
}


def google_members(settings: Settings, tokens: TokenSet) -> list[Any]:
    connector = google_connector.GoogleConnector(settings, tokens, lambda _t: None)
    courses = [record["id"] for page in connector.classes(GOOGLE_MASKS) for record in page.records]
    return list(connector.members(courses, GOOGLE_MASKS))


@pytest.mark.parametrize("status", STATUSES)
def test_google_code_exchange_is_not_redirected(emulator: GoogleEmulator, tmp_path: Path, status: int) -> None:
    settings = settings_for(emulator, f"sqlite:///{tmp_path / 'r.db'}")
    code, verifier = google_code(settings)
    assert_refused(
        emulator,
        emulator.trap(),
        "/token",
        status,
        lambda: google_connector.exchange_code(settings, code=code, code_verifier=verifier),
    )


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("call", sorted(GOOGLE_CALLS))
def test_google_endpoints_are_not_redirected(emulator: GoogleEmulator, tmp_path: Path, call: str, status: int) -> None:
    settings = settings_for(emulator, f"sqlite:///{tmp_path / 'r.db'}")
    tokens = google_tokens(settings)
    path, action = GOOGLE_CALLS[call]
    assert_refused(emulator, emulator.trap(), path, status, lambda: action(settings, tokens))


# --------------------------------------------------------------------------------------- Clever
def clever_settings(emu: CleverEmulator) -> Settings:
    values = provider_values("clever", emu) | {"clever_redirect_uri": headless_redirect("clever")}
    return Settings(**values, http_timeout_seconds=5)  # the emulator's CA is in provider_values


def clever_reader(settings: Settings, emu: CleverEmulator) -> clever_connector.CleverConnector:
    district = emu.district_ids[0]
    token = clever_connector.district_token(settings, district)
    assert token is not None
    return clever_connector.CleverConnector(settings, token, district_id=district)


CLEVER_CALLS: dict[str, tuple[str, Callable[[clever_connector.CleverConnector, CleverEmulator], Any]]] = {
    "me": ("/v3.0/me", lambda c, e: c.me()),
    "user": ("/v3.0/users/", lambda c, e: c.user(e.teacher_ids(e.district_ids[0])[0])),
    "section": ("/v3.0/sections/", lambda c, e: c.section(e.section_ids(e.district_ids[0])[0])),
    "sections": ("/v3.0/sections", lambda c, e: list(c.sections())),
    "teacher sections": (
        "/sections",
        lambda c, e: list(c.teacher_sections(e.teacher_ids(e.district_ids[0])[0])),
    ),
    "teachers": ("/v3.0/users", lambda c, e: list(c.teachers())),
    "section users": (
        "/users",
        lambda c, e: list(c.section_users(e.section_ids(e.district_ids[0])[0], "teacher")),
    ),
    "latest event": ("/v3.0/events", lambda c, e: c.latest_event_id()),
    "events": ("/v3.0/events", lambda c, e: list(c.events(None))),
}


@pytest.mark.parametrize("status", STATUSES)
def test_clever_code_exchange_is_not_redirected(clever: CleverEmulator, status: int) -> None:
    settings = clever_settings(clever)
    clever.set_consent_user(clever.teacher_ids(clever.district_ids[0])[0])
    with clever_connector.http_session(settings) as browser:
        url = clever_connector.authorization_url(settings, state="s")
        callback = browser.get(url, allow_redirects=False).headers["Location"]
    assert_refused(
        clever,
        clever.trap(),
        "/oauth/tokens",
        status,
        lambda: clever_connector.exchange_code(settings, authorization_response=callback, state="s"),
    )


@pytest.mark.parametrize("status", STATUSES)
def test_clever_token_list_is_not_redirected(clever: CleverEmulator, status: int) -> None:
    settings = clever_settings(clever)
    assert_refused(clever, clever.trap(), "/oauth/tokens", status, lambda: clever_connector.district_tokens(settings))


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("call", sorted(CLEVER_CALLS))
def test_clever_api_calls_are_not_redirected(clever: CleverEmulator, call: str, status: int) -> None:
    settings = clever_settings(clever)
    path, action = CLEVER_CALLS[call]
    with clever_reader(settings, clever) as reader:
        assert_refused(clever, clever.trap(), path, status, lambda: action(reader, clever))


# ------------------------------------------------------------------------------------ Microsoft
def microsoft_settings(emu: MicrosoftEmulator) -> Settings:
    values = provider_values("microsoft", emu)
    return Settings(
        **values,  # the emulator's CA included
        http_timeout_seconds=5,
        microsoft_redirect_uri="https://platform.example/integrations/microsoft/callback",
    )


def graph_reader(settings: Settings, emu: MicrosoftEmulator) -> microsoft_connector.MicrosoftConnector:
    tenant = emu.tenant_ids[0]
    grant = microsoft_connector.link_tenant(settings, tenant)
    return microsoft_connector.MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant)


def graph_members(reader: microsoft_connector.MicrosoftConnector) -> list[Any]:
    classes = [record["id"] for page in reader.classes(GRAPH_MASKS) for record in page.records]
    return list(reader.members(classes, GRAPH_MASKS))


GRAPH_CALLS: dict[str, tuple[str, Callable[[microsoft_connector.MicrosoftConnector], Any]]] = {
    "classes": ("/education/classes", lambda r: list(r.classes(GRAPH_MASKS))),
    "batch": ("/$batch", graph_members),
    "delta": ("/delta", lambda r: r.change_cursor(GRAPH_MASKS)),
}


@pytest.mark.parametrize("status", STATUSES)
def test_microsoft_openid_configuration_is_not_redirected(microsoft: MicrosoftEmulator, status: int) -> None:
    settings = microsoft_settings(microsoft)
    assert_refused(
        microsoft,
        microsoft.trap(),
        "openid-configuration",
        status,
        lambda: microsoft_connector.start_teacher_link(settings),
    )


@pytest.mark.parametrize("status", STATUSES)
def test_microsoft_token_endpoint_is_not_redirected(microsoft: MicrosoftEmulator, status: int) -> None:
    settings = microsoft_settings(microsoft)
    assert_refused(
        microsoft,
        microsoft.trap(),
        "/oauth2/v2.0/token",
        status,
        lambda: microsoft_connector.link_tenant(settings, microsoft.tenant_ids[0]),
    )


@pytest.mark.parametrize("status", STATUSES)
def test_microsoft_link_probe_is_not_redirected(microsoft: MicrosoftEmulator, status: int) -> None:
    settings = microsoft_settings(microsoft)
    assert_refused(
        microsoft,
        microsoft.trap(),
        "/education/classes",
        status,
        lambda: microsoft_connector.link_tenant(settings, microsoft.tenant_ids[0]),
    )


@pytest.mark.parametrize("status", STATUSES)
def test_microsoft_token_refresh_is_not_redirected(microsoft: MicrosoftEmulator, status: int) -> None:
    settings = microsoft_settings(microsoft)
    with graph_reader(settings, microsoft) as reader:
        microsoft.expire_access_tokens()  # Graph refuses the cached token: the connector forces one refresh
        assert_refused(
            microsoft, microsoft.trap(), "/oauth2/v2.0/token", status, lambda: list(reader.classes(GRAPH_MASKS))
        )


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("call", sorted(GRAPH_CALLS))
def test_graph_calls_are_not_redirected(microsoft: MicrosoftEmulator, call: str, status: int) -> None:
    settings = microsoft_settings(microsoft)
    path, action = GRAPH_CALLS[call]
    with graph_reader(settings, microsoft) as reader:
        assert_refused(microsoft, microsoft.trap(), path, status, lambda: action(reader))
