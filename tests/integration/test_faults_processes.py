"""The fault matrix, process part (issue 10, part 3): real `rostersync worker` processes on a Redis broker.

Each test links one integration per provider (Google teacher, Clever district, Microsoft teacher)
and runs them through a real worker, so one worker start covers all three. The shared Redis on
6379 is used under a namespace of this test's own; the Redis-restart row starts a private
``redis-server`` and kills that one only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from emulators.clever import CleverEmulator
from store.db import utcnow
from store.models import Integration, SyncRun
from store.runtime import Runtime, build_runtime, set_runtime
from tests.conftest import REDIS_URL
from tests.faults import WorkerProcess, World, clear_namespace, finished_runs, once_on, roster_of, wait_until
from tests.helpers import classes, enrollments, people
from worker import broker as brokers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def open_world(tmp_path: Path, pg_url: str, broker_url: str) -> tuple[World, Runtime]:
    world = World(
        tmp_path,
        pg_url,
        broker_url=broker_url,
        broker_namespace=f"rs-faults-{uuid.uuid4().hex[:10]}",
        lease_seconds=4,
        max_retries=3,
    )
    world.__enter__()
    runtime = build_runtime(world.settings)
    set_runtime(runtime)
    brokers.install(brokers.make_broker(world.settings))
    return world, runtime


def close_world(world: World, runtime: Runtime, broker_url: str) -> None:
    brokers.shutdown()
    set_runtime(None)
    runtime.engine.dispose()
    world.__exit__()
    clear_namespace(broker_url, world.settings.broker_namespace)


@pytest.fixture
def shared(tmp_path: Path, pg_url: str) -> Iterator[tuple[World, Runtime]]:
    world, runtime = open_world(tmp_path, pg_url, REDIS_URL)
    try:
        yield world, runtime
    finally:
        close_world(world, runtime, REDIS_URL)


def link_all(world: World, runtime: Runtime) -> list[int]:
    return [case.link(runtime) for case in world.cases]


def send_all(ids: list[int]) -> None:
    from worker.actors import sync_integration

    for one in ids:
        sync_integration.send(one)


def finished(runtime: Runtime, ids: list[int], count: int) -> bool:
    return all(len(finished_runs(runtime, one)) >= count for one in ids)


def assert_complete(world: World, runtime: Runtime, ids: list[int]) -> None:
    for case, one in zip(world.cases, ids, strict=True):
        assert roster_of(runtime, one) == case.expected(), case.name
        # no duplicate rows and nothing swept: every row ever stored is a current one
        assert len(classes(runtime.engine, one, current=False)) == len(classes(runtime.engine, one)), case.name
        assert len(people(runtime.engine, one, current=False)) == len(people(runtime.engine, one)), case.name
        assert len(enrollments(runtime.engine, one, current=False)) == len(enrollments(runtime.engine, one)), case.name


@pytest.mark.timeout(240)
def test_sigkill_of_the_worker_mid_page_then_the_next_run_completes(
    shared: tuple[World, Runtime], tmp_path: Path
) -> None:
    """Kill -9 while every integration is between two pages: no removal from the half-read listing, and once
    the dead worker's lease runs out the next run completes the roster without a duplicate row."""
    world, runtime = shared
    ids = link_all(world, runtime)
    worker = WorkerProcess(world.env(ROSTERSYNC_HTTP_TIMEOUT_SECONDS="60"), tmp_path / "worker-1.log")
    try:
        send_all(ids)
        wait_until(lambda: finished(runtime, ids, 1), "the first syncs", worker=worker)
        assert [finished_runs(runtime, one)[-1].outcome for one in ids] == ["ok"] * 3, worker.text()
        before = [roster_of(runtime, one) for one in ids]

        # The next run of each is held on a later page (after the class list was written) ...
        arrived = [once_on(case.emulator, case.later_path, lambda: None) for case in world.cases]
        for case in world.cases:
            case.emulator.stall_next(case.later_path, seconds=30)
        clever = world.cases[1].emulator
        assert isinstance(clever, CleverEmulator)
        clever.set_events_enabled(clever.district_ids[0], False)  # a full listing for Clever too, not an events page
        send_all(ids)
        wait_until(lambda: all(arrived), "three syncs waiting for a page", worker=worker)
    finally:
        worker.kill()  # ... when the worker dies
    with runtime.engine.connect() as connection:
        cut_short = connection.execute(
            select(SyncRun.id).where(SyncRun.integration_id.in_(ids), SyncRun.finished_at.is_(None))
        ).all()
    assert len(cut_short) == 3  # the killed runs never finished ...
    assert [roster_of(runtime, one) for one in ids] == before  # ... and removed nothing

    wait_until(lambda: leases_held_unexpired(runtime, ids) == 0, "the dead worker's leases to run out", timeout=30)
    second = WorkerProcess(world.env(), tmp_path / "worker-2.log")
    try:
        send_all(ids)
        wait_until(
            lambda: all(finished_runs(runtime, one)[-1].outcome == "ok" for one in ids) and finished(runtime, ids, 2),
            "the next syncs",
            worker=second,
        )
    finally:
        assert second.stop() == 0, second.text()
    assert_complete(world, runtime, ids)


def leases_held_unexpired(runtime: Runtime, ids: list[int]) -> int:
    with runtime.engine.connect() as connection:
        return len(
            connection.execute(
                select(Integration.id).where(Integration.id.in_(ids), Integration.lease_expires_at > utcnow())
            ).all()
        )


@pytest.mark.timeout(180)
def test_the_same_message_delivered_twice_changes_nothing(shared: tuple[World, Runtime], tmp_path: Path) -> None:
    """At-least-once delivery: the very message (same id, same body) comes back after it was processed."""
    from worker.actors import sync_integration

    world, runtime = shared
    ids = link_all(world, runtime)
    broker = brokers.ensure_broker(world.settings)
    messages = [sync_integration.message(one) for one in ids]
    worker = WorkerProcess(world.env(), tmp_path / "worker.log")
    try:
        for message in messages:
            broker.enqueue(message)
        wait_until(lambda: finished(runtime, ids, 1), "the first delivery", worker=worker)
        stored = [roster_of(runtime, one) for one in ids]
        for message in messages:
            broker.enqueue(message)  # redelivered as is, e.g. after a worker died before its ack
        wait_until(lambda: finished(runtime, ids, 2), "the second delivery", worker=worker)
    finally:
        assert worker.stop() == 0, worker.text()
    for one in ids:
        first, second = finished_runs(runtime, one)
        assert (first.outcome, second.outcome) == ("ok", "ok")
        assert second.rows_written == 0  # nothing written twice
    assert [roster_of(runtime, one) for one in ids] == stored
    assert_complete(world, runtime, ids)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of this test's own (no persistence: a restart loses every queued message)."""
    port = free_port()
    process = start_redis(redis_command(port), tmp_path)
    yield f"redis://127.0.0.1:{port}/0", port
    process.terminate()  # already gone when the test shut it down; then this does nothing
    process.wait(timeout=10)


def redis_command(port: int) -> list[str]:
    binary = shutil.which("redis-server") or "redis-server"
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def start_redis(command: list[str], tmp_path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{command[command.index('--port') + 1]}/0"
    wait_until(lambda: _pings(url), "the private redis-server", timeout=20)
    return process


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


@pytest.mark.timeout(240)
def test_redis_restarted_mid_run_the_worker_carries_on(
    private_redis: tuple[str, int], tmp_path: Path, pg_url: str
) -> None:
    """Redis dies (and comes back empty) while every sync is running: each running sync still completes
    in PostgreSQL, the worker survives the outage and takes the next messages once Redis is back."""
    url, port = private_redis
    world, runtime = open_world(tmp_path, pg_url, url)
    try:
        ids = link_all(world, runtime)
        worker = WorkerProcess(world.env(), tmp_path / "worker.log")
        try:
            arrived = [once_on(case.emulator, case.later_path, lambda: None) for case in world.cases]
            for case in world.cases:
                case.emulator.stall_next(case.later_path, seconds=3)  # every sync is mid-run when Redis goes
            send_all(ids)
            wait_until(lambda: all(arrived), "three running syncs", worker=worker)
            redis.Redis.from_url(url).shutdown(nosave=True)  # the private server only; it exits here
            wait_until(lambda: finished(runtime, ids, 1), "the running syncs to finish without Redis", worker=worker)
            assert [finished_runs(runtime, one)[-1].outcome for one in ids] == ["ok"] * 3
            restarted = start_redis(redis_command(port), tmp_path)
            try:
                send_all(ids)  # the queue came back empty: these are the next cycle's messages
                wait_until(lambda: finished(runtime, ids, 2), "syncs after the restart", timeout=120, worker=worker)
            finally:
                assert worker.stop() == 0, worker.text()
                restarted.terminate()
                restarted.wait(timeout=10)
        finally:
            if worker.alive():
                worker.kill()
        assert [finished_runs(runtime, one)[-1].outcome for one in ids] == ["ok"] * 3
        assert_complete(world, runtime, ids)
    finally:
        brokers.shutdown()
        set_runtime(None)
        runtime.engine.dispose()
        world.__exit__()
