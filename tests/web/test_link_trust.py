"""Trust at the edges of a browser link: bound to the browser that began it, signed once, framed, on its own path.

Issue 18, items 1, 3, 5 and 6 (and item 2 as a teacher sees it): each attack as it was made.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from emulators.google import GoogleEmulator
from store import audit, integrations
from store.models import LinkAttempt
from store.runtime import Runtime, build_runtime, set_runtime
from tests.clikit import env_for, run
from tests.conftest import link_teacher
from tests.webkit import REDIRECT, SIGNING_KEY, browser, consent, signed, web_settings
from web.app import create_app
from web.signing import signature
from worker import broker as brokers

COOKIE = "__Host-rostersync-link"


def attempts(rt: Runtime) -> int:
    with rt.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(LinkAttempt)).scalar_one())


def other_browser(client: TestClient) -> TestClient:
    """A second browser on the same server: its own (empty) cookie jar."""
    return TestClient(client.app, base_url="https://rostersync.test")


def consent_url(client: TestClient, teacher: str) -> str:
    started = client.get("/link/google", params=signed(teacher), follow_redirects=False)
    assert started.status_code == 302, started.text
    return started.headers["location"]


def approve(emulator: GoogleEmulator, url: str, teacher_index: int) -> str:
    """The provider's consent screen, approved by the seeded teacher ``teacher_index``; the landing path+query."""
    emulator.set_consent_user(emulator.teacher_ids[teacher_index])
    approved = browser(emulator).get(url, allow_redirects=False, timeout=10)
    assert approved.status_code == 302
    parts = urlsplit(approved.headers["Location"])
    return f"{parts.path}?{parts.query}"


# --- item 1: the link is bound to the browser that began it ------------------------------------------
def test_a_consent_url_forwarded_to_another_teacher_links_nothing(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    url = consent_url(client, "teacher-m")  # M's browser holds the cookie
    landing = approve(emulator, url, teacher_index=1)  # T consents, in her own browser
    page = other_browser(client).get(landing)
    assert page.status_code == 400 and "Connecting could not finish in this browser" in page.text
    assert "has to finish in the same browser where it started" in page.text and "Connect button again" in page.text
    assert integrations.summaries(web_runtime.engine) == []
    assert emulator.live_grants(emulator.teacher_ids[1]) == 0  # T's code was never even exchanged
    assert client.get(landing).status_code == 400  # the state is spent: M cannot finish it afterwards either


def test_a_state_of_another_browser_is_refused_even_with_a_cookie(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    url = consent_url(client, "teacher-m")
    attacker = other_browser(client)
    consent_url(attacker, "teacher-x")  # a cookie of its own, for a link of its own
    page = attacker.get(approve(emulator, url, teacher_index=1))
    assert page.status_code == 400 and "Connecting could not finish in this browser" in page.text
    assert integrations.summaries(web_runtime.engine) == []


def test_the_binding_cookie_is_host_only_secure_httponly_lax_and_cleared_after_use(
    client: TestClient, emulator: GoogleEmulator
) -> None:
    started = client.get("/link/google", params=signed("teacher-c"), follow_redirects=False)
    cookie = started.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path=/", "samesite=lax"} <= attributes
    assert not any(part.startswith("domain") for part in attributes)
    finished = client.get(approve(emulator, started.headers["location"], teacher_index=0))
    assert finished.status_code == 200
    assert COOKIE not in client.cookies  # spent with the state


def test_a_headless_state_is_refused_by_the_web_callback(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    from services.linking import start_link

    url = start_link(web_runtime, provider_name="google", teacher="teacher-h")
    page = client.get(approve(emulator, url, teacher_index=0))
    assert page.status_code == 400 and "Connecting could not finish in this browser" in page.text
    assert "rostersync link" not in page.text  # an operator's command is no teacher's advice
    assert integrations.summaries(web_runtime.engine) == []


def test_a_browser_state_is_refused_by_link_complete(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    from services.linking import LinkError, complete_link

    landing = approve(emulator, consent_url(client, "teacher-b"), teacher_index=0)
    with pytest.raises(LinkError, match="started in a browser"):
        complete_link(web_runtime, "https://rostersync.test" + landing)
    assert integrations.summaries(web_runtime.engine) == []


# --- item 3: a signed link is used once and lives ten minutes at most ----------------------------------
def test_a_signed_link_replayed_200_times_starts_one_link(emulator: GoogleEmulator, database_url: str) -> None:
    """The per-client rate limit is off here: the nonce alone must refuse every replay."""
    runtime = build_runtime(web_settings(emulator, database_url, link_requests_per_minute=0))
    try:
        with TestClient(create_app(runtime), base_url="https://rostersync.test") as client:
            query = signed("teacher-r")
            assert client.get("/link/google", params=query, follow_redirects=False).status_code == 302
            for _ in range(200):
                again = client.get("/link/google", params=query, follow_redirects=False)
                assert again.status_code == 403 and "This link was already used" in again.text
        assert attempts(runtime) == 1
    finally:
        set_runtime(None)
        brokers.shutdown()
        runtime.engine.dispose()


def test_a_signed_link_lives_ten_minutes_at_most(client: TestClient, web_runtime: Runtime) -> None:
    refused = client.get("/link/google", params=signed("teacher-l", lifetime=660), follow_redirects=False)
    assert refused.status_code == 403 and "This link cannot be used" in refused.text
    assert client.get("/link/google", params=signed("teacher-l", lifetime=590), follow_redirects=False).status_code
    assert attempts(web_runtime) == 1


def test_link_url_prints_a_single_use_link_as_the_platform_would(client: TestClient, web_runtime: Runtime) -> None:
    env = env_for(web_runtime.settings) | {
        "ROSTERSYNC_LINK_SIGNING_KEY": SIGNING_KEY,
        "ROSTERSYNC_GOOGLE_REDIRECT_URI": REDIRECT,
    }
    made = run("link", "url", "--provider", "google", "--teacher", "teacher-u", "--tenant", "school-u", env=env)
    assert made.returncode == 0, made.stderr
    url = urlsplit(made.stdout.strip())
    assert (url.scheme, url.netloc, url.path) == ("https", "rostersync.test", "/link/google")
    assert client.get(f"{url.path}?{url.query}", follow_redirects=False).status_code == 302
    assert client.get(f"{url.path}?{url.query}", follow_redirects=False).status_code == 403
    with web_runtime.engine.connect() as connection:
        [attempt] = connection.execute(select(LinkAttempt.linked_by, LinkAttempt.tenant)).all()
    assert tuple(attempt) == ("teacher-u", "school-u")
    unsigned = run("link", "url", "--provider", "google", "--teacher", "t", env=env_for(web_runtime.settings))
    assert unsigned.returncode == 2 and unsigned.stderr.startswith("error: ") and "LINK_SIGNING_KEY" in unsigned.stderr


# --- item 5: the signed message is framed --------------------------------------------------------------
def test_a_signature_does_not_move_a_separator_between_fields(client: TestClient, web_runtime: Runtime) -> None:
    query = signed("victim|T", tenant="Y")
    shifted = query | {"teacher": "victim", "tenant": "T|Y"}
    refused = client.get("/link/google", params=shifted, follow_redirects=False)
    assert refused.status_code == 403 and "This link is incomplete or damaged" in refused.text
    assert attempts(web_runtime) == 0


def test_a_signature_of_the_old_form_is_refused(client: TestClient, web_runtime: Runtime) -> None:
    import hashlib
    import hmac
    import time

    expires = int(time.time()) + 300
    old = hmac.new(SIGNING_KEY.encode(), f"google|teacher-o||school|{expires}".encode(), hashlib.sha256)
    query = {"teacher": "teacher-o", "basis": "school", "expires": str(expires), "sig": old.hexdigest()}
    assert client.get("/link/google", params=query, follow_redirects=False).status_code == 403
    assert attempts(web_runtime) == 0


def test_the_signature_covers_the_nonce(client: TestClient, web_runtime: Runtime) -> None:
    query = signed("teacher-n")
    forged = query | {"nonce": "A" * 22}
    assert client.get("/link/google", params=forged, follow_redirects=False).status_code == 403
    assert signature(SIGNING_KEY, **_fields(query)) == query["sig"]


def _fields(query: dict[str, str]) -> dict[str, object]:
    return {
        "provider": "google",
        "teacher": query["teacher"],
        "tenant": query.get("tenant"),
        "basis": query["basis"],
        "expires": int(query["expires"]),
        "nonce": query["nonce"],
    }


# --- item 6: the callback's path names the provider of its state -------------------------------------
def test_a_google_state_sent_to_the_microsoft_callback_is_refused(emulator: GoogleEmulator, database_url: str) -> None:
    settings = web_settings(
        emulator,
        database_url,
        microsoft_client_id="ms-client",
        microsoft_client_secret="ms",
        microsoft_redirect_uri="https://rostersync.test/oauth/microsoft/callback",
    )
    rt = build_runtime(settings)
    try:
        with TestClient(create_app(rt), base_url="https://rostersync.test") as client:
            landing = approve(emulator, consent_url(client, "teacher-p"), teacher_index=0)
            crossed = client.get(landing.replace("/oauth/google/", "/oauth/microsoft/"))
            assert crossed.status_code == 400 and "could not finish in this browser" in crossed.text
            assert integrations.summaries(rt.engine) == []
            metrics = client.get("/metrics").text
            assert 'rostersync_web_links_total{provider="microsoft",result="linked"}' not in metrics
            assert client.get(landing).status_code == 400  # spent
    finally:
        rt.engine.dispose()


# --- item 2, as the teacher sees it ------------------------------------------------------------------
def test_an_account_linked_by_another_teacher_is_refused_with_its_grant_given_back(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    first = link_teacher(web_runtime, emulator, 0, platform_teacher="teacher-m")
    page = client.get(consent(client, emulator, "teacher-t", teacher_index=0))
    assert page.status_code == 409, page.text
    assert "This Google Classroom account is linked by another teacher" in page.text
    assert "handed back" in page.text and "administrator" in page.text
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1  # M's grant only
    assert [row.id for row in integrations.summaries(web_runtime.engine)] == [first]
    assert "link_refused" in audit.actions(web_runtime.engine, first)


def test_the_platform_side_example_of_docs_web_md_makes_a_link_that_works(
    client: TestClient, web_runtime: Runtime
) -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "web.md").read_text()
    example = re.search(r"```python\n(import hashlib.*?)```", doc, re.S)
    assert example is not None
    namespace: dict[str, object] = {}
    exec(example.group(1), namespace)  # noqa: S102 - our own documentation, run as the platform would
    url = urlsplit(namespace["link_url"](SIGNING_KEY, "google", "teacher|d", "school-d"))  # type: ignore[operator]
    assert client.get(f"{url.path}?{url.query}", follow_redirects=False).status_code == 302
    assert client.get(f"{url.path}?{url.query}", follow_redirects=False).status_code == 403
