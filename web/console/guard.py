"""Dependencies of every console route: a live session for a page, a session and its CSRF token for a POST.

Without a session a page redirects to the sign-in (303) and names where to come back to; a POST
whose form lacks the session's CSRF token (a forged form from another site, a stale tab after
sign-out) is refused with a page that says so, and nothing is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from web.console.render import ConsoleAnswer, page
from web.console.session import COOKIE, Session, read_session, same
from web.context import WebContext, context

MAX_FORM_BYTES = 16_384
"""Console forms carry an id, a reason, a number: anything larger is not one of ours."""
FORM_TYPE = "application/x-www-form-urlencoded"


def current_session(request: Request, ctx: WebContext) -> Session | None:
    return read_session(request.cookies.get(COOKIE), ctx.runtime.settings.admin_token_list())


def _sign_in_first(request: Request) -> ConsoleAnswer:
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return ConsoleAnswer(RedirectResponse(f"/console/sign-in?next={quote(back, safe='')}", status_code=303))


def signed_in(request: Request, ctx: Annotated[WebContext, Depends(context)]) -> Session:
    session = current_session(request, ctx)
    if session is None:
        raise _sign_in_first(request)
    return session


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form, URL-encoded only (console forms upload nothing); a malformed body is an empty form."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20))
    except (UnicodeDecodeError, ValueError):
        return {}


@dataclass(frozen=True)
class Posted:
    session: Session
    form: dict[str, str]


def forged(request: Request, session: Session | None) -> ConsoleAnswer:
    response = page(request, "refused.html", session=session, status=403)
    return ConsoleAnswer(response)


def posted(
    request: Request,
    ctx: Annotated[WebContext, Depends(context)],
    form: Annotated[dict[str, str], Depends(form_fields)],
) -> Posted:
    """A POST from one of our own forms in a live session; anything else is refused before it acts."""
    session = current_session(request, ctx)
    if session is None:
        raise _sign_in_first(request)
    if not same(form.get("csrf"), session.csrf):
        raise forged(request, session)
    return Posted(session, form)


SignedIn = Annotated[Session, Depends(signed_in)]
Post = Annotated[Posted, Depends(posted)]
Ctx = Annotated[WebContext, Depends(context)]
