"""Production shape: Redis broker, a real `dramatiq worker.actors` process, PostgreSQL, the emulator.

The namespace (Redis key prefix) and the PostgreSQL schema are this test's own.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from emulators.google import GoogleEmulator
from settings import Settings
from store import integrations
from store.runtime import Runtime
from tests.conftest import REDIS_URL, link_teacher, settings_for
from tests.helpers import row_count
from tests.integration.test_cli import env_for
from worker import broker as brokers


@pytest.fixture
def redis_settings(emulator: GoogleEmulator, pg_url: str) -> Settings:
    return settings_for(emulator, pg_url, broker_url=REDIS_URL, broker_namespace=f"rs-test-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def worker_process(redis_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = env_for(redis_settings) | {
        "ROSTERSYNC_BROKER_URL": REDIS_URL,
        "ROSTERSYNC_BROKER_NAMESPACE": redis_settings.broker_namespace,
        "ROSTERSYNC_RETRY_MIN_BACKOFF_MS": "50",
        "ROSTERSYNC_RETRY_MAX_BACKOFF_MS": "200",
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "worker.actors", "--processes", "1", "--threads", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    yield process
    process.terminate()
    process.wait(timeout=30)
    log.close()


def wait_for(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the worker")


def test_real_worker_syncs_then_honours_a_revoke(
    redis_runtime: Runtime,
    emulator: GoogleEmulator,
    worker_process: subprocess.Popen[bytes],
    redis_settings: Settings,
) -> None:
    brokers.install(brokers.make_broker(redis_runtime.settings))
    from worker.actors import sync_integration

    integration_id = link_teacher(redis_runtime, emulator, 0)
    sync_integration.send(integration_id)
    wait_for(
        lambda: (
            integrations.run_count(redis_runtime.engine) >= 1 and row_count(redis_runtime.engine, integration_id) > 0
        )
    )
    # Messages in Redis carry the id only.
    client = redis.Redis.from_url(REDIS_URL)
    stored = b"".join(
        b"".join(v for v in client.hgetall(key).values()) if client.type(key) == b"hash" else b""
        for key in client.scan_iter(f"{redis_settings.broker_namespace}*")
    )
    assert not [s for s in emulator.personal_strings() if s.encode() in stored]

    emulator.revoke_grants(emulator.teacher_ids[0])
    sync_integration.send(integration_id)
    wait_for(lambda: integrations.load(redis_runtime.engine, integration_id).status == "revoked")
    assert row_count(redis_runtime.engine, integration_id) == 0
    seen = len(emulator.requests)
    sync_integration.send(integration_id)
    wait_for(lambda: integrations.run_count(redis_runtime.engine) >= 3)
    assert [r for r in emulator.requests[seen:] if r.user_id == emulator.teacher_ids[0]] == []
    assert worker_process.poll() is None
