"""The admin API: see integrations, revoke one or a whole tenant, trigger a sync, read runs and the audit log.

Authenticated by web.auth before a route is even chosen. A teacher's own unlink goes through the
platform (which knows who is logged in) and is audited as that teacher.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Security
from fastapi.responses import JSONResponse

from services.revoke import RevokeResult
from store import integrations, overview, pending_revokes, scheduling
from store.models import KEY_LENGTH, MAX_ID
from web.actions import change_interval, revoke_one
from web.actions import revoke_tenant as revoke_every
from web.auth import bearer_scheme
from web.context import WebContext, context
from web.schemas import (
    AuditOut,
    IntegrationOut,
    IntervalRequest,
    PendingRevokeOut,
    RevokeOut,
    RevokeRequest,
    Run,
    SyncOut,
    TenantRevokeOut,
    UnlinkRequest,
)
from worker import broker as brokers
from worker.sync_requests import request_sync

log = logging.getLogger("rostersync.web")
ACTOR = "admin:api"
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Security(bearer_scheme)])

Ctx = Annotated[WebContext, Depends(context)]
IntegrationId = Annotated[int, Path(ge=1, le=MAX_ID)]
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
"""Platform ids are printable: a NUL or control byte is refused here, before PostgreSQL refuses it with a 500."""

Tenant = Annotated[str, Path(min_length=1, max_length=KEY_LENGTH, pattern=PRINTABLE)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Revoking = Annotated[RevokeRequest | None, Body(description="Optional: no body is no reason.")]
"""A revoke or an unlink never needs a body: whatever else fails, the way out stays open."""
Unlinking = Annotated[UnlinkRequest | None, Body(description="Optional: no body is no reason.")]
STATUSES = "^(active|blocked|degraded|revoked|failed|suspended)$"


def _one(ctx: WebContext, integration_id: int) -> IntegrationOut:
    views = overview.integration_views(ctx.runtime.engine, integration_id=integration_id)
    if not views:
        raise HTTPException(404, f"no integration with id {integration_id}")
    return IntegrationOut.of(views[0])


def _revoked(result: RevokeResult) -> RevokeOut:
    return RevokeOut(
        integration_id=result.integration_id,
        already_revoked=result.already_revoked,
        at_provider=result.at_provider.value,
    )


@router.get("/integrations", response_model=list[IntegrationOut], summary="Integrations with status, counts, last run")
def list_integrations(
    ctx: Ctx,
    tenant: Annotated[str | None, Query(min_length=1, max_length=KEY_LENGTH, pattern=PRINTABLE)] = None,
    status: Annotated[str | None, Query(pattern=STATUSES)] = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[IntegrationOut]:
    views = overview.integration_views(ctx.runtime.engine, tenant=tenant, status=status, limit=limit, offset=offset)
    return [IntegrationOut.of(view) for view in views]


@router.get("/integrations/{integration_id}", response_model=IntegrationOut, responses={404: {}})
def get_integration(integration_id: IntegrationId, ctx: Ctx) -> IntegrationOut:
    return _one(ctx, integration_id)


@router.post(
    "/integrations/{integration_id}/revoke",
    response_model=RevokeOut,
    responses={404: {}},
    summary="Revoke: tokens deleted and roster purged at once, then the grant revoked at the provider",
)
def revoke(integration_id: IntegrationId, ctx: Ctx, body: Revoking = None) -> RevokeOut:
    try:
        result = revoke_one(ctx, integration_id, actor=ACTOR, reason=body.reason if body else "")
    except integrations.UnknownIntegration as error:
        raise HTTPException(404, str(error)) from None
    return _revoked(result)


@router.post(
    "/tenants/{tenant}/revoke",
    response_model=TenantRevokeOut,
    responses={404: {}},
    summary="Revoke every integration of a tenant (a school); already revoked ones are no-ops",
)
def revoke_tenant(tenant: Tenant, ctx: Ctx, body: Revoking = None) -> TenantRevokeOut:
    if not overview.tenant_integration_ids(ctx.runtime.engine, tenant):  # a mistyped school is told, not
        raise HTTPException(404, f"no integration of tenant {tenant!r}")  # answered with an empty success
    results = revoke_every(ctx, tenant, actor=ACTOR, reason=body.reason if body else "")
    return TenantRevokeOut(tenant=tenant, results=[_revoked(result) for result in results])


@router.post(
    "/integrations/{integration_id}/sync",
    response_model=SyncOut,
    status_code=202,
    responses={200: {"model": SyncOut}, 404: {}, 409: {"model": SyncOut}, 429: {"model": SyncOut}, 503: {}},
    summary="Sync now: queued once per cooldown; coalesced with a sync already queued or running",
)
def trigger_sync(integration_id: IntegrationId, ctx: Ctx) -> JSONResponse:
    try:
        verdict = request_sync(ctx.runtime, integration_id)
    except LookupError:
        raise HTTPException(404, f"no integration with id {integration_id}") from None
    except brokers.BrokerUnavailable as error:
        raise HTTPException(503, str(error)) from None
    body = SyncOut(
        integration_id=integration_id, request=verdict.request.value, retry_after_seconds=verdict.retry_after_seconds
    )
    status = {
        scheduling.ManualRequest.QUEUED: 202,
        scheduling.ManualRequest.COALESCED: 200,
        scheduling.ManualRequest.COOLDOWN: 429,
        scheduling.ManualRequest.NOT_ACTIVE: 409,
    }[verdict.request]
    headers = {"Retry-After": str(verdict.retry_after_seconds)} if status == 429 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


@router.post(
    "/integrations/{integration_id}/resume",
    response_model=IntegrationOut,
    responses={404: {}, 409: {}},
    summary="Make a failed integration active again, its tokens and roster kept; its next sync is due now",
)
def resume(integration_id: IntegrationId, ctx: Ctx) -> IntegrationOut:
    if not integrations.resume_failed(ctx.runtime.engine, integration_id, actor=ACTOR):
        current = _one(ctx, integration_id)  # 404 when there is no such integration
        raise HTTPException(409, f"integration {integration_id} is {current.status}, not failed with its tokens")
    return _one(ctx, integration_id)


@router.put("/integrations/{integration_id}/interval", response_model=IntegrationOut, responses={404: {}})
def set_interval(integration_id: IntegrationId, body: IntervalRequest, ctx: Ctx) -> IntegrationOut:
    """This integration's own sync interval; null returns it to the default. The next sync moves with it."""
    if not change_interval(ctx, integration_id, body.seconds):
        raise HTTPException(404, f"no integration with id {integration_id}")
    return _one(ctx, integration_id)


@router.post(
    "/teachers/{teacher}/integrations/{integration_id}/unlink",
    response_model=RevokeOut,
    responses={404: {}},
    summary="A teacher unlinks their own integration (called by the platform, which knows who is logged in)",
)
def unlink(teacher: Tenant, integration_id: IntegrationId, ctx: Ctx, body: Unlinking = None) -> RevokeOut:
    views = overview.integration_views(ctx.runtime.engine, integration_id=integration_id)
    if not views or views[0].linked_by != teacher:
        raise HTTPException(404, "this teacher has no such integration")  # the same answer: nothing to probe
    reason = (body.reason if body else "") or "unlinked"
    result = revoke_one(ctx, integration_id, actor=f"teacher:{teacher}", reason=reason)
    return _revoked(result)


@router.get("/runs", response_model=list[Run], summary="Sync runs, newest first; held=true: running now")
def list_runs(
    ctx: Ctx,
    integration_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    held: bool = False,
    limit: Limit = 100,
) -> list[Run]:
    return [
        Run.of(run) for run in overview.runs(ctx.runtime.engine, integration_id=integration_id, held=held, limit=limit)
    ]


@router.get("/audit", response_model=list[AuditOut], summary="Audit events, newest first")
def list_audit(
    ctx: Ctx, integration_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None, limit: Limit = 100
) -> list[AuditOut]:
    return [
        AuditOut.of(event) for event in overview.audit(ctx.runtime.engine, integration_id=integration_id, limit=limit)
    ]


@router.get("/pending-revokes", response_model=list[PendingRevokeOut], summary="Provider revokes still being retried")
def list_pending_revokes(ctx: Ctx) -> list[PendingRevokeOut]:
    return [PendingRevokeOut.of(one) for one in pending_revokes.summaries(ctx.runtime.engine)]
