"""Retrying provider revokes that failed transiently, until the provider answers or the attempt cap is hit.

The local revoke is long done (tokens gone from the integration, roster purged); what is left is
the grant at the provider, kept sealed in a pending-revoke row. Each attempt's verdict is audited
by ``store.pending_revokes.settle``; giving up is audited as ``provider_revoke_failed`` with the
reason, for an admin to see in the audit log and act on at the provider's own console.
"""

from __future__ import annotations

import logging

from connectors.base import RateLimited, RevokeVerdict, TransientError
from store import pending_revokes
from store.runtime import Runtime
from store.vault import VaultError
from sync.grants import AUDIT_ACTION, ask_provider

log = logging.getLogger("rostersync.revoke")

ACTOR = "system:revoke-retry"


def backoff_seconds(runtime: Runtime, attempts: int) -> int:
    """Doubling from the minimum, capped: 1 min, 2, 4 .. 6 h with the defaults."""
    settings = runtime.settings
    return int(
        min(settings.revoke_retry_max_backoff_seconds, settings.revoke_retry_min_backoff_seconds * 2 ** (attempts - 1))
    )


def retry_one(runtime: Runtime, pending_id: int) -> str:
    """One more attempt at one pending revoke; returns the audited action, or ``pending`` / ``gone``."""
    pending = pending_revokes.load(runtime.engine, pending_id)
    if pending is None:
        return "gone"  # settled by another worker meanwhile
    try:
        verdict = ask_provider(runtime, pending.provider, pending.token_blob)
    except (TransientError, RateLimited) as error:
        attempts = pending.attempts + 1
        if attempts >= runtime.settings.revoke_retry_max_attempts:
            reason = f"provider did not confirm after {attempts} attempts (last: {error}); revoke it at the provider"
            pending_revokes.settle(
                runtime.engine, pending_id, actor=ACTOR, action="provider_revoke_failed", reason=reason
            )
            log.warning(
                "integration %s: gave up revoking at the provider after %s attempts", pending.integration_id, attempts
            )
            return "provider_revoke_failed"
        pending_revokes.retry_later(
            runtime.engine,
            pending_id,
            attempts=attempts,
            retry_in_seconds=backoff_seconds(runtime, attempts),
            error=str(error),
        )
        return "pending"
    except VaultError:
        reason = "the kept token cannot be decrypted with the configured keys; revoke it at the provider"
        pending_revokes.settle(runtime.engine, pending_id, actor=ACTOR, action="provider_revoke_failed", reason=reason)
        return "provider_revoke_failed"
    action = AUDIT_ACTION[verdict]
    reason = "" if verdict is RevokeVerdict.REVOKED else f"after {pending.attempts + 1} attempts"
    pending_revokes.settle(runtime.engine, pending_id, actor=ACTOR, action=action, reason=reason)
    log.info("integration %s: pending provider revoke settled: %s", pending.integration_id, action)
    return action
