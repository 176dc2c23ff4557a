"""The admin API and /link as a newcomer reads them (issue 21, item 4): times with their offset, no `_created`
series, an unknown tenant, and an unsigned link told apart from a forged or expired one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator
from store import audit, runs
from store.runtime import Runtime
from tests.conftest import link_teacher
from tests.webkit import AUTH, signed

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'words.db'}"


def times_in(payload: object) -> list[str]:
    """Every value of a key ending ``_at`` (or named ``at``), anywhere in a JSON payload."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if (key == "at" or key.endswith("_at")) and isinstance(value, str):
                found.append(value)
            else:
                found.extend(times_in(value))
    elif isinstance(payload, list):
        for item in payload:
            found.extend(times_in(item))
    return found


def test_times_carry_their_offset(client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    runs.finish_run(web_runtime.engine, runs.start_run(web_runtime.engine, integration_id), "ok")
    shown = []
    for path in ("/admin/integrations", "/admin/runs", "/admin/audit", f"/admin/integrations/{integration_id}"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 200, path
        shown.extend(times_in(response.json()))
    assert len(shown) >= 4
    assert all(RFC3339_UTC.match(value) for value in shown), shown


def test_metrics_have_no_created_series(client: TestClient) -> None:
    text = client.get("/metrics", headers=AUTH).text
    assert "rostersync_admin_revokes" in text
    assert "_created" not in text


def test_a_tenant_revoke_of_an_unknown_tenant_is_404(client: TestClient) -> None:
    response = client.post("/admin/tenants/no-such-school/revoke", headers=AUTH)
    assert response.status_code == 404
    assert "no-such-school" in response.json()["detail"]


def test_unsigned_forged_and_expired_links_are_told_apart(client: TestClient) -> None:
    good = signed("teacher-9")
    cases = {
        "unsigned": {"teacher": "teacher-9"},
        "forged": good | {"sig": "0" * 64},
        "expired": signed("teacher-9", lifetime=-5),
    }
    for result, query in cases.items():
        refused = client.get("/link/google", params=query, follow_redirects=False)
        assert refused.status_code == 403, result
    metrics = client.get("/metrics", headers=AUTH).text
    for result in cases:
        assert f'rostersync_web_links_total{{provider="google",result="{result}"}} 1.0' in metrics, metrics


def test_a_failed_sync_is_not_audited_as_synced(web_runtime: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    for outcome in ("transient", "skipped:busy", "ok"):
        runs.finish_run(web_runtime.engine, runs.start_run(web_runtime.engine, integration_id), outcome)
    actions = audit.actions(web_runtime.engine, integration_id)
    assert actions[-3:] == ["sync_failed", "sync_skipped", "synced"]
