"""A real Chromium for the browser tests: the browser, a page, axe-core, screenshots and the app served for real.

Why a plugin: the teacher pages and the admin console are both tested in the same browser, and the way it is
started (Debian's Chromium, never a browser Playwright downloads), the way a page is checked for
accessibility and where screenshots go are decided once, here. Registered for the whole suite by
``tests/conftest.py`` (``pytest_plugins``); a test asks for the fixtures by name:

- ``browser``: one Chromium per pytest process (per xdist worker), started on first use, for the session;
- ``page``: a fresh context (its own cookies) and page in English; ``open_page(locale="uk-UA")`` for another
  language (the context's locale is the ``Accept-Language`` the browser sends);
- ``served_app``: the real web app served over HTTPS on 127.0.0.1 by uvicorn in a thread, on a PostgreSQL
  schema of the test's own, pointed at fresh Google, Clever and Microsoft emulators (their consent pages
  approve at once, for the user set with ``set_consent_user``/``set_signin_user``), with admin tokens
  (``tests.webkit.ADMIN_TOKENS``), a link signing key and a platform URL; ``served_app.signed_link(...)``
  is the ``/link/{provider}`` URL the platform would hand a teacher;
- ``assert_accessible(page)``: axe-core (``node_modules/axe-core``, installed by ``make install``) run on the
  page as it is; fails on any serious or critical violation, naming the rule ids; returns every violation;
- ``screenshot(page, name)``: a full-page PNG under ``test-artifacts/screenshots/`` (gitignored), for a reviewer.

The browser keeps the pages' Content-Security-Policy (no ``bypass_csp``): axe is evaluated through the
DevTools protocol, which a page's CSP does not govern, so a page that needs an inline script or style to look
right looks wrong here too. HTTPS errors are ignored in the browser's contexts only: the app and the emulators
use throwaway test CAs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
import threading
import time
from asyncio import events as asyncio_events
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from devtools.demo import demo_settings
from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from store.runtime import Runtime, build_runtime, set_runtime
from tests.webkit import ADMIN_TOKENS, SIGNING_KEY
from web.app import create_app
from web.serving import uvicorn_config
from web.signing import link_url
from worker import broker as brokers

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's package (``apt-get install chromium``; .ci/run installs it when missing)."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless, no sandbox (root in CI), and nothing that reaches past loopback on its own."""
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
"""From npm (package.json, package-lock.json); ``make install`` runs ``npm ci`` when node_modules is missing."""
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
BLOCKING_IMPACTS = ("serious", "critical")
PLATFORM_URL = "https://platform.example/classes"
"""Where the served app's pages send a teacher back to (``PLATFORM_URL``); never opened by the tests."""
EMULATOR_SIZES: dict[str, dict[str, Any]] = {
    "google": {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 4},
    "clever": {"districts": 1, "teachers": 2, "students_per_course": 4},
    "microsoft": {"tenants": 1, "teachers": 2, "students_per_course": 4},
}


_DRIVER_LOOP: list[asyncio.AbstractEventLoop] = []
"""The event loop of Playwright's sync driver while it lives (at most one per process)."""


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's driver, once per process (it is a Node child of its own).

    Its sync API keeps an asyncio loop "running" in the test's thread between calls (the loop waits in a
    greenlet); ``_loop_set_aside`` hides it from the tests that do not use the browser, so that their own
    ``asyncio.run`` (or a library's) still works after a browser test ran in the same process.
    """
    with sync_playwright() as driver:
        loop = asyncio_events._get_running_loop()
        _DRIVER_LOOP[:] = [loop] if loop is not None else []
        yield driver
        if _DRIVER_LOOP:
            asyncio_events._set_running_loop(_DRIVER_LOOP[0])  # the driver closes inside its own loop
            _DRIVER_LOOP.clear()
    asyncio_events._set_running_loop(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _loop_set_aside(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _loop_set_aside(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    with _loop_set_aside(item):
        return (yield)


@contextmanager
def _loop_set_aside(item: pytest.Item) -> Iterator[None]:
    """Outside the browser's tests, the thread has no running loop (the driver's is put back after)."""
    uses_browser = "playwright_driver" in getattr(item, "fixturenames", ())
    if uses_browser or not _DRIVER_LOOP or asyncio_events._get_running_loop() is not _DRIVER_LOOP[0]:
        yield
        return
    loop = _DRIVER_LOOP[0]
    asyncio_events._set_running_loop(None)
    try:
        yield
    finally:
        if _DRIVER_LOOP:  # else the session's last teardown closed the driver, which put its loop back itself
            asyncio_events._set_running_loop(loop)


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, started once per process (per xdist worker), headless and sandbox-free."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    chromium = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield chromium
    chromium.close()


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """``open_page(locale="uk-UA")``: a page in a context of its own (cookies, language), closed after the test."""
    contexts: list[BrowserContext] = []

    def open_one(locale: str = "en-US", **options: Any) -> Page:
        context = browser.new_context(locale=locale, ignore_https_errors=True, **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_one
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: OpenPage) -> Page:
    """A fresh page in English (``Accept-Language: en-US``), in a context of its own."""
    return open_page()


def assert_accessible(page: Page) -> list[dict[str, Any]]:
    """axe-core on the page as it is now; fails on any serious or critical violation (rule ids listed).

    Returns every violation (``id``, ``impact``, ``nodes``), the minor and moderate ones too, for a report.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))  # through the DevTools protocol: the page's CSP allows no script
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(
            v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))"""
    )
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"axe on {page.url}: " + ", ".join(f"{v['id']} ({v['impact']}): {v['help']}" for v in blocking)
    return violations


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG ``test-artifacts/screenshots/<name>.png`` (name: letters, digits, ``-`` and ``_``)."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class ServedApp:
    """The web app served for real, and what a browser test needs to drive it."""

    base_url: str
    runtime: Runtime
    google: GoogleEmulator
    clever: CleverEmulator
    microsoft: MicrosoftEmulator
    admin_tokens: tuple[str, ...] = ADMIN_TOKENS
    platform_url: str = PLATFORM_URL
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def url(self, path: str) -> str:
        return self.base_url + path

    def signed_link(
        self, provider: str, teacher: str, *, tenant: str | None = None, basis: str = "school", lifetime: int = 540
    ) -> str:
        """The signed, single-use ``/link/{provider}`` URL the platform hands a logged-in teacher."""
        return link_url(
            SIGNING_KEY,
            self.settings.provider(provider).redirect_uri,
            provider=provider,
            teacher=teacher,
            tenant=tenant,
            basis=basis,
            lifetime=lifetime,
        )


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _served_settings(emulators: dict[str, Any], tmp_path: Path, pg_url: str, base_url: str) -> Settings:
    """The demo's settings for these emulators (one CA bundle of theirs), on the test's schema, served at base_url."""
    redirects = {f"{name}_redirect_uri": f"{base_url}/oauth/{name}/callback" for name in emulators}
    overrides: dict[str, Any] = {
        "database_url": pg_url,
        "admin_tokens": ",".join(ADMIN_TOKENS),
        "link_signing_key": SIGNING_KEY,
        "platform_url": PLATFORM_URL,
        "http_timeout_seconds": 5,
    }
    return Settings(**demo_settings(emulators, tmp_path).flat_values() | redirects | overrides)


@pytest.fixture
def served_app(tmp_path: Path, pg_url: str) -> Iterator[ServedApp]:
    """The app over HTTPS on 127.0.0.1 (uvicorn in a thread), against fresh emulators of every provider."""
    with (
        GoogleEmulator(cert_dir=tmp_path / "google", **EMULATOR_SIZES["google"]) as google,
        CleverEmulator(cert_dir=tmp_path / "clever", **EMULATOR_SIZES["clever"]) as clever,
        MicrosoftEmulator(cert_dir=tmp_path / "microsoft", **EMULATOR_SIZES["microsoft"]) as microsoft,
    ):
        sock = _free_socket()
        base_url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        emulators = {"google": google, "clever": clever, "microsoft": microsoft}
        runtime = build_runtime(_served_settings(emulators, tmp_path, pg_url, base_url))
        try:
            with _serving(runtime, sock, tmp_path):
                yield ServedApp(base_url, runtime, google, clever, microsoft)
        finally:
            set_runtime(None)
            brokers.shutdown()
            runtime.engine.dispose()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread of the test process: pytest keeps its signals
        pass


def _serving(runtime: Runtime, sock: socket.socket, tmp_path: Path) -> _Running:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key_path, cert_path = tmp_path / "served-key.pem", tmp_path / "served-cert.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    config = uvicorn_config(create_app(runtime), runtime.settings, host="127.0.0.1", port=sock.getsockname()[1])
    config.ssl_keyfile, config.ssl_certfile = str(key_path), str(cert_path)
    # A browser still open holds a TLS connection whose close waits for its reply (30 s): give up on it after
    # a second, then stop the app as usual (its in-process worker included).
    config.timeout_graceful_shutdown = 1
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # that give-up is expected, not news
    return _Running(_Server(config), sock)


class _Running:
    """uvicorn on an already bound socket, in a thread: started on enter, asked to exit and joined on exit."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server, self.sock = server, sock
        self.thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> _Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the served app did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def fresh_teacher_id() -> str:
    """A platform teacher id no other test uses."""
    return f"teacher-{secrets.token_hex(4)}"
