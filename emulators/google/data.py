"""The Google emulator's state: one synthetic district, its tokens, and the JSON Classroom makes of it."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from emulators.core import EmulatorCore, Json, Request, Response, json_body
from emulators.district import EMAIL_DOMAIN, Course, District, Person
from emulators.google.errors import (
    AUTH_PATH,
    MAX_BATCH_CALLS,
    REVOKE_PATH,
    TOKEN_PATH,
    _api_error,
)
from emulators.google.scopes import (
    SCOPE_PROFILE_EMAILS,
    SCOPE_PROFILE_PHOTOS,
)
from emulators.oauth import CodeBook, Grant, GrantBook, TokenLedger

_Request = Request
_Response = Response
_json_body = json_body


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _digest(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def photo_url(user_id: str) -> str:
    return f"https://lh3.googleusercontent.test/a/{user_id}"


# ---------------------------------------------------------------------------------- small records
@dataclass
class _AccessToken:
    """An access token minted from a grant, possibly for fewer scopes than the grant holds."""

    token: str
    grant: Grant
    scopes: tuple[str, ...]
    expires_at: float


# ------------------------------------------------------------------------------------ the emulator
class GoogleState(EmulatorCore):
    """Google Classroom + Google OAuth for one synthetic district: the state every layer reads.

    The server, the log, hooks, latency and ``fail_next`` come from ``EmulatorCore``; the layers
    above (oauth, api, batch, controls) hold Google's routes and error shapes only.
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
        super().__init__(host=host, port=port, cert_dir=cert_dir, client_id=client_id, client_secret=client_secret)
        self._batch_limit = max(1, batch_limit)
        self._rate_limits: dict[str, int | None] = {"user": rate_limit_per_user, "client": rate_limit_per_client}
        self._rate_windows: dict[str, tuple[int, int]] = {}  # "user:<id>" / "client": (minute, requests)
        self._district = District(
            seed=seed,
            teachers=teachers,
            courses_per_teacher=courses_per_teacher,
            students_per_course=students_per_course,
        )
        self._access_token_ttl = access_token_ttl
        self._rotate_refresh_tokens = rotate_refresh_tokens
        self._courses_page_cap = max(1, courses_page_cap)
        self._roster_page_cap = max(1, roster_page_cap)

        self._ledger = TokenLedger()
        self._codes = CodeBook()
        self._grants = GrantBook(self._ledger)
        self._access: dict[str, _AccessToken] = {}
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
            return [c.id for c in courses if teacher_id in c.teachers and (states is None or c.state in states)]

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

    # ------------------------------------------------------------------------------- internals
    def _person(self, user_id: str) -> Person:
        person = self._district.people.get(user_id)
        if person is None:
            raise KeyError(f"unknown user {user_id}")
        return person

    def _effective_scopes(self, user_id: str, scopes: Iterable[str]) -> tuple[str, ...]:
        withdrawn = self._withdrawn.get(user_id, set())
        return tuple(s for s in scopes if s not in withdrawn)

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
