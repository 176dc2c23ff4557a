"""The Google emulator's test controls: what a test does to the district, the grants and the answers."""

from __future__ import annotations

from datetime import UTC, datetime

from emulators.core import Request, Response, json_body
from emulators.google.batch import GoogleBatch
from emulators.google.errors import (
    _COURSE_STATES,
)
from emulators.google.scopes import (
    normalize_scope,
)

_Request = Request
_Response = Response
_json_body = json_body


class GoogleEmulator(GoogleBatch):
    """Google Classroom + Google OAuth for one synthetic district, with knobs for the bad days."""

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
            self._grants.revoke_user(user_id)

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
            return sum(1 for grant in self._grants.of_user(user_id) if not grant.revoked)

    def issued_tokens(self) -> set[str]:
        with self._lock:
            return set(self._ledger.issued)
