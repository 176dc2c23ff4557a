"""Per-provider request budgets shared by every worker: Dramatiq's window rate limiter, on the broker's Redis.

``PROVIDER_BUDGETS=<provider>=3000/60`` keeps the whole fleet under 3000 of its requests a minute
(the provider's published per-project quota, with headroom), however many workers run. One unit
is taken before each page a connector fetches; the one taken to learn that a list ended, and the
one of a later part of an answer read as a stream (no request went out for either), is given
back, so a fleet can run close to the quota; when the budget is spent the sync stops with
``RateLimited`` and its actor retries it after the window, like a provider's own 429. On the
in-memory broker the budget is this process's alone (one machine has one worker).

A unit per page stays right where one HTTP round trip carries many pages (a provider's batch
endpoint): a provider that counts every call inside a batch against the quota sees, and each page a
for each page a connector yields, one such call (a part retried in place is one more the budget does not see).
The units of a batch are taken as its pages are handed out, i.e. just after the batch went out:
within a window that is the same count, only up to one batch (50 calls) late.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from connectors.base import Masks, Page, RateLimited, RosterConnector
from settings import Settings

WAIT_SECONDS = 2.0
POLL_SECONDS = 0.1
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


def take_one(settings: Settings, provider: str) -> int | None:
    """Spend one request of the provider's budget, or raise ``BudgetSpent`` to retry after the window.

    A spent budget is waited on for up to ``WAIT_SECONDS`` first: in a sliding window units come
    free every second, and a sync that stopped half-way would spend its pages again on its retry.
    Returns the second the unit was counted in (for ``give_back``), None without a budget.
    """
    shared = limiter(settings, provider)
    if shared is None:
        return None
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        second = int(time.time())
        with shared.acquire(raise_on_failure=False) as acquired:
            if acquired:
                return second
        if time.monotonic() >= deadline:
            raise BudgetSpent(float(shared.window))
        time.sleep(POLL_SECONDS * (0.5 + random.random()))


def give_back(settings: Settings, provider: str, second: int | None) -> None:
    """Return a unit spent on no request: the end of a list is learnt without fetching.

    Dramatiq's window limiter counts each second in a key ``<key>@<unix second>``; there is no
    public refund, so the unit is taken off the second it was counted in (never below zero).
    """
    shared = limiter(settings, provider)
    if shared is None or second is None:
        return
    shared.backend.decr(f"{shared.key}@{second}", 1, minimum=0, ttl=shared.window_millis)


def _metered(
    pages: Iterator[Page], take: Callable[[], int | None], refund: Callable[[int | None], None]
) -> Iterator[Page]:
    while True:
        taken = take()
        try:
            page = next(pages)
        except StopIteration:
            refund(taken)
            return
        if page.continued:
            refund(taken)  # a later part of an answer already received: no request went out for it
        yield page


class Budgeted:
    """A connector whose every page fetch (and change-cursor read) first spends one unit of the provider's budget."""

    def __init__(self, inner: RosterConnector, settings: Settings, provider: str) -> None:
        self.inner = inner
        self._settings = settings
        self._provider = provider

    def take(self) -> int | None:
        return take_one(self._settings, self._provider)

    def refund(self, second: int | None) -> None:
        give_back(self._settings, self._provider, second)

    def classes(self, masks: Masks) -> Iterator[Page]:
        return _metered(iter(self.inner.classes(masks)), self.take, self.refund)

    def members(self, class_ids: Sequence[str], masks: Masks) -> Iterator[Page]:
        return _metered(iter(self.inner.members(class_ids, masks)), self.take, self.refund)

    def change_cursor(self) -> str | None:
        self.take()
        return self.inner.change_cursor()

    def changes(self, cursor: str) -> Iterator[Page]:
        return _metered(iter(self.inner.changes(cursor)), self.take, self.refund)

    @property
    def requests_made(self) -> int:
        return self.inner.requests_made

    @property
    def before_request(self) -> Callable[[], None]:
        return self.inner.before_request

    @before_request.setter
    def before_request(self, check: Callable[[], None]) -> None:
        self.inner.before_request = check

    def close(self) -> None:
        self.inner.close()


def fetch(connector: RosterConnector, read: Callable[[RosterConnector], Iterable[Page]]) -> Iterator[Page]:
    """A read beyond the protocol's (a provider row's own, e.g. one person's classes) on the connector ``budgeted``
    wrapped, spending the provider's budget page by page like every other listing."""
    if isinstance(connector, Budgeted):
        return _metered(iter(read(connector.inner)), connector.take, connector.refund)
    return iter(read(connector))


def budgeted(inner: RosterConnector, settings: Settings, provider: str) -> RosterConnector:
    return Budgeted(inner, settings, provider) if provider in settings.budgets() else inner
