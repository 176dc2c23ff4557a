"""Shared fixtures: a database per test (SQLite file or a PostgreSQL schema of its own), an in-memory
broker with an in-process worker, and helpers to link teachers headlessly. The emulators are the fixtures
of tests/plugins/emulators.py, registered below."""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from devtools.demo import consent_headlessly, headless_redirect
from devtools.emulation import settings_values
from emulators.google import GoogleEmulator
from settings import Settings
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from worker import broker as brokers

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"

# The emulators (``emulator``, ``clever``, ``microsoft``) are fixtures of this plugin.
pytest_plugins = ["tests.plugins.emulators"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards; two runs never collide."""
    schema = f"rs_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rostersync.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


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
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
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
