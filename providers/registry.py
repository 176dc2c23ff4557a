"""The provider table: one row per provider with everything provider-specific the worker calls.

The one place where the worker meets provider-specific code; the sync cycle and linking stay
generic. Adding a provider means a connector, a mapper, an emulator and one row here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import connectors.clever
import connectors.google
import connectors.microsoft
import mappers.clever
import mappers.google
import mappers.microsoft
from connectors.base import Page, ProviderDataError, RevokeVerdict, RosterConnector, TokenSet, TokenSink
from connectors.microsoft_roster import MicrosoftRoster
from mappers.policy import MappingContext
from mappers.records import ChangeBatch, RawPage, RosterBatch
from settings import GOOGLE_SCOPES, Settings


@dataclass(frozen=True)
class Callback:
    """What came back from the provider's consent screen, with what we kept for it (state, PKCE verifier)."""

    url: str
    state: str
    code: str
    verifier: str


@dataclass(frozen=True)
class Grant:
    """The credentials a link keeps (tokens, sealed with their ``extra``) and the provider account behind them.

    ``account`` is only ever stored pseudonymised (``integrations.account_key``).
    """

    tokens: TokenSet
    account: str


@dataclass(frozen=True)
class ConsentStart:
    """A consent URL whose provider client keeps its own secret for the callback (MSAL's flow: PKCE
    verifier, nonce). ``secret`` is sealed where a link attempt keeps its verifier, in place of ours,
    and comes back as ``Callback.verifier``; it is never stored in clear."""

    url: str
    secret: str

    def __repr__(self) -> str:
        return "ConsentStart(url=<hidden>, secret=<hidden>)"


class ConsentUrl(Protocol):
    def __call__(self, settings: Settings, *, state: str, code_challenge: str) -> str | ConsentStart: ...


@dataclass(frozen=True)
class Provider:
    name: str
    required_scopes: frozenset[str]
    consent_url: ConsentUrl
    exchange_code: Callable[[Settings, Callback], TokenSet]
    grant: Callable[[Settings, TokenSet], Grant]  # who granted, and what the sync will read with
    org_grant: Callable[[Settings, str], Grant | None] | None  # an organisation-wide link; None: not offered
    connector: Callable[[Settings, TokenSet, TokenSink], RosterConnector]
    revoke_token: Callable[[Settings, str], RevokeVerdict]
    field_mask: Callable[[str, frozenset[str]], str]
    map_page: Callable[[RawPage, MappingContext], RosterBatch]
    map_changes: Callable[[RawPage, MappingContext], ChangeBatch] | None  # None: no change feed
    # A person's classes now, by the provider's id (pages ``map_page`` reads), for a person whose id reappeared
    # in the change feed (``ChangeBatch.reappeared``); None: the provider's feed brings enrolments back itself.
    classes_of: Callable[[RosterConnector, str], Iterator[Page]] | None = None


# ----------------------------------------------------------------------------------------- Google
def _google_exchange(settings: Settings, callback: Callback) -> TokenSet:
    return connectors.google.exchange_code(settings, code=callback.code, code_verifier=callback.verifier)


def _google_grant(settings: Settings, tokens: TokenSet) -> Grant:
    return Grant(tokens, connectors.google.account_id(settings, tokens))


# ----------------------------------------------------------------------------------------- Clever
def _clever_consent_url(settings: Settings, *, state: str, code_challenge: str) -> str:
    """Clever's sign-in takes no PKCE challenge (its code exchange authenticates the client instead)."""
    return connectors.clever.authorization_url(settings, state=state)


def _clever_exchange(settings: Settings, callback: Callback) -> TokenSet:
    return connectors.clever.exchange_code(settings, authorization_response=callback.url, state=callback.state)


CLEVER_ROLES = frozenset({"student", "staff", "district_admin", "school_admin", "contact"})
"""Clever's role words that a refusal may name; any other value is not echoed (it came off the wire)."""


def _clever_identity(settings: Settings, sso_token: str) -> mappers.clever.CleverIdentity:
    """Who signed in and as what: ``/me``, and ``/userinfo`` when ``/me`` says only ``user`` (a Library sign-in,
    dev.clever.com/docs/classroom-rostering). Only a teacher links; any other role is refused by name."""
    with connectors.clever.CleverConnector(settings, sso_token) as reader:
        me = mappers.clever.identity(reader.me())
        if me is not None and me.user_type == mappers.clever.USER:
            me = mappers.clever.role_from_userinfo(me, reader.userinfo())
    if me is None:
        raise ProviderDataError("Clever's /me or /userinfo breaks the documented shape")
    if me.user_type != "teacher":
        role = me.user_type if me.user_type in CLEVER_ROLES else "user of another role"
        raise connectors.clever.LinkRefused(
            f"this Clever sign-in is a {role}, not a teacher: only a teacher links a class roster; nothing was stored"
        )
    return me


def _clever_grant(settings: Settings, sso: TokenSet) -> Grant:
    """A teacher's sign-in -> what the sync reads with (providers.md 2.1, "Two kinds of teacher").

    A district-shared teacher's SSO token reaches only ``/me`` and a few records, so their roster is
    read with the district's app token (resolved by the district ``/me`` names); a district that has
    not connected the app is refused here, before anything is stored. A Library teacher (no
    district) is read with their own SSO token. The SSO token of a district teacher is not kept.
    """
    assert sso.access_token is not None
    me = _clever_identity(settings, sso.access_token)
    if me.district_id is None:
        return Grant(TokenSet(sso.access_token, "", None, extra={"teacher_id": me.user_id}), me.user_id)
    token = connectors.clever.district_token(settings, me.district_id)
    if token is None:
        raise connectors.clever.LinkRefused(
            "the teacher's district has not connected rostersync in Clever; nothing was stored "
            "(the district connects the app in its Clever dashboard, or use `rostersync link org`)"
        )
    extra = {"district_id": me.district_id, "teacher_id": me.user_id}
    return Grant(TokenSet(token, "", None, extra=extra), me.user_id)


def _clever_classes_of(connector: RosterConnector, user_id: str) -> Iterator[Page]:
    """Clever's events say "created" for a user whose id reappears but not which sections they are in again."""
    assert isinstance(connector, connectors.clever.CleverRoster)
    return connector.classes_of(user_id)


def _clever_org_grant(settings: Settings, district_id: str) -> Grant | None:
    token = connectors.clever.district_token(settings, district_id)
    if token is None:
        return None
    return Grant(TokenSet(token, "", None, extra={"district_id": district_id}), f"district:{district_id}")


# -------------------------------------------------------------------------------------- Microsoft
TEACHER_LINK, TENANT_LINK = "teacher", "tenant"
"""``TokenSet.extra["link"]``: a teacher's delegated link or a tenant's application link."""


def _microsoft_consent_url(settings: Settings, *, state: str, code_challenge: str) -> ConsentStart:
    """MSAL makes its own PKCE pair and nonce; the whole flow is what the callback needs, so it is the secret."""
    start = connectors.microsoft.start_teacher_link(settings, state=state)
    return ConsentStart(url=start.auth_url, secret=json.dumps(dict(start.flow)))


def _microsoft_exchange(settings: Settings, callback: Callback) -> TokenSet:
    try:
        flow = json.loads(callback.verifier)
    except ValueError:
        raise connectors.microsoft.LinkRefused("the link attempt holds no Microsoft sign-in flow") from None
    if not isinstance(flow, dict):
        raise connectors.microsoft.LinkRefused("the link attempt holds no Microsoft sign-in flow")
    grant = connectors.microsoft.complete_teacher_link(settings, flow, callback.url)
    assert grant.user_id is not None
    extra = {"link": TEACHER_LINK, "token_cache": grant.token_cache, "tenant_id": grant.tenant_id}
    return TokenSet(None, "", None, scopes=grant.scopes, extra=extra | {"user_id": grant.user_id})


def _microsoft_grant(settings: Settings, tokens: TokenSet) -> Grant:
    return Grant(tokens, tokens.extra["user_id"])


def _microsoft_org_grant(settings: Settings, tenant_id: str) -> Grant | None:
    """A tenant-wide link (client credentials); ``link_tenant`` refuses a tenant that has not consented."""
    grant = connectors.microsoft.link_tenant(settings, tenant_id)
    extra = {"link": TENANT_LINK, "token_cache": grant.token_cache, "tenant_id": grant.tenant_id}
    return Grant(TokenSet(None, "", None, scopes=grant.scopes, extra=extra), f"tenant:{grant.tenant_id}")


def _microsoft_revoke(settings: Settings, token: str) -> RevokeVerdict:
    """Microsoft has no endpoint to revoke an app's grant: the tenant admin withdraws consent (docs/microsoft.md)."""
    return RevokeVerdict.UNSUPPORTED


def _microsoft_connector(settings: Settings, tokens: TokenSet, on_tokens: TokenSink) -> MicrosoftRoster:
    """MSAL's changed cache goes to the fenced token sink, sealed with the rest of the link's ``extra``."""
    current = [tokens]

    def on_token_cache(cache: str) -> None:
        current[0] = replace(current[0], extra={**current[0].extra, "token_cache": cache})
        on_tokens(current[0])

    app_only = tokens.extra.get("link") == TENANT_LINK
    reader = connectors.microsoft.MicrosoftConnector(
        settings,
        token_cache=tokens.extra.get("token_cache"),
        tenant_id=tokens.extra["tenant_id"] if app_only else None,
        on_token_cache=on_token_cache,
        masks=mappers.microsoft.field_masks(tokens.scopes),
    )
    return MicrosoftRoster(reader)


PROVIDERS: dict[str, Provider] = {
    "google": Provider(
        name="google",
        required_scopes=frozenset(GOOGLE_SCOPES),
        consent_url=connectors.google.consent_url,
        exchange_code=_google_exchange,
        grant=_google_grant,
        org_grant=None,
        connector=connectors.google.GoogleConnector,
        revoke_token=connectors.google.revoke_token,
        field_mask=mappers.google.field_mask,
        map_page=mappers.google.map_page,
        map_changes=None,
    ),
    "clever": Provider(
        name="clever",
        required_scopes=frozenset(),  # Clever's token response names no scopes; /me and the reads tell
        consent_url=_clever_consent_url,
        exchange_code=_clever_exchange,
        grant=_clever_grant,
        org_grant=_clever_org_grant,
        connector=connectors.clever.connector,
        revoke_token=connectors.clever.revoke_token,
        field_mask=mappers.clever.field_mask,
        map_page=mappers.clever.map_page,
        map_changes=mappers.clever.map_changes,
        classes_of=_clever_classes_of,
    ),
    "microsoft": Provider(
        name="microsoft",
        required_scopes=frozenset({connectors.microsoft.DELEGATED_SCOPE}),  # a teacher's grant; a tenant's is probed
        consent_url=_microsoft_consent_url,
        exchange_code=_microsoft_exchange,
        grant=_microsoft_grant,
        org_grant=_microsoft_org_grant,
        connector=_microsoft_connector,
        revoke_token=_microsoft_revoke,
        field_mask=mappers.microsoft.field_mask,
        map_page=mappers.microsoft.map_page,
        map_changes=mappers.microsoft.map_changes,
    ),
}


SUPPORTED = tuple(PROVIDERS)


def provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r} (known: {', '.join(sorted(PROVIDERS))})") from None


def tokens_to_payload(tokens: TokenSet) -> dict[str, Any]:
    """The plain form the vault encrypts (``extra`` included: it is never stored in clear)."""
    payload: dict[str, Any] = {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expiry": tokens.expiry.isoformat() if tokens.expiry else None,
        "scopes": sorted(tokens.scopes),
    }
    if tokens.extra:
        payload["extra"] = dict(tokens.extra)
    return payload


def tokens_from_payload(payload: dict[str, Any]) -> TokenSet:
    expiry = payload.get("expiry")
    extra = payload.get("extra") or {}
    return TokenSet(
        access_token=payload.get("access_token"),
        refresh_token=str(payload["refresh_token"]),
        expiry=datetime.fromisoformat(expiry) if expiry else None,
        scopes=frozenset(payload.get("scopes", [])),
        extra={str(key): str(value) for key, value in dict(extra).items()},
    )
