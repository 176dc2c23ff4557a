"""A whole link through the web app against the Google emulator, and every way a callback is refused."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from emulators.google import GoogleEmulator
from settings import GOOGLE_SCOPES
from store import integrations
from store.db import utcnow
from store.models import LinkAttempt
from store.runtime import Runtime, build_runtime
from tests.conftest import settings_for
from tests.helpers import people
from tests.webkit import SIGNING_KEY, consent, first_run_done, signed, wait_for
from web.app import create_app


def test_a_teacher_links_in_the_browser_and_the_first_sync_runs(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    landing = consent(client, emulator, "teacher-7", tenant="school-1")
    page = client.get(landing)
    assert page.status_code == 200, page.text
    assert "Your Google Classroom account is linked" in page.text and "classes will sync:" in page.text
    [row] = integrations.summaries(web_runtime.engine)
    assert f"integration {row.id}" not in page.text  # no internal id on a teacher's page
    for course_id in emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"]):
        assert course_id not in page.text  # names are shown, provider ids are not
    state = integrations.load(web_runtime.engine, row.id)
    assert state.consent_basis == "school" and row.tenant == "school-1"
    wait_for(lambda: first_run_done(web_runtime, row.id), what="the first sync")
    assert people(web_runtime.engine, row.id, role="student")
    assert page.headers["cache-control"] == "no-store"


def test_parent_basis_is_recorded(client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator) -> None:
    page = client.get(consent(client, emulator, "teacher-8", basis="parent"))
    assert page.status_code == 200
    [row] = integrations.summaries(web_runtime.engine)
    assert integrations.load(web_runtime.engine, row.id).consent_basis == "parent"
    assert client.get("/link/google", params={"teacher": "t", "basis": "nobody"}).status_code == 422


def test_forged_replayed_and_expired_state_are_refused(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    forged = client.get("/oauth/google/callback", params={"state": "forged-state", "code": "4/0abc"})
    assert forged.status_code == 400 and "This page cannot be used" in forged.text
    assert "use its Connect button again" in forged.text and "unknown state" not in forged.text

    landing = consent(client, emulator, "teacher-1")
    assert client.get(landing).status_code == 200
    replayed = client.get(landing)
    assert replayed.status_code == 400 and "This page was already used" in replayed.text

    stale = consent(client, emulator, "teacher-2", teacher_index=1)
    with web_runtime.engine.begin() as connection:
        connection.execute(
            update(LinkAttempt)
            .where(LinkAttempt.used_at.is_(None))
            .values(created_at=utcnow() - timedelta(seconds=web_runtime.settings.link_state_ttl_seconds + 1))
        )
    expired = client.get(stale)
    assert expired.status_code == 400 and "This page has expired" in expired.text
    assert [row.id for row in integrations.summaries(web_runtime.engine)] == [1]  # only the one good link


def test_refused_consent_and_missing_scope_say_what_to_do(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    landing = consent(client, emulator, "teacher-3")
    state = landing.split("state=")[1].split("&")[0]
    refused = client.get("/oauth/google/callback", params={"state": state, "error": "access_denied"})
    assert refused.status_code == 400 and "You did not allow access" in refused.text
    assert "use its Connect button again and choose Allow" in refused.text

    emulator.set_granted_scopes([GOOGLE_SCOPES[0]])
    partial = client.get(consent(client, emulator, "teacher-3"))
    assert partial.status_code == 400 and "Some permissions were left out" in partial.text
    assert "leave every permission ticked" in partial.text
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0  # the partial grant was given back
    assert integrations.summaries(web_runtime.engine) == []


def test_the_providers_error_text_is_never_shown(client: TestClient, emulator: GoogleEmulator) -> None:
    landing = consent(client, emulator, "teacher-4")
    state = landing.split("state=")[1].split("&")[0]
    page = client.get("/oauth/google/callback", params={"state": state, "error": "<script>x</script>"})
    assert page.status_code == 400 and "You did not allow access" in page.text
    assert "script" not in page.text  # neither run nor echoed: the teacher reads our words only


def test_the_app_starts_without_provider_credentials(emulator: GoogleEmulator, pg_url: str) -> None:
    rt = build_runtime(
        settings_for(emulator, pg_url, google_client_id="", google_client_secret="", link_signing_key=SIGNING_KEY)
    )
    with TestClient(create_app(rt)) as bare:
        unset = "ROSTERSYNC_{}_{} is not set".format
        assert bare.get("/providers").json() == [
            {
                "name": "google",
                "configured": False,
                "problems": [unset("GOOGLE", "CLIENT_ID"), unset("GOOGLE", "CLIENT_SECRET")],
            },
            {
                "name": "clever",
                "configured": False,
                "problems": [unset("CLEVER", part) for part in ("CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI")],
            },
            {
                "name": "microsoft",
                "configured": False,
                "problems": [unset("MICROSOFT", part) for part in ("CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI")],
            },
        ]
        page = bare.get("/link/google", params=signed("t"), follow_redirects=False)
        assert page.status_code == 503 and "Connecting Google Classroom is not available yet" in page.text
        assert "Please tell your school&#39;s administrator" in page.text
        assert bare.get("/link/nosuch", params={"teacher": "t"}).status_code == 404
        assert bare.get("/admin/integrations").status_code == 401  # no ADMIN_TOKENS: nobody gets in
        assert bare.get("/healthz").status_code == 200
    rt.engine.dispose()


def test_only_the_platform_can_send_a_teacher_to_link(client: TestClient, web_runtime: Runtime) -> None:
    good = signed("teacher-9", tenant="school-9")
    forged = [
        {"teacher": "teacher-9"},  # unsigned
        good | {"teacher": "teacher-10"},  # signed for someone else
        good | {"tenant": "school-10"},
        good | {"basis": "parent"},
        good | {"sig": "0" * 64},
        signed("teacher-9", lifetime=-5),  # expired
        signed("teacher-9", lifetime=7200),  # valid for too long
    ]
    for query in forged:
        refused = client.get("/link/google", params=query, follow_redirects=False)
        assert refused.status_code == 403, query
        assert "Go back to the platform and use its Connect button again" in refused.text
    assert client.get("/link/google", params=good, follow_redirects=False).status_code == 302
    with web_runtime.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(LinkAttempt)).scalar_one() == 1


def test_without_a_signing_key_the_web_does_not_link(emulator: GoogleEmulator, pg_url: str) -> None:
    rt = build_runtime(settings_for(emulator, pg_url))
    with TestClient(create_app(rt)) as unsigned:
        page = unsigned.get("/link/google", params=signed("t"), follow_redirects=False)
        assert page.status_code == 503 and "Connecting your classes is not available yet" in page.text
    rt.engine.dispose()
