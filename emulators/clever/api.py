"""Clever's Data API routes: token checks, rate limit, SSO and district scopes, paging."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

from emulators.clever.data import (
    _JSON_TYPE,
    _PAGING_PARAMS,
    API_VERSIONS,
    AUTHORIZE_PATH,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MSG_NOT_IN_SCOPE,
    TOKENS_PATH,
    USERINFO_PATH,
    _cannot,
    _CleverDistrict,
    _CleverUser,
    _json,
    _message,
    _oauth_error,
    _Window,
)
from emulators.clever.oauth import CleverOAuth
from emulators.core import Failure, Json, Request, Response, json_body


class CleverApi(CleverOAuth):
    """The router and the Data API."""

    # ------------------------------------------------------------------------------- core hooks
    def _error_response(self, status: int, message: str) -> Response:
        return _message(status, message)

    def _failure_response(self, request: Request, failure: Failure) -> Response:
        """429 is answered like Clever's rate limiter: empty body, ``X-RateLimit-*`` headers, no Retry-After;
        ``retry_after`` (default: the end of the minute) sets ``X-RateLimit-Reset``."""
        if failure.status == 429:
            reset = int(time.time()) + (
                failure.retry_after if failure.retry_after is not None else 60 - int(time.time()) % 60
            )
            headers = [
                ("X-Ratelimit-Bucket", "bearer"),
                ("X-Ratelimit-Limit", str(self._rate_limit)),
                ("X-Ratelimit-Remaining", "0"),
                ("X-Ratelimit-Reset", str(reset)),
            ]
            return Response(429, b"", headers)
        if request.path.startswith("/oauth/"):
            return _oauth_error(
                failure.status, "server_error" if failure.status >= 500 else "invalid_request", "injected failure"
            )
        return _message(failure.status, "Internal Error" if failure.status >= 500 else "injected failure")

    def _identify(self, request: Request, *, before: bool) -> str | None:
        if request.path == AUTHORIZE_PATH and before:
            return self._consenting_user()
        if request.path == TOKENS_PATH:
            return self._codes.owner(request.form_value("code")) or (request.param("district") or None)
        token = request.bearer()
        if token is None:
            return None
        sso = self._sso.get(token)
        if sso is not None:
            return sso.user_id
        district = next((d for d in self._districts.values() if d.token == token), None)
        return district.id if district else self._retired.get(token)

    def _dispatch(self, request: Request) -> Response:
        if request.path == AUTHORIZE_PATH and request.method == "GET":
            return self._authorize(request)
        if request.path == TOKENS_PATH and request.method == "POST":
            return self._exchange(request)
        if request.path == TOKENS_PATH and request.method == "GET":
            return self._list_tokens(request)
        if request.path == USERINFO_PATH and request.method == "GET":
            return self._userinfo(request)
        parts = [p for p in request.path.split("/") if p]
        if parts and parts[0] in API_VERSIONS and request.method == "GET":
            return self._api(request, parts[0], parts[1:])
        return _cannot(request.method, request.path)

    # ------------------------------------------------------------------------------- API
    def _rate_headers(self, token: str) -> tuple[bool, list[tuple[str, str]]]:
        """Fixed one-minute window per bearer token; True when this request is over the limit."""
        now = time.time()
        minute = int(now // 60)
        window = self._windows.get(token)
        if window is None or window.minute != minute:
            window = self._windows[token] = _Window(minute, 0)
        window.used += 1
        headers = [
            ("X-Ratelimit-Bucket", "bearer"),
            ("X-Ratelimit-Limit", str(self._rate_limit)),
            ("X-Ratelimit-Remaining", str(max(0, self._rate_limit - window.used))),
            ("X-Ratelimit-Reset", str((minute + 1) * 60)),
        ]
        return window.used > self._rate_limit, headers

    def _api(self, request: Request, version: str, parts: list[str]) -> Response:
        token = request.bearer()
        if token is None:
            return _message(401, "Unauthorized")
        sso = self._sso.get(token)
        district = next((d for d in self._districts.values() if d.token == token and d.connected), None)
        if (sso is None or sso.revoked) and (district is None or district.refusing):
            return _message(401, "Unauthorized")
        over, headers = self._rate_headers(token)
        if over:
            return Response(429, b"", headers)
        if sso is not None and not sso.revoked:
            result = self._sso_api(request, version, parts, self._users[sso.user_id])
            user_id: str | None = sso.user_id
        else:
            assert district is not None
            result = self._district_api(request, version, parts, district)
            user_id = district.id
        result.headers.extend(headers)
        result.user_id = user_id
        return result

    def _sso_api(self, request: Request, version: str, parts: list[str], user: _CleverUser) -> Response:
        """An SSO token reaches /me, the user's own record, school and district (providers.md 2.1);
        a Library teacher's also reads their own sections and those sections' users, never paged."""
        district = self._district_of(user.school_id)
        if parts == ["me"]:
            return self._me(user)
        if parts == ["users", user.id]:
            return self._one(version, "users", self._user_json(user, version))
        if parts == ["schools", user.school_id]:
            return self._one(version, "schools", self._school_json(district))
        if not district.library and parts == ["districts", district.id]:
            return self._one(version, "districts", self._district_json(district))
        own = [s for s in self._sections.values() if s.shared and user.id in s.teachers]
        if district.library and len(parts) >= 2:
            if any(name in request.query for name in _PAGING_PARAMS):
                return _message(400, "Paging parameters are not supported with user tokens")
            if parts == ["users", user.id, "sections"]:
                return self._unpaged(version, "sections", [self._section_json(s, version) for s in own])
            section = next((s for s in own if len(parts) >= 2 and parts[:2] == ["sections", s.id]), None)
            if section is not None and parts[2:] == []:
                return self._one(version, "sections", self._section_json(section, version))
            if section is not None and parts[2:] == ["users"]:
                role = request.param("role")
                ids = [*section.teachers, *section.students]
                members = [
                    self._users[i] for i in ids if (not role or self._users[i].role == role) and self._users[i].shared
                ]
                return self._unpaged(version, "users", [self._user_json(u, version) for u in members])
        return _message(403, MSG_NOT_IN_SCOPE)

    def _me(self, user: _CleverUser) -> Response:
        """/me as Clever shows it: a district teacher as a live Instant Login recording shows it
        (``type`` the role, ``district`` set, ``authorized_by`` district); a Library sign-in as the v3.0
        Library page documents it (dev.clever.com/docs/classroom-rostering): ``{"id": ..., "type": "user"}``
        and no district, the role being told by ``/userinfo`` alone."""
        links = [{"rel": "self", "uri": "/me"}, {"rel": "canonical", "uri": f"/v3.0/users/{user.id}"}]
        if user.district_id is None:
            return _json(200, {"data": {"id": user.id, "type": "user"}, "links": links})
        links.append({"rel": "district", "uri": f"/v3.0/districts/{user.district_id}"})
        data = {"id": user.id, "district": user.district_id, "type": user.role, "authorized_by": "district"}
        return _json(200, {"type": "user", "data": data, "links": links})

    def _userinfo(self, request: Request) -> Response:
        """``GET /userinfo`` with an SSO token (dev.clever.com/docs/the-userinfo-endpoint): the user's role in
        this login (``user_type``), the district for a district-shared user; no version prefix, no wrapper.
        A Library sign-in carries no district ([U]: the page's sample is a district teacher)."""
        token = request.bearer()
        sso = self._sso.get(token) if token is not None else None
        if sso is None or sso.revoked:
            return _message(401, "Unauthorized")
        user = self._users[sso.user_id]
        body: Json = {
            "sub": user.id,
            "user_id": user.id,
            "multi_role_user_id": user.id,
            "user_type": user.role,
            "email": user.person.email,
            "name": self._name(user),
            "given_name": user.person.given_name,
            "family_name": user.person.family_name,
            "schools": [user.school_id],
            "email_verified": False,
            "authorized_by": "district" if user.district_id is not None else "teacher",
        }
        if user.district_id is not None:
            body |= {"district_id": user.district_id, "district": user.district_id}
        return _json(200, body, user_id=user.id)

    def _one(self, version: str, collection: str, record: Json) -> Response:
        uri = f"/{version}/{collection}/{record['id']}"
        return _json(200, {"data": record, "links": [{"rel": "self", "uri": uri}]})

    def _unpaged(self, version: str, collection: str, records: list[Json]) -> Response:
        return _json(
            200, {"data": [{"data": r, "uri": f"/{version}/{collection}/{r['id']}"} for r in records], "links": []}
        )

    def _district_api(self, request: Request, version: str, parts: list[str], district: _CleverDistrict) -> Response:
        if parts == ["me"]:
            body = {
                "type": "district",
                "data": {"id": district.id, "type": "district"},
                "links": [{"rel": "self", "uri": "/me"}, {"rel": "canonical", "uri": f"/v3.0/districts/{district.id}"}],
            }
            return _json(200, body)
        if parts[:1] == ["events"]:  # before the district's users are gathered: an events page names none of them
            return self._events_api(request, version, parts, district)
        sections = {s.id: s for s in self._sections.values() if s.district_id == district.id and s.shared}
        users = {u.id: u for u in self._users.values() if u.district_id == district.id and u.shared}
        role = request.param("role")
        if role and role not in ("student", "teacher", "staff", "district_admin", "contact"):
            return _message(400, f"invalid role {role}")

        def user_list(ids: Iterable[str]) -> list[Json]:
            chosen = [users[i] for i in ids if i in users and (not role or users[i].role == role)]
            return [self._user_json(u, version) for u in chosen]

        match parts:
            case ["districts"]:
                return self._page(request, version, "districts", [self._district_json(district)])
            case ["districts", district_id] if district_id == district.id:
                return self._one(version, "districts", self._district_json(district))
            case ["schools"]:
                return self._page(request, version, "schools", [self._school_json(district)])
            case ["schools", school_id] if school_id == district.school_id:
                return self._one(version, "schools", self._school_json(district))
            case ["sections"]:
                return self._page(
                    request, version, "sections", [self._section_json(s, version) for s in sections.values()]
                )
            case ["sections", section_id] if section_id in sections:
                return self._one(version, "sections", self._section_json(sections[section_id], version))
            case ["sections", section_id, "users"] if section_id in sections:
                section = sections[section_id]
                return self._page(request, version, "users", user_list([*section.teachers, *section.students]))
            case ["users"]:
                return self._page(request, version, "users", user_list(users))
            case ["users", user_id] if user_id in users:
                return self._one(version, "users", self._user_json(users[user_id], version))
            case ["users", user_id, "sections"] if user_id in users:
                own = [
                    self._section_json(s, version)
                    for s in sections.values()
                    if user_id in s.teachers or user_id in s.students
                ]
                return self._page(request, version, "sections", own)
            case [("districts" | "schools" | "sections" | "users"), *_]:
                pass
            case _:
                return _cannot(request.method, request.path)
        return _message(404, "Resource not found")

    def _events_api(self, request: Request, version: str, parts: list[str], district: _CleverDistrict) -> Response:
        """``/events`` and ``/events/{id}``. Apart from the other routes, which first gather the district's shared
        users and sections (100,000 users at the bench's scale: that took longer than building the page itself,
        as no provider's indexed store would)."""
        match parts:
            case ["events"]:
                return self._events(request, version, district)
            case ["events", event_id]:
                event = next((e for e in district.events if e.id == event_id), None)
                if event is not None and district.events_enabled:
                    return self._one(version, "events", self._event_json(event))
            case _:
                return _cannot(request.method, request.path)
        return _message(404, "Resource not found")

    def _events(self, request: Request, version: str, district: _CleverDistrict) -> Response:
        """Events need the district to have enabled them ([U] status: 403 here); a ``starting_after`` that
        fell out of the 30-day window is answered 400 ([U]: providers.md names no exact error)."""
        if not district.events_enabled:
            return _message(403, "Events are not enabled for this district")
        after = request.param("starting_after")
        if after and after not in {e.id for e in district.events}:
            return _message(400, "starting_after is not an event in the 30-day window")
        types = set(request.query.get("record_type", []))
        chosen = {e.id: e.encoded for e in district.events if not types or e.type.split(".", 1)[0] in types}
        return self._page(request, version, "events", [{"id": event_id} for event_id in chosen], chosen)

    def _page(
        self,
        request: Request,
        version: str,
        collection: str,
        records: list[Json],
        encoded: Mapping[str, bytes] | None = None,
    ) -> Response:
        """Clever paging: ascending ids, ``limit`` (default 100, above 10,000 -> 413), ``starting_after``,
        ``ending_before`` (``last`` meaning the newest), relative ``self``/``prev``/``next`` links.

        ``encoded``: each record's JSON by id, written once (events: ``_Event.encoded``), ``records`` then
        only their ids; the page joins those bytes instead of encoding the records again at every request.
        """
        paged = self._paged(request, records)
        if isinstance(paged, Response):
            return paged
        page, links = paged
        path = f"/{version}/{collection}"
        if encoded is None:
            return _json(200, {"data": [{"data": r, "uri": f"{path}/{r['id']}"} for r in page], "links": links})
        items = [b'{"data":' + encoded[r["id"]] + b',"uri":' + json_body(f"{path}/{r['id']}") + b"}" for r in page]
        body = b'{"data":[' + b",".join(items) + b'],"links":' + json_body(links) + b"}"
        return Response(200, body, [("Content-Type", _JSON_TYPE)])

    def _paged(self, request: Request, records: list[Json]) -> Response | tuple[list[Json], list[Json]]:
        """The records of the page asked for and its links; or the answer to a paging mistake."""
        raw_limit = request.param("limit")
        try:
            limit = int(raw_limit) if raw_limit else DEFAULT_LIMIT
        except ValueError:
            return _message(400, "limit must be an integer")
        if limit > MAX_LIMIT:
            return _message(413, f"limit must be at most {MAX_LIMIT}")
        if limit < 1:
            return _message(400, "limit must be positive")
        ordered = sorted(records, key=lambda r: str(r["id"]))
        after, before = request.param("starting_after"), request.param("ending_before")
        if after:
            ordered = [r for r in ordered if str(r["id"]) > after]
            page = ordered[:limit]
        elif before:
            if before != "last":
                ordered = [r for r in ordered if str(r["id"]) < before]
            page = ordered[-limit:]
        else:
            page = ordered[:limit]
        kept = [(k, v) for k, vs in request.query.items() if k not in ("starting_after", "ending_before") for v in vs]

        def uri(extra: list[tuple[str, str]]) -> str:
            """prev/next continue the listing asked for: a nested list (``/sections/{id}/users``) pages itself."""
            query = urlencode([*kept, *extra])
            return f"{request.path}?{query}" if query else request.path

        links = [
            {
                "rel": "self",
                "uri": request.path
                + ("?" + urlencode([(k, v) for k, vs in request.query.items() for v in vs]) if request.query else ""),
            }
        ]
        all_ids = [str(r["id"]) for r in sorted(records, key=lambda r: str(r["id"]))]
        if page and all_ids and str(page[0]["id"]) > all_ids[0]:
            links.append({"rel": "prev", "uri": uri([("ending_before", str(page[0]["id"]))])})
        if page and str(page[-1]["id"]) < all_ids[-1]:
            links.append({"rel": "next", "uri": uri([("starting_after", str(page[-1]["id"]))])})
        return page, links
