"""The mass-removal breaker on a Microsoft teacher link (full listings), on SQLite and PostgreSQL: most members
gone is held, a revoke between hold and approve wins, and a drop leaves the roster as it was; on a tenant
link, a delta page deleting too much is rolled back and the full listing that follows is held.
"""

from __future__ import annotations

import pytest

from emulators.microsoft import MicrosoftEmulator
from services.linking import link_org
from services.revoke import revoke_integration
from store import breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.helpers import classes, enrollments, people
from tests.microsoft_fixtures import link_microsoft_teacher as link_teacher
from tests.providers.microsoft.test_sync import settings as microsoft_settings

pytestmark = pytest.mark.microsoft(tenants=1, teachers=2, delta_reports_removed=True)

settings = microsoft_settings


def take_students_away(microsoft: MicrosoftEmulator, teacher: str, per_class: int) -> int:
    tenant = microsoft.tenant_ids[0]
    students = set(microsoft.student_ids(tenant))
    taken = 0
    for class_id in microsoft.class_ids(tenant, teacher_id=teacher):
        for member in [m for m in microsoft.members_of(class_id) if m in students][:per_class]:
            microsoft.remove_member(class_id, member)
            taken += 1
    return taken


def linked_and_held(runtime: Runtime, microsoft: MicrosoftEmulator) -> tuple[int, int, tuple[int, int]]:
    teacher = microsoft.teacher_ids(microsoft.tenant_ids[0])[0]
    integration_id = link_teacher(runtime, microsoft, teacher)
    assert run_sync(runtime, integration_id).outcome == "ok"
    before = (len(people(runtime.engine, integration_id)), len(enrollments(runtime.engine, integration_id)))
    assert take_students_away(microsoft, teacher, 6) >= 10
    held = run_sync(runtime, integration_id)
    assert (held.outcome, held.mode, held.removed) == ("held", "full", 0)
    return integration_id, held.run_id, before


def test_most_members_gone_is_held_and_dropped(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    integration_id, run_id, before = linked_and_held(runtime, microsoft)
    [view] = breaker.pending(runtime.engine)
    assert (view.provider, view.reason, view.run_id) == ("microsoft", "share", run_id)
    breaker.drop(runtime.engine, run_id, actor="admin:test")
    after = (len(people(runtime.engine, integration_id)), len(enrollments(runtime.engine, integration_id)))
    assert after == before and breaker.pending(runtime.engine) == []


def test_a_revoke_between_hold_and_approve_wins(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    integration_id, run_id, _before = linked_and_held(runtime, microsoft)
    revoke_integration(runtime, integration_id, actor="admin:test", reason="test")
    with pytest.raises(breaker.HoldError):
        breaker.approve(runtime.engine, run_id, actor="admin:test", lease_seconds=60)
    assert people(runtime.engine, integration_id, current=False) == []
    assert breaker.pending(runtime.engine) == [], "the purge took the hold along"


def test_a_delta_page_deleting_too_much_falls_back_to_a_held_full_listing(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).mode == "full"
    assert run_sync(runtime, integration_id).mode == "changes"
    before = (len(classes(runtime.engine, integration_id)), len(people(runtime.engine, integration_id)))
    students = microsoft.student_ids(tenant)
    stored = {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    pseudonym = runtime.pseudonymiser.pseudonym
    deleted = {pseudonym("microsoft", runtime.settings.default_tenant, s) for s in students[: len(students) // 2]}
    for student in students[: len(students) // 2]:
        microsoft.delete_user(student)  # reported as @removed by users delta
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode, outcome.removed) == ("held", "full", 0)
    assert (len(classes(runtime.engine, integration_id)), len(people(runtime.engine, integration_id))) == before
    [view] = breaker.pending(runtime.engine)
    assert (view.provider, view.people) == ("microsoft", len(deleted & stored))
