"""The admin API's data-subject routes do what the commands do, and leave the same audit trail (P8-P10, P2)."""

from __future__ import annotations

import csv
import io
import zipfile

from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator
from store import audit
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.webkit import AUTH


def test_export_erase_lift_and_inventory_over_the_api(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    assert run_sync(web_runtime, integration_id).outcome == "ok"

    exported = client.get(f"/admin/integrations/{integration_id}/export", headers=AUTH)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    body = exported.json()
    students = [p for p in body["people"] if p["role"] == "student"]
    assert students and body["integration"]["consent_basis"] == "school"
    assert all(p.get("display_name") is None and p.get("email_address") is None for p in students)

    zipped = client.get(f"/admin/integrations/{integration_id}/export", headers=AUTH, params={"format": "oneroster"})
    assert zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        users = list(csv.DictReader(io.StringIO(archive.read("users.csv").decode())))
    assert {row["sourcedId"] for row in users} >= {p["pseudonym"] for p in students}

    pseudonym = students[0]["pseudonym"]
    person = client.get(f"/admin/people/{pseudonym}/export", headers=AUTH)
    assert person.status_code == 200 and person.json()["pseudonym"] == pseudonym

    erased = client.post(f"/admin/people/{pseudonym}/erase", headers=AUTH)
    assert erased.status_code == 200 and erased.json()["suppressed"] is True
    assert client.get(f"/admin/people/{pseudonym}/export", headers=AUTH).status_code == 404
    assert client.delete(f"/admin/suppressions/{pseudonym}", headers=AUTH).json() == {"lifted": 1}
    assert client.delete(f"/admin/suppressions/{pseudonym}", headers=AUTH).status_code == 404

    providers = client.get("/admin/inventory", headers=AUTH).json()["providers"]
    assert "google" in {p["provider"] for p in providers}
    one = client.get(f"/admin/integrations/{integration_id}/inventory", headers=AUTH).json()
    assert one["consent_basis"] == "school"
    assert client.get("/admin/integrations/999/inventory", headers=AUTH).status_code == 404
    assert client.get("/admin/people/not-a-pseudonym/export", headers=AUTH).status_code == 422

    actions = [(e.action, e.actor) for e in audit.events(web_runtime.engine) if e.actor == "admin:api"]
    assert actions == [
        ("exported", "admin:api"),
        ("exported", "admin:api"),
        ("exported", "admin:api"),
        ("erased", "admin:api"),
        ("suppression_lifted", "admin:api"),
    ]
