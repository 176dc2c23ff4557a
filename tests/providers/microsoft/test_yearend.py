"""School year's end on Microsoft 365, through the sync cycle on SQLite and PostgreSQL (docs/reliability.md,
"School year's end"): School Data Sync's "expire and archive" keeps the classes listed, tagged as expired; they
end with their enrolments and no hold, on a tenant link (class delta) as on a teacher link (full listings).
"""

from __future__ import annotations

import pytest

from emulators.microsoft import MicrosoftEmulator
from services.linking import link_org
from settings import Settings
from store import audit, breaker
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.helpers import classes, enrollments, people
from tests.microsoft_fixtures import link_microsoft_teacher, microsoft_settings_for

pytestmark = pytest.mark.microsoft(tenants=1, teachers=2)


@pytest.fixture
def settings(microsoft: MicrosoftEmulator, database_url: str) -> Settings:
    return microsoft_settings_for(microsoft, database_url)


def ended_cleanly(runtime: Runtime, integration_id: int) -> None:
    assert breaker.pending(runtime.engine) == []
    assert classes(runtime.engine, integration_id) == [] and enrollments(runtime.engine, integration_id) == []
    assert people(runtime.engine, integration_id) == []
    assert "removals_explained" in audit.actions(runtime.engine, integration_id)


@pytest.mark.parametrize("remove_students", [False, True])
def test_sds_year_end_on_a_tenant_link_ends_the_classes_with_no_hold(
    runtime: Runtime, microsoft: MicrosoftEmulator, remove_students: bool
) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_org(runtime, provider_name="microsoft", org=tenant)
    assert run_sync(runtime, integration_id).mode == "full"
    assert run_sync(runtime, integration_id).mode == "changes"
    assert classes(runtime.engine, integration_id)
    assert microsoft.sds_expire(tenant, remove_students=remove_students)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes"), outcome
    ended_cleanly(runtime, integration_id)
    # The periodic full listing still lists the expired classes: it ends nothing twice and holds nothing.
    runtime.settings.full_reconcile_seconds = 0
    full = run_sync(runtime, integration_id)
    assert (full.outcome, full.mode, full.removed) == ("ok", "full", 0)
    ended_cleanly(runtime, integration_id)


def test_sds_year_end_on_a_teacher_link_ends_the_classes_with_no_hold(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_microsoft_teacher(runtime, microsoft, microsoft.teacher_ids(tenant)[0])
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert classes(runtime.engine, integration_id)
    microsoft.sds_expire(tenant)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full") and outcome.removed > 0
    ended_cleanly(runtime, integration_id)
