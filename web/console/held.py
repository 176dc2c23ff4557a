"""What waits for an admin: removals the mass-removal breaker held (approve or drop), provider revokes pending."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from store import breaker, holds, pending_revokes
from store.models import MAX_ID
from web import actions
from web.console.guard import Ctx, Post, SignedIn
from web.console.render import confirm, page
from web.console.session import ACTOR, Session
from web.context import WebContext

router = APIRouter()
RunId = Annotated[int, Path(ge=1, le=MAX_ID)]
REASONS = {
    "empty": "the provider listed none of the current people or classes (an empty listing where there were members)",
    "share": "it would remove more than the allowed share (BREAKER_SHARE) of the current people, classes or enrolments",
}


@router.get("/held", include_in_schema=False)
def held_list(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    return page(
        request, "held.html", ctx=ctx, session=session, holds=breaker.pending(ctx.runtime.engine), reasons=REASONS
    )


def _hold(ctx: WebContext, run_id: int) -> breaker.HeldView | None:
    engine = ctx.runtime.engine
    with engine.connect() as connection:
        hold = holds.of_run(connection, run_id)
    if hold is None:
        return None
    return next((view for view in breaker.pending(engine, hold.integration_id) if view.run_id == run_id), None)


def _gone(
    request: Request, ctx: WebContext, session: Session, run_id: int, status: int = 404, why: str = ""
) -> Response:
    lines = [why or f"Run {run_id} holds no removals now (approved, dropped, superseded, or gone with a revoke)."]
    return page(
        request,
        "message.html",
        ctx=ctx,
        session=session,
        status=status,
        title="Nothing held",
        lines=lines,
        back=("/console/held", "Held removals"),
    )


@router.get("/held/{run_id}/{decision}", include_in_schema=False)
def confirm_decision(request: Request, ctx: Ctx, session: SignedIn, run_id: RunId, decision: str) -> Response:
    """What approving (or dropping) this hold will do, with the counts, before it is done."""
    hold = _hold(ctx, run_id)
    if hold is None or decision not in ("approve", "drop"):
        return _gone(request, ctx, session, run_id)
    if decision == "approve":
        title = f"Approve the removals run {run_id} held?"
        lines = [
            f"Integration {hold.integration_id} ({hold.provider}) loses exactly what run {run_id} held:",
            f"{hold.classes} of {hold.current_classes} classes, {hold.enrollments} of {hold.current_enrollments} "
            f"enrolments and {hold.people} of {hold.current_people} people are removed.",
            f"Held because {REASONS.get(hold.reason, hold.reason)}.",
            "Anything listed again since the hold stays. Removed rows are hidden now, deleted after retention.",
        ]
    else:
        title = f"Drop the removals run {run_id} held?"
        lines = [
            f"Nothing is removed from integration {hold.integration_id}: the hold of {hold.classes} classes, "
            f"{hold.enrollments} enrolments and {hold.people} people is discarded.",
            "A later full listing that still misses them holds them again.",
        ]
    return confirm(
        request,
        ctx,
        session,
        title=title,
        lines=lines,
        button="Approve removals" if decision == "approve" else "Drop the hold",
        danger=decision == "approve",
        cancel="/console/held",
        hold=hold,
    )


@router.post("/held/{run_id}/{decision}", include_in_schema=False)
def decide(request: Request, ctx: Ctx, posted: Post, run_id: RunId, decision: str) -> Response:
    if decision not in ("approve", "drop"):
        return _gone(request, ctx, posted.session, run_id)
    try:
        done = actions.decide_hold(ctx, run_id, approve=decision == "approve", actor=ACTOR)
    except breaker.HoldError as error:
        status = 404 if error.kind in ("unknown", "not_held", "gone") else 409
        return _gone(request, ctx, posted.session, run_id, status, str(error))
    if done.decision == "approved":
        lines = [f"Approved: {done.removed} rows of integration {done.integration_id} removed, exactly as held."]
    else:
        lines = [f"Dropped: nothing removed from integration {done.integration_id}."]
    back = (f"/console/integrations/{done.integration_id}", f"Integration {done.integration_id}")
    title = f"Run {run_id}: {done.decision}"
    return page(request, "message.html", ctx=ctx, session=posted.session, title=title, lines=lines, back=back)


@router.get("/pending-revokes", include_in_schema=False)
def pending(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    return page(
        request, "pending.html", ctx=ctx, session=session, pending=pending_revokes.summaries(ctx.runtime.engine)
    )
