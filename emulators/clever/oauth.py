"""Clever's OAuth (``/oauth/authorize``, ``/oauth/tokens``) on the shared flow: Basic auth, no PKCE, no refresh."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from emulators.clever.data import (
    TOKENS_PATH,
    CleverState,
    _iso,
    _json,
    _message,
    _oauth_error,
    _SsoToken,
)
from emulators.core import Request, Response
from emulators.oauth import (
    AuthCode,
    OAuthErrors,
    check_client,
    dispatch_grant,
    redeem_code,
    redirect_location,
)

CODE_TTL_SECONDS = 60.0
"""How long a code lives (a test shortens it here, ``emulators.clever.oauth``)."""

_OAUTH_ERRORS: OAuthErrors = {
    "client_unknown": lambda: _oauth_error(401, "invalid_client", "Invalid client credentials"),
    "client_secret": lambda: _oauth_error(401, "invalid_client", "Invalid client credentials"),
    "grant_type_missing": lambda: _oauth_error(400, "unsupported_grant_type", "Unsupported grant type"),
    "grant_type_unsupported": lambda: _oauth_error(400, "unsupported_grant_type", "Unsupported grant type"),
    "code_invalid": lambda: _oauth_error(400, "invalid_grant", "Invalid grant: invalid code"),
    "redirect_mismatch": lambda: _oauth_error(400, "invalid_grant", "Invalid grant: redirect_uri mismatch"),
}
"""Clever's answer to each failed step of the shared flow (its codes carry no PKCE challenge)."""


class CleverOAuth(CleverState):
    """Clever's authorization server: SSO codes and the district-token listing."""

    # ------------------------------------------------------------------------------- OAuth
    def _consenting_user(self) -> str | None:
        if self._consent_user is not None:
            return self._consent_user
        first = next((d for d in self._districts.values() if not d.library), None)
        teachers = [u.id for u in self._users.values() if u.role == "teacher" and first and u.district_id == first.id]
        return teachers[0] if teachers else None

    def _authorize(self, request: Request) -> Response:
        """Auto-approve for the consenting user and redirect with a code (state after it, as Clever orders it)."""
        if request.param("client_id") != self._client_id:
            return _message(400, "invalid client_id")
        if request.param("response_type") != "code":
            return _message(400, "response_type must be code")
        redirect_uri = request.param("redirect_uri")
        if not redirect_uri:
            return _message(400, "missing redirect_uri")
        user_id = self._consenting_user()
        if user_id is None:
            return _message(400, "nobody is there to approve the request")
        code = self._codes.issue(secrets.token_hex(10), AuthCode(user_id, redirect_uri, time.time() + CODE_TTL_SECONDS))
        params = [("code", code)]
        if "state" in request.query:
            params.append(("state", request.param("state")))
        location = redirect_location(redirect_uri, params)
        return Response(
            302, b"Found", [("Location", location), ("Content-Type", "text/plain; charset=utf-8")], user_id=user_id
        )

    def _client_refusal(self, request: Request) -> Response | None:
        """Clever wants the client credentials in HTTP Basic (providers.md 2.1), never in the form."""
        return check_client(request, self._client_id, self._client_secret, _OAUTH_ERRORS, form=False, basic=True)

    def _exchange(self, request: Request) -> Response:
        refusal = self._client_refusal(request)
        if refusal is not None:
            return refusal
        return dispatch_grant(request, {"authorization_code": self._code_grant}, _OAUTH_ERRORS)

    def _code_grant(self, request: Request) -> Response:
        """Codes are single use even when the redirect_uri does not match (``burn_first``); no PKCE, no refresh."""
        entry = redeem_code(request, self._codes, _OAUTH_ERRORS, burn_first=True)
        if isinstance(entry, Response):
            return entry
        token = self._ledger.mint_hex(20)
        self._sso[token] = _SsoToken(entry.user_id)
        return _json(200, {"access_token": token, "token_type": "bearer"}, user_id=entry.user_id)

    def _list_tokens(self, request: Request) -> Response:
        refusal = self._client_refusal(request)
        if refusal is not None:
            return refusal
        if request.param("owner_type") != "district":
            return _oauth_error(400, "invalid_request", "owner_type must be district")
        wanted = request.param("district")
        data = [
            {
                "id": d.token_id,
                "created": _iso(d.token_created),
                "owner": {"type": "district", "id": d.id},
                "access_token": d.token,
                "scopes": [
                    "read:district_admins",
                    "read:school_admins",
                    "read:sections",
                    "read:students",
                    "read:teachers",
                    "read:user_id",
                ],
            }
            for d in self._districts.values()
            if d.connected and d.token is not None and (not wanted or d.id == wanted)
        ]
        self_uri = TOKENS_PATH + "?" + urlencode(sorted((k, v[0]) for k, v in request.query.items()))
        return _json(200, {"data": data, "links": [{"rel": "self", "uri": self_uri}]})
