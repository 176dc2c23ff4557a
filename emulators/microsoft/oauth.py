"""Entra ID v2.0 (OpenID configuration, ``/authorize``, ``/token``) on the shared OAuth flow, AADSTS errors.

Codes, client authentication, the grant switch, refresh tokens and their rotation are the shared flow's
(``emulators.oauth``); what is Entra's own is its tenants, the app's state, sign-in blocks, admin
consent and the AADSTS code it answers each failed step with.
"""

from __future__ import annotations

import secrets
import time
import uuid

from emulators.core import Json, Request, Response
from emulators.microsoft.data import (
    ACCESS_TOKEN_SECONDS,
    CODE_TTL_SECONDS,
    DELEGATED_SCOPES,
    GRAPH_RESOURCE,
    OIDC_SCOPES,
    REFRESH_IDLE_SECONDS,
    MicrosoftState,
    _aadsts,
    _Access,
    _b64,
    _declares_cp1,
    _guid,
    _json,
    _jwt,
    _scope_names,
    _Tenant,
    _User,
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
)

_MULTI_TENANT = ("organizations", "common")
"""The authority aliases that stand for any tenant."""


def _unsupported_grant() -> Response:
    return _json(400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003", "error_codes": [70003]})


_OAUTH_ERRORS: OAuthErrors = {
    "client_unknown": lambda: _aadsts(700016),
    "client_secret": lambda: _aadsts(7000215),
    "grant_type_missing": _unsupported_grant,
    "grant_type_unsupported": _unsupported_grant,
    "code_invalid": lambda: _aadsts(70008),
    "redirect_mismatch": lambda: _aadsts(70000),
    "verifier_missing": lambda: _aadsts(501481),
    "verifier_mismatch": lambda: _aadsts(501481),
    "refresh_missing": lambda: _aadsts(70000),
    "refresh_unknown": lambda: _aadsts(70000),
    "refresh_spent": lambda: _aadsts(50173),
    "refresh_expired": lambda: _aadsts(700082),
    "consent_missing": lambda: _aadsts(65001, suberror="consent_required"),
}
"""Entra's answer to each failed step of the shared code grant (AADSTS codes, providers.md 3.6)."""


class MicrosoftOAuth(MicrosoftState):
    """Entra's authorization server."""

    # ------------------------------------------------------------------------------- identity
    def _tenant_known(self, key: str) -> bool:
        return key in _MULTI_TENANT or key in self._tenants

    def _openid_configuration(self, tenant_key: str) -> Response:
        if not self._tenant_known(tenant_key):
            return _aadsts(90002)
        base = f"{self.base_url}/{tenant_key}"
        issuer_tenant = "{tenantid}" if tenant_key in _MULTI_TENANT else tenant_key
        return _json(
            200,
            {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tenant_region_scope": "NA",
            },
        )

    def _signing_in(self) -> _User | None:
        if self._signin_user is not None:
            return self._users[self._signin_user]
        first = next(iter(self._tenants), None)
        return next((u for u in self._users.values() if u.tenant_id == first and u.role == "teacher"), None)

    def _authorize(self, request: Request, tenant_key: str) -> Response:
        """Auto-approves for the sign-in user and redirects with a code; PKCE and the nonce are kept for /token.

        Only scopes the tenant admin consented to are granted (EduRoster scopes need admin consent,
        providers.md 3.1): a narrower grant than asked shows in the token response's ``scope``.
        """
        if request.param("client_id") != self._client_id:
            return _aadsts(700016)
        redirect_uri = request.param("redirect_uri")
        if not redirect_uri or request.param("response_type") != "code":
            return _aadsts(900144)
        user = self._signing_in()
        if user is None or (tenant_key not in _MULTI_TENANT and user.tenant_id != tenant_key):
            return _aadsts(90002)
        tenant = self._tenants[user.tenant_id]
        if not tenant.service_principal:
            return _aadsts(700016)
        if not tenant.app_enabled:
            return _aadsts(7000112)
        asked = _scope_names(request.param("scope"))
        granted = tuple(s for s in asked if s in OIDC_SCOPES or s in tenant.delegated_consent)
        entry = AuthCode(
            user_id=user.id,
            redirect_uri=redirect_uri,
            expires_at=time.time() + CODE_TTL_SECONDS,
            scopes=granted,
            challenge=request.param("code_challenge"),
            challenge_method=request.param("code_challenge_method") or "plain",
            tenant_id=tenant.id,
            nonce=request.param("nonce"),
        )
        code = self._codes.issue(secrets.token_urlsafe(24), entry)
        params = [("code", code), ("client_info", self._client_info(user)), ("session_state", str(uuid.uuid4()))]
        if "state" in request.query:
            params.append(("state", request.param("state")))
        location = redirect_location(redirect_uri, params)
        return Response(302, b"", [("Location", location)], user_id=user.id)

    @staticmethod
    def _client_info(user: _User) -> str:
        return _b64({"uid": user.id, "utid": user.tenant_id})

    def _token(self, request: Request, tenant_key: str) -> Response:
        """The tenant, then the client (form credentials only, then an expired secret), then the grant."""
        if not self._tenant_known(tenant_key):
            return _aadsts(90002)
        refusal = check_client(request, self._client_id, self._client_secret, _OAUTH_ERRORS, form=True, basic=False)
        if refusal is not None:
            return refusal
        if self._secret_expired:
            return _aadsts(7000222)
        handlers = {
            "authorization_code": lambda r: self._code_grant(r, tenant_key),
            "refresh_token": lambda r: self._refresh_grant(r, tenant_key),
            "client_credentials": lambda r: self._client_grant(r, tenant_key),
        }
        return dispatch_grant(request, handlers, _OAUTH_ERRORS)

    def _app_state_error(self, tenant: _Tenant) -> Response | None:
        if not tenant.service_principal:
            return _aadsts(700016)
        if not tenant.app_enabled:
            return _aadsts(7000112)
        return None

    @staticmethod
    def _foreign(tenant_key: str, tenant_id: str) -> Response | None:
        """A code or refresh token is redeemed at its own tenant's endpoint (or the multi-tenant aliases)."""
        return _aadsts(70000) if tenant_key not in _MULTI_TENANT and tenant_key != tenant_id else None

    def _code_grant(self, request: Request, tenant_key: str) -> Response:
        entry = redeem_code(
            request, self._codes, _OAUTH_ERRORS, burn_first=True, bound=lambda c: self._foreign(tenant_key, c.tenant_id)
        )
        if isinstance(entry, Response):
            return entry
        error = self._app_state_error(self._tenants[entry.tenant_id]) or self._signin_block(
            entry.tenant_id, entry.user_id
        )
        if error is not None:
            return error
        grant = self._grants.open(entry.user_id, entry.scopes, tenant_id=entry.tenant_id)
        return self._delegated_tokens(grant, nonce=entry.nonce, capable=_declares_cp1(request))

    def _refresh_bound(self, tenant_key: str, grant: Grant) -> Response | None:
        """Entra judges the tenant, the app's state and sign-in blocks before the refresh token itself."""
        return (
            self._foreign(tenant_key, grant.tenant_id)
            or self._app_state_error(self._tenants[grant.tenant_id])
            or self._signin_block(grant.tenant_id, grant.user_id)
        )

    def _refresh_grant(self, request: Request, tenant_key: str) -> Response:
        """The shared refresh grant (AADSTS50173 spent or revoked, 700082 idle too long), then admin consent:
        only scopes the tenant still consents to are granted, and none of Graph's is AADSTS65001. The old
        refresh token is spent by rotation (providers.md 3.5 [O])."""
        grant = refresh_grant(
            request,
            self._grants,
            _OAUTH_ERRORS,
            bound=lambda g: self._refresh_bound(tenant_key, g),
            lifetime=REFRESH_IDLE_SECONDS,
        )
        if isinstance(grant, Response):
            return grant
        tenant = self._tenants[grant.tenant_id]
        granted = tuple(s for s in grant.scopes if s in OIDC_SCOPES or s in tenant.delegated_consent)
        if not any(s in DELEGATED_SCOPES for s in granted):
            return _OAUTH_ERRORS["consent_missing"]()
        grant.scopes = granted
        return self._delegated_tokens(grant, nonce=None, capable=_declares_cp1(request))

    def _delegated_tokens(self, grant: Grant, *, nonce: str | None, capable: bool = False) -> Response:
        """An access token, a rotated refresh token and an id token for ``grant``, as MSAL reads them."""
        tenant_id, user_id, scopes = grant.tenant_id, grant.user_id, grant.scopes
        user = self._users[user_id]
        now = time.time()
        access_token = self._ledger.mint("eyJ0eXAiOiJKV1QifQ.", 32)
        refresh_token = self._grants.rotate(grant, "0.AXEA", 48)
        resource = [s for s in scopes if s not in OIDC_SCOPES]
        self._access[access_token] = _Access(
            tenant_id, user_id, frozenset(resource), now + ACCESS_TOKEN_SECONDS, now, capable=capable
        )
        claims: Json = {
            "aud": self._client_id,
            "iss": f"{self.base_url}/{tenant_id}/v2.0",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + ACCESS_TOKEN_SECONDS,
            "name": user.person.full_name,
            "oid": user.id,
            "preferred_username": user.pii["userPrincipalName"],
            "sub": _guid("sub", user.id, self._client_id),
            "tid": tenant_id,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        body = {
            "token_type": "Bearer",
            "scope": " ".join([*resource, *(s for s in scopes if s in OIDC_SCOPES and s != "offline_access")]),
            "expires_in": ACCESS_TOKEN_SECONDS,
            "ext_expires_in": ACCESS_TOKEN_SECONDS,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "id_token": _jwt(claims),
            "client_info": self._client_info(user),
        }
        return _json(200, body, user_id=user_id)

    def _client_grant(self, request: Request, tenant_key: str) -> Response:
        """Client credentials take exactly ``https://graph.microsoft.com/.default`` on a real tenant id."""
        tenant = self._tenants.get(tenant_key)
        if tenant is None:
            return _aadsts(90002)
        error = self._app_state_error(tenant) or self._signin_block(tenant.id, None)
        if error is not None:
            return error
        if request.form_value("scope").split() != [GRAPH_RESOURCE + "/.default"]:
            return _aadsts(1002012)
        now = time.time()
        access_token = self._ledger.mint("eyJ0eXAiOiJKV1QifQ.", 32)
        self._access[access_token] = _Access(
            tenant.id,
            None,
            frozenset(tenant.app_roles),
            now + ACCESS_TOKEN_SECONDS,
            now,
            capable=_declares_cp1(request),
        )
        body = {
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "ext_expires_in": ACCESS_TOKEN_SECONDS,
            "access_token": access_token,
        }
        return _json(200, body, user_id=tenant.id)
