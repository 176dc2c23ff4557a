"""``/docs`` when ``DOCS_ENABLED``: the API's operations as one plain page, built from its OpenAPI document.

FastAPI's Swagger UI and ReDoc pages load their JavaScript from a CDN: a third party's script
on our origin, next to the admin API. This page has no script and no style, so it is served
under the same strict CSP as every other page; the full schema is ``/openapi.json``
(``OPENAPI_ENABLED``), for a viewer of the operator's choice.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse

from web.pages import page

METHODS = ("get", "put", "post", "patch", "delete")


def operations(schema: dict[str, Any]) -> list[str]:
    """``METHOD /path: summary`` per operation, in the document's order."""
    lines = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                summary = item[method].get("summary", "")
                lines.append(f"{method.upper()} {path}: {summary}".rstrip(": "))
    return lines


def docs_page(schema: dict[str, Any]) -> HTMLResponse:
    info = schema.get("info", {})
    return page(
        f"{info.get('title', 'API')} {info.get('version', '')}".strip(),
        [str(info.get("description", "")), "Operations (admin and /v1 ones need a bearer token of their own kind):"],
        items=operations(schema),
    )
