"""The provider table: for each provider, its connector, token revoke, mapper and field masks.

The one place where the worker meets provider-specific code; the sync cycle stays generic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import connectors.google
import mappers.google
from connectors.base import RevokeVerdict, RosterConnector, TokenSet, TokenSink
from mappers.policy import MappingContext
from mappers.records import ClassRecord, MappedBatch, MembersBatch, Role
from settings import GOOGLE_SCOPES, Settings


class ConsentUrl(Protocol):
    def __call__(self, settings: Settings, *, state: str, code_challenge: str) -> str: ...


class ExchangeCode(Protocol):
    def __call__(self, settings: Settings, *, code: str, code_verifier: str) -> TokenSet: ...


@dataclass(frozen=True)
class Provider:
    name: str
    required_scopes: frozenset[str]
    consent_url: ConsentUrl
    exchange_code: ExchangeCode
    account_id: Callable[[Settings, TokenSet], str]  # who granted the tokens, to tell a re-link from a switch
    connector: Callable[[Settings, TokenSet, TokenSink], RosterConnector]
    revoke_token: Callable[[Settings, str], RevokeVerdict]
    field_mask: Callable[[str, frozenset[str]], str]
    map_classes: Callable[[Sequence[Any], MappingContext], MappedBatch[ClassRecord]]
    map_members: Callable[[Sequence[Any], str, Role, MappingContext], MembersBatch]


PROVIDERS: dict[str, Provider] = {
    "google": Provider(
        name="google",
        required_scopes=frozenset(GOOGLE_SCOPES),
        consent_url=connectors.google.consent_url,
        exchange_code=connectors.google.exchange_code,
        account_id=connectors.google.account_id,
        connector=connectors.google.GoogleConnector,
        revoke_token=connectors.google.revoke_token,
        field_mask=mappers.google.field_mask,
        map_classes=mappers.google.map_classes,
        map_members=mappers.google.map_members,
    )
}


SUPPORTED = tuple(PROVIDERS)


def provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r} (known: {', '.join(sorted(PROVIDERS))})") from None


def tokens_to_payload(tokens: TokenSet) -> dict[str, Any]:
    """The plain form the vault encrypts."""
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expiry": tokens.expiry.isoformat() if tokens.expiry else None,
        "scopes": sorted(tokens.scopes),
    }


def tokens_from_payload(payload: dict[str, Any]) -> TokenSet:
    expiry = payload.get("expiry")
    return TokenSet(
        access_token=payload.get("access_token"),
        refresh_token=str(payload["refresh_token"]),
        expiry=datetime.fromisoformat(expiry) if expiry else None,
        scopes=frozenset(payload.get("scopes", [])),
    )
