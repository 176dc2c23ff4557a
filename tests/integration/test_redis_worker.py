"""Production shape, for every provider: Redis broker, a real `dramatiq worker.main` process, PostgreSQL,
the provider's emulator (Microsoft's with the real MSAL). The Redis namespace and the PostgreSQL schema
are the test's own.

Merged from three copies (test_redis_worker.py for Google, test_redis_clever.py, test_redis_microsoft.py):
one test over the shared world keeps every assertion of the three. Messages are queued before the worker
starts, so what sits in Redis can be read whole: ids only, no personal value, no token, no secret; then the
provider ends one grant (Google: the user revokes; Clever: the district disconnects; Microsoft: the tenant
withdraws consent) and the worker ends that integration, purges it and never calls for it again, while the
other integration carries on.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from store import integrations, runs
from store.models import SyncRun
from store.runtime import Runtime
from tests.conftest import REDIS_URL
from tests.helpers import row_count
from tests.provider_worlds import PROVIDERS, World, env_of, opened
from worker import broker as brokers

WorkerStarter = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture(params=PROVIDERS, name="world")
def world_on_redis(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[World]:
    """One provider's world with two organisations, on PostgreSQL and a Redis namespace of its own."""
    namespace = f"rs-test-{uuid.uuid4().hex[:10]}"
    with opened(str(request.param), tmp_path, pg_url, orgs=2) as one:
        one.values |= {"broker_url": REDIS_URL, "broker_namespace": namespace}
        yield one
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


@pytest.fixture
def start_worker(world: World, tmp_path: Path) -> Iterator[WorkerStarter]:
    """Starts the worker process when the test says so (messages can be queued and inspected first)."""
    env = env_of(world.settings()) | {
        "ROSTERSYNC_RETRY_MIN_BACKOFF_MS": "50",
        "ROSTERSYNC_RETRY_MAX_BACKOFF_MS": "200",
    }
    log = (tmp_path / "worker.log").open("wb")
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "worker.main", "--processes", "1", "--threads", "2"],
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


def wait_for(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the worker")


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


def assert_nothing_secret(world: World, stored: bytes) -> None:
    emulator: Any = world.emulator
    assert not [s for s in emulator.personal_strings() if s.encode() in stored]
    assert not [t for t in emulator.issued_tokens() if t.encode() in stored]
    assert b"token_cache" not in stored and b"AccessToken" not in stored
    assert emulator.client_secret.encode() not in stored


def synced_through_redis(world: World, runtime: Runtime, start_worker: WorkerStarter) -> tuple[int, int, str, Any]:
    """Link two integrations, queue both (read Redis whole), start the worker, wait for both runs."""
    from worker.actors import sync_integration

    namespace = runtime.settings.broker_namespace
    stays = world.link(runtime)
    gone, subject = world.link_revocable(runtime)
    ids = (stays, gone)
    for one in ids:  # queued before any worker runs: what sits in Redis can be read whole
        sync_integration.send(one)
    stored = redis_contents(namespace)
    messages = queued_messages(namespace)
    assert sorted(m["args"] for m in messages) == sorted([one] for one in ids), "both queued, ids only"
    assert all(m["kwargs"] == {} and m["actor_name"] == "sync_integration" for m in messages)
    worker_process = start_worker()
    # rows appear before a run ends (and releases its lease): wait for both runs to finish
    wait_for(lambda: finished_runs(runtime) >= len(ids))
    assert runs.run_count(runtime.engine) >= 1
    assert all(row_count(runtime.engine, one) > 0 for one in ids)
    assert_nothing_secret(world, stored + redis_contents(namespace))
    return stays, gone, subject, worker_process


def test_real_worker_syncs_then_honours_the_end_of_a_grant_at_the_provider(
    world: World, start_worker: WorkerStarter
) -> None:
    runtime = world.runtime()
    brokers.install(brokers.make_broker(runtime.settings))
    from worker.actors import sync_integration

    stays, gone, subject, worker_process = synced_through_redis(world, runtime, start_worker)
    world.end_revocable_grant()
    sync_integration.send(gone)
    wait_for(lambda: integrations.load(runtime.engine, gone).status == "revoked")
    assert row_count(runtime.engine, gone) == 0
    assert integrations.load(runtime.engine, gone).token_blob is None
    wait_for(lambda: finished_runs(runtime) >= 3)
    runs = finished_runs(runtime)
    seen = len(world.emulator.requests)
    for one in (stays, gone):
        sync_integration.send(one)
    wait_for(lambda: finished_runs(runtime) >= runs + 2)
    assert [r for r in world.emulator.requests[seen:] if r.user_id == subject] == []
    assert integrations.load(runtime.engine, stays).status == "active"
    assert worker_process.poll() is None
