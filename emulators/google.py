"""Local stand-in for Google Classroom and Google's OAuth 2.0 endpoints, served over HTTPS.

The worker has to be proven against the behaviour that bites in production: PKCE, rotating and
revocable refresh tokens, granular consent, profile fields that depend on scopes, `fields` partial
responses, capped pages with opaque tokens, omitted empty lists, quota errors and Google's error
JSON. None of that may need a network, a Google account or a real pupil, so this module answers
like Google does (providers.md section 1) from a seeded synthetic district.

It stands for the provider, so it imports nothing from the project: only the standard library and
`trustme`, which mints the throw-away CA that clients are told to trust.
"""

from __future__ import annotations

import base64
import email.message
import email.parser
import hashlib
import itertools
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from emulators.core import EmulatorCore, Failure, Json, Request, RequestRecord, Response, copy_query, json_body
from emulators.district import EMAIL_DOMAIN, Course, District, Person

__all__ = [
    "COURSE_READ_SCOPES",
    "ROSTER_READ_SCOPES",
    "SCOPE_COURSES_READONLY",
    "SCOPE_PROFILE_EMAILS",
    "SCOPE_PROFILE_PHOTOS",
    "SCOPE_ROSTERS_READONLY",
    "FieldsError",
    "GoogleEmulator",
    "RequestRecord",
    "apply_fields",
    "normalize_scope",
    "parse_fields",
]

# ----------------------------------------------------------------------------------------- scopes
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
SCOPE_COURSES_READONLY = SCOPE_PREFIX + "classroom.courses.readonly"
SCOPE_COURSES = SCOPE_PREFIX + "classroom.courses"
SCOPE_ROSTERS_READONLY = SCOPE_PREFIX + "classroom.rosters.readonly"
SCOPE_ROSTERS = SCOPE_PREFIX + "classroom.rosters"
SCOPE_PROFILE_EMAILS = SCOPE_PREFIX + "classroom.profile.emails"
SCOPE_PROFILE_PHOTOS = SCOPE_PREFIX + "classroom.profile.photos"
COURSE_READ_SCOPES = frozenset({SCOPE_COURSES_READONLY, SCOPE_COURSES})
ROSTER_READ_SCOPES = frozenset(
    {SCOPE_ROSTERS_READONLY, SCOPE_ROSTERS, SCOPE_PROFILE_EMAILS, SCOPE_PROFILE_PHOTOS}
)
_BARE_SCOPES = frozenset({"openid", "email", "profile"})


def normalize_scope(scope: str) -> str:
    """Accept `classroom.rosters.readonly` as shorthand for the full scope URI."""
    scope = scope.strip()
    if not scope or "://" in scope or scope in _BARE_SCOPES:
        return scope
    return SCOPE_PREFIX + scope


# ------------------------------------------------------------------------------------- constants
AUTH_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
REVOKE_PATH = "/revoke"
BATCH_PATH = "/batch"
"""Classroom's ``batchPath`` (``batch``, under ``rootUrl``) in its discovery document."""
MAX_BATCH_CALLS = 50
"""Google's Classroom guide "Batch requests" (developers.google.com/classroom/best-practices/batch): "You're
limited to 50 calls in a single batch request. If you must make more calls than that, use multiple batch
requests." (google-api-python-client's own ``MAX_BATCH_LIMIT`` of 1,000 is the library's, for every API.)"""
_MSG_BATCH_TOO_LARGE = f"A batch request cannot contain more than {MAX_BATCH_CALLS} calls."
_CODE_TTL = 600.0
_JSON_TYPE = "application/json; charset=UTF-8"
_NO_STORE = "no-cache, no-store, max-age=0, must-revalidate"
_REALM = 'Bearer realm="https://accounts.google.com/"'
_SERVICE = "classroom.googleapis.com"
_SYSTEM_PARAMS = frozenset(
    {
        "fields",
        "prettyPrint",
        "quotaUser",
        "alt",
        "key",
        "access_token",
        "oauth_token",
        "$.xgafv",
        "callback",
        "upload_protocol",
        "uploadType",
    }
)
_COURSE_STATES = frozenset(
    {"COURSE_STATE_UNSPECIFIED", "ACTIVE", "ARCHIVED", "PROVISIONED", "DECLINED", "SUSPENDED"}
)
_MSG_INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_MSG_MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_MSG_API_DISABLED = "@ClassroomApiDisabled The user is not permitted to access the Classroom API."
_MSG_CLASSROOM_DISABLED = "@ClassroomDisabled The user is not permitted to access Classroom."
"""Google's Access.Errors page documents the code and its meaning, not the words after it (these are ours)."""
_MSG_NO_PERMISSION = "The caller does not have permission"
_MSG_NOT_FOUND = "Requested entity was not found."

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_LEGACY_REASONS = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "rateLimitExceeded",
    500: "backendError",
    502: "backendError",
    503: "backendError",
    504: "backendError",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: _MSG_INVALID_CREDENTIALS,
    403: _MSG_NO_PERMISSION,
    404: _MSG_NOT_FOUND,
    409: "The operation was aborted.",
    429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user' "
    "of service 'classroom.googleapis.com' for consumer 'project_number:100000000001'.",
    500: "Internal error encountered.",
    502: "The service is currently unavailable.",
    503: "The service is currently unavailable.",
    504: "The request timed out.",
}
PUBLISHED_RATE_LIMITS = {"user": 1_200, "client": 3_000}
"""Classroom's default read quotas per minute (providers.md 1.8): per user, and per client project."""
_QUOTA_LIMITS = {"user": "ReadRequestsPerMinutePerUser", "client": "ReadRequestsPerMinutePerProject"}
_QUOTA_MESSAGES = {
    scope: f"Quota exceeded for quota metric 'Read requests' and limit '{name}' "
    "of service 'classroom.googleapis.com' for consumer 'project_number:100000000001'."
    for scope, name in (("user", "Read requests per minute per user"), ("client", "Read requests per minute"))
}
_OAUTH_FAILURES = {
    400: ("invalid_request", "Bad Request"),
    401: ("invalid_client", "Unauthorized"),
    403: ("access_denied", "Forbidden"),
    429: ("rate_limit_exceeded", "Rate Limit Exceeded"),
    500: ("internal_failure", "Backend Error"),
    503: ("temporarily_unavailable", "The service is currently unavailable."),
}

# ------------------------------------------------------------------------------ resource schemas
# Field names per message type, as the server knows them (the discovery document plus the two
# fields clients do not know about). A value names the message type of a nested field, None marks
# a scalar. Repeated fields are listed like singular ones: a selector applies to every element.
_SCHEMAS: dict[str, dict[str, str | None]] = {
    "ListCoursesResponse": {"courses": "Course", "nextPageToken": None},
    "ListStudentsResponse": {"students": "Student", "nextPageToken": None},
    "ListTeachersResponse": {"teachers": "Teacher", "nextPageToken": None},
    "Course": {
        "id": None,
        "name": None,
        "section": None,
        "descriptionHeading": None,
        "description": None,
        "room": None,
        "ownerId": None,
        "creationTime": None,
        "updateTime": None,
        "enrollmentCode": None,
        "courseState": None,
        "alternateLink": None,
        "teacherGroupEmail": None,
        "courseGroupEmail": None,
        "teacherFolder": "DriveFolder",
        "courseMaterialSets": "CourseMaterialSet",
        "guardiansEnabled": None,
        "calendarId": None,
        "gradebookSettings": "GradebookSettings",
        "subject": None,
        "levels": None,
        "aiTutorNotes": None,
    },
    "DriveFolder": {"id": None, "title": None, "alternateLink": None},
    "CourseMaterialSet": {"title": None, "materials": "CourseMaterial"},
    "CourseMaterial": {"driveFile": None, "youTubeVideo": None, "link": None, "form": None},
    "GradebookSettings": {
        "calculationType": None,
        "displaySetting": None,
        "gradeCategories": "GradeCategory",
    },
    "GradeCategory": {"id": None, "name": None, "weight": None, "defaultGradeDenominator": None},
    "Student": {
        "courseId": None,
        "userId": None,
        "profile": "UserProfile",
        "studentWorkFolder": "DriveFolder",
    },
    "Teacher": {"courseId": None, "userId": None, "profile": "UserProfile"},
    "UserProfile": {
        "id": None,
        "name": "Name",
        "emailAddress": None,
        "photoUrl": None,
        "permissions": "GlobalPermission",
        "verifiedTeacher": None,
        "nickname": None,
    },
    "Name": {"givenName": None, "familyName": None, "fullName": None},
    "GlobalPermission": {"permission": None},
}

# ------------------------------------------------------------------------- fields partial response
FieldTree: TypeAlias = dict[str, "FieldTree | None"]
"""Parsed `fields` selector: name -> sub-selection, None meaning the whole sub-tree."""

_NAME_RE = re.compile(r"\s*(\*|[A-Za-z_][A-Za-z0-9_]*)\s*")


class FieldsError(ValueError):
    """A `fields` selector that is malformed or names an unknown field: Google answers 400."""


class _FieldsParser:
    """Recursive descent over `a,b`, `a/b`, `a(b,c)` and `*`, nested to any depth."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def parse(self) -> FieldTree:
        tree = self._list()
        if self._pos != len(self._text):
            raise FieldsError(f"Invalid field selection {self._text[self._pos :]!r}")
        return tree

    def _peek(self) -> str:
        while self._pos < len(self._text) and self._text[self._pos].isspace():
            self._pos += 1
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _list(self) -> FieldTree:
        tree: FieldTree = {}
        self._selector(tree)
        while self._peek() == ",":
            self._pos += 1
            self._selector(tree)
        return tree

    def _name(self) -> str:
        match = _NAME_RE.match(self._text, self._pos)
        if match is None:
            raise FieldsError(f"Invalid field selection near {self._text[self._pos :]!r}")
        self._pos = match.end()
        return match.group(1)

    def _selector(self, tree: FieldTree) -> None:
        names = [self._name()]
        while self._peek() == "/":
            self._pos += 1
            names.append(self._name())
        node: FieldTree | None = None
        if self._peek() == "(":
            self._pos += 1
            node = self._list()
            if self._peek() != ")":
                raise FieldsError(f"Invalid field selection: missing ')' in {self._text!r}")
            self._pos += 1
        for name in reversed(names[1:]):
            node = {name: node}
        _merge_into(tree, names[0], node)


def _merge_into(tree: FieldTree, key: str, node: FieldTree | None) -> None:
    if key not in tree:
        tree[key] = node
        return
    existing = tree[key]
    if existing is None or node is None:
        tree[key] = None
        return
    for sub_key, sub_node in node.items():
        _merge_into(existing, sub_key, sub_node)


def _merged(first: FieldTree | None, second: FieldTree | None) -> FieldTree | None:
    if first is None or second is None:
        return None
    out: FieldTree = {}
    for tree in (first, second):
        for key, node in tree.items():
            _merge_into(out, key, node)
    return out


def parse_fields(text: str) -> FieldTree:
    """Parse a `fields` query value; raises FieldsError when it is malformed."""
    if not text.strip():
        raise FieldsError("Invalid field selection: empty")
    return _FieldsParser(text).parse()


def validate_fields(tree: FieldTree, schema: str, prefix: str = "") -> None:
    """Check every selected name against the resource schema (not the data: optional fields may be absent)."""
    known = _SCHEMAS[schema]
    for key, node in tree.items():
        where = f"{prefix}{key}"
        if key == "*":
            if node is not None:
                targets = [t for t in known.values() if t is not None]
                if not any(_fits(node, t) for t in targets):
                    raise FieldsError(f"Invalid field selection {where}")
            continue
        if key not in known:
            raise FieldsError(f"Invalid field selection {where}")
        target = known[key]
        if node is not None:
            if target is None:
                raise FieldsError(f"Invalid field selection {where}: the field has no sub-fields")
            validate_fields(node, target, where + "/")


def _fits(tree: FieldTree, schema: str) -> bool:
    try:
        validate_fields(tree, schema)
    except FieldsError:
        return False
    return True


def apply_fields(value: Any, tree: FieldTree) -> Any:
    """Trim a JSON value to the selection; lists are trimmed element by element."""
    if isinstance(value, list):
        return [apply_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    out: Json = {}
    for key, item in value.items():
        if key in tree and "*" in tree:
            node = _merged(tree[key], tree["*"])
        elif key in tree:
            node = tree[key]
        elif "*" in tree:
            node = tree["*"]
        else:
            continue
        out[key] = item if node is None else apply_fields(item, node)
    return out


# ---------------------------------------------------------------------------------- small records
@dataclass
class _Grant:
    """One consent: revoking it kills its refresh token and every access token minted from it."""

    id: int
    user_id: str
    scopes: tuple[str, ...]
    offline: bool
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class _AccessToken:
    token: str
    grant: _Grant
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class _AuthCode:
    user_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    challenge: str
    challenge_method: str
    offline: bool
    expires_at: float
    used: bool = False


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
    "students.get": _Route(
        "google.classroom.v1.Courses.GetStudent", frozenset(), ROSTER_READ_SCOPES, "Student"
    ),
    "teachers.list": _Route(
        "google.classroom.v1.Courses.ListTeachers",
        frozenset({"pageSize", "pageToken"}),
        ROSTER_READ_SCOPES,
        "ListTeachersResponse",
    ),
    "teachers.get": _Route(
        "google.classroom.v1.Courses.GetTeacher", frozenset(), ROSTER_READ_SCOPES, "Teacher"
    ),
    "userProfiles.get": _Route(
        "google.classroom.v1.UserProfiles.GetUserProfile", frozenset(), ROSTER_READ_SCOPES, "UserProfile"
    ),
}


# ------------------------------------------------------------------------------ response builders
def _json_response(
    status: int, value: Any, *, pretty: bool = False, headers: Iterable[tuple[str, str]] = ()
) -> _Response:
    return _Response(
        status,
        _json_body(value, pretty=pretty),
        [("Content-Type", _JSON_TYPE), ("Vary", "Origin, X-Origin, Referer"), *headers],
    )


def _oauth_error(
    status: int, error: str, description: str, headers: Iterable[tuple[str, str]] = ()
) -> _Response:
    return _Response(
        status,
        _json_body({"error": error, "error_description": description}, pretty=True),
        [("Content-Type", _JSON_TYPE), ("Cache-Control", _NO_STORE), ("Pragma", "no-cache"), *headers],
    )


def _error_info(reason: str, method: str | None, **extra: str) -> Json:
    metadata: dict[str, str] = {"service": _SERVICE}
    if method:
        metadata["method"] = method
    metadata.update(extra)
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": metadata,
    }


def _bad_request_detail(param: str, description: str) -> Json:
    return {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": param, "description": description}],
    }


def _api_error(
    status: int,
    message: str | None = None,
    *,
    legacy: Json | None = None,
    detail: Json | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> _Response:
    """Google's error JSON (providers.md 1.7): canonical status, legacy `errors`, typed `details`."""
    text = message or _DEFAULT_MESSAGES.get(status, "Unknown error.")
    legacy_entry = legacy or {
        "message": text,
        "domain": "global",
        "reason": _LEGACY_REASONS.get(status, "unknown"),
    }
    detail = detail or {"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": text}
    body = {
        "error": {
            "code": status,
            "message": text,
            "errors": [legacy_entry],
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            "details": [detail],
        }
    }
    return _json_response(status, body, pretty=True, headers=headers)


def _page_html(status: int, error: str, description: str) -> _Response:
    text = (
        "<!DOCTYPE html><html><head><title>Error</title></head><body>"
        f"<h1>Access blocked: authorisation error</h1><p>Error {status}: {error}</p>"
        f"<p>{description}</p><p>Request details: error={error}</p></body></html>"
    )
    return _Response(status, text.encode(), [("Content-Type", "text/html; charset=utf-8")])


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _digest(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def photo_url(user_id: str) -> str:
    return f"https://lh3.googleusercontent.test/a/{user_id}"


# ------------------------------------------------------------------------------------ the emulator
class GoogleEmulator(EmulatorCore):
    """Google Classroom + Google OAuth for one synthetic district, with knobs for the bad days.

    The server, the log, hooks, latency and ``fail_next`` come from ``EmulatorCore``; this class
    holds Google's routes, data and error shapes only.
    """

    name = "google-emulator"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        teachers: int = 3,
        courses_per_teacher: int = 2,
        students_per_course: int = 25,
        seed: int = 7,
        cert_dir: Path | None = None,
        client_id: str = "rostersync-emulator",
        client_secret: str = "emulator-secret",  # noqa: S107 - a synthetic test client
        access_token_ttl: int = 3600,
        rotate_refresh_tokens: bool = True,
        courses_page_cap: int = 10,
        roster_page_cap: int = 30,
        rate_limit_per_user: int | None = None,
        rate_limit_per_client: int | None = None,
        batch_limit: int = MAX_BATCH_CALLS,
    ) -> None:
        super().__init__(host=host, port=port, cert_dir=cert_dir)
        self._batch_limit = max(1, batch_limit)
        self._rate_limits: dict[str, int | None] = {"user": None, "client": None}
        self._rate_windows: dict[str, tuple[int, int]] = {}  # "user:<id>" / "client": (minute, requests)
        self.set_rate_limits(per_user=rate_limit_per_user, per_client=rate_limit_per_client)
        self._district = District(
            seed=seed,
            teachers=teachers,
            courses_per_teacher=courses_per_teacher,
            students_per_course=students_per_course,
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._access_token_ttl = access_token_ttl
        self._rotate_refresh_tokens = rotate_refresh_tokens
        self._courses_page_cap = max(1, courses_page_cap)
        self._roster_page_cap = max(1, roster_page_cap)

        self._codes: dict[str, _AuthCode] = {}
        self._grants: list[_Grant] = []
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _Grant] = {}  # every refresh token ever issued, rotated-out ones too
        self._issued: set[str] = set()
        self._grant_ids = itertools.count(1)
        self._granted_override: tuple[str, ...] | None = None
        self._consent_user: str | None = None
        self._round_robin = 0
        self._withdrawn: dict[str, set[str]] = {}
        self._api_disabled: set[str] = set()
        self._classroom_disabled: set[str] = set()
        self._page_salt = secrets.token_hex(8)
        self._cut_listings: str | None = None

    # ------------------------------------------------------------------------------- addresses
    @property
    def auth_uri(self) -> str:
        return self.base_url + AUTH_PATH

    @property
    def token_uri(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def revoke_uri(self) -> str:
        return self.base_url + REVOKE_PATH

    @property
    def api_endpoint(self) -> str:
        return self.base_url

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def client_secret(self) -> str:
        return self._client_secret

    # ------------------------------------------------------------------------------- district
    @property
    def teacher_ids(self) -> list[str]:
        with self._lock:
            return list(self._district.teacher_ids)

    def course_ids_of(self, teacher_id: str, *, states: Collection[str] | None = None) -> list[str]:
        """Courses the user teaches (owner or co-teacher), newest first, like courses.list?teacherId=.

        Without `states` every state is included (the archived course too), as the API does when
        courseStates is left out.
        """
        with self._lock:
            courses = sorted(self._district.courses.values(), key=lambda c: c.seq, reverse=True)
            return [
                c.id for c in courses if teacher_id in c.teachers and (states is None or c.state in states)
            ]

    def student_ids_of(self, course_id: str) -> list[str]:
        with self._lock:
            return list(self._district.courses[course_id].students)

    def person_ids(self) -> set[str]:
        """Every user id this emulator ever issued (teachers and students), for tests that grep logs for them."""
        with self._lock:
            return set(self._district.people)

    def personal_strings(self) -> set[str]:
        with self._lock:
            strings = self._district.personal_strings()
            strings.update(photo_url(user_id) for user_id in self._district.people)
            return strings

    # ------------------------------------------------------------------------------- controls
    def set_granted_scopes(self, scopes: list[str] | None) -> None:
        with self._lock:
            self._granted_override = None if scopes is None else tuple(normalize_scope(s) for s in scopes)

    def set_rate_limits(self, *, per_user: int | None = None, per_client: int | None = None) -> None:
        """Enforce Classroom's read quotas per minute (None: unlimited, the default).

        Google publishes 1,200 requests a minute per user and 3,000 per client project
        (``PUBLISHED_RATE_LIMITS``); past either, an API call is answered 429 ``RESOURCE_EXHAUSTED``
        with a ``RATE_LIMIT_EXCEEDED`` ErrorInfo naming the quota, and no Retry-After. The window
        is the calendar minute; a refused call counts too.
        """
        with self._lock:
            self._rate_limits = {"user": per_user, "client": per_client}
            self._rate_windows.clear()

    def set_consent_user(self, user_id: str | None) -> None:
        """Who approves every following /authorize without a known login_hint (None: round-robin)."""
        with self._lock:
            if user_id is not None:
                self._person(user_id)
            self._consent_user = user_id

    def revoke_grants(self, user_id: str) -> None:
        with self._lock:
            self._person(user_id)
            for grant in self._grants:
                if grant.user_id == user_id:
                    grant.revoked = True

    def withdraw_scope(self, user_id: str, scope: str) -> None:
        with self._lock:
            self._person(user_id)
            self._withdrawn.setdefault(user_id, set()).add(normalize_scope(scope))

    def disable_api(self, user_id: str) -> None:
        """A Workspace admin unticks "Classroom data access" for the user's unit: every API call of theirs is
        answered 403 ``@ClassroomApiDisabled``; tokens, grants and the revoke endpoint are untouched."""
        with self._lock:
            self._person(user_id)
            self._api_disabled.add(user_id)

    def enable_api(self, user_id: str) -> None:
        """The admin ticks the box again: the same grant reads again, no new consent needed."""
        with self._lock:
            self._person(user_id)
            self._api_disabled.discard(user_id)

    def disable_classroom(self, user_id: str) -> None:
        """A Workspace admin turns the Classroom service off for the user: API calls answer 403
        ``@ClassroomDisabled``; grants untouched."""
        with self._lock:
            self._person(user_id)
            self._classroom_disabled.add(user_id)

    def enable_classroom(self, user_id: str) -> None:
        with self._lock:
            self._person(user_id)
            self._classroom_disabled.discard(user_id)

    def expire_access_tokens(self, user_id: str | None = None) -> None:
        """Make outstanding access tokens (of one user, or all) expired, to exercise the refresh path."""
        with self._lock:
            for token in self._access.values():
                if user_id is None or token.grant.user_id == user_id:
                    token.expires_at = 0.0

    def add_student(self, course_id: str) -> str:
        with self._lock:
            if course_id not in self._district.courses:
                raise KeyError(f"unknown course {course_id}")
            person = self._district.new_person(is_teacher=False)
            self._district.enrol_student(course_id, person.id)
            return person.id

    def enroll_student(self, course_id: str, user_id: str) -> None:
        """(Re-)enrol an existing person as a student; a re-joined pupil sorts last, like a newcomer."""
        with self._lock:
            if course_id not in self._district.courses:
                raise KeyError(f"unknown course {course_id}")
            self._person(user_id)
            self._district.enrol_student(course_id, user_id)

    def remove_student(self, course_id: str, user_id: str) -> None:
        with self._lock:
            self._district.unenrol_student(course_id, user_id)

    def set_course_state(self, course_id: str, state: str) -> None:
        """A teacher archives (``ARCHIVED``) or reactivates (``ACTIVE``) a course; ACTIVE-only listings follow."""
        if state not in _COURSE_STATES:
            raise ValueError(f"unknown course state {state}")
        with self._lock:
            self._district.courses[course_id].state = state

    def archive_course(self, course_id: str) -> None:
        """A teacher archives a course at the year's end: still listed with ``courseStates=ARCHIVED``, read-only.

        ``set_course_state(course_id, "ACTIVE")`` is the teacher restoring it.
        """
        self.set_course_state(course_id, "ARCHIVED")

    def cut_listings(self, path_contains: str | None) -> None:
        """List answers whose path contains this carry no ``nextPageToken``: a listing silently cut short
        after its first page, answered 200 like a complete one (None: paging is whole again)."""
        with self._lock:
            self._cut_listings = path_contains

    def _next_token(self, request: _Request, token: str | None) -> str | None:
        cut = self._cut_listings is not None and self._cut_listings in request.path
        return None if cut else token

    def rename_user(self, user_id: str) -> None:
        with self._lock:
            self._person(user_id)
            self._district.rename(user_id)

    def name_user(self, user_id: str, given: str, family: str) -> None:
        """Set a person's names to exactly these: any text a profile may hold, a formula included."""
        with self._lock:
            self._person(user_id)
            self._district.name(user_id, given, family)

    def rename_course(self, course_id: str, *, name: str | None = None, section: str | None = None) -> None:
        """A teacher retitles a course (name, section): any text Classroom accepts, a formula included."""
        with self._lock:
            course = self._district.courses[course_id]
            course.name = course.name if name is None else name
            course.section = course.section if section is None else section
            course.updated = datetime.now(UTC)

    def live_grants(self, user_id: str) -> int:
        """How many of the user's grants Google would still honour (none revoked): what a revoke must end."""
        with self._lock:
            return sum(1 for grant in self._grants if grant.user_id == user_id and not grant.revoked)

    def issued_tokens(self) -> set[str]:
        with self._lock:
            return set(self._issued)

    # ------------------------------------------------------------------------------- internals
    def _person(self, user_id: str) -> Person:
        person = self._district.people.get(user_id)
        if person is None:
            raise KeyError(f"unknown user {user_id}")
        return person

    def _effective_scopes(self, user_id: str, scopes: Iterable[str]) -> tuple[str, ...]:
        withdrawn = self._withdrawn.get(user_id, set())
        return tuple(s for s in scopes if s not in withdrawn)

    def _identify(self, request: _Request, *, before: bool) -> str | None:
        """Which district user a request acts for, judged from its credentials (None when unknown)."""
        path = request.path
        if path.startswith("/v1/") or path in ("/v1", BATCH_PATH):
            token = request.bearer()
            access = self._access.get(token) if token else None
            return access.grant.user_id if access else None
        if path == TOKEN_PATH:
            if request.form_value("grant_type") == "refresh_token":
                grant = self._refresh.get(request.form_value("refresh_token"))
                return grant.user_id if grant else None
            code = self._codes.get(request.form_value("code"))
            return code.user_id if code else None
        if path == REVOKE_PATH:
            token = request.form_value("token") or request.param("token")
            access = self._access.get(token)
            if access:
                return access.grant.user_id
            grant = self._refresh.get(token)
            return grant.user_id if grant else None
        if path == AUTH_PATH and before:
            hinted = (
                self._district.find_person(request.param("login_hint"))
                if request.param("login_hint")
                else None
            )
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

    # --------------------------------------------------------------------------------- OAuth
    def _authorize(self, request: _Request) -> _Response:
        if request.param("client_id") != self._client_id:
            return _page_html(400, "invalid_client", "The OAuth client was not found.")
        redirect_uri = request.param("redirect_uri")
        if not redirect_uri:
            return _page_html(400, "invalid_request", "Missing required parameter: redirect_uri")
        if request.param("response_type") != "code":
            return _page_html(400, "unsupported_response_type", "Only response_type=code is supported.")
        requested = tuple(dict.fromkeys(normalize_scope(s) for s in request.param("scope").split()))
        if not requested:
            return _page_html(400, "invalid_request", "Missing required parameter: scope")
        challenge = request.param("code_challenge")
        method = request.param("code_challenge_method") or ("plain" if challenge else "")
        if challenge and method not in ("S256", "plain"):
            return _page_html(400, "invalid_request", "Invalid code_challenge_method.")
        user_id = self._consenting_user(request.param("login_hint"))
        if user_id is None:
            return _page_html(400, "access_denied", "Nobody is there to approve the request.")
        granted = self._granted_override if self._granted_override is not None else requested
        granted = self._effective_scopes(user_id, granted)
        code = "4/0" + secrets.token_urlsafe(40)
        self._codes[code] = _AuthCode(
            user_id=user_id,
            redirect_uri=redirect_uri,
            scopes=granted,
            challenge=challenge,
            challenge_method=method,
            offline=request.param("access_type") == "offline",
            expires_at=time.time() + _CODE_TTL,
        )
        params: list[tuple[str, str]] = []
        if "state" in request.query:
            params.append(("state", request.param("state")))
        params += [("code", code), ("scope", " ".join(granted))]
        separator = "&" if "?" in redirect_uri else "?"
        location = redirect_uri + separator + urlencode(params, quote_via=quote)
        return _Response(
            302,
            b"<HTML><HEAD><TITLE>Moved Temporarily</TITLE></HEAD><BODY>Moved Temporarily</BODY></HTML>",
            [("Location", location), ("Content-Type", "text/html; charset=UTF-8")],
            user_id=user_id,
        )

    def _consenting_user(self, login_hint: str) -> str | None:
        if login_hint:
            hinted = self._district.find_person(login_hint)
            if hinted is not None:
                return hinted.id
        if self._consent_user is not None:
            return self._consent_user
        teachers = self._district.teacher_ids
        if not teachers:
            return None
        user_id = teachers[self._round_robin % len(teachers)]
        self._round_robin += 1
        return user_id

    def _mint_access(self, grant: _Grant, scopes: tuple[str, ...]) -> _AccessToken:
        token = "ya29.a0" + secrets.token_urlsafe(96)
        access = _AccessToken(token, grant, scopes, time.time() + self._access_token_ttl)
        self._access[token] = access
        self._issued.add(token)
        return access

    def _mint_refresh(self, grant: _Grant) -> str:
        token = "1//0" + secrets.token_urlsafe(72)
        grant.refresh_token = token
        self._refresh[token] = grant
        self._issued.add(token)
        return token

    def _token(self, request: _Request) -> _Response:
        client_id, client_secret = request.form_value("client_id"), request.form_value("client_secret")
        authorization = request.headers.get("authorization", "")
        if not client_id and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                decoded = ""
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, client_secret = basic_id, basic_secret
        if client_id != self._client_id:
            return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if not secrets.compare_digest(client_secret.encode(), self._client_secret.encode()):
            return _oauth_error(401, "invalid_client", "Unauthorized")
        grant_type = request.form_value("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(request)
        if grant_type == "refresh_token":
            return self._refresh_grant(request)
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing required parameter: grant_type")
        return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _token_body(self, grant: _Grant, access: _AccessToken, refresh_token: str | None) -> _Response:
        body: Json = {"access_token": access.token, "expires_in": self._access_token_ttl}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        body["scope"] = " ".join(self._effective_scopes(grant.user_id, access.scopes))
        body["token_type"] = "Bearer"
        return _Response(
            200,
            _json_body(body, pretty=True),
            [("Content-Type", _JSON_TYPE), ("Cache-Control", _NO_STORE), ("Pragma", "no-cache")],
            user_id=grant.user_id,
        )

    def _exchange_code(self, request: _Request) -> _Response:
        code = request.form_value("code")
        if not code:
            return _oauth_error(400, "invalid_request", "Missing required parameter: code")
        entry = self._codes.get(code)
        if entry is None or entry.used or time.time() > entry.expires_at:
            return _oauth_error(400, "invalid_grant", "Malformed auth code.")
        if request.form_value("redirect_uri") != entry.redirect_uri:
            return _oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if entry.challenge:
            verifier = request.form_value("code_verifier")
            if not verifier:
                return _oauth_error(400, "invalid_grant", "Missing code verifier.")
            if entry.challenge_method == "S256":
                computed = _b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                computed = verifier
            if not secrets.compare_digest(computed.encode(), entry.challenge.encode()):
                return _oauth_error(400, "invalid_grant", "Invalid code verifier.")
        entry.used = True
        grant = _Grant(next(self._grant_ids), entry.user_id, entry.scopes, entry.offline)
        self._grants.append(grant)
        access = self._mint_access(grant, grant.scopes)
        refresh_token = self._mint_refresh(grant) if grant.offline else None
        return self._token_body(grant, access, refresh_token)

    def _refresh_grant(self, request: _Request) -> _Response:
        token = request.form_value("refresh_token")
        if not token:
            return _oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
        grant = self._refresh.get(token)
        if grant is None or grant.revoked or grant.refresh_token != token:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        scopes = grant.scopes
        wanted = {normalize_scope(s) for s in request.form_value("scope").split()}
        if wanted:  # a narrower request is honoured; scopes never granted are simply not added
            scopes = tuple(s for s in grant.scopes if s in wanted) or grant.scopes
        access = self._mint_access(grant, scopes)
        refresh_token = self._mint_refresh(grant) if self._rotate_refresh_tokens else None
        return self._token_body(grant, access, refresh_token)

    def _revoke(self, request: _Request) -> _Response:
        token = request.form_value("token") or request.param("token")
        if not token:
            return _oauth_error(400, "invalid_request", "Missing required parameter: token")
        grant: _Grant | None = None
        access = self._access.get(token)
        if access is not None:
            if access.expires_at > time.time():
                grant = access.grant
        else:
            candidate = self._refresh.get(token)
            if candidate is not None and candidate.refresh_token == token:
                grant = candidate
        if grant is None or grant.revoked:
            return _oauth_error(400, "invalid_token", "Token expired or revoked")
        grant.revoked = True
        return _Response(200, b"", [("Content-Type", "text/html; charset=utf-8")], user_id=grant.user_id)

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
                return (
                    (f"{kind}.list", [parts[1]]) if len(parts) == 3 else (f"{kind}.get", [parts[1], parts[3]])
                )
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

    def _api(self, request: _Request) -> _Response:
        route_key, args = self._route(request.path)
        if route_key is None or request.method != "GET":
            return _api_error(404, f"Method not found: {request.method} {request.path}")
        route = _ROUTES[route_key]

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
            reason = (
                "ACCESS_TOKEN_EXPIRED"
                if access and not access.grant.revoked
                else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            )
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
        user_id = access.grant.user_id
        exhausted = self._over_quota(user_id)
        if exhausted is not None:
            quota = _error_info(
                "RATE_LIMIT_EXCEEDED",
                route.name,
                quota_metric="classroom.googleapis.com/read_requests",
                quota_limit=_QUOTA_LIMITS[exhausted],
                quota_limit_value=str(self._rate_limits[exhausted]),
            )
            return _api_error(429, _QUOTA_MESSAGES[exhausted], detail=quota)

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

        scopes = set(self._effective_scopes(user_id, access.scopes))
        if not scopes & route.scopes:
            challenge = f'{_REALM}, error="insufficient_scope", scope="{" ".join(sorted(route.scopes))}"'
            return _api_error(
                403,
                "Request had insufficient authentication scopes.",
                legacy={
                    "message": "Insufficient Permission",
                    "domain": "global",
                    "reason": "insufficientPermissions",
                },
                detail=_error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", route.name),
                headers=[("WWW-Authenticate", challenge)],
            )

        selection: FieldTree | None = None
        if "fields" in request.query:
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
                return _api_error(
                    400, str(exc), legacy=legacy, detail=_bad_request_detail("fields", str(exc))
                )

        if user_id in self._classroom_disabled:
            return _api_error(403, _MSG_CLASSROOM_DISABLED)
        if user_id in self._api_disabled:
            return _api_error(403, _MSG_API_DISABLED)

        caller = self._district.people[user_id]
        handlers: dict[str, Callable[[Person, set[str], _Request, list[str]], Json | _Response]] = {
            "courses.list": self._list_courses,
            "courses.get": self._get_course,
            "students.list": self._list_members,
            "teachers.list": self._list_members,
            "students.get": self._get_member,
            "teachers.get": self._get_member,
            "userProfiles.get": self._get_profile,
        }
        result = handlers[route_key](caller, scopes, request, args)
        if isinstance(result, _Response):
            return result
        if selection is not None:
            result = apply_fields(result, selection)
        pretty = request.param("prettyPrint").lower() not in ("false", "0")
        response = _json_response(200, result, pretty=pretty)
        response.user_id = user_id
        return response

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

    def _course_json(self, course: Course) -> Json:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", course.name).strip("_")
        folder_id = "0B" + _digest("teacher-folder", course.id, length=26)
        return {
            "id": course.id,
            "name": course.name,
            "section": course.section,
            "descriptionHeading": f"{course.name} {course.section}",
            "room": course.room,
            "ownerId": course.owner_id,
            "creationTime": _rfc3339(course.created),
            "updateTime": _rfc3339(course.updated),
            "enrollmentCode": course.enrollment_code,
            "courseState": course.state,
            "alternateLink": f"https://classroom.google.test/c/{_b64url(course.id.encode())}",
            "teacherGroupEmail": f"{slug}_teachers_{_digest('tg', course.id, length=6)}@{EMAIL_DOMAIN}",
            "courseGroupEmail": f"{slug}_{_digest('cg', course.id, length=6)}@{EMAIL_DOMAIN}",
            "teacherFolder": {
                "id": folder_id,
                "title": course.name,
                "alternateLink": f"https://drive.google.test/drive/folders/{folder_id}",
            },
            "guardiansEnabled": False,
            "calendarId": f"classroom{_digest('cal', course.id, length=20)}@group.calendar.google.test",
            "aiTutorNotes": f"Synthetic server-only note for course {course.id}; clients must drop it.",
        }

    def _profile_json(self, person: Person, scopes: set[str]) -> Json:
        profile: Json = {
            "id": person.id,
            "name": {
                "givenName": person.given_name,
                "familyName": person.family_name,
                "fullName": person.full_name,
            },
        }
        if SCOPE_PROFILE_EMAILS in scopes:
            profile["emailAddress"] = person.email
        if SCOPE_PROFILE_PHOTOS in scopes:
            profile["photoUrl"] = photo_url(person.id)
        if person.is_teacher:
            profile["permissions"] = [{"permission": "CREATE_COURSE"}]
        profile["verifiedTeacher"] = person.is_teacher
        profile["nickname"] = person.nickname
        return profile

    def _member_json(self, kind: str, course: Course, person: Person, scopes: set[str]) -> Json:
        member: Json = {
            "courseId": course.id,
            "userId": person.id,
            "profile": self._profile_json(person, scopes),
        }
        if kind == "students":
            folder_id = "0B" + _digest("work-folder", course.id, person.id, length=26)
            member["studentWorkFolder"] = {
                "id": folder_id,
                "title": course.name,
                "alternateLink": f"https://drive.google.test/drive/folders/{folder_id}",
            }
        return member

    def _resolve_user(self, caller: Person, key: str) -> Person | None:
        return caller if key == "me" else self._district.find_person(key)

    def _course_for_teacher(self, caller: Person, course_id: str) -> Course | _Response:
        course = self._district.courses.get(course_id)
        if course is None:
            return _api_error(404)
        if caller.id not in course.teachers:
            return _api_error(403)
        return course

    # ------------------------------------------------------------------------- API: methods
    def _list_courses(
        self, caller: Person, scopes: set[str], request: _Request, args: list[str]
    ) -> Json | _Response:
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

    def _get_course(
        self, caller: Person, scopes: set[str], request: _Request, args: list[str]
    ) -> Json | _Response:
        course = self._district.courses.get(args[0])
        if course is None:
            return _api_error(404)
        if caller.id not in course.teachers and caller.id not in course.students:
            return _api_error(403)
        return self._course_json(course)

    def _list_members(
        self, caller: Person, scopes: set[str], request: _Request, args: list[str]
    ) -> Json | _Response:
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

    def _get_member(
        self, caller: Person, scopes: set[str], request: _Request, args: list[str]
    ) -> Json | _Response:
        kind = request.path.rstrip("/").split("/")[-2]
        course = self._course_for_teacher(caller, args[0])
        if isinstance(course, _Response):
            return course
        person = self._resolve_user(caller, args[1])
        members = course.students if kind == "students" else course.teachers
        if person is None or person.id not in members:
            return _api_error(404)
        return self._member_json(kind, course, person, scopes)

    def _get_profile(
        self, caller: Person, scopes: set[str], request: _Request, args: list[str]
    ) -> Json | _Response:
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

    # ------------------------------------------------------------------------------ batch
    def _batch(self, request: _Request) -> _Response:
        """Google's batch endpoint: one ``multipart/mixed`` POST of ``application/http`` parts, one answer each.

        As Google's guide describes it (developers.google.com/classroom/best-practices/batch): the outer
        request's headers, but its ``Content-`` ones, apply to every part unless the part sets its own
        (google-api-python-client puts the Authorization header on both); each part is then served as if
        it had come alone, so it is authorised, quota-counted, failure-injected, tampered with and logged
        on its own (the log holds the parts just before the batch itself), while the hooks see only the
        batch: it is one HTTP round trip. Answers come in request order, each part's ``Content-ID``
        ``<response-X>`` for the request's ``<X>``. More than ``MAX_BATCH_CALLS`` parts is refused whole
        with a 400 and no part served [U: the guide gives the limit, not the exact refusal].
        """
        parts = _batch_parts(request)
        if isinstance(parts, _Response):
            return parts
        if len(parts) > self._batch_limit:
            message = _MSG_BATCH_TOO_LARGE.replace(str(MAX_BATCH_CALLS), str(self._batch_limit))
            return _api_error(400, message)
        shared = {name: value for name, value in request.headers.items() if not name.startswith("content-")}
        answers = [(content_id, self._batch_part(sub, shared)) for content_id, sub in parts]
        boundary = "batch_" + secrets.token_hex(12)
        body = b"".join(_batch_answer(boundary, content_id, answer) for content_id, answer in answers)
        response = _Response(
            200,
            body + f"--{boundary}--\r\n".encode(),
            [("Content-Type", f"multipart/mixed; boundary={boundary}"), ("Vary", "Origin, X-Origin, Referer")],
        )
        response.user_id = self._identify(request, before=False)
        return response

    def _batch_part(self, sub: _Request, shared: dict[str, str]) -> _Response:
        """Serve one part as a request of its own (outer headers first, the part's own override them)."""
        sub.headers = shared | sub.headers
        result = self._injected_failure(sub)
        if result is None:
            result = self._api(sub) if sub.path.startswith("/v1/") else _api_error(404)
        result = self._tampered(sub, result)
        user_id = result.user_id if result.user_id is not None else self._identify(sub, before=False)
        self._log.append(RequestRecord(sub.method, sub.path, copy_query(sub.query), user_id, result.status))
        return result


_BatchParts: TypeAlias = "list[tuple[str, _Request]]"


def _batch_parts(request: _Request) -> _BatchParts | _Response:
    """The parts of a batch request as (Content-ID, request), or the 400 a malformed batch gets."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/mixed") or "boundary=" not in content_type.lower():
        return _api_error(400, "Batch requests must be multipart/mixed with a boundary.")
    envelope = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + request.body
    )
    payload = envelope.get_payload() if envelope.is_multipart() else None
    if not isinstance(payload, list) or not payload:
        return _api_error(400, "Failed to parse batch request: no parts.")
    parts: _BatchParts = []
    for index, part in enumerate(payload):
        if not isinstance(part, email.message.Message) or part.get_content_type() != "application/http":
            return _api_error(400, "Failed to parse batch request: every part must be application/http.")
        inner = _inner_request(str(part.get_payload()))
        if inner is None:
            return _api_error(400, "Failed to parse batch request: a part is not an HTTP request.")
        content_id = " ".join(str(part.get("Content-ID", "")).split()).strip("<>") or f"part-{index + 1}"
        parts.append((content_id, inner))
    return parts


def _inner_request(text: str) -> _Request | None:
    """``GET /v1/... HTTP/1.1`` plus headers and body; only a path is allowed, never a full URL."""
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.lstrip("\n").split("\n")
    words = lines[0].split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/") or not words[1].startswith("/"):
        return None
    headers: dict[str, str] = {}
    last = ""
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            return None
        last = name.strip().lower()
        headers[last] = value.strip()
    target = urlsplit(words[1])
    query = parse_qs(target.query, keep_blank_values=True)
    return _Request(words[0].upper(), target.path, query, {}, headers, body.encode())


def _batch_answer(boundary: str, content_id: str, answer: _Response) -> bytes:
    """One ``application/http`` part of a batch answer: status line, headers, JSON body (CRLF throughout)."""
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in answer.headers if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(answer.body)}")
    head = (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n"
        + "\r\n".join(lines)
        + "\r\n\r\n"
    )
    return head.encode() + answer.body + b"\r\n"
