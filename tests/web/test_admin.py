"""The admin API: 401 before anything else, revokes (one, a tenant, a teacher's own), syncs, runs, audit, health."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator, RequestRecord
from store import integrations, runs, scheduling
from store.runtime import Runtime, build_runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher, settings_for
from tests.helpers import dump_tables, row_count
from tests.webkit import ADMIN_TOKENS, AUTH, first_run_done, wait_for
from web.app import create_app
from web.auth import token_ok


@pytest.fixture
def database_url(pg_url: str) -> str:
    """The admin API's tests run on PostgreSQL, the production database (the link flow runs on both)."""
    return pg_url


def every_admin_call(client: TestClient, integration_id: int) -> list[tuple[str, str]]:
    """Every admin operation of the OpenAPI document, with its path parameters filled in."""
    calls = []
    for template, operations in client.get("/openapi.json").json()["paths"].items():
        if template.startswith("/admin/"):
            path = template.replace("{integration_id}", str(integration_id))
            path = path.replace("{tenant}", "default-school").replace("{teacher}", "teacher-0")
            path = path.replace("{pseudonym}", "0" * 64).replace("{run_id}", "1")
            assert not re.search(r"{\w+}", path), path
            calls.extend((method.upper(), path) for method in operations)
    assert len(calls) >= 10
    return calls


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Bearer {ADMIN_TOKENS[0]}x", "Basic abc", ""])
def test_no_or_a_wrong_token_is_401_and_changes_nothing(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator, header: str | None
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    before = dump_tables(web_runtime.engine)
    headers = {"Authorization": header} if header is not None else {}
    for method, path in every_admin_call(client, integration_id):
        response = client.request(method, path, headers=headers, json={"reason": "x", "seconds": 60})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        # Not even validation runs: a malformed id or body is still a 401, not a 422.
    assert client.post("/admin/integrations/not-a-number/revoke", headers=headers, content=b"{").status_code == 401
    assert dump_tables(web_runtime.engine) == before
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1
    assert "rostersync_admin_unauthorized_total" in client.get("/metrics", headers=AUTH).text


def test_tokens_are_compared_in_full() -> None:
    tokens = [token.encode() for token in ADMIN_TOKENS]
    assert token_ok(ADMIN_TOKENS[0].encode(), tokens) and token_ok(ADMIN_TOKENS[1].encode(), tokens)
    assert not token_ok(ADMIN_TOKENS[0][:-1].encode(), tokens)
    assert not token_ok(b"", tokens) and not token_ok(b"", [])


def test_admin_lists_revokes_and_revokes_again_harmlessly(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    first = link_teacher(web_runtime, emulator, 0)
    second = link_teacher(web_runtime, emulator, 1, tenant="school-b")
    run_sync(web_runtime, first)
    listed = client.get("/admin/integrations", headers=AUTH).json()
    assert [row["id"] for row in listed] == [first, second]
    assert listed[0]["counts"]["students"] > 0 and listed[0]["last_run"]["outcome"] == "ok"
    assert listed[0]["consent_basis"] == "school"
    assert client.get(f"/admin/integrations/{second}", headers=AUTH).json()["tenant"] == "school-b"
    assert client.get("/admin/integrations/999", headers=AUTH).status_code == 404

    revoked = client.post(f"/admin/integrations/{first}/revoke", headers=AUTH, json={"reason": "school left"})
    assert revoked.status_code == 200
    assert revoked.json() == {"integration_id": first, "already_revoked": False, "at_provider": "revoked"}
    assert row_count(web_runtime.engine, first) == 0 and emulator.live_grants(emulator.teacher_ids[0]) == 0
    again = client.post(f"/admin/integrations/{first}/revoke", headers=AUTH, json={})
    assert again.json()["already_revoked"] is True
    audit = client.get("/admin/audit", headers=AUTH, params={"integration_id": first}).json()
    trail = [event for event in reversed(audit) if event["action"] not in runs.RUN_ACTIONS]  # oldest first, runs aside
    assert [event["action"] for event in trail] == ["linked", "revoked", "purged", "provider_revoked"]
    assert trail[1]["reason"] == "school left" and trail[1]["actor"] == "admin:api"

    tenant = client.post("/admin/tenants/school-b/revoke", headers=AUTH, json={"reason": "contract ended"})
    assert [r["integration_id"] for r in tenant.json()["results"]] == [second]
    assert integrations.load(web_runtime.engine, second).status == "revoked"
    assert client.get("/admin/integrations", headers=AUTH, params={"status": "active"}).json() == []


def test_a_teacher_unlinks_only_their_own(client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator) -> None:
    mine = link_teacher(web_runtime, emulator, 0, platform_teacher="teacher-a")
    other = client.post(f"/admin/teachers/teacher-b/integrations/{mine}/unlink", headers=AUTH, json={})
    assert other.status_code == 404
    assert integrations.load(web_runtime.engine, mine).status == "active"
    done = client.post(f"/admin/teachers/teacher-a/integrations/{mine}/unlink", headers=AUTH, json={})
    assert done.status_code == 200 and done.json()["at_provider"] == "revoked"
    actors = {event["actor"] for event in client.get("/admin/audit", headers=AUTH).json()}
    assert "teacher:teacher-a" in actors


def test_manual_sync_is_queued_coalesced_and_cooled_down(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    queued = client.post(f"/admin/integrations/{integration_id}/sync", headers=AUTH)
    assert queued.status_code == 202 and queued.json()["request"] == "queued"
    wait_for(lambda: first_run_done(web_runtime, integration_id), what="the manual sync")
    wait_for(lambda: client.get(f"/admin/integrations/{integration_id}", headers=AUTH).json()["queued"] is False)
    cooled = client.post(f"/admin/integrations/{integration_id}/sync", headers=AUTH)
    assert cooled.status_code == 429 and int(cooled.headers["retry-after"]) > 0

    other = link_teacher(web_runtime, emulator, 1)
    assert scheduling.mark_queued(web_runtime.engine, other, stale_seconds=3600)  # e.g. the scheduler took it
    coalesced = client.post(f"/admin/integrations/{other}/sync", headers=AUTH)
    assert coalesced.status_code == 200 and coalesced.json()["request"] == "coalesced"

    client.post(f"/admin/integrations/{other}/revoke", headers=AUTH, json={})
    assert client.post(f"/admin/integrations/{other}/sync", headers=AUTH).status_code == 409
    interval = client.put(f"/admin/integrations/{integration_id}/interval", headers=AUTH, json={"seconds": 600})
    assert interval.json()["sync_interval_seconds"] == 600


def test_a_failed_integration_resumes_with_its_tokens_and_roster(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)
    stored = row_count(web_runtime.engine, integration_id)
    state = integrations.load(web_runtime.engine, integration_id)
    assert client.post(f"/admin/integrations/{integration_id}/resume", headers=AUTH).status_code == 409  # active
    assert integrations.mark_failed(
        web_runtime.engine, integration_id, state.generation, actor="system:sync", reason="retries ran out"
    )
    resumed = client.post(f"/admin/integrations/{integration_id}/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert row_count(web_runtime.engine, integration_id) == stored  # nothing purged, no consent needed again
    assert integrations.load(web_runtime.engine, integration_id).token_blob is not None
    assert run_sync(web_runtime, integration_id).outcome == "ok"
    assert "resumed" in {event["action"] for event in client.get("/admin/audit", headers=AUTH).json()}
    client.post(f"/admin/integrations/{integration_id}/revoke", headers=AUTH, json={})
    assert client.post(f"/admin/integrations/{integration_id}/resume", headers=AUTH).status_code == 409  # revoked
    assert client.post("/admin/integrations/987654/resume", headers=AUTH).status_code == 404


def test_revoke_during_a_running_sync_keeps_later_writes_out(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    fired = threading.Event()

    def revoke_mid_run(record: RequestRecord) -> None:
        if record.path == "/batch" and not fired.is_set():  # the roster batch, after the class list was written
            fired.set()
            response = client.post(f"/admin/integrations/{integration_id}/revoke", headers=AUTH, json={})
            assert response.status_code == 200

    emulator.add_hook(revoke_mid_run)
    outcome = run_sync(web_runtime, integration_id)
    assert fired.is_set() and outcome.outcome in ("fenced", "revoked")
    assert row_count(web_runtime.engine, integration_id) == 0
    assert integrations.load(web_runtime.engine, integration_id).status == "revoked"
    held = client.get("/admin/runs", headers=AUTH, params={"held": "true"}).json()
    assert held == []
    assert client.get("/admin/runs", headers=AUTH).json()[0]["outcome"] == outcome.outcome


def test_health_and_metrics(client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator, pg_url: str) -> None:
    link_teacher(web_runtime, emulator, 0, platform_teacher="teacher-canary-42")
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "broker": "in-memory"}
    text = client.get("/metrics", headers=AUTH).text
    assert 'rostersync_integrations{provider="google",status="active"} 1.0' in text
    assert "rostersync_pending_revokes 0.0" in text
    assert "teacher-canary-42" not in text and "default-school" not in text

    down = build_runtime(settings_for(emulator, pg_url, broker_url="redis://127.0.0.1:1/0"))
    with TestClient(create_app(down)) as unhealthy:
        response = unhealthy.get("/healthz")
        assert response.status_code == 503 and response.json()["broker"] == "unreachable"
    down.engine.dispose()


BAD_TEXT = [
    pytest.param("\x00", id="NUL"),
    pytest.param("school\x00left", id="NUL-inside"),
    pytest.param("line\nbreak", id="newline"),
    pytest.param("\x1b[31mred", id="escape"),
    pytest.param("del\x7f", id="DEL"),
    pytest.param("c1\x9b", id="C1-control"),
    pytest.param("x" * 501, id="too-long"),
]


def body_routes(client: TestClient, integration_id: int) -> list[tuple[str, str]]:
    """Every admin operation that takes a JSON body, with its path filled in."""
    routes = []
    for template, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            if template.startswith("/admin/") and "requestBody" in operation:
                path = template.replace("{integration_id}", str(integration_id)).replace("{tenant}", "default-school")
                routes.append((method.upper(), path.replace("{teacher}", "teacher-0")))
    return routes


@pytest.mark.parametrize("reason", BAD_TEXT)
def test_a_reason_that_is_not_printable_text_is_422_and_changes_nothing(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator, reason: str
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0, platform_teacher="teacher-a")
    before = dump_tables(web_runtime.engine)
    for path in (
        f"/admin/integrations/{integration_id}/revoke",
        "/admin/tenants/default-school/revoke",
        f"/admin/teachers/teacher-a/integrations/{integration_id}/unlink",
    ):
        response = client.post(path, headers=AUTH, json={"reason": reason})
        assert response.status_code == 422, (path, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "reason"]
        assert "500 characters" in error["msg"] if len(reason) > 500 else "control character" in error["msg"]
    assert dump_tables(web_runtime.engine) == before
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1


def test_a_lone_surrogate_in_a_reason_is_422(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    raw = b'{"reason": "half \\ud800 of a pair"}'  # valid JSON, but no UTF-8 text: PostgreSQL cannot store it
    response = client.post(
        f"/admin/integrations/{integration_id}/revoke", headers=AUTH | {"Content-Type": "application/json"}, content=raw
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "reason"]
    assert integrations.load(web_runtime.engine, integration_id).status == "active"
    for raw in (b'{"seconds": "\\udfff"}', b'{"\\ud800": 60}'):  # any refused value or name: the 422 carries it
        interval = client.put(
            f"/admin/integrations/{integration_id}/interval",
            headers=AUTH | {"Content-Type": "application/json"},
            content=raw,
        )
        assert interval.status_code == 422, interval.text


def test_a_reason_may_be_left_out_and_a_printable_one_is_kept(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    """A teacher can always unlink: with no body at all, an empty or a blank reason; the audit says why."""
    first = link_teacher(web_runtime, emulator, 0, platform_teacher="teacher-a")
    second = link_teacher(web_runtime, emulator, 1, platform_teacher="teacher-b")
    third = link_teacher(web_runtime, emulator, 2, platform_teacher="teacher-c")
    assert client.post(f"/admin/teachers/teacher-a/integrations/{first}/unlink", headers=AUTH).status_code == 200
    blank = client.post(f"/admin/teachers/teacher-b/integrations/{second}/unlink", headers=AUTH, json={"reason": " "})
    assert blank.status_code == 200
    kept = "Schüler: ‏שלום ✓ 先生"  # accents, a right-to-left mark and Hebrew, a symbol, CJK: printable text
    revoked = client.post(f"/admin/integrations/{third}/revoke", headers=AUTH, json={"reason": f"  {kept} "})
    assert revoked.status_code == 200
    reasons = {
        event["integration_id"]: event["reason"]
        for event in client.get("/admin/audit", headers=AUTH).json()
        if event["action"] == "revoked"
    }
    assert reasons == {first: "unlinked", second: "unlinked", third: kept}
    assert client.post(f"/admin/integrations/{third}/revoke", headers=AUTH).json()["already_revoked"] is True


def test_an_unknown_field_in_any_admin_body_is_422_and_changes_nothing(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    assert (
        client.put(f"/admin/integrations/{integration_id}/interval", headers=AUTH, json={"seconds": 600}).status_code
        == 200
    )
    before = dump_tables(web_runtime.engine)
    routes = body_routes(client, integration_id)
    assert len(routes) == 4
    for method, path in routes:
        response = client.request(method, path, headers=AUTH, json={"reasn": "typo", "secs": 60})
        assert response.status_code == 422, (method, path, response.text)
        assert {tuple(error["loc"]) for error in response.json()["detail"]} >= {("body", "reasn"), ("body", "secs")}
    assert dump_tables(web_runtime.engine) == before
    assert client.get(f"/admin/integrations/{integration_id}", headers=AUTH).json()["sync_interval_seconds"] == 600


@pytest.mark.parametrize("body", [{}, {"secs": 60}, {"seconds": "60"}, {"seconds": True}, {"seconds": 1.5}, None])
def test_an_interval_request_must_say_which_interval(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator, body: dict[str, object] | None
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    path = f"/admin/integrations/{integration_id}/interval"
    assert client.put(path, headers=AUTH, json={"seconds": 600}).status_code == 200
    assert client.put(path, headers=AUTH, json=body).status_code == 422
    assert client.get(f"/admin/integrations/{integration_id}", headers=AUTH).json()["sync_interval_seconds"] == 600
    reset = client.put(path, headers=AUTH, json={"seconds": None})  # null: back to the default, said explicitly
    assert reset.status_code == 200 and reset.json()["sync_interval_seconds"] is None


def test_a_new_interval_moves_the_next_due_time_over_the_api(
    client: TestClient, web_runtime: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(web_runtime, emulator, 0)
    run_sync(web_runtime, integration_id)  # the next sync is due a day on (the default interval)
    path = f"/admin/integrations/{integration_id}"
    scheduled = datetime.fromisoformat(client.get(path, headers=AUTH).json()["due_at"])
    shorter = client.put(f"{path}/interval", headers=AUTH, json={"seconds": 600}).json()
    assert datetime.fromisoformat(shorter["due_at"]) == scheduled - timedelta(days=1) + timedelta(minutes=10)
    default = client.put(f"{path}/interval", headers=AUTH, json={"seconds": None}).json()
    assert datetime.fromisoformat(default["due_at"]) == scheduled
