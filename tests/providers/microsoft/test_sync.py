"""Microsoft Graph Education through the provider-neutral sync cycle, against the Microsoft emulator and
the real MSAL, on SQLite and PostgreSQL: teacher links (auth code + PKCE) and tenant links (client
credentials), delta re-syncs, an expired delta, withdrawn consent, a narrower grant refused at link time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from sqlalchemy import func, select

from connectors.microsoft import ClientRejected
from emulators.microsoft import MicrosoftEmulator
from services.linking import LinkError, link_org
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
from tests.microsoft_fixtures import link_microsoft_teacher, microsoft_settings_for
from worker import broker as brokers


@pytest.fixture
def settings(microsoft: MicrosoftEmulator, database_url: str) -> Settings:
    return microsoft_settings_for(microsoft, database_url)


def graph_calls(microsoft: MicrosoftEmulator, since: int = 0) -> list[Any]:
    return [r for r in microsoft.requests[since:] if r.path.startswith("/v1.0/")]


def student_pseudonyms(
    runtime: Runtime, microsoft: MicrosoftEmulator, tenant_id: str, class_ids: list[str]
) -> set[str]:
    students = set(microsoft.student_ids(tenant_id))
    platform = runtime.settings.default_tenant
    return {
        runtime.pseudonymiser.pseudonym("microsoft", platform, member)
        for class_id in class_ids
        for member in microsoft.members_of(class_id)
        if member in students
    }


def assert_private(runtime: Runtime, microsoft: MicrosoftEmulator, integration_id: int, log_text: str) -> None:
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
    assert not [s for s in microsoft.personal_strings() if s in dump], "a dropped Graph property reached a table"
    assert not [s for s in microsoft.personal_strings() if s in log_text], "a personal value in a log line"
    assert not [t for t in microsoft.issued_tokens() if t in dump or t in log_text], "a token in the clear"
    assert "code_verifier" not in dump and "refresh_token" not in dump.lower().replace("refresh_token_blob", "")


def assert_minimal_selects(microsoft: MicrosoftEmulator, since: int = 0) -> None:
    """Every Graph read names its properties, and no read of people could return a student's name."""
    for call in graph_calls(microsoft, since):
        if call.path.endswith("/$batch") or {"$deltatoken", "$skiptoken"} & set(call.query):
            continue  # sub-requests are logged on their own; delta and next links carry their round's $select
        assert "$select" in call.query, f"a Graph read without $select: {call.path}"
        if call.path.endswith("/members") or call.path.endswith("/users/delta"):
            assert call.query["$select"] == ["id,primaryRole"]


# ------------------------------------------------------------------------------------- teacher
def test_teacher_link_end_to_end_syncs_own_classes_with_students_as_pseudonyms(
    runtime: Runtime, microsoft: MicrosoftEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = microsoft.tenant_ids[0]
    teacher = microsoft.teacher_ids(tenant)[0]
    integration_id = link_microsoft_teacher(runtime, microsoft, teacher)
    state = integrations.load(runtime.engine, integration_id)
    assert state.provider == "microsoft" and "EduRoster.ReadBasic" in state.granted_scopes

    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    own = microsoft.class_ids(tenant, teacher_id=teacher)
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(own)
    stored = {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert stored and stored == student_pseudonyms(runtime, microsoft, tenant, own)
    teachers = people(runtime.engine, integration_id, role="teacher")
    assert teachers and all(t.display_name for t in teachers), "teachers named from each class's teachers list"
    assert cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor) is None, (
        "a teacher link has no delta"
    )
    assert_minimal_selects(microsoft)
    assert any(r.path == "/v1.0/education/me/classes" for r in graph_calls(microsoft))
    assert_private(runtime, microsoft, integration_id, caplog.text)


def test_a_narrower_teacher_grant_is_refused_and_nothing_is_stored(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    tenant = microsoft.tenant_ids[0]
    microsoft.grant_consent(tenant, delegated=())
    with pytest.raises(LinkError):
        link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(tenant)[0])
    with runtime.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Integration)).scalar_one() == 0
    assert not graph_calls(microsoft)


def test_withdrawn_consent_ends_a_teacher_link(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(tenant)[0])
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert classes(runtime.engine, integration_id)

    microsoft.withdraw_consent(tenant)
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

    before = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:revoked"
    assert len(microsoft.requests) == before, "no further request after the grant is gone"


# ------------------------------------------------------------------------------------- tenant
def test_tenant_link_full_sync_then_a_no_change_delta_writes_nothing(
    runtime: Runtime, microsoft: MicrosoftEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    round_trips: list[str] = []  # a hook sees each HTTP request once: a $batch, not its parts
    microsoft.add_hook(lambda record: round_trips.append(record.path) if record.path.startswith("/v1.0/") else None)
    start = len(microsoft.requests)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    full_requests = len(graph_calls(microsoft, start))
    assert "/v1.0/$batch" in round_trips
    assert outcome.provider_calls == len(round_trips) < full_requests  # the run counts requests, not $batch parts
    all_classes = microsoft.class_ids(tenant)
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(all_classes)
    stored = {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert stored == student_pseudonyms(runtime, microsoft, tenant, all_classes)
    assert cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor) is not None
    assert_minimal_selects(microsoft)
    assert_private(runtime, microsoft, integration_id, caplog.text)

    start = len(microsoft.requests)
    again = run_sync(runtime, integration_id)
    assert (again.outcome, again.mode, again.rows_written, again.removed) == ("ok", "changes", 0, 0)
    delta_requests = len(graph_calls(microsoft, start))
    assert again.provider_calls == delta_requests
    assert delta_requests < full_requests
    print(f"tenant: full sync {full_requests} Graph requests; no-change delta {delta_requests}")


def test_a_delta_change_is_synced(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    class_id = microsoft.class_ids(tenant)[0]
    newcomer = microsoft.add_student(class_id)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, newcomer)
    assert pseudonym in {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert_minimal_selects(microsoft)


@pytest.mark.parametrize("microsoft", [{"delta_reports_removed": True}], indirect=True)
def test_a_teacher_removed_in_users_delta_is_gone_with_name_email_and_enrolments(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    """``@removed`` names a Graph id, not a role: a removed teacher goes at the next delta, not a day later."""
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    teacher, colleague = microsoft.teacher_ids(tenant)[:2]
    pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, teacher)
    [stored] = [p for p in people(runtime.engine, integration_id, role="teacher") if p.pseudonym == pseudonym]
    assert stored.display_name and stored.email_address
    assert [e for e in enrollments(runtime.engine, integration_id) if e.person_id == stored.id]
    teachers_before = len(people(runtime.engine, integration_id, role="teacher"))
    microsoft.delete_user(teacher)  # users delta reports it @removed
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes")
    current = people(runtime.engine, integration_id, role="teacher")
    assert pseudonym not in {p.pseudonym for p in current} and len(current) == teachers_before - 1
    assert not [e for e in enrollments(runtime.engine, integration_id) if e.person_id == stored.id]
    colleague_pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, colleague)
    assert colleague_pseudonym in {p.pseudonym for p in current}


def test_an_expired_delta_falls_back_to_a_full_sync(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.expire_delta_tokens(tenant)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(microsoft.class_ids(tenant))
    assert run_sync(runtime, integration_id).mode == "changes", "a fresh delta link was stored"


def test_withdrawn_consent_ends_a_tenant_link(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.withdraw_consent(tenant)
    outcome = run_sync(runtime, integration_id)
    # client credentials still issue a token, without roles: Graph answers 403, so the link ends degraded
    # (tokens deleted, roster purged), as docs/microsoft.md says
    assert outcome.outcome == "degraded"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == outcome.outcome and ended.token_blob is None
    assert not classes(runtime.engine, integration_id) and not people(runtime.engine, integration_id)
    before = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome.startswith("skipped:")
    assert len(microsoft.requests) == before


def test_a_tenant_without_the_application_permission_is_refused(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    microsoft.grant_consent(tenant, application=())
    with pytest.raises(LinkError):
        link_org(runtime, provider_name="microsoft", org=tenant)
    with runtime.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Integration)).scalar_one() == 0


def test_admin_revoke_says_microsoft_has_no_revoke_endpoint(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    before = len(microsoft.requests)
    result = revoke_integration(runtime, integration_id, actor="admin:test", reason="school left")
    assert result.at_provider is AtProvider.UNSUPPORTED and not result.provider_revoked
    assert len(microsoft.requests) == before, "there is nothing to call at Microsoft"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == "revoked" and ended.token_blob is None
    assert not classes(runtime.engine, integration_id) and not people(runtime.engine, integration_id)
    with runtime.engine.connect() as connection:
        actions = set(
            connection.execute(select(AuditEvent.action).where(AuditEvent.integration_id == integration_id)).scalars()
        )
    assert "provider_revoke_unsupported" in actions and "provider_revoked" not in actions


def test_our_rejected_client_secret_is_retried_and_purges_nothing(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    stored = {c.external_id for c in classes(runtime.engine, integration_id)}
    microsoft.expire_access_tokens()
    microsoft.expire_client_secret()
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
    microsoft: MicrosoftEmulator,
    stub_broker: StubBroker,
    message_recorder: MessageRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    from worker.actors import sync_integration

    school, other = microsoft.tenant_ids
    tenant_link = link_org(runtime, provider_name="microsoft", org=school)
    stays = link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(school)[0], "t-1")
    gone = link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(other)[0], "t-2")
    ids = [tenant_link, stays, gone]
    for change in (True, False):
        for one in ids:
            brokers.enqueue(sync_integration, one)
        brokers.drain(stub_broker)
        if change:
            microsoft.add_student(microsoft.class_ids(school)[0])
    assert all(classes(runtime.engine, one) for one in ids)
    assert cursor_document.loads(integrations.load(runtime.engine, tenant_link).sync_cursor) is not None

    microsoft.withdraw_consent(other)  # the teacher's tenant admin withdraws consent (CAE cuts the live token)
    for one in ids:
        brokers.enqueue(sync_integration, one)
    brokers.drain(stub_broker)
    assert stub_broker.dead_letters == [], "ended cleanly: not failed, not retried"
    assert integrations.load(runtime.engine, gone).status == "revoked"
    assert not classes(runtime.engine, gone) and not people(runtime.engine, gone)
    assert {integrations.load(runtime.engine, one).status for one in (tenant_link, stays)} == {"active"}
    since = len(microsoft.requests)
    for one in ids:
        brokers.enqueue(sync_integration, one)
    brokers.drain(stub_broker)
    assert not [r for r in microsoft.requests[since:] if r.user_id == microsoft.teacher_ids(other)[0]]
    assert [r for r in microsoft.requests[since:] if r.user_id == school], "the tenant link syncs on"

    encoded = [json.loads(m) for m in message_recorder.encoded]
    assert encoded and all(m["args"] in ([one] for one in ids) and not m["kwargs"] for m in encoded), "ids only"
    text = "\n".join(record.getMessage() for record in caplog.records)
    text += b"\n".join(message_recorder.encoded).decode()
    assert not [s for s in microsoft.personal_strings() if s in text]
    assert not [t for t in microsoft.issued_tokens() if t in text]
    assert "token_cache" not in text and "AccessToken" not in text and microsoft.client_secret not in text


def test_a_throttled_sync_is_retried_by_the_actor_after_retry_after(
    runtime: Runtime, microsoft: MicrosoftEmulator, stub_broker: StubBroker
) -> None:
    from worker.actors import sync_integration

    delays = DelayRecorder()
    stub_broker.add_middleware(delays)
    integration_id = link_org(runtime, provider_name="microsoft", org=microsoft.tenant_ids[0])
    microsoft.fail_next("/education/classes/delta", 429, retry_after=1)
    brokers.enqueue(sync_integration, integration_id)
    brokers.drain(stub_broker)
    assert stub_broker.dead_letters == []
    retries = [delay for delay in delays.delays[1:] if delay]  # a due delayed message is enqueued again, undelayed
    assert delays.delays[0] == 0 and len(retries) == 1
    assert retries[0] >= 1000, "the one retry waits at least the Retry-After (1 s)"
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert classes(runtime.engine, integration_id)
