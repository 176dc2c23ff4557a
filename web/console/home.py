"""The console's front door: sign in, sign out, the home page with the day's charts, and the stylesheet."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from providers.registry import PROVIDERS
from store import overview
from store.db import utcnow
from web.auth import token_ok
from web.console import charts
from web.console.guard import Ctx, Post, SignedIn, current_session, form_fields
from web.console.render import HEADERS, STATIC, page
from web.console.session import COOKIE, SIGN_IN_COOKIE, SIGN_IN_SECONDS, cleared, cookie_header, open_session, same
from web.ratelimit import client_of

router = APIRouter()
STYLESHEET = (STATIC / "console.css").read_bytes()


def _next(target: str | None) -> str:
    """Only a path of the console itself: a sign-in never sends the browser to another site."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


@router.get("/static/console.css", include_in_schema=False)
def stylesheet() -> Response:
    return Response(STYLESHEET, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/sign-in", include_in_schema=False)
def sign_in_page(request: Request, ctx: Ctx, next_: Annotated[str | None, Query(alias="next")] = None) -> Response:
    if current_session(request, ctx) is not None:
        return RedirectResponse(_next(next_), status_code=303)
    return _sign_in_form(request, _next(next_), status=200, problem="")


def _sign_in_form(request: Request, target: str, *, status: int, problem: str) -> Response:
    guard = secrets.token_urlsafe(24)
    response = page(request, "sign_in.html", status=status, guard=guard, next=target, problem=problem)
    response.headers.append("Set-Cookie", cookie_header(SIGN_IN_COOKIE, guard, SIGN_IN_SECONDS))
    return response


@router.post("/sign-in", include_in_schema=False)
def sign_in(request: Request, ctx: Ctx, form: Annotated[dict[str, str], Depends(form_fields)]) -> Response:
    """One of ADMIN_TOKENS opens a session; wrong ones count against the admin API's per-client limit."""
    target = _next(form.get("next"))
    if not same(form.get("guard"), request.cookies.get(SIGN_IN_COOKIE, "")):
        return page(request, "refused.html", status=403)
    client = client_of(request.scope)
    retry_after = ctx.admin_failures.wait(client)
    if retry_after:
        ctx.metrics.admin_refused.inc()
        problem = f"Too many wrong tokens from this address. Try again in {retry_after} seconds."
        return _sign_in_form(request, target, status=429, problem=problem)
    tokens = ctx.runtime.settings.admin_token_list()
    presented = form.get("token", "").strip()
    if not token_ok(presented.encode(), [token.encode() for token in tokens]):
        ctx.admin_failures.take(client)
        ctx.metrics.admin_refused.inc()
        problem = "That is not one of this server's admin tokens (ROSTERSYNC_ADMIN_TOKENS)."
        return _sign_in_form(request, target, status=401, problem=problem)
    lifetime = ctx.runtime.settings.console_session_seconds
    _, value = open_session(presented, lifetime)
    response = RedirectResponse(target, status_code=303, headers=HEADERS)
    response.headers.append("Set-Cookie", cookie_header(COOKIE, value, lifetime))
    response.headers.append("Set-Cookie", cleared(SIGN_IN_COOKIE))
    return response


@router.post("/sign-out", include_in_schema=False)
def sign_out(posted: Post) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303, headers=HEADERS)
    response.headers.append("Set-Cookie", cleared(COOKIE))
    return response


@router.get("/", include_in_schema=False)
def home(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    """What an admin checks first: what waits for them, and how the last day's syncs went."""
    engine = ctx.runtime.engine
    now = utcnow()
    activity = overview.activity_since(engine, now - timedelta(hours=24))
    per_hour, hour_rows = charts.hourly(activity, now)
    per_provider, provider_rows = charts.failures_by_provider(activity, sorted(PROVIDERS))
    statuses: dict[str, int] = {}
    for (_, status), count in overview.status_counts(engine).items():
        statuses[status] = statuses.get(status, 0) + count
    return page(
        request,
        "home.html",
        ctx=ctx,
        session=session,
        per_hour=per_hour,
        hour_rows=hour_rows,
        per_provider=per_provider,
        provider_rows=provider_rows,
        statuses=sorted(statuses.items()),
    )
