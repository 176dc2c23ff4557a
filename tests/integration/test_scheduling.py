"""The schedule: due claims safe under concurrent schedulers, coalescing, intervals, jitter, ``scheduler --once``."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime, timedelta

import pytest
import time_machine
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, insert, select, update

from settings import Settings
from store import integrations, leases, runs, scheduling
from store.db import utcnow
from store.fence import Lease
from store.models import Integration, SyncRun
from store.runtime import Runtime, build_runtime
from tests.clikit import env_for, run
from tests.conftest import REDIS_URL, Linker
from worker import broker as brokers
from worker.scheduler import TickReport, run_due_here, serve, tick


def add_due(engine: Engine, count: int, *, due: datetime | None = None) -> list[int]:
    """Bare integration rows (no token): enough for the claim, which never reads one."""
    now = utcnow()
    rows = [
        {
            "provider": "google",
            "tenant": "claims",
            "linked_by": f"t{n}",
            "status": "active",
            "granted_scopes": "",
            "generation": 1,
            "due_at": due or now - timedelta(seconds=1),
            "created_at": now,
            "status_changed_at": now,
            "consent_basis": "school",
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Integration), rows)
        return list(connection.execute(select(Integration.id).where(Integration.tenant == "claims")).scalars())


def test_concurrent_claims_never_take_one_integration_twice(settings: Settings) -> None:
    rt = build_runtime(settings)
    ids = add_due(rt.engine, 300)
    claimed: list[list[int]] = [[] for _ in range(6)]
    start, first_claimed = threading.Barrier(6, timeout=60), threading.Barrier(6, timeout=60)

    def claimer(slot: int) -> None:
        with rt.engine.connect():  # each thread's connection opened before the start, not raced for after it
            pass
        start.wait()
        claimed[slot].extend(scheduling.claim_due(rt.engine, limit=7, stale_seconds=3600))
        first_claimed.wait()  # six claims in flight together before any thread claims again
        while batch := scheduling.claim_due(rt.engine, limit=7, stale_seconds=3600):
            claimed[slot].extend(batch)

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [one for batch in claimed for one in batch]
    assert sorted(every) == sorted(ids)  # each claimed exactly once
    # Side by side by construction (the barriers), not by luck: "more than one thread got some" failed on a loaded
    # machine, where one thread could claim all before the others had a connection. Under contention a claim
    # may come back short, even empty (PostgreSQL rechecks a row another claim just took, and drops it): never twice.
    assert scheduling.claim_due(rt.engine, limit=10, stale_seconds=3600) == []
    rt.engine.dispose()


def test_a_claim_skips_what_is_not_due_queued_running_or_inactive(settings: Settings) -> None:
    rt = build_runtime(settings)
    now = utcnow()
    later, queued, running, revoked, lost, due = (_one(rt.engine, n) for n in range(6))
    with rt.engine.begin() as connection:
        connection.execute(update(Integration).where(Integration.id == later).values(due_at=now + timedelta(hours=1)))
        connection.execute(update(Integration).where(Integration.id == queued).values(queued_at=now))
        connection.execute(
            update(Integration).where(Integration.id == running).values(lease_expires_at=now + timedelta(minutes=5))
        )
        connection.execute(update(Integration).where(Integration.id == revoked).values(status="revoked"))
        connection.execute(update(Integration).where(Integration.id == lost).values(queued_at=now - timedelta(hours=7)))
    assert scheduling.claim_due(rt.engine, limit=100, stale_seconds=6 * 3600) == sorted([lost, due])
    rt.engine.dispose()


def _one(engine: Engine, n: int) -> int:
    now = utcnow()
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(Integration)
                .values(
                    provider="google",
                    tenant="one",
                    linked_by=f"one-{n}",
                    status="active",
                    granted_scopes="",
                    generation=1,
                    due_at=now - timedelta(seconds=1),
                    created_at=now,
                    status_changed_at=now,
                )
                .returning(Integration.id)
            ).scalar_one()
        )


def test_a_sync_asked_for_while_queued_is_coalesced(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    assert scheduling.mark_queued(runtime.engine, integration_id, stale_seconds=3600)
    assert not scheduling.mark_queued(runtime.engine, integration_id, stale_seconds=3600)
    verdict = scheduling.request_manual(runtime.engine, integration_id, cooldown_seconds=0, stale_seconds=3600)
    assert verdict.request is scheduling.ManualRequest.COALESCED
    assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=3600) == []  # due, but queued
    scheduling.run_ended(runtime.engine, integration_id, default_interval=60)
    assert scheduling.mark_queued(runtime.engine, integration_id, stale_seconds=3600)


def test_once_runs_every_due_sync_and_honours_each_interval(runtime: Runtime, link: Linker) -> None:
    first, second = link(0), link(1)
    assert scheduling.set_interval(runtime.engine, second, 120)
    report = run_due_here(runtime)
    assert sorted(report.syncs) == [first, second] and report.failed == []
    assert run_due_here(runtime).syncs == []  # nothing due any more
    with runtime.engine.connect() as connection:
        due = dict(connection.execute(select(Integration.id, Integration.due_at)).all())
        queued = list(connection.execute(select(Integration.queued_at)).scalars())
    now = utcnow()
    assert timedelta(seconds=110) < due[second] - now <= timedelta(seconds=120)
    assert due[first] - now > timedelta(seconds=runtime.settings.sync_interval_seconds - 10)
    assert queued == [None, None]


def test_a_run_that_sets_no_due_time_waits_one_interval(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    scheduling.mark_queued(runtime.engine, integration_id, stale_seconds=3600)
    scheduling.run_ended(runtime.engine, integration_id, default_interval=300)  # e.g. provider data broke
    state = integrations.load(runtime.engine, integration_id)
    with runtime.engine.connect() as connection:
        due = connection.execute(select(Integration.due_at).where(Integration.id == state.id)).scalar_one()
    assert timedelta(seconds=290) < due - utcnow() <= timedelta(seconds=300)


def test_a_tick_enqueues_with_jitter(runtime: Runtime, link: Linker, stub_broker: StubBroker) -> None:
    ids = [link(n) for n in range(3)]
    runtime_jitter = Settings(**{**runtime.settings.model_dump(), "scheduler_jitter_seconds": 30})
    jittered = Runtime(runtime_jitter, runtime.engine, runtime.vault, runtime.pseudonymiser)
    report = tick(jittered)
    assert sorted(report.syncs) == ids
    delayed = stub_broker.queues["rostersync.DQ"]
    etas = sorted(json.loads(message)["options"]["eta"] for message in list(delayed.queue))
    assert len(etas) == 3 and etas[-1] - etas[0] > 0
    assert tick(jittered).syncs == []  # claimed once: the next tick finds them queued


def test_scheduler_once_on_the_embedded_default(sqlite_settings: Settings) -> None:
    import requests

    env = env_for(sqlite_settings)
    session = requests.Session()
    session.trust_env = False
    for n in range(2):
        consent_url = run("link", "start", "--provider", "google", "--teacher", f"t{n}", env=env).stdout.strip()
        callback = session.get(consent_url, allow_redirects=False, verify=str(sqlite_settings.ca_bundle))
        assert run("link", "complete", callback.headers["Location"], env=env).returncode == 0
    engine = build_runtime(sqlite_settings).engine
    with engine.begin() as connection:  # a day later
        connection.execute(update(Integration).values(due_at=utcnow() - timedelta(seconds=1)))
    once = run("scheduler", "--once", "--json", env=env)
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout) == {"synced": 2, "failed": [], "revoke_attempts": 0}
    assert json.loads(run("scheduler", "--once", "--json", env=env).stdout)["synced"] == 0
    with engine.connect() as connection:
        assert runs.run_count(engine) == 4  # the two first syncs after linking, then one each from cron
    engine.dispose()


@pytest.mark.parametrize("value", ["google", "google=0/60", "google=10/0", "=5/5"])
def test_malformed_provider_budgets_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="provider=REQUESTS/SECONDS"):
        Settings(provider_budgets=value)


def due_of(engine: Engine, integration_id: int) -> datetime:
    with engine.connect() as connection:
        return connection.execute(select(Integration.due_at).where(Integration.id == integration_id)).scalar_one()


def test_a_new_interval_moves_the_next_due_time(runtime: Runtime, link: Linker) -> None:
    """The next sync is the last one plus the new interval: sooner for a shorter one, later for a longer one."""
    integration_id = link(0)
    assert run_due_here(runtime).syncs == [integration_id]  # synced: next due one default interval (a day) on
    day = runtime.settings.sync_interval_seconds
    last = due_of(runtime.engine, integration_id) - timedelta(seconds=day)

    assert scheduling.change_interval(runtime.engine, integration_id, 3600, default_interval=day)
    assert due_of(runtime.engine, integration_id) == last + timedelta(hours=1)
    assert scheduling.change_interval(runtime.engine, integration_id, 3 * day, default_interval=day)
    assert due_of(runtime.engine, integration_id) == last + timedelta(days=3)
    assert scheduling.change_interval(runtime.engine, integration_id, None, default_interval=day)  # the default
    assert due_of(runtime.engine, integration_id) == last + timedelta(days=1)
    assert integrations.load(runtime.engine, integration_id).sync_interval_seconds is None

    later = last + timedelta(hours=2)  # the last sync is two hours old: a minute's interval makes it due then
    assert scheduling.change_interval(runtime.engine, integration_id, 60, default_interval=day, now=later)
    assert due_of(runtime.engine, integration_id) == later  # not in the past, ahead of integrations due before it
    assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=3600, now=later) == [integration_id]
    assert not scheduling.change_interval(runtime.engine, 987654, 60, default_interval=day)


def test_a_new_interval_leaves_a_sync_that_is_due_already_due(runtime: Runtime, link: Linker) -> None:
    """Just linked (or resumed): the first sync is due now, and a longer interval does not put it off."""
    integration_id = link(0)
    due = due_of(runtime.engine, integration_id)
    assert due <= utcnow()
    assert scheduling.change_interval(runtime.engine, integration_id, 31 * 86_400, default_interval=86_400)
    assert due_of(runtime.engine, integration_id) == due
    assert integrations.load(runtime.engine, integration_id).sync_interval_seconds == 31 * 86_400
def redis_redelivery_seconds(settings: Settings) -> float:
    """How long after a worker dies the Redis broker hands its unacked messages to another: the dead
    worker's heartbeat must be ``heartbeat_timeout`` old (dramatiq's maintenance, brokers/redis)."""
    broker = brokers.make_broker(Settings(**{**settings.model_dump(), "broker_url": REDIS_URL}))
    assert isinstance(broker, RedisBroker)
    return float(broker.heartbeat_timeout) / 1000


def schedule_of(runtime: Runtime, integration_id: int) -> tuple[datetime | None, datetime | None]:
    with runtime.engine.connect() as connection:
        row = connection.execute(
            select(Integration.due_at, Integration.queued_at).where(Integration.id == integration_id)
        ).one()
    return row.due_at, row.queued_at


def test_a_redelivered_message_waits_for_the_dead_workers_lease_not_a_day(runtime: Runtime, link: Linker) -> None:
    """Production values: the default lease (2,400 s) and the Redis broker's redelivery (60 s heartbeat).

    A worker takes the claimed sync and dies holding the lease; the broker redelivers the message
    long before the lease lapses, so the second worker finds it busy. That run must leave the due
    time alone: the sync runs at the first tick after the lease lapses, not one interval later.
    """
    from worker.actors import sync_integration

    settings = runtime.settings
    assert settings.lease_seconds == Settings.model_fields["lease_seconds"].default == 2400
    redelivery = redis_redelivery_seconds(settings)
    assert redelivery < settings.lease_seconds  # the redelivered message always meets the dead worker's lease
    integration_id = link(0)
    with time_machine.travel(utcnow() + timedelta(hours=1), tick=False) as clock:
        assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=settings.queue_stale_seconds) == [
            integration_id
        ]
        due, _queued = schedule_of(runtime, integration_id)
        dead = Lease(owner="killed-worker", seconds=settings.lease_seconds)
        assert leases.acquire(runtime.engine, integration_id, dead) is not None  # then SIGKILL
        clock.shift(redelivery + 1)
        sync_integration(integration_id)  # the redelivered message, on another worker
        assert latest_outcome(runtime, integration_id) == "skipped:busy"
        assert schedule_of(runtime, integration_id) == (due, None)  # still due; the mark is cleared
        clock.shift(settings.lease_seconds - redelivery - 2)
        assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=settings.queue_stale_seconds) == []
        clock.shift(settings.scheduler_tick_seconds)  # the first tick after the lease lapsed
        assert scheduling.claim_due(runtime.engine, limit=10, stale_seconds=settings.queue_stale_seconds) == [
            integration_id
        ]
        sync_integration(integration_id)
        assert latest_outcome(runtime, integration_id) == "ok"
        due_at, queued_at = schedule_of(runtime, integration_id)
        assert queued_at is None and due_at == utcnow() + timedelta(seconds=settings.sync_interval_seconds)


def latest_outcome(runtime: Runtime, integration_id: int) -> str:
    with runtime.engine.connect() as connection:
        return str(
            connection.execute(
                select(SyncRun.outcome).where(SyncRun.integration_id == integration_id).order_by(SyncRun.id.desc())
            ).first()[0]
        )


@pytest.mark.timeout(30)
def test_a_sigterm_during_the_first_tick_stops_the_scheduler(runtime: Runtime) -> None:
    """The signal may come while the first tick runs, before the scheduler does: it must still stop."""
    ticks: list[int] = []

    def first_tick_is_signalled(_runtime: Runtime) -> TickReport:
        ticks.append(1)
        if len(ticks) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the tick goes on after the signal, as a real one would
        return TickReport()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        serve(runtime, first_tick_is_signalled)  # returns: it neither hangs nor raises
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ticks[0] == 1
