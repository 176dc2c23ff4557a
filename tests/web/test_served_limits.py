"""`rostersync web` holds no connection for ever: real slow sockets against the real process on 127.0.0.1.

Small numbers on purpose (a handful of sockets, sub-second deadlines), each wait bounded.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from settings import Settings
from tests.clikit import env_for
from tests.proxykit import free_port, rostersync_web

DEADLINE = 0.5
CONCURRENCY = 4


@pytest.fixture(params=[""], ids=["no-trusted-proxy"])
def served(sqlite_settings: Settings, request: pytest.FixtureRequest) -> Iterator[int]:
    """The real process; ``request.param`` is its FORWARDED_ALLOW_IPS."""
    port = free_port()
    env = env_for(sqlite_settings) | {
        "ROSTERSYNC_WEB_HEADER_TIMEOUT_SECONDS": str(DEADLINE),
        "ROSTERSYNC_WEB_MAX_CONCURRENCY": str(CONCURRENCY),
        "ROSTERSYNC_WEB_MAX_HEADER_BYTES": "4096",
        "ROSTERSYNC_ADMIN_FAILURES_PER_MINUTE": "3",
        "ROSTERSYNC_ADMIN_TOKENS": "served-admin-token-0123456789abcdefghij",
        "ROSTERSYNC_FORWARDED_ALLOW_IPS": request.param,
    }
    assert "FORWARDED_ALLOW_IPS" not in os.environ
    with rostersync_web(env, port):
        yield port


def request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(head)
        return connection.recv(65536)


def slow_client(port: int) -> socket.socket:
    """Sends half a request head, and then nothing."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return connection


def closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        return connection.recv(1024) == b""
    except TimeoutError:
        return False


def test_slow_heads_are_cut_and_concurrency_is_bounded(served: int) -> None:
    slow = [slow_client(served) for _ in range(CONCURRENCY - 1)]
    try:
        time.sleep(0.1)  # all accepted
        crowded = request(served, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert crowded.startswith(b"HTTP/1.1 503"), crowded[:60]
        started = time.monotonic()
        assert all(closed_by_server(connection, within=DEADLINE * 6) for connection in slow)
        assert time.monotonic() - started < DEADLINE * 6
    finally:
        for connection in slow:
            connection.close()
    assert request(served, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_an_oversized_head_is_refused_before_it_ends(served: int) -> None:
    """4 KB of head without its end is refused at once, not buffered while the client takes its time."""
    assert request(served, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8000).startswith(
        b"HTTP/1.1 400"
    )


def wrong_tokens_from(port: int, addresses: list[str]) -> list[bytes]:
    """The status line of a wrong-token admin request claiming each X-Forwarded-For address in turn."""
    statuses = []
    for address in addresses:
        head = (
            b"GET /admin/integrations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n"
            + f"X-Forwarded-For: {address}\r\n\r\n".encode()
        )
        statuses.append(request(port, head)[:12])
    return statuses


def test_forwarded_for_from_an_untrusted_peer_does_not_reset_the_limit(served: int) -> None:
    statuses = wrong_tokens_from(served, [f"203.0.113.{index}" for index in range(5)])
    assert statuses == [b"HTTP/1.1 401"] * 3 + [b"HTTP/1.1 429"] * 2


@pytest.mark.parametrize("served", ["127.0.0.1"], ids=["proxy-on-loopback"], indirect=True)
def test_a_trusted_proxy_reports_each_client_address(served: int) -> None:
    statuses = wrong_tokens_from(served, ["203.0.113.1"] * 4 + ["203.0.113.2"])
    assert statuses == [b"HTTP/1.1 401"] * 3 + [b"HTTP/1.1 429", b"HTTP/1.1 401"]
