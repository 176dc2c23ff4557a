"""Integrations: the filterable table, one page per integration (runs, audit trail, data inventory).

What an admin can do to one integration (revoke, sync now, resume, interval, erase, export) is in
web.console.actions; this module only reads.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from providers.registry import PROVIDERS
from services import inventory as inv
from store import breaker, overview
from store.models import MAX_ID
from web.console import charts
from web.console.guard import Ctx, SignedIn
from web.console.render import page
from web.context import WebContext

router = APIRouter()
PER_PAGE = 50
STATUSES = ("active", "blocked", "degraded", "revoked", "failed", "suspended")
PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
IntegrationId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _filter(value: str | None, allowed: tuple[str, ...] | None = None) -> str | None:
    """A filter as typed; blank is no filter, and a value that cannot match anything is no filter either."""
    value = (value or "").strip()
    if not value or not PRINTABLE.match(value):
        return None
    if allowed is not None and value not in allowed:
        return None
    return value


@router.get("/integrations", include_in_schema=False)
def integration_list(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    provider: str | None = None,
    tenant: str | None = None,
    teacher: str | None = None,
    status: str | None = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    chosen = {
        "provider": _filter(provider, tuple(PROVIDERS)),
        "tenant": _filter(tenant),
        "teacher": _filter(teacher),
        "status": _filter(status, STATUSES),
    }
    views = overview.integration_views(
        ctx.runtime.engine,
        provider=chosen["provider"],
        tenant=chosen["tenant"],
        linked_by=chosen["teacher"],
        status=chosen["status"],
        limit=PER_PAGE + 1,
        offset=(page_number - 1) * PER_PAGE,
    )
    kept = {name: value for name, value in chosen.items() if value}

    def link(number: int) -> str:
        return "/console/integrations?" + urlencode(kept | {"page": number})

    return page(
        request,
        "integrations.html",
        ctx=ctx,
        session=session,
        views=views[:PER_PAGE],
        chosen=chosen,
        providers=sorted(PROVIDERS),
        statuses=STATUSES,
        page_number=page_number,
        previous=link(page_number - 1) if page_number > 1 else None,
        next=link(page_number + 1) if len(views) > PER_PAGE else None,
    )


def one(ctx: WebContext, integration_id: int) -> overview.IntegrationView | None:
    views = overview.integration_views(ctx.runtime.engine, integration_id=integration_id)
    return views[0] if views else None


def missing(request: Request, ctx: WebContext, session: SignedIn, integration_id: int) -> Response:
    return page(
        request,
        "message.html",
        ctx=ctx,
        session=session,
        status=404,
        title="No such integration",
        lines=[f"There is no integration {integration_id}. It may have been erased."],
        back=("/console/integrations", "All integrations"),
    )


@router.get("/integrations/{integration_id}", include_in_schema=False)
def integration_page(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    engine = ctx.runtime.engine
    runs = overview.runs(engine, integration_id=integration_id, limit=30)
    duration_chart, rows_chart = charts.run_charts(runs)
    held = breaker.pending(engine, integration_id)
    return page(
        request,
        "integration.html",
        ctx=ctx,
        session=session,
        view=view,
        runs=runs,
        duration_chart=duration_chart,
        rows_chart=rows_chart,
        audit=overview.audit(engine, integration_id=integration_id, limit=100),
        inventory=inv.integration_inventory(ctx.runtime, integration_id),
        held=held,
        default_interval=ctx.runtime.settings.sync_interval_seconds,
    )
