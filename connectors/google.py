"""Google Classroom over google-api-python-client and google-auth, and nothing else.

Three reads (courses, students, teachers), the OAuth endpoints (consent URL, code exchange,
refresh, revoke) and one table that turns every Google failure into the taxonomy of
``connectors.base``. The field masks come from the mappers' allowlist through the worker,
so this module never names a personal field.

Refreshing is done here, explicitly, never silently by the HTTP wrapper: Google may rotate
the refresh token, and the new one must reach the vault (``on_tokens``) before it is used.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import requests
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from connectors.base import (
    UNREADABLE,
    AccessRevoked,
    ChangesUnavailable,
    ConnectorError,
    Masks,
    Page,
    PageBound,
    ProviderDataError,
    RateLimited,
    RevokeVerdict,
    ScopeMissing,
    TokenSet,
    TokenSink,
    TransientError,
)
from connectors.http import http_session as timeout_session
from settings import GOOGLE_SCOPES, Settings

COURSES_SCOPE, ROSTERS_SCOPE = GOOGLE_SCOPES
DEFAULT_RETRY_AFTER_SECONDS = 30.0
ROSTER_LIST_KEYS = {"student": "students", "teacher": "teachers"}


class LinkRefused(ConnectorError):
    """The provider refused to turn an authorization code into tokens (bad code, wrong PKCE verifier)."""

    kind = "link_refused"


def http_session(settings: Settings) -> requests.Session:
    """Our CA only, and connect and read timeouts on every request, whoever sends it (connectors.http)."""
    return timeout_session(settings)


def consent_url(settings: Settings, *, state: str, code_challenge: str, login_hint: str | None = None) -> str:
    """The URL a teacher opens to grant our two read-only scopes (providers.md 1.6)."""
    query = {
        "response_type": "code",
        "client_id": settings.google_client_id,
        "redirect_uri": settings.google_redirect_uri,
        "scope": " ".join(GOOGLE_SCOPES),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }
    if login_hint:
        query["login_hint"] = login_hint
    return f"{settings.google_auth_uri}?{urlencode(query)}"


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
        "redirect_uri": settings.google_redirect_uri,
        "client_id": settings.google_client_id,
        "client_secret": settings.google_client_secret.get_secret_value(),
    }
    with http_session(settings) as session:
        try:
            response = session.post(settings.google_token_uri, data=form, timeout=settings.http_timeouts)
        except requests.RequestException as error:
            raise TransientError(f"token endpoint unreachable ({type(error).__name__})") from error
    if response.status_code >= 500:
        raise TransientError(f"token endpoint answered {response.status_code}")
    body = _json_or_empty(response.text)
    if response.status_code != 200:
        error_code = str(body.get("error", "unknown_error"))
        description = str(body.get("error_description", ""))[:120]
        raise LinkRefused(f"Google refused the authorization code: {error_code} {description}".strip())
    return _token_set(body)


def revoke_token(settings: Settings, token: str) -> RevokeVerdict:
    """Revoke at Google the grant ``token`` belongs to (a refresh or an access token: either ends the grant)."""
    with http_session(settings) as session:
        try:
            response = session.post(settings.google_revoke_uri, data={"token": token}, timeout=settings.http_timeouts)
        except requests.RequestException as error:
            raise TransientError(f"revoke endpoint unreachable ({type(error).__name__})") from error
    if response.status_code == 200:
        return RevokeVerdict.REVOKED
    if response.status_code == 400 and _json_or_empty(response.text).get("error") == "invalid_token":
        return RevokeVerdict.TOKEN_INVALID
    if response.status_code >= 500:
        raise TransientError(f"revoke endpoint answered {response.status_code}")
    return RevokeVerdict.REFUSED


def account_id(settings: Settings, tokens: TokenSet) -> str:
    """The Google id of the account that granted ``tokens`` (``userProfiles/me``, asking for the id alone).

    Linking compares it (pseudonymised) with the account an integration was linked with before, to
    tell a re-consent of the same teacher from a switch to another account.
    """
    url = f"{settings.google_api_endpoint}/v1/userProfiles/me"
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
    body = _json_or_empty(response.text)
    if response.status_code != 200:
        raise classify_api_error(
            response.status_code, body, response.headers.get("Retry-After"), required_scope=ROSTERS_SCOPE
        )
    subject = body.get("id")
    if not isinstance(subject, str) or not subject:
        raise ProviderDataError("userProfiles/me carries no id")
    return subject


def _json_or_empty(text: str | bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


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
    if status == 429 or reasons & {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}:
        return RateLimited(_retry_after_seconds(retry_after))
    if status == 403:
        if reasons & {"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"}:
            return ScopeMissing([required_scope])
        if message.startswith("@ClassroomApiDisabled"):
            return AccessRevoked("school admin switched off Classroom data access", reason="api_disabled")
        if message.startswith("@ClassroomDisabled"):
            return AccessRevoked("the account has no Classroom access", reason="classroom_disabled")
        return ProviderDataError("Google denied access to one resource (403)")
    if status == 404:
        return ProviderDataError("resource vanished during the sync (404)")
    if status >= 500 or status == 408:
        return TransientError(f"Google answered {status}")
    return TransientError(f"Google answered {status} {error.get('status', '')!s}".strip())


def refresh_error(error: google.auth.exceptions.RefreshError) -> ConnectorError:
    """Only ``invalid_grant`` means the grant is gone; anything else (``invalid_client`` after a bad config
    change, an HTML error page from a proxy) must not purge anybody's roster, so it is retried."""
    details = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) else {}
    if details.get("error") == "invalid_grant":
        return AccessRevoked("Google refused the refresh token (invalid_grant)", reason="invalid_grant")
    return TransientError(f"token endpoint refused the refresh ({str(details.get('error', 'unknown'))[:40]})")


def _retry_after_seconds(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS


class GoogleConnector:
    """Reads one teacher's courses and rosters; one instance per sync, per thread (httplib2 is not thread-safe)."""

    def __init__(self, settings: Settings, tokens: TokenSet, on_tokens: TokenSink) -> None:
        self._settings = settings
        self._on_tokens = on_tokens
        self._credentials = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
            token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expiry=tokens.expiry,
            token_uri=settings.google_token_uri,
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.get_secret_value(),
            scopes=list(GOOGLE_SCOPES),
        )
        self._session = http_session(settings)
        self._refresh_request = functools.partial(
            google.auth.transport.requests.Request(self._session), timeout=settings.http_timeouts
        )
        ca_certs = str(settings.ca_bundle) if settings.ca_bundle is not None else None
        authorized_http = google_auth_httplib2.AuthorizedHttp(
            self._credentials,
            # httplib2 has one socket timeout, for the connect and for each read: the read timeout
            http=httplib2.Http(timeout=settings.http_timeout_seconds, ca_certs=ca_certs),
            refresh_status_codes=(),
        )
        self._service = build(
            "classroom",
            "v1",
            http=authorized_http,
            static_discovery=True,
            client_options={"api_endpoint": settings.google_api_endpoint},
            cache_discovery=False,
        )
        self._rosters: dict[str, Any] = {}
        self.requests_made = 0

    def close(self) -> None:
        self._session.close()
        self._service.close()

    def refresh(self) -> None:
        """Trade the refresh token for a new access token and hand the (maybe rotated) set to the vault."""
        try:
            self._credentials.refresh(self._refresh_request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as error:
            raise refresh_error(error) from None
        except (google.auth.exceptions.TransportError, OSError) as error:
            raise TransientError(f"token endpoint unreachable ({type(error).__name__})") from None
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
        """The teacher's ACTIVE courses, page by page (``teacherId=me``)."""
        courses = self._service.courses()
        request = courses.list(teacherId="me", courseStates=["ACTIVE"], fields=masks["class"])
        yield from self._pages(courses, request, "courses", None, COURSES_SCOPE)

    def members(self, class_ids: Sequence[str], masks: Masks) -> Iterator[Page]:
        """Students then teachers of each course, page by page (pages of at most 30 at Google).

        A course whose roster cannot be read (404, a 403 on that course, a broken page) is reported as
        an ``UNREADABLE`` marker and the next course is read: the worker keeps that course's enrolments.
        A role the worker hands no mask for is not requested at all.
        """
        roles = [role for role in ("student", "teacher") if role in masks]
        for class_id in class_ids:
            try:
                for role in roles:
                    yield from self._members(class_id, role, masks[role])
            except ProviderDataError:
                yield Page(kind=UNREADABLE, parent_id=class_id, records=())

    def _members(self, class_id: str, role: str, field_mask: str) -> Iterator[Page]:
        collection = self._rosters.get(role)
        if collection is None:
            # Each resource call builds its methods from the discovery document anew (half of a roster
            # page's cost when measured): build the two roster collections once per connector.
            courses = self._service.courses()
            collection = self._rosters[role] = courses.students() if role == "student" else courses.teachers()
        request = collection.list(courseId=class_id, fields=field_mask)
        yield from self._pages(collection, request, ROSTER_LIST_KEYS[role], class_id, ROSTERS_SCOPE)

    def change_cursor(self) -> str | None:
        """Classroom has no change feed for a teacher's courses: every sync is a full listing."""
        return None

    def changes(self, cursor: str) -> Iterator[Page]:
        raise ChangesUnavailable("Google Classroom has no change feed", reason="unsupported")

    def revoke(self) -> RevokeVerdict:
        return revoke_token(self._settings, str(self._credentials.refresh_token))

    def _pages(self, collection: Any, request: Any, list_key: str, parent: str | None, scope: str) -> Iterator[Page]:
        """Follow ``nextPageToken`` as given; a token that is not a string, or comes back a second time
        (a listing that would never end), breaks the documented shape."""
        seen: set[str] = set()
        bound = PageBound(self._settings.max_pages, f"Google's {list_key} listing")
        while request is not None:
            bound.next_page()
            response = self._execute(request, scope)
            records = response.get(list_key, [])
            if not isinstance(records, list):
                raise ProviderDataError(f"'{list_key}' is not a list")
            token = response.get("nextPageToken")
            if token is not None and not isinstance(token, str):
                raise ProviderDataError("a nextPageToken is not a string")
            if token:
                if token in seen:
                    raise ProviderDataError("page tokens loop")
                seen.add(token)
            yield Page(kind=list_key, parent_id=parent, records=records)
            request = collection.list_next(request, response)

    def _execute(self, request: Any, scope: str) -> dict[str, Any]:
        """Send once; on a 401 with a token not refreshed for this request, refresh once and resend."""
        refreshed = False
        if not self._credentials.valid:
            self.refresh()
            refreshed = True
        for _attempt in range(2):
            try:
                self.requests_made += 1
                response = request.execute(num_retries=0)
            except HttpError as error:
                if error.status_code == 401 and not refreshed:
                    self.refresh()
                    refreshed = True
                    continue
                if error.status_code == 401:
                    raise AccessRevoked("Google rejected a freshly issued token (401)", reason="unauthorized") from None
                body = _json_or_empty(error.content)
                raise classify_api_error(
                    error.status_code, body, error.resp.get("retry-after"), required_scope=scope
                ) from None
            except google.auth.exceptions.RefreshError as error:
                raise refresh_error(error) from None
            except (TimeoutError, OSError, ssl.SSLError, httplib2.HttpLib2Error) as error:
                raise TransientError(f"network error talking to Google ({type(error).__name__})") from None
            except ValueError as error:
                raise ProviderDataError(f"unreadable response ({type(error).__name__})") from None
            if not isinstance(response, dict):
                raise ProviderDataError("response is not a JSON object")
            return response
        raise AccessRevoked("Google rejected a freshly issued token (401)", reason="unauthorized")


ConnectorFactory = Callable[[Settings, TokenSet, TokenSink], GoogleConnector]
