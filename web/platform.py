"""The platform API, ``/v1`` (docs/platform.md): the snapshot, the change feed, and pseudonym resolution.

Authenticated by a ``web.auth`` middleware holding ``PLATFORM_TOKENS`` only, before a route is
chosen: an admin token gets 401 here, a platform token 401 on ``/admin/``. Answers are written as
JSON here rather than through a response model (the models below make the OpenAPI document, and
schemathesis holds the answers to it): one ``json.dumps`` per page, timestamps RFC 3339 with an
explicit ``+00:00`` offset.

The feed's long poll (``wait``) holds no thread while it waits: the route is a coroutine that reads
the counter row in the thread pool for a few milliseconds every ``POLL_SECONDS`` and sleeps on the
event loop in between, and stops as soon as the client goes away.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Security
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from mappers.text import MAX_ID_LENGTH, identifier
from providers.registry import SUPPORTED
from store import feed
from store.models import INTEGRATION_STATUSES, KEY_LENGTH, MAX_ID
from web.auth import platform_scheme
from web.context import WebContext, context
from web.schemas import RequestBody

POLL_SECONDS = 0.25
"""How often a long poll looks at the counter row: one indexed single-row read."""
MAX_WAIT = 30
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
CURSOR = r"^[A-Za-z0-9_-]{1,40}$"

Ctx = Annotated[WebContext, Depends(context)]
IntegrationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The integration's id (`id` of /v1/integrations).")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
After = Annotated[
    str | None,
    Query(pattern=CURSOR, description="Opaque cursor: the `next` of the previous page; absent for the first page."),
]


class Problem(BaseModel):
    detail: str


class Gone(BaseModel):
    detail: str = Field(description="Says to take a new snapshot: head, then the snapshot, then the feed from there.")
    forgotten_through: int = Field(description="Events up to this seq are no longer kept.")


AUTH_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No platform token, or a wrong one (admin tokens included)."},
    429: {"model": Problem, "description": "Too many wrong tokens from this client; see Retry-After."},
}
router = APIRouter(prefix="/v1", tags=["platform"], dependencies=[Security(platform_scheme)], responses=AUTH_ANSWERS)


# ------------------------------------------------------------------------------------------ schemas
class IntegrationItem(BaseModel):
    id: int
    provider: str
    tenant: str
    linked_by: str = Field(description="The platform's id of the teacher (or admin) who linked it.")
    status: str = Field(description=" | ".join(INTEGRATION_STATUSES))
    consent_basis: str | None
    updated_at: datetime = Field(description="When its status last changed (RFC 3339, with offset).")


class ClassItem(BaseModel):
    key: str = Field(description="The provider's class id: stable for the integration's life.")
    name: str
    section: str | None
    state: str


class MemberItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class", description="The class's `key`.")
    person: str = Field(description="The person's pseudonym (see POST /v1/people/resolve).")
    role: str = Field(description="teacher | student")
    display_name: str | None = Field(description="Teachers only; always null for students.")


class IntegrationPage(BaseModel):
    data: list[IntegrationItem]
    next: str | None = Field(description="Pass as `after` for the next page; null: this was the last one.")


class ClassPage(BaseModel):
    data: list[ClassItem]
    next: str | None


class MemberPage(BaseModel):
    data: list[MemberItem]
    next: str | None


class EventItem(BaseModel):
    seq: int = Field(description="Strictly increasing along the feed.")
    at: datetime
    type: str = Field(description="See docs/platform.md for every type and its `data`.")
    integration_id: int
    data: dict[str, Any]


class ChangesPage(BaseModel):
    data: list[EventItem]
    next: int = Field(description="Pass as `after` next time: the last seq here, or `after` when nothing is new.")


class HeadOut(BaseModel):
    seq: int = Field(description="The last seq handed out: take it before the snapshot, follow the feed from it.")


class ResolveRequest(RequestBody):
    provider: str = Field(pattern="^(" + "|".join(SUPPORTED) + ")$")
    tenant: str = Field(min_length=1, max_length=KEY_LENGTH, pattern=PRINTABLE)
    provider_user_id: str = Field(
        min_length=1, max_length=MAX_ID_LENGTH, pattern=PRINTABLE, description="Never stored, logged or echoed."
    )


class ResolveOut(BaseModel):
    person: str


# ------------------------------------------------------------------------------------------ answers
def _time(moment: datetime) -> str:
    """RFC 3339 with an explicit offset; every stored time is naive UTC."""
    return moment.replace(tzinfo=UTC).isoformat()


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=True, separators=(",", ":")), status_code, media_type="application/json"
    )


def _events_json(events: list[feed.Event], next_seq: int) -> Response:
    """A feed page around the events as store.feed writes them (each one's stored ``data`` spliced in)."""
    return Response(f'{{"data":[{feed.event_items(events)}],"next":{next_seq}}}', media_type="application/json")


def _cursor(kind: str, position: int | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(f"{kind}{position}".encode()).decode().rstrip("=")


def _position(kind: str, cursor: str | None) -> int:
    """The row id a cursor of this kind carries; 422 for anything this API did not hand out for this list."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text.removeprefix(kind)
    if not text.startswith(kind) or not digits.isdigit() or not 0 < int(digits) <= MAX_ID:
        detail = [
            {
                "loc": ["query", "after"],
                "msg": "not a cursor of this list: pass a `next` it gave",
                "type": "value_error",
            }
        ]
        raise HTTPException(422, detail)
    return int(digits)


def _held(ctx: WebContext, integration_id: int) -> bool:
    """404 for an unknown integration; False when its status means it holds no roster (revoked, degraded)."""
    status = feed.integration_status(ctx.runtime.engine, integration_id)
    if status is None:
        raise HTTPException(404, f"no integration with id {integration_id}")
    return status not in feed.WITHOUT_ROSTER


# ------------------------------------------------------------------------------------------ snapshot
@router.get(
    "/integrations",
    response_model=IntegrationPage,
    summary="Integrations, in id order; optionally one tenant's, one status's",
)
def list_integrations(
    ctx: Ctx,
    tenant: Annotated[str | None, Query(min_length=1, max_length=KEY_LENGTH, pattern=PRINTABLE)] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(INTEGRATION_STATUSES) + ")$")] = None,
    limit: Limit = 100,
    after: After = None,
) -> Response:
    page = feed.integrations(ctx.runtime.engine, tenant=tenant, status=status, after=_position("i", after), limit=limit)
    data = [item | {"updated_at": _time(item["updated_at"])} for item in page.items]
    return _json({"data": data, "next": _cursor("i", page.next_after)})


@router.get(
    "/integrations/{integration_id}/classes",
    response_model=ClassPage,
    responses={404: {"model": Problem, "description": "No such integration."}},
    summary="The classes the integration holds now; an empty list once it is revoked",
)
def list_classes(integration_id: IntegrationId, ctx: Ctx, limit: Limit = 100, after: After = None) -> Response:
    position = _position("c", after)
    if not _held(ctx, integration_id):
        return _json({"data": [], "next": None})
    page = feed.classes(ctx.runtime.engine, integration_id, after=position, limit=limit)
    return _json({"data": page.items, "next": _cursor("c", page.next_after)})


@router.get(
    "/integrations/{integration_id}/members",
    response_model=MemberPage,
    responses={404: {"model": Problem, "description": "No such integration."}},
    summary="Who is in the integration's classes (one class's with `class`); pseudonyms, names of teachers only",
)
def list_members(
    integration_id: IntegrationId,
    ctx: Ctx,
    class_key: Annotated[
        str | None,
        Query(alias="class", min_length=1, max_length=128, pattern=PRINTABLE, description="One class's `key`."),
    ] = None,
    limit: Limit = 100,
    after: After = None,
) -> Response:
    position = _position("m", after)
    if not _held(ctx, integration_id):
        return _json({"data": [], "next": None})
    page = feed.members(ctx.runtime.engine, integration_id, class_key=class_key, after=position, limit=limit)
    return _json({"data": page.items, "next": _cursor("m", page.next_after)})


# ------------------------------------------------------------------------------------------ the feed
@router.get("/changes/head", response_model=HeadOut, summary="The feed's last seq: take it before a snapshot")
def changes_head(ctx: Ctx) -> Response:
    return _json({"seq": feed.head(ctx.runtime.engine).last_seq})


@router.get(
    "/changes",
    response_model=ChangesPage,
    responses={
        410: {"model": Gone, "description": "`after` is older than the events kept (or past the head): re-snapshot."}
    },
    summary="Events after a seq, in seq order; `wait` long-polls when nothing is new",
)
async def changes(
    request: Request,
    ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="The last seq applied; 0: from the oldest kept.")] = 0,
    limit: Limit = 100,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for an event when none is new.")] = 0,
) -> Response:
    engine = ctx.runtime.engine
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            page = await run_in_threadpool(feed.events_after, engine, after, limit)
        except feed.OutOfWindow as error:
            return _gone(error)
        if page.events or not await _waited_for_more(request, engine, page.head.last_seq, deadline):
            break
    return _events_json(page.events, page.events[-1].seq if page.events else after)


async def _waited_for_more(request: Request, engine: Engine, seen: int, deadline: float) -> bool:
    """Sleep on the event loop until the head moves past ``seen`` (True), the deadline or a hang-up (False)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - loop.time())))
        if (await run_in_threadpool(feed.head, engine)).last_seq > seen:
            return True
    return False


def _gone(error: feed.OutOfWindow) -> Response:
    where = (
        f"events up to seq {error.head.forgotten_through} are no longer kept, so some after {error.position} are lost"
        if error.forgotten
        else f"seq {error.position} is past the feed's head ({error.head.last_seq}): this feed never handed it out"
    )
    detail = f"{where}; take a new snapshot: GET /v1/changes/head, then the snapshot, then the feed from that head"
    return _json({"detail": detail, "forgotten_through": error.head.forgotten_through}, 410)


# ------------------------------------------------------------------------------------------ people
@router.post(
    "/people/resolve",
    response_model=ResolveOut,
    responses={400: {"model": Problem, "description": "The body cannot be read as JSON text (not UTF-8, say)."}},
    summary="The pseudonym a provider account has here, so that the platform never stores the provider's id",
)
def resolve(ctx: Ctx, body: Annotated[ResolveRequest, Body()]) -> Response:
    subject = identifier(body.provider_user_id, strip=False)  # the mappers' own test of an id, before they hash it
    if subject is None:
        detail = [{"loc": ["body", "provider_user_id"], "msg": "not an id a provider gives", "type": "value_error"}]
        raise HTTPException(422, detail)
    ctx.metrics.platform_resolves.labels(body.provider).inc()
    return _json({"person": ctx.runtime.pseudonymiser.pseudonym(body.provider, body.tenant, subject)})
