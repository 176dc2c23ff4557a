"""One batch call's parts, the failed ones sent again (and only they) until they are answered or time is up.

Why: Google's ``/batch`` and Graph's ``$batch`` answer each part on its own, so one throttled or
failed part must not cost the parts already answered. Both connectors run the same rounds: send
what is pending, sort each part's answer (the provider's own step, ``answer``), refresh once if a
part was refused with 401, then either wait out the longest Retry-After in place and send the rest
again, or give up (the provider's own step, ``give_up``) once the attempts are spent or the wait is
too long to hold a worker for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from connectors.base import ConnectorError

Part = TypeVar("Part")
Outcome = TypeVar("Outcome")


@dataclass
class Round(Generic[Part]):
    """What one round's answers decided: the parts to send again, how long they asked to wait, and why."""

    retry: dict[str, Part] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    failures: dict[str, ConnectorError] = field(default_factory=dict)
    """The error each part to send again would end in, if it is never answered."""
    unauthorized: bool = False
    """A part was refused with 401: the round's token earns the request's one refresh."""
    throttled: bool = False
    """A part was throttled (429, or 503/504 where the provider documents them as throttling)."""
    challenge: str | None = None
    """The first claims challenge a 401 part carried (Graph), sent with the refresh."""


@dataclass(frozen=True)
class RetryRules:
    attempts: int
    """Rounds a part may be sent in (the first and the retries)."""
    max_inline_wait: float
    """The longest wait held in place between rounds; a longer one is given up to the caller."""


def resend_failed(
    pending: dict[str, Part],
    answer: Callable[[dict[str, Part]], Round[Part]],
    *,
    rules: RetryRules,
    reauthorize: Callable[[Round[Part]], None],
    give_up: Callable[[Round[Part], float, bool], Outcome],
    sleep: Callable[[float], None],
) -> Outcome | None:
    """Rounds of ``answer(pending)`` until no part is pending (None) or ``give_up(round, wait, last)`` says
    what is left: ``last`` when the attempts are spent, else the wait was over ``rules.max_inline_wait``.

    ``reauthorize(round)`` runs after a round with a 401 part (it refreshes, or raises when the request's
    one refresh is spent). Errors ``answer`` raises (a part no retry can help) end the batch at once.
    """
    for attempt in range(1, rules.attempts + 1):
        round_ = answer(pending)
        if round_.unauthorized:
            reauthorize(round_)
        pending = round_.retry
        if not pending:
            return None
        wait = max(round_.waits, default=0.0)
        last = attempt == rules.attempts
        if last or wait > rules.max_inline_wait:
            return give_up(round_, wait, last)
        if wait > 0:
            sleep(wait)
    return None  # pragma: no cover - the loop returns on its last attempt
