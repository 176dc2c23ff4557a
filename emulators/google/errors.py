"""Google's paths, limits and error shapes (providers.md 1.7): API errors, OAuth errors, HTML pages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from emulators.core import Json, Request, Response, json_body

_Request = Request
_Response = Response
_json_body = json_body

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
_COURSE_STATES = frozenset({"COURSE_STATE_UNSPECIFIED", "ACTIVE", "ARCHIVED", "PROVISIONED", "DECLINED", "SUSPENDED"})
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


# ------------------------------------------------------------------------------ response builders
def _json_response(
    status: int, value: Any, *, pretty: bool = False, headers: Iterable[tuple[str, str]] = ()
) -> _Response:
    return _Response(
        status,
        _json_body(value, pretty=pretty),
        [("Content-Type", _JSON_TYPE), ("Vary", "Origin, X-Origin, Referer"), *headers],
    )


def _oauth_error(status: int, error: str, description: str, headers: Iterable[tuple[str, str]] = ()) -> _Response:
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
