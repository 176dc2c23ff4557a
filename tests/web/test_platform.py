"""The /v1 platform API (issue 20, docs/platform.md): tokens, the snapshot, the feed, resolving pseudonyms.

Events are written the way the outbox writes them (tests/feedkit.py); the roster comes from a real
sync of the Google emulator, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from emulators.google import GoogleEmulator
from store.models import Person
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.feedkit import forget, write_events
from tests.webkit import ADMIN_TOKENS, AUTH, PLATFORM, PLATFORM_TOKENS

V1_ROUTES = (
    "/v1/integrations",
    "/v1/integrations/1/classes",
    "/v1/integrations/1/members",
    "/v1/changes",
    "/v1/changes/head",
)


def _all(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following ``next`` one page of ``limit`` at a time."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = client.get(path, params=params | ({"after": after} if after else {}), headers=PLATFORM)
        assert page.status_code == 200, page.text
        items += page.json()["data"]
        after = page.json()["next"]
        if after is None:
            return items


def _synced(rt: Runtime, emulator: GoogleEmulator, index: int = 0) -> int:
    integration_id = link_teacher(rt, emulator, index)
    assert run_sync(rt, integration_id).outcome == "ok"
    return integration_id


# ------------------------------------------------------------------------------------------ tokens
@pytest.mark.parametrize("path", V1_ROUTES)
def test_only_platform_tokens_open_v1(client: TestClient, path: str) -> None:
    for headers in ({}, AUTH, {"Authorization": f"Bearer {ADMIN_TOKENS[0]}"}, {"Authorization": "Bearer x" * 40}):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert refused.headers["www-authenticate"] == 'Bearer realm="rostersync-platform"'
    for token in PLATFORM_TOKENS:
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code in (200, 404)


def test_platform_tokens_do_not_open_admin_routes(client: TestClient) -> None:
    for token in PLATFORM_TOKENS:
        refused = client.get("/admin/integrations", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="rostersync-admin"'
    assert client.get("/metrics", headers=PLATFORM).status_code == 401
    assert client.post("/v1/people/resolve", json={}, headers=AUTH).status_code == 401


# ------------------------------------------------------------------------------------------ snapshot
def test_integrations_list_filters_and_pages(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    ids = [link_teacher(web_runtime, emulator, n, tenant=tenant) for n, tenant in enumerate(["a", "b", "a"])]
    items = _all(client, "/v1/integrations", limit=1)
    assert [item["id"] for item in items] == ids
    first = items[0]
    assert set(first) == {"id", "provider", "tenant", "linked_by", "status", "consent_basis", "updated_at"}
    assert (first["provider"], first["tenant"], first["linked_by"], first["status"]) == (
        "google",
        "a",
        "teacher-0",
        "active",
    )
    assert datetime.fromisoformat(first["updated_at"]).utcoffset() is not None
    assert first["updated_at"].endswith("+00:00")
    assert [item["id"] for item in _all(client, "/v1/integrations", tenant="a")] == [ids[0], ids[2]]
    client.post(f"/admin/integrations/{ids[1]}/revoke", headers=AUTH)
    assert [item["id"] for item in _all(client, "/v1/integrations", status="revoked")] == [ids[1]]
    one = client.get("/v1/integrations", params={"limit": 3}, headers=PLATFORM).json()
    assert one["next"] is None and len(one["data"]) == 3


def test_classes_and_members_are_the_roster(client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = _synced(web_runtime, emulator)
    teacher = emulator.teacher_ids[0]
    courses = emulator.course_ids_of(teacher, states={"ACTIVE"})
    classes = _all(client, f"/v1/integrations/{integration_id}/classes", limit=2)
    assert set(classes[0]) == {"key", "name", "section", "state"}
    assert {c["key"] for c in classes} >= set(courses)
    members = _all(client, f"/v1/integrations/{integration_id}/members", limit=7)
    assert members and set(members[0]) == {"class", "person", "role", "display_name"}
    students = [m for m in members if m["role"] == "student"]
    teachers = [m for m in members if m["role"] == "teacher"]
    assert students and all(m["display_name"] is None for m in students)
    assert teachers and all(m["display_name"] for m in teachers)
    with web_runtime.engine.connect() as connection:
        stored = set(connection.execute(select(Person.pseudonym).where(Person.removed_at.is_(None))).scalars())
    assert {m["person"] for m in members} == stored
    course = courses[0]
    one_class = _all(client, f"/v1/integrations/{integration_id}/members", **{"class": course})
    assert {m["class"] for m in one_class} == {course}
    assert len([m for m in one_class if m["role"] == "student"]) == len(emulator.student_ids_of(course))
    assert _all(client, f"/v1/integrations/{integration_id}/members", **{"class": "no-such-class"}) == []


def test_unknown_integration_is_404_and_a_revoked_one_holds_nothing(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    for path in ("classes", "members"):
        missing = client.get(f"/v1/integrations/999999/{path}", headers=PLATFORM)
        assert missing.status_code == 404 and "999999" in missing.json()["detail"]
    integration_id = _synced(web_runtime, emulator)
    assert _all(client, f"/v1/integrations/{integration_id}/classes")
    assert client.post(f"/admin/integrations/{integration_id}/revoke", headers=AUTH).status_code == 200
    for path in ("classes", "members"):
        answer = client.get(f"/v1/integrations/{integration_id}/{path}", headers=PLATFORM)
        assert answer.status_code == 200 and answer.json() == {"data": [], "next": None}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/integrations", {"limit": 0}),
        ("/v1/integrations", {"limit": 1001}),
        ("/v1/integrations", {"after": "bm9wZQ"}),  # base64 of "nope": a string, not one of our cursors
        ("/v1/integrations", {"after": "!!"}),
        ("/v1/integrations", {"status": "sleeping"}),
        ("/v1/integrations/1/classes", {"after": "aTE"}),  # an integrations cursor ("i1") given to classes
        ("/v1/changes", {"after": -1}),
        ("/v1/changes", {"wait": 31}),
        ("/v1/changes", {"limit": "many"}),
    ],
)
def test_bad_input_is_422_naming_the_parameter(client: TestClient, path: str, params: dict[str, Any]) -> None:
    refused = client.get(path, params=params, headers=PLATFORM)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"][0] == "query"


# ------------------------------------------------------------------------------------------ the feed
def test_changes_pages_in_seq_order_from_any_position(client: TestClient, web_runtime: Runtime) -> None:
    assert client.get("/v1/changes/head", headers=PLATFORM).json() == {"seq": 0}
    assert client.get("/v1/changes", headers=PLATFORM).json() == {"data": [], "next": 0}
    seqs = write_events(web_runtime.engine, [("class.upserted", 7, {"key": f"k{n}", "name": "n"}) for n in range(5)])
    assert client.get("/v1/changes/head", headers=PLATFORM).json() == {"seq": seqs[-1]}
    page = client.get("/v1/changes", params={"limit": 2}, headers=PLATFORM).json()
    assert [e["seq"] for e in page["data"]] == seqs[:2] and page["next"] == seqs[1]
    event = page["data"][0]
    assert set(event) == {"seq", "at", "type", "integration_id", "data"}
    assert (event["type"], event["integration_id"], event["data"]) == ("class.upserted", 7, {"key": "k0", "name": "n"})
    assert event["at"].endswith("+00:00")
    rest = client.get("/v1/changes", params={"after": page["next"], "limit": 100}, headers=PLATFORM).json()
    assert [e["seq"] for e in rest["data"]] == seqs[2:] and rest["next"] == seqs[-1]
    assert client.get("/v1/changes", params={"after": seqs[-1]}, headers=PLATFORM).json() == {
        "data": [],
        "next": seqs[-1],
    }


def test_a_position_older_than_retention_or_past_the_head_is_410(client: TestClient, web_runtime: Runtime) -> None:
    seqs = write_events(web_runtime.engine, [("person.erased", 3, {"person": f"p{n}"}) for n in range(6)])
    forget(web_runtime.engine, seqs[2])
    gone = client.get("/v1/changes", params={"after": seqs[1]}, headers=PLATFORM)
    assert gone.status_code == 410
    assert "new snapshot" in gone.json()["detail"] and gone.json()["forgotten_through"] == seqs[2]
    kept = client.get("/v1/changes", params={"after": 0}, headers=PLATFORM).json()
    assert [e["seq"] for e in kept["data"]] == seqs[3:]  # after=0: from the oldest kept, never refused
    assert client.get("/v1/changes", params={"after": seqs[2]}, headers=PLATFORM).status_code == 200
    ahead = client.get("/v1/changes", params={"after": seqs[-1] + 1}, headers=PLATFORM)
    assert ahead.status_code == 410 and "new snapshot" in ahead.json()["detail"]


def test_wait_long_polls_until_an_event_arrives(client: TestClient, web_runtime: Runtime) -> None:
    [first] = write_events(web_runtime.engine, [("person.erased", 1, {"person": "p"})])

    def later() -> None:
        time.sleep(0.5)
        write_events(web_runtime.engine, [("person.erased", 1, {"person": "q"})])

    writer = threading.Thread(target=later)
    writer.start()
    answer = client.get("/v1/changes", params={"after": first, "wait": 30}, headers=PLATFORM)
    writer.join()
    assert [e["data"] for e in answer.json()["data"]] == [{"person": "q"}]
    quiet = client.get("/v1/changes", params={"after": first + 1, "wait": 1}, headers=PLATFORM)
    assert quiet.json() == {"data": [], "next": first + 1}


# ------------------------------------------------------------------------------------------ people
def test_resolve_gives_the_pseudonym_the_sync_stored(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = _synced(web_runtime, emulator)
    student = emulator.student_ids_of(emulator.course_ids_of(emulator.teacher_ids[0])[0])[0]
    body = {"provider": "google", "tenant": web_runtime.settings.default_tenant, "provider_user_id": student}
    answer = client.post("/v1/people/resolve", json=body, headers=PLATFORM)
    assert answer.status_code == 200, answer.text
    members = _all(client, f"/v1/integrations/{integration_id}/members")
    assert answer.json()["person"] in {m["person"] for m in members if m["role"] == "student"}
    other = client.post("/v1/people/resolve", json=body | {"tenant": "another-school"}, headers=PLATFORM)
    assert other.json()["person"] != answer.json()["person"]
    metrics = client.get("/metrics", headers=AUTH).text
    assert 'rostersync_platform_resolves_total{provider="google"} 2.0' in metrics
    assert student not in metrics


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "myspace", "tenant": "t", "provider_user_id": "secret-id-123"},
        {"provider": "google", "tenant": "t", "provider_user_id": "secret-id-123\n"},
        {"provider": "google", "tenant": "t", "provider_user_id": "secret-id-123" * 20},
        {"provider": "google", "tenant": "t", "provider_user_id": "secret-id-123", "email": "x"},
        {"provider": "google", "tenant": "", "provider_user_id": "secret-id-123"},
        {"provider": "google", "tenant": "t"},
    ],
)
def test_resolve_refuses_bad_input_without_echoing_it(client: TestClient, body: dict[str, Any]) -> None:
    refused = client.post("/v1/people/resolve", json=body, headers=PLATFORM)
    assert refused.status_code == 422
    assert "secret-id-123" not in refused.text
