"""Clever in the production shape: Redis broker, a real `dramatiq worker.actors` process, PostgreSQL, the emulator."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from emulators.clever import CleverEmulator
from settings import Settings
from store import integrations
from store.runtime import Runtime
from tests.clever_fixtures import clever_settings_for, link_district
from tests.conftest import REDIS_URL
from tests.helpers import row_count
from tests.integration.test_cli import env_for
from tests.integration.test_redis_worker import wait_for
from worker import broker as brokers

pytestmark = pytest.mark.clever(districts=2)


@pytest.fixture
def redis_settings(clever: CleverEmulator, pg_url: str) -> Settings:
    namespace = f"rs-test-{uuid.uuid4().hex[:10]}"
    return clever_settings_for(clever, pg_url, broker_url=REDIS_URL, broker_namespace=namespace)


@pytest.fixture
def worker_process(redis_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = env_for(redis_settings) | {
        "ROSTERSYNC_BROKER_URL": REDIS_URL,
        "ROSTERSYNC_BROKER_NAMESPACE": redis_settings.broker_namespace,
        "ROSTERSYNC_RETRY_MIN_BACKOFF_MS": "50",
        "ROSTERSYNC_RETRY_MAX_BACKOFF_MS": "200",
        "ROSTERSYNC_CLEVER_CLIENT_ID": redis_settings.clever_client_id,
        "ROSTERSYNC_CLEVER_CLIENT_SECRET": redis_settings.clever_client_secret.get_secret_value(),
        "ROSTERSYNC_CLEVER_AUTHORIZE_URL": redis_settings.clever_authorize_url,
        "ROSTERSYNC_CLEVER_TOKEN_URL": redis_settings.clever_token_url,
        "ROSTERSYNC_CLEVER_API_BASE": redis_settings.clever_api_base,
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


def test_real_worker_syncs_districts_then_honours_a_disconnect(
    redis_runtime: Runtime,
    clever: CleverEmulator,
    worker_process: subprocess.Popen[bytes],
    redis_settings: Settings,
) -> None:
    brokers.install(brokers.make_broker(redis_runtime.settings))
    from worker.actors import sync_integration

    gone, stays = link_district(redis_runtime, clever, 0), link_district(redis_runtime, clever, 1)
    for one in (gone, stays):
        sync_integration.send(one)
    wait_for(lambda: all(row_count(redis_runtime.engine, one) > 0 for one in (gone, stays)))
    client = redis.Redis.from_url(REDIS_URL)
    stored = b"".join(
        b"".join(v for v in client.hgetall(key).values()) if client.type(key) == b"hash" else b""
        for key in client.scan_iter(f"{redis_settings.broker_namespace}*")
    )
    assert not [s for s in clever.personal_strings() if s.encode() in stored]
    assert not [t for t in clever.issued_tokens() if t.encode() in stored]

    district = clever.district_ids[0]
    clever.disconnect_district(district)
    sync_integration.send(gone)
    wait_for(lambda: integrations.load(redis_runtime.engine, gone).status == "revoked")
    assert row_count(redis_runtime.engine, gone) == 0
    runs = integrations.run_count(redis_runtime.engine)
    seen = len(clever.requests)
    sync_integration.send(gone)
    sync_integration.send(stays)
    wait_for(lambda: integrations.run_count(redis_runtime.engine) >= runs + 2)
    assert [r for r in clever.requests[seen:] if r.user_id == district] == []
    assert integrations.load(redis_runtime.engine, stays).status == "active"
    assert worker_process.poll() is None
