"""Microsoft in the production shape: Redis broker, a real `dramatiq worker.actors` process, PostgreSQL, the
emulator and the real MSAL. The Redis key namespace and the PostgreSQL schema are this test's own."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from emulators.microsoft import MicrosoftEmulator
from services.linking import link_org
from settings import Settings
from store import integrations
from store.models import SyncRun
from store.runtime import Runtime
from tests.conftest import REDIS_URL
from tests.helpers import row_count
from tests.integration.test_cli import env_for
from tests.integration.test_redis_worker import wait_for
from tests.microsoft_fixtures import link_microsoft_teacher, microsoft_env, microsoft_settings_for
from worker import broker as brokers

pytestmark = pytest.mark.microsoft(teachers=2, students_per_course=6)


@pytest.fixture
def redis_settings(microsoft: MicrosoftEmulator, pg_url: str) -> Settings:
    namespace = f"rs-test-{uuid.uuid4().hex[:10]}"
    return microsoft_settings_for(microsoft, pg_url, broker_url=REDIS_URL, broker_namespace=namespace)


WorkerStarter = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(redis_settings: Settings, tmp_path: Path) -> Iterator[WorkerStarter]:
    """Starts the worker process when the test says so (messages can be queued and inspected first)."""
    env = (
        env_for(redis_settings)
        | microsoft_env(redis_settings)
        | {
            "ROSTERSYNC_BROKER_URL": REDIS_URL,
            "ROSTERSYNC_BROKER_NAMESPACE": redis_settings.broker_namespace,
            "ROSTERSYNC_RETRY_MIN_BACKOFF_MS": "50",
            "ROSTERSYNC_RETRY_MAX_BACKOFF_MS": "200",
        }
    )
    log = (tmp_path / "worker.log").open("wb")
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "worker.actors", "--processes", "1", "--threads", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)
    log.close()


def redis_contents(namespace: str) -> bytes:
    """Every value under the namespace: queued messages (lists), their bodies and acks (hashes, sets)."""
    client = redis.Redis.from_url(REDIS_URL)
    chunks: list[bytes] = []
    for key in client.scan_iter(f"{namespace}*"):
        kind = client.type(key)
        if kind == b"hash":
            chunks += [k + v for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            chunks += client.lrange(key, 0, -1)
        elif kind == b"set":
            chunks += list(client.smembers(key))
        elif kind == b"zset":
            chunks += client.zrange(key, 0, -1)
    return b"\n".join(chunks)


def finished_runs(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(SyncRun).where(SyncRun.finished_at.is_not(None))
            ).scalar_one()
        )


def queued_messages(namespace: str) -> list[dict[str, Any]]:
    """The Dramatiq messages held in the namespace's hashes, decoded."""
    client = redis.Redis.from_url(REDIS_URL)
    found = []
    for key in client.scan_iter(f"{namespace}*"):
        if client.type(key) == b"hash":
            for value in client.hgetall(key).values():
                with contextlib.suppress(ValueError):
                    message = json.loads(value)
                    if isinstance(message, dict) and "actor_name" in message:
                        found.append(message)
    return found


def test_real_worker_syncs_tenant_and_teacher_links_then_honours_withdrawn_consent(
    redis_runtime: Runtime,
    microsoft: MicrosoftEmulator,
    start_worker: WorkerStarter,
    redis_settings: Settings,
) -> None:
    brokers.install(brokers.make_broker(redis_runtime.settings))
    from worker.actors import sync_integration

    school, other = microsoft.tenant_ids
    tenant_link = link_org(redis_runtime, provider_name="microsoft", org=school)
    gone = link_microsoft_teacher(redis_runtime, microsoft, microsoft.teacher_ids(other)[0], "t-1")
    ids = (tenant_link, gone)
    for one in ids:  # queued before any worker runs: what sits in Redis can be read whole
        sync_integration.send(one)
    stored = redis_contents(redis_settings.broker_namespace)
    messages = queued_messages(redis_settings.broker_namespace)
    assert sorted(m["args"] for m in messages) == sorted([one] for one in ids), "both queued, ids only"
    assert all(m["kwargs"] == {} and m["actor_name"] == "sync_integration" for m in messages)
    worker_process = start_worker()
    # rows appear before a run ends (and releases its lease): wait for both runs to finish
    wait_for(lambda: finished_runs(redis_runtime) >= len(ids))
    assert all(row_count(redis_runtime.engine, one) > 0 for one in ids)
    stored += redis_contents(redis_settings.broker_namespace)
    assert not [s for s in microsoft.personal_strings() if s.encode() in stored]
    assert not [t for t in microsoft.issued_tokens() if t.encode() in stored]
    assert (
        b"token_cache" not in stored and b"AccessToken" not in stored and microsoft.client_secret.encode() not in stored
    )

    microsoft.withdraw_consent(other)
    sync_integration.send(gone)
    wait_for(lambda: integrations.load(redis_runtime.engine, gone).status == "revoked")
    assert row_count(redis_runtime.engine, gone) == 0
    assert integrations.load(redis_runtime.engine, gone).token_blob is None
    wait_for(lambda: finished_runs(redis_runtime) >= len(ids) + 1)
    runs = finished_runs(redis_runtime)
    seen = len(microsoft.requests)
    for one in ids:
        sync_integration.send(one)
    wait_for(lambda: finished_runs(redis_runtime) >= runs + 2)
    assert [r for r in microsoft.requests[seen:] if r.user_id == microsoft.teacher_ids(other)[0]] == []
    assert integrations.load(redis_runtime.engine, tenant_link).status == "active"
    assert worker_process.poll() is None
