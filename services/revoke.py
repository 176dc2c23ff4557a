"""An admin or teacher ends an integration here: local revoke first (fences any running sync), then the provider.

The local step is one transaction (status, generation, tokens, purge, audit), so it wins
against a running sync whatever the provider answers. The provider revoke (sync.grants) is best
effort and audited either way, and only a provider's confirmation is audited as ``provider_revoked``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from store import integrations
from store.runtime import Runtime
from sync.grants import AtProvider, revoke_at_provider

log = logging.getLogger("rostersync.revoke")


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
    at_provider = revoke_at_provider(runtime, provider_name, integration_id, ended.token_blob, actor=actor)
    log.info("integration %s revoked by %s; provider revoke %s", integration_id, actor, at_provider.value)
    return RevokeResult(integration_id, already_revoked=False, at_provider=at_provider)
