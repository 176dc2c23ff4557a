"""The pages a teacher sees (linking, its failures, privacy): Jinja2 templates, one stylesheet, their language.

Every piece of text is escaped by the templates (autoescape); class names shown are the teacher's own, and go
nowhere else. A page says what happened and what to do, in the teacher's language (web.i18n), with a button
back to the platform when ``PLATFORM_URL`` is set. The stylesheet is served by the app itself and the pages'
Content-Security-Policy allows nothing else: no script, no frame, no form, nothing from elsewhere.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from web.i18n import HERE, NAMES, Words, environment, language

CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""Every answer's default: no script, no style, no frame, no form; nobody may frame it (clickjacking)."""

PAGE_CSP = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""A teacher page's: the same, plus this app's own stylesheet."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
"""On every response of the app (web.headers), and on every page here."""

NO_STORE = {"Cache-Control": "no-store", **SECURITY_HEADERS}

TEACHER_PREFIXES = ("/link/", "/oauth/", "/privacy/")
"""Paths a teacher's browser opens: their errors (a bad parameter, an unknown path) are pages, never JSON."""

STYLESHEET = "/static/teacher.css"
_CSS = (HERE / "static" / "teacher.css").read_bytes()

router = APIRouter(include_in_schema=False)


@router.get(STYLESHEET)
def stylesheet() -> Response:
    return Response(
        _CSS,
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600", **SECURITY_HEADERS},
    )


def is_teacher_path(path: str) -> bool:
    return path.startswith(TEACHER_PREFIXES)


def words_for(request: Request) -> Words:
    """The teacher's language, from the browser's ``Accept-Language``."""
    return Words(language(request.headers.get("accept-language")))


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A teacher page in the request's language, with the platform's button when ``PLATFORM_URL`` is set."""
    lang = language(request.headers.get("accept-language"))
    html = (
        environment(lang)
        .get_template(template)
        .render(
            lang=lang,
            language_name=NAMES[lang],
            stylesheet=request.scope.get("root_path", "") + STYLESHEET,
            platform_url=_platform_url(request),
            tone="problem" if status >= 400 else "ok",
            **context,
        )
    )
    headers = {
        **NO_STORE,
        "Content-Security-Policy": PAGE_CSP,
        "Content-Language": lang,
        "Vary": "Accept-Language",
    }
    return HTMLResponse(html, status_code=status, headers=headers)


def message(
    request: Request,
    title: str,
    paragraphs: list[str],
    *,
    status: int = 200,
    items: list[str] | None = None,
    after: list[str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """What happened and what to do: a title, paragraphs, an optional list, more paragraphs after it."""
    return render(
        request,
        "message.html",
        status=status,
        title=title,
        paragraphs=paragraphs,
        items=items,
        after=after or [],
        **context,
    )


def _platform_url(request: Request) -> str | None:
    state = getattr(request.scope.get("app"), "state", None)
    ctx = getattr(state, "rostersync", None)
    url: str | None = ctx.runtime.settings.platform_url if ctx is not None else None
    return url


def page(title: str, paragraphs: list[str], *, status: int = 200, items: list[str] | None = None) -> HTMLResponse:
    """A bare page with no style and no language (the admin's ``/docs``): not a teacher's page."""
    body = "".join(f"<p>{escape(text)}</p>" for text in paragraphs)
    if items:
        body += "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def broken_link(request: Request, *, status: int) -> HTMLResponse:
    """A bad or missing parameter on a teacher's path: the same page as any other failure."""
    words = words_for(request)
    return message(
        request,
        words.gettext("This link is incomplete or damaged"),
        [
            words.gettext("Part of the link is missing or was changed, so it cannot be used. Nothing was changed."),
            words.gettext("Go back to the platform and use its Connect button again."),
        ],
        status=status,
    )


def not_found(request: Request, *, status: int) -> HTMLResponse:
    """No page at this teacher path (a provider missing from the URL, a mistyped address)."""
    words = words_for(request)
    return message(
        request,
        words.gettext("Page not found"),
        [words.gettext("There is no page at this address."), words.gettext("Go back to the platform and start again.")],
        status=status,
    )


def too_many(request: Request, retry_after: int) -> HTMLResponse:
    """The link rate limit's answer, in the teacher's words and language."""
    words = words_for(request)
    response = message(
        request,
        words.gettext("Too many attempts"),
        [
            words.gettext("We received too many requests from your network in a short time. Nothing was changed."),
            words.ngettext(
                "Wait %(num)d second, then try again.", "Wait %(num)d seconds, then try again.", retry_after
            ),
        ],
        status=429,
    )
    response.headers["Retry-After"] = str(retry_after)
    return response
