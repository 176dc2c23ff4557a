"""What a sync did (``SyncOutcome``, counts only) and what it means to the person who asked for it.

The meaning is one line per integration, and an exit code. The words are ours, fixed per outcome
kind, so they carry no token and no personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from providers.registry import ERROR_WORDS
from store.runs import RunCounts


@dataclass
class SyncOutcome(RunCounts):
    """What one run did, in counts only: the run record's counters (store.runs.RunCounts) and how it ended."""

    integration_id: int
    outcome: str = "ok"  # set to the failure kind by run_sync when a run does not complete; "held": see store.breaker
    run_id: int = 0
    mode: str = "full"  # "full" (listing and sweep) or "changes" (change feed from the stored cursor)
    removed: int = 0
    incomplete_classes: set[int] = field(default_factory=set)

    def counts(self) -> RunCounts:
        """As the run record stores them: the rows written include the rows removed."""
        return replace(super().counts(), rows_written=self.rows_written + self.removed)


MEANING = {
    "revoked": "access was revoked at the provider: integration ended, roster purged",
    "degraded": "a required permission was withdrawn: integration degraded, roster purged",
    "access_blocked": "the provider blocks access for now by a setting the school controls: integration "
    "blocked, tokens and roster kept, tried again later (the reason and what to do: `rostersync status`)",
    "failed": "the stored token cannot be decrypted with the configured keys: add the key that sealed it back to "
    "ROSTERSYNC_TOKEN_KEYS, then `rostersync resume {id}` (re-link only if that key is lost)",
    "fenced": "the integration was revoked or re-linked during the sync: later writes discarded",
    "transient": "the provider kept failing or could not be reached: retries exhausted, integration marked failed",
    "rate_limited": "the provider kept rate-limiting us: retries exhausted, integration marked failed",
    "budget_spent": "rostersync's own request budget for the provider (PROVIDER_BUDGETS) stayed spent: "
    "retries exhausted, due again at its next turn",
    "client_config": "the provider kept refusing our client credentials: retries exhausted, integration marked failed",
    "provider_data": "the provider's class list broke its documented schema: nothing was removed",
    "setup_required": "the provider needs its admin to set something up first (the reason is in `rostersync "
    "status`): integration marked failed, roster kept; `rostersync resume` once it is done",
    "error": "unexpected error (run with -v for the log)",
    "skipped:busy": "another sync of it is running",
}
"""The words of every outcome any provider can end in; a kind only one provider raises has its words in that
provider's row (``Provider.error_words``)."""


def meaning(outcome: str) -> str:
    """What an outcome means to the person who asked: ours, or the raising provider's own words for its kind."""
    if outcome in MEANING:
        return MEANING[outcome]
    own = ERROR_WORDS.get(outcome)
    return own.meaning if own is not None else outcome


@dataclass(frozen=True)
class Verdict:
    integration_id: int
    ok: bool
    line: str


def verdict(integration_id: int, outcome: str | None) -> Verdict:
    if outcome == "ok":
        return Verdict(integration_id, True, f"integration {integration_id}: synced")
    if outcome == "held":  # the sync completed; only its removals wait for an admin
        return Verdict(
            integration_id,
            True,
            f"integration {integration_id}: synced; removals held by the mass-removal breaker "
            "(see `rostersync held list`)",
        )
    if outcome is None:
        why = "the sync did not run (run with -v for the log)"
    elif outcome.startswith("skipped:") and outcome not in MEANING:
        why = f"skipped, it is {outcome.split(':', 1)[1]}"
    else:
        why = meaning(outcome).replace("{id}", str(integration_id))
    return Verdict(integration_id, False, f"integration {integration_id}: sync failed: {why}")
