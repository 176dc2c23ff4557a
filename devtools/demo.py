"""``rostersync demo``: the whole story on embedded defaults, against the local Google and Clever emulators.

Google: three teachers link; the first sync runs with progress; a roster change is synced; one
teacher revokes at Google and the next cycle honours it; an admin revokes another; the third
stays active. Clever: two districts link school-wide and one Library teacher signs in; a change
arrives through Clever's events; one district disconnects and the next cycle honours it while
the other district and the teacher stay active. Microsoft: one tenant links school-wide and two
teachers sign in, one of another tenant and one of the linked school; a change arrives through Graph
delta; the first teacher's tenant withdraws consent and the next cycle honours it while the tenant
link and the other teacher stay active. Throwaway keys,
a throwaway SQLite file and the in-memory broker: nothing outside a temporary directory is
touched, and nothing personal is printed.
"""

from __future__ import annotations

import math
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from dramatiq.broker import Broker
from pydantic import SecretStr

from connectors.google import http_session
from devtools.emulation import settings_values
from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from services.console import err, sync_progress
from services.linking import complete_link, link_org, start_link
from services.revoke import revoke_integration
from settings import Settings
from store import integrations
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from worker import broker as brokers
from worker.actors import sync_integration

TEACHERS = ("teacher-ada", "teacher-bo", "teacher-cy")
COURSES_PER_TEACHER = 2


def demo_settings(
    emulator: GoogleEmulator,
    workdir: Path,
    clever: CleverEmulator | None = None,
    microsoft: MicrosoftEmulator | None = None,
) -> Settings:
    """Embedded defaults pointed at the emulators; the keys are generated here and thrown away.

    One CA bundle holds both emulators' throwaway CAs, as ``CA_BUNDLE`` would hold a proxy's.
    """
    ca_bundle = emulator.ca_path
    clever_settings: dict[str, object] = {}
    others = [e.ca_path for e in (clever, microsoft) if e is not None]
    if others:
        ca_bundle = workdir / "demo-ca-bundle.pem"
        ca_bundle.write_bytes(b"".join(path.read_bytes() for path in (emulator.ca_path, *others)))
    if microsoft is not None:
        clever_settings |= settings_values("microsoft", microsoft)
    if clever is not None:
        clever_settings |= settings_values("clever", clever)
    return Settings(
        **clever_settings
        | settings_values("google", emulator)
        | {"ca_bundle": ca_bundle},  # one bundle of every emulator's CA
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        broker_url=None,
        pseudonym_key=SecretStr(secrets.token_urlsafe(48)),
        token_keys=SecretStr(new_key()),
        google_redirect_uri=headless_redirect("google"),
        clever_redirect_uri=headless_redirect("clever"),
        microsoft_redirect_uri=headless_redirect("microsoft"),
        retry_min_backoff_ms=100,
        retry_max_backoff_ms=2_000,
    )


def headless_redirect(provider: str) -> str:
    """Where a headless link's consent returns (demo, bench): the URL is read from the provider's redirect and
    never opened, so a reserved ``.example`` host does; https, as every redirect URI must be."""
    return f"https://rostersync.example/oauth/{provider}/callback"


def consent_headlessly(session: requests.Session, consent_url: str) -> str:
    """Follow the consent URL as a browser would, up to the redirect back to us; returns the callback URL."""
    response = session.get(consent_url, allow_redirects=False, timeout=10)
    location = response.headers.get("Location")
    if response.status_code != 302 or not location:
        raise RuntimeError(f"consent did not redirect back (HTTP {response.status_code})")
    return location


def demo_emulator(students: int, workdir: Path) -> GoogleEmulator:
    """The synthetic district of the demo: three teachers, two courses each, ``students`` spread over them."""
    per_course = max(1, math.ceil(students / (len(TEACHERS) * COURSES_PER_TEACHER)))
    return GoogleEmulator(
        teachers=len(TEACHERS),
        courses_per_teacher=COURSES_PER_TEACHER,
        students_per_course=per_course,
        cert_dir=workdir,
    )


def demo_clever(students: int, workdir: Path) -> CleverEmulator:
    """Two synthetic districts and one Library teacher; ``students`` spread over the districts' sections."""
    per_section = max(1, math.ceil(students / (2 * 2 * COURSES_PER_TEACHER)))
    return CleverEmulator(
        districts=2,
        teachers=2,
        courses_per_teacher=COURSES_PER_TEACHER,
        students_per_course=per_section,
        cert_dir=workdir,
    )


def demo_microsoft(students: int, workdir: Path) -> MicrosoftEmulator:
    """Two synthetic tenants: one links school-wide and a teacher of it signs in; so does a teacher of the other."""
    per_class = max(1, math.ceil(students / (2 * 2 * COURSES_PER_TEACHER)))
    return MicrosoftEmulator(
        tenants=2, teachers=2, courses_per_teacher=COURSES_PER_TEACHER, students_per_course=per_class, cert_dir=workdir
    )


def run_demo(students: int, report: Callable[[Runtime], None]) -> None:
    """Tell the story, hand the final state to ``report``, then delete all it made (database, CA, keys)."""
    with (
        tempfile.TemporaryDirectory(prefix="rostersync-demo-") as workdir,
        demo_emulator(students, Path(workdir)) as emulator,
        demo_clever(students, Path(workdir)) as clever,
        demo_microsoft(students, Path(workdir)) as microsoft,
    ):
        try:
            runtime = tell_story(emulator, Path(workdir), clever, microsoft)
            report(runtime)
            runtime.engine.dispose()
        finally:
            brokers.shutdown()


def _sync_cycle(rt: Runtime, broker: Broker) -> float:
    started = time.perf_counter()
    for integration_id in integrations.syncable_ids(rt.engine):
        sync_integration.send(integration_id)
    with sync_progress():
        brokers.drain(broker)
    return time.perf_counter() - started


def tell_story(
    emulator: GoogleEmulator,
    workdir: Path,
    clever: CleverEmulator | None = None,
    microsoft: MicrosoftEmulator | None = None,
) -> Runtime:
    err.print("[bold]rostersync demo[/]: embedded defaults, local Google emulator at " + emulator.base_url)
    if clever is not None:
        err.print("  and local Clever emulator at " + clever.base_url)
    if microsoft is not None:
        err.print("  and local Microsoft (Entra ID + Graph) emulator at " + microsoft.base_url)
    err.print(
        "  throwaway keys generated for this run (ROSTERSYNC_PSEUDONYM_KEY, ROSTERSYNC_TOKEN_KEYS); "
        "a throwaway database, removed at the end"
    )
    rt = build_runtime(demo_settings(emulator, workdir, clever, microsoft))
    set_runtime(rt)
    broker = brokers.install(brokers.make_broker(rt.settings))

    err.print("\n[bold]1. Three teachers link their Google accounts[/] (consent with state + PKCE)")
    ids: dict[str, int] = {}
    with http_session(rt.settings) as browser:
        for teacher, google_user in zip(TEACHERS, emulator.teacher_ids, strict=False):
            emulator.set_consent_user(google_user)
            callback = consent_headlessly(browser, start_link(rt, provider_name="google", teacher=teacher))
            ids[teacher] = complete_link(rt, callback)
            err.print(f"  {teacher} linked as integration {ids[teacher]}")

    err.print("\n[bold]2. First sync[/]")
    seconds = _sync_cycle(rt, broker)
    total_students = sum(s.counts.students for s in integrations.summaries(rt.engine))
    err.print(
        f"  first sync of all three integrations took {seconds:.2f} s ({total_students} student rows stored, "
        "each a pseudonym only)"
    )

    err.print("\n[bold]3. The roster changes at Google[/]: one student joins, one leaves, the teacher is renamed")
    first, second, third = (ids[t] for t in TEACHERS)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    emulator.add_student(course)
    emulator.remove_student(course, emulator.student_ids_of(course)[0])
    emulator.rename_user(emulator.teacher_ids[0])
    _sync_cycle(rt, broker)
    err.print("  change synced")

    err.print(f"\n[bold]4. {TEACHERS[1]} removes rostersync in their Google account[/]; the next cycle honours it")
    emulator.revoke_grants(emulator.teacher_ids[1])
    _sync_cycle(rt, broker)
    err.print(f"  integration {second}: {integrations.load(rt.engine, second).status}, roster purged")

    err.print(f"\n[bold]5. An admin revokes {TEACHERS[2]}'s integration here[/]")
    result = revoke_integration(rt, third, actor="admin:demo", reason="teacher left the school")
    err.print(
        f"  integration {third}: revoked here, roster purged, "
        f"{'revoked at Google too' if result.provider_revoked else 'Google revoke not confirmed'}"
    )

    err.print("\n[bold]6. One more cycle[/]: only the active integration calls Google")
    calls_before = len(emulator.requests)
    _sync_cycle(rt, broker)
    calls = emulator.requests[calls_before:]
    revoked_users = set(emulator.teacher_ids[1:3])
    stray = sum(1 for call in calls if call.user_id in revoked_users)
    err.print(f"  {len(calls)} calls to Google for integration {first}, {stray} for the revoked ones")
    if clever is not None:
        tell_clever_story(rt, broker, clever)
    if microsoft is not None:
        tell_microsoft_story(rt, broker, microsoft)
    err.print("")
    return rt


def _clever_calls(clever: CleverEmulator, since: int) -> int:
    return sum(1 for call in clever.requests[since:] if call.path.startswith("/v3.0"))


def tell_clever_story(rt: Runtime, broker: Broker, clever: CleverEmulator) -> None:
    """The Clever part: district links, a Library teacher, events, a disconnect honoured."""
    first, second = clever.district_ids[:2]
    err.print("\n[bold]7. Two districts link school-wide in Clever[/] (`rostersync link org --provider clever`)")
    gone = link_org(rt, provider_name="clever", org=first, tenant="district-one")
    stays = link_org(rt, provider_name="clever", org=second, tenant="district-two")
    err.print(f"  district links: integrations {gone} and {stays} (their app tokens sealed in the vault)")
    teacher = clever.teacher_ids(None)[0]
    clever.set_consent_user(teacher)
    with http_session(rt.settings) as browser:
        callback = consent_headlessly(browser, start_link(rt, provider_name="clever", teacher="teacher-dee"))
    library = complete_link(rt, callback)
    err.print(f"  a Library teacher (no district) signs in with Clever: integration {library}")
    before = len(clever.requests)
    _sync_cycle(rt, broker)
    err.print(
        f"  first Clever sync: {_clever_calls(clever, before)} requests in all (per district: the event cursor, "
        "one page of sections, one of teachers; no student record is ever requested)"
    )

    err.print("\n[bold]8. The roster changes in Clever[/]: a student joins a section; Clever records events")
    section = clever.section_ids(first)[0]
    clever.add_student(section)
    before = len(clever.requests)
    _sync_cycle(rt, broker)
    err.print(f"  synced from the events feed: {_clever_calls(clever, before)} requests for all three Clever links")

    err.print(f"\n[bold]9. District {first[-6:]} disconnects rostersync in Clever[/]; the next cycle honours it")
    clever.disconnect_district(first)
    _sync_cycle(rt, broker)
    err.print(f"  integration {gone}: {integrations.load(rt.engine, gone).status}, roster purged")
    before = len(clever.requests)
    _sync_cycle(rt, broker)
    stray = sum(1 for call in clever.requests[before:] if call.user_id == first)
    err.print(
        f"  one more cycle: integrations {stays} and {library} "
        f"{integrations.load(rt.engine, stays).status} and {integrations.load(rt.engine, library).status}, "
        f"{stray} requests for the disconnected district"
    )


def _graph_calls(microsoft: MicrosoftEmulator, since: int) -> int:
    return sum(
        1 for call in microsoft.requests[since:] if call.path.startswith("/v1.0/") and "/$batch" not in call.path
    )


def tell_microsoft_story(rt: Runtime, broker: Broker, microsoft: MicrosoftEmulator) -> None:
    """The Microsoft part: a tenant link, two teacher links, a Graph delta change, one teacher's consent withdrawn."""
    from connectors.microsoft import http_session as microsoft_session

    school, other = microsoft.tenant_ids[:2]
    err.print(
        "\n[bold]10. A Microsoft 365 tenant links school-wide[/] (`rostersync link org --provider microsoft`: "
        "client credentials, EduRoster.Read.All)"
    )
    tenant_link = link_org(rt, provider_name="microsoft", org=school, tenant="tenant-one")
    teacher_links: dict[str, int] = {}
    with microsoft_session(rt.settings) as browser:
        for teacher, user, tenant in (
            ("teacher-eve", microsoft.teacher_ids(other)[0], "tenant-two"),
            ("teacher-fay", microsoft.teacher_ids(school)[0], "tenant-one"),
        ):
            microsoft.set_signin_user(user)
            url = start_link(rt, provider_name="microsoft", teacher=teacher, tenant=tenant)
            teacher_links[teacher] = complete_link(rt, consent_headlessly(browser, url))
    withdrawn, stays = teacher_links["teacher-eve"], teacher_links["teacher-fay"]
    err.print(
        f"  tenant link: integration {tenant_link}; two teachers sign in (auth code + PKCE, EduRoster.ReadBasic): "
        f"teacher-eve of another tenant, integration {withdrawn}, and teacher-fay of the linked school, "
        f"integration {stays}; MSAL token caches sealed in the vault"
    )
    before = len(microsoft.requests)
    _sync_cycle(rt, broker)
    err.print(
        f"  first Microsoft sync: {_graph_calls(microsoft, before)} Graph reads for the three links ($batch "
        "sub-requests counted one by one; members asked for id,primaryRole only: no student name crosses the wire)"
    )

    err.print("\n[bold]11. The roster changes in Microsoft 365[/]: a student joins a class; Graph delta reports it")
    microsoft.add_student(microsoft.class_ids(school)[0])
    before = len(microsoft.requests)
    _sync_cycle(rt, broker)
    err.print(f"  synced: {_graph_calls(microsoft, before)} Graph reads (the tenant link read its delta)")

    err.print(
        "\n[bold]12. teacher-eve's tenant admin withdraws rostersync's consent in Entra[/]; the next cycle honours it"
    )
    microsoft.withdraw_consent(other)
    _sync_cycle(rt, broker)
    err.print(f"  integration {withdrawn}: {integrations.load(rt.engine, withdrawn).status}, roster purged")
    before = len(microsoft.requests)
    _sync_cycle(rt, broker)
    stray = sum(1 for call in microsoft.requests[before:] if call.user_id in microsoft.teacher_ids(other))
    err.print(
        f"  one more cycle: integrations {tenant_link} and {stays} "
        f"{integrations.load(rt.engine, tenant_link).status} and {integrations.load(rt.engine, stays).status}, "
        f"{stray} requests for the withdrawn teacher (Microsoft has no revoke endpoint: consent is the switch)"
    )
