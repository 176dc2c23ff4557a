"""The admin API of the mass-removal breaker: list held removals, approve and drop them; 404 and 409 answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator
from store import leases
from store.fence import Lease
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.features.test_breaker import remove_students
from tests.helpers import enrollments, people
from tests.webkit import AUTH


@pytest.fixture
def database_url(pg_url: str) -> str:
    return pg_url


def held_run(web_runtime: Runtime, emulator: GoogleEmulator) -> tuple[int, int]:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    remove_students(emulator, 6)
    outcome = run_sync(web_runtime, integration_id)
    assert outcome.outcome == "held"
    return integration_id, outcome.run_id


def test_held_removals_are_listed_approved_and_dropped(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id, run_id = held_run(web_runtime, emulator)
    [held] = client.get("/admin/held-removals", headers=AUTH).json()
    assert (held["run_id"], held["integration_id"], held["reason"]) == (run_id, integration_id, "share")
    assert held["enrollments"] >= 10 and held["people"] >= 10
    runs = client.get(f"/admin/runs?integration_id={integration_id}", headers=AUTH).json()
    assert runs[0]["outcome"] == "held"

    assert client.post("/admin/held-removals/999/approve", headers=AUTH).status_code == 404
    dropped = client.post(f"/admin/held-removals/{run_id}/drop", headers=AUTH)
    assert dropped.status_code == 200 and dropped.json()["decision"] == "dropped"
    assert client.post(f"/admin/held-removals/{run_id}/approve", headers=AUTH).status_code == 404
    assert client.get("/admin/held-removals", headers=AUTH).json() == []

    again = run_sync(web_runtime, integration_id)
    assert again.outcome == "held"
    lease = Lease("a-running-sync", 600)
    assert leases.acquire(web_runtime.engine, integration_id, lease) is not None
    busy = client.post(f"/admin/held-removals/{again.run_id}/approve", headers=AUTH)
    assert busy.status_code == 409 and "running" in busy.json()["detail"]
    leases.release(web_runtime.engine, integration_id, lease, 1, None)
    enrolled = len(enrollments(web_runtime.engine, integration_id))
    present = len(people(web_runtime.engine, integration_id))
    approved = client.post(f"/admin/held-removals/{again.run_id}/approve", headers=AUTH)
    assert approved.status_code == 200, approved.text
    enrolled -= len(enrollments(web_runtime.engine, integration_id))
    present -= len(people(web_runtime.engine, integration_id))
    assert (enrolled, present) == (held["enrollments"], held["people"])
    assert approved.json() == {
        "run_id": again.run_id,
        "integration_id": integration_id,
        "decision": "approved",
        "removed": enrolled + present,
    }
    events = client.get(f"/admin/audit?integration_id={integration_id}", headers=AUTH).json()
    assert {("removals_dropped", "admin:api"), ("removals_approved", "admin:api")} <= {
        (event["action"], event["actor"]) for event in events
    }


def test_a_revoke_through_the_api_wins_over_a_later_approve(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id, run_id = held_run(web_runtime, emulator)
    assert client.post(f"/admin/integrations/{integration_id}/revoke", headers=AUTH, json={}).status_code == 200
    refused = client.post(f"/admin/held-removals/{run_id}/approve", headers=AUTH)
    assert refused.status_code == 404 and "no longer held" in refused.json()["detail"]
    assert people(web_runtime.engine, integration_id, current=False) == []
