"""The admin API of the mass-removal breaker: see held removals, approve or drop them.

The same operations as `rostersync held list / approve / drop`, through store.breaker, audited as
actor ``admin:api``. Authenticated by web.auth like every ``/admin/`` route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Security
from pydantic import BaseModel, Field

from store import breaker
from store.models import MAX_ID
from web.actions import decide_hold
from web.auth import bearer_scheme
from web.context import WebContext, context
from web.schemas import Utc

ACTOR = "admin:api"
router = APIRouter(prefix="/admin", tags=["breaker"], dependencies=[Security(bearer_scheme)])

Ctx = Annotated[WebContext, Depends(context)]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The sync run that held the removals.")]
STATUS = {"unknown": 404, "not_held": 404, "gone": 404, "superseded": 409, "busy": 409, "fenced": 409}


class HeldOut(BaseModel):
    run_id: int
    integration_id: int
    provider: str
    reason: str = Field(description="empty (every current person or class would go) | share (over BREAKER_SHARE)")
    held_at: Utc
    held_since: Utc = Field(description="first held; kept when a newer listing holds the same again")
    classes: int
    enrollments: int
    people: int = Field(description="people approving would remove now (left with no enrolment)")
    current_classes: int
    current_people: int

    @classmethod
    def of(cls, view: breaker.HeldView) -> HeldOut:
        return cls(**view.__dict__)


class DecisionOut(BaseModel):
    run_id: int
    integration_id: int
    decision: str = Field(description="approved | dropped")
    removed: int = Field(description="rows soft-deleted by an approval; 0 for a drop")


def _refused(error: breaker.HoldError) -> HTTPException:
    return HTTPException(STATUS.get(error.kind, 409), str(error))


@router.get("/held-removals", response_model=list[HeldOut], summary="Sweeps held by the mass-removal breaker")
def list_held(ctx: Ctx) -> list[HeldOut]:
    return [HeldOut.of(view) for view in breaker.pending(ctx.runtime.engine)]


@router.post(
    "/held-removals/{run_id}/approve",
    response_model=DecisionOut,
    responses={404: {}, 409: {}},
    summary="Apply exactly the removals this run held (a revoke, re-link or running sync wins: 409)",
)
def approve(run_id: RunId, ctx: Ctx) -> DecisionOut:
    try:
        done = decide_hold(ctx, run_id, approve=True, actor=ACTOR)
    except breaker.HoldError as error:
        raise _refused(error) from None
    return DecisionOut(**done.__dict__)


@router.post(
    "/held-removals/{run_id}/drop",
    response_model=DecisionOut,
    responses={404: {}, 409: {}},
    summary="Discard this run's held removals; nothing is removed",
)
def drop(run_id: RunId, ctx: Ctx) -> DecisionOut:
    try:
        done = decide_hold(ctx, run_id, approve=False, actor=ACTOR)
    except breaker.HoldError as error:
        raise _refused(error) from None
    return DecisionOut(**done.__dict__)
