"""Google Classroom over google-api-python-client and google-auth, and nothing else.

Three reads (courses, students, teachers), the OAuth endpoints (consent URL, code exchange,
refresh, revoke) and one table that turns every Google failure into the taxonomy of
``connectors.base``. The field masks come from the mappers' allowlist through the worker,
so this module never names a personal field.

Refreshing is done here, explicitly, never silently by the HTTP wrapper: Google may rotate
the refresh token, and the new one must reach the vault (``on_tokens``) before it is used.

Course rosters go through Google's batch endpoint (``{google_api_endpoint}/batch``): up to
``BATCH_LIMIT`` list calls (students and teachers of many courses, first pages and follow-ups)
in one HTTP round trip, each part answered, and its failure classified, as a direct call's.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlencode, urlsplit

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import requests
from googleapiclient import discovery_cache
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from connectors.answers import json_object, seconds
from connectors.base import (
    UNREADABLE,
    AccessBlocked,
    AccessRevoked,
    ChangesUnavailable,
    ConnectorError,
    Masks,
    Page,
    PageBound,
    ProviderDataError,
    RateLimited,
    Refusal,
    RevokeVerdict,
    ScopeMissing,
    TokenSet,
    TokenSink,
    TransientError,
    no_check,
)

# re-exported: callers name the refusal and the session through the provider's module
from connectors.base import LinkRefused as LinkRefused
from connectors.batch import RetryRules, Round, resend_failed
from connectors.headers import HeadersOnlyResponse
from connectors.http import http_session as http_session
from connectors.refresh import RefreshOnce
from settings import GOOGLE_SCOPES, Settings

COURSES_SCOPE, ROSTERS_SCOPE = GOOGLE_SCOPES
COURSE_STATES = ["ACTIVE", "ARCHIVED"]
"""The course states listed: ARCHIVED too, so a course a teacher archives is seen ending, not vanishing."""
DEFAULT_RETRY_AFTER_SECONDS = 30.0
ROSTER_LIST_KEYS = {"student": "students", "teacher": "teachers"}
BATCH_LIMIT = 50
"""Calls a batch may carry. Google's Classroom guide "Batch requests"
(developers.google.com/classroom/best-practices/batch): "You're limited to 50 calls in a single batch
request. If you must make more calls than that, use multiple batch requests." (The client library's own
``MAX_BATCH_LIMIT`` of 1,000 is a ceiling for every Google API, not Classroom's.)"""
PART_ATTEMPTS = 3
"""Sends of one part that Google answered 429 or 5xx (the first and two retries) before the sync gives up."""
MAX_INLINE_WAIT_SECONDS = 10.0
"""A part's Retry-After up to this is waited out in place; a longer one stops the sync as ``RateLimited``."""
PART_RETRY_SECONDS = 1.0
"""The wait before resending a 5xx part that named no Retry-After."""
PART_RETRIES = RetryRules(attempts=PART_ATTEMPTS, max_inline_wait=MAX_INLINE_WAIT_SECONDS)


def consent_url(settings: Settings, *, state: str, code_challenge: str, login_hint: str | None = None) -> str:
    """The URL a teacher opens to grant our two read-only scopes (providers.md 1.6)."""
    query = {
        "response_type": "code",
        "client_id": settings.google.client_id,
        "redirect_uri": settings.google.redirect_uri,
        "scope": " ".join(GOOGLE_SCOPES),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }
    if login_hint:
        query["login_hint"] = login_hint
    return f"{settings.google.auth_uri}?{urlencode(query)}"


def _token_set(payload: Mapping[str, Any], previous_refresh_token: str | None = None) -> TokenSet:
    try:
        access_token = str(payload["access_token"])
        refresh_token = str(payload.get("refresh_token") or previous_refresh_token or "")
        expires_in = int(payload.get("expires_in", 3600))
        scopes = frozenset(str(payload.get("scope", "")).split())
    except (KeyError, TypeError, ValueError) as error:
        raise ProviderDataError("token response breaks the documented shape") from error
    if not refresh_token:
        raise ProviderDataError("token response carries no refresh token (was access_type=offline sent?)")
    expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=expires_in)
    return TokenSet(access_token=access_token, refresh_token=refresh_token, expiry=expiry, scopes=scopes)


def exchange_code(settings: Settings, *, code: str, code_verifier: str) -> TokenSet:
    """Authorization code + PKCE verifier -> tokens. Any refusal is a ``LinkRefused``."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": settings.google.redirect_uri,
        "client_id": settings.google.client_id,
        "client_secret": settings.google.client_secret.get_secret_value(),
    }
    with http_session(settings) as session:
        try:
            response = session.post(settings.google.token_uri, data=form, timeout=settings.http_timeouts)
        except requests.RequestException as error:
            raise TransientError(f"token endpoint unreachable ({type(error).__name__})") from error
    if response.status_code >= 500:
        raise TransientError(f"token endpoint answered {response.status_code}")
    body = json_object(response.text)
    if response.status_code != 200:
        error_code = str(body.get("error", "unknown_error"))
        description = str(body.get("error_description", ""))[:120]
        raise LinkRefused(f"Google refused the authorization code: {error_code} {description}".strip())
    return _token_set(body)


def revoke_token(settings: Settings, token: str) -> RevokeVerdict:
    """Revoke at Google the grant ``token`` belongs to (a refresh or an access token: either ends the grant)."""
    with http_session(settings) as session:
        try:
            response = session.post(settings.google.revoke_uri, data={"token": token}, timeout=settings.http_timeouts)
        except requests.RequestException as error:
            raise TransientError(f"revoke endpoint unreachable ({type(error).__name__})") from error
    if response.status_code == 200:
        return RevokeVerdict.REVOKED
    if response.status_code == 400 and json_object(response.text).get("error") == "invalid_token":
        return RevokeVerdict.TOKEN_INVALID
    if response.status_code >= 500:
        raise TransientError(f"revoke endpoint answered {response.status_code}")
    return RevokeVerdict.REFUSED


def account_id(settings: Settings, tokens: TokenSet) -> str:
    """The Google id of the account that granted ``tokens`` (``userProfiles/me``, asking for the id alone).

    Linking compares it (pseudonymised) with the account an integration was linked with before, to
    tell a re-consent of the same teacher from a switch to another account.
    """
    url = f"{settings.google.api_endpoint}/v1/userProfiles/me"
    with http_session(settings) as session:
        try:
            response = session.get(
                url,
                params={"fields": "id"},
                headers={"Authorization": f"Bearer {tokens.access_token}"},
                timeout=settings.http_timeouts,
            )
        except requests.RequestException as error:
            raise TransientError(f"Google unreachable ({type(error).__name__})") from error
    body = json_object(response.text)
    if response.status_code != 200:
        raise classify_api_error(
            response.status_code, body, response.headers.get("Retry-After"), required_scope=ROSTERS_SCOPE
        )
    subject = body.get("id")
    if not isinstance(subject, str) or not subject:
        raise ProviderDataError("userProfiles/me carries no id")
    return subject


RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
"""Google's reasons for a quota refusal, whatever the status (developers.google.com/classroom/limits)."""
SCOPE_REASONS = frozenset({"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"})
"""A 403 for a token without the scope the call needs (the grant lacks it: ``ScopeMissing``)."""
BLOCKED_CODES: Mapping[str, Refusal] = {
    "@ClassroomApiDisabled": Refusal(
        AccessBlocked,
        "a Google Workspace admin turned off Classroom data access for this user; turn it on in the "
        "Admin console (Apps > Google Workspace > Classroom > Data access)",
        reason="api_disabled",
    ),
    "@ClassroomDisabled": Refusal(
        AccessBlocked,
        "a Google Workspace admin turned off Classroom for this user (or the account has no Classroom); turn "
        "Classroom on for the user's organisational unit in the Admin console (it can take up to 24 hours)",
        reason="classroom_disabled",
    ),
}
"""403s Google documents as an admin's setting (Access.Errors): the school can switch them back, so they block
the integration and never end it (issue 23). Matched as Google's error guide says: the message starts with the
code followed by a space. Each reason is worded for the school's admin: what was switched off, where it goes on.
"""
STATUS_ERRORS: Mapping[int, Refusal] = {
    # The rest of Google's API errors (developers.google.com/classroom/reference/Access.Errors, providers.md 1.7
    # and 1.11) by status; any other 4xx is retried as TransientError naming Google's status word.
    403: Refusal(ProviderDataError, "Google denied access to one resource (403)"),
    404: Refusal(ProviderDataError, "resource vanished during the sync (404)"),
    408: Refusal(TransientError, "Google answered {status}"),
    500: Refusal(TransientError, "Google answered {status}"),  # and every other 5xx
}


def classify_api_error(
    status: int, body: Mapping[str, Any], retry_after: str | None, *, required_scope: str
) -> ConnectorError:
    """The whole Google API error map at a glance (providers.md 1.7 and 1.11).

    401 is not here: whether it means "refresh once" or "revoked" depends on the token's age,
    which only the connector knows.
    """
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    message = str(error.get("message", ""))
    reasons = {str(item.get("reason")) for item in error.get("errors", []) if isinstance(item, dict)}
    reasons |= {str(item.get("reason")) for item in error.get("details", []) if isinstance(item, dict)}
    if status == 429 or reasons & RATE_LIMIT_REASONS:
        return RateLimited(seconds(retry_after, DEFAULT_RETRY_AFTER_SECONDS))
    if status == 403 and reasons & SCOPE_REASONS:
        return ScopeMissing([required_scope])
    # Google's error guide: the message starts with the code, then a space, then its words
    blocked = next((refusal for code, refusal in BLOCKED_CODES.items() if message.startswith(code + " ")), None)
    if status == 403 and blocked is not None:
        return blocked()
    if status >= 500:
        return STATUS_ERRORS[500](status=status)
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status](status=status)
    return TransientError(f"Google answered {status} {error.get('status', '')!s}".strip())


def refresh_error(error: google.auth.exceptions.RefreshError) -> ConnectorError:
    """Only ``invalid_grant`` means the grant is gone; anything else (``invalid_client`` after a bad config
    change, an HTML error page from a proxy) must not purge anybody's roster, so it is retried."""
    details = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) else {}
    if details.get("error") == "invalid_grant":
        return AccessRevoked("Google refused the refresh token (invalid_grant)", reason="invalid_grant")
    return TransientError(f"token endpoint refused the refresh ({str(details.get('error', 'unknown'))[:40]})")


def _still_failing(
    pending: Mapping[str, _Listing], failures: Mapping[str, ConnectorError], wait: float
) -> RateLimited | None:
    """Parts that outlasted the retries: a rate limit for the whole read, or each listing's own error."""
    limited = [error for error in failures.values() if isinstance(error, RateLimited)]
    if limited:
        return RateLimited(max(wait, *(error.retry_after for error in limited)))
    for key, listing in pending.items():
        listing.error = failures.get(key) or TransientError("Google kept failing a part of a batch")
        listing.request = None
    return None


def _retryable(status: int, error: ConnectorError) -> bool:
    """Parts worth sending again in place: rate limits and the server's own failures, as Google advises."""
    return isinstance(error, RateLimited) or status in (408, 500, 502, 503, 504)


def _part_wait(error: ConnectorError, retry_after: str | None) -> float:
    """Seconds before a failed part is sent again: its Retry-After, else ``PART_RETRY_SECONDS``
    (a 429 without one gets ``DEFAULT_RETRY_AFTER_SECONDS``: too long to wait in place)."""
    if isinstance(error, RateLimited):
        return error.retry_after
    return seconds(retry_after, DEFAULT_RETRY_AFTER_SECONDS) if retry_after is not None else PART_RETRY_SECONDS


_Sent = TypeVar("_Sent")
"""What one send to Google answers: a JSON object, or a batch's answers."""


_document_lock = threading.Lock()
_documents: list[dict[str, Any]] = []
_classrooms: dict[str, _Classroom] = {}


@dataclass(frozen=True)
class _Classroom:
    """Classroom's three collections for one API endpoint, shared by every connector of the process.

    Building a collection builds each of its methods from the discovery document; done per sync it
    was a teacher link's largest fixed cost after the bookkeeping. The collections hold no credential
    and no connection (``_Unbound``): each request is handed the connector's own authorized http
    (``GoogleConnector._bound``) before it is sent, so threads share only what they never change.
    """

    courses: Any
    students: Any
    teachers: Any
    roster_calls: dict[tuple[str, str], Any] = field(default_factory=dict)
    """One list call per role and field mask, built by the library with ``_COURSE_SLOT`` for its course."""

    def roster_call(self, role: str, course_id: str, field_mask: str) -> Any:
        """The list call of one course's students or teachers, as ``list(courseId=.., fields=..)`` builds it.

        Why not that call each time: building a request from the discovery document (its parameters checked,
        cast and encoded, its headers made) was about a twentieth of a teacher link's CPU, sixteen times a
        sync. A copy of the call built once, with the course put in its path, is the same request: the
        library puts a course id of unreserved characters (RFC 3986) into the path as it is, and every other
        part of the call is the same for each course. Any other id is built by the library, as before.
        """
        collection = self.students if role == "student" else self.teachers
        if not _UNRESERVED.fullmatch(course_id):
            return collection.list(courseId=course_id, fields=field_mask)
        template = self.roster_calls.get((role, field_mask))
        if template is None:
            template = collection.list(courseId=_COURSE_SLOT, fields=field_mask)
            self.roster_calls[(role, field_mask)] = template
        call = copy.copy(template)
        call.uri = template.uri.replace(f"/courses/{_COURSE_SLOT}/", f"/courses/{course_id}/", 1)
        call.headers, call.response_callbacks = dict(template.headers), []
        return call


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")
_COURSE_SLOT = "rostersync-course"
"""The course of the shared roster list calls (``_Classroom.roster_call``), replaced in each copy's path."""


class _Unbound:
    """The shared collections' http: a request sent before a connector bound its own http is a bug, not a call."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a Classroom request was sent without the connector's authorized http")


def classroom_document() -> dict[str, Any]:
    """Classroom's discovery document (the copy the library ships), parsed once per process.

    Parsing its 260 kB anew for each sync was most of building a connector, a cost every teacher
    link paid on every sync. The library fixes up a method's parameters in the document itself the
    first time it builds that method (the same values each time), so the resources a connector uses
    are built once here, under the lock, before any thread shares the document.
    """
    with _document_lock:
        return _document()


def _document() -> dict[str, Any]:
    if not _documents:
        document = json.loads(discovery_cache.get_static_doc("classroom", "v1") or "{}")
        courses = build_from_document(document, http=_Unbound()).courses()
        courses.students(), courses.teachers()
        _documents.append(document)
    return _documents[0]


def classroom(api_endpoint: str) -> _Classroom:
    """The process's Classroom collections for ``api_endpoint``, built on first use under the lock."""
    with _document_lock:
        found = _classrooms.get(api_endpoint)
        if found is None:
            service = build_from_document(_document(), http=_Unbound(), client_options={"api_endpoint": api_endpoint})
            courses = service.courses()
            found = _classrooms[api_endpoint] = _Classroom(courses, courses.students(), courses.teachers())
        return found


class GoogleConnector:
    """Reads one teacher's courses and rosters; one instance per sync, per thread (httplib2 is not thread-safe)."""

    def __init__(
        self, settings: Settings, tokens: TokenSet, on_tokens: TokenSink, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._settings = settings
        self._on_tokens = on_tokens
        self._sleep = sleep
        self._credentials = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
            token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expiry=tokens.expiry,
            token_uri=settings.google.token_uri,
            client_id=settings.google.client_id,
            client_secret=settings.google.client_secret.get_secret_value(),
            scopes=list(GOOGLE_SCOPES),
        )
        self._session: requests.Session | None = None  # for token refreshes, made at the first (most syncs need none)
        ca_certs = str(settings.ca_bundle) if settings.ca_bundle is not None else None
        # httplib2 has one socket timeout, for the connect and for each read: the read timeout
        http = thread_http(settings.http_timeout_seconds, ca_certs)
        self._http = google_auth_httplib2.AuthorizedHttp(self._credentials, http=http, refresh_status_codes=())
        self._classroom = classroom(settings.google.api_endpoint)
        self.requests_made = 0
        self.before_request: Callable[[], None] = no_check

    def close(self) -> None:
        """The refresh session is closed; the thread's connections to Google stay open for its next sync."""
        if self._session is not None:
            self._session.close()

    def refresh(self) -> None:
        """Trade the refresh token for a new access token and hand the (maybe rotated) set to the vault."""
        if self._session is None:
            self._session = http_session(self._settings)
        request = functools.partial(
            google.auth.transport.requests.Request(self._session), timeout=self._settings.http_timeouts
        )
        try:
            self._credentials.refresh(request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as error:
            raise refresh_error(error) from None
        except (google.auth.exceptions.TransportError, OSError) as error:
            cause = error.__cause__ or error  # google-auth wraps what the session raised (RedirectNotFollowed)
            raise TransientError(f"token endpoint unreachable ({type(cause).__name__})") from None
        granted = getattr(self._credentials, "granted_scopes", None) or GOOGLE_SCOPES
        self._on_tokens(
            TokenSet(
                access_token=self._credentials.token,
                refresh_token=str(self._credentials.refresh_token),
                expiry=self._credentials.expiry,
                scopes=frozenset(granted),
            )
        )

    def classes(self, masks: Masks) -> Iterator[Page]:
        """The teacher's ACTIVE and ARCHIVED courses, page by page (``teacherId=me``).

        ARCHIVED ones are asked for so that their end is seen as the teacher's decision (the course
        comes with its state) and not as a course that vanished; the store ends them with no hold,
        and restores one that comes back ACTIVE. PROVISIONED/DECLINED are not taught yet.
        """
        courses = self._classroom.courses

        def listing(response: dict[str, Any] | None) -> Any:
            """Each page's call built anew: ``list_next`` refuses a repeated parameter (``courseStates`` twice)."""
            token = None if response is None else response.get("nextPageToken")
            if response is not None and not token:
                return None
            paging = {"pageToken": token} if token else {}
            return self._bound(
                courses.list(teacherId="me", courseStates=COURSE_STATES, fields=masks["class"], **paging)
            )

        yield from self._pages(courses, listing(None), "courses", None, COURSES_SCOPE, follow=listing)

    def members(self, class_ids: Sequence[str], masks: Masks) -> Iterator[Page]:
        """Students then teachers of each course, page by page, course by course, read in batches.

        The pending list calls (every listing's first page, then each ``nextPageToken`` follow-up) go
        ``BATCH_LIMIT`` to a batch, earliest listing first; pages are yielded in listing order as
        soon as they are in. A batch is sent only when the page the caller asks for is not in yet, so
        a caller that stops reading (a fence, a revoke) stops the calls: nothing is fetched ahead.

        Each yielded page is one call Google counted against the quota (a batch of n calls counts
        as n), which is what the worker's budget (``sync.budgets``) spends a unit on.

        A course whose roster cannot be read (404, a 403 on that course, a broken page) is reported as
        an ``UNREADABLE`` marker and the next course is read: the worker keeps that course's enrolments.
        A role the worker hands no mask for is not requested at all.
        """
        roles = [role for role in ("student", "teacher") if role in masks]
        reader = _RosterRead(
            self, [self._listing(c, role, masks[role]) for c in dict.fromkeys(class_ids) for role in roles]
        )
        for class_id in dict.fromkeys(class_ids):
            yield from reader.course(class_id)

    def _listing(self, class_id: str, role: str, field_mask: str) -> _Listing:
        list_key = ROSTER_LIST_KEYS[role]
        return _Listing(
            class_id,
            list_key,
            self._bound(self._classroom.roster_call(role, class_id, field_mask)),
            PageBound(self._settings.max_pages, f"Google's {list_key} listing"),
        )

    def _bound(self, request: Any) -> Any:
        """A request of the shared collections, sent through this connector's authorized http (and so are the
        follow-ups ``list_next`` copies from it)."""
        request.http = self._http
        return request

    def change_cursor(self) -> str | None:
        """Classroom has no change feed for a teacher's courses: every sync is a full listing."""
        return None

    def changes(self, cursor: str) -> Iterator[Page]:
        raise ChangesUnavailable("Google Classroom has no change feed", reason="unsupported")

    def revoke(self) -> RevokeVerdict:
        return revoke_token(self._settings, str(self._credentials.refresh_token))

    # ------------------------------------------------------------------------------- batches
    @property
    def batch_uri(self) -> str:
        """``{google_api_endpoint}/batch``: Classroom's ``batchPath`` under whatever endpoint is configured.

        Not ``service.new_batch_http_request()``: that builds the URL from the discovery document's
        ``rootUrl`` (the real Google), whatever ``api_endpoint`` the service was built with.
        """
        return f"{self._settings.google.api_endpoint.rstrip('/')}/batch"

    def batch(self, listings: Sequence[_Listing]) -> RateLimited | None:
        """Read the next page of each listing in one batch; failed parts are sent again, and only they.

        Every part is judged as a direct call would be: a 401 earns one refresh (a second is
        ``AccessRevoked``), a missing scope or a switched-off Classroom ends the sync at once, a 404 or
        a 403 on one course makes that course unreadable, and a 429 or 5xx part is sent again after its
        Retry-After (``PART_ATTEMPTS`` sends, waits up to ``MAX_INLINE_WAIT_SECONDS``). What is still
        failing then is not raised here, so the pages already in are not lost: a rate limit is returned
        (no further batch may go out), any other failure stays with its listing, raised when the
        caller reaches it (earlier listings are still read, as they were one call at a time).
        """
        refresh = RefreshOnce(spent=self._fresh_token())

        def reauthorize(_round: Round[_Listing]) -> None:
            if not refresh.again(self.refresh):
                raise AccessRevoked("Google rejected a freshly issued token (401)", reason="unauthorized")

        return resend_failed(
            {str(n): listing for n, listing in enumerate(listings, start=1)},
            lambda pending: self._batch_round(pending, refresh),
            rules=PART_RETRIES,
            reauthorize=reauthorize,
            give_up=lambda round_, wait, _last: _still_failing(round_.retry, round_.failures, wait),
            sleep=self._sleep,
        )

    def _batch_round(self, pending: Mapping[str, _Listing], refresh: RefreshOnce) -> Round[_Listing]:
        """One batch of ``pending``, each part's answer sorted: its page in, its course lost, or sent again."""
        round_: Round[_Listing] = Round()
        for key, (status, headers, content) in self._send_batch(pending, refresh).items():
            listing = pending[key]
            if status == 200:
                self._page_in(listing, content)
                continue
            if status == 401:
                round_.unauthorized = True
                round_.retry[key] = listing
                round_.failures[key] = TransientError("Google kept refusing a part of a batch (401)")
                continue
            error = classify_api_error(
                status, json_object(content), headers.get("retry-after"), required_scope=ROSTERS_SCOPE
            )
            if isinstance(error, ProviderDataError):
                listing.give_up()
            elif not _retryable(status, error):
                raise error
            else:
                round_.retry[key] = listing
                round_.failures[key] = error
                round_.waits.append(_part_wait(error, headers.get("retry-after")))
        return round_

    def _page_in(self, listing: _Listing, content: bytes) -> None:
        """A part answered 200: its page; a broken page, or one past ``ROSTERSYNC_MAX_PAGES``, loses the course."""
        try:
            listing.take(json.loads(content or b"null"))
        except (ValueError, ProviderDataError):
            listing.give_up()

    def _fresh_token(self) -> bool:
        """Refresh before sending when the token is stale; True when it was refreshed for this batch."""
        if self._credentials.valid:
            return False
        self.refresh()
        return True

    def _send_batch(self, pending: Mapping[str, _Listing], refresh: RefreshOnce) -> _Answers:
        """One HTTP round trip (two when the batch as a whole gets a 401 on a token not refreshed for it).

        A batch refused as a whole (429, 5xx) is classified like a direct call.
        """

        def send() -> _Answers:
            batch = _OneTrip(self.batch_uri, self._credentials)
            for key, listing in pending.items():
                batch.add(listing.request, request_id=key)
            try:
                return batch.send(self._http)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise ProviderDataError("Google's batch answer is not a well-formed multipart/mixed message") from None

        return self._sent(send, ROSTERS_SCOPE, refresh)

    def _pages(
        self,
        collection: Any,
        request: Any,
        list_key: str,
        parent: str | None,
        scope: str,
        follow: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Iterator[Page]:
        """Follow ``nextPageToken`` as given; a token that is not a string, or comes back a second time
        (a listing that would never end), breaks the documented shape. ``follow(response)`` builds the
        next call (None: the last page) where ``list_next`` cannot."""
        seen: set[str] = set()
        bound = PageBound(self._settings.max_pages, f"Google's {list_key} listing")
        while request is not None:
            bound.next_page()
            response = self._execute(request, scope)
            yield Page(kind=list_key, parent_id=parent, records=_page_records(response, list_key, seen))
            request = follow(response) if follow is not None else collection.list_next(request, response)

    def _execute(self, request: Any, scope: str) -> dict[str, Any]:
        """Send once; on a 401 with a token not refreshed for this request, refresh once and resend."""
        try:
            response = self._sent(lambda: request.execute(num_retries=0), scope, RefreshOnce(spent=self._fresh_token()))
        except ValueError as error:
            raise ProviderDataError(f"unreadable response ({type(error).__name__})") from None
        if not isinstance(response, dict):
            raise ProviderDataError("response is not a JSON object")
        return response

    def _sent(self, send: Callable[[], _Sent], scope: str, refresh: RefreshOnce) -> _Sent:
        """``send()`` counted as one request; a 401 on a token not refreshed for it (``refresh``) refreshes once
        and sends again (a second 401 is ``AccessRevoked``); every other failure sorted into the taxonomy."""
        while True:
            self.before_request()
            self.requests_made += 1
            try:
                return send()
            except HttpError as error:
                if error.status_code == 401 and refresh.again(self.refresh):
                    continue
                if error.status_code == 401:
                    raise AccessRevoked("Google rejected a freshly issued token (401)", reason="unauthorized") from None
                body = json_object(error.content)
                raise classify_api_error(
                    error.status_code, body, error.resp.get("retry-after"), required_scope=scope
                ) from None
            except google.auth.exceptions.RefreshError as error:
                raise refresh_error(error) from None
            except (TimeoutError, OSError, ssl.SSLError, httplib2.HttpLib2Error) as error:
                self._http.close()  # the thread's connections, maybe left half-read: the next sync opens new ones
                raise TransientError(f"network error talking to Google ({type(error).__name__})") from None


def _page_records(body: Mapping[str, Any], list_key: str, seen: set[str]) -> list[Any]:
    """One list answer's records, its ``nextPageToken`` checked: a token that is not a string, or one
    already in ``seen`` (a listing that would never end), breaks the documented shape."""
    records = body.get(list_key, [])
    if not isinstance(records, list):
        raise ProviderDataError(f"'{list_key}' is not a list")
    token = body.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise ProviderDataError("a nextPageToken is not a string")
    if token:
        if token in seen:
            raise ProviderDataError("page tokens loop")
        seen.add(token)
    return records


# ------------------------------------------------------------------------------------ httplib2
class _QuietHTTPS(httplib2.HTTPSConnectionWithTimeout):
    """A connection that ignores ``httplib2.debuglevel``: above 0, http.client prints every request it
    sends to stdout, the bearer token and the path with its ids included. Its answers' headers are read
    without the ``email`` package's multipart pass (connectors.headers): a batch answer's new boundary
    each time cost a regular expression compiled for every batch."""

    response_class = HeadersOnlyResponse

    def set_debuglevel(self, level: int) -> None:
        super().set_debuglevel(0)


class _QuietHTTP(httplib2.HTTPConnectionWithTimeout):
    """The same for a plain-HTTP endpoint (a local test set-up; Google itself is HTTPS only)."""

    response_class = HeadersOnlyResponse

    def set_debuglevel(self, level: int) -> None:
        super().set_debuglevel(0)


class _Http(httplib2.Http):
    """httplib2 as the Classroom service uses it: no redirect followed, nothing printed.

    httplib2 follows a 303 or 308 even on a POST, sending the body again: on ``/batch`` every part
    carries a bearer token. With ``follow_redirects`` off a 3xx comes back as an answer, which
    googleapiclient raises as an ``HttpError`` and ``classify_api_error`` makes a ``TransientError``.
    """

    def __init__(self, *, timeout: float, ca_certs: str | None) -> None:
        super().__init__(timeout=timeout, ca_certs=ca_certs)
        self.follow_redirects = False

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
    ) -> Any:
        if connection_type is None:
            connection_type = _QuietHTTPS if uri.startswith("https:") else _QuietHTTP
        return super().request(uri, method, body, headers, redirections, connection_type)


_threads = threading.local()


def thread_http(timeout: float, ca_certs: str | None) -> _Http:
    """This thread's httplib2 client for these settings, kept across its syncs (each wraps it with its own
    credentials): a teacher link's sync is two round trips, and a new client per sync paid a TCP connect and
    a TLS handshake (and a CA bundle loaded into a new SSL context) for each. httplib2 is not thread-safe,
    so each thread (a worker's actor threads) has its own, and a connection left in doubt by a network
    error is closed (``GoogleConnector._sent``)."""
    clients: dict[tuple[float, str | None], _Http] | None = getattr(_threads, "clients", None)
    if clients is None:
        clients = _threads.clients = {}
    client = clients.get((timeout, ca_certs))
    if client is None:
        client = clients[(timeout, ca_certs)] = _Http(timeout=timeout, ca_certs=ca_certs)
    return client


# ------------------------------------------------------------------------------------ batches
_Answers = dict[str, tuple[int, Mapping[str, str], bytes]]
"""A batch's answers by request id: status, headers (lower-case names), body."""


class _OneTrip:
    """One Google batch, sent exactly once: the connector decides about 401s.

    google-api-python-client's ``BatchHttpRequest.execute`` refreshes the credentials by itself when a
    part comes back 401, through a fresh ``httplib2.Http()`` (no CA bundle, no timeout, and a rotated
    refresh token that never reaches the vault), then sends those parts again in a second round trip
    nobody counts. So this class writes the ``multipart/mixed`` body and reads the answer itself, as
    Google's batch guide lays them out: one ``application/http`` part a call, each with its request
    line, headers (the bearer token on each part, as the library sends it) and ``Content-ID``; the
    answer's parts carry ``<response-ID>``. The library's own writer and reader go through the ``email``
    package, line by line: measured, that cost a teacher link more CPU than the round trip itself.
    """

    def __init__(self, batch_uri: str, credentials: Any) -> None:
        self._batch_uri = batch_uri
        self._credentials = credentials
        self._base = uuid.uuid4().hex
        self._parts: list[tuple[str, Any]] = []

    def add(self, request: Any, *, request_id: str) -> None:
        self._parts.append((request_id, request))

    def body(self, boundary: str) -> bytes:
        """The request body: every part's request line, its headers (with the token) and its body, if any."""
        chunks: list[str] = []
        for request_id, request in self._parts:
            target = urlsplit(request.uri)
            headers = dict(request.headers)
            self._credentials.apply(headers)
            lines = [f"{request.method} {target.path}{'?' + target.query if target.query else ''} HTTP/1.1"]
            lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length"]
            lines.append(f"Host: {target.netloc}")
            body = request.body or ""
            if body:
                lines.append(f"Content-Length: {len(body.encode() if isinstance(body, str) else body)}")
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: <{self._base}+{quote(request_id)}>\r\n\r\n" + "\r\n".join(lines) + "\r\n\r\n"
            )
            if body:
                chunks.append(body.decode() if isinstance(body, bytes) else body)
                chunks.append("\r\n")
        return ("".join(chunks) + f"--{boundary}--\r\n").encode()

    def send(self, http: Any) -> _Answers:
        """One POST; every part's answer as ``(status, headers, body)`` by request id (``KeyError``: a part left
        out; ``ValueError``: not a multipart/mixed answer). A batch refused as a whole is an ``HttpError``."""
        boundary = f"batch_{uuid.uuid4().hex}"
        response, content = http.request(
            self._batch_uri,
            method="POST",
            body=self.body(boundary),
            headers={"content-type": f'multipart/mixed; boundary="{boundary}"'},
        )
        if response.status >= 300:
            raise HttpError(response, content, uri=self._batch_uri)
        answers = _batch_answers(str(response.get("content-type", "")), content)
        return {request_id: answers[f"{self._base}+{quote(request_id)}"] for request_id, _ in self._parts}


def _boundary(content_type: str) -> str:
    media, _, parameters = content_type.partition(";")
    if media.strip().lower() != "multipart/mixed":
        raise ValueError("not multipart/mixed")
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"')
    raise ValueError("no boundary")


def _head_and_body(message: bytes) -> tuple[list[str], bytes]:
    """Header lines (unfolded) and the body of a part or of an HTTP message; CRLF or bare LF line ends."""
    crlf, lf = message.find(b"\r\n\r\n"), message.find(b"\n\n")
    if crlf < 0 and lf < 0:
        raise ValueError("no end of headers")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        head, body = message[:crlf], message[crlf + 4 :]
    else:
        head, body = message[:lf], message[lf + 2 :]
    lines: list[str] = []
    for line in head.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        elif line.strip():
            lines.append(line)
    return lines, body


def _header_map(lines: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("a header line without a colon")
        headers[name.strip().lower()] = value.strip()
    return headers


def _batch_answers(content_type: str, content: bytes) -> dict[str, tuple[int, Mapping[str, str], bytes]]:
    """A batch answer's parts by the id in their ``Content-ID`` (``<response-ID>``), each as status, headers
    (lower-case names) and body; ``ValueError`` for anything that is not a whole multipart/mixed answer."""
    delimiter = b"--" + _boundary(content_type).encode("latin-1")
    chunks = content.split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise ValueError("no closing delimiter")
    answers: dict[str, tuple[int, Mapping[str, str], bytes]] = {}
    for chunk in chunks[1:-1]:
        part_lines, message = _head_and_body(chunk.removeprefix(b"\r\n").removeprefix(b"\n"))
        content_id = _header_map(part_lines).get("content-id", "").strip("<> ")
        message = message.removesuffix(b"\n").removesuffix(b"\r")
        status_and_headers, body = _head_and_body(message) if message.strip() else ([], b"")
        if not status_and_headers:
            raise ValueError("a part without a status line")
        words = status_and_headers[0].split(" ", 2)
        if len(words) < 2 or not words[0].startswith("HTTP/"):
            raise ValueError("a part without a status line")
        answers[unquote(content_id.removeprefix("response-"))] = (
            int(words[1]),
            _header_map(status_and_headers[1:]),
            body,
        )
    return answers


@dataclass
class _Listing:
    """One roster listing (a course's students or teachers): the pages in so far, the call for the next."""

    course: str
    list_key: str
    request: Any | None
    bound: PageBound
    pages: deque[Page] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)
    unreadable: bool = False
    error: ConnectorError | None = None
    """A failure that outlasted the retries: raised when the caller reaches this listing."""
    first_uri: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.first_uri = "" if self.request is None else str(self.request.uri)

    def take(self, body: Any) -> None:
        """One page's answer: keep its records, and the follow-up call if there is one (``PageBound`` first)."""
        if not isinstance(body, dict):
            raise ProviderDataError("response is not a JSON object")
        records = _page_records(body, self.list_key, self.seen)
        self.pages.append(Page(kind=self.list_key, parent_id=self.course, records=records))
        self.request = _next_page(self.request, self.first_uri, body)
        if self.request is not None:
            self.bound.next_page()

    def give_up(self) -> None:
        self.unreadable, self.request = True, None
        self.pages.clear()


def _next_page(request: Any, first_uri: str, body: Mapping[str, Any]) -> Any:
    """The follow-up call as the client library's ``list_next`` builds it (a copy of the call, ``pageToken`` set on
    the first page's URI), None after the last page; without parsing and encoding the whole query again each page,
    which cost a third of a batch's own CPU, on the path of every page now that pages are read ahead (sync.prefetch)."""
    token = body.get("nextPageToken")
    if not token:
        return None
    follow = copy.copy(request)
    follow.uri = f"{first_uri}{'&' if '?' in first_uri else '?'}{urlencode({'pageToken': token})}"
    return follow


class _RosterRead:
    """The roster listings of one ``members`` call, fetched in batches as the caller reads them in order.

    ``halted`` is a rate limit that outlasted the retries: the pages already in are still handed out in
    order, and the first page that would need another batch raises it instead (no batch goes out).
    """

    def __init__(self, connector: GoogleConnector, listings: list[_Listing]) -> None:
        self._connector = connector
        self._listings = listings
        self._by_course: dict[str, list[_Listing]] = {}
        for listing in listings:
            listing.bound.next_page()
            self._by_course.setdefault(listing.course, []).append(listing)
        self.halted: RateLimited | None = None

    def course(self, class_id: str) -> Iterator[Page]:
        """All pages of the course's listings in turn, or an ``UNREADABLE`` marker once one of them broke
        (whichever: a course is read whole or not at all, so its pages still waiting are dropped)."""
        own = self._by_course.get(class_id, [])
        for listing in own:
            while True:
                if any(item.unreadable for item in own):
                    yield Page(kind=UNREADABLE, parent_id=class_id, records=())
                    return
                if listing.pages:
                    yield listing.pages.popleft()
                elif listing.error is not None:
                    raise listing.error
                elif listing.request is None:
                    break
                else:
                    self._fetch()

    def _fetch(self) -> None:
        """One batch of the earliest pending calls (the caller's own is first among them); none for a
        course already known unreadable."""
        if self.halted is not None:
            raise self.halted
        lost = {item.course for item in self._listings if item.unreadable}
        pending = [item for item in self._listings if item.request is not None and item.course not in lost]
        self.halted = self._connector.batch(pending[:BATCH_LIMIT])


ConnectorFactory = Callable[[Settings, TokenSet, TokenSink], GoogleConnector]
