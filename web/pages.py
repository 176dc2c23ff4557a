"""The plain pages a teacher sees after the provider sends them back: what happened and what to do next.

Every piece of text is HTML-escaped; class names shown are the teacher's own, and go nowhere else.
"""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""Our pages are plain HTML: no script, no style, no frame, no form; nobody may frame them (clickjacking)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
"""On every response of the app (web.headers), and on every page here."""

NO_STORE = {"Cache-Control": "no-store", **SECURITY_HEADERS}


def page(title: str, paragraphs: list[str], *, status: int = 200, items: list[str] | None = None) -> HTMLResponse:
    body = "".join(f"<p>{escape(text)}</p>" for text in paragraphs)
    if items:
        body += "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def what_to_do(message: str) -> str:
    """Advice for the failures a teacher can meet, from the (safe) message of the link error."""
    if "did not grant access" in message:
        return (
            "Nothing was linked. If that was a mistake, go back to the platform and connect again, then allow access."
        )
    if "lacks required scope" in message:
        return (
            "Nothing was linked and the partial permission was given back. Connect again from the platform "
            "and leave every requested permission ticked."
        )
    if "state" in message:
        return "This link page was already used or is too old. Go back to the platform and click Connect again."
    return "Nothing was linked. Try again from the platform; if it keeps failing, tell your school's administrator."
