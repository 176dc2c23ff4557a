"""The admin API shows a ``blocked`` integration with the reason in the admin's words, and syncs it on request."""

from __future__ import annotations

from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.webkit import AUTH, wait_for


def test_admin_api_lists_a_blocked_integration_with_its_reason_and_syncs_it_on_request(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    emulator.disable_api(emulator.teacher_ids[0])
    assert run_sync(web_runtime, integration_id).outcome == "access_blocked"

    listed = client.get("/admin/integrations", headers=AUTH, params={"status": "blocked"})
    assert listed.status_code == 200
    [row] = listed.json()
    assert row["id"] == integration_id and row["status"] == "blocked"
    assert "Classroom data access" in row["status_reason"] and "Admin console" in row["status_reason"]
    assert row["counts"]["students"] > 0 and row["last_run"]["outcome"] == "access_blocked"

    # The admin switched it back and does not want to wait for the backoff: a manual sync is taken.
    emulator.enable_api(emulator.teacher_ids[0])
    queued = client.post(f"/admin/integrations/{integration_id}/sync", headers=AUTH)
    assert queued.status_code == 202 and queued.json()["request"] == "queued"
    wait_for(
        lambda: client.get(f"/admin/integrations/{integration_id}", headers=AUTH).json()["status"] == "active",
        what="the manual sync of the unblocked integration",
    )
