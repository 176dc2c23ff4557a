"""The admin console: sign-in and its cookie, CSRF, the pages, and every action through the admin API's functions."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from emulators.google import GoogleEmulator
from store import audit, integrations, overview
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.consolekit import csrf_of, post_form, sign_in
from tests.features.test_breaker import remove_students
from tests.helpers import enrollments, people, row_count
from tests.webkit import ADMIN_TOKENS
from web.console import integrations as console_integrations
from web.console.session import COOKIE, open_session, read_session

EXTERNAL = re.compile(r"""(src|href|action)="(https?:)?//""")


@pytest.fixture
def database_url(pg_url: str) -> str:
    return pg_url


def console_actions(engine: Engine, integration_id: int) -> list[tuple[str, str]]:
    return [(event.action, event.actor) for event in audit.events(engine, integration_id)]


def test_pages_need_a_session_and_a_sign_in_opens_one(client: TestClient) -> None:
    bounced = client.get("/console/integrations?status=failed", follow_redirects=False)
    assert bounced.status_code == 303
    assert bounced.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fintegrations%3Fstatus%3Dfailed"

    wrong = sign_in(client, token="not-" + ADMIN_TOKENS[0])
    assert wrong.status_code == 401 and "not one of this server" in wrong.text
    assert COOKIE not in client.cookies

    opened = sign_in(client, next_="/console/integrations")
    assert opened.status_code == 303 and opened.headers["location"] == "/console/integrations"
    cookie = next(value for value in opened.headers.get_list("set-cookie") if value.startswith(COOKIE + "="))
    assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"} <= {
        part.strip() for part in cookie.split(";")
    }
    assert "Domain" not in cookie and ADMIN_TOKENS[0] not in cookie
    home = client.get("/console/")
    assert home.status_code == 200 and "Sign out" in home.text

    signed_out = client.post("/console/sign-out", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert signed_out.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_sign_in_never_leads_off_the_console(client: TestClient) -> None:
    assert sign_in(client, next_="//evil.example/console/").headers["location"] == "/console/"
    client.cookies.clear()
    assert sign_in(client, next_="https://evil.example/").headers["location"] == "/console/"


def test_a_sign_in_form_from_elsewhere_is_refused(client: TestClient) -> None:
    refused = client.post("/console/sign-in", data={"token": ADMIN_TOKENS[0]}, follow_redirects=False)
    assert refused.status_code == 403 and "refused" in refused.text
    assert COOKIE not in client.cookies


def test_a_session_is_signed_expires_and_ends_with_its_token() -> None:
    session, value = open_session(ADMIN_TOKENS[0], 600, now=1_000_000)
    assert read_session(value, list(ADMIN_TOKENS), now=1_000_100) == session
    assert read_session(value, list(ADMIN_TOKENS), now=1_000_601) is None  # expired
    assert read_session(value, [ADMIN_TOKENS[1]], now=1_000_100) is None  # its token taken out of ADMIN_TOKENS
    longer = value.replace(".1000600.", ".1999999.")
    assert read_session(longer, list(ADMIN_TOKENS), now=1_000_100) is None  # lifetime tampered with
    assert read_session(value[:-1] + ("0" if value[-1] != "0" else "1"), list(ADMIN_TOKENS), now=1_000_100) is None
    assert read_session("v1.a.b.c.d", list(ADMIN_TOKENS)) is None and read_session("", list(ADMIN_TOKENS)) is None


def test_a_forged_form_is_refused_and_changes_nothing(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    sign_in(client)
    path = f"/console/integrations/{integration_id}/revoke"
    for fields in ({}, {"csrf": "guessed"}, {"csrf": ""}):
        refused = client.post(path, data=fields, follow_redirects=False)
        assert refused.status_code == 403 and "This form was refused" in refused.text
    as_json = client.post(path, json={"csrf": csrf_of(client)}, follow_redirects=False)
    assert as_json.status_code == 403
    assert integrations.load(web_runtime.engine, integration_id).status == "active"
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1


def test_pages_load_nothing_from_elsewhere_and_forbid_scripts(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    sign_in(client)
    for path in ("/console/", "/console/integrations", f"/console/integrations/{integration_id}", "/console/held"):
        answer = client.get(path)
        assert answer.status_code == 200
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
        assert answer.headers["cache-control"] == "no-store" and answer.headers["x-frame-options"] == "DENY"
        assert "<script" not in answer.text and " style=" not in answer.text and not EXTERNAL.search(answer.text)
        assert '<a class="skip" href="#main">' in answer.text and '<main id="main"' in answer.text
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_table_filters_and_pages(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = link_teacher(web_runtime, emulator, 0, tenant="school-a", platform_teacher="ms-rivera")
    second = link_teacher(web_runtime, emulator, 1, tenant="school-b", platform_teacher="mr-okafor")
    run_sync(web_runtime, first)
    sign_in(client)

    def shown(**query: str) -> list[int]:
        page = client.get("/console/integrations", params=query)
        assert page.status_code == 200
        rows = re.findall(r'<th scope="row"><a href="/console/integrations/(\d+)">', page.text)
        return [int(found) for found in rows]

    assert shown() == [first, second]
    assert shown(tenant="school-b") == [second]
    assert shown(teacher="ms-rivera") == [first]
    assert shown(provider="google", status="active") == [first, second]
    assert shown(status="revoked") == []
    assert shown(status="<script>") == [first, second]  # a status that is not one is no filter
    table = client.get("/console/integrations").text
    assert "ok" in table and '<th scope="col">Next due</th>' in table
    monkeypatch.setattr(console_integrations, "PER_PAGE", 1)
    one = client.get("/console/integrations")
    assert "Next page" in one.text and "Previous page" not in one.text
    assert shown(page="2") == [second]


def test_an_integration_page_shows_its_runs_audit_and_inventory(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    for _ in range(3):
        run_sync(web_runtime, integration_id)
    sign_in(client)
    page = client.get(f"/console/integrations/{integration_id}").text
    durations = page.split('id="run-durations"')[1].split("</svg>")[0]
    assert durations.count('<rect class="bar ok"') == 3
    assert 'role="img"' in page and "Duration of the last 3 runs (3 ok)" in page
    assert "linked" in page and "Data inventory" in page and "pseudonym" in page
    assert client.get("/console/integrations/987654").status_code == 404


def test_revoke_one_and_a_tenant_from_the_console(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    first = link_teacher(web_runtime, emulator, 0)
    second = link_teacher(web_runtime, emulator, 1, tenant="school-b")
    run_sync(web_runtime, first)
    sign_in(client)
    confirm = client.get(f"/console/integrations/{first}/revoke")
    assert "What will happen" in confirm.text and "roster purged" in confirm.text
    assert integrations.load(web_runtime.engine, first).status == "active"  # asking changes nothing
    done = post_form(client, f"/console/integrations/{first}/revoke", reason="school left")
    assert done.status_code == 200 and "At the provider: revoked." in done.text
    assert row_count(web_runtime.engine, first) == 0 and emulator.live_grants(emulator.teacher_ids[0]) == 0
    revoked = [event for event in audit.events(web_runtime.engine, first) if event.action == "revoked"]
    assert [(event.actor, event.reason) for event in revoked] == [("admin:console", "school left")]

    tenant = client.get("/console/tenants/school-b/revoke")
    assert "1 of 1 are not revoked yet" in tenant.text
    post_form(client, "/console/tenants/school-b/revoke")
    assert integrations.load(web_runtime.engine, second).status == "revoked"
    assert emulator.live_grants(emulator.teacher_ids[1]) == 0
    assert "Tenant nobody has no integrations" in client.get("/console/tenants/nobody/revoke").text


def test_sync_now_shows_its_cooldown_and_resume_and_interval(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    sign_in(client)
    path = f"/console/integrations/{integration_id}/sync"
    assert "once every 300 seconds" in client.get(path).text
    assert "A sync is queued" in post_form(client, path).text
    assert "the next can be asked in" in client.get(path).text
    cooled = post_form(client, path)
    assert cooled.status_code == 429 and "Try again in" in cooled.text

    state = integrations.load(web_runtime.engine, integration_id)
    resume_page = client.get(f"/console/integrations/{integration_id}/resume").text
    assert "only a failed integration can be resumed" in resume_page
    integrations.mark_failed(web_runtime.engine, integration_id, state.generation, actor="system:sync", reason="x")
    resumed = post_form(client, f"/console/integrations/{integration_id}/resume")
    assert "active again" in resumed.text and integrations.load(web_runtime.engine, integration_id).status == "active"

    interval = post_form(client, f"/console/integrations/{integration_id}/interval", seconds="7200")
    assert "every 2 h" in interval.text
    [view] = overview.integration_views(web_runtime.engine, integration_id=integration_id)
    assert view.sync_interval_seconds == 7200
    refused = post_form(client, f"/console/integrations/{integration_id}/interval", seconds="-5")
    assert refused.status_code == 422
    post_form(client, f"/console/integrations/{integration_id}/interval", seconds="")
    [view] = overview.integration_views(web_runtime.engine, integration_id=integration_id)
    assert view.sync_interval_seconds is None
    assert ("resumed", "admin:console") in console_actions(web_runtime.engine, integration_id)


def test_export_and_erase_an_integration_and_a_person(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    sign_in(client)
    exported = post_form(client, f"/console/integrations/{integration_id}/export", format="json")
    assert exported.headers["content-disposition"] == f'attachment; filename="integration-{integration_id}.json"'
    data = json.loads(exported.content)
    zipped = post_form(client, f"/console/integrations/{integration_id}/export", format="oneroster")
    assert "users.csv" in zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    exports = [e for e in audit.events(web_runtime.engine, integration_id) if e.action == "exported"]
    formats = [(e.actor, e.details["format"]) for e in exports]
    assert formats == [("admin:console", "json"), ("admin:console", "oneroster_csv")]

    student = next(person["pseudonym"] for person in data["people"] if person["role"] == "student")
    assert student in client.get(f"/console/people?pseudonym={student}", follow_redirects=True).text
    person_export = client.post(f"/console/people/{student}/export", data={"csrf": csrf_of(client)})
    assert json.loads(person_export.content)["pseudonym"] == student
    before = len(people(web_runtime.engine, integration_id))
    erased = client.post(f"/console/people/{student}/erase", data={"csrf": csrf_of(client)})
    assert "Person erased" in erased.text and len(people(web_runtime.engine, integration_id)) == before - 1
    assert client.get(f"/console/people/{student}").status_code == 404

    assert "cannot be undone" in client.get(f"/console/integrations/{integration_id}/erase").text
    gone = post_form(client, f"/console/integrations/{integration_id}/erase")
    assert "is erased" in gone.text and "revoked first" in gone.text
    assert overview.integration_views(web_runtime.engine, integration_id=integration_id) == []


def test_a_held_removal_is_shown_with_its_counts_then_approved_or_dropped(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    remove_students(emulator, 6)
    held = run_sync(web_runtime, integration_id)
    assert held.outcome == "held"
    sign_in(client)
    assert re.search(r'Held removals <span class="count waiting">1</span>', client.get("/console/").text)
    listing = client.get("/console/held").text
    assert f'<th scope="row">{held.run_id}</th>' in listing
    drop = post_form(client, f"/console/held/{held.run_id}/drop")
    assert "nothing removed" in drop.text
    assert "no removals now" in client.get(f"/console/held/{held.run_id}/approve").text

    again = run_sync(web_runtime, integration_id)
    confirm = client.get(f"/console/held/{again.run_id}/approve").text
    held_enrolments = int(re.search(r"Enrolments</th><td>(\d+)</td>", confirm).group(1))  # type: ignore[union-attr]
    held_people = int(re.search(r"People</th><td>(\d+)</td>", confirm).group(1))  # type: ignore[union-attr]
    enrolled = len(enrollments(web_runtime.engine, integration_id))
    present = len(people(web_runtime.engine, integration_id))
    approved = post_form(client, f"/console/held/{again.run_id}/approve")
    assert f"{held_enrolments + held_people} rows" in approved.text
    assert enrolled - len(enrollments(web_runtime.engine, integration_id)) == held_enrolments
    assert present - len(people(web_runtime.engine, integration_id)) == held_people
    assert {("removals_dropped", "admin:console"), ("removals_approved", "admin:console")} <= set(
        console_actions(web_runtime.engine, integration_id)
    )


def test_the_home_page_draws_the_days_syncs(client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    run_sync(web_runtime, integration_id)
    sign_in(client)
    home = client.get("/console/").text
    assert "Syncs per hour over the last 24 hours: 2 in all, 0 failed." in home
    assert "google 0 of 2" in home
    assert '<li><a href="/console/pending-revokes">' in home


def test_a_bad_address_in_the_console_is_a_console_page_not_json(client: TestClient) -> None:
    sign_in(client)
    for path, status in (
        ("/console/integrations/abc", 422),
        ("/console/integrations?page=0", 422),
        ("/console/no-such-page", 404),
    ):
        answer = client.get(path)
        assert answer.status_code == status and answer.headers["content-type"].startswith("text/html"), path
        assert "Back to the console" in answer.text
        assert "default-src 'none'" in answer.headers["content-security-policy"]
