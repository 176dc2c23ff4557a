"""Issue 23 for Microsoft, through the sync cycle against the emulator, on SQLite and PostgreSQL.

Item 2: a Microsoft 365 tenant that is not an Education tenant (no School Data Sync, no Education
licence: Graph answers its ``/education`` calls 400) is refused at ``link org`` and at a teacher's link
with words an admin can act on, and an existing link in a tenant that loses its education data ends
``failed`` with that reason (tokens and roster kept) instead of staying ``active`` while every sync fails.
Item 5: a user (teacher or student) or a class deleted and restored with the same id comes back,
with their enrolments, at the next delta round.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.base import ProviderDataError
from connectors.microsoft import NotEducationTenant, classify_graph_error
from emulators.microsoft import MicrosoftEmulator
from services.linking import LinkError, link_org
from settings import Settings
from store import audit, integrations
from store.models import Integration
from store.runtime import Runtime
from sync.cycle import run_sync
from sync.outcomes import verdict
from tests.helpers import classes, enrollments, people
from tests.microsoft_fixtures import link_microsoft_teacher, microsoft_env, microsoft_settings_for

pytestmark = pytest.mark.microsoft(students_per_course=6)

NO_EDUCATION = "this Microsoft 365 tenant has no education data; School Data Sync or an Education licence is needed"


@pytest.fixture
def settings(microsoft: MicrosoftEmulator, database_url: str) -> Settings:
    return microsoft_settings_for(microsoft, database_url)


def stored_integrations(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Integration)).scalar_one())


def reason_of(runtime: Runtime, integration_id: int) -> str:
    state = integrations.load(runtime.engine, integration_id)
    with runtime.engine.connect() as connection:
        return audit.status_reason(connection, integration_id, state.status)


def pseudonym(runtime: Runtime, graph_id: str) -> str:
    return runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, graph_id)


# ------------------------------------------------------------------------ item 2: not an Education tenant
@pytest.mark.parametrize(
    ("code", "message", "education"),
    [
        ("Request_UnsupportedQuery", "Property 'extension_x_Education_ObjectType' does not exist.", False),
        ("BadRequest", "Resource not found for the segment 'education'.", False),
        ("BadRequest", "Could not find a property named 'x' on type 'microsoft.graph.educationClass'.", True),
        ("BadRequest", "Resource not found for the segment 'foo'.", True),
    ],
)
def test_only_the_answers_of_a_tenant_without_education_data_say_so(code: str, message: str, education: bool) -> None:
    error = classify_graph_error(400, {"error": {"code": code, "message": message}}, {}, app_only=True)
    assert isinstance(error, NotEducationTenant) is not education
    if education:
        assert isinstance(error, ProviderDataError)
    else:
        assert error.public == NO_EDUCATION and error.kind == "setup_required"


@pytest.mark.parametrize("answer", ["unsupported_query", "segment"])
def test_link_org_refuses_a_tenant_without_education_data_in_words_an_admin_can_act_on(
    runtime: Runtime, microsoft: MicrosoftEmulator, answer: str
) -> None:
    school, education = microsoft.tenant_ids
    microsoft.set_education(school, False, answer=answer)
    with pytest.raises(LinkError) as refused:
        link_org(runtime, provider_name="microsoft", org=school)
    assert NO_EDUCATION in str(refused.value)
    assert "Request_UnsupportedQuery" not in str(refused.value) and "400" not in str(refused.value)
    assert stored_integrations(runtime) == 0, "nothing is stored"
    linked = link_org(runtime, provider_name="microsoft", org=education)  # an Education tenant is unaffected
    assert run_sync(runtime, linked).outcome == "ok" and classes(runtime.engine, linked)


def test_cli_link_org_in_a_tenant_without_education_data_is_one_error_line(
    microsoft: MicrosoftEmulator, settings: Settings
) -> None:
    from tests.clikit import env_for, one_line_error, run

    env = env_for(settings) | microsoft_env(settings)
    school, education = microsoft.tenant_ids
    microsoft.set_education(school, False)
    one_line_error(run("link", "org", "--provider", "microsoft", "--org", school, env=env), NO_EDUCATION)
    linked = run("link", "org", "--provider", "microsoft", "--org", education, env=env)
    assert linked.returncode == 0, linked.stderr


def test_a_teacher_link_in_a_tenant_without_education_data_is_refused_and_nothing_is_stored(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    school, education = microsoft.tenant_ids
    microsoft.set_education(school, False)
    with pytest.raises(LinkError) as refused:
        link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(school)[0])
    assert NO_EDUCATION in str(refused.value)
    assert stored_integrations(runtime) == 0
    linked = link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(education)[0], "t-2")
    assert run_sync(runtime, linked).outcome == "ok"


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_a_link_whose_tenant_loses_its_education_data_fails_with_the_reason_and_keeps_the_roster(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str
) -> None:
    school, education = microsoft.tenant_ids
    if kind == "teacher":
        integration_id = link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(school)[0])
    else:
        integration_id = link_org(runtime, provider_name="microsoft", org=school)
    other = link_org(runtime, provider_name="microsoft", org=education)
    assert run_sync(runtime, integration_id).outcome == "ok" and run_sync(runtime, other).outcome == "ok"
    kept = {c.external_id for c in classes(runtime.engine, integration_id)}
    assert kept

    microsoft.set_education(school, False)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "setup_required"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "failed" and state.token_blob is not None, "not a revocation: tokens kept"
    assert NO_EDUCATION in reason_of(runtime, integration_id)
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == kept, "nothing purged"
    line = verdict(integration_id, outcome.outcome).line
    assert "admin" in line and "rostersync resume" in line and "roster kept" in line
    before = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:failed"
    assert len(microsoft.requests) == before, "no more calls until an admin resumes it"
    assert run_sync(runtime, other).outcome == "ok", "an Education tenant is unaffected"

    microsoft.set_education(school, True)  # School Data Sync set up: the admin resumes the link
    assert integrations.resume_failed(runtime.engine, integration_id, actor="admin:test")
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == kept


# ------------------------------------------------------------------------ item 5: restored with the same id
def linked_tenant(runtime: Runtime, microsoft: MicrosoftEmulator) -> tuple[str, int]:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    return tenant, integration_id


def person_of(runtime: Runtime, integration_id: int, graph_id: str, role: str) -> Any:
    wanted = pseudonym(runtime, graph_id)
    [person] = [p for p in people(runtime.engine, integration_id, role=role) if p.pseudonym == wanted]
    return person


def enrolments_of(runtime: Runtime, integration_id: int, graph_id: str, role: str) -> set[str]:
    """The Graph class ids a person is currently enrolled in, as stored."""
    person = person_of(runtime, integration_id, graph_id, role)
    by_id = {c.id: c.external_id for c in classes(runtime.engine, integration_id)}
    return {by_id[e.class_id] for e in enrollments(runtime.engine, integration_id) if e.person_id == person.id}


def is_current(runtime: Runtime, integration_id: int, graph_id: str, role: str) -> bool:
    return pseudonym(runtime, graph_id) in {p.pseudonym for p in people(runtime.engine, integration_id, role=role)}


@pytest.mark.parametrize("microsoft", [{"delta_reports_removed": True}, {}], indirect=True, ids=["removed", "silent"])
@pytest.mark.parametrize("role", ["student", "teacher"])
def test_a_user_deleted_and_restored_with_the_same_id_comes_back_with_their_enrolments(
    runtime: Runtime, microsoft: MicrosoftEmulator, role: str, request: pytest.FixtureRequest
) -> None:
    reported = "removed" in request.node.callspec.id
    tenant, integration_id = linked_tenant(runtime, microsoft)
    user = (microsoft.student_ids(tenant) if role == "student" else microsoft.teacher_ids(tenant))[0]
    before = enrolments_of(runtime, integration_id, user, role)
    assert before

    microsoft.delete_user(user)
    gone = run_sync(runtime, integration_id)
    assert (gone.outcome, gone.mode) == ("ok", "changes")
    if reported:  # without ``@removed`` the enrolments end at the next full reconcile (docs/microsoft.md)
        assert not is_current(runtime, integration_id, user, role)

    microsoft.recreate_user(user)
    back = run_sync(runtime, integration_id)
    assert (back.outcome, back.mode) == ("ok", "changes")
    assert is_current(runtime, integration_id, user, role)
    assert enrolments_of(runtime, integration_id, user, role) == before
    if role == "teacher":
        assert person_of(runtime, integration_id, user, role).display_name, "named again from its classes"


@pytest.mark.parametrize("report_removed", [True, False])
def test_a_class_deleted_and_restored_with_the_same_id_comes_back_with_its_members(
    runtime: Runtime, microsoft: MicrosoftEmulator, report_removed: bool
) -> None:
    tenant, integration_id = linked_tenant(runtime, microsoft)
    microsoft.report_removed_classes(report_removed)
    class_id = microsoft.class_ids(tenant)[0]
    [stored] = [c for c in classes(runtime.engine, integration_id) if c.external_id == class_id]
    members = {e.person_id for e in enrollments(runtime.engine, integration_id) if e.class_id == stored.id}
    assert members

    microsoft.delete_class(class_id)
    gone = run_sync(runtime, integration_id)
    assert (gone.outcome, gone.mode) == ("ok", "changes")
    assert (class_id in {c.external_id for c in classes(runtime.engine, integration_id)}) is not report_removed

    microsoft.recreate_class(class_id)
    back = run_sync(runtime, integration_id)
    assert (back.outcome, back.mode) == ("ok", "changes")
    assert class_id in {c.external_id for c in classes(runtime.engine, integration_id)}
    assert {e.person_id for e in enrollments(runtime.engine, integration_id) if e.class_id == stored.id} == members
