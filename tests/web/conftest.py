"""Fixtures of the web app's tests: an app on a runtime of its own (database per test, in-memory broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from emulators.google import GoogleEmulator
from store.runtime import Runtime, build_runtime, set_runtime
from tests.webkit import web_settings
from web.app import create_app
from worker import broker as brokers


@pytest.fixture
def web_runtime(emulator: GoogleEmulator, database_url: str) -> Iterator[Runtime]:
    rt = build_runtime(web_settings(emulator, database_url))
    yield rt
    set_runtime(None)
    brokers.shutdown()
    rt.engine.dispose()


@pytest.fixture
def client(web_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(web_runtime), base_url="https://rostersync.test") as test_client:
        yield test_client
