"""Local stand-in for Google Classroom and Google's OAuth 2.0 endpoints, served over HTTPS.

The worker has to be proven against the behaviour that bites in production: PKCE, rotating and
revocable refresh tokens, granular consent, profile fields that depend on scopes, `fields` partial
responses, capped pages with opaque tokens, omitted empty lists, quota errors and Google's error
JSON. None of that may need a network, a Google account or a real pupil, so this package answers
like Google does (providers.md section 1) from a seeded synthetic district.

One layer a module: ``data`` (the district, tokens and JSON shapes), ``oauth`` (the shared OAuth
flow with Google's differences), ``api`` (routes, authorisation, quotas, paging), ``batch``,
``controls`` (what tests do to it; the class they use), plus ``scopes``, ``fields`` and ``errors``.
It stands for the provider, so it imports nothing from the project.
"""

from emulators.core import RequestRecord
from emulators.google.controls import GoogleEmulator
from emulators.google.errors import MAX_BATCH_CALLS, PUBLISHED_RATE_LIMITS
from emulators.google.fields import FieldsError, apply_fields, parse_fields
from emulators.google.scopes import (
    COURSE_READ_SCOPES,
    ROSTER_READ_SCOPES,
    SCOPE_COURSES_READONLY,
    SCOPE_PROFILE_EMAILS,
    SCOPE_PROFILE_PHOTOS,
    SCOPE_ROSTERS_READONLY,
    normalize_scope,
)

__all__ = [
    "COURSE_READ_SCOPES",
    "MAX_BATCH_CALLS",
    "PUBLISHED_RATE_LIMITS",
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
