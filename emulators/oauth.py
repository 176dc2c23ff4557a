"""The OAuth 2.0 authorization server the provider emulators share: written once, declared per provider.

Google, Clever and Microsoft all run the same authorization-code grant (a code issued at
``/authorize``, single use, short-lived, bound to its redirect URI and, when the client sent one, to a
PKCE challenge), authenticate the client before any grant, dispatch on ``grant_type``, mint tokens
that leak checks must be able to find, rotate refresh tokens and end them on revocation. What differs
is what each answers when a step fails, the shapes of its tokens and bodies, its paths and the order
in which it burns a code; each provider declares those (an ``OAuthErrors`` table, flags, prefixes)
and calls the steps here, so a fix to the flow is made once. The refresh grant (spent, expired and
rotated-out tokens) and RFC 7009 revocation are steps here too, for the same reason.

Like the rest of the package it imports nothing from the project.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode

from emulators.core import Request, Response

__all__ = [
    "AuthCode",
    "CodeBook",
    "Grant",
    "GrantAccess",
    "GrantBook",
    "OAuthErrors",
    "TokenLedger",
    "check_client",
    "dispatch_grant",
    "pkce_matches",
    "redeem_code",
    "redirect_location",
    "refresh_grant",
    "revocation_token",
    "revoke_token",
]

OAuthErrors = Mapping[str, Callable[[], Response]]
"""A provider's answer for each failed step, by step name:

``client_unknown``, ``client_secret`` (client authentication), ``grant_type_missing``,
``grant_type_unsupported``, ``code_missing``, ``code_invalid`` (unknown, used or expired),
``redirect_mismatch``, ``verifier_missing``, ``verifier_mismatch``, ``refresh_missing``,
``refresh_unknown``, ``refresh_spent`` (revoked or rotated out), ``refresh_expired`` (past its lifetime),
``consent_missing`` (the grant holds no scope the provider still honours), ``revoke_missing`` (no token
named), ``revoke_invalid`` (unknown, expired or already revoked). A provider names only the steps its
flows reach."""


def redirect_location(redirect_uri: str, params: list[tuple[str, str]]) -> str:
    """The redirect back to the client, its parameters appended to whatever query the URI already has."""
    separator = "&" if "?" in redirect_uri else "?"
    return redirect_uri + separator + urlencode(params, quote_via=quote)


def pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    """RFC 7636: ``S256`` compares BASE64URL(SHA256(verifier)) with the challenge, ``plain`` the verifier itself."""
    if method == "S256":
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    else:
        computed = verifier
    return secrets.compare_digest(computed.encode(), challenge.encode())


# ------------------------------------------------------------------------------------ client auth
def check_client(
    request: Request, client_id: str, client_secret: str, errors: OAuthErrors, *, form: bool, basic: bool
) -> Response | None:
    """Authenticate the client where the provider takes its credentials (the form, HTTP Basic, or either,
    the form first); None when it may go on, else the provider's ``client_unknown``/``client_secret``."""
    given_id, given_secret = "", ""
    if form:
        given_id, given_secret = request.form_value("client_id"), request.form_value("client_secret")
    if basic and not given_id:
        given_id, given_secret = _basic_credentials(request)
    if given_id != client_id:
        return errors["client_unknown"]()
    if not secrets.compare_digest(given_secret.encode(), client_secret.encode()):
        return errors["client_secret"]()
    return None


def _basic_credentials(request: Request) -> tuple[str, str]:
    """HTTP Basic ``id:secret`` (padding forgiven, as Google's endpoint does); empty when absent or undecodable."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return "", ""
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except ValueError:
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def dispatch_grant(
    request: Request, handlers: Mapping[str, Callable[[Request], Response]], errors: OAuthErrors
) -> Response:
    """The token endpoint's switch on ``grant_type``, after the client was authenticated."""
    grant_type = request.form_value("grant_type")
    handler = handlers.get(grant_type)
    if handler is not None:
        return handler(request)
    return errors["grant_type_missing" if not grant_type else "grant_type_unsupported"]()


# ------------------------------------------------------------------------------------ codes
@dataclass
class AuthCode:
    """One authorization code: who approved, for which redirect URI, until when; the rest as the provider needs."""

    user_id: str
    redirect_uri: str
    expires_at: float
    scopes: tuple[str, ...] = ()
    challenge: str = ""
    challenge_method: str = ""
    offline: bool = False
    tenant_id: str = ""
    nonce: str = ""
    used: bool = False


class CodeBook:
    """The codes issued at ``/authorize``; a code is live until used or expired."""

    def __init__(self) -> None:
        self._codes: dict[str, AuthCode] = {}

    def issue(self, code: str, entry: AuthCode) -> str:
        self._codes[code] = entry
        return code

    def owner(self, code: str) -> str | None:
        """Who approved ``code`` (used or not), for the request log."""
        entry = self._codes.get(code)
        return entry.user_id if entry else None

    def live(self, code: str) -> AuthCode | None:
        entry = self._codes.get(code)
        if entry is None or entry.used or time.time() > entry.expires_at:
            return None
        return entry


def redeem_code(
    request: Request,
    codes: CodeBook,
    errors: OAuthErrors,
    *,
    burn_first: bool,
    require_code: bool = False,
    bound: Callable[[AuthCode], Response | None] | None = None,
) -> AuthCode | Response:
    """The authorization-code grant's checks, in order: the code is live, the redirect URI is the one it was
    issued for, ``bound`` (a provider's own binding, such as a tenant) holds, the PKCE verifier fits.

    ``burn_first``: the code is spent as soon as it is presented, even when a later check fails (Clever,
    Entra); otherwise only a successful exchange spends it (Google). The code comes back spent.
    """
    code = request.form_value("code")
    if require_code and not code:
        return errors["code_missing"]()
    entry = codes.live(code)
    if entry is None:
        return errors["code_invalid"]()
    if burn_first:
        entry.used = True
    if request.form_value("redirect_uri") != entry.redirect_uri:
        return errors["redirect_mismatch"]()
    refusal = bound(entry) if bound is not None else None
    if refusal is not None:
        return refusal
    if entry.challenge:
        verifier = request.form_value("code_verifier")
        if not verifier:
            return errors["verifier_missing"]()
        if not pkce_matches(entry.challenge, entry.challenge_method, verifier):
            return errors["verifier_mismatch"]()
    entry.used = True
    return entry


# ------------------------------------------------------------------------------------ tokens
class TokenLedger:
    """Every token handed out, for the leak checks that grep tables, logs and messages for them."""

    def __init__(self) -> None:
        self.issued: set[str] = set()

    def mint(self, prefix: str, nbytes: int) -> str:
        token = prefix + secrets.token_urlsafe(nbytes)
        self.issued.add(token)
        return token

    def mint_hex(self, nbytes: int) -> str:
        token = secrets.token_hex(nbytes)
        self.issued.add(token)
        return token


@dataclass
class Grant:
    """One consent: its current refresh token (rotation replaces it), its scopes, and whether it was revoked.

    Revoking it ends every refresh token it ever had; a rotated-out refresh token is spent.
    """

    id: int
    user_id: str
    scopes: tuple[str, ...]
    offline: bool = True
    tenant_id: str = ""
    refresh_token: str | None = None
    issued_at: float = 0.0
    revoked: bool = False

    def spent(self, token: str) -> bool:
        """A refresh token no longer honoured: the grant was revoked, or the token rotated out."""
        return self.revoked or self.refresh_token != token


class GrantBook:
    """Grants and every refresh token each ever had (rotated-out ones too, so the log still names their user)."""

    def __init__(self, ledger: TokenLedger) -> None:
        self._ledger = ledger
        self._ids = itertools.count(1)
        self.grants: list[Grant] = []
        self._by_refresh: dict[str, Grant] = {}

    def open(self, user_id: str, scopes: tuple[str, ...], *, offline: bool = True, tenant_id: str = "") -> Grant:
        grant = Grant(next(self._ids), user_id, scopes, offline, tenant_id)
        self.grants.append(grant)
        return grant

    def rotate(self, grant: Grant, prefix: str, nbytes: int) -> str:
        """A new refresh token for ``grant``; the one it had is spent from now on."""
        token = self._ledger.mint(prefix, nbytes)
        grant.refresh_token = token
        grant.issued_at = time.time()
        self._by_refresh[token] = grant
        return token

    def holder(self, token: str) -> Grant | None:
        """The grant ``token`` was ever issued for, spent or not."""
        return self._by_refresh.get(token)

    def of_user(self, user_id: str) -> list[Grant]:
        return [grant for grant in self.grants if grant.user_id == user_id]

    def revoke_user(self, user_id: str) -> None:
        """End every grant ``user_id`` ever gave (a revoked consent, a revoked sign-in session)."""
        for grant in self.of_user(user_id):
            grant.revoked = True


def refresh_grant(
    request: Request,
    grants: GrantBook,
    errors: OAuthErrors,
    *,
    bound: Callable[[Grant], Response | None] | None = None,
    lifetime: float | None = None,
) -> Grant | Response:
    """The refresh-token grant's checks, in order: the token is named and known, ``bound`` (a provider's own
    binding, such as the tenant and the app's state, which Entra checks before the token's) holds, the
    token is not spent (revoked or rotated out) and, with a ``lifetime``, not idle past it. The caller
    mints the new tokens and, when the provider rotates, ``GrantBook.rotate`` spends the old one."""
    token = request.form_value("refresh_token")
    if not token:
        return errors["refresh_missing"]()
    grant = grants.holder(token)
    if grant is None:
        return errors["refresh_unknown"]()
    refusal = bound(grant) if bound is not None else None
    if refusal is not None:
        return refusal
    if grant.spent(token):
        return errors["refresh_spent"]()
    if lifetime is not None and time.time() - grant.issued_at > lifetime:
        return errors["refresh_expired"]()
    return grant


# ------------------------------------------------------------------------------------ revocation
class GrantAccess(Protocol):
    """An access token as revocation sees it: the grant it was minted from and when it expires."""

    grant: Grant
    expires_at: float


def revocation_token(request: Request) -> str:
    """The token a revocation request names (RFC 7009: the form; Google also takes the query)."""
    return request.form_value("token") or request.param("token")


def revoke_token(
    request: Request,
    grants: GrantBook,
    access: Mapping[str, GrantAccess],
    errors: OAuthErrors,
    revoked: Callable[[Grant], Response],
) -> Response:
    """RFC 7009: a live access token or the grant's current refresh token ends the whole grant (every
    refresh token it ever had, every access token minted from it); ``revoked`` is the provider's answer.

    An expired access token, a rotated-out refresh token or an already revoked grant is ``revoke_invalid``.
    """
    token = revocation_token(request)
    if not token:
        return errors["revoke_missing"]()
    grant: Grant | None = None
    minted = access.get(token)
    if minted is not None:
        if minted.expires_at > time.time():
            grant = minted.grant
    else:
        candidate = grants.holder(token)
        if candidate is not None and candidate.refresh_token == token:
            grant = candidate
    if grant is None or grant.revoked:
        return errors["revoke_invalid"]()
    grant.revoked = True
    return revoked(grant)
