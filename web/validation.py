"""The 422 answer to a request that fails validation, whatever text the request carried.

FastAPI's own answer echoes each refused value back and encodes the JSON as UTF-8 text: a lone
surrogate (a ``"\\ud800"`` escape is valid JSON, but no UTF-8 text) then cannot be encoded, and
the refusal itself became a 500. Here the same detail is written with ASCII escapes, which can
carry any string.

Under ``/v1/`` the refused values are not echoed at all: the platform sends provider user ids there
(``POST /v1/people/resolve``), which rostersync never keeps, logs or repeats.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response


async def validation_failed(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)  # registered for this exception only
    errors = list(error.errors())
    if request.url.path.startswith("/v1/"):
        errors = [{key: value for key, value in item.items() if key != "input"} for item in errors]
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")
