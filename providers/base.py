"""The provider protocol: what a provider's glue module gives the sync, the linking and the inventory.

One ``Provider`` row per provider (built in its own module, ``providers/<name>.py``) and listed once in
``providers/registry.py``; nothing shared names a provider, everything provider-specific is reached through
the row. The token payload helpers are here because every provider's tokens are sealed the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.base import Page, RevokeVerdict, RosterConnector, TokenSet, TokenSink
from mappers.policy import FieldRule, MappingContext
from mappers.records import ChangeBatch, RawPage, RosterBatch
from settings import Settings


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
    """A consent URL whose provider client keeps its own secret for the callback (a client library's own flow: PKCE
    verifier, nonce). ``secret`` is sealed where a link attempt keeps its verifier, in place of ours,
    and comes back as ``Callback.verifier``; it is never stored in clear."""

    url: str
    secret: str

    def __repr__(self) -> str:
        return "ConsentStart(url=<hidden>, secret=<hidden>)"


@dataclass(frozen=True)
class ErrorWords:
    """What a person reads about an error kind only one provider raises (e.g. a refused organisation token).

    Fixed words, ours, written in the provider's own module so that nothing shared names the provider;
    ``sync.outcomes`` and ``worker.retry_policy`` find them by the error's kind through the registry.
    """

    meaning: str  # a sync's outcome, as ``rostersync sync`` reports it
    give_up: str  # why the retries stopped, kept as the integration's reason
    wait: str  # why a retry waits, as ``rostersync sync --now`` shows it


class ConsentUrl(Protocol):
    def __call__(self, settings: Settings, *, state: str, code_challenge: str) -> str | ConsentStart: ...


@dataclass(frozen=True)
class Provider:
    """Everything provider-specific the sync, the linking and the inventory call, as one row per provider."""

    name: str
    required_scopes: frozenset[str]
    consent_url: ConsentUrl
    exchange_code: Callable[[Settings, Callback], TokenSet]
    grant: Callable[[Settings, TokenSet], Grant]  # who granted, and what the sync will read with
    org_grant: Callable[[Settings, str], Grant | None] | None  # an organisation-wide link; None: not offered
    connector: Callable[[Settings, TokenSet, TokenSink], RosterConnector]
    revoke_token: Callable[[Settings, str], RevokeVerdict]
    field_mask: Callable[[str, frozenset[str]], str]
    allowlist: Mapping[str, tuple[FieldRule, ...]]  # per role: the only fields kept (mappers.policy)
    map_page: Callable[[RawPage, MappingContext], RosterBatch]
    map_changes: Callable[[RawPage, MappingContext], ChangeBatch] | None  # None: no change feed
    # A person's classes now, by the provider's id (pages ``map_page`` reads), for a person whose id reappeared
    # in the change feed (``ChangeBatch.reappeared``); None: the provider's feed brings enrolments back itself.
    classes_of: Callable[[RosterConnector, str], Iterator[Page]] | None = None
    # Where ``field_mask`` is empty (no field selection at the provider): the endpoints read whole, for the inventory.
    whole_records: str | None = None
    # What an organisation-wide link links, article included ("a <provider> district"), for help texts; "": none.
    organisation: str = ""
    # Without a revoke endpoint: how access ends at the provider (who disconnects the app, and where); "": it has one.
    disconnect: str = ""
    # The words of the error kinds only this provider raises, by kind (``ConnectorError.kind``).
    error_words: Mapping[str, ErrorWords] = field(default_factory=dict)
    # The provider's proper name as people know it, for the pages a teacher reads; "": the registry name.
    display_name: str = ""

    @property
    def proper_name(self) -> str:
        """What a teacher calls the provider: its display name, or its registry name capitalised."""
        return self.display_name or self.name.capitalize()


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
