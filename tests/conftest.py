"""Shared fixtures: a database per test (a SQLite file or a PostgreSQL schema of its own, copied from one
migrated per session: tests/plugins/databases.py), an in-memory broker with an in-process worker, and
helpers to link teachers headlessly. The emulators are the fixtures of tests/plugins/emulators.py,
registered below."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from devtools.demo import consent_headlessly, headless_redirect
from devtools.emulation import settings_values
from emulators.google import GoogleEmulator
from settings import Settings
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from tests.plugins.servers import PG_ADMIN_URL as PG_ADMIN_URL  # tests import it from here
from worker import broker as brokers

REDIS_URL = "redis://127.0.0.1:6379/0"

# The emulators (``emulator``, ``clever``, ``microsoft``) are fixtures of the emulators plugin; databases
# are copied from one migrated per session (databases); the long process tests go first (scheduling); Chromium,
# axe-core, screenshots and the app served for real are the browser tests' (browser).
pytest_plugins = [
    "tests.plugins.emulators",
    "tests.plugins.databases",
    "tests.plugins.scheduling",
    "tests.plugins.browser",
]


def settings_for(emulator: GoogleEmulator, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": None,
        "pseudonym_key": secrets.token_urlsafe(48),
        "token_keys": new_key(),
        **settings_values("google", emulator),
        "google_redirect_uri": headless_redirect("google"),
        "retry_min_backoff_ms": 50,
        "retry_max_backoff_ms": 200,
        "http_timeout_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def sqlite_settings(emulator: GoogleEmulator, tmp_path: Path) -> Settings:
    """For command-line tests that need one database only (a file the CLI's processes share)."""
    return settings_for(emulator, f"sqlite:///{tmp_path / 'cli.db'}")


@pytest.fixture
def settings(emulator: GoogleEmulator, database_url: str) -> Settings:
    return settings_for(emulator, database_url)


@pytest.fixture
def runtime(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """Built the way every process builds it; the copied database is at head already, so it is not migrated
    again (``build_runtime`` does nothing else per process that the migration would have done)."""
    rt = build_runtime(settings, run_migrations=request.node.get_closest_marker("fresh_database") is not None)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.engine.dispose()


class MessageRecorder(Middleware):
    """Keeps every encoded message the broker is asked to enqueue, to prove none carries personal data."""

    def __init__(self) -> None:
        self.encoded: list[bytes] = []

    def before_enqueue(self, broker: Broker, message: Any, delay: int) -> None:
        self.encoded.append(message.encode())


@pytest.fixture
def message_recorder() -> MessageRecorder:
    return MessageRecorder()


@pytest.fixture
def stub_broker(runtime: Runtime, message_recorder: MessageRecorder) -> Iterator[StubBroker]:
    broker = brokers.make_broker(runtime.settings)
    assert isinstance(broker, StubBroker)
    broker.add_middleware(message_recorder)
    brokers.install(broker)
    yield broker
    brokers.shutdown()


Linker = Callable[..., int]


def link_teacher(
    runtime: Runtime,
    emulator: GoogleEmulator,
    teacher_index: int = 0,
    *,
    tenant: str | None = None,
    platform_teacher: str | None = None,
) -> int:
    """Link one seeded Google teacher headlessly (consent URL -> emulator -> callback); returns the id."""
    from connectors.google import http_session
    from services.linking import complete_link, start_link

    emulator.set_consent_user(emulator.teacher_ids[teacher_index])
    url = start_link(
        runtime, provider_name="google", teacher=platform_teacher or f"teacher-{teacher_index}", tenant=tenant
    )
    with http_session(runtime.settings) as browser:
        callback = consent_headlessly(browser, url)
    return complete_link(runtime, callback)


@pytest.fixture
def link(runtime: Runtime, emulator: GoogleEmulator) -> Linker:
    return functools.partial(link_teacher, runtime, emulator)


@pytest.fixture
def redis_runtime(redis_settings: Settings) -> Iterator[Runtime]:
    """The runtime of a module's ``redis_settings`` (the real Redis broker under a namespace of the test's
    own), installed for the actors; the namespace's keys are deleted afterwards."""
    rt = build_runtime(redis_settings)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{redis_settings.broker_namespace}*"):
        client.delete(key)
    rt.engine.dispose()
