"""The Clever emulator must answer like Clever's published definitions (tests/specs/, copied from
Clever/swagger-api) and providers.md section 2, or the minimisation and revocation tests built on it
prove nothing. Every test talks real HTTPS to a fresh emulator, trusting only its own CA."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from requests_oauthlib import OAuth2Session

import emulators.clever.oauth
from emulators.clever import MSG_NOT_IN_SCOPE, CleverEmulator
from tests.plugins.emulators import MakeEmulator

SPECS = Path(__file__).resolve().parents[2] / "specs"
REDIRECT_URI = "https://rostersync.test/oauth/clever/callback"
TIMEOUT = 10

# The emulator at its own defaults (the plugin's are smaller): these tests read two districts at full size.
pytestmark = pytest.mark.clever(districts=2, teachers=3, courses_per_teacher=2, students_per_course=12)


def _definitions(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SPECS / name).read_text())
    return dict(loaded["definitions"])


V30 = _definitions("clever-v3.0.yml")
V31 = _definitions("clever-v3.1.yml")


def _props(definitions: dict[str, Any], name: str) -> set[str]:
    return set(definitions[name]["properties"])


def _problems(value: Any, definitions: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """Where a value breaks its published schema (types, enums, patterns, nested definitions)."""
    if "$ref" in schema:
        schema = {**definitions[schema["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    if value is None:
        return [] if schema.get("x-nullable") or "properties" in schema else [f"{where}: null"]
    if "properties" in schema:
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        return [
            problem
            for key, sub in schema["properties"].items()
            if key in value
            for problem in _problems(value[key], definitions, sub, f"{where}.{key}")
        ]
    kind = schema.get("type")
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [
            p for i, item in enumerate(value) for p in _problems(item, definitions, schema["items"], f"{where}[{i}]")
        ]
    if kind == "string" and not isinstance(value, str):
        return [f"{where}: not a string"]
    if kind == "object" and not isinstance(value, dict):
        return [f"{where}: not an object"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in the enum"]
    if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        return [f"{where}: does not match {schema['pattern']}"]
    return []


@pytest.fixture
def http(clever: CleverEmulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.verify = str(clever.ca_path)
    session.trust_env = False
    with session:
        yield session


def _get(http: requests.Session, emu: CleverEmulator, path: str, token: str | None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(emu.api_base + path, headers=headers, params=params, timeout=TIMEOUT)


def _follow(http: requests.Session, emu: CleverEmulator, path: str, token: str, **params: Any) -> tuple[list[Any], int]:
    """Every record of a list, following rel=next as given; returns the records and the request count."""
    response = _get(http, emu, path, token, **params)
    records, calls = [], 1
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        records += [item["data"] for item in body["data"]]
        following = [link["uri"] for link in body["links"] if link["rel"] == "next"]
        if not following:
            return records, calls
        assert following[0].startswith("/v3.0/"), "links are relative"
        response = http.get(emu.api_base + following[0], headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
        calls += 1


def _sso_token(emu: CleverEmulator, http: requests.Session, user_id: str) -> str:
    emu.set_consent_user(user_id)
    oauth = OAuth2Session(emu.client_id, redirect_uri=REDIRECT_URI)
    oauth.verify = str(emu.ca_path)
    oauth.trust_env = False
    url, state = oauth.authorization_url(emu.authorize_url)
    response = http.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302
    callback = response.headers["Location"]
    assert parse_qs(urlsplit(callback).query)["state"] == [state]
    token = oauth.fetch_token(emu.token_url, authorization_response=callback, client_secret=emu.client_secret)
    return str(token["access_token"])


# ----------------------------------------------------------------------------------------- shapes
def test_records_carry_every_published_v30_property_and_one_unknown(
    clever: CleverEmulator, http: requests.Session
) -> None:
    token = clever.district_token(clever.district_ids[0])
    students, _ = _follow(http, clever, "/v3.0/users", token, role="student")
    teachers, _ = _follow(http, clever, "/v3.0/users", token, role="teacher")
    sections, _ = _follow(http, clever, "/v3.0/sections", token)
    assert students and teachers and sections
    for user in students + teachers:
        assert _props(V30, "User") <= set(user)
        assert "lms_status" not in user
    for student in students:
        role = student["roles"]["student"]
        assert _props(V30, "Student") <= set(role)
        assert "guardian_phone" in role, "a field no definition names, to prove unknown fields are dropped"
        assert not (_props(V31, "Student") - _props(V30, "Student")) & set(role), "v3.0 carries no v3.1 field"
        assert _props(V30, "Location") <= set(role["location"])
    for teacher in teachers:
        assert _props(V30, "Teacher") <= set(teacher["roles"]["teacher"])
    for section in sections:
        assert _props(V30, "Section") <= set(section)
        assert set(section["students"]) and set(section["teachers"])
    district = _get(http, clever, f"/v3.0/districts/{clever.district_ids[0]}", token).json()["data"]
    assert _props(V30, "District") <= set(district)
    school = _follow(http, clever, "/v3.0/schools", token)[0][0]
    assert _props(V30, "School") <= set(school)
    problems = [p for user in students + teachers for p in _problems(user, V30, V30["User"], "user")]
    problems += [p for section in sections for p in _problems(section, V30, V30["Section"], "section")]
    problems += _problems(district, V30, V30["District"], "district") + _problems(school, V30, V30["School"], "school")
    assert problems == []


def test_v31_mode_adds_the_v31_properties(make_emulator: MakeEmulator, http: requests.Session) -> None:
    emu = make_emulator(CleverEmulator, version="v3.1", districts=1)
    session = requests.Session()
    session.verify, session.trust_env = str(emu.ca_path), False
    token = emu.district_token(emu.district_ids[0])
    for prefix in ("/v3.0", "/v3.1"):
        body = _get(session, emu, f"{prefix}/users", token, role="student", limit=3).json()
        student = body["data"][0]["data"]
        assert _props(V31, "User") <= set(student)
        assert _props(V31, "Student") <= set(student["roles"]["student"])
        assert _props(V31, "Disability") <= set(student["roles"]["student"]["disability"])
        assert _problems(student, V31, V31["User"], "user") == []
    section = _get(session, emu, "/v3.1/sections", token, limit=1).json()["data"][0]["data"]
    assert _props(V31, "Section") <= set(section)


def test_same_seed_same_district(make_emulator: MakeEmulator) -> None:
    first, second = make_emulator(CleverEmulator, seed=11), make_emulator(CleverEmulator, seed=11)
    assert first.district_ids == second.district_ids
    assert first.section_ids(first.district_ids[0]) == second.section_ids(second.district_ids[0])
    assert first.personal_strings() == second.personal_strings()
    assert make_emulator(CleverEmulator, seed=12).district_ids != first.district_ids


# ----------------------------------------------------------------------------------------- paging
def test_paging_follows_relative_links_ascending_without_repeats(
    clever: CleverEmulator, http: requests.Session
) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    users, calls = _follow(http, clever, "/v3.0/users", token, limit=7)
    ids = [user["id"] for user in users]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert set(ids) == set(clever.student_ids(district)) | set(clever.teacher_ids(district))
    assert calls == -(-len(ids) // 7)
    default = _get(http, clever, "/v3.0/users", token).json()
    assert len(default["data"]) == min(100, len(ids))


def test_limit_above_10000_is_413_and_ending_before_last_gives_the_newest(
    clever: CleverEmulator, http: requests.Session
) -> None:
    token = clever.district_token(clever.district_ids[0])
    assert _get(http, clever, "/v3.0/sections", token, limit=10_001).status_code == 413
    assert _get(http, clever, "/v3.0/sections", token, limit=10_000).status_code == 200
    sections = _follow(http, clever, "/v3.0/sections", token)[0]
    newest = _get(http, clever, "/v3.0/sections", token, ending_before="last", limit=1).json()
    assert [item["data"]["id"] for item in newest["data"]] == [sections[-1]["id"]]
    before = _get(http, clever, "/v3.0/sections", token, ending_before=sections[2]["id"], limit=1).json()
    assert [item["data"]["id"] for item in before["data"]] == [sections[1]["id"]]


def test_a_district_token_sees_only_its_district(clever: CleverEmulator, http: requests.Session) -> None:
    first, second = clever.district_ids
    sections = _follow(http, clever, "/v3.0/sections", clever.district_token(first))[0]
    assert {s["id"] for s in sections} == set(clever.section_ids(first))
    assert not {s["id"] for s in sections} & set(clever.section_ids(second))
    foreign = clever.section_ids(second)[0]
    response = _get(http, clever, f"/v3.0/sections/{foreign}", clever.district_token(first))
    assert response.status_code == 404 and response.json() == {"message": "Resource not found"}


def test_teacher_sections_and_section_users(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    teacher = clever.teacher_ids(district)[0]
    sections = _follow(http, clever, f"/v3.0/users/{teacher}/sections", token)[0]
    assert {s["id"] for s in sections} == set(clever.section_ids(teacher_id=teacher))
    members = _follow(http, clever, f"/v3.0/sections/{sections[0]['id']}/users", token, role="student")[0]
    assert {m["id"] for m in members} == set(clever.students_of(sections[0]["id"]))


def test_nested_lists_page_within_their_own_parent(clever: CleverEmulator, http: requests.Session) -> None:
    """A nested list's ``next`` link continues the nested list, never the top-level collection: paged two
    at a time, a section's users are exactly its members and a teacher's sections exactly theirs, each once."""
    district = clever.district_ids[0]
    token = clever.district_token(district)
    section = clever.section_ids(district)[0]
    members, calls = _follow(http, clever, f"/v3.0/sections/{section}/users", token, limit=2)
    ids = [m["id"] for m in members]
    expected = set(clever.students_of(section)) | {
        t for t in clever.teacher_ids(district) if section in clever.section_ids(teacher_id=t)
    }
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert calls == -(-len(expected) // 2) and calls > 1
    students = _follow(http, clever, f"/v3.0/sections/{section}/users", token, limit=2, role="student")[0]
    assert sorted(s["id"] for s in students) == sorted(clever.students_of(section))
    teacher = clever.teacher_ids(district)[0]
    sections, calls = _follow(http, clever, f"/v3.0/users/{teacher}/sections", token, limit=1)
    ids = [s["id"] for s in sections]
    assert len(ids) == len(set(ids)) and set(ids) == set(clever.section_ids(teacher_id=teacher))
    assert calls == len(ids) and calls > 1


# ------------------------------------------------------------------------------------------- OAuth
def test_code_flow_with_basic_auth_single_use_codes(clever: CleverEmulator, http: requests.Session) -> None:
    teacher = clever.teacher_ids(clever.district_ids[0])[0]
    token = _sso_token(clever, http, teacher)
    me = _get(http, clever, "/v3.0/me", token).json()
    assert me["data"]["id"] == teacher and me["data"]["district"] == clever.district_ids[0]
    assert me["data"]["type"] == "teacher"

    clever.set_consent_user(teacher)
    location = http.get(
        clever.authorize_url,
        params={"response_type": "code", "client_id": clever.client_id, "redirect_uri": REDIRECT_URI},
        allow_redirects=False,
        timeout=TIMEOUT,
    ).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    in_body = http.post(
        clever.token_url, data={**form, "client_id": clever.client_id, "client_secret": clever.client_secret}
    )
    assert in_body.status_code == 401 and in_body.json()["error"] == "invalid_client"
    first = http.post(clever.token_url, data=form, auth=(clever.client_id, clever.client_secret), timeout=TIMEOUT)
    assert first.status_code == 200 and set(first.json()) == {"access_token", "token_type"}
    again = http.post(clever.token_url, data=form, auth=(clever.client_id, clever.client_secret), timeout=TIMEOUT)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "Invalid grant: invalid code"}


def test_codes_expire(clever: CleverEmulator, http: requests.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulators.clever.oauth, "CODE_TTL_SECONDS", -1.0)
    with pytest.raises(Exception, match="invalid_grant"):
        _sso_token(clever, http, clever.teacher_ids(clever.district_ids[0])[0])


def test_district_shared_sso_token_reaches_only_its_own_records(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    teacher = clever.teacher_ids(district)[0]
    token = _sso_token(clever, http, teacher)
    assert _get(http, clever, f"/v3.0/users/{teacher}", token).status_code == 200
    assert _get(http, clever, f"/v3.0/districts/{district}", token).status_code == 200
    for path in ("/v3.0/sections", f"/v3.0/users/{teacher}/sections", "/v3.0/events", "/v3.0/users"):
        response = _get(http, clever, path, token)
        assert response.status_code == 403 and response.json() == {"message": MSG_NOT_IN_SCOPE}, path


def test_library_teacher_reads_own_sections_unpaged(clever: CleverEmulator, http: requests.Session) -> None:
    teacher = clever.teacher_ids(None)[0]
    token = _sso_token(clever, http, teacher)
    me = _get(http, clever, "/v3.0/me", token).json()["data"]
    assert me == {"id": teacher, "type": "user"}, "dev.clever.com/docs/classroom-rostering: no district, no role"
    body = _get(http, clever, f"/v3.0/users/{teacher}/sections", token).json()
    assert [item["data"]["id"] for item in body["data"]] == clever.section_ids(teacher_id=teacher)
    assert not [link for link in body["links"] if link["rel"] == "next"]
    assert _get(http, clever, f"/v3.0/users/{teacher}/sections", token, limit=5).status_code == 400
    section = body["data"][0]["data"]["id"]
    students = _get(http, clever, f"/v3.0/sections/{section}/users", token, role="student").json()["data"]
    assert {s["data"]["id"] for s in students} == set(clever.students_of(section))
    assert (
        _get(http, clever, f"/v3.0/sections/{clever.section_ids(clever.district_ids[0])[0]}", token).status_code == 403
    )


def test_userinfo_tells_the_role_of_the_sign_in(clever: CleverEmulator, http: requests.Session) -> None:
    """/userinfo (no version prefix, no wrapper) carries ``user_type``; a district user's carries the district."""
    library_teacher = clever.teacher_ids(None)[0]
    district = clever.district_ids[0]
    student = clever.student_ids(district)[0]
    for user, role, district_id in ((library_teacher, "teacher", None), (student, "student", district)):
        token = _sso_token(clever, http, user)
        info = _get(http, clever, "/userinfo", token).json()
        assert (info["user_id"], info["user_type"], info.get("district_id")) == (user, role, district_id)
    assert _get(http, clever, "/userinfo", "not-a-token").status_code == 401
    district_token = clever.district_token(district)
    assert district_token is not None
    assert _get(http, clever, "/userinfo", district_token).status_code == 401, "a sign-in token's endpoint"


def test_refused_calls_keep_the_token_listed(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    assert token is not None
    clever.refuse_calls(district)
    assert _get(http, clever, "/v3.0/sections", token).status_code == 401
    listed = http.get(
        clever.token_url,
        params={"owner_type": "district"},
        auth=(clever.client_id, clever.client_secret),
        timeout=TIMEOUT,
    ).json()["data"]
    assert token in {t["access_token"] for t in listed}
    clever.refuse_calls(district, refusing=False)
    assert _get(http, clever, "/v3.0/sections", token).status_code == 200


def test_a_deleted_user_recreated_with_the_same_id(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    assert token is not None
    teacher = clever.teacher_ids(district)[0]
    before = clever.newest_event_id(district)
    clever.delete_user(teacher)
    assert _get(http, clever, f"/v3.0/users/{teacher}", token).status_code == 404
    clever.recreate_user(teacher)
    assert _get(http, clever, f"/v3.0/users/{teacher}", token).json()["data"]["id"] == teacher
    params = {"starting_after": before} if before else {}
    events = _follow(http, clever, "/v3.0/events", token, **params)[0]
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("users.deleted", teacher),
        ("users.created", teacher),
    ]


def test_revoked_sso_token_gets_401(clever: CleverEmulator, http: requests.Session) -> None:
    token = _sso_token(clever, http, clever.teacher_ids(None)[0])
    clever.revoke_token(token)
    assert _get(http, clever, "/v3.0/me", token).status_code == 401


# ------------------------------------------------------------------------------------------ tokens
def _district_tokens(emu: CleverEmulator, http: requests.Session, **params: str) -> requests.Response:
    return http.get(
        emu.token_url,
        params={"owner_type": "district", **params},
        auth=(emu.client_id, emu.client_secret),
        timeout=TIMEOUT,
    )


def test_district_tokens_listed_rotated_and_removed_on_disconnect(
    clever: CleverEmulator, http: requests.Session
) -> None:
    first, second = clever.district_ids
    listed = _district_tokens(clever, http).json()
    assert {entry["owner"]["id"] for entry in listed["data"]} == {first, second}
    assert listed["links"][0]["rel"] == "self"
    one = _district_tokens(clever, http, district=first).json()["data"]
    assert len(one) == 1 and one[0]["access_token"] == clever.district_token(first)
    assert set(one[0]) == {"id", "created", "owner", "access_token", "scopes"}
    assert http.get(clever.token_url, params={"owner_type": "district"}, timeout=TIMEOUT).status_code == 401

    old = clever.district_token(first)
    new = clever.rotate_district_token(first)
    assert _get(http, clever, "/v3.0/sections", old).status_code == 401
    assert _get(http, clever, "/v3.0/sections", new).status_code == 200
    assert _district_tokens(clever, http, district=first).json()["data"][0]["access_token"] == new

    clever.disconnect_district(first)
    assert _district_tokens(clever, http, district=first).json()["data"] == []
    assert _get(http, clever, "/v3.0/sections", new).status_code == 401
    assert _get(http, clever, "/v3.0/sections", clever.district_token(second)).status_code == 200


# ------------------------------------------------------------------------------------------ events
def test_changes_produce_events_with_previous_attributes(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    assert _get(http, clever, "/v3.0/events", token, ending_before="last", limit=1).json()["data"] == []
    section = clever.section_ids(district)[0]
    student = clever.add_student(section)
    cursor = clever.newest_event_id(district)
    clever.rename_section(section, "Renamed Section")
    clever.rename_user(student)
    events, _ = _follow(http, clever, "/v3.0/events", token)
    assert [e["type"] for e in events] == ["users.created", "sections.updated", "sections.updated", "users.updated"]
    assert events[2]["data"]["previous_attributes"]["name"] != "Renamed Section"
    assert events[2]["data"]["object"]["name"] == "Renamed Section"
    assert student in events[1]["data"]["object"]["students"]
    assert student not in events[1]["data"]["previous_attributes"]["students"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    later = _get(http, clever, "/v3.0/events", token, starting_after=cursor).json()["data"]
    assert [e["data"]["type"] for e in later] == ["sections.updated", "users.updated"]
    only_users = _get(http, clever, "/v3.0/events", token, record_type="users").json()["data"]
    assert {e["data"]["type"] for e in only_users} == {"users.created", "users.updated"}
    newest = _get(http, clever, "/v3.0/events", token, ending_before="last", limit=1).json()["data"]
    assert [e["data"]["id"] for e in newest] == [ids[-1]]


def test_unsharing_gives_404_and_a_deleted_event_and_resharing_restores(
    clever: CleverEmulator, http: requests.Session
) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    section = clever.section_ids(district)[0]
    clever.unshare_section(section)
    assert _get(http, clever, f"/v3.0/sections/{section}", token).status_code == 404
    assert section not in {s["id"] for s in _follow(http, clever, "/v3.0/sections", token)[0]}
    clever.reshare_section(section)
    assert _get(http, clever, f"/v3.0/sections/{section}", token).status_code == 200
    types = [e["type"] for e in _follow(http, clever, "/v3.0/events", token)[0]]
    assert types == ["sections.deleted", "sections.created"]


def test_expired_cursor_and_disabled_events(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    token = clever.district_token(district)
    clever.rename_section(clever.section_ids(district)[0], "Once")
    cursor = clever.newest_event_id(district)
    assert cursor is not None
    clever.expire_events(district)
    assert _get(http, clever, "/v3.0/events", token, starting_after=cursor).status_code == 400
    clever.set_events_enabled(district, False)
    assert _get(http, clever, "/v3.0/events", token).status_code == 403


# ------------------------------------------------------------------------------------------ faults
def test_injected_429_has_an_empty_body_and_a_reset_header(clever: CleverEmulator, http: requests.Session) -> None:
    token = clever.district_token(clever.district_ids[0])
    clever.fail_next("/v3.0/sections", 429, retry_after=7)
    response = _get(http, clever, "/v3.0/sections", token)
    assert response.status_code == 429 and response.content == b""
    assert "Retry-After" not in response.headers
    assert int(response.headers["X-Ratelimit-Reset"]) >= 1_700_000_000
    clever.fail_next("/v3.0/sections", 503)
    failed = _get(http, clever, "/v3.0/sections", token)
    assert failed.status_code == 503 and "message" in failed.json()
    assert _get(http, clever, "/v3.0/sections", token).status_code == 200


def test_rate_limit_per_token_and_headers_on_success(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(CleverEmulator, rate_limit=3, districts=2)
    session = requests.Session()
    session.verify, session.trust_env = str(emu.ca_path), False
    first, second = (emu.district_token(d) for d in emu.district_ids)
    statuses = [_get(session, emu, "/v3.0/districts", first).status_code for _ in range(4)]
    if statuses[-1] == 200:  # the minute turned over mid-test; the window is per wall-clock minute
        statuses = [_get(session, emu, "/v3.0/districts", first).status_code for _ in range(4)]
    assert statuses[-1] == 429
    ok = _get(session, emu, "/v3.0/districts", second)
    assert ok.status_code == 200 and ok.headers["X-Ratelimit-Limit"] == "3"
    assert int(ok.headers["X-Ratelimit-Remaining"]) == 2


def test_request_log_names_who_asked(clever: CleverEmulator, http: requests.Session) -> None:
    district = clever.district_ids[0]
    _get(http, clever, "/v3.0/sections", clever.district_token(district), limit=1)
    _get(http, clever, "/v3.0/sections", "not-a-token")
    logged = [(r.path, r.user_id, r.status) for r in clever.requests]
    assert logged == [("/v3.0/sections", district, 200), ("/v3.0/sections", None, 401)]
    assert _get(http, clever, "/v3.0/resources", clever.district_token(district)).text.count("Cannot GET") == 1
