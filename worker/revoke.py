"""An admin or teacher ends an integration here: local revoke first (fences any running sync), then Google.

The local step is one transaction (status, generation, tokens, purge, audit), so it wins
against a running sync whatever the provider answers. The provider revoke is best effort and
audited either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from connectors.base import ConnectorError
from store import integrations
from store.vault import VaultError
from worker.providers import provider, tokens_from_payload
from worker.runtime import Runtime

log = logging.getLogger("rostersync.revoke")


@dataclass(frozen=True)
class RevokeResult:
    integration_id: int
    already_revoked: bool
    provider_revoked: bool


def revoke_integration(runtime: Runtime, integration_id: int, *, actor: str, reason: str = "") -> RevokeResult:
    state = integrations.load(runtime.engine, integration_id)
    if state.status == "revoked":
        return RevokeResult(integration_id, already_revoked=True, provider_revoked=False)
    token_blob = integrations.end_integration(
        runtime.engine, integration_id, status="revoked", actor=actor, reason=reason
    )
    provider_revoked = revoke_grant(runtime, state.provider, integration_id, token_blob, actor=actor)
    log.info(
        "integration %s revoked by %s; provider revoke %s",
        integration_id,
        actor,
        "done" if provider_revoked else "not confirmed",
    )
    return RevokeResult(integration_id, already_revoked=False, provider_revoked=provider_revoked)


def revoke_grant(
    runtime: Runtime, provider_name: str, integration_id: int, token_blob: bytes | None, *, actor: str
) -> bool:
    """Best effort: revoke at the provider the grant whose tokens were just removed here; audit the result."""
    revoked = False
    if token_blob is not None:
        try:
            tokens = tokens_from_payload(runtime.vault.open(token_blob))
            revoked = provider(provider_name).revoke_token(runtime.settings, tokens.refresh_token)
        except (ConnectorError, VaultError) as error:
            log.warning("integration %s: revoke at the provider failed: %s", integration_id, error)
    with runtime.engine.begin() as connection:
        action = "provider_revoked" if revoked else "provider_revoke_failed"
        integrations.record_audit(connection, integration_id, actor, action)
    return revoked
