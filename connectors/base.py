"""What every connector shares: the error taxonomy, token sets and raw pages.

The worker is the only place that decides what to do with a failure, so every provider
failure is turned into exactly one of the errors below. Each carries a short, safe
``public`` text (no token, no personal data) fit for logs and the admin screen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

RawRecord = Mapping[str, Any]
"""One provider object exactly as it came off the wire; only ``mappers/`` may read its fields."""


class ConnectorError(Exception):
    """Base of the taxonomy. ``str(error)`` is always safe to log."""

    kind = "connector_error"

    def __init__(self, public: str) -> None:
        super().__init__(public)
        self.public = public


class AccessRevoked(ConnectorError):
    """The grant is gone (refresh refused, 401 after a fresh token, admin switched access off).

    Never retried: the integration is marked revoked and its data purged.
    """

    kind = "access_revoked"

    def __init__(self, public: str, *, reason: str) -> None:
        super().__init__(public)
        self.reason = reason


class ScopeMissing(ConnectorError):
    """The token lacks a scope the sync needs; never retried, the covered data is purged."""

    kind = "scope_missing"

    def __init__(self, scopes: Sequence[str]) -> None:
        super().__init__(f"granted scopes lack: {' '.join(sorted(scopes))}")
        self.scopes = tuple(sorted(scopes))


class RateLimited(ConnectorError):
    """The provider asked us to slow down; retried no sooner than ``retry_after`` seconds."""

    kind = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after:g}s")
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """5xx, timeouts, resets: retried with exponential backoff and jitter."""

    kind = "transient"


class ProviderDataError(ConnectorError):
    """A payload that breaks the documented schema: skip it, count it, keep syncing."""

    kind = "provider_data"


class RevokeVerdict(StrEnum):
    """What a provider's revoke endpoint said about one token.

    ``TOKEN_INVALID`` is no proof that the grant is gone: a refresh token rotated out a moment ago is
    "invalid" while its successor is alive. Only ``REVOKED`` is audited as revoked at the provider.
    """

    REVOKED = "revoked"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a verdict, not a secret
    REFUSED = "refused"


@dataclass(frozen=True)
class TokenSet:
    """The OAuth tokens of one integration; only ever stored encrypted (store.vault)."""

    access_token: str | None
    refresh_token: str
    expiry: datetime | None
    scopes: frozenset[str] = field(default_factory=frozenset)


TokenSink = Callable[[TokenSet], None]
"""Called the moment a refresh rotates tokens, so the new refresh token is persisted before use."""


@dataclass(frozen=True)
class Page:
    """One page of raw records of one resource (``kind``), e.g. the students of one class.

    ``cursor``, on pages of a change stream, is what to store once the page has been applied.
    """

    kind: str
    parent_id: str | None
    records: Sequence[RawRecord]
    cursor: str | None = None


class RosterConnector(Protocol):
    """What the worker needs of a provider connector."""

    def classes(self, field_mask: str) -> Iterator[Page]: ...

    def members(self, class_id: str, role: str, field_mask: str) -> Iterator[Page]: ...

    def revoke(self) -> RevokeVerdict: ...
