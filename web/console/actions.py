"""What an admin does to one integration or a tenant: each a confirmation page (GET) saying what will happen,
then the action (POST, CSRF-checked) through the same function the admin API calls, audited as the console.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from store import integrations, overview
from store.db import utcnow
from store.models import KEY_LENGTH
from web import actions
from web.console.guard import Ctx, Post, SignedIn
from web.console.integrations import IntegrationId, missing, one
from web.console.render import confirm, page
from web.console.session import ACTOR, Session
from web.context import WebContext
from worker import broker as brokers
from worker.sync_requests import request_sync

router = APIRouter()
Tenant = Annotated[str, Path(min_length=1, max_length=KEY_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$")]
MAX_REASON = 500


def _reason(form: dict[str, str]) -> str:
    """The typed reason, as the API takes it: printable, at most 500 characters, blanks stripped."""
    text = " ".join(form.get("reason", "").split())
    return text[:MAX_REASON]


def _done(
    request: Request,
    ctx: WebContext,
    session: Session,
    title: str,
    lines: list[str],
    *,
    integration_id: int | None = None,
    status: int = 200,
) -> Response:
    back = (
        (f"/console/integrations/{integration_id}", f"Back to integration {integration_id}") if integration_id else None
    )
    return page(request, "message.html", ctx=ctx, session=session, status=status, title=title, lines=lines, back=back)


@router.get("/integrations/{integration_id}/revoke", include_in_schema=False)
def confirm_revoke(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    lines = [
        f"Integration {view.id} ({view.provider}, tenant {view.tenant}, teacher {view.linked_by}) ends now:",
        "its tokens are deleted and its roster purged at once "
        f"({view.counts.classes} classes, {view.counts.teachers} teachers, {view.counts.students} students);",
        "then its grant is revoked at the provider (retried by the worker if the provider does not answer).",
        "The teacher must link again to sync again. This cannot be undone.",
    ]
    if view.status == "revoked":
        lines = [f"Integration {view.id} is already revoked: revoking it again changes nothing."]
    return confirm(
        request,
        ctx,
        session,
        title=f"Revoke integration {view.id}?",
        lines=lines,
        button="Revoke",
        danger=True,
        reason=True,
        cancel=f"/console/integrations/{view.id}",
    )


@router.post("/integrations/{integration_id}/revoke", include_in_schema=False)
def revoke(request: Request, ctx: Ctx, posted: Post, integration_id: IntegrationId) -> Response:
    try:
        result = actions.revoke_one(ctx, integration_id, actor=ACTOR, reason=_reason(posted.form))
    except integrations.UnknownIntegration:
        return missing(request, ctx, posted.session, integration_id)
    if result.already_revoked:
        lines = [f"Integration {integration_id} was already revoked; nothing changed."]
    else:
        lines = [
            f"Integration {integration_id} is revoked: tokens deleted, roster purged.",
            f"At the provider: {result.at_provider.value}.",
        ]
    return _done(request, ctx, posted.session, "Revoked", lines, integration_id=integration_id)


@router.get("/tenants/{tenant}/revoke", include_in_schema=False)
def confirm_tenant_revoke(request: Request, ctx: Ctx, session: SignedIn, tenant: Tenant) -> Response:
    views = overview.integration_views(ctx.runtime.engine, tenant=tenant, limit=10_000)
    live = [view for view in views if view.status != "revoked"]
    lines = [
        f"Every integration of tenant {tenant} ends now: {len(live)} of {len(views)} are not revoked yet.",
        "Each one's tokens are deleted and its roster purged at once, then its grant is revoked at the provider.",
        "Teachers must link again to sync again. This cannot be undone.",
    ]
    if not views:
        lines = [f"Tenant {tenant} has no integrations: there is nothing to revoke."]
    return confirm(
        request,
        ctx,
        session,
        title=f"Revoke every integration of {tenant}?",
        lines=lines,
        button=f"Revoke {len(live)} integrations",
        danger=True,
        reason=True,
        cancel="/console/integrations?" + f"tenant={tenant}",
        affected=views,
        disabled=not views,
    )


@router.post("/tenants/{tenant}/revoke", include_in_schema=False)
def revoke_tenant(request: Request, ctx: Ctx, posted: Post, tenant: Tenant) -> Response:
    results = actions.revoke_tenant(ctx, tenant, actor=ACTOR, reason=_reason(posted.form))
    revoked = [result for result in results if not result.already_revoked]
    lines = [f"Tenant {tenant}: {len(revoked)} integrations revoked, {len(results) - len(revoked)} were already."]
    lines += [f"Integration {result.integration_id}: at the provider {result.at_provider.value}." for result in revoked]
    return _done(request, ctx, posted.session, "Tenant revoked", lines)


@router.get("/integrations/{integration_id}/sync", include_in_schema=False)
def confirm_sync(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    cooldown = ctx.runtime.settings.manual_sync_cooldown_seconds
    asked = overview.manual_sync_at(ctx.runtime.engine, integration_id)
    lines = [
        f"A sync of integration {view.id} is queued now, unless one is queued or running already (then that one does)."
    ]
    lines.append(f"A sync can be asked for once every {cooldown} seconds per integration.")
    if asked is not None:
        left = cooldown - int((utcnow() - asked).total_seconds())
        lines.append(
            f"The last was asked at {asked:%H:%M:%S} UTC; "
            + (f"the next can be asked in {left} seconds." if left > 0 else "the next can be asked now.")
        )
    return confirm(
        request,
        ctx,
        session,
        title=f"Sync integration {view.id} now?",
        lines=lines,
        button="Sync now",
        cancel=f"/console/integrations/{view.id}",
    )


SYNC_WORDS = {
    "queued": "A sync is queued; its run appears on the integration's page when it starts.",
    "coalesced": "A sync is already queued or running: that one will do.",
    "cooldown": "A sync was asked for too recently. Try again in {retry} seconds.",
    "not_active": "This integration is not active: there is nothing to sync (resume or re-link it first).",
}


@router.post("/integrations/{integration_id}/sync", include_in_schema=False)
def sync_now(request: Request, ctx: Ctx, posted: Post, integration_id: IntegrationId) -> Response:
    try:
        verdict = request_sync(ctx.runtime, integration_id)
    except LookupError:
        return missing(request, ctx, posted.session, integration_id)
    except brokers.BrokerUnavailable:
        line, status = "The queue cannot be reached right now; nothing was queued. Try again shortly.", 503
    else:
        line = SYNC_WORDS[verdict.request.value].format(retry=verdict.retry_after_seconds)
        status = 429 if verdict.request.value == "cooldown" else 200
    return _done(request, ctx, posted.session, "Sync now", [line], integration_id=integration_id, status=status)


@router.get("/integrations/{integration_id}/resume", include_in_schema=False)
def confirm_resume(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    lines = [
        f"Integration {view.id} becomes active again with its tokens and roster, and is synced at once.",
        f"It failed because: {view.status_reason or 'no reason was recorded'}. Resume once that is fixed.",
    ]
    if view.status != "failed":
        lines = [f"Integration {view.id} is {view.status}: only a failed integration can be resumed."]
    return confirm(
        request,
        ctx,
        session,
        title=f"Resume integration {view.id}?",
        lines=lines,
        button="Resume",
        cancel=f"/console/integrations/{view.id}",
        disabled=view.status != "failed",
    )


@router.post("/integrations/{integration_id}/resume", include_in_schema=False)
def resume(request: Request, ctx: Ctx, posted: Post, integration_id: IntegrationId) -> Response:
    if integrations.resume_failed(ctx.runtime.engine, integration_id, actor=ACTOR):
        lines, status = [f"Integration {integration_id} is active again; its next sync is due now."], 200
    else:
        view = one(ctx, integration_id)
        if view is None:
            return missing(request, ctx, posted.session, integration_id)
        lines, status = (
            [f"Integration {integration_id} is {view.status}, not failed with its tokens: not resumed."],
            409,
        )
    return _done(request, ctx, posted.session, "Resume", lines, integration_id=integration_id, status=status)
