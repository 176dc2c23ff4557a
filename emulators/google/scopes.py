"""Google's OAuth scopes for Classroom, and the shorthand clients may use for them."""

from __future__ import annotations

# ----------------------------------------------------------------------------------------- scopes
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
SCOPE_COURSES_READONLY = SCOPE_PREFIX + "classroom.courses.readonly"
SCOPE_COURSES = SCOPE_PREFIX + "classroom.courses"
SCOPE_ROSTERS_READONLY = SCOPE_PREFIX + "classroom.rosters.readonly"
SCOPE_ROSTERS = SCOPE_PREFIX + "classroom.rosters"
SCOPE_PROFILE_EMAILS = SCOPE_PREFIX + "classroom.profile.emails"
SCOPE_PROFILE_PHOTOS = SCOPE_PREFIX + "classroom.profile.photos"
COURSE_READ_SCOPES = frozenset({SCOPE_COURSES_READONLY, SCOPE_COURSES})
ROSTER_READ_SCOPES = frozenset({SCOPE_ROSTERS_READONLY, SCOPE_ROSTERS, SCOPE_PROFILE_EMAILS, SCOPE_PROFILE_PHOTOS})
_BARE_SCOPES = frozenset({"openid", "email", "profile"})


def normalize_scope(scope: str) -> str:
    """Accept `classroom.rosters.readonly` as shorthand for the full scope URI."""
    scope = scope.strip()
    if not scope or "://" in scope or scope in _BARE_SCOPES:
        return scope
    return SCOPE_PREFIX + scope
