"""Graph v1.0 Education routes: token checks, permissions, ``$select``, paging, delta and ``$batch``."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from emulators.core import Failure, Json, Request, RequestRecord, Response
from emulators.microsoft.data import (
    _BASIC_USER_PROPS,
    _CLASS_PROPS,
    _DELEGATED_USER_PROPS,
    _ENTITY,
    _ROLE_BLOCK_DELEGATED,
    _USER_PROPS,
    APP_ROLES,
    DEFAULT_PAGE,
    DELEGATED_SCOPES,
    DELTA_TTL,
    MAX_BATCH,
    MAX_PAGE,
    _Access,
    _b64,
    _challenge,
    _graph_error,
    _json,
    _Tenant,
    _unb64,
    _User,
)
from emulators.microsoft.oauth import MicrosoftOAuth


@dataclass
class _DeltaCursor:
    """Where a delta round stands: changes after ``since`` up to ``horizon`` (None: not fixed yet), from
    ``offset``, with the round's ``$select`` and ``$top``."""

    since: int
    offset: int
    select: str
    top: str
    horizon: int | None


class MicrosoftApi(MicrosoftOAuth):
    """The router and Graph."""

    # ------------------------------------------------------------------------------- subclass API
    def _identify(self, request: Request, *, before: bool) -> str | None:
        token = request.bearer()
        access = self._access.get(token) if token else None
        if access is None:
            return None
        return access.user_id or access.tenant_id

    def _failure_response(self, request: Request, failure: Failure) -> Response:
        headers = [("Retry-After", str(failure.retry_after))] if failure.retry_after is not None else []
        if "/oauth2/" in request.path:
            body = {
                "error": "temporarily_unavailable",
                "error_description": "AADSTS90033: injected",
                "error_codes": [90033],
            }
            return _json(failure.status, body, headers)
        codes = {
            401: "InvalidAuthenticationToken",
            403: "AccessDenied",
            429: "TooManyRequests",
            503: "serviceNotAvailable",
            504: "gatewayTimeout",
        }
        code = codes.get(failure.status, "generalException" if failure.status >= 500 else "badRequest")
        return _graph_error(failure.status, code, "injected failure", headers)

    def _error_response(self, status: int, message: str) -> Response:
        return _graph_error(status, "generalException" if status >= 500 else "BadRequest", message)

    def _dispatch(self, request: Request) -> Response:
        response = self._route(request)
        return self._corrupted(request, response) if request.path.startswith("/v1.0/") else response

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["v1.0"]:
            if request.method == "POST" and parts == ["v1.0", "$batch"]:
                return self._batch(request)
            if request.method != "GET":
                return _graph_error(405, "Request_BadRequest", "Only GET is served by this emulator.")
            return self._graph(request, parts[1:])
        if len(parts) >= 2:
            tenant_key, rest = parts[0], parts[1:]
            if rest == ["v2.0", ".well-known", "openid-configuration"] and request.method == "GET":
                return self._openid_configuration(tenant_key)
            if rest == ["oauth2", "v2.0", "authorize"] and request.method == "GET":
                return self._authorize(request, tenant_key)
            if rest == ["oauth2", "v2.0", "token"] and request.method == "POST":
                return self._token(request, tenant_key)
        return _graph_error(404, "UnknownError", "No route.")

    # ------------------------------------------------------------------------------- Graph
    def _auth(self, request: Request) -> _Access | Response:
        token = request.bearer()
        if token is None:
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        access = self._access.get(token)
        if access is None:
            return _graph_error(
                401, "InvalidAuthenticationToken", "CompactToken parsing failed with error code: 80049217"
            )
        if access.expires_at == -1.0:
            # Entra sends claims challenges only to a client that declared cp1 (claims-challenge page);
            # any other client's cut token just fails, and its refresh meets the revocation.
            if access.capable:
                return _challenge(
                    401,
                    "Continuous access evaluation resulted in challenge with result: InteractionRequired "
                    "and code: TokenIssuedBeforeRevocationTimestamp",
                )
            return _graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if time.time() > access.expires_at:
            return _graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if {access.user_id, access.tenant_id} & self._forced_challenges:
            return _challenge(
                401, "Continuous access evaluation resulted in challenge with result: InteractionRequired"
            )
        return access

    def _graph(self, request: Request, parts: list[str]) -> Response:
        access = self._auth(request)
        if isinstance(access, Response):
            return access
        response = self._denial(access) or self._graph_route(request, parts, access)
        response.user_id = access.user_id or access.tenant_id
        return response

    @staticmethod
    def _permission(access: _Access, *, delta: bool = False, app_only: bool = False) -> Response | None:
        """The least permissions of providers.md 3.1: delegated ReadBasic (not for /education/users);
        application Read.All, or ReadBasic.All for delta. Refusals as observed [O]."""
        if access.user_id is not None:
            if app_only:
                return _graph_error(403, "AccessDenied", "Required roles claim values are not provided.")
            if not access.scopes & set(DELEGATED_SCOPES):
                return _graph_error(403, "AccessDenied", "Required scp claim values are not provided.")
            return None
        needed = set(APP_ROLES) if delta else {"EduRoster.Read.All", "EduRoster.ReadWrite.All"}
        if not access.scopes & needed:
            return _graph_error(403, "AccessDenied", "Required roles claim values are not provided.")
        return None

    def _graph_route(self, request: Request, parts: list[str], access: _Access) -> Response:
        tenant_id = access.tenant_id
        refusal = self._education_refusal(tenant_id, parts)
        if refusal is not None:
            return refusal
        classes = {c.id: c for c in self._classes.values() if c.tenant_id == tenant_id and not c.deleted}
        if access.user_id is not None:  # delegated callers see only their own classes
            classes = {k: c for k, c in classes.items() if access.user_id in c.members}
        match parts:
            case ["education", "me"]:
                if access.user_id is None:
                    return _graph_error(
                        400, "BadRequest", "/me request is only valid with delegated authentication flow."
                    )
                denied = self._permission(access)
                return denied or self._one(request, self._visible_user(self._users[access.user_id], access))
            case ["education", "me", "classes"]:
                if access.user_id is None:
                    return _graph_error(
                        400, "BadRequest", "/me request is only valid with delegated authentication flow."
                    )
                return self._permission(access) or self._list(request, [self._class_json(c) for c in classes.values()])
            case ["education", "classes"]:
                return self._permission(access) or self._list(request, [self._class_json(c) for c in classes.values()])
            case ["education", "classes", "delta"]:
                return self._permission(access, delta=True) or self._delta(request, "classes", access)
            case ["education", "users", "delta"]:
                return self._permission(access, delta=True) or self._delta(request, "users", access)
            case ["education", "users"]:
                denied = self._permission(access, app_only=True)
                users = [u for u in self._users.values() if u.tenant_id == tenant_id and not u.deleted]
                return denied or self._list(request, [self._visible_user(u, access) for u in users])
            case ["education", "users", user_id]:
                user = self._users.get(user_id)
                denied = self._permission(access, app_only=True)
                if denied:
                    return denied
                if user is None or user.deleted or user.tenant_id != tenant_id:
                    return _graph_error(404, "Request_ResourceNotFound", "Resource does not exist.")
                return self._one(request, self._visible_user(user, access))
            case ["education", "classes", class_id, *rest] if rest in ([], ["members"], ["teachers"]):
                denied = self._permission(access)
                if denied:
                    return denied
                klass = classes.get(class_id)
                if klass is None:
                    return _graph_error(404, "Request_ResourceNotFound", f"Resource '{class_id}' does not exist.")
                if not rest:
                    return self._one(request, self._class_json(klass))
                ids = klass.members if rest == ["members"] else klass.teachers
                users = [self._users[i] for i in ids if not self._users[i].deleted]
                return self._list(request, [self._visible_user(u, access) for u in users])
        return _graph_error(400, "BadRequest", f"Resource not found for the segment '{parts[-1] if parts else ''}'.")

    # ------------------------------------------------------------------------------- shapes
    def _visible_user(self, user: _User, access: _Access) -> Json:
        """What the token's permission lets Graph return of a user (providers.md 3.1)."""
        full = self._user_json(user)
        if access.user_id is not None:
            visible = {k: v for k, v in full.items() if k in _DELEGATED_USER_PROPS}
            for block, keys in _ROLE_BLOCK_DELEGATED.items():
                if isinstance(visible.get(block), dict):
                    visible[block] = {k: visible[block][k] for k in keys}
            return visible
        if access.scopes & {"EduRoster.Read.All", "EduRoster.ReadWrite.All"}:
            return full
        return {k: v for k, v in full.items() if k in _BASIC_USER_PROPS}

    @staticmethod
    def _selected(request: Request, record: Json) -> Json | Response:
        """``$select``: a comma list of top-level properties; an unknown one is a 400, as in Graph."""
        raw = request.param("$select")
        if not raw:
            return record
        names = [n.strip() for n in raw.split(",") if n.strip()]
        return {n: record[n] for n in names if n in record}

    @staticmethod
    def _bad_select(request: Request, kind: str) -> Response | None:
        raw = request.param("$select")
        known = _USER_PROPS if kind == "users" else _CLASS_PROPS
        for name in (n.strip() for n in raw.split(",") if n.strip()):
            if name not in known:
                return _graph_error(
                    400,
                    "BadRequest",
                    f"Could not find a property named '{name}' on type 'microsoft.graph.{_ENTITY[kind]}'.",
                )
        return None

    def _one(self, request: Request, record: Json) -> Response:
        kind = "users" if "primaryRole" in record else "classes"
        bad = self._bad_select(request, kind)
        if bad:
            return bad
        selected = self._selected(request, record)
        assert isinstance(selected, dict)
        context = f"{self.graph_endpoint}/$metadata#education/{kind}/$entity"
        return _json(200, {"@odata.context": context, **selected})

    def _list(self, request: Request, records: list[Json]) -> Response:
        """One page of a collection: ``$top`` (default 100, clamped to 999), ``$skiptoken`` from our own
        absolute ``@odata.nextLink``."""
        kind = (
            "users"
            if "/members" in request.path or "/teachers" in request.path or "users" in request.path
            else "classes"
        )
        bad = self._bad_select(request, kind)
        if bad:
            return bad
        offset = 0
        skiptoken = request.param("$skiptoken")
        if skiptoken:
            state = _unb64(skiptoken)
            if state is None or not isinstance(state.get("o"), int):
                return _graph_error(400, "BadRequest", "The skip token is invalid.")
            offset = int(state["o"])
        top = self._top(request)
        if isinstance(top, Response):
            return top
        page = records[offset : offset + top]
        body: Json = {
            "@odata.context": self._collection_context(kind),
            "value": [self._selected(request, r) for r in page],
        }
        if offset + top < len(records):
            kept = [(k, v) for k, vs in request.query.items() if k != "$skiptoken" for v in vs]
            kept.append(("$skiptoken", _b64({"o": offset + top})))
            body["@odata.nextLink"] = f"{self.base_url}{request.path}?{urlencode(kept, safe='$,')}"
        return _json(200, body)

    @staticmethod
    def _top(request: Request) -> int | Response:
        raw = request.param("$top")
        if not raw:
            return DEFAULT_PAGE
        try:
            top = int(raw)
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid value for $top.")
        if top < 1:
            return _graph_error(400, "BadRequest", "Invalid value for $top.")
        return min(top, MAX_PAGE)

    def _collection_context(self, kind: str) -> str:
        return f"{self.graph_endpoint}/$metadata#Collection(microsoft.graph.{_ENTITY[kind]})"

    # ------------------------------------------------------------------------------- delta
    def _delta(self, request: Request, kind: str, access: _Access) -> Response:
        """Delta rounds: pages linked by ``@odata.nextLink``, the last with ``@odata.deltaLink``.

        A token remembers the change counter it was issued at, its ``$select`` and the time it was
        issued; one older than 7 days, or issued before ``expire_delta_tokens``, is answered 400
        ``syncStateNotFound`` (or 410 ``resyncRequired`` with a ``Location``). Class delta reports a
        class whose membership changed, with class properties only ([U]: the docs say class delta
        covers membership changes, but show no ``members@delta``). Deleted classes are never reported;
        deleted users only with ``delta_reports_removed`` ([U], providers.md 3.3).
        """
        tenant = self._tenants[access.tenant_id]
        cursor = self._delta_cursor(request, tenant, kind)
        if isinstance(cursor, Response):
            return cursor
        bad = self._bad_select(Request("GET", request.path, {"$select": [cursor.select]}, {}, {}), kind)
        if bad:
            return bad
        if cursor.horizon is None:  # a new round: what changed up to now, and nothing later, is in it
            cursor.horizon = self._peek()
        changed = self._delta_changes(tenant, kind, access, cursor.since, cursor.horizon)
        return self._delta_page(request, tenant, kind, changed, cursor)

    def _delta_cursor(self, request: Request, tenant: _Tenant, kind: str) -> _DeltaCursor | Response:
        """Where a round stands: from its ``$deltatoken``/``$skiptoken`` (refused when foreign or expired),
        or a first round from the request's own ``$select`` and ``$top``."""
        raw_token = request.param("$deltatoken") or request.param("$skiptoken")
        if not raw_token:
            return _DeltaCursor(0, 0, request.param("$select"), request.param("$top"), None)
        state = _unb64(raw_token)
        if state is None or state.get("t") != tenant.id or state.get("k") != kind:
            return _graph_error(400, "BadRequest", "The delta token is invalid.")
        issued = float(state.get("i", 0))
        if issued < tenant.delta_epoch or time.time() - issued > DELTA_TTL.total_seconds():
            return self._delta_expired(tenant, kind)
        horizon = int(state["h"]) if "h" in state else None
        since, offset = int(state.get("s", 0)), int(state.get("o", 0))
        return _DeltaCursor(since, offset, str(state.get("sel", "")), str(state.get("top", "")), horizon)

    def _delta_expired(self, tenant: _Tenant, kind: str) -> Response:
        """400 ``syncStateNotFound``, or 410 ``resyncRequired`` with a fresh start in ``Location``."""
        if tenant.delta_expiry_status == 410:
            location = f"{self.graph_endpoint}/education/{kind}/delta?$deltatoken="
            return _graph_error(410, "resyncRequired", "Resync required.", [("Location", location)])
        return _graph_error(
            400,
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        )

    def _delta_changes(self, tenant: _Tenant, kind: str, access: _Access, since: int, horizon: int) -> list[Json]:
        """The tenant's records changed in ``(since, horizon]``, removals only where the tenant reports them."""
        changed: list[Json] = []
        if kind == "classes":
            for klass in self._classes.values():
                if klass.tenant_id != tenant.id or not since < klass.changed <= horizon:
                    continue
                if not klass.deleted:
                    changed.append(self._class_json(klass))
                elif self._delta_reports_removed_classes and since > 0:
                    changed.append({"id": klass.id, "@removed": {"reason": "deleted"}})
            return changed
        for user in self._users.values():
            if user.tenant_id != tenant.id or not since < user.changed <= horizon:
                continue
            if user.deleted:
                if self._delta_reports_removed and since > 0:
                    changed.append({"id": user.id, "@removed": {"reason": "deleted"}})
                continue
            changed.append(self._visible_user(user, access))
        return changed

    def _delta_page(
        self, request: Request, tenant: _Tenant, kind: str, changed: list[Json], cursor: _DeltaCursor
    ) -> Response:
        """One page of the round, ``$select`` applied, linked to the next page or to the next round."""
        top, select, since, offset = cursor.top, cursor.select, cursor.since, cursor.offset
        try:
            size = min(max(int(top), 1), MAX_PAGE) if top else DEFAULT_PAGE
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid value for $top.")
        page = changed[offset : offset + size]
        fake = Request("GET", request.path, {"$select": [select]} if select else {}, {}, {})
        values = [r if "@removed" in r else self._selected(fake, r) for r in page]
        base: Json = {"t": tenant.id, "k": kind, "sel": select, "top": top}
        body: Json = {
            "@odata.context": self._collection_context(kind),
            "value": values,
        }
        if offset + size < len(changed):
            token = _b64({**base, "s": since, "o": offset + size, "h": cursor.horizon, "i": time.time()})
            body["@odata.nextLink"] = f"{self.graph_endpoint}/education/{kind}/delta?$skiptoken={token}"
        else:
            token = _b64({**base, "s": cursor.horizon, "o": 0, "i": time.time()})
            body["@odata.deltaLink"] = f"{self.graph_endpoint}/education/{kind}/delta?$deltatoken={token}"
        return _json(200, body)

    def _peek(self) -> int:
        """A fresh change counter value: every change so far is at or below it, every later one above."""
        return self._tick()

    # ------------------------------------------------------------------------------- $batch
    def _batch(self, request: Request) -> Response:
        """JSON batching (up to 20 GETs); each sub-request is authorised, logged and failure-injected on its own,
        so a throttled sub-request comes back 429 with its own Retry-After while its siblings succeed."""
        try:
            payload = json.loads(request.body or b"null")
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid batch payload format.")
        items = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return _graph_error(400, "BadRequest", "Invalid batch payload format.")
        if len(items) > MAX_BATCH:
            return _graph_error(400, "BadRequest", f"Number of batch requests exceeds the limit of {MAX_BATCH}.")
        responses: list[Json] = []
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("id"), str)
                or not isinstance(item.get("url"), str)
            ):
                return _graph_error(400, "BadRequest", "Invalid batch payload format.")
            url = urlsplit(item["url"])
            path = "/v1.0/" + url.path.lstrip("/")
            sub = Request(
                str(item.get("method", "GET")).upper(),
                path,
                parse_qs(url.query, keep_blank_values=True),
                {},
                request.headers,
            )
            result = self._injected_failure(sub)
            if result is None:
                if sub.method != "GET":
                    result = _graph_error(405, "Request_BadRequest", "Only GET is served by this emulator.")
                else:
                    result = self._graph(sub, [p for p in path.split("/") if p][1:])
            result = self._corrupted(sub, result)
            user_id = result.user_id if result.user_id is not None else self._identify(sub, before=False)
            self._log.append(
                RequestRecord(sub.method, sub.path, {k: list(v) for k, v in sub.query.items()}, user_id, result.status)
            )
            headers = {name: value for name, value in result.headers}
            try:
                sub_body: Any = json.loads(result.body or b"null")
            except ValueError:  # Graph hands a non-JSON sub-response body back base64-encoded
                sub_body = base64.b64encode(result.body).decode()
            responses.append({"id": item["id"], "status": result.status, "headers": headers, "body": sub_body})
        responses.reverse()  # Graph answers sub-requests in any order; clients must match them by id
        return _json(200, {"responses": responses}, user_id=self._identify(request, before=False))
