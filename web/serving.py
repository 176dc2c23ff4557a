"""How ``rostersync web`` runs uvicorn: trusted proxies, timeouts and limits, all from settings.

uvicorn bounds an idle keep-alive connection but not a request whose headers never finish: a
client that sends a byte now and then holds its connection (and a place under
``limit_concurrency``) for as long as it likes. ``HeaderDeadline`` closes a connection that has
not delivered a whole request head within ``WEB_HEADER_TIMEOUT_SECONDS`` of opening or of its
previous response.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from settings import Settings


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head; subclassed per deadline."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole request head arrived
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request on this connection gets the same deadline

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_deadline(seconds: float) -> type[HeaderDeadline]:
    return type("HeaderDeadlineProtocol", (HeaderDeadline,), {"header_timeout": seconds})


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """Forwarded headers only from ``FORWARDED_ALLOW_IPS``; bounded heads, idles and concurrency; no access log
    (callback URLs carry the consent state)."""
    proxies = settings.forwarded_allow_list()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        http=header_deadline(settings.web_header_timeout_seconds),
        timeout_keep_alive=settings.web_keep_alive_seconds,
        limit_concurrency=settings.web_max_concurrency,
        h11_max_incomplete_event_size=settings.web_max_header_bytes,
    )
