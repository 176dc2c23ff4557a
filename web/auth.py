"""The admin API's bearer tokens: checked before anything else about a request is looked at.

A pure ASGI middleware, not a route dependency, so that no path parameter, query or body of an
``/admin/`` request is parsed (nor a 404 / 422 told apart) for a caller without a valid token.
Every configured token is compared, in constant time, whatever the first comparison said.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.security import HTTPBearer

ADMIN_PREFIX = "/admin/"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

bearer_scheme = HTTPBearer(auto_error=False, description="One of ROSTERSYNC_ADMIN_TOKENS")
"""Declared on the admin routes so the OpenAPI document says how they are authenticated."""


def token_ok(presented: bytes, tokens: list[bytes]) -> bool:
    """Constant time in the presented token, and no early exit over the configured ones."""
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented, token)
    return matched and bool(tokens)


def bearer_of(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = bytes(value).partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else b""
    return b""


class AdminAuth:
    """401 for every ``/admin/`` request without one of the configured tokens; the rest passes through."""

    def __init__(self, app: ASGIApp, tokens: list[str], on_refused: Callable[[], None]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = scope["type"] == "http" and str(scope.get("path", "")).startswith(ADMIN_PREFIX)
        if admin and not token_ok(bearer_of(scope), self.tokens):
            self.on_refused()
            body = json.dumps({"detail": "missing or wrong bearer token"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="rostersync-admin"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
