"""The mass-removal breaker on a Microsoft tenant link, on SQLite and PostgreSQL: a delta page deleting too much
is rolled back and the full listing that follows is held. What holds on a Microsoft teacher link (full listings)
as on every provider's (most members gone is held, a drop leaves the roster as it was, a revoke between hold and
approve wins) is tests/conformance/test_breaker.py.
"""

from __future__ import annotations

import pytest

from emulators.microsoft import MicrosoftEmulator
from services.linking import link_org
from store import breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.helpers import classes, people
from tests.providers.microsoft.test_sync import settings as microsoft_settings

pytestmark = pytest.mark.microsoft(tenants=1, teachers=2, delta_reports_removed=True)

settings = microsoft_settings


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
