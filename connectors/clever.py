"""Clever over plain HTTPS (requests, requests-oauthlib for the code exchange), and nothing else.

Two kinds of bearer token reach Clever's data (providers.md 2.1): a district-app token, one per
district connection, which Clever may rotate and which vanishes when the district disconnects; and
a teacher's SSO token, which has no refresh token. This module reads with either, follows
Clever's own ``links`` (never building a cursor), and turns every failure into the taxonomy of
``connectors.base`` through one table, ``classify_api_error``.

Clever offers no field selection, so minimisation happens by choice of endpoint: the worker asks
for sections (whose ``students[]`` ids are all a pseudonym needs) and teachers, never for student
records. No token, response body or personal value ever goes into an exception text.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import requests
from oauthlib.oauth2.rfc6749.errors import MismatchingStateError, OAuth2Error
from requests_oauthlib import OAuth2Session

from connectors import logs
from connectors.answers import json_or_none, rate_reset
from connectors.base import (
    AccessRevoked,
    ChangesUnavailable,
    ConnectorError,
    Masks,
    Page,
    PageBound,
    ProviderDataError,
    RateLimited,
    RawRecord,
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
from connectors.base import RecordUnavailable as RecordUnavailable
from connectors.http import GuardedSession
from connectors.http import http_session as http_session
from connectors.paging import LinkWords, NextLinks
from connectors.refresh import RefreshOnce
from connectors.streaming import ChunkReader, StreamedList
from settings import Settings

API_VERSION = "v3.0"
PAGE_LIMIT = 10_000
"""Clever's largest page (a bigger ``limit`` is answered 413): the fewest requests per sync."""
EVENT_PART_RECORDS = 5_000
"""Events a change page holds (``connectors.streaming`` parts a roster listing by 500 records). Each page is a
fenced write of a dozen statements, a commit and its own cursor, and a page's events are folded by section (a
section moved twice in a page is written once): a 1% change at 100,000 students (3,000 events) was six pages
and 148 statements at 500, two pages at 2,000, and is one. A section event holds a few dozen ids (about 1.8 KB
of JSON): a full part of 5,000 measured 157 MB peak RSS for the whole sync process, 13 MB more than 2,000."""
STREAM_CHUNK_BYTES = 64 * 1024
"""Bytes read off the socket at a time while a roster page is parsed as it arrives."""
DEFAULT_RESET_WAIT_SECONDS = 60.0
"""Clever's rate-limit window is one minute; used when a 429 carries no usable reset header."""
MSG_NOT_IN_SCOPE = "Resource not in token's scopes"
EVENT_RECORD_TYPES: tuple[str, ...] = ("sections", "users")


class EventsUnavailable(ChangesUnavailable):
    """The events stream cannot continue from this cursor: the worker falls back to a full sync.

    ``reason`` is ``disabled`` (the district has not enabled events) or ``expired`` (the cursor fell
    out of Clever's 30-day window).
    """

    kind = "events_unavailable"


class TokenRefused(TransientError):
    """Clever answered 401 to a district token it still lists for the district at ``/oauth/tokens``.

    Clever's disconnect is the token leaving that list (dev.clever.com/docs/onboarding: the list holds
    "every token granted to your application"); a 401 while the same token is listed is a fault on
    Clever's side or ours, so it is retried like any transient fault and, once the retry caps run out,
    the integration is ``failed`` with a reason: tokens and roster kept, nothing purged.
    """

    kind = "token_refused"


MAX_ROTATIONS = 2
"""Fresh district tokens fetched within one request before a 401 is treated as a refusal, not a rotation."""
NEXT_LINK = LinkWords(link="a next link", links="next links", host="Clever's API host")


@dataclass(frozen=True)
class DistrictToken:
    """One row of ``GET /oauth/tokens?owner_type=district``; ``access_token`` must go straight to the vault."""

    district_id: str
    access_token: str
    created: str
    scopes: tuple[str, ...]

    def __repr__(self) -> str:  # never print the token
        return f"DistrictToken(district_id={self.district_id!r}, created={self.created!r})"


# ------------------------------------------------------------------------------------- plumbing
class _OAuthSession(GuardedSession, OAuth2Session):
    """requests-oauthlib's session, guarded: a redirect followed on the token call would re-post the code."""


def _oauth_session(settings: Settings, state: str | None = None) -> OAuth2Session:
    logs.install()  # requests-oauthlib logs the code, the Basic auth header and the token answer at DEBUG
    session = _OAuthSession(settings.clever.client_id, redirect_uri=settings.clever.redirect_uri, state=state)
    session.trust_env = False
    session.verify = settings.tls_verify
    return session


def _message_of(body: Any) -> str:
    """Clever's error text: ``message`` today, ``error`` in older versions (providers.md 2.6)."""
    if isinstance(body, dict):
        for key in ("message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return ""


_RETRIED = Refusal(TransientError, "Clever answered {status}")
STATUS_ERRORS: Mapping[int, Refusal] = {
    # Clever's Data API errors (dev.clever.com/docs/api-errors; providers.md 2.6 and 2.7), by HTTP status.
    # 429 (rate limit, with its reset) and 403 "Resource not in token's scopes" are read in classify_api_error.
    404: Refusal(RecordUnavailable, "record unavailable at Clever (404: unshared, deleted or out of reach)"),
    408: _RETRIED,
    413: Refusal(ProviderDataError, "Clever refused the page size (413)"),
    500: _RETRIED,
    501: Refusal(ProviderDataError, "Clever does not support this request (501)"),
    502: _RETRIED,
    503: _RETRIED,
    504: _RETRIED,
}
"""Any other status (403 of another kind, 400, ...) is ``OTHER_ERROR``: the request itself was wrong."""
OTHER_ERROR = Refusal(ProviderDataError, "Clever answered {status}")


def classify_api_error(status: int, body: Any, headers: Mapping[str, str]) -> ConnectorError:
    """The whole Clever Data API error map at a glance: two answers that carry more than a status, then the table.

    401 is not here: whether it means "re-fetch the rotated district token" or "revoked" depends on
    the token kind, which only the connector knows. Texts are ours, never Clever's body.
    """
    if status == 429:
        return RateLimited(rate_reset(headers, DEFAULT_RESET_WAIT_SECONDS))
    if status == 403 and _message_of(body) == MSG_NOT_IN_SCOPE:
        return ScopeMissing(["district-app token"])
    return STATUS_ERRORS.get(status, OTHER_ERROR)(status=status)


# ------------------------------------------------------------------------------------ OAuth, tokens
def authorization_url(settings: Settings, *, state: str, district_id: str | None = None) -> str:
    """The Clever sign-in URL for a teacher (providers.md 2.1); ``district_id`` skips the district picker."""
    extra = {"district_id": district_id} if district_id else {}
    url, _state = _oauth_session(settings, state).authorization_url(settings.clever.authorize_url, **extra)
    return str(url)


def exchange_code(settings: Settings, *, authorization_response: str, state: str) -> TokenSet:
    """The callback URL -> the teacher's SSO token (Basic client auth; the state is checked).

    Clever issues no refresh token for SSO tokens, so ``refresh_token`` is empty and a later 401
    means the link is over.
    """
    session = _oauth_session(settings, state)
    try:
        token = session.fetch_token(
            settings.clever.token_url,
            authorization_response=authorization_response,
            client_secret=settings.clever.client_secret.get_secret_value(),
            include_client_id=False,
            timeout=settings.http_timeouts,
        )
    except MismatchingStateError:
        raise LinkRefused("the sign-in callback does not belong to this link (state mismatch)") from None
    except OAuth2Error as error:
        if error.status_code is not None and error.status_code >= 500:
            raise TransientError(f"Clever's token endpoint answered {error.status_code}") from None
        raise LinkRefused(f"Clever refused the authorization code ({error.error})") from None
    except (requests.RequestException, ValueError) as error:
        raise TransientError(f"Clever's token endpoint unreachable or unreadable ({type(error).__name__})") from None
    finally:
        session.close()
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderDataError("token response carries no access_token")
    return TokenSet(access_token=access_token, refresh_token="", expiry=None)


def district_tokens(settings: Settings, district_id: str | None = None) -> list[DistrictToken]:
    """The district-app tokens Clever holds for this client (providers.md 2.1), optionally for one district.

    A 401 here means our client credentials are wrong: that is our configuration, never a district's
    revocation, so it is a ``TransientError`` that a human must fix, not an ``AccessRevoked``.
    """
    params = {"owner_type": "district"}
    if district_id:
        params["district"] = district_id
    auth = (settings.clever.client_id, settings.clever.client_secret.get_secret_value())
    with http_session(settings) as session:
        try:
            response = session.get(settings.clever.token_url, params=params, auth=auth, timeout=settings.http_timeouts)
        except requests.RequestException as error:
            raise TransientError(f"Clever's token list unreachable ({type(error).__name__})") from None
    if response.status_code == 429:
        raise RateLimited(rate_reset(response.headers, DEFAULT_RESET_WAIT_SECONDS))
    if response.status_code in (401, 403):
        raise TransientError(f"Clever refused our client credentials ({response.status_code}); check CLEVER_CLIENT_*")
    if response.status_code >= 500:
        raise TransientError(f"Clever's token list answered {response.status_code}")
    body = json_or_none(response)
    if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ProviderDataError(f"Clever's token list answered {response.status_code} with an unexpected body")
    tokens: list[DistrictToken] = []
    for entry in body["data"]:
        owner = entry.get("owner") if isinstance(entry, dict) else None
        if not isinstance(owner, dict) or owner.get("type") != "district":
            continue
        owner_id, access_token = owner.get("id"), entry.get("access_token")
        if not isinstance(owner_id, str) or not isinstance(access_token, str) or not access_token:
            raise ProviderDataError("a district token entry breaks the documented shape")
        if district_id and owner_id != district_id:
            continue
        scopes = entry.get("scopes")
        tokens.append(
            DistrictToken(
                district_id=owner_id,
                access_token=access_token,
                created=str(entry.get("created", "")),
                scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
            )
        )
    return tokens


def district_token(settings: Settings, district_id: str) -> str | None:
    """The district's current app token, or None when the district has not connected (or disconnected) the app."""
    tokens = district_tokens(settings, district_id)
    return tokens[0].access_token if tokens else None


# ------------------------------------------------------------------------------------ the reader
class CleverConnector:
    """Reads for one integration: a district link (``district_id`` set) or a teacher's SSO token.

    A district link answers a 401 by asking ``/oauth/tokens`` for the district's token: a new one
    (Clever rotates them) goes to ``on_token`` for the vault and the call is retried with it; none
    any more is the disconnect, ``AccessRevoked``; the same one still listed is ``TokenRefused``, a
    transient fault, never a revocation. A teacher's SSO token has nothing to refresh: its 401 is final.
    One instance per sync and thread.
    """

    def __init__(
        self,
        settings: Settings,
        access_token: str,
        *,
        district_id: str | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._token = access_token
        self._district_id = district_id
        self._on_token = on_token
        self._session = http_session(settings)
        self.requests_made = 0
        self.before_request: Callable[[], None] = no_check

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> CleverConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- reads
    def me(self) -> RawRecord:
        """The ``data`` object of ``/me`` (who the token acts for; ``mappers.clever.identity`` reads it)."""
        return self._record("/me")

    def userinfo(self) -> RawRecord:
        """``GET /userinfo`` with a sign-in token: the role "in the current login context" (no version, no
        wrapper; dev.clever.com/docs/the-userinfo-endpoint). ``mappers.clever.role_from_userinfo`` reads it."""
        return self._get("/userinfo", None)

    def user(self, user_id: str) -> RawRecord:
        """One user record (a teacher's own, for the display name). 404 is ``RecordUnavailable``."""
        return self._record(f"/users/{user_id}")

    def section(self, section_id: str) -> RawRecord:
        """One section, e.g. to check a record an event named. 404 is ``RecordUnavailable``."""
        return self._record(f"/sections/{section_id}")

    def sections(self) -> Iterator[Page]:
        """Every section the district shares, in pages of up to 10,000 (district token)."""
        yield from self._pages("/sections", {"limit": str(PAGE_LIMIT)}, "sections", None)

    def teacher_sections(self, teacher_id: str) -> Iterator[Page]:
        """One user's sections (a teacher's, or a student's for a restore): paged with a district token, one
        unpaged call with a Library teacher's SSO token."""
        path = f"/users/{teacher_id}/sections"
        if self._district_id is None:
            yield Page(kind="sections", parent_id=teacher_id, records=self._list(f"/{API_VERSION}{path}", None)[0])
            return
        yield from self._pages(path, {"limit": str(PAGE_LIMIT)}, "sections", teacher_id)

    def teachers(self) -> Iterator[Page]:
        """The district's teachers (``role=teacher``): the only user records a district sync needs."""
        yield from self._pages("/users", {"role": "teacher", "limit": str(PAGE_LIMIT)}, "teachers", None)

    def section_users(self, section_id: str, role: str) -> Iterator[Page]:
        """The users of one section by role. Never called for students by the sync: their ids are in the section."""
        path = f"/sections/{section_id}/users"
        if self._district_id is None:
            records = self._list(f"/{API_VERSION}{path}", {"role": role})[0]
            yield Page(kind=f"{role}s", parent_id=section_id, records=records)
            return
        yield from self._pages(path, {"role": role, "limit": str(PAGE_LIMIT)}, f"{role}s", section_id)

    def latest_event_id(self) -> str | None:
        """The newest event id (``ending_before=last&limit=1``): the cursor to record before a full sync."""
        query = {"ending_before": "last", "limit": "1"}
        records = self._list(f"/{API_VERSION}/events", query, events_after=None)[0]
        if not records:
            return None
        event_id = records[-1].get("id") if isinstance(records[-1], Mapping) else None
        if not isinstance(event_id, str):
            raise ProviderDataError("an event carries no id")
        return event_id

    def events(self, cursor: str | None, record_types: Sequence[str] = EVENT_RECORD_TYPES) -> Iterator[Page]:
        """Events after ``cursor`` (an event id; None: the whole 30-day window), page by page.

        Each page's ``cursor`` is its last event id. ``EventsUnavailable`` when events are off for
        the district or the cursor is outside the window: the worker then runs a full sync.
        """
        params: list[tuple[str, str]] = [("limit", str(PAGE_LIMIT))]
        params += [("record_type", kind) for kind in record_types]
        if cursor:
            params.append(("starting_after", cursor))
        uri: str | None = f"/{API_VERSION}/events"
        query: Any = params
        links = self._links("Clever's events listing")

        def page(records: list[Any], continued: bool) -> Page:
            """A part of an events answer, whose cursor is its last event: applied with it, resumed after it."""
            nonlocal cursor
            last = records[-1] if records else None
            last_id = last.get("id") if isinstance(last, Mapping) else None
            if records and not isinstance(last_id, str):
                raise ProviderDataError("an event carries no id")
            cursor = last_id if isinstance(last_id, str) else cursor
            return Page(kind="events", parent_id=None, records=records, cursor=cursor, continued=continued)

        while uri is not None:
            links.next_page()
            following = yield from self._streamed(uri, query, page, events_after=cursor, part=EVENT_PART_RECORDS)
            uri, query = links.check(_next_of(following)), None

    # ------------------------------------------------------------------------------- paging
    def _pages(self, path: str, params: Mapping[str, str], kind: str, parent: str | None) -> Iterator[Page]:
        """A roster listing, each answer read as a stream and handed on in parts (``connectors.streaming``)."""
        uri: str | None = f"/{API_VERSION}{path}"
        query: Any = dict(params)
        links = self._links(f"Clever's {kind} listing")
        while uri is not None:
            links.next_page()
            following = yield from self._streamed(
                uri, query, lambda records, continued: Page(kind, parent, records, continued=continued)
            )
            uri, query = links.check(_next_of(following)), None

    def _links(self, listing: str) -> NextLinks:
        """Clever's ``rel=next`` exactly as given; it must stay on our API host and never repeat."""
        return NextLinks(
            self._settings.clever.api_base, NEXT_LINK, PageBound(self._settings.max_pages, listing), paths=True
        )

    def _streamed(
        self,
        path: str,
        params: Any,
        page: Callable[[list[Any], bool], Page],
        *,
        events_after: str | bool | None = False,
        part: int | None = None,
    ) -> Generator[Page, None, Any]:
        """One list call, read as it arrives, as pages of a few hundred records each; returns its links.

        ``page(records, continued)`` makes each page of ``part`` records at most (``streaming.PART_RECORDS``
        by default; ``continued`` for all but the first part: they cost no request). Malformed items are
        left for the mapper to count. Closing the generator (the worker stopped reading: a revoke fenced
        it) closes the answer unread.
        """
        response = self._response(path, params, events_after=events_after, stream=True)
        listing = StreamedList(ChunkReader(response.iter_content(STREAM_CHUNK_BYTES)))
        continued = False
        try:
            for items in listing.parts(part):  # no enumerate: its reused result tuple would keep the last part
                ready = [page([item.get("data") if isinstance(item, dict) else item for item in items], continued)]
                del items  # the part is the reader's alone while this waits (streaming.StreamedList.parts)
                continued = True
                yield ready.pop()
        except (requests.RequestException, OSError) as error:
            raise TransientError(f"network error reading from Clever ({type(error).__name__})") from None
        finally:
            response.close()
        return listing.kept.get("links")

    def _list(self, path: str, params: Any, *, events_after: str | bool | None = False) -> tuple[list[Any], Any]:
        """One list call: the ``data`` of each item (malformed items are left for the mapper to count) and the links."""
        body = self._get(path, params, events_after=events_after)
        data = body.get("data")
        if not isinstance(data, list):
            raise ProviderDataError("a list response carries no data list")
        return [item.get("data") if isinstance(item, dict) else item for item in data], body.get("links")

    def _record(self, path: str) -> RawRecord:
        body = self._get(f"/{API_VERSION}{path}", None)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderDataError("a record response carries no data object")
        return data

    # ------------------------------------------------------------------------------- HTTP
    def _get(self, path: str, params: Any, *, events_after: str | bool | None = False) -> dict[str, Any]:
        """One GET whose whole body is a JSON object."""
        response = self._response(path, params, events_after=events_after)
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise ProviderDataError("Clever answered 200 with a body that is not a JSON object")
        return body

    def _response(
        self, path: str, params: Any, *, events_after: str | bool | None = False, stream: bool = False
    ) -> requests.Response:
        """One GET answered 200 (its body unread when ``stream``). On a 401 a district link asks
        ``/oauth/tokens`` what stands: no token is the disconnect (revoked), another token a rotation
        (retried with it), the same token a refusal (``TokenRefused``, transient). Every other answer is
        sorted into the taxonomy.

        ``events_after`` is False for data calls; for events calls it is the cursor sent, so that a
        refusal can be told apart: events off for the district, or a cursor outside the window.
        """
        refresh = RefreshOnce(limit=MAX_ROTATIONS if self._district_id is not None else 0)
        while True:
            response = self._send(path, params, stream=stream)
            if response.status_code == 401:
                response.close()  # a streamed answer's connection goes back to the pool unread
                if refresh.again(self._refetch_district_token):
                    continue
                if self._district_id is None:
                    raise AccessRevoked("Clever rejected the teacher's sign-in token (401)", reason="unauthorized")
                raise TokenRefused("Clever refused every fresh district token it listed (401)")
            if response.status_code == 200:
                return response
            body = json_or_none(response)
            if events_after is not False:
                _raise_events_refusal(response.status_code, body, cursor=events_after)
            raise classify_api_error(response.status_code, body, response.headers)

    def _send(self, path: str, params: Any, *, stream: bool = False) -> requests.Response:
        self.before_request()
        self.requests_made += 1
        try:
            return self._session.get(
                self._settings.clever.api_base + path,
                params=params,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=self._settings.http_timeouts,
                stream=stream,
            )
        except requests.RequestException as error:
            raise TransientError(f"network error talking to Clever ({type(error).__name__})") from None

    def _refetch_district_token(self) -> None:
        """After a 401: the district's token as ``/oauth/tokens`` lists it now decides what the 401 meant."""
        assert self._district_id is not None
        token = district_token(self._settings, self._district_id)
        if token is None:
            raise AccessRevoked("the district disconnected the app at Clever", reason="district_disconnected")
        if token == self._token:
            raise TokenRefused("Clever refused the district's token (401) although it still lists it")
        self._token = token
        if self._on_token is not None:
            self._on_token(token)


def _next_of(links: Any) -> Any:
    """The ``uri`` of the ``rel=next`` entry of an answer's ``links`` (providers.md 2.4), unchecked; None: none."""
    if not isinstance(links, list):
        return None
    return next((link.get("uri") for link in links if isinstance(link, dict) and link.get("rel") == "next"), None)


def _raise_events_refusal(status: int, body: Any, *, cursor: str | bool | None) -> None:
    """Events-only refusals ([U] in providers.md 2.5: the exact answers are not documented).

    403 other than a token-scope refusal, or 404, on /events: events are not enabled for the
    district. 400 with a cursor: the cursor is outside the 30-day window. Anything else falls
    through to ``classify_api_error``.
    """
    if (status == 403 and _message_of(body) != MSG_NOT_IN_SCOPE) or status == 404:
        raise EventsUnavailable("events are not enabled for this district", reason="disabled")
    if status == 400 and cursor:
        raise EventsUnavailable("the events cursor is outside Clever's 30-day window", reason="expired")


def revoke_token(settings: Settings, token: str) -> RevokeVerdict:
    """Clever has no token revoke endpoint (providers.md 2.1): a district ends access by disconnecting the
    app in its dashboard, a teacher's SSO token simply expires. Say so rather than claim a revoke."""
    return RevokeVerdict.UNSUPPORTED


# ------------------------------------------------------------------------------------ the protocol
class CleverRoster:
    """``CleverConnector`` behind the worker's connector protocol (``connectors.base.RosterConnector``).

    ``tokens.extra`` says what kind of link this is: ``district_id`` alone is a district link (every
    shared section, then the district's teachers to name them; events as the change feed);
    ``teacher_id`` is a teacher link (that teacher's sections, then the teacher's own record; no
    change feed), read with the district's token when ``district_id`` is set too, else with a
    Library teacher's SSO token. Student records are never requested: sections list their ids.
    """

    def __init__(self, settings: Settings, tokens: TokenSet, on_tokens: TokenSink) -> None:
        if not tokens.access_token:
            raise AccessRevoked("no Clever token stored for this link", reason="no_tokens")
        self._district_id = tokens.extra.get("district_id")
        self._teacher_id = tokens.extra.get("teacher_id")
        if self._district_id is None and self._teacher_id is None:
            raise ProviderDataError("the stored Clever link names neither a district nor a teacher")

        def rotated(token: str) -> None:
            on_tokens(replace(tokens, access_token=token))

        self.reader = CleverConnector(settings, tokens.access_token, district_id=self._district_id, on_token=rotated)

    @property
    def requests_made(self) -> int:
        return self.reader.requests_made

    @property
    def before_request(self) -> Callable[[], None]:
        return self.reader.before_request

    @before_request.setter
    def before_request(self, check: Callable[[], None]) -> None:
        self.reader.before_request = check

    def close(self) -> None:
        self.reader.close()

    def classes(self, masks: Masks) -> Iterator[Page]:
        if self._teacher_id is not None:
            yield from self.reader.teacher_sections(self._teacher_id)
        else:
            yield from self.reader.sections()

    def members(self, class_ids: Sequence[str], masks: Masks) -> Iterator[Page]:
        """Teachers' names: the district's teachers in a few pages, or a teacher link's own record.

        Students need nothing beyond the ids their sections listed, so no student record is asked for.
        """
        if self._teacher_id is None:
            yield from self.reader.teachers()
            return
        try:
            yield Page(kind="teachers", parent_id=None, records=[self.reader.user(self._teacher_id)])
        except RecordUnavailable:
            return  # the teacher's record is out of reach: keep the name we have

    def classes_of(self, user_id: str) -> Iterator[Page]:
        """One user's sections now, each with its whole membership (``/users/{id}/sections``): what a person
        whose id reappeared is enrolled in. Nothing when Clever no longer shares that user (404)."""
        try:
            yield from self.reader.teacher_sections(user_id)
        except RecordUnavailable:
            return

    def change_cursor(self) -> str | None:
        """The newest event id of a district link ("" when there is none yet); None when events are off."""
        if self._teacher_id is not None or self._district_id is None:
            return None
        try:
            return self.reader.latest_event_id() or ""
        except EventsUnavailable:
            return None

    def changes(self, cursor: str) -> Iterator[Page]:
        if self._teacher_id is not None or self._district_id is None:
            raise ChangesUnavailable("a Clever teacher link has no change feed", reason="unsupported")
        for page in self.reader.events(cursor or None):
            ready = [replace(page, cursor=page.cursor or cursor)]
            del page  # the page is the reader's alone while this waits (streaming.StreamedList.parts)
            yield ready.pop()


def connector(settings: Settings, tokens: TokenSet, on_tokens: TokenSink) -> CleverRoster:
    """The provider row's connector factory."""
    return CleverRoster(settings, tokens, on_tokens)
