"""Per-client rate limits of this web process: wrong admin tokens, and linking requests.

A token bucket per client address: ``per_minute`` events at once, then one more every
``60 / per_minute`` seconds. In process and in memory on purpose (no network dependency): each
web replica limits what reaches it, which bounds a guesser to replicas x the rate. The client
address is the one uvicorn reports: the proxy's ``X-Forwarded-For`` only from
``FORWARDED_ALLOW_IPS`` (web.serving), so a client cannot pick a fresh address per request.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from web.asgi import ASGIApp, Receive, Scope, Send
from web.pages import too_many

MAX_CLIENTS = 10_000
"""Buckets kept; the least recently seen client is forgotten first (memory stays bounded under a flood)."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class Limiter:
    """``per_minute`` events per key in a burst, refilled evenly; ``per_minute=0`` never limits."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str) -> int:
        """Seconds (rounded up) before ``key`` may act again; 0: now. Takes nothing."""
        if self.per_minute <= 0:
            return 0
        with self._lock:
            return self._wait(self._refilled(key))

    def take(self, key: str) -> int:
        """Count one event of ``key``; 0 if it was allowed, else the seconds to wait (nothing taken)."""
        if self.per_minute <= 0:
            return 0
        with self._lock:
            bucket = self._refilled(key)
            waited = self._wait(bucket)
            if waited == 0:
                bucket.tokens -= 1
            return waited

    def _wait(self, bucket: _Bucket) -> int:
        return 0 if bucket.tokens >= 1 else max(1, math.ceil((1 - bucket.tokens) * 60 / self.per_minute))

    def _refilled(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.pop(key, None) or _Bucket(tokens=float(self.per_minute), stamp=now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.stamp) * self.per_minute / 60)
        bucket.stamp = now
        self._buckets[key] = bucket  # most recently seen last
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return bucket


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def too_many_json(send: Send, retry_after: int) -> None:
    """429 for an API client, with Retry-After."""
    body = json.dumps({"detail": f"too many requests; retry after {retry_after} s"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class LinkRateLimit:
    """429 (a page, with Retry-After) past ``per_minute`` requests to a linking path from one client."""

    def __init__(self, app: ASGIApp, limiter: Limiter, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.limiter = limiter
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(self.prefixes):
            retry_after = self.limiter.take(client_of(scope))
            if retry_after:
                await too_many(Request(scope), retry_after)(scope, receive, send)
                return
        await self.app(scope, receive, send)
