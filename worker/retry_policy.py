"""One retry policy for every place a sync runs: the Dramatiq actor and ``rostersync sync --now``.

Why one module: a sync retried by a queue and the same sync run at a terminal must agree on when
to try again and when to stop, or an admin cannot tell what rostersync will do. The policy is pure
arithmetic over (what failed, which attempt, how long we have waited already); the actor turns its
answer into ``dramatiq.Retry(delay=...)``, ``run_with_retries`` into a sleep shown on stderr. When the
policy gives up, the integration is marked ``failed`` with a reason written here, from fixed words per
error kind: no provider text (which might carry a name) ever reaches the admin screen.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from connectors.base import ConnectorError, RateLimited, TransientError
from providers.registry import ERROR_WORDS
from settings import Settings
from store import integrations
from store.runtime import Runtime
from sync.budgets import BudgetSpent
from sync.cycle import run_sync

log = logging.getLogger("rostersync.retry")

RETRYABLE = (RateLimited, TransientError)
"""The only failures worth another attempt; every other one ends the run (run_sync has dealt with it)."""

GIVE_UP_WHY = {
    "rate_limited": "the provider kept rate-limiting it",
    "client_config": "the provider kept refusing rostersync's own client credentials (check the provider's "
    "CLIENT_ID and CLIENT_SECRET settings)",
}
"""Per error kind every provider raises; a kind only one provider raises has its words in its row (``error_words``)."""
DEFAULT_WHY = "the provider kept failing or could not be reached"

_random = random.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed sync again, and when to stop trying.

    ``max_attempts`` counts the first attempt (``MAX_RETRIES`` + 1); ``max_wait`` caps the sum of all
    waits of one sync (``RETRY_MAX_WAIT_SECONDS``); transient faults back off exponentially from
    ``min_backoff`` to ``max_backoff`` with jitter, rate limits wait what the provider asked plus jitter.
    """

    max_attempts: int
    max_wait: float
    min_backoff: float
    max_backoff: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_retries + 1,
            max_wait=float(settings.retry_max_wait_seconds),
            min_backoff=settings.retry_min_backoff_ms / 1000,
            max_backoff=settings.retry_max_backoff_ms / 1000,
        )

    def wait_after(
        self, error: BaseException, attempt: int, waited: float, *, rng: random.Random = _random
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None means stop (not retryable, or a cap reached).

        A rate limit is never retried sooner than the provider asked: when that alone would pass the
        total-wait cap, the policy stops now instead of waiting for a retry it could not make.
        """
        if not isinstance(error, RETRYABLE) or attempt >= self.max_attempts:
            return None
        remaining = self.max_wait - waited
        if isinstance(error, RateLimited):
            asked = max(0.0, error.retry_after)
            if asked > remaining:
                return None
            # The jitter spreads the workers a provider throttled at once over the next window.
            return min(asked + rng.uniform(0, self.min_backoff), remaining)
        if remaining <= 0:
            return None
        ceiling = min(self.max_backoff, self.min_backoff * 2 ** (attempt - 1))
        return min(rng.uniform(ceiling / 2, ceiling), remaining)


def give_up_reason(error: ConnectorError, attempts: int, waited: float) -> str:
    """The admin-facing reason: fixed words per error kind, never the provider's text."""
    own = ERROR_WORDS.get(error.kind)
    why = GIVE_UP_WHY.get(error.kind, own.give_up if own is not None else DEFAULT_WHY)
    return (
        f"sync gave up after {attempts} attempt(s) and {round(waited)}s of waiting: {why}; "
        "resume it with rostersync resume ID (or the admin API) once the cause is fixed"
    )


def _blocked(runtime: Runtime, integration_id: int) -> bool:
    try:
        return integrations.load(runtime.engine, integration_id).status == "blocked"
    except integrations.UnknownIntegration:
        return False  # erased meanwhile: mark_failed finds nothing either


def give_up(
    runtime: Runtime, integration_id: int, generation: int, error: ConnectorError, attempts: int, waited: float
) -> str:
    """End the retries: mark the integration ``failed`` (fenced on ``generation``); returns the outcome word.

    ``fenced`` when a revoke or re-link came first. Our own request budget (``BudgetSpent``) marks
    nothing: the provider never refused this integration, it is only due again at its next turn.
    """
    if isinstance(error, BudgetSpent):
        log.info(
            "integration %s: request budget still spent after %s attempt(s); due again later", integration_id, attempts
        )
        return error.kind
    if _blocked(runtime, integration_id):
        # Still blocked (the school's setting, or an outage on top): it stays blocked, tried again after its
        # wait, and its grace keeps counting; ``failed`` would keep the roster until an admin came by.
        log.info("integration %s: still blocked after %s attempt(s); tried again later", integration_id, attempts)
        return error.kind
    reason = give_up_reason(error, attempts, waited)
    if not integrations.mark_failed(runtime.engine, integration_id, generation, actor="system:sync", reason=reason):
        return "fenced"
    log.warning("integration %s failed: %s", integration_id, reason)
    return error.kind


@dataclass(frozen=True)
class Wait:
    """One wait of ``run_with_retries``, for whoever shows it (the CLI prints it on stderr)."""

    integration_id: int
    kind: str  # the error kind that caused it: rate_limited, transient, ...
    seconds: float
    next_attempt: int
    max_attempts: int


WAIT_WORDS = {
    "rate_limited": "rate limited by the provider",
    "budget_spent": "rostersync's own request budget for the provider is spent (PROVIDER_BUDGETS)",
    "client_config": "client credentials refused",
}
DEFAULT_WAIT = "the provider failed or could not be reached"


def wait_line(wait: Wait) -> str:
    """How a wait reads at a terminal: which integration, why, how long, which attempt comes next."""
    own = ERROR_WORDS.get(wait.kind)
    why = WAIT_WORDS.get(wait.kind, own.wait if own is not None else DEFAULT_WAIT)
    return (
        f"integration {wait.integration_id}: {why}; waiting {wait.seconds:.1f}s "
        f"before attempt {wait.next_attempt} of {wait.max_attempts}"
    )


def run_with_retries(
    runtime: Runtime,
    integration_id: int,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[Wait], None] | None = None,
) -> str:
    """Run one sync here and now under the policy; returns its outcome word.

    Success and every non-retryable outcome return as ``run_sync`` reports them. After the last
    allowed attempt the integration is ``failed`` and the outcome is the kind of the last error
    (``rate_limited``, ``transient``, ...), the word the actor's last run records too.
    """
    policy = RetryPolicy.from_settings(runtime.settings)
    attempt, waited = 0, 0.0
    while True:
        attempt += 1
        generation = integrations.load(runtime.engine, integration_id).generation
        try:
            return run_sync(runtime, integration_id).outcome
        except RETRYABLE as error:
            wait = policy.wait_after(error, attempt, waited)
            if wait is None:
                return give_up(runtime, integration_id, generation, error, attempt, waited)
            kind = error.kind
        shown = Wait(integration_id, kind, wait, attempt + 1, policy.max_attempts)
        log.info("%s", wait_line(shown))
        if on_wait is not None:
            on_wait(shown)
        sleep(wait)
        waited += wait
