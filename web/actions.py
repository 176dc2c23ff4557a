"""The admin actions as both the admin API (web.admin, web.holds) and the console (web.console) run them.

One implementation each, so a revoke from the console is the revoke of the API: the same service,
the same audit events (only the actor differs: ``admin:api`` or ``admin:console``), the same metrics.
Where the API had a step of its own inline (counting a revoke, the default interval, the lease of an
approval), it lives here now.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.revoke import RevokeResult, revoke_integration
from store import breaker, overview, scheduling
from web.context import WebContext


def revoke_one(ctx: WebContext, integration_id: int, *, actor: str, reason: str = "") -> RevokeResult:
    """Revoke here, then at the provider (services.revoke), counted in this process's metrics.

    Raises ``store.integrations.UnknownIntegration`` when there is no such integration.
    """
    result = revoke_integration(ctx.runtime, integration_id, actor=actor, reason=reason)
    if not result.already_revoked:
        ctx.metrics.admin_revokes.labels(result.at_provider.value).inc()
    return result


def revoke_tenant(ctx: WebContext, tenant: str, *, actor: str, reason: str = "") -> list[RevokeResult]:
    """Every integration of a tenant (a school); the ones already revoked are no-ops."""
    return [
        revoke_one(ctx, one, actor=actor, reason=reason)
        for one in overview.tenant_integration_ids(ctx.runtime.engine, tenant)
    ]


def change_interval(ctx: WebContext, integration_id: int, seconds: int | None) -> bool:
    """An integration's own sync interval (None: the default); False when there is no such integration."""
    default = ctx.runtime.settings.sync_interval_seconds
    return scheduling.change_interval(ctx.runtime.engine, integration_id, seconds, default_interval=default)


@dataclass(frozen=True)
class Decided:
    run_id: int
    integration_id: int
    decision: str  # approved | dropped
    removed: int


def decide_hold(ctx: WebContext, run_id: int, *, approve: bool, actor: str) -> Decided:
    """Approve (apply exactly what the run held, fenced) or drop a held removal; raises breaker.HoldError."""
    engine = ctx.runtime.engine
    if approve:
        done = breaker.approve(engine, run_id, actor=actor, lease_seconds=ctx.runtime.settings.lease_seconds)
    else:
        done = breaker.drop(engine, run_id, actor=actor)
    return Decided(run_id, done.integration_id, "approved" if approve else "dropped", done.removed)
