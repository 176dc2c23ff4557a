"""The admin API's data-subject routes: export, erase, suppressions and the data inventory (P8-P10, P2).

The same operations as `rostersync export / erase / suppressions lift / inventory`, through the same
functions (services.rights, services.inventory), so every one is audited exactly as on the command line,
as actor ``admin:api``. Authenticated by web.auth like every ``/admin/`` route.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Security
from fastapi.responses import Response

from providers.registry import PROVIDERS
from services import inventory as inv
from services import rights
from store import integrations
from store.models import MAX_ID
from store.rights import PersonNotFound, StillActive
from web.auth import bearer_scheme
from web.context import WebContext, context

ACTOR = "admin:api"
router = APIRouter(prefix="/admin", tags=["rights"], dependencies=[Security(bearer_scheme)])

Ctx = Annotated[WebContext, Depends(context)]
IntegrationId = Annotated[int, Path(ge=1, le=MAX_ID)]
Pseudonym = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="As exports and the audit log show it.")]


def _known(ctx: WebContext, integration_id: int) -> None:
    try:
        integrations.load(ctx.runtime.engine, integration_id)
    except integrations.UnknownIntegration:
        raise HTTPException(404, f"no integration with id {integration_id}") from None


@router.get(
    "/people/{pseudonym}/export", summary="Everything stored about one person (JSON); audited", responses={404: {}}
)
def export_person(pseudonym: Pseudonym, ctx: Ctx) -> dict[str, Any]:
    try:
        return rights.export_person(ctx.runtime, pseudonym, actor=ACTOR)
    except PersonNotFound as error:
        raise HTTPException(404, str(error)) from None


@router.get(
    "/integrations/{integration_id}/export",
    summary="One integration as JSON, or as a zip of OneRoster 1.2-style CSV files; audited",
    responses={200: {"content": {"application/zip": {}}}, 404: {}},
)
def export_integration(
    integration_id: IntegrationId,
    ctx: Ctx,
    format_: Annotated[Literal["json", "oneroster"], Query(alias="format")] = "json",
) -> Response:
    _known(ctx, integration_id)
    payload = rights.export_integration(ctx.runtime, integration_id, actor=ACTOR, oneroster=format_ == "oneroster")
    if format_ == "oneroster":
        disposition = f'attachment; filename="integration-{integration_id}-oneroster.zip"'
        return Response(payload, media_type="application/zip", headers={"Content-Disposition": disposition})
    return Response(payload, media_type="application/json")


@router.post(
    "/people/{pseudonym}/erase",
    summary="Erase a person at once (rows, enrolments) and suppress them; an owned grant is revoked first",
    responses={404: {}},
)
def erase_person(pseudonym: Pseudonym, ctx: Ctx) -> dict[str, Any]:
    try:
        erased = rights.erase_person(ctx.runtime, pseudonym, actor=ACTOR)
    except PersonNotFound as error:
        raise HTTPException(404, str(error)) from None
    return {
        "erased": "person",
        "integrations": erased.integrations,
        "revoked_first": erased.revoked,
        "people": erased.people,
        "enrollments": erased.enrollments,
        "suppressed": True,
    }


@router.post(
    "/integrations/{integration_id}/erase",
    summary="Revoke an integration if active, then remove its record and everything left of it",
    responses={404: {}, 409: {}},
)
def erase_integration(integration_id: IntegrationId, ctx: Ctx) -> dict[str, Any]:
    _known(ctx, integration_id)
    try:
        erased = rights.erase_integration(ctx.runtime, integration_id, actor=ACTOR)
    except StillActive as error:
        raise HTTPException(409, str(error)) from None
    return {
        "erased": "integration",
        "integrations": [erased.integration_id],
        "revoked_first": [erased.integration_id] if erased.revoked_first else [],
        "rows": erased.rows,
    }


@router.delete(
    "/suppressions/{pseudonym}",
    summary="Lift a suppression: the next sync may bring the person back; audited",
    responses={404: {}},
)
def lift_suppression(pseudonym: Pseudonym, ctx: Ctx) -> dict[str, int]:
    try:
        return {"lifted": rights.lift_suppression(ctx.runtime, pseudonym, actor=ACTOR)}
    except rights.RightsError as error:
        raise HTTPException(404, str(error)) from None


@router.get("/inventory", summary="Per provider: scopes, fields on the wire, fields kept, pseudonymisation, retention")
def inventory(ctx: Ctx) -> dict[str, Any]:
    settings = ctx.runtime.settings
    return {"providers": [inv.provider_inventory(settings, name) for name in sorted(PROVIDERS)]}


@router.get(
    "/integrations/{integration_id}/inventory",
    summary="The inventory of one integration, under the scopes it was granted, with its consent basis",
    responses={404: {}},
)
def integration_inventory(integration_id: IntegrationId, ctx: Ctx) -> dict[str, Any]:
    _known(ctx, integration_id)
    return inv.integration_inventory(ctx.runtime, integration_id)
