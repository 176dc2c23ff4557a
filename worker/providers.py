"""The provider table: one row per provider with everything provider-specific the worker calls.

The one place where the worker meets provider-specific code; the sync cycle and linking stay
generic. Adding a provider means a connector, a mapper, an emulator and one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import connectors.clever
import connectors.google
import mappers.clever
import mappers.google
from connectors.base import ProviderDataError, RevokeVerdict, RosterConnector, TokenSet, TokenSink
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


class ConsentUrl(Protocol):
    def __call__(self, settings: Settings, *, state: str, code_challenge: str) -> str: ...


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


def _clever_grant(settings: Settings, sso: TokenSet) -> Grant:
    """A teacher's sign-in -> what the sync reads with (providers.md 2.1, "Two kinds of teacher").

    A district-shared teacher's SSO token reaches only ``/me`` and a few records, so their roster is
    read with the district's app token (resolved by the district ``/me`` names); a district that has
    not connected the app is refused here, before anything is stored. A Library teacher (no
    district) is read with their own SSO token. The SSO token of a district teacher is not kept.
    """
    assert sso.access_token is not None
    with connectors.clever.CleverConnector(settings, sso.access_token) as reader:
        me = mappers.clever.identity(reader.me())
    if me is None:
        raise ProviderDataError("Clever's /me breaks the documented shape")
    if me.user_type != "teacher":
        raise connectors.clever.LinkRefused(f"only teachers link this way (Clever says: {me.user_type[:20]})")
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


def _clever_org_grant(settings: Settings, district_id: str) -> Grant | None:
    token = connectors.clever.district_token(settings, district_id)
    if token is None:
        return None
    return Grant(TokenSet(token, "", None, extra={"district_id": district_id}), f"district:{district_id}")


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
