"""How every console page is made: a Jinja2 template, the console's own headers, the navigation's counts.

The pages load one stylesheet from the app itself and no script, so the Content-Security-Policy
allows exactly that: styles and images from this origin, forms posted back to it, nothing
framed, nothing else. Autoescaping is on for every template: names typed by a school (a tenant,
a reason) are shown as text, never as markup.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from store import holds, pending_revokes
from web.console.session import Session
from web.context import WebContext
from web.pages import SECURITY_HEADERS

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""One stylesheet of ours; charts are inline SVG drawn with attributes, not inline styles."""

HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": CSP, "Cache-Control": "no-store"}
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"


def when(moment: datetime | None) -> str:
    """A stored (naive UTC) moment as an admin reads it; a dash for never."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "—"


def iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") + "Z" if moment is not None else ""


def duration(seconds: int | None) -> str:
    """A number of seconds in the largest unit that reads naturally (``90 s``, ``2 h``, ``1 d 6 h``)."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86_400:
        return f"{seconds // 3600} h" + (f" {seconds % 3600 // 60} min" if seconds % 3600 >= 60 else "")
    return f"{seconds // 86_400} d" + (f" {seconds % 86_400 // 3600} h" if seconds % 86_400 >= 3600 else "")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["iso"] = iso
    env.filters["duration"] = duration
    return env


ENV = _environment()


class ConsoleAnswer(Exception):
    """A response decided deep in a dependency (sign in first, forged form): the app's handler returns it."""

    def __init__(self, response: Response) -> None:
        super().__init__("console answer")
        self.response = response


def nav_counts(ctx: WebContext) -> dict[str, int]:
    """What waits for an admin, shown in the navigation on every page: held removals, provider revokes."""
    engine = ctx.runtime.engine
    with engine.connect() as connection:
        held = len(holds.every(connection))
    return {"held": held, "pending": len(pending_revokes.summaries(engine))}


def page(
    request: Request,
    template: str,
    *,
    ctx: WebContext | None = None,
    session: Session | None = None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """Render ``console/<template>`` with the navigation (when signed in) and the console's headers."""
    counts = nav_counts(ctx) if ctx is not None and session is not None else None
    html = ENV.get_template(f"console/{template}").render(
        request_path=request.url.path, session=session, counts=counts, **values
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


PROBLEMS = {
    404: ("No such page", "The console has no page at this address."),
    405: ("No such page", "The console has no page at this address."),
    422: ("Not a console address", "A part of this address is not what the console expects (an id is a number)."),
}


def address_problem(request: Request, status: int) -> HTMLResponse:
    """A console page for an address the console cannot answer (never FastAPI's JSON); no data is read."""
    title, line = PROBLEMS.get(status, PROBLEMS[404])
    return page(
        request, "message.html", status=status, title=title, lines=[line], back=("/console/", "Back to the console")
    )


def confirm(
    request: Request,
    ctx: WebContext,
    session: Session,
    *,
    title: str,
    lines: list[str],
    button: str,
    cancel: str,
    **options: Any,
) -> HTMLResponse:
    """The console's one confirmation page: what will happen, then the button that does it, posted back to
    the same path (or, ``disabled=True``, only the way back).

    Why one function: every action that changes something is asked first in the same words and form, so the
    CSRF field, the danger styling and the way back cannot drift apart between pages. ``options`` are the
    template's extras (``danger``, ``reason``, ``affected``, ``hold``, ``formats``, ``interval``).
    """
    return page(
        request,
        "confirm.html",
        ctx=ctx,
        session=session,
        title=title,
        lines=lines,
        action=request.url.path,
        button=button,
        cancel=cancel,
        **options,
    )
