"""The admin console in a real Chromium: sign-in, a forged form, every admin action against the emulators.

Every page the console has is opened here, checked by axe-core (no serious or critical violation) and
saved as a screenshot under test-artifacts/screenshots/console-*.png; docs/img/ holds copies of three.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

from playwright.sync_api import Page, expect

from store import audit, integrations, overview, pending_revokes
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.helpers import enrollments, people, row_count
from tests.plugins.browser import ServedApp, assert_accessible, screenshot
from tests.webkit import wait_for

PHONE = {"width": 390, "height": 844}


def checked(page: Page, name: str) -> None:
    """axe on the page as it is, and its screenshot for a reviewer; what axe still reports (minor or moderate
    only, or the check fails) is kept beside the screenshot as ``console-NAME.axe.json``."""
    violations = assert_accessible(page)
    shot = screenshot(page, f"console-{name}")
    shot.with_suffix(".axe.json").write_text(json.dumps(violations, indent=1) + "\n", encoding="utf-8")


def sign_in(page: Page, app: ServedApp, token: str | None = None) -> None:
    page.goto(app.url("/console/"))
    assert "/console/sign-in" in page.url
    page.get_by_label("Admin token").fill(token or app.admin_tokens[0])
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def linked(app: ServedApp, teacher: int = 0, *, tenant: str | None = None) -> int:
    integration_id = link_teacher(app.runtime, app.google, teacher, tenant=tenant)
    assert run_sync(app.runtime, integration_id).outcome == "ok"
    return integration_id


def confirm(page: Page, link: str, button: str) -> None:
    """Follow an action's link to its confirmation page, check it says what will happen, then press its button."""
    page.get_by_role("link", name=link).click()
    assert page.get_by_role("heading", name="What will happen").is_visible()
    page.get_by_role("button", name=button).click()


def test_sign_in_the_home_page_and_sign_out(page: Page, served_app: ServedApp) -> None:
    linked(served_app)
    sign_in(page, served_app, token="not-" + served_app.admin_tokens[0])
    assert page.get_by_role("alert").inner_text().startswith("That is not one of this server")
    checked(page, "sign-in")
    page.get_by_label("Admin token").fill(served_app.admin_tokens[1])
    page.get_by_role("button", name="Sign in").click()
    assert page.url == served_app.url("/console/")
    # waited for (is_visible() does not wait): the click returns once the navigation commits, before the page renders
    expect(page.get_by_role("img", name="Syncs per hour over the last 24 hours: 1 in all, 0 failed.")).to_be_visible()
    checked(page, "home")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    page.get_by_role("button", name="Sign out").click()
    assert "/console/sign-in" in page.url
    page.goto(served_app.url("/console/integrations"))
    assert "/console/sign-in" in page.url  # the session is gone


def test_a_forged_form_is_refused_and_a_cross_site_one_carries_no_session(page: Page, served_app: ServedApp) -> None:
    integration_id = linked(served_app)
    sign_in(page, served_app)
    target = served_app.url(f"/console/integrations/{integration_id}/revoke")
    page.evaluate(
        """target => { const form = document.createElement("form"); form.method = "post"; form.action = target;
        document.body.append(form); form.submit(); }""",
        target,
    )
    page.wait_for_url(target)
    assert page.get_by_role("heading", name="This form was refused").is_visible()
    checked(page, "refused")
    other = page.context.new_page()  # another site's page posting to the console: SameSite=Strict keeps the cookie
    other.set_content(f'<form method="post" action="{target}"><input name="csrf" value="x"><button>go</button></form>')
    other.get_by_role("button", name="go").click()
    other.wait_for_load_state()
    assert "/console/sign-in" in other.url
    assert integrations.load(served_app.runtime.engine, integration_id).status == "active"
    assert served_app.google.live_grants(served_app.google.teacher_ids[0]) == 1


def test_the_table_an_integration_sync_interval_resume_and_export(page: Page, served_app: ServedApp) -> None:
    first = linked(served_app, 0, tenant="school-a")
    second = linked(served_app, 1, tenant="school-b")
    run_sync(served_app.runtime, first)
    sign_in(page, served_app)
    page.get_by_role("link", name="Integrations", exact=True).click()
    assert page.locator("table.integrations tbody tr").count() == 2
    page.get_by_label("Tenant").fill("school-b")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.integrations tbody th").all_inner_texts() == [str(second)]
    checked(page, "integrations")
    page.goto(served_app.url(f"/console/integrations/{first}"))
    assert page.locator("#run-durations rect.bar.ok").count() == 2
    checked(page, "integration")

    confirm(page, "Sync now…", "Sync now")
    assert "A sync is queued" in page.locator("main").inner_text()
    wait_for(lambda: _settled(served_app, first, runs=3), what="the sync asked for in the console")
    page.goto(served_app.url(f"/console/integrations/{first}/sync"))
    assert "the next can be asked in" in page.locator("main").inner_text()
    checked(page, "sync")
    page.get_by_role("button", name="Sync now").click()
    assert "Try again in" in page.locator("main").inner_text()

    page.goto(served_app.url(f"/console/integrations/{first}"))
    page.get_by_role("link", name="Set interval…").click()
    page.get_by_label("Interval in seconds").fill("7200")
    checked(page, "interval")
    page.get_by_role("button", name="Set interval").click()
    assert "every 2 h" in page.locator("main").inner_text()

    state = integrations.load(served_app.runtime.engine, first)
    integrations.mark_failed(served_app.runtime.engine, first, state.generation, actor="system:sync", reason="x")
    page.goto(served_app.url(f"/console/integrations/{first}"))
    page.get_by_role("link", name="Resume…").click()
    checked(page, "resume")
    page.get_by_role("button", name="Resume").click()
    assert integrations.load(served_app.runtime.engine, first).status == "active"

    page.goto(served_app.url(f"/console/integrations/{first}/export"))
    checked(page, "export")
    with page.expect_download() as as_json:
        page.get_by_role("button", name="Download").click()
    assert json.loads(open(as_json.value.path(), "rb").read())["integration"]["id"] == first  # noqa: SIM115
    page.get_by_label("OneRoster 1.2-style CSV files in a zip").check()
    with page.expect_download() as as_zip:
        page.get_by_role("button", name="Download").click()
    assert "users.csv" in zipfile.ZipFile(io.BytesIO(open(as_zip.value.path(), "rb").read())).namelist()  # noqa: SIM115
    actors = {(e.action, e.actor) for e in audit.events(served_app.runtime.engine, first)}
    assert {("resumed", "admin:console"), ("exported", "admin:console")} <= actors


def _settled(app: ServedApp, integration_id: int, *, runs: int) -> bool:
    """The integration has this many runs, all finished, and nothing queued."""
    done = overview.runs(app.runtime.engine, integration_id=integration_id)
    [view] = overview.integration_views(app.runtime.engine, integration_id=integration_id)
    return len(done) == runs and all(run.finished_at for run in done) and not view.queued


def test_revoke_reaches_the_provider_then_a_tenant_a_person_and_an_erase(page: Page, served_app: ServedApp) -> None:
    google = served_app.google
    first = linked(served_app, 0, tenant="school-a")
    second = linked(served_app, 1, tenant="school-b")
    sign_in(page, served_app)
    page.goto(served_app.url(f"/console/integrations/{first}"))
    page.get_by_role("link", name="Revoke…", exact=True).click()
    assert page.get_by_role("heading", name="What will happen").is_visible()
    assert "tokens are deleted and its roster purged" in page.locator("main").inner_text()
    checked(page, "revoke")
    before = len(google.requests)
    page.get_by_label("Reason (optional, kept in the audit log)").fill("school left")
    page.get_by_role("button", name="Revoke").click()
    assert "At the provider: revoked." in page.locator("main").inner_text()
    revokes = [r for r in google.requests[before:] if r.method == "POST" and r.path == "/revoke"]
    assert len(revokes) == 1 and revokes[0].status == 200
    assert google.live_grants(google.teacher_ids[0]) == 0 and row_count(served_app.runtime.engine, first) == 0

    student = next(p.pseudonym for p in people(served_app.runtime.engine, second, role="student"))
    page.get_by_role("link", name="People", exact=True).click()
    page.get_by_label("Pseudonym").fill(student)
    checked(page, "people")
    page.get_by_role("button", name="Find").click()
    checked(page, "person")
    with page.expect_download() as exported:
        page.get_by_role("button", name="Download the export").click()
    assert json.loads(open(exported.value.path(), "rb").read())["pseudonym"] == student  # noqa: SIM115
    present = len(people(served_app.runtime.engine, second))
    page.get_by_role("button", name="Erase this person").click()
    assert "Person erased" in page.locator("h1").inner_text()
    assert len(people(served_app.runtime.engine, second)) == present - 1

    page.goto(served_app.url(f"/console/integrations/{second}"))
    page.get_by_role("link", name="Revoke the whole tenant…").click()
    assert page.locator("table caption").inner_text() == "Integrations of this tenant"
    checked(page, "tenant-revoke")
    page.get_by_role("button", name="Revoke 1 integrations").click()
    assert google.live_grants(google.teacher_ids[1]) == 0
    page.goto(served_app.url(f"/console/integrations/{second}/erase"))
    checked(page, "erase")
    page.get_by_role("button", name="Erase").click()
    assert "is erased" in page.locator("main").inner_text()
    assert [v.id for v in integrations.summaries(served_app.runtime.engine)] == [first]


def test_a_held_removal_is_approved_exactly_and_another_dropped(page: Page, served_app: ServedApp) -> None:
    google, engine = served_app.google, served_app.runtime.engine
    course = google.course_ids_of(google.teacher_ids[0], states=["ACTIVE"])[0]
    added = [google.add_student(course) for _ in range(12)]
    integration_id = linked(served_app)
    for student in added:
        google.remove_student(course, student)
    held = run_sync(served_app.runtime, integration_id)
    assert held.outcome == "held"
    sign_in(page, served_app)
    assert page.get_by_role("link", name=re.compile(r"Held removals 1")).is_visible()
    page.get_by_role("link", name=re.compile(r"Held removals")).click()
    checked(page, "held")
    page.get_by_role("link", name=f"Drop… run {held.run_id}").click()
    checked(page, "held-drop")
    page.get_by_role("button", name="Drop the hold").click()
    assert "nothing removed" in page.locator("main").inner_text()

    again = run_sync(served_app.runtime, integration_id)
    page.goto(served_app.url("/console/held"))
    page.get_by_role("link", name=f"Approve… run {again.run_id}").click()
    rows = {
        cells[0]: int(cells[1])
        for cells in (row.split("\t") for row in page.locator("section.confirm tbody tr").all_inner_texts())
    }
    assert rows["Enrolments"] == 12 and rows["People"] == 12
    checked(page, "held-approve")
    enrolled, present = len(enrollments(engine, integration_id)), len(people(engine, integration_id))
    page.get_by_role("button", name="Approve removals").click()
    assert f"{rows['Enrolments'] + rows['People']} rows" in page.locator("main").inner_text()
    assert enrolled - len(enrollments(engine, integration_id)) == rows["Enrolments"]
    assert present - len(people(engine, integration_id)) == rows["People"]
    assert page.get_by_role("link", name=re.compile(r"Held removals 0")).is_visible()


def test_pending_revokes_and_a_phone_sized_screen(open_page: object, served_app: ServedApp) -> None:
    integration_id = linked(served_app)
    pending_revokes.keep(
        served_app.runtime.engine,
        integration_id=integration_id,
        provider="google",
        token_blob=b"sealed",
        actor="admin:console",
        error="provider unreachable",
        retry_in_seconds=600,
    )
    page = open_page(viewport=PHONE)  # type: ignore[operator]
    sign_in(page, served_app)
    page.get_by_role("link", name=re.compile(r"Pending revokes 1")).click()
    assert "provider unreachable" in page.locator("table").inner_text()
    checked(page, "pending-revokes")
    for path, name in (("/console/", "phone-home"), (f"/console/integrations/{integration_id}", "phone-integration")):
        page.goto(served_app.url(path))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            f"{path} is wider than a phone"
        )
        checked(page, name)
