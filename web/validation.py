"""The answers to a request that fails validation or names no route: JSON for APIs, a page for teachers.

FastAPI's own answer echoes each refused value back and encodes the JSON as UTF-8 text: a lone
surrogate (a ``"\\ud800"`` escape is valid JSON, but no UTF-8 text) then cannot be encoded, and
the refusal itself became a 500. Here the same detail is written with ASCII escapes, which can
carry any string.

Under ``/v1/`` the refused values are not echoed at all: the platform sends provider user ids there
(``POST /v1/people/resolve``), which rostersync never keeps, logs or repeats.

A teacher's browser (``/link/``, ``/oauth/``, ``/privacy/``: web.pages.TEACHER_PREFIXES) gets the same
styled page as any other failure instead, in their language: a bad or missing parameter is a broken link
to them, never a JSON document; an admin in the console (``/console/``) gets a console page. The admin API and
the platform's API keep their JSON.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from web.console.render import address_problem
from web.pages import broken_link, is_teacher_path, not_found

CONSOLE = "/console/"


async def validation_failed(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)  # registered for this exception only
    if is_teacher_path(request.url.path):
        return broken_link(request, status=422)
    if request.url.path.startswith(CONSOLE):
        return address_problem(request, 422)
    errors = list(error.errors())
    if request.url.path.startswith("/v1/"):
        errors = [{key: value for key, value in item.items() if key != "input"} for item in errors]
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


async def http_error(request: Request, error: Exception) -> Response:
    """404 and 405 on a teacher's path are pages; everything else is FastAPI's own answer."""
    assert isinstance(error, HTTPException)  # registered for this exception only
    if is_teacher_path(request.url.path) and error.status_code in (404, 405):
        return not_found(request, status=error.status_code)
    if request.url.path.startswith(CONSOLE) and error.status_code in (404, 405):
        return address_problem(request, error.status_code)
    return await http_exception_handler(request, error)
