"""An integration's schedule and its data: set the sync interval, export it, erase it; and one person's export
and erasure (data-subject requests), through services.rights like the admin API and the CLI.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from services import rights
from store import integrations
from store import rights as stored_rights
from store.retention import not_ended
from store.rights import PersonNotFound, StillActive
from web import actions
from web.console.guard import Ctx, Post, SignedIn
from web.console.integrations import IntegrationId, missing, one
from web.console.render import HEADERS, confirm, duration, page
from web.console.session import ACTOR

router = APIRouter()
MAX_INTERVAL = 31 * 86_400
Pseudonym = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


@router.get("/integrations/{integration_id}/interval", include_in_schema=False)
def interval_form(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    default = ctx.runtime.settings.sync_interval_seconds
    current = (
        duration(view.sync_interval_seconds) if view.sync_interval_seconds else f"the default, {duration(default)}"
    )
    lines = [
        f"Integration {view.id} is synced every {current}.",
        "A new interval moves its next scheduled sync to the last sync plus the new interval (never before now);",
        "a sync already due stays due. Leave the field empty to return to the default.",
    ]
    return confirm(
        request,
        ctx,
        session,
        title=f"Sync interval of integration {view.id}",
        lines=lines,
        button="Set interval",
        cancel=f"/console/integrations/{view.id}",
        interval=view.sync_interval_seconds or "",
        max_interval=MAX_INTERVAL,
    )


@router.post("/integrations/{integration_id}/interval", include_in_schema=False)
def set_interval(request: Request, ctx: Ctx, posted: Post, integration_id: IntegrationId) -> Response:
    typed = posted.form.get("seconds", "").strip()
    seconds = int(typed) if typed.isdigit() else None
    if typed and (seconds is None or not 0 < seconds <= MAX_INTERVAL):
        lines = [
            f"An interval is a whole number of seconds from 1 to {MAX_INTERVAL} (31 days), or empty for the default."
        ]
        return page(
            request,
            "message.html",
            ctx=ctx,
            session=posted.session,
            status=422,
            title="Not an interval",
            lines=lines,
            back=(request.url.path, "Try again"),
        )
    if not actions.change_interval(ctx, integration_id, seconds):
        return missing(request, ctx, posted.session, integration_id)
    said = f"every {duration(seconds)}" if seconds else "on the default interval"
    return page(
        request,
        "message.html",
        ctx=ctx,
        session=posted.session,
        title="Interval set",
        lines=[f"Integration {integration_id} is now synced {said}."],
        back=(f"/console/integrations/{integration_id}", f"Back to integration {integration_id}"),
    )


@router.get("/integrations/{integration_id}/export", include_in_schema=False)
def export_form(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    lines = [
        f"A file of everything stored for integration {view.id}: {view.counts.classes} classes, "
        f"{view.counts.teachers} teachers, {view.counts.students} students.",
        "It holds personal data: keep it only as long as the request that needs it. The export is audited.",
    ]
    return confirm(
        request,
        ctx,
        session,
        title=f"Export integration {view.id}",
        lines=lines,
        button="Download",
        cancel=f"/console/integrations/{view.id}",
        formats=True,
    )


@router.post("/integrations/{integration_id}/export", include_in_schema=False)
def export(request: Request, ctx: Ctx, posted: Post, integration_id: IntegrationId) -> Response:
    try:
        integrations.load(ctx.runtime.engine, integration_id)
    except integrations.UnknownIntegration:
        return missing(request, ctx, posted.session, integration_id)
    oneroster = posted.form.get("format") == "oneroster"
    payload = rights.export_integration(ctx.runtime, integration_id, actor=ACTOR, oneroster=oneroster)
    name = f"integration-{integration_id}-oneroster.zip" if oneroster else f"integration-{integration_id}.json"
    headers = HEADERS | {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(payload, media_type="application/zip" if oneroster else "application/json", headers=headers)


@router.get("/integrations/{integration_id}/erase", include_in_schema=False)
def confirm_erase(request: Request, ctx: Ctx, session: SignedIn, integration_id: IntegrationId) -> Response:
    view = one(ctx, integration_id)
    if view is None:
        return missing(request, ctx, session, integration_id)
    lines = [
        f"Integration {view.id} ({view.provider}, tenant {view.tenant}) is erased:",
        "revoked first if it still holds a grant (tokens deleted, roster purged, grant revoked at the provider),",
        "then its record and everything left of it are deleted. Only the audit log (ids and counts) remains.",
        "This cannot be undone.",
    ]
    return confirm(
        request,
        ctx,
        session,
        title=f"Erase integration {view.id}?",
        lines=lines,
        button="Erase",
        danger=True,
        cancel=f"/console/integrations/{view.id}",
    )


@router.post("/integrations/{integration_id}/erase", include_in_schema=False)
def erase(request: Request, ctx: Ctx, posted: Post, integration_id: IntegrationId) -> Response:
    try:
        erased = rights.erase_integration(ctx.runtime, integration_id, actor=ACTOR)
    except integrations.UnknownIntegration:
        return missing(request, ctx, posted.session, integration_id)
    except StillActive as error:
        return page(
            request,
            "message.html",
            ctx=ctx,
            session=posted.session,
            status=409,
            title="Not erased",
            lines=[str(error)],
            back=(f"/console/integrations/{integration_id}", "Back"),
        )
    lines = [f"Integration {integration_id} is erased: {erased.rows} rows deleted."]
    if erased.revoked_first:
        lines.insert(0, "It was revoked first (tokens deleted, grant revoked at the provider).")
    return page(
        request,
        "message.html",
        ctx=ctx,
        session=posted.session,
        title="Erased",
        lines=lines,
        back=("/console/integrations", "All integrations"),
    )


@router.get("/people", include_in_schema=False)
def people(request: Request, ctx: Ctx, session: SignedIn, pseudonym: Annotated[str | None, Query()] = None) -> Response:
    """Find a person by pseudonym (as exports and the audit log show it) to export or erase them."""
    typed = (pseudonym or "").strip().lower()
    if typed and rights.PSEUDONYM.fullmatch(typed):
        return RedirectResponse(f"/console/people/{typed}", status_code=303)
    problem = "A pseudonym is 64 characters, 0-9 and a-f." if typed else ""
    return page(request, "people.html", ctx=ctx, session=session, problem=problem, status=422 if problem else 200)


@router.get("/people/{pseudonym}", include_in_schema=False)
def person(request: Request, ctx: Ctx, session: SignedIn, pseudonym: Pseudonym) -> Response:
    found = stored_rights.holdings(ctx.runtime.engine, pseudonym)
    owned = [holding for holding in found if holding.owner and not_ended(holding.status)]
    return page(
        request,
        "person.html",
        ctx=ctx,
        session=session,
        pseudonym=pseudonym,
        holdings=found,
        owned=owned,
        status=200 if found else 404,
    )


@router.post("/people/{pseudonym}/export", include_in_schema=False)
def export_person(request: Request, ctx: Ctx, posted: Post, pseudonym: Pseudonym) -> Response:
    try:
        exported = rights.export_person(ctx.runtime, pseudonym, actor=ACTOR)
    except PersonNotFound:
        return person(request, ctx, posted.session, pseudonym)
    headers = HEADERS | {"Content-Disposition": f'attachment; filename="person-{pseudonym[:12]}.json"'}
    return Response(json.dumps(exported, indent=2) + "\n", media_type="application/json", headers=headers)


@router.post("/people/{pseudonym}/erase", include_in_schema=False)
def erase_person(request: Request, ctx: Ctx, posted: Post, pseudonym: Pseudonym) -> Response:
    try:
        erased = rights.erase_person(ctx.runtime, pseudonym, actor=ACTOR)
    except PersonNotFound:
        return person(request, ctx, posted.session, pseudonym)
    lines = [
        f"The person is erased from {len(erased.integrations)} integrations: {erased.people} person rows and "
        f"{erased.enrollments} enrolments deleted; the pseudonym is suppressed, so no sync brings them back.",
    ]
    if erased.revoked:
        lines.append(f"Their own grants were revoked first: integrations {', '.join(map(str, erased.revoked))}.")
    return page(
        request,
        "message.html",
        ctx=ctx,
        session=posted.session,
        title="Person erased",
        lines=lines,
        back=("/console/people", "People"),
    )
