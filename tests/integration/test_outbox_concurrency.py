"""The change feed never lets a consumer skip an event (issue 20 item 1), proved with real processes.

Two ``rostersync worker`` processes (four threads each) on Redis and PostgreSQL sync twelve integrations
over and over while the emulator's rosters change, so syncs of different integrations write and commit
side by side, in any order. Meanwhile a consumer polls ``change_events WHERE seq > last ORDER BY seq`` in
a tight loop and applies every event to its mirror. What it must find:

- the seqs it reads rise strictly, poll after poll;
- no event ever appears later *behind* its position: at the end, the feed holds exactly the events it read
  (a transaction that committed seq 103 after the consumer had read 105 would be missing from what it read);
- its mirror equals the roster read from the tables.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from emulators.google import GoogleEmulator
from settings import Settings
from store.db import make_engine
from store.models import Integration, SyncRun
from store.runtime import Runtime, build_runtime, set_runtime
from tests.clikit import ROSTERSYNC, env_for
from tests.conftest import REDIS_URL, link_teacher, settings_for
from tests.outboxkit import FeedEvent, Mirror, read_events, stored_roster
from worker import broker as brokers
from worker.sync_requests import sync_after_link

INTEGRATIONS = 12
ACCOUNTS = 3  # Google teachers; each is linked in INTEGRATIONS / ACCOUNTS schools, so one change reaches several
ROUNDS = 6


@pytest.fixture
def feed_runtime(emulator: GoogleEmulator, pg_url: str) -> Iterator[Runtime]:
    settings = settings_for(emulator, pg_url, broker_url=REDIS_URL, broker_namespace=f"rs-feed-{uuid.uuid4().hex[:10]}")
    rt = build_runtime(settings)
    set_runtime(rt)
    brokers.install(brokers.make_broker(settings))
    yield rt
    set_runtime(None)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{settings.broker_namespace}*"):
        client.delete(key)
    rt.engine.dispose()


class Workers:
    """``rostersync worker`` processes on the test's Redis namespace and PostgreSQL schema."""

    def __init__(self, settings: Settings, logs: Path, count: int = 2) -> None:
        env = env_for(settings) | {
            "ROSTERSYNC_BROKER_URL": REDIS_URL,
            "ROSTERSYNC_BROKER_NAMESPACE": settings.broker_namespace,
        }
        self.logs = logs
        self.processes = [self._start(n, env) for n in range(count)]

    def _start(self, n: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = str(probe.getsockname()[1])
        log = (self.logs / f"worker{n}.log").open("wb")
        return subprocess.Popen(
            [ROSTERSYNC, "worker", "--processes", "1", "--threads", "4"],
            env=env | {"ROSTERSYNC_WORKER_METRICS_PORT": port},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def stop(self) -> list[int]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return [process.wait(timeout=60) for process in self.processes]

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(self.logs.glob("*.log")))


class Consumer(threading.Thread):
    """A platform following the feed as fast as it can: every event read once, in order, applied to a mirror."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.engine = make_engine(settings.database_url)
        self.mirror = Mirror()
        self.read: list[FeedEvent] = []
        self.position = 0
        self.polls = 0
        self.failure: str | None = None
        self.stopping = threading.Event()

    def poll(self) -> int:
        with self.engine.connect() as connection:  # a fresh snapshot per poll, as each request would have
            found = read_events(connection, self.position, limit=1000)
        for event in found:
            if event.seq <= self.position:
                self.failure = f"seq {event.seq} read after {self.position}"
            self.position = event.seq
            self.mirror.apply(event)
        self.read.extend(found)
        self.polls += 1
        return len(found)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.poll()

    def finish(self) -> None:
        self.stopping.set()
        self.join(timeout=60)
        while self.poll():
            pass
        self.engine.dispose()


def change_rosters(emulator: GoogleEmulator, round_number: int) -> None:
    """Students join and leave, a course is renamed, a teacher too: every kind of roster event."""
    for account in range(ACCOUNTS):
        teacher = emulator.teacher_ids[account]
        courses = emulator.course_ids_of(teacher)
        course = courses[round_number % len(courses)]
        emulator.add_student(course)
        students = emulator.student_ids_of(course)
        if len(students) > 3:
            emulator.remove_student(course, students[round_number % len(students)])
        if round_number % 3 == 0:
            emulator.rename_course(course, name=f"Course {account}.{round_number}")
        if round_number % 4 == 1:
            emulator.rename_user(teacher)


def runs_finished(rt: Runtime) -> int:
    with rt.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(SyncRun).where(SyncRun.finished_at.is_not(None))
            ).scalar_one()
        )


def idle(rt: Runtime) -> bool:
    with rt.engine.connect() as connection:
        return not connection.execute(select(Integration.id).where(Integration.queued_at.is_not(None))).first()


def wait_for(predicate: object, fleet: Workers, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        assert fleet.alive(), fleet.log_text()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{fleet.log_text()}")


@pytest.mark.timeout(600)
def test_a_consumer_polling_during_concurrent_syncs_never_skips_an_event_and_ends_in_step(
    feed_runtime: Runtime, emulator: GoogleEmulator, tmp_path: Path
) -> None:
    rt = feed_runtime
    ids = [
        link_teacher(rt, emulator, n % ACCOUNTS, platform_teacher=f"feed-{n}", tenant=f"school-{n}")
        for n in range(INTEGRATIONS)
    ]
    consumer = Consumer(rt.settings)
    consumer.start()
    fleet = Workers(rt.settings, tmp_path)
    try:
        for round_number in range(ROUNDS):
            if round_number:
                change_rosters(emulator, round_number)
            for integration_id in ids:  # all twelve at once: eight syncs write and commit side by side
                assert sync_after_link(rt, integration_id)
            wait_for(lambda: idle(rt), fleet, 300, f"the syncs of round {round_number}")
    finally:
        assert fleet.stop() == [0, 0], fleet.log_text()
    consumer.finish()

    print(f"\nfeed: {len(consumer.read)} events read in {consumer.polls} polls, {runs_finished(rt)} syncs")
    assert consumer.failure is None, consumer.failure
    assert runs_finished(rt) == ROUNDS * INTEGRATIONS  # every round synced every integration
    assert {e.type for e in consumer.read} >= {"class.upserted", "member.added", "member.removed", "person.updated"}
    assert consumer.polls > ROUNDS  # it polled all along, not only at the end
    with rt.engine.connect() as connection:
        kept = [event.seq for event in read_events(connection)]
    assert kept == [event.seq for event in consumer.read]  # nothing appeared behind its position, ever
    assert consumer.mirror.roster() == stored_roster(rt.engine)
