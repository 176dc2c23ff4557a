"""The Google emulator must behave like Google where the worker depends on it, or tests built on it prove
nothing. Every test talks real HTTPS to a fresh emulator, trusting only the emulator's own CA."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from emulators.google import (
    SCOPE_COURSES_READONLY,
    SCOPE_PROFILE_EMAILS,
    SCOPE_PROFILE_PHOTOS,
    SCOPE_ROSTERS_READONLY,
    GoogleEmulator,
    RequestRecord,
)
from tests.plugins.emulators import MakeEmulator

REDIRECT_URI = "https://rostersync.test/oauth/google/callback"
SCOPES = [SCOPE_COURSES_READONLY, SCOPE_ROSTERS_READONLY]
TIMEOUT = 10

# The emulator at its own defaults (the plugin's are smaller): these tests read its full sizes.
pytestmark = pytest.mark.emulator(teachers=3, courses_per_teacher=2, students_per_course=25)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def http(emulator: GoogleEmulator) -> Iterator[requests.Session]:
    with _session(emulator) as session:
        yield session


def _session(emu: GoogleEmulator) -> requests.Session:
    session = requests.Session()
    session.verify = str(emu.ca_path)
    session.trust_env = False
    return session


# ------------------------------------------------------------------------------------------- helpers
def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize(
    emu: GoogleEmulator,
    http: requests.Session,
    scopes: list[str] | None = None,
    *,
    login_hint: str | None = None,
    client_id: str | None = None,
) -> tuple[requests.Response, str]:
    verifier, challenge = _pkce()
    params = {
        "response_type": "code",
        "client_id": client_id or emu.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": " ".join(scopes or SCOPES),
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
    }
    if login_hint:
        params["login_hint"] = login_hint
    response = http.get(emu.auth_uri, params=params, allow_redirects=False, timeout=TIMEOUT)
    return response, verifier


def _callback(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def _exchange(emu: GoogleEmulator, http: requests.Session, code: str, verifier: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "code_verifier": verifier,
    }
    return http.post(emu.token_uri, data=form, timeout=TIMEOUT)


def _login(
    emu: GoogleEmulator,
    http: requests.Session,
    scopes: list[str] | None = None,
    login_hint: str | None = None,
) -> dict[str, Any]:
    response, verifier = _authorize(emu, http, scopes, login_hint=login_hint)
    tokens = _exchange(emu, http, _callback(response)["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def _refresh(emu: GoogleEmulator, http: requests.Session, refresh_token: str) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
    }
    return http.post(emu.token_uri, data=form, timeout=TIMEOUT)


def _api(emu: GoogleEmulator, http: requests.Session, token: str | None, path: str, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(emu.api_endpoint + path, params=params, headers=headers, timeout=TIMEOUT)


def _error(response: requests.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status_code
    assert {"code", "message", "status", "errors", "details"} <= set(error)
    return error


def _collect(
    emu: GoogleEmulator, http: requests.Session, token: str, path: str, key: str, **params: Any
) -> tuple[list[dict[str, Any]], list[int]]:
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    page_token: str | None = None
    while True:
        extra = {"pageToken": page_token} if page_token else {}
        response = _api(emu, http, token, path, **params, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body.get(key, [])
        sizes.append(len(body.get(key, [])))
        page_token = body.get("nextPageToken")
        if not page_token:
            return items, sizes


# ------------------------------------------------------------------------------------------ district
def test_district_is_deterministic_and_shaped_as_promised(make_emulator: MakeEmulator) -> None:
    first, second, other = (
        make_emulator(GoogleEmulator, seed=11),
        make_emulator(GoogleEmulator, seed=11),
        make_emulator(GoogleEmulator, seed=12),
    )
    assert first.teacher_ids == second.teacher_ids != other.teacher_ids
    assert len(first.teacher_ids) == 3
    assert all(len(uid) == 21 and uid.isdigit() for uid in first.teacher_ids)
    all_courses = {c for t in first.teacher_ids for c in first.course_ids_of(t)}
    assert all(len(cid) == 12 and cid.isdigit() for cid in all_courses)
    assert len(all_courses) == 3 * 2 + 1  # one archived course on top
    for teacher in first.teacher_ids:
        assert first.course_ids_of(teacher) == second.course_ids_of(teacher)
        owned_active = first.course_ids_of(teacher, states=["ACTIVE"])
        assert len(owned_active) >= 2
    rosters = [first.student_ids_of(cid) for cid in sorted(all_courses)]
    assert all(len(r) == 25 for r in rosters)
    students = [s for r in rosters for s in r]
    assert len(set(students)) < len(students), "some students must be in two courses"
    strings = first.personal_strings()
    assert any(s.endswith("@example-school.test") for s in strings)
    assert any(s.startswith("https://lh3.googleusercontent.test/a/") for s in strings)


# ------------------------------------------------------------------------------------------ OAuth
def test_full_auth_code_flow_with_pkce(emulator: GoogleEmulator, http: requests.Session) -> None:
    response, verifier = _authorize(emulator, http)
    callback = _callback(response)
    assert callback["state"] == "st-123"
    assert callback["scope"].split() == SCOPES
    tokens = _exchange(emulator, http, callback["code"], verifier)
    assert tokens.status_code == 200
    body = tokens.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("ya29.")
    assert body["refresh_token"].startswith("1//")
    assert body["scope"].split() == SCOPES
    assert {body["access_token"], body["refresh_token"]} <= emulator.issued_tokens()

    courses = _api(emulator, http, body["access_token"], "/v1/courses", teacherId="me", courseStates="ACTIVE")
    assert courses.status_code == 200
    teacher = emulator.teacher_ids[0]  # round-robin starts with the first seeded teacher
    assert [c["id"] for c in courses.json()["courses"]] == emulator.course_ids_of(teacher, states=["ACTIVE"])
    assert [(r.path, r.user_id, r.status) for r in emulator.requests] == [
        ("/o/oauth2/v2/auth", teacher, 302),
        ("/token", teacher, 200),
        ("/v1/courses", teacher, 200),
    ]


def test_wrong_verifier_and_reused_code_are_refused(emulator: GoogleEmulator, http: requests.Session) -> None:
    response, verifier = _authorize(emulator, http)
    code = _callback(response)["code"]
    wrong = _exchange(emulator, http, code, verifier + "x")
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "Invalid code verifier."}
    assert _exchange(emulator, http, code, verifier).status_code == 200
    reused = _exchange(emulator, http, code, verifier)
    assert reused.status_code == 400
    assert reused.json() == {"error": "invalid_grant", "error_description": "Malformed auth code."}
    assert _exchange(emulator, http, "4/0not-a-code", verifier).json()["error"] == "invalid_grant"


def test_unknown_client_is_refused(emulator: GoogleEmulator, http: requests.Session) -> None:
    page, _ = _authorize(emulator, http, client_id="someone-else")
    assert page.status_code == 400
    assert "error=invalid_client" in page.text
    tokens = _login(emulator, http)
    bad = http.post(
        emulator.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": emulator.client_id,
            "client_secret": "wrong",
        },
        timeout=TIMEOUT,
    )
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"


def test_refresh_rotates_and_kills_the_old_refresh_token(emulator: GoogleEmulator, http: requests.Session) -> None:
    tokens = _login(emulator, http)
    refreshed = _refresh(emulator, http, tokens["refresh_token"])
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]
    old = _refresh(emulator, http, tokens["refresh_token"])
    assert old.status_code == 400
    assert old.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    assert _refresh(emulator, http, new["refresh_token"]).status_code == 200
    assert _api(emulator, http, new["access_token"], "/v1/courses").status_code == 200


def test_without_rotation_the_refresh_token_stays(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(GoogleEmulator, rotate_refresh_tokens=False)
    with _session(emu) as http:
        tokens = _login(emu, http)
        first = _refresh(emu, http, tokens["refresh_token"]).json()
        assert "refresh_token" not in first
        assert _refresh(emu, http, tokens["refresh_token"]).status_code == 200


def test_revoke_kills_the_whole_grant(emulator: GoogleEmulator, http: requests.Session) -> None:
    tokens = _login(emulator, http)
    revoked = http.post(emulator.revoke_uri, data={"token": tokens["access_token"]}, timeout=TIMEOUT)
    assert revoked.status_code == 200
    assert revoked.content == b""
    refresh = _refresh(emulator, http, tokens["refresh_token"])
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    unauthorised = _api(emulator, http, tokens["access_token"], "/v1/courses")
    assert unauthorised.status_code == 401
    error = _error(unauthorised)
    assert error["status"] == "UNAUTHENTICATED"
    assert error["errors"][0]["reason"] == "authError"
    assert 'error="invalid_token"' in unauthorised.headers["WWW-Authenticate"]
    again = http.post(emulator.revoke_uri, params={"token": tokens["refresh_token"]}, timeout=TIMEOUT)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_token", "error_description": "Token expired or revoked"}


def test_revoke_grants_control_and_other_users_unaffected(emulator: GoogleEmulator, http: requests.Session) -> None:
    first = _login(emulator, http)
    second = _login(emulator, http)  # round-robin: the second teacher
    emulator.revoke_grants(emulator.teacher_ids[0])
    assert _refresh(emulator, http, first["refresh_token"]).json()["error"] == "invalid_grant"
    assert _api(emulator, http, first["access_token"], "/v1/courses").status_code == 401
    assert _api(emulator, http, second["access_token"], "/v1/courses").status_code == 200
    assert _refresh(emulator, http, second["refresh_token"]).status_code == 200


def test_consenting_user_login_hint_and_override(emulator: GoogleEmulator, http: requests.Session) -> None:
    third = emulator.teacher_ids[2]
    course = emulator.course_ids_of(third)[0]
    student = emulator.student_ids_of(course)[0]
    hinted = _login(emulator, http, login_hint=third)
    assert emulator.requests[-1].user_id == third
    emulator.set_consent_user(student)
    as_student = _login(emulator, http)
    assert emulator.requests[-1].user_id == student
    listed = _api(emulator, http, as_student["access_token"], "/v1/courses", studentId="me").json()
    assert course in [c["id"] for c in listed["courses"]]
    roster = _api(emulator, http, as_student["access_token"], f"/v1/courses/{course}/students")
    assert roster.status_code == 403
    assert _error(roster)["message"] == "The caller does not have permission"
    assert _api(emulator, http, hinted["access_token"], f"/v1/courses/{course}/students").status_code == 200


def test_expired_and_missing_tokens_get_401(emulator: GoogleEmulator, http: requests.Session) -> None:
    missing = _api(emulator, http, None, "/v1/courses")
    assert missing.status_code == 401
    assert _error(missing)["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="https://accounts.google.com/"'
    garbage = _api(emulator, http, "ya29.garbage", "/v1/courses")
    assert _error(garbage)["errors"][0] == {
        "message": "Invalid Credentials",
        "domain": "global",
        "reason": "authError",
        "location": "Authorization",
        "locationType": "header",
    }
    tokens = _login(emulator, http)
    emulator.expire_access_tokens()
    expired = _api(emulator, http, tokens["access_token"], "/v1/courses")
    assert _error(expired)["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    assert emulator.requests[-1].user_id == emulator.teacher_ids[0]
    fresh = _refresh(emulator, http, tokens["refresh_token"]).json()
    assert _api(emulator, http, fresh["access_token"], "/v1/courses").status_code == 200


# -------------------------------------------------------------------------------------------- API
def test_archived_course_is_filtered_and_co_teachers_listed(emulator: GoogleEmulator, http: requests.Session) -> None:
    teacher = emulator.teacher_ids[0]
    token = _login(emulator, http)["access_token"]
    every, _ = _collect(emulator, http, token, "/v1/courses", "courses", teacherId=teacher)
    assert "ARCHIVED" in {c["courseState"] for c in every}
    active, _ = _collect(emulator, http, token, "/v1/courses", "courses", teacherId="me", courseStates="ACTIVE")
    assert {c["courseState"] for c in active} == {"ACTIVE"}
    assert len(active) == len(every) - 1
    course = every[0]
    assert {
        "id",
        "name",
        "section",
        "descriptionHeading",
        "room",
        "ownerId",
        "creationTime",
        "updateTime",
        "enrollmentCode",
        "courseState",
        "alternateLink",
        "teacherGroupEmail",
        "courseGroupEmail",
        "teacherFolder",
        "guardiansEnabled",
        "calendarId",
        "aiTutorNotes",
    } <= set(course)
    co_taught = [c for c in every if c["ownerId"] != teacher]
    assert co_taught, "the first teacher co-teaches a course of someone else"
    teachers = _api(emulator, http, token, f"/v1/courses/{co_taught[0]['id']}/teachers").json()["teachers"]
    assert [t["userId"] for t in teachers] == [co_taught[0]["ownerId"], teacher]
    assert teachers[0]["profile"]["permissions"] == [{"permission": "CREATE_COURSE"}]


def test_paging_collects_every_student_exactly_once(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(GoogleEmulator, teachers=1, courses_per_teacher=1, students_per_course=70)
    course = emu.course_ids_of(emu.teacher_ids[0], states=["ACTIVE"])[0]
    with _session(emu) as http:
        token = _login(emu, http)["access_token"]
        students, sizes = _collect(emu, http, token, f"/v1/courses/{course}/students", "students", pageSize=500)
        assert sizes == [30, 30, 10]
        assert [s["userId"] for s in students] == emu.student_ids_of(course)
        small, small_sizes = _collect(emu, http, token, f"/v1/courses/{course}/students", "students", pageSize=25)
        assert small_sizes == [25, 25, 20]
        assert len({s["userId"] for s in small}) == 70
        page = _api(emu, http, token, f"/v1/courses/{course}/students").json()
        other_course = emu.course_ids_of(emu.teacher_ids[0])[-1]
        mismatched = _api(emu, http, token, f"/v1/courses/{other_course}/students", pageToken=page["nextPageToken"])
        assert mismatched.status_code == 400
        assert _error(mismatched)["status"] == "INVALID_ARGUMENT"


def test_courses_pages_are_capped(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(GoogleEmulator, teachers=1, courses_per_teacher=6, courses_page_cap=2, students_per_course=2)
    with _session(emu) as http:
        token = _login(emu, http)["access_token"]
        courses, sizes = _collect(emu, http, token, "/v1/courses", "courses", teacherId="me", pageSize=0)
        expected = emu.course_ids_of(emu.teacher_ids[0])
        assert len(expected) == 7  # six active, one archived
        assert sizes == [2, 2, 2, 1]
        assert [c["id"] for c in courses] == expected


def test_empty_lists_are_omitted(emulator: GoogleEmulator, http: requests.Session) -> None:
    token = _login(emulator, http)["access_token"]
    declined = _api(emulator, http, token, "/v1/courses", teacherId="me", courseStates="DECLINED")
    assert declined.status_code == 200
    assert declined.json() == {}
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    for student in emulator.student_ids_of(course):
        emulator.remove_student(course, student)
    assert _api(emulator, http, token, f"/v1/courses/{course}/students").json() == {}


def test_fields_partial_response(emulator: GoogleEmulator, http: requests.Session) -> None:
    token = _login(emulator, http)["access_token"]
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    path = f"/v1/courses/{course}/students"
    nested = _api(emulator, http, token, path, fields="students(userId,profile(name(givenName))),nextPageToken").json()
    assert set(nested) == {"students"}  # 25 students fit on one page: no token
    for student in nested["students"]:
        assert set(student) == {"userId", "profile"}
        assert set(student["profile"]) == {"name"}
        assert set(student["profile"]["name"]) == {"givenName"}
    slashed = _api(emulator, http, token, path, fields="students/profile/name/fullName").json()
    assert all(s == {"profile": {"name": {"fullName": s["profile"]["name"]["fullName"]}}} for s in slashed["students"])
    full = _api(emulator, http, token, path, fields="*").json()
    assert full == _api(emulator, http, token, path).json()
    assert "nickname" in full["students"][0]["profile"]
    assert "studentWorkFolder" in full["students"][0]
    courses = _api(emulator, http, token, "/v1/courses", fields="courses(id,teacherFolder/id)").json()["courses"]
    assert all(set(c) == {"id", "teacherFolder"} and set(c["teacherFolder"]) == {"id"} for c in courses)
    # absent-but-known fields are fine (validated against the schema, not the data)
    assert _api(emulator, http, token, "/v1/courses", fields="courses(description)").status_code == 200
    for bad in ("students(bogus)", "students(userId(id))", "students(profile", "nope", "students,,userId"):
        response = _api(emulator, http, token, path, fields=bad)
        assert response.status_code == 400, bad
        assert _error(response)["status"] == "INVALID_ARGUMENT"


def test_unknown_query_parameter_is_rejected(emulator: GoogleEmulator, http: requests.Session) -> None:
    token = _login(emulator, http)["access_token"]
    response = _api(emulator, http, token, "/v1/courses", page_size="5", alt="json", prettyPrint="false")
    assert response.status_code == 400
    assert 'Unknown name "page_size"' in _error(response)["message"]


def test_email_and_photo_only_with_their_scopes(emulator: GoogleEmulator, http: requests.Session) -> None:
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    path = f"/v1/courses/{course}/students"
    plain = _login(emulator, http, login_hint=emulator.teacher_ids[0])["access_token"]
    profile = _api(emulator, http, plain, path).json()["students"][0]["profile"]
    assert "emailAddress" not in profile
    assert "photoUrl" not in profile
    assert set(profile["name"]) == {"givenName", "familyName", "fullName"}
    emails = _login(emulator, http, [SCOPE_PROFILE_EMAILS], login_hint=emulator.teacher_ids[0])["access_token"]
    profile = _api(emulator, http, emails, path).json()["students"][0]["profile"]
    assert profile["emailAddress"].endswith("@example-school.test")
    assert "photoUrl" not in profile
    photos = _login(emulator, http, [SCOPE_PROFILE_PHOTOS], login_hint=emulator.teacher_ids[0])["access_token"]
    profile = _api(emulator, http, photos, path).json()["students"][0]["profile"]
    assert profile["photoUrl"] == f"https://lh3.googleusercontent.test/a/{profile['id']}"
    assert "emailAddress" not in profile
    # a field selector cannot conjure up what the scopes withhold
    assert "emailAddress" not in _api(emulator, http, plain, path, fields="students/profile/emailAddress").text


def test_withdrawn_and_ungranted_scopes_give_403(emulator: GoogleEmulator, http: requests.Session) -> None:
    teacher = emulator.teacher_ids[0]
    course = emulator.course_ids_of(teacher)[0]
    tokens = _login(emulator, http, login_hint=teacher)
    emulator.withdraw_scope(teacher, "classroom.rosters.readonly")
    denied = _api(emulator, http, tokens["access_token"], f"/v1/courses/{course}/students")
    assert denied.status_code == 403
    error = _error(denied)
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    assert error["errors"][0]["reason"] == "insufficientPermissions"
    assert 'error="insufficient_scope"' in denied.headers["WWW-Authenticate"]
    assert _api(emulator, http, tokens["access_token"], "/v1/courses").status_code == 200
    assert _refresh(emulator, http, tokens["refresh_token"]).json()["scope"] == SCOPE_COURSES_READONLY
    again, _ = _authorize(emulator, http, login_hint=teacher)
    assert _callback(again)["scope"] == SCOPE_COURSES_READONLY

    emulator.set_granted_scopes([SCOPE_ROSTERS_READONLY])  # the next user unticks the courses scope
    partial = _login(emulator, http, login_hint=emulator.teacher_ids[1])
    assert partial["scope"] == SCOPE_ROSTERS_READONLY
    assert _api(emulator, http, partial["access_token"], "/v1/courses").status_code == 403


def test_disabled_api_gives_classroom_api_disabled(emulator: GoogleEmulator, http: requests.Session) -> None:
    tokens = _login(emulator, http)
    emulator.disable_api(emulator.teacher_ids[0])
    response = _api(emulator, http, tokens["access_token"], "/v1/courses")
    assert response.status_code == 403
    error = _error(response)
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith("@ClassroomApiDisabled ")
    emulator.enable_api(emulator.teacher_ids[0])  # the admin ticks the box again: the same token reads again
    assert _api(emulator, http, tokens["access_token"], "/v1/courses").status_code == 200


def test_disabled_classroom_gives_classroom_disabled(emulator: GoogleEmulator, http: requests.Session) -> None:
    tokens = _login(emulator, http)
    emulator.disable_classroom(emulator.teacher_ids[0])
    response = _api(emulator, http, tokens["access_token"], "/v1/courses")
    assert response.status_code == 403
    error = _error(response)
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith("@ClassroomDisabled ")
    emulator.enable_classroom(emulator.teacher_ids[0])
    assert _api(emulator, http, tokens["access_token"], "/v1/courses").status_code == 200


def test_foreign_and_unknown_courses(emulator: GoogleEmulator, http: requests.Session) -> None:
    token = _login(emulator, http, login_hint=emulator.teacher_ids[0])["access_token"]
    foreign = next(
        c
        for c in emulator.course_ids_of(emulator.teacher_ids[1])
        if c not in emulator.course_ids_of(emulator.teacher_ids[0])
    )
    response = _api(emulator, http, token, f"/v1/courses/{foreign}/students")
    assert response.status_code == 403
    assert _error(response)["message"] == "The caller does not have permission"
    missing = _api(emulator, http, token, "/v1/courses/999999999999/teachers")
    assert missing.status_code == 404
    assert _error(missing)["status"] == "NOT_FOUND"


def test_fail_next_injects_errors(emulator: GoogleEmulator, http: requests.Session) -> None:
    tokens = _login(emulator, http)
    emulator.fail_next("/v1/courses", 429, retry_after=7)
    throttled = _api(emulator, http, tokens["access_token"], "/v1/courses")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    error = _error(throttled)
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["errors"][0]["reason"] == "rateLimitExceeded"
    assert _api(emulator, http, tokens["access_token"], "/v1/courses").status_code == 200
    emulator.fail_next("/v1/", 503, count=2)
    statuses = [_api(emulator, http, tokens["access_token"], "/v1/courses").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert emulator.requests[-2].status == 503
    emulator.fail_next("/token", 500)
    broken = _refresh(emulator, http, tokens["refresh_token"])
    assert broken.status_code == 500
    assert "error" in broken.json()
    assert _refresh(emulator, http, tokens["refresh_token"]).status_code == 200


def test_hooks_run_before_the_request_is_served(emulator: GoogleEmulator, http: requests.Session) -> None:
    teacher = emulator.teacher_ids[0]
    course = emulator.course_ids_of(teacher)[0]
    tokens = _login(emulator, http)
    seen: list[RequestRecord] = []
    added: list[str] = []

    def hook(record: RequestRecord) -> None:
        seen.append(record)
        if record.path.endswith("/students") and "pageToken" in record.query and not added:
            added.append(emulator.add_student(course))  # a pupil joins between page 1 and page 2

    emulator.add_hook(hook)
    students, _ = _collect(
        emulator, http, tokens["access_token"], f"/v1/courses/{course}/students", "students", pageSize=10
    )
    ids = [s["userId"] for s in students]
    assert added and ids[-1] == added[0]
    assert len(ids) == len(set(ids)) == 26
    assert all(record.status == 0 and record.user_id == teacher for record in seen)
    assert [r.status for r in emulator.requests[-len(seen) :]] == [200] * len(seen)

    emulator.add_hook(lambda record: emulator.disable_api(teacher))  # acts on the very request it sees
    assert _api(emulator, http, tokens["access_token"], "/v1/courses").status_code == 403


def test_rename_and_roster_changes_show_up(emulator: GoogleEmulator, http: requests.Session) -> None:
    teacher = emulator.teacher_ids[0]
    course = emulator.course_ids_of(teacher)[0]
    token = _login(emulator, http)["access_token"]
    student = emulator.student_ids_of(course)[0]
    before = _api(emulator, http, token, f"/v1/courses/{course}/students/{student}").json()["profile"]["name"]
    old_strings = emulator.personal_strings()
    emulator.rename_user(student)
    after = _api(emulator, http, token, f"/v1/courses/{course}/students/{student}").json()["profile"]["name"]
    assert after != before
    strings = emulator.personal_strings()
    assert old_strings < strings
    assert after["fullName"] in strings and before["fullName"] in strings
    emulator.remove_student(course, student)
    assert student not in emulator.student_ids_of(course)
    assert _api(emulator, http, token, f"/v1/courses/{course}/students/{student}").status_code == 404
    emulator.enroll_student(course, student)
    assert emulator.student_ids_of(course)[-1] == student
    assert _api(emulator, http, token, f"/v1/courses/{course}/students/{student}").status_code == 200


def test_port_in_use_raises_and_restart_keeps_the_port(emulator: GoogleEmulator, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        GoogleEmulator(port=emulator.port, cert_dir=tmp_path).start()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        with pytest.raises(OSError):
            GoogleEmulator(port=blocker.getsockname()[1], cert_dir=tmp_path).start()
    base = emulator.base_url
    emulator.stop()
    with _session(emulator) as http, pytest.raises(requests.ConnectionError):
        http.get(emulator.api_endpoint + "/v1/courses", timeout=TIMEOUT)
    emulator.start()
    assert emulator.base_url == base
    with _session(emulator) as http:
        assert http.get(emulator.api_endpoint + "/v1/courses", timeout=TIMEOUT).status_code == 401


def test_a_stuck_tls_client_does_not_block_others(emulator: GoogleEmulator, http: requests.Session) -> None:
    with socket.create_connection(("127.0.0.1", emulator.port)) as stuck:
        stuck.sendall(b"\x16\x03\x01")  # half a ClientHello, then silence
        assert _api(emulator, http, None, "/v1/courses").status_code == 401


def test_googleapiclient_accepts_the_emulator(emulator: GoogleEmulator, http: requests.Session) -> None:
    import google.oauth2.credentials
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError

    teacher = emulator.teacher_ids[0]
    refresh_token = _login(emulator, http)["refresh_token"]
    creds = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh_token,
        token_uri=emulator.token_uri,
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        scopes=SCOPES,
    )
    authorized = google_auth_httplib2.AuthorizedHttp(
        creds, http=httplib2.Http(timeout=10, ca_certs=str(emulator.ca_path))
    )
    try:
        service = build(
            "classroom",
            "v1",
            static_discovery=True,
            client_options={"api_endpoint": emulator.api_endpoint},
            http=authorized,
        )
        courses = service.courses()
        request = courses.list(
            teacherId="me", courseStates=["ACTIVE"], pageSize=1, fields="courses(id,name),nextPageToken"
        )
        seen: list[dict[str, Any]] = []
        while request is not None:
            response = request.execute()
            seen += response.get("courses", [])
            request = courses.list_next(request, response)
        assert [c["id"] for c in seen] == emulator.course_ids_of(teacher, states=["ACTIVE"])
        assert all(set(c) == {"id", "name"} for c in seen)
        assert creds.refresh_token != refresh_token, "google-auth stored the rotated refresh token"
        api_records = [r for r in emulator.requests if r.path == "/v1/courses"]
        assert api_records[0].query["alt"] == ["json"]
        assert all(r.user_id == teacher for r in api_records)

        course = seen[0]["id"]
        students = courses.students().list(courseId=course, fields="students(userId),nextPageToken").execute()
        assert [s["userId"] for s in students["students"]] == emulator.student_ids_of(course)

        emulator.disable_api(teacher)
        with pytest.raises(HttpError) as caught:
            courses.list(teacherId="me").execute()
        assert caught.value.status_code == 403
        assert json.loads(caught.value.content)["error"]["message"].startswith("@ClassroomApiDisabled")
    finally:
        authorized.http.close()


def test_rate_limits_answer_429_resource_exhausted_past_the_quota(make_emulator: MakeEmulator) -> None:
    """Per user, then per client: the call past the quota is refused in Google's shape, the others pass."""
    emu = make_emulator(GoogleEmulator, rate_limit_per_user=3, rate_limit_per_client=5)
    if time.time() % 60 > 50:  # the quota's window is the calendar minute: start in a fresh one
        time.sleep(60.5 - time.time() % 60)
    with _session(emu) as http:
        first = _login(emu, http, login_hint=emu.teacher_ids[0])["access_token"]
        second = _login(emu, http, login_hint=emu.teacher_ids[1])["access_token"]
        assert [_api(emu, http, first, "/v1/courses").status_code for _ in range(3)] == [200, 200, 200]
        over_user = _api(emu, http, first, "/v1/courses")
        assert _api(emu, http, second, "/v1/courses").status_code == 200  # the client's 5th call
        over_client = _api(emu, http, second, "/v1/courses")
    for response, quota in (
        (over_user, "ReadRequestsPerMinutePerUser"),
        (over_client, "ReadRequestsPerMinutePerProject"),
    ):
        assert response.status_code == 429
        assert "Retry-After" not in response.headers
        error = _error(response)
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert error["errors"][0]["reason"] == "rateLimitExceeded"
        detail = error["details"][0]
        assert detail["reason"] == "RATE_LIMIT_EXCEEDED" and detail["metadata"]["quota_limit"] == quota
    assert [r.status for r in emu.requests if r.path == "/v1/courses"].count(429) == 2
    emu.set_rate_limits()  # lifted: the same user is served again
    with _session(emu) as http:
        assert _api(emu, http, first, "/v1/courses").status_code == 200


def test_the_stock_batch_client_gets_every_part_and_the_hooks_one_round_trip(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    """google-api-python-client's own ``BatchHttpRequest.execute`` (callbacks, Content-ID matching) against
    ``/batch``: each part answered as a direct call, a bad one failing alone, one hook call for the batch."""
    import google.oauth2.credentials
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError
    from googleapiclient.http import BatchHttpRequest

    teacher = emulator.teacher_ids[0]
    creds = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
        token=_login(emulator, http)["access_token"], scopes=SCOPES
    )
    authorized = google_auth_httplib2.AuthorizedHttp(
        creds, http=httplib2.Http(timeout=10, ca_certs=str(emulator.ca_path))
    )
    hooked: list[str] = []
    emulator.add_hook(lambda record: hooked.append(record.path))
    try:
        service = build(
            "classroom",
            "v1",
            static_discovery=True,
            client_options={"api_endpoint": emulator.api_endpoint},
            http=authorized,
        )
        courses = emulator.course_ids_of(teacher, states=["ACTIVE"])
        answers: dict[str, Any] = {}

        def keep(request_id: str, response: Any, exception: HttpError | None) -> None:
            answers[request_id] = exception.status_code if exception is not None else response

        batch = BatchHttpRequest(callback=keep, batch_uri=emulator.api_endpoint + "/batch")
        for course in courses:
            batch.add(service.courses().students().list(courseId=course, fields="students(userId)"), request_id=course)
        batch.add(service.courses().teachers().list(courseId="999999999999"), request_id="missing")
        seen = len(emulator.requests)
        batch.execute()
        for course in courses:
            assert [s["userId"] for s in answers[course]["students"]] == emulator.student_ids_of(course)
        assert answers["missing"] == 404
        assert hooked == ["/batch"]
        parts = emulator.requests[seen:-1]
        assert [r.path for r in parts] == [f"/v1/courses/{c}/students" for c in courses] + [
            "/v1/courses/999999999999/teachers"
        ]
        assert all(r.user_id == teacher for r in parts) and emulator.requests[-1].path == "/batch"
    finally:
        authorized.http.close()
