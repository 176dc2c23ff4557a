"""What every provider emulator shares: an HTTPS server with its own CA, a request log, fault injection.

A provider emulator is only worth having if it fails the way the provider does, and if a test can
see exactly which calls were made. Those parts (TLS with a throw-away trustme CA, keep-alive without
Nagle's 44 ms stall, Content-Length on every answer, the log, injected failures and latency, start and
stop on a stable port) are the same for Google, Clever and Microsoft, so they live here once; each
provider module keeps only its own routes, data and error shapes.

Like the rest of the package it imports nothing from the project.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias
from urllib.parse import parse_qs, urlencode, urlsplit

import trustme

__all__ = [
    "Disruption",
    "EmulatorCore",
    "Failure",
    "Json",
    "Redirect",
    "Request",
    "RequestRecord",
    "Response",
    "Rewrite",
    "Tamper",
    "Trap",
    "copy_query",
    "json_body",
]

Json: TypeAlias = dict[str, Any]

_HANDSHAKE_TIMEOUT = 5.0
_IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class RequestRecord:
    """What a test needs to know about one request, without keeping bodies or secrets around."""

    method: str
    path: str
    query: dict[str, list[str]]
    user_id: str | None
    status: int


@dataclass
class Failure:
    """An injected failure: the next ``remaining`` requests whose path contains ``path_contains``."""

    path_contains: str
    status: int
    remaining: int
    retry_after: int | None


@dataclass
class Tamper:
    """A hostile answer: the next ``remaining`` answers ``rewrite`` takes (it returns None to pass one by).

    For payloads a provider should never send but one day will: an HTML error page with status 200,
    truncated JSON, a wrong type, a 10 MB page, a cursor that points back at its own page.
    """

    path_contains: str
    rewrite: Rewrite
    remaining: int


@dataclass
class Disruption:
    """A network fault for the next ``remaining`` requests whose path contains ``path_contains``.

    ``reset``: the connection is torn down with a TCP reset before any answer (a load balancer
    dropping it); ``stall``: the answer is held back ``seconds`` (a client with a shorter read
    timeout gives up first), then sent as usual.
    """

    path_contains: str
    kind: str
    remaining: int
    seconds: float = 0.0


@dataclass
class Redirect:
    """A redirect instead of the answer for the next ``remaining`` requests whose path contains ``path_contains``.

    ``status`` (301, 302, 303, 307 or 308) with ``Location`` = ``target`` + the request's own path and
    query: a provider moved, or something between us and it (a proxy, a hijacked DNS name) sends
    clients elsewhere. With 307 and 308 a client that follows re-sends the method and the body, so
    whatever credential the request carried would reach ``target``. The endpoint itself does not act.
    """

    path_contains: str
    status: int
    target: str
    remaining: int


@dataclass
class Request:
    """One parsed request; bodies are parsed as forms, the body shape OAuth clients send, and kept raw."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    """The raw body, for the one provider that takes JSON (Graph's ``$batch``)."""

    def param(self, name: str) -> str:
        values = self.query.get(name)
        return values[0] if values else ""

    def form_value(self, name: str) -> str:
        values = self.form.get(name)
        return values[0] if values else ""

    def bearer(self) -> str | None:
        header = self.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        for name in ("access_token", "oauth_token"):
            if self.param(name):
                return self.param(name)
        return None

    def basic_auth(self) -> tuple[str, str] | None:
        """HTTP Basic client credentials, or None when absent or undecodable."""
        header = self.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except ValueError:
            return None
        user, _, password = decoded.partition(":")
        return user, password


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    user_id: str | None = None


Rewrite: TypeAlias = "Callable[[Request, Response], Response | None]"
"""Gets a request and the answer the emulator would give; returns the answer to send instead, or None."""


def json_body(value: Any, *, pretty: bool = False) -> bytes:
    if pretty:
        return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def copy_query(query: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: list(values) for name, values in query.items()}


# ---------------------------------------------------------------------------------- HTTP plumbing
class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the emulator; keep-alive needs HTTP/1.1, and no Nagle (library-notes 0)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server: _Server

    def do_GET(self) -> None:
        self.server.emulator._serve(self)

    def do_POST(self) -> None:
        self.server.emulator._serve(self)

    def do_PUT(self) -> None:
        self.server.emulator._serve(self)

    def do_PATCH(self) -> None:
        self.server.emulator._serve(self)

    def do_DELETE(self) -> None:
        self.server.emulator._serve(self)

    def log_message(self, format: str, *args: Any) -> None:  # the default writes every request to stderr
        return


class _Serving(Protocol):
    """What a server hands each request to: an emulator, or a trap."""

    def _serve(self, handler: _Handler) -> None: ...


class _Server(ThreadingHTTPServer):
    """TLS is negotiated in the per-connection thread, so a client that never finishes its handshake
    ties up only its own thread, never the accept loop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: _Serving, context: ssl.SSLContext) -> None:
        self.emulator = emulator
        self.ssl_context = context
        self._connections: set[ssl.SSLSocket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        if not isinstance(request, socket.socket):
            return
        request.settimeout(_HANDSHAKE_TIMEOUT)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return  # failed or abandoned handshake: wrap_socket has already closed the socket
        with self._connections_lock:
            self._connections.add(connection)
        try:
            _Handler(connection, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-request is normal here; do not print tracebacks

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)


# ------------------------------------------------------------------------------------ the core
class EmulatorCore:
    """Server, CA, log, hooks and fault injection; a subclass supplies routes and error shapes.

    Subclasses implement ``_dispatch`` (answer one request, called with the lock held),
    ``_identify`` (which user a request acts for, for the log), ``_failure_response`` (an injected
    failure in the provider's own error shape) and ``_error_response`` (the emulator's own
    failures: an unreadable request, a hook that raised).

    Controls are thread-safe: tests call them from the test thread while requests are being served
    (hooks run in the serving thread before a request is answered, without the lock held).
    """

    name = "emulator"
    """Prefix of the serving thread's name and of the CA file, so two emulators are told apart."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_dir: Path | None = None,
        client_id: str = "",
        client_secret: str = "",
    ) -> None:
        self._host = host
        self._client_id = client_id  # the one OAuth client this emulator knows (every provider has one)
        self._client_secret = client_secret
        self._port = port
        self.latency: float = 0.0
        self._lock = threading.RLock()
        self._hooks: list[Callable[[RequestRecord], None]] = []
        self._log: list[RequestRecord] = []
        self._failures: list[Failure] = []
        self._tampers: list[Tamper] = []
        self._disruptions: list[Disruption] = []
        self._redirects: list[Redirect] = []
        self._traps: list[Trap] = []

        self._ca = trustme.CA()
        leaf = self._ca.issue_cert("127.0.0.1", "localhost")
        self._ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(self._ssl_context)
        if cert_dir is None:
            directory = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
            weakref.finalize(self, shutil.rmtree, str(directory), ignore_errors=True)
        else:
            directory = Path(cert_dir)
            directory.mkdir(parents=True, exist_ok=True)
        self._ca_path = directory / f"{self.name}-ca-{secrets.token_hex(4)}.pem"
        self._ca.cert_pem.write_to_path(str(self._ca_path))

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stopped.set()

    # ------------------------------------------------------------------------------- life cycle
    def start(self) -> Self:
        """Bind and serve in a daemon thread; OSError propagates when the port is taken.

        After stop() a restart binds the same port again, so clients keep their base URL across a
        simulated outage.
        """
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._port), self, self._ssl_context)
            self._port = int(server.server_address[1])
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.name}-{self._port}",
                daemon=True,
            )
            self._server, self._thread = server, thread
            self._stopped.clear()
        thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            traps, self._traps = self._traps, []
        for trap in traps:
            trap.stop()
        self._stopped.set()

    def serve_forever(self) -> None:
        """Blocking variant for a CLI: returns when stop() is called or on KeyboardInterrupt."""
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        return self._port

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def client_secret(self) -> str:
        return self._client_secret

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("the emulator has no port yet: call start() first")
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host  # noqa: S104 - comparison only
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self._port}"

    @property
    def ca_path(self) -> Path:
        return self._ca_path

    # ------------------------------------------------------------------------------- controls
    def fail_next(self, path_contains: str, status: int, count: int = 1, retry_after: int | None = None) -> None:
        """The next ``count`` requests whose path contains ``path_contains`` fail with ``status``."""
        if not 400 <= status <= 599:
            raise ValueError("fail_next needs an HTTP error status (400-599)")
        with self._lock:
            self._failures.append(Failure(path_contains, status, count, retry_after))

    def tamper_next(self, path_contains: str, rewrite: Rewrite, count: int = 1) -> None:
        """The next ``count`` answers to requests whose path contains ``path_contains`` that ``rewrite``
        takes are replaced by what it returns (the log records the status actually sent)."""
        if count < 1:
            raise ValueError("tamper_next needs a count of at least 1")
        with self._lock:
            self._tampers.append(Tamper(path_contains, rewrite, count))

    def reset_next(self, path_contains: str, count: int = 1) -> None:
        """The next ``count`` requests whose path contains ``path_contains`` get a TCP reset, no answer."""
        with self._lock:
            self._disruptions.append(Disruption(path_contains, "reset", count))

    def stall_next(self, path_contains: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` requests whose path contains ``path_contains`` are answered ``seconds`` late."""
        if seconds <= 0:
            raise ValueError("stall_next needs a positive number of seconds")
        with self._lock:
            self._disruptions.append(Disruption(path_contains, "stall", count, seconds))

    def redirect_next(self, path_contains: str, target: str, status: int = 307, count: int = 1) -> None:
        """The next ``count`` requests whose path contains ``path_contains`` are answered ``status`` with
        ``Location: target + path + query`` instead of being served (``trap()`` gives a ``target``)."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError("redirect_next needs a redirect status (301, 302, 303, 307 or 308)")
        with self._lock:
            self._redirects.append(Redirect(path_contains, status, target, count))

    def trap(self) -> Trap:
        """A listener on another port of this host, with this emulator's certificate, so a client that
        trusts the emulator would trust it too: a different origin where a redirect can point. It
        records all it receives; it stops with the emulator."""
        trap = Trap(self._host, self._ssl_context).start()
        with self._lock:
            self._traps.append(trap)
        return trap

    def add_hook(self, hook: Callable[[RequestRecord], None]) -> None:
        """Run ``hook`` before each request is answered (user_id judged from the request, status 0)."""
        with self._lock:
            self._hooks.append(hook)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    # ------------------------------------------------------------------------------- subclass API
    def _dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def _identify(self, request: Request, *, before: bool) -> str | None:
        return None

    def _failure_response(self, request: Request, failure: Failure) -> Response:
        raise NotImplementedError

    def _error_response(self, status: int, message: str) -> Response:
        raise NotImplementedError

    # ------------------------------------------------------------------------------- serving
    def _serve(self, handler: _Handler) -> None:
        request = _read_request(handler)
        if request is None:
            handler.close_connection = True
            _write(handler, self._error_response(400, "Invalid Content-Length."))
            return
        with self._lock:
            before_user = self._identify(request, before=True)
            hooks = list(self._hooks)
        response: Response | None = None
        for hook in hooks:
            try:
                hook(RequestRecord(request.method, request.path, copy_query(request.query), before_user, 0))
            except Exception as exc:  # a failing hook must show up in the test, not kill the connection
                response = self._error_response(500, f"emulator hook failed: {exc!r}")
                break
        with self._lock:
            disruption = self._take_disruption(request) if response is None else None
        if disruption is not None and disruption.kind == "reset":
            self._reset(handler, request)
            return
        if disruption is not None:
            time.sleep(disruption.seconds)  # the client may have given up meanwhile: the answer then goes nowhere
        with self._lock:
            if response is None:
                response = self._injected_failure(request) or self._redirection(request) or self._dispatch(request)
                response = self._tampered(request, response)
            user_id = response.user_id if response.user_id is not None else self._identify(request, before=False)
            self._log.append(
                RequestRecord(request.method, request.path, copy_query(request.query), user_id, response.status)
            )
        if self.latency > 0:
            time.sleep(self.latency)
        _write(handler, response)

    def _tampered(self, request: Request, response: Response) -> Response:
        for tamper in self._tampers:
            if tamper.remaining <= 0 or tamper.path_contains not in request.path:
                continue
            replaced = tamper.rewrite(request, response)
            if replaced is not None:
                tamper.remaining -= 1
                self._tampers = [t for t in self._tampers if t.remaining > 0]
                return replaced
        return response

    def _take_disruption(self, request: Request) -> Disruption | None:
        disruption = next((d for d in self._disruptions if d.remaining > 0 and d.path_contains in request.path), None)
        if disruption is not None:
            disruption.remaining -= 1
            self._disruptions = [d for d in self._disruptions if d.remaining > 0]
        return disruption

    def _reset(self, handler: _Handler, request: Request) -> None:
        """Log the request (status 0: never answered) and close with SO_LINGER 0, which sends a TCP RST."""
        with self._lock:
            self._log.append(RequestRecord(request.method, request.path, copy_query(request.query), None, 0))
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.close(handler.connection)

    def _redirection(self, request: Request) -> Response | None:
        redirect = next((r for r in self._redirects if r.remaining > 0 and r.path_contains in request.path), None)
        if redirect is None:
            return None
        redirect.remaining -= 1
        self._redirects = [r for r in self._redirects if r.remaining > 0]
        query = urlencode(request.query, doseq=True)
        location = redirect.target.rstrip("/") + request.path + (f"?{query}" if query else "")
        return Response(redirect.status, b"", [("Location", location)])

    def _injected_failure(self, request: Request) -> Response | None:
        failure = next((f for f in self._failures if f.remaining > 0 and f.path_contains in request.path), None)
        if failure is None:
            return None
        failure.remaining -= 1
        self._failures = [f for f in self._failures if f.remaining > 0]
        return self._failure_response(request, failure)


# ------------------------------------------------------------------------------------ shared serving
def _read_request(handler: _Handler) -> Request | None:
    """The request on ``handler``, its body read and forms parsed; None when its Content-Length is unreadable."""
    split = urlsplit(handler.path)
    headers = {name.lower(): value for name, value in handler.headers.items()}
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        return None
    body = handler.rfile.read(length) if length > 0 else b""
    form: dict[str, list[str]] = {}
    if "application/x-www-form-urlencoded" in headers.get("content-type", "") or (
        body and handler.command == "POST" and not headers.get("content-type")
    ):
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return Request(handler.command, split.path, parse_qs(split.query, keep_blank_values=True), form, headers, body)


def _write(handler: _Handler, response: Response) -> None:
    handler.send_response(response.status)
    for name, value in response.headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(response.body)))
    handler.end_headers()
    if response.body and handler.command != "HEAD":
        handler.wfile.write(response.body)


class Trap:
    """Where a tampered redirect points: it keeps every request whole (headers, body) and answers 200 ``{}``.

    What it received is what a client that follows redirects would have handed to a stranger: a
    bearer token, a client secret, an authorization code, a refresh token. A test asserts it got nothing.
    """

    def __init__(self, host: str, context: ssl.SSLContext) -> None:
        self._host = host
        self._context = context
        self._lock = threading.Lock()
        self._received: list[Request] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        server = _Server((self._host, 0), self, self._context)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="trap", daemon=True
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the trap is not listening")
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host  # noqa: S104 - comparison only
        return f"https://{host}:{self._server.server_address[1]}"

    @property
    def received(self) -> list[Request]:
        with self._lock:
            return list(self._received)

    def _serve(self, handler: _Handler) -> None:
        request = _read_request(handler)
        if request is None:
            handler.close_connection = True
            return
        with self._lock:
            self._received.append(request)
        _write(handler, Response(200, b"{}", [("Content-Type", "application/json")]))
