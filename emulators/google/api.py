"""Google Classroom's routes: the router, authorisation and quota of each call, paging, and the methods."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulators.core import Failure, Json, Request, Response, json_body
from emulators.district import Person
from emulators.google.data import _AccessToken, _b64url, _digest
from emulators.google.errors import (
    _COURSE_STATES,
    _MSG_API_DISABLED,
    _MSG_CLASSROOM_DISABLED,
    _MSG_INVALID_CREDENTIALS,
    _MSG_MISSING_CREDENTIALS,
    _OAUTH_FAILURES,
    _QUOTA_LIMITS,
    _QUOTA_MESSAGES,
    _REALM,
    _SYSTEM_PARAMS,
    AUTH_PATH,
    BATCH_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    _api_error,
    _bad_request_detail,
    _error_info,
    _json_response,
    _oauth_error,
)
from emulators.google.fields import (
    FieldsError,
    FieldTree,
    apply_fields,
    parse_fields,
    validate_fields,
)
from emulators.google.oauth import GoogleOAuth
from emulators.google.scopes import (
    COURSE_READ_SCOPES,
    ROSTER_READ_SCOPES,
)
from emulators.oauth import revocation_token

_Request = Request
_Response = Response
_json_body = json_body


@dataclass(frozen=True)
class _Route:
    """One API method: how it is named in errors, what it accepts, needs and returns."""

    name: str
    params: frozenset[str]
    scopes: frozenset[str]
    schema: str


_ROUTES = {
    "courses.list": _Route(
        "google.classroom.v1.Courses.ListCourses",
        frozenset({"studentId", "teacherId", "courseStates", "pageSize", "pageToken"}),
        COURSE_READ_SCOPES,
        "ListCoursesResponse",
    ),
    "courses.get": _Route("google.classroom.v1.Courses.GetCourse", frozenset(), COURSE_READ_SCOPES, "Course"),
    "students.list": _Route(
        "google.classroom.v1.Courses.ListStudents",
        frozenset({"pageSize", "pageToken"}),
        ROSTER_READ_SCOPES,
        "ListStudentsResponse",
    ),
    "students.get": _Route("google.classroom.v1.Courses.GetStudent", frozenset(), ROSTER_READ_SCOPES, "Student"),
    "teachers.list": _Route(
        "google.classroom.v1.Courses.ListTeachers",
        frozenset({"pageSize", "pageToken"}),
        ROSTER_READ_SCOPES,
        "ListTeachersResponse",
    ),
    "teachers.get": _Route("google.classroom.v1.Courses.GetTeacher", frozenset(), ROSTER_READ_SCOPES, "Teacher"),
    "userProfiles.get": _Route(
        "google.classroom.v1.UserProfiles.GetUserProfile", frozenset(), ROSTER_READ_SCOPES, "UserProfile"
    ),
}


class GoogleApi(GoogleOAuth):
    """Classroom's API methods and the router."""

    def _next_token(self, request: _Request, token: str | None) -> str | None:
        cut = self._cut_listings is not None and self._cut_listings in request.path
        return None if cut else token

    def _identify(self, request: _Request, *, before: bool) -> str | None:
        """Which district user a request acts for, judged from its credentials (None when unknown)."""
        path = request.path
        if path.startswith("/v1/") or path in ("/v1", BATCH_PATH):
            token = request.bearer()
            access = self._access.get(token) if token else None
            return access.grant.user_id if access else None
        if path == TOKEN_PATH:
            if request.form_value("grant_type") == "refresh_token":
                grant = self._grants.holder(request.form_value("refresh_token"))
                return grant.user_id if grant else None
            return self._codes.owner(request.form_value("code"))
        if path == REVOKE_PATH:
            token = revocation_token(request)
            access = self._access.get(token)
            if access:
                return access.grant.user_id
            grant = self._grants.holder(token)
            return grant.user_id if grant else None
        if path == AUTH_PATH and before:
            hinted = self._district.find_person(request.param("login_hint")) if request.param("login_hint") else None
            return hinted.id if hinted else self._consent_user
        return None

    def _error_response(self, status: int, message: str) -> _Response:
        return _api_error(status, message)

    def _failure_response(self, request: _Request, failure: Failure) -> _Response:
        headers = [("Retry-After", str(failure.retry_after))] if failure.retry_after is not None else []
        status = failure.status
        if request.path in (TOKEN_PATH, REVOKE_PATH) or request.path.startswith("/o/oauth2"):
            error, description = _OAUTH_FAILURES.get(status, ("server_error", "Server Error"))
            return _oauth_error(status, error, description, headers)
        route = self._route(request.path)[0]
        method = _ROUTES[route].name if route else None
        detail = None
        if status == 429:
            detail = _error_info(
                "RATE_LIMIT_EXCEEDED",
                method,
                quota_metric="classroom.googleapis.com/read_requests",
                quota_limit="ReadRequestsPerMinutePerUser",
            )
        return _api_error(status, detail=detail, headers=headers)

    def _dispatch(self, request: _Request) -> _Response:
        path = request.path
        if path == AUTH_PATH and request.method == "GET":
            return self._authorize(request)
        if path == TOKEN_PATH:
            if request.method != "POST":
                return _oauth_error(405, "invalid_request", "The token endpoint only accepts POST.")
            return self._token(request)
        if path == REVOKE_PATH and request.method in ("POST", "GET"):
            return self._revoke(request)
        if path.startswith("/v1/"):
            return self._api(request)
        if path == BATCH_PATH and request.method == "POST":
            return self._batch(request)
        return _Response(404, b"Not Found", [("Content-Type", "text/plain; charset=utf-8")])

    # ----------------------------------------------------------------------------------- API
    @staticmethod
    def _route(path: str) -> tuple[str | None, list[str]]:
        parts = [p for p in path.split("/") if p][1:]  # drop "v1"
        if parts[:1] == ["courses"]:
            if len(parts) == 1:
                return "courses.list", []
            if len(parts) == 2:
                return "courses.get", [parts[1]]
            if len(parts) in (3, 4) and parts[2] in ("students", "teachers"):
                kind = parts[2]
                return (f"{kind}.list", [parts[1]]) if len(parts) == 3 else (f"{kind}.get", [parts[1], parts[3]])
        if len(parts) == 2 and parts[0] == "userProfiles":
            return "userProfiles.get", [parts[1]]
        return None, []

    def _over_quota(self, user_id: str) -> str | None:
        """Count one call against each enforced quota; the quota it exceeds ("user" first), or None."""
        minute = int(time.time() // 60)
        over = None
        for scope, key in (("user", f"user:{user_id}"), ("client", "client")):
            limit = self._rate_limits[scope]
            if limit is None:
                continue
            started, used = self._rate_windows.get(key, (minute, 0))
            used = used + 1 if started == minute else 1
            self._rate_windows[key] = (minute, used)
            if used > limit and over is None:
                over = scope
        return over

    def _batch(self, request: _Request) -> _Response:
        """The batch route; the batch layer above answers it (it serves each part through ``_api``)."""
        raise NotImplementedError

    def _api(self, request: _Request) -> _Response:
        """One Classroom call, checked in Google's order: route, credentials, quota, parameters, scopes,
        ``fields``, the admin's switches; then the method, trimmed to ``fields``."""
        route_key, args = self._route(request.path)
        if route_key is None or request.method != "GET":
            return _api_error(404, f"Method not found: {request.method} {request.path}")
        route = _ROUTES[route_key]
        access = self._authenticated(request, route)
        if isinstance(access, _Response):
            return access
        user_id = access.grant.user_id
        scopes = set(self._effective_scopes(user_id, access.scopes))
        selection = self._admitted(request, route, user_id, scopes)
        if isinstance(selection, _Response):
            return selection
        result = self._handlers()[route_key](self._district.people[user_id], scopes, request, args)
        if isinstance(result, _Response):
            return result
        if selection is not None:
            result = apply_fields(result, selection)
        pretty = request.param("prettyPrint").lower() not in ("false", "0")
        response = _json_response(200, result, pretty=pretty)
        response.user_id = user_id
        return response

    def _handlers(self) -> dict[str, Callable[[Person, set[str], _Request, list[str]], Json | _Response]]:
        return {
            "courses.list": self._list_courses,
            "courses.get": self._get_course,
            "students.list": self._list_members,
            "teachers.list": self._list_members,
            "students.get": self._get_member,
            "teachers.get": self._get_member,
            "userProfiles.get": self._get_profile,
        }

    def _authenticated(self, request: _Request, route: _Route) -> _AccessToken | _Response:
        """The call's live access token, or Google's 401 for a missing, unknown, revoked or expired one."""
        token = request.bearer()
        if token is None:
            return _api_error(
                401,
                _MSG_MISSING_CREDENTIALS,
                legacy={
                    "message": "Login Required.",
                    "domain": "global",
                    "reason": "required",
                    "location": "Authorization",
                    "locationType": "header",
                },
                detail=_error_info("CREDENTIALS_MISSING", route.name),
                headers=[("WWW-Authenticate", _REALM)],
            )
        access = self._access.get(token)
        if access is None or access.grant.revoked or access.expires_at <= time.time():
            reason = "ACCESS_TOKEN_EXPIRED" if access and not access.grant.revoked else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            return _api_error(
                401,
                _MSG_INVALID_CREDENTIALS,
                legacy={
                    "message": "Invalid Credentials",
                    "domain": "global",
                    "reason": "authError",
                    "location": "Authorization",
                    "locationType": "header",
                },
                detail=_error_info(reason, route.name),
                headers=[("WWW-Authenticate", f'{_REALM}, error="invalid_token"')],
            )
        return access

    def _admitted(
        self, request: _Request, route: _Route, user_id: str, scopes: set[str]
    ) -> FieldTree | _Response | None:
        """After authentication: quota, parameters, scopes, ``fields`` (its parsed selection), the admin's switches."""
        refusal = self._quota_refusal(route, user_id) or _unknown_param(request, route)
        if refusal is None and not scopes & route.scopes:
            refusal = _insufficient_scope(route)
        if refusal is not None:
            return refusal
        selection = _selection(request, route)
        if isinstance(selection, _Response):
            return selection
        if user_id in self._classroom_disabled:
            return _api_error(403, _MSG_CLASSROOM_DISABLED)
        if user_id in self._api_disabled:
            return _api_error(403, _MSG_API_DISABLED)
        return selection

    def _quota_refusal(self, route: _Route, user_id: str) -> _Response | None:
        exhausted = self._over_quota(user_id)
        if exhausted is None:
            return None
        quota = _error_info(
            "RATE_LIMIT_EXCEEDED",
            route.name,
            quota_metric="classroom.googleapis.com/read_requests",
            quota_limit=_QUOTA_LIMITS[exhausted],
            quota_limit_value=str(self._rate_limits[exhausted]),
        )
        return _api_error(429, _QUOTA_MESSAGES[exhausted], detail=quota)

    # -------------------------------------------------------------------------- API: helpers
    def _page_size(self, request: _Request, cap: int) -> int | _Response:
        raw = request.param("pageSize")
        if not raw:
            return cap
        try:
            size = int(raw)
        except ValueError:
            message = f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\""
            return _api_error(400, message, detail=_bad_request_detail("page_size", message))
        if size < 0:
            return _api_error(400, detail=_bad_request_detail("page_size", "page_size must not be negative"))
        return cap if size == 0 or size > cap else size

    def _paginate(
        self, request: _Request, keyed: list[tuple[int, Any]], context: str, cap: int, *, descending: bool
    ) -> tuple[list[Any], str | None] | _Response:
        """Slice one page after the cursor; the token names the last key served, not an offset."""
        size = self._page_size(request, cap)
        if isinstance(size, _Response):
            return size
        check = _digest(self._page_salt, context)
        keyed = sorted(keyed, key=lambda pair: pair[0], reverse=descending)
        raw_token = request.param("pageToken")
        if raw_token:
            try:
                padded = raw_token + "=" * (-len(raw_token) % 4)
                token_check, _, after_text = base64.urlsafe_b64decode(padded).decode().partition(":")
                after = int(after_text)
            except ValueError:
                token_check, after = "", 0
            if token_check != check:
                return _api_error(400, detail=_bad_request_detail("page_token", "Invalid page token."))
            keyed = [pair for pair in keyed if (pair[0] < after if descending else pair[0] > after)]
        page = keyed[:size]
        next_token = None
        if len(keyed) > size:
            next_token = _b64url(f"{check}:{page[-1][0]}".encode())
        return [item for _, item in page], next_token

    # ------------------------------------------------------------------------- API: methods
    def _list_courses(self, caller: Person, scopes: set[str], request: _Request, args: list[str]) -> Json | _Response:
        teacher_key, student_key = request.param("teacherId"), request.param("studentId")
        if teacher_key and student_key:
            return _api_error(
                400,
                "@ListCoursesStudentAndTeacherFilter Both studentId and teacherId were specified.",
                legacy={
                    "message": "Precondition check failed.",
                    "domain": "global",
                    "reason": "failedPrecondition",
                },
            )
        teacher = self._resolve_user(caller, teacher_key) if teacher_key else None
        student = self._resolve_user(caller, student_key) if student_key else None
        if (teacher_key and teacher is None) or (student_key and student is None):
            return _api_error(404)
        states = request.query.get("courseStates", [])
        for state in states:
            if state not in _COURSE_STATES:
                message = (
                    "Invalid value at 'course_states' (type.googleapis.com/google.classroom.v1.CourseState), "
                    f'"{state}"'
                )
                return _api_error(400, message, detail=_bad_request_detail("course_states", message))
        keyed = [
            (course.seq, course)
            for course in self._district.courses.values()
            if (caller.id in course.teachers or caller.id in course.students)
            and (teacher is None or teacher.id in course.teachers)
            and (student is None or student.id in course.students)
            and (not states or course.state in states)
        ]
        context = "|".join(["courses", caller.id, teacher_key, student_key, *sorted(states)])
        page = self._paginate(request, keyed, context, self._courses_page_cap, descending=True)
        if isinstance(page, _Response):
            return page
        items, next_token = page
        next_token = self._next_token(request, next_token)
        body: Json = {}
        if items:
            body["courses"] = [self._course_json(course) for course in items]
        if next_token:
            body["nextPageToken"] = next_token
        return body

    def _get_course(self, caller: Person, scopes: set[str], request: _Request, args: list[str]) -> Json | _Response:
        course = self._district.courses.get(args[0])
        if course is None:
            return _api_error(404)
        if caller.id not in course.teachers and caller.id not in course.students:
            return _api_error(403)
        return self._course_json(course)

    def _list_members(self, caller: Person, scopes: set[str], request: _Request, args: list[str]) -> Json | _Response:
        kind = request.path.rstrip("/").rsplit("/", 1)[1]
        course = self._course_for_teacher(caller, args[0])
        if isinstance(course, _Response):
            return course
        members = course.students if kind == "students" else course.teachers
        keyed = [(seq, self._district.people[user_id]) for user_id, seq in members.items()]
        context = "|".join([kind, caller.id, course.id])
        page = self._paginate(request, keyed, context, self._roster_page_cap, descending=False)
        if isinstance(page, _Response):
            return page
        items, next_token = page
        next_token = self._next_token(request, next_token)
        body: Json = {}
        if items:
            body[kind] = [self._member_json(kind, course, person, scopes) for person in items]
        if next_token:
            body["nextPageToken"] = next_token
        return body

    def _get_member(self, caller: Person, scopes: set[str], request: _Request, args: list[str]) -> Json | _Response:
        kind = request.path.rstrip("/").split("/")[-2]
        course = self._course_for_teacher(caller, args[0])
        if isinstance(course, _Response):
            return course
        person = self._resolve_user(caller, args[1])
        members = course.students if kind == "students" else course.teachers
        if person is None or person.id not in members:
            return _api_error(404)
        return self._member_json(kind, course, person, scopes)

    def _get_profile(self, caller: Person, scopes: set[str], request: _Request, args: list[str]) -> Json | _Response:
        person = self._resolve_user(caller, args[0])
        if person is None:
            return _api_error(403)
        if person.id != caller.id:
            shares = any(
                (caller.id in c.teachers or caller.id in c.students)
                and (person.id in c.teachers or person.id in c.students)
                for c in self._district.courses.values()
            )
            if not shares:
                return _api_error(403)
        return self._profile_json(person, scopes)


def _unknown_param(request: _Request, route: _Route) -> _Response | None:
    """A query parameter the method does not take (system parameters aside): Google's 400."""
    for name in request.query:
        if name not in route.params and name not in _SYSTEM_PARAMS:
            description = (
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                f"Field '{name}' could not be found in request message."
            )
            return _api_error(
                400,
                description,
                legacy={"message": description, "domain": "global", "reason": "invalid"},
                detail=_bad_request_detail(name, description),
            )
    return None


def _insufficient_scope(route: _Route) -> _Response:
    challenge = f'{_REALM}, error="insufficient_scope", scope="{" ".join(sorted(route.scopes))}"'
    return _api_error(
        403,
        "Request had insufficient authentication scopes.",
        legacy={"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"},
        detail=_error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", route.name),
        headers=[("WWW-Authenticate", challenge)],
    )


def _selection(request: _Request, route: _Route) -> FieldTree | _Response | None:
    """The parsed ``fields`` selector (None without one), or the 400 for a malformed or unknown one."""
    if "fields" not in request.query:
        return None
    try:
        selection = parse_fields(request.param("fields"))
        validate_fields(selection, route.schema)
    except FieldsError as exc:
        legacy = {
            "message": str(exc),
            "domain": "global",
            "reason": "invalidParameter",
            "location": "fields",
            "locationType": "parameter",
        }
        return _api_error(400, str(exc), legacy=legacy, detail=_bad_request_detail("fields", str(exc)))
    return selection
