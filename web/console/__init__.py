"""The admin console at ``/console/``: server-rendered pages on top of the admin API's own functions.

Every page is a Jinja2 template (web/templates/console), styled by one stylesheet served from here
(web/static/console.css), with no script. Every action runs through the function the admin API
runs (web.actions, services.*, store.breaker), audited as ``admin:console``. Sign-in, the session
cookie and CSRF: web.console.session and web.console.guard. docs/console.md says what an admin sees.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from web.console import actions, held, home, integrations, records
from web.console.render import ConsoleAnswer

PREFIX = "/console"


async def _answer(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ConsoleAnswer)
    return error.response


def install(app: FastAPI) -> None:
    """Mount the console's routes (kept out of the OpenAPI document: they are pages, not an API)."""
    for module in (home, integrations, actions, records, held):
        app.include_router(module.router, prefix=PREFIX)
    app.add_exception_handler(ConsoleAnswer, _answer)
