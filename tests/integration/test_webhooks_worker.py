"""Webhooks in the production shape: a Redis broker, two real ``dramatiq worker.main`` processes, PostgreSQL,
and the receiver process failing the first attempts. Duplicate delivery messages are queued on purpose:
the cursor's row lock keeps one batch in flight, and the actor's retries carry delivery through the failures.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from settings import Settings
from store import webhooks
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from tests.conftest import REDIS_URL
from tests.provider_worlds import env_of
from tests.webhookkit import Receiver, add_events
from worker import actors
from worker import broker as brokers


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    folder = tmp_path / "receiver"
    folder.mkdir()
    started = Receiver(folder).start()
    yield started
    started.stop()


@pytest.fixture
def rt(pg_url: str, receiver: Receiver) -> Iterator[Runtime]:
    namespace = f"rs-test-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        database_url=pg_url,
        broker_url=REDIS_URL,
        broker_namespace=namespace,
        pseudonym_key=secrets.token_urlsafe(48),
        token_keys=new_key(),
        ca_bundle=receiver.ca_path,
        webhook_url=receiver.url,
        webhook_secret=receiver.secret,
        webhook_batch_size=4,
        retry_min_backoff_ms=50,
        retry_max_backoff_ms=200,
        worker_metrics_port=0,
    )
    built = build_runtime(settings, run_migrations=False)
    set_runtime(built)
    yield built
    set_runtime(None)
    brokers.shutdown()
    built.engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


def test_workers_deliver_through_failures_one_batch_at_a_time(rt: Runtime, receiver: Receiver, tmp_path: Path) -> None:
    add_events(rt.engine, 20)
    receiver.mode("fail-first:2")
    brokers.install(brokers.make_broker(rt.settings))
    for _ in range(3):
        brokers.enqueue(actors.deliver_webhooks)
    log = (tmp_path / "workers.log").open("wb")
    command = [sys.executable, "-m", "dramatiq", "worker.main", "--processes", "1", "--threads", "2"]
    root = Path(__file__).resolve().parents[2]
    workers = [
        subprocess.Popen(command, env=env_of(rt.settings), stdout=log, stderr=subprocess.STDOUT, cwd=root)
        for _ in range(2)
    ]
    try:
        for _ in range(1200):  # a bound of 120 s for two worker processes to start and deliver, not a timing
            if webhooks.read(rt.engine).delivered_through == 20:
                break
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        log.close()
    assert webhooks.read(rt.engine).delivered_through == 20, (tmp_path / "workers.log").read_text()[-2000:]
    entries = receiver.entries()
    assert [entry["mode"] for entry in entries[:2]] == ["fail", "fail"]
    assert receiver.seqs() == list(range(1, 21))
    assert {entry["concurrent"] for entry in entries} == {1}
    assert webhooks.read(rt.engine).failures == 0
