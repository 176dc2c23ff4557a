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


class AccessBlocked(ConnectorError):
    """The provider refuses us for now by a setting the school controls (an admin switched data access off,
    a Conditional Access policy, a missing licence): the school can switch it back, so this is not a revocation.

    Tokens and roster are kept and nothing is revoked at the provider; the integration waits as ``blocked``,
    retried on the schedule, and ends like a revoke only after ``BLOCKED_GRACE_DAYS``. ``public`` is worded
    for the school's admin (what was switched off, where to switch it back); ``reason`` is a short word.
    """

    kind = "access_blocked"

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


class RecordUnavailable(ProviderDataError):
    """A 404 for one record: unshared, deleted, or out of the token's reach (Clever providers.md 2.6, Graph 3.7).

    A ``ProviderDataError``, so a generic caller skips and counts it; a provider-aware one soft-deletes.
    """

    kind = "record_unavailable"


class LinkRefused(ConnectorError):
    """The provider refused to finish a link: a bad, reused or expired code, a PKCE verifier, state or nonce
    that does not match, a consent that is missing. Nothing was stored; the person tries the link again."""

    kind = "link_refused"


class SetupRequired(ConnectorError):
    """The provider account lacks something only its admin can set up (e.g. a Microsoft 365 tenant with no
    education data): every call would fail the same way until then, so retrying is pointless, and nothing
    was withdrawn, so nothing is purged or revoked.

    The sync marks the integration ``failed`` with ``public`` as the status reason, worded for that admin;
    tokens and roster are kept, and an admin resumes the link once the setup is done.
    """

    kind = "setup_required"


@dataclass(frozen=True)
class Refusal:
    """One row of a provider's error table: the taxonomy class an answer becomes, and its safe text.

    Why rows, not branches: each connector's table then reads like the provider's error documentation
    it cites, one answer a line. ``text`` may name ``{status}`` and ``{code}`` (values the connector
    checked, never the body); ``reason`` goes to the classes that take one (``AccessRevoked``,
    ``AccessBlocked``, ``ChangesUnavailable``).
    """

    error: Callable[..., ConnectorError]
    text: str
    reason: str | None = None

    def __call__(self, **values: object) -> ConnectorError:
        public = self.text.format(**values)
        return self.error(public) if self.reason is None else self.error(public, reason=self.reason)


class PageBound:
    """Counts the pages of one listing, so no pagination loop can run forever.

    A provider that keeps handing out new cursors (a bug, a cycle longer than our loop checks, a
    hostile proxy) would otherwise hold a worker and its lease for good. ``next_page()`` is called
    before each page is fetched; the one past ``limit`` (``ROSTERSYNC_MAX_PAGES``) is refused as a
    ``ProviderDataError`` naming the setting, and the listing is treated as not received in full.
    """

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.count = 0

    def next_page(self) -> None:
        self.count += 1
        if self.count > self.limit:
            raise ProviderDataError(
                f"{self.what}: more than {self.limit} pages (ROSTERSYNC_MAX_PAGES); listing stopped"
            )


class ChangesUnavailable(ConnectorError):
    """The change feed cannot continue from the stored cursor (expired, switched off): run a full sync instead.

    ``reason`` is a short word for logs (``expired``, ``disabled``, ...); never retried as such.
    """

    kind = "changes_unavailable"

    def __init__(self, public: str, *, reason: str) -> None:
        super().__init__(public)
        self.reason = reason


class RevokeVerdict(StrEnum):
    """What a provider's revoke endpoint said about one token.

    ``TOKEN_INVALID`` is no proof that the grant is gone: a refresh token rotated out a moment ago is
    "invalid" while its successor is alive. Only ``REVOKED`` is audited as revoked at the provider.
    """

    REVOKED = "revoked"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a verdict, not a secret
    REFUSED = "refused"
    UNSUPPORTED = (
        "unsupported"  # the provider has no revoke endpoint (Clever): the grant lives until disconnected there
    )


@dataclass(frozen=True)
class TokenSet:
    """The OAuth tokens of one integration; only ever stored encrypted (store.vault)."""

    access_token: str | None
    refresh_token: str
    expiry: datetime | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    extra: Mapping[str, str] = field(default_factory=dict)
    """What a link needs besides the token (e.g. Clever's ``district_id``/``teacher_id``): sealed with it,
    never stored in a column in clear."""


TokenSink = Callable[[TokenSet], None]
"""Called the moment a refresh rotates tokens, so the new refresh token is persisted before use."""


UNREADABLE = "unreadable"
"""``Page.kind`` of a marker: the roster of class ``parent_id`` could not be read; keep what is stored of it."""


@dataclass(frozen=True)
class Page:
    """One page of raw records of one resource (``kind``), e.g. the students of one class.

    ``cursor`` is set on change-feed pages only: the position after this page, to be stored in the
    same transaction as the page's writes so that a crash resumes from the last applied page.
    """

    kind: str
    parent_id: str | None
    records: Sequence[RawRecord]
    cursor: str | None = None
    continued: bool = False
    """A later part of an answer an earlier page began (a long page read as a stream): it cost no request."""


Masks = Mapping[str, str]
"""Role (``class``, ``student``, ``teacher``) -> the provider's field selector, derived from the allowlist."""


def no_check() -> None:
    """``RosterConnector.before_request`` until a sync sets its own."""


class RosterConnector(Protocol):
    """What the worker needs of a provider connector; the worker never names a provider field.

    A full listing is ``classes`` then ``members``; ``change_cursor``/``changes`` are the change feed
    (``change_cursor`` returns None when the provider, or this kind of link, has none).
    """

    @property
    def requests_made(self) -> int:
        """HTTP round trips to the provider's API so far (a ``$batch`` is one; token calls are not counted).

        Pages are no measure of it: one answer can hold many pages, and one cursor read can take several.
        """
        ...

    before_request: Callable[[], None]
    """Called before every HTTP round trip to the API (not token calls); the sync sets its fence here, so that
    no request goes out once the integration ended, and pages already received cost no check."""

    def classes(self, masks: Masks) -> Iterator[Page]:
        """Pages of classes; a provider whose classes carry their members returns them inline."""
        ...

    def members(self, class_ids: Sequence[str], masks: Masks) -> Iterator[Page]:
        """The rest of the roster; a class whose roster cannot be read is an ``UNREADABLE`` marker page."""
        ...

    def change_cursor(self) -> str | None:
        """The change-feed position as of now, taken before a full listing; None: no change feed."""
        ...

    def changes(self, cursor: str) -> Iterator[Page]:
        """Pages after ``cursor``, each with the cursor after it; ``ChangesUnavailable`` forces a full sync."""
        ...

    def close(self) -> None: ...
