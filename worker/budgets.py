"""Per-provider request budgets shared by every worker: Dramatiq's window rate limiter, on the broker's Redis.

``PROVIDER_BUDGETS=google=3000/60`` keeps the whole fleet under 3000 Google requests a minute
(the provider's published per-project quota, with headroom), however many workers run. One unit
is taken before each page a connector fetches (and one to learn that a list ended: it errs on the
safe side); when the budget is spent the sync stops with
``RateLimited`` and its actor retries it after the window, like a provider's own 429. On the
in-memory broker the budget is this process's alone (one machine has one worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from connectors.base import Masks, Page, RateLimited, RosterConnector
from settings import Settings

_lock = threading.Lock()
_limiters: dict[tuple[str, str, int, int], WindowRateLimiter] = {}


class BudgetSpent(RateLimited):
    """Our own fleet-wide budget for the provider is spent: rostersync's throttle, not the provider's verdict.

    Retried like a rate limit, but when the retry policy's caps are reached the integration is not
    marked ``failed`` (the provider never refused it): the sync is simply due again at its next turn.
    """

    kind = "budget_spent"


def limiter(settings: Settings, provider: str) -> WindowRateLimiter | None:
    """The provider's shared limiter, or None when it has no budget configured."""
    budget = settings.budgets().get(provider)
    if budget is None:
        return None
    limit, window = budget
    key = f"{settings.broker_namespace}:budget:{provider}"
    cache_key = (settings.broker_url or "memory", key, limit, window)
    with _lock:
        found = _limiters.get(cache_key)
        if found is None:
            backend = RedisBackend(url=settings.broker_url) if settings.broker_url else StubBackend()  # type: ignore[no-untyped-call]
            found = _limiters[cache_key] = WindowRateLimiter(backend, key, limit=limit, window=window)  # type: ignore[no-untyped-call]
        return found


def take_one(settings: Settings, provider: str) -> None:
    """Spend one request of the provider's budget, or raise ``RateLimited`` to retry after the window."""
    shared = limiter(settings, provider)
    if shared is None:
        return
    with shared.acquire(raise_on_failure=False) as acquired:
        if not acquired:
            raise BudgetSpent(float(shared.window))


def _metered(pages: Iterator[Page], take: Callable[[], None]) -> Iterator[Page]:
    while True:
        take()
        try:
            page = next(pages)
        except StopIteration:
            return
        yield page


class Budgeted:
    """A connector whose every page fetch (and change-cursor read) first spends one unit of the provider's budget."""

    def __init__(self, inner: RosterConnector, settings: Settings, provider: str) -> None:
        self.inner = inner
        self._settings = settings
        self._provider = provider

    def take(self) -> None:
        take_one(self._settings, self._provider)

    def classes(self, masks: Masks) -> Iterator[Page]:
        return _metered(iter(self.inner.classes(masks)), self.take)

    def members(self, class_ids: Sequence[str], masks: Masks) -> Iterator[Page]:
        return _metered(iter(self.inner.members(class_ids, masks)), self.take)

    def change_cursor(self) -> str | None:
        self.take()
        return self.inner.change_cursor()

    def changes(self, cursor: str) -> Iterator[Page]:
        return _metered(iter(self.inner.changes(cursor)), self.take)

    def close(self) -> None:
        self.inner.close()


def budgeted(inner: RosterConnector, settings: Settings, provider: str) -> RosterConnector:
    return Budgeted(inner, settings, provider) if provider in settings.budgets() else inner
