"""Grants at the provider: ending one there, and keeping a revoke pending when the provider fails transiently.

The sync cycle calls this when a grant must end mid-cycle (a token refused, a scope withdrawn);
the revoke service calls it after the local end. Only a provider's confirmation is audited as
``provider_revoked``; a transient failure keeps the grant sealed in a pending revoke, retried later.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from connectors.base import ConnectorError, RateLimited, RevokeVerdict, TransientError
from providers.registry import provider, tokens_from_payload
from store import audit, pending_revokes
from store.runtime import Runtime
from store.vault import VaultError

log = logging.getLogger("rostersync.revoke")

AUDIT_ACTION = {
    RevokeVerdict.REVOKED: "provider_revoked",
    RevokeVerdict.TOKEN_INVALID: "provider_token_invalid",
    RevokeVerdict.REFUSED: "provider_revoke_failed",
    RevokeVerdict.UNSUPPORTED: "provider_revoke_unsupported",
}


class AtProvider(StrEnum):
    """What became of the grant at the provider when we ended an integration."""

    REVOKED = "revoked"  # the provider confirmed it
    NOT_CONFIRMED = "not_confirmed"  # unreachable, refused, or the token was unknown to it: see the audit log
    NONE_HELD = "none_held"  # we held no token: the sync that degraded it had already revoked the grant
    PENDING = "pending"  # the provider failed transiently: kept sealed and retried by the worker (issue 8)
    UNSUPPORTED = "unsupported"  # the provider has no revoke endpoint: access ends when disconnected there


def revoke_grant(runtime: Runtime, provider_name: str, integration_id: int, token_blob: bytes, *, actor: str) -> bool:
    """True when the provider confirmed; a transient failure is kept pending (and retried), see below."""
    verdict = revoke_at_provider(runtime, provider_name, integration_id, token_blob, actor=actor)
    return verdict is AtProvider.REVOKED


def revoke_at_provider(
    runtime: Runtime, provider_name: str, integration_id: int, token_blob: bytes, *, actor: str
) -> AtProvider:
    """Revoke now; when the provider fails transiently, keep the grant sealed in a pending revoke to retry."""
    try:
        verdict = ask_provider(runtime, provider_name, token_blob)
    except (TransientError, RateLimited) as error:
        log.warning("integration %s: revoke at the provider failed, will retry: %s", integration_id, error)
        pending_revokes.keep(
            runtime.engine,
            integration_id=integration_id,
            provider=provider_name,
            token_blob=token_blob,
            actor=actor,
            error=str(error),
            retry_in_seconds=runtime.settings.revoke_retry_min_backoff_seconds,
        )
        return AtProvider.PENDING
    except (ConnectorError, VaultError) as error:
        log.warning("integration %s: revoke at the provider failed: %s", integration_id, error)
        verdict = None
    with runtime.engine.begin() as connection:
        action = AUDIT_ACTION[verdict] if verdict is not None else "provider_revoke_failed"
        audit.record(connection, action=action, actor=actor, integration_id=integration_id)
    if verdict is RevokeVerdict.UNSUPPORTED:
        return AtProvider.UNSUPPORTED  # audited provider_revoke_unsupported: never claimed as a revoke
    return AtProvider.REVOKED if verdict is RevokeVerdict.REVOKED else AtProvider.NOT_CONFIRMED


def ask_provider(runtime: Runtime, provider_name: str, token_blob: bytes) -> RevokeVerdict:
    """One attempt at the provider; raises what the connector raises (TransientError: try again later).

    A refresh token the provider calls invalid may have been rotated a moment ago by a sync that
    is refreshing right now, so the access token of the same grant is tried too; if neither ends
    the grant, the verdict is ``TOKEN_INVALID``, never ``REVOKED``.
    """
    tokens = tokens_from_payload(runtime.vault.open(token_blob))
    revoke_token = provider(provider_name).revoke_token
    verdict = revoke_token(runtime.settings, tokens.refresh_token)
    if (
        verdict is RevokeVerdict.TOKEN_INVALID
        and tokens.access_token
        and revoke_token(runtime.settings, tokens.access_token) is RevokeVerdict.REVOKED
    ):
        verdict = RevokeVerdict.REVOKED
    return verdict
