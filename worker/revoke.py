"""An admin or teacher ends an integration here: local revoke first (fences any running sync), then the provider.

The local step is one transaction (status, generation, tokens, purge, audit), so it wins
against a running sync whatever the provider answers. The provider revoke is best effort and
audited either way, and only a provider's confirmation is audited as ``provider_revoked``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from connectors.base import ConnectorError, RevokeVerdict
from store import integrations
from store.vault import VaultError
from worker.providers import provider, tokens_from_payload
from worker.runtime import Runtime

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
    UNSUPPORTED = "unsupported"  # the provider has no revoke endpoint: access ends when disconnected there


@dataclass(frozen=True)
class RevokeResult:
    integration_id: int
    already_revoked: bool
    at_provider: AtProvider

    @property
    def provider_revoked(self) -> bool:
        return self.at_provider is AtProvider.REVOKED


def revoke_integration(runtime: Runtime, integration_id: int, *, actor: str, reason: str = "") -> RevokeResult:
    """End the integration here, then at the provider; a second revoke (even a concurrent one) is a no-op."""
    provider_name = integrations.load(runtime.engine, integration_id).provider
    ended = integrations.end_integration(runtime.engine, integration_id, status="revoked", actor=actor, reason=reason)
    if ended is None:
        return RevokeResult(integration_id, already_revoked=True, at_provider=AtProvider.NONE_HELD)
    if ended.token_blob is None:
        log.info("integration %s revoked by %s; it held no grant any more", integration_id, actor)
        return RevokeResult(integration_id, already_revoked=False, at_provider=AtProvider.NONE_HELD)
    verdict = revoke_grant(runtime, provider_name, integration_id, ended.token_blob, actor=actor)
    at_provider = (
        {
            RevokeVerdict.REVOKED: AtProvider.REVOKED,
            RevokeVerdict.UNSUPPORTED: AtProvider.UNSUPPORTED,
        }.get(verdict, AtProvider.NOT_CONFIRMED)
        if verdict is not None
        else AtProvider.NOT_CONFIRMED
    )
    log.info("integration %s revoked by %s; provider revoke: %s", integration_id, actor, at_provider.value)
    return RevokeResult(integration_id, already_revoked=False, at_provider=at_provider)


def revoke_grant(
    runtime: Runtime, provider_name: str, integration_id: int, token_blob: bytes, *, actor: str
) -> RevokeVerdict | None:
    """Best effort: revoke at the provider the grant whose tokens were just removed here; audit the verdict.

    A refresh token the provider calls invalid may have been rotated a moment ago by a sync that
    is refreshing right now, so the access token of the same grant is tried too; if neither ends
    the grant, the audit says ``provider_token_invalid``, never ``provider_revoked``. A provider
    without a revoke endpoint is audited ``provider_revoke_unsupported``. None: the revoke failed.
    """
    verdict: RevokeVerdict | None = None
    try:
        tokens = tokens_from_payload(runtime.vault.open(token_blob))
        revoke_token = provider(provider_name).revoke_token
        verdict = revoke_token(runtime.settings, tokens.refresh_token)
        if (
            verdict is RevokeVerdict.TOKEN_INVALID
            and tokens.access_token
            and revoke_token(runtime.settings, tokens.access_token) is RevokeVerdict.REVOKED
        ):
            verdict = RevokeVerdict.REVOKED
    except (ConnectorError, VaultError) as error:
        log.warning("integration %s: revoke at the provider failed: %s", integration_id, error)
    with runtime.engine.begin() as connection:
        action = AUDIT_ACTION[verdict] if verdict is not None else "provider_revoke_failed"
        integrations.record_audit(connection, integration_id, actor, action)
    return verdict
