"""The admin API's bearer tokens: checked before anything else about a request is looked at.

A pure ASGI middleware, not a route dependency, so that no path parameter, query or body of an
``/admin/`` request is parsed (nor a 404 / 422 told apart) for a caller without a valid token.
Every configured token is compared, in constant time, whatever the first comparison said.
A client that has sent ``ADMIN_FAILURES_PER_MINUTE`` wrong tokens is answered 429 (with
Retry-After) before its token is looked at, so a right guess cannot be told from a wrong one
until the limit lets it try again. ``/metrics`` is guarded the same way unless
``METRICS_ACCESS=open``.

The ``/v1/`` platform API (docs/platform.md) is guarded by a second instance of the same middleware,
holding ``PLATFORM_TOKENS`` only: each kind of token gets 401 on the other's routes (the settings
refuse a token that is in both lists).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from fastapi.security import HTTPBearer

from web.asgi import ASGIApp, Receive, Scope, Send
from web.ratelimit import Limiter, client_of, too_many_json

ADMIN_PREFIX = "/admin/"
PLATFORM_PREFIX = "/v1/"

bearer_scheme = HTTPBearer(auto_error=False, description="One of ROSTERSYNC_ADMIN_TOKENS")
"""Declared on the admin routes so the OpenAPI document says how they are authenticated."""

platform_scheme = HTTPBearer(
    auto_error=False, scheme_name="PlatformBearer", description="One of ROSTERSYNC_PLATFORM_TOKENS"
)
"""Declared on the /v1 routes: a scheme of its own, since an admin token does not open them."""


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
    """401 for every guarded request without one of the configured tokens, 429 past the failure limit."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: list[str],
        on_refused: Callable[[], None],
        limiter: Limiter,
        guarded: Callable[[str], bool] = lambda path: path.startswith(ADMIN_PREFIX),
        realm: str = "rostersync-admin",
    ) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]
        self.on_refused = on_refused
        self.limiter = limiter
        self.guarded = guarded
        self.challenge = f'Bearer realm="{realm}"'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.guarded(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        retry_after = self.limiter.wait(client)
        if retry_after:
            self.on_refused()
            await too_many_json(send, retry_after)
            return
        if token_ok(bearer_of(scope), self.tokens):
            await self.app(scope, receive, send)
            return
        self.limiter.take(client)
        self.on_refused()
        await _unauthorized(send, self.challenge)


async def _unauthorized(send: Send, challenge: bytes) -> None:
    body = json.dumps({"detail": "missing or wrong bearer token"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
