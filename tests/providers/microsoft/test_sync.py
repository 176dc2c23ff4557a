"""Microsoft Graph Education through the provider-neutral sync cycle, against the Microsoft emulator and
the real MSAL, on SQLite and PostgreSQL: teacher links (auth code + PKCE) and tenant links (client
credentials), delta re-syncs, an expired delta, withdrawn consent, a narrower grant refused at link time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from sqlalchemy import func, select

from connectors.microsoft import ClientRejected, http_session
from devtools.demo import consent_headlessly
from emulators.microsoft import MicrosoftEmulator
from services.linking import LinkError, complete_link, link_org, start_link
from services.revoke import revoke_integration
from settings import Settings
from store import integrations
from store.models import AuditEvent, Integration
from store.runtime import Runtime
from sync import cursor as cursor_document
from sync.cycle import run_sync
from sync.grants import AtProvider
from tests.conftest import MessageRecorder
from tests.helpers import classes, dump_tables, enrollments, people
from tests.microsoft_fixtures import microsoft_settings_for
from worker import broker as brokers


@pytest.fixture
def emu(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MicrosoftEmulator]:
    """Emulator options a test may add with ``@pytest.mark.parametrize("emu", [{...}], indirect=True)``."""
    options: dict[str, Any] = getattr(request, "param", {})
    with MicrosoftEmulator(cert_dir=tmp_path, tenants=2, teachers=3, students_per_course=8, **options) as emulator:
        yield emulator


@pytest.fixture
def settings(emu: MicrosoftEmulator, database_url: str) -> Settings:
    return microsoft_settings_for(emu, database_url)


def link_teacher(runtime: Runtime, emu: MicrosoftEmulator, user_id: str, platform_teacher: str = "t-1") -> int:
    """link start -> the emulator's consent screen (headless) -> link complete."""
    emu.set_signin_user(user_id)
    url = start_link(runtime, provider_name="microsoft", teacher=platform_teacher)
    with http_session(runtime.settings) as browser:
        callback = consent_headlessly(browser, url)
    return complete_link(runtime, callback)


def graph_calls(emu: MicrosoftEmulator, since: int = 0) -> list[Any]:
    return [r for r in emu.requests[since:] if r.path.startswith("/v1.0/")]


def student_pseudonyms(runtime: Runtime, emu: MicrosoftEmulator, tenant_id: str, class_ids: list[str]) -> set[str]:
    students = set(emu.student_ids(tenant_id))
    platform = runtime.settings.default_tenant
    return {
        runtime.pseudonymiser.pseudonym("microsoft", platform, member)
        for class_id in class_ids
        for member in emu.members_of(class_id)
        if member in students
    }


def assert_private(runtime: Runtime, emu: MicrosoftEmulator, integration_id: int, log_text: str) -> None:
    """No student name or other dropped property in any table or log line; no token in clear anywhere."""
    dump = dump_tables(runtime.engine)
    for teacher in people(runtime.engine, integration_id, role="teacher", current=False):
        for value in (teacher.display_name, teacher.email_address):
            if value:
                dump = dump.replace(value, "")
                log_text = log_text.replace(value, "")
    assert {(p.display_name, p.email_address) for p in people(runtime.engine, integration_id, role="student")} <= {
        (None, None)
    }
    assert not [s for s in emu.personal_strings() if s in dump], "a dropped Graph property reached a table"
    assert not [s for s in emu.personal_strings() if s in log_text], "a personal value in a log line"
    assert not [t for t in emu.issued_tokens() if t in dump or t in log_text], "a token in the clear"
    assert "code_verifier" not in dump and "refresh_token" not in dump.lower().replace("refresh_token_blob", "")


def assert_minimal_selects(emu: MicrosoftEmulator, since: int = 0) -> None:
    """Every Graph read names its properties, and no read of people could return a student's name."""
    for call in graph_calls(emu, since):
        if call.path.endswith("/$batch") or {"$deltatoken", "$skiptoken"} & set(call.query):
            continue  # sub-requests are logged on their own; delta and next links carry their round's $select
        assert "$select" in call.query, f"a Graph read without $select: {call.path}"
        if call.path.endswith("/members") or call.path.endswith("/users/delta"):
            assert call.query["$select"] == ["id,primaryRole"]


# ------------------------------------------------------------------------------------- teacher
def test_teacher_link_end_to_end_syncs_own_classes_with_students_as_pseudonyms(
    runtime: Runtime, emu: MicrosoftEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = emu.tenant_ids[0]
    teacher = emu.teacher_ids(tenant)[0]
    integration_id = link_teacher(runtime, emu, teacher)
    state = integrations.load(runtime.engine, integration_id)
    assert state.provider == "microsoft" and "EduRoster.ReadBasic" in state.granted_scopes

    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    own = emu.class_ids(tenant, teacher_id=teacher)
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(own)
    stored = {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert stored and stored == student_pseudonyms(runtime, emu, tenant, own)
    teachers = people(runtime.engine, integration_id, role="teacher")
    assert teachers and all(t.display_name for t in teachers), "teachers named from each class's teachers list"
    assert cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor) is None, (
        "a teacher link has no delta"
    )
    assert_minimal_selects(emu)
    assert any(r.path == "/v1.0/education/me/classes" for r in graph_calls(emu))
    assert_private(runtime, emu, integration_id, caplog.text)


def test_a_narrower_teacher_grant_is_refused_and_nothing_is_stored(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    emu.grant_consent(tenant, delegated=())
    with pytest.raises(LinkError):
        link_teacher(runtime, emu, emu.teacher_ids(tenant)[0])
    with runtime.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Integration)).scalar_one() == 0
    assert not graph_calls(emu)


def test_withdrawn_consent_ends_a_teacher_link(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    integration_id = link_teacher(runtime, emu, emu.teacher_ids(tenant)[0])
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert classes(runtime.engine, integration_id)

    emu.withdraw_consent(tenant)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == "revoked" and ended.token_blob is None
    assert not classes(runtime.engine, integration_id) and not people(runtime.engine, integration_id)
    assert not enrollments(runtime.engine, integration_id)
    with runtime.engine.connect() as connection:
        actions = set(
            connection.execute(select(AuditEvent.action).where(AuditEvent.integration_id == integration_id)).scalars()
        )
    assert "provider_revoke_unsupported" in actions, actions

    before = len(emu.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:revoked"
    assert len(emu.requests) == before, "no further request after the grant is gone"


# ------------------------------------------------------------------------------------- tenant
def test_tenant_link_full_sync_then_a_no_change_delta_writes_nothing(
    runtime: Runtime, emu: MicrosoftEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    round_trips: list[str] = []  # a hook sees each HTTP request once: a $batch, not its parts
    emu.add_hook(lambda record: round_trips.append(record.path) if record.path.startswith("/v1.0/") else None)
    start = len(emu.requests)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    full_requests = len(graph_calls(emu, start))
    assert "/v1.0/$batch" in round_trips
    assert outcome.provider_calls == len(round_trips) < full_requests  # the run counts requests, not $batch parts
    all_classes = emu.class_ids(tenant)
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(all_classes)
    stored = {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert stored == student_pseudonyms(runtime, emu, tenant, all_classes)
    assert cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor) is not None
    assert_minimal_selects(emu)
    assert_private(runtime, emu, integration_id, caplog.text)

    start = len(emu.requests)
    again = run_sync(runtime, integration_id)
    assert (again.outcome, again.mode, again.rows_written, again.removed) == ("ok", "changes", 0, 0)
    delta_requests = len(graph_calls(emu, start))
    assert again.provider_calls == delta_requests
    assert delta_requests < full_requests
    print(f"tenant: full sync {full_requests} Graph requests; no-change delta {delta_requests}")


def test_a_delta_change_is_synced(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    class_id = emu.class_ids(tenant)[0]
    newcomer = emu.add_student(class_id)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, newcomer)
    assert pseudonym in {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert_minimal_selects(emu)


@pytest.mark.parametrize("emu", [{"delta_reports_removed": True}], indirect=True)
def test_a_teacher_removed_in_users_delta_is_gone_with_name_email_and_enrolments(
    runtime: Runtime, emu: MicrosoftEmulator
) -> None:
    """``@removed`` names a Graph id, not a role: a removed teacher goes at the next delta, not a day later."""
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    teacher, colleague = emu.teacher_ids(tenant)[:2]
    pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, teacher)
    [stored] = [p for p in people(runtime.engine, integration_id, role="teacher") if p.pseudonym == pseudonym]
    assert stored.display_name and stored.email_address
    assert [e for e in enrollments(runtime.engine, integration_id) if e.person_id == stored.id]
    teachers_before = len(people(runtime.engine, integration_id, role="teacher"))
    emu.delete_user(teacher)  # users delta reports it @removed
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    current = people(runtime.engine, integration_id, role="teacher")
    assert pseudonym not in {p.pseudonym for p in current} and len(current) == teachers_before - 1
    assert not [e for e in enrollments(runtime.engine, integration_id) if e.person_id == stored.id]
    colleague_pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, colleague)
    assert colleague_pseudonym in {p.pseudonym for p in current}


def test_an_expired_delta_falls_back_to_a_full_sync(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    emu.expire_delta_tokens(tenant)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(emu.class_ids(tenant))
    assert run_sync(runtime, integration_id).mode == "changes", "a fresh delta link was stored"


def test_withdrawn_consent_ends_a_tenant_link(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    emu.withdraw_consent(tenant)
    outcome = run_sync(runtime, integration_id)
    # client credentials still issue a token, without roles: Graph answers 403, so the link ends degraded
    # (tokens deleted, roster purged), as docs/microsoft.md says
    assert outcome.outcome == "degraded"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == outcome.outcome and ended.token_blob is None
    assert not classes(runtime.engine, integration_id) and not people(runtime.engine, integration_id)
    before = len(emu.requests)
    assert run_sync(runtime, integration_id).outcome.startswith("skipped:")
    assert len(emu.requests) == before


def test_a_tenant_without_the_application_permission_is_refused(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    emu.grant_consent(tenant, application=())
    with pytest.raises(LinkError):
        link_org(runtime, provider_name="microsoft", org=tenant)
    with runtime.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Integration)).scalar_one() == 0


def test_admin_revoke_says_microsoft_has_no_revoke_endpoint(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    before = len(emu.requests)
    result = revoke_integration(runtime, integration_id, actor="admin:test", reason="school left")
    assert result.at_provider is AtProvider.UNSUPPORTED and not result.provider_revoked
    assert len(emu.requests) == before, "there is nothing to call at Microsoft"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == "revoked" and ended.token_blob is None
    assert not classes(runtime.engine, integration_id) and not people(runtime.engine, integration_id)
    with runtime.engine.connect() as connection:
        actions = set(
            connection.execute(select(AuditEvent.action).where(AuditEvent.integration_id == integration_id)).scalars()
        )
    assert "provider_revoke_unsupported" in actions and "provider_revoked" not in actions


def test_our_rejected_client_secret_is_retried_and_purges_nothing(runtime: Runtime, emu: MicrosoftEmulator) -> None:
    tenant = emu.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    stored = {c.external_id for c in classes(runtime.engine, integration_id)}
    emu.expire_access_tokens()
    emu.expire_client_secret()
    with pytest.raises(ClientRejected) as raised:
        run_sync(runtime, integration_id)
    assert "ROSTERSYNC_MICROSOFT_CLIENT_SECRET" in str(raised.value)
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "active" and state.token_blob is not None
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == stored


# ------------------------------------------------------------------------------------- Dramatiq
class DelayRecorder(Middleware):
    """Keeps the delay of every enqueue (a retry's delay is the provider's Retry-After plus jitter)."""

    def __init__(self) -> None:
        self.delays: list[int] = []

    def before_enqueue(self, broker: Broker, message: Any, delay: int) -> None:
        self.delays.append(delay or 0)


def test_in_process_worker_queues_ids_only_and_honours_withdrawn_consent(
    runtime: Runtime,
    emu: MicrosoftEmulator,
    stub_broker: StubBroker,
    message_recorder: MessageRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    from worker.actors import sync_integration

    school, other = emu.tenant_ids
    tenant_link = link_org(runtime, provider_name="microsoft", org=school)
    stays = link_teacher(runtime, emu, emu.teacher_ids(school)[0], "t-1")
    gone = link_teacher(runtime, emu, emu.teacher_ids(other)[0], "t-2")
    ids = [tenant_link, stays, gone]
    for change in (True, False):
        for one in ids:
            brokers.enqueue(sync_integration, one)
        brokers.drain(stub_broker)
        if change:
            emu.add_student(emu.class_ids(school)[0])
    assert all(classes(runtime.engine, one) for one in ids)
    assert cursor_document.loads(integrations.load(runtime.engine, tenant_link).sync_cursor) is not None

    emu.withdraw_consent(other)  # the teacher's tenant admin withdraws consent (CAE cuts the live token)
    for one in ids:
        brokers.enqueue(sync_integration, one)
    brokers.drain(stub_broker)
    assert stub_broker.dead_letters == [], "ended cleanly: not failed, not retried"
    assert integrations.load(runtime.engine, gone).status == "revoked"
    assert not classes(runtime.engine, gone) and not people(runtime.engine, gone)
    assert {integrations.load(runtime.engine, one).status for one in (tenant_link, stays)} == {"active"}
    since = len(emu.requests)
    for one in ids:
        brokers.enqueue(sync_integration, one)
    brokers.drain(stub_broker)
    assert not [r for r in emu.requests[since:] if r.user_id == emu.teacher_ids(other)[0]]
    assert [r for r in emu.requests[since:] if r.user_id == school], "the tenant link syncs on"

    encoded = [json.loads(m) for m in message_recorder.encoded]
    assert encoded and all(m["args"] in ([one] for one in ids) and not m["kwargs"] for m in encoded), "ids only"
    text = "\n".join(record.getMessage() for record in caplog.records)
    text += b"\n".join(message_recorder.encoded).decode()
    assert not [s for s in emu.personal_strings() if s in text]
    assert not [t for t in emu.issued_tokens() if t in text]
    assert "token_cache" not in text and "AccessToken" not in text and emu.client_secret not in text


def test_a_throttled_sync_is_retried_by_the_actor_after_retry_after(
    runtime: Runtime, emu: MicrosoftEmulator, stub_broker: StubBroker
) -> None:
    from worker.actors import sync_integration

    delays = DelayRecorder()
    stub_broker.add_middleware(delays)
    integration_id = link_org(runtime, provider_name="microsoft", org=emu.tenant_ids[0])
    emu.fail_next("/education/classes/delta", 429, retry_after=1)
    brokers.enqueue(sync_integration, integration_id)
    brokers.drain(stub_broker)
    assert stub_broker.dead_letters == []
    retries = [delay for delay in delays.delays[1:] if delay]  # a due delayed message is enqueued again, undelayed
    assert delays.delays[0] == 0 and len(retries) == 1
    assert retries[0] >= 1000, "the one retry waits at least the Retry-After (1 s)"
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert classes(runtime.engine, integration_id)
