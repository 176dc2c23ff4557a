"""Google's OAuth 2.0 endpoints (``/o/oauth2/v2/auth``, ``/token``, ``/revoke``) on the shared flow."""

from __future__ import annotations

import secrets
import time

from emulators.core import Json, Request, Response, json_body
from emulators.google.data import GoogleState, _AccessToken
from emulators.google.errors import (
    _CODE_TTL,
    _JSON_TYPE,
    _NO_STORE,
    _oauth_error,
    _page_html,
)
from emulators.google.scopes import (
    normalize_scope,
)
from emulators.oauth import (
    AuthCode,
    Grant,
    OAuthErrors,
    check_client,
    dispatch_grant,
    redeem_code,
    redirect_location,
    refresh_grant,
    revoke_token,
)

_Request = Request
_Response = Response
_json_body = json_body


_OAUTH_ERRORS: OAuthErrors = {
    "client_unknown": lambda: _oauth_error(401, "invalid_client", "The OAuth client was not found."),
    "client_secret": lambda: _oauth_error(401, "invalid_client", "Unauthorized"),
    "grant_type_missing": lambda: _oauth_error(400, "invalid_request", "Missing required parameter: grant_type"),
    "code_missing": lambda: _oauth_error(400, "invalid_request", "Missing required parameter: code"),
    "code_invalid": lambda: _oauth_error(400, "invalid_grant", "Malformed auth code."),
    "redirect_mismatch": lambda: _oauth_error(400, "redirect_uri_mismatch", "Bad Request"),
    "verifier_missing": lambda: _oauth_error(400, "invalid_grant", "Missing code verifier."),
    "verifier_mismatch": lambda: _oauth_error(400, "invalid_grant", "Invalid code verifier."),
    "refresh_missing": lambda: _oauth_error(400, "invalid_request", "Missing required parameter: refresh_token"),
    "refresh_unknown": lambda: _oauth_error(400, "invalid_grant", "Token has been expired or revoked."),
    "refresh_spent": lambda: _oauth_error(400, "invalid_grant", "Token has been expired or revoked."),
    "revoke_missing": lambda: _oauth_error(400, "invalid_request", "Missing required parameter: token"),
    "revoke_invalid": lambda: _oauth_error(400, "invalid_token", "Token expired or revoked"),
}
"""Google's answer to each failed step of the shared flow (``grant_type_unsupported`` names the type, below)."""


def _revoked(grant: Grant) -> Response:
    """Google's answer to a successful revocation: 200 with an empty HTML body."""
    return Response(200, b"", [("Content-Type", "text/html; charset=utf-8")], user_id=grant.user_id)


class GoogleOAuth(GoogleState):
    """Google's authorization server: the shared flow with Google's errors, token shapes and revocation."""

    def _authorize(self, request: _Request) -> _Response:
        """Auto-approve for the consenting user and redirect with a code (state first, as Google orders it)."""
        refusal = self._authorize_refusal(request)
        if refusal is not None:
            return refusal
        requested = tuple(dict.fromkeys(normalize_scope(s) for s in request.param("scope").split()))
        challenge = request.param("code_challenge")
        user_id = self._consenting_user(request.param("login_hint"))
        if user_id is None:
            return _page_html(400, "access_denied", "Nobody is there to approve the request.")
        granted = self._granted_override if self._granted_override is not None else requested
        granted = self._effective_scopes(user_id, granted)
        entry = AuthCode(
            user_id=user_id,
            redirect_uri=request.param("redirect_uri"),
            expires_at=time.time() + _CODE_TTL,
            scopes=granted,
            challenge=challenge,
            challenge_method=request.param("code_challenge_method") or ("plain" if challenge else ""),
            offline=request.param("access_type") == "offline",
        )
        code = self._codes.issue("4/0" + secrets.token_urlsafe(40), entry)
        params: list[tuple[str, str]] = []
        if "state" in request.query:
            params.append(("state", request.param("state")))
        params += [("code", code), ("scope", " ".join(granted))]
        return _Response(
            302,
            b"<HTML><HEAD><TITLE>Moved Temporarily</TITLE></HEAD><BODY>Moved Temporarily</BODY></HTML>",
            [("Location", redirect_location(entry.redirect_uri, params)), ("Content-Type", "text/html; charset=UTF-8")],
            user_id=user_id,
        )

    def _authorize_refusal(self, request: _Request) -> _Response | None:
        """The HTML page Google shows instead of a consent screen when the request is malformed."""
        if request.param("client_id") != self._client_id:
            return _page_html(400, "invalid_client", "The OAuth client was not found.")
        if not request.param("redirect_uri"):
            return _page_html(400, "invalid_request", "Missing required parameter: redirect_uri")
        if request.param("response_type") != "code":
            return _page_html(400, "unsupported_response_type", "Only response_type=code is supported.")
        if not request.param("scope").split():
            return _page_html(400, "invalid_request", "Missing required parameter: scope")
        challenge = request.param("code_challenge")
        method = request.param("code_challenge_method") or ("plain" if challenge else "")
        if challenge and method not in ("S256", "plain"):
            return _page_html(400, "invalid_request", "Invalid code_challenge_method.")
        return None

    def _consenting_user(self, login_hint: str) -> str | None:
        if login_hint:
            hinted = self._district.find_person(login_hint)
            if hinted is not None:
                return hinted.id
        if self._consent_user is not None:
            return self._consent_user
        teachers = self._district.teacher_ids
        if not teachers:
            return None
        user_id = teachers[self._round_robin % len(teachers)]
        self._round_robin += 1
        return user_id

    def _mint_access(self, grant: Grant, scopes: tuple[str, ...]) -> _AccessToken:
        token = self._ledger.mint("ya29.a0", 96)
        access = _AccessToken(token, grant, scopes, time.time() + self._access_token_ttl)
        self._access[token] = access
        return access

    def _token(self, request: _Request) -> _Response:
        """Client credentials in the form or in HTTP Basic, then the grant (both per the shared flow)."""
        refusal = check_client(request, self._client_id, self._client_secret, _OAUTH_ERRORS, form=True, basic=True)
        if refusal is not None:
            return refusal
        handlers = {"authorization_code": self._exchange_code, "refresh_token": self._refresh_grant}
        errors = {
            **_OAUTH_ERRORS,
            "grant_type_unsupported": lambda: _oauth_error(
                400, "unsupported_grant_type", f"Invalid grant_type: {request.form_value('grant_type')}"
            ),
        }
        return dispatch_grant(request, handlers, errors)

    def _token_body(self, grant: Grant, access: _AccessToken, refresh_token: str | None) -> _Response:
        body: Json = {"access_token": access.token, "expires_in": self._access_token_ttl}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        body["scope"] = " ".join(self._effective_scopes(grant.user_id, access.scopes))
        body["token_type"] = "Bearer"
        return _Response(
            200,
            _json_body(body, pretty=True),
            [("Content-Type", _JSON_TYPE), ("Cache-Control", _NO_STORE), ("Pragma", "no-cache")],
            user_id=grant.user_id,
        )

    def _exchange_code(self, request: _Request) -> _Response:
        entry = redeem_code(request, self._codes, _OAUTH_ERRORS, burn_first=False, require_code=True)
        if isinstance(entry, _Response):
            return entry
        grant = self._grants.open(entry.user_id, entry.scopes, offline=entry.offline)
        access = self._mint_access(grant, grant.scopes)
        refresh_token = self._grants.rotate(grant, "1//0", 72) if grant.offline else None
        return self._token_body(grant, access, refresh_token)

    def _refresh_grant(self, request: _Request) -> _Response:
        grant = refresh_grant(request, self._grants, _OAUTH_ERRORS)
        if isinstance(grant, _Response):
            return grant
        scopes = grant.scopes
        wanted = {normalize_scope(s) for s in request.form_value("scope").split()}
        if wanted:  # a narrower request is honoured; scopes never granted are simply not added
            scopes = tuple(s for s in grant.scopes if s in wanted) or grant.scopes
        access = self._mint_access(grant, scopes)
        refresh_token = self._grants.rotate(grant, "1//0", 72) if self._rotate_refresh_tokens else None
        return self._token_body(grant, access, refresh_token)

    def _revoke(self, request: _Request) -> _Response:
        """RFC 7009 on the shared flow: a live access token or the current refresh token ends its whole grant."""
        return revoke_token(request, self._grants, self._access, _OAUTH_ERRORS, _revoked)
