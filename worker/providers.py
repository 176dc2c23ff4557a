"""The provider table: for each provider, its connector, token revoke, mapper and field masks.

The one place where the worker meets provider-specific code; the sync cycle stays generic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import connectors.google
import mappers.google
from connectors.base import RosterConnector, TokenSet, TokenSink
from mappers.policy import MappingContext
from mappers.records import ClassRecord, MappedBatch, MembersBatch, Role
from settings import GOOGLE_SCOPES, Settings


@dataclass(frozen=True)
class Provider:
    name: str
    required_scopes: frozenset[str]
    connector: Callable[[Settings, TokenSet, TokenSink], RosterConnector]
    revoke_token: Callable[[Settings, str], bool]
    field_mask: Callable[[str, frozenset[str]], str]
    map_classes: Callable[[Sequence[Any], MappingContext], MappedBatch[ClassRecord]]
    map_members: Callable[[Sequence[Any], str, Role, MappingContext], MembersBatch]


PROVIDERS: dict[str, Provider] = {
    "google": Provider(
        name="google",
        required_scopes=frozenset(GOOGLE_SCOPES),
        connector=connectors.google.GoogleConnector,
        revoke_token=connectors.google.revoke_token,
        field_mask=mappers.google.field_mask,
        map_classes=mappers.google.map_classes,
        map_members=mappers.google.map_members,
    )
}


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
