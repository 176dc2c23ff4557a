"""``rostersync bench --feed``: the platform API at district scale, through ``rostersync web`` in a process.

Two figures of issue 20 (docs/platform.md, "Scale"): how long ``GET /v1/changes`` takes to answer a
page of 1,000 events (goal: under 50 ms on PostgreSQL), and how much memory the web process needs
while a consumer walks the whole snapshot of a district (integrations, classes, members; 1,000 a
page). The district and its events are written straight into the tables, in batched inserts, as a
full sync and its outbox would leave them: the figures are of the read side, which is what the
platform waits on; the sync's own cost is the main bench's.

The web process is the real one (uvicorn, the app, the pool), on a loopback port, one request at a
time with a keep-alive session. Its peak RSS (``VmHWM``) is reset just before the walk (Linux
``clear_refs``), so the figure is the walk's high-water mark; ``rss_before_mb`` is where it started.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from pydantic import SecretStr
from sqlalchemy import Engine, insert, select

from devtools.bench import throwaway_databases
from providers.registry import SUPPORTED
from services.console import err, out
from settings import Settings
from store.db import utcnow
from store.models import Enrollment, Integration, OutboxHead, Person, SchoolClass
from store.runtime import build_runtime
from store.vault import new_key

STUDENTS = 100_000
CLASS_SIZE = 25
CLASSES_PER_TEACHER = 5
PAGE = 1000
PAGES_TIMED = 100
CHUNK = 5000
GOAL_MS = 50


def feed_settings(database_url: str) -> tuple[Settings, str]:
    """Throwaway keys and one platform token, on this run's database."""
    token = secrets.token_urlsafe(32)
    settings = Settings(
        database_url=database_url,
        broker_url=None,
        pseudonym_key=SecretStr(secrets.token_urlsafe(48)),
        token_keys=SecretStr(new_key()),
        platform_tokens=SecretStr(token),
    )
    return settings, token


# ------------------------------------------------------------------------------------ the district
def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def write_district(engine: Engine, students: int) -> dict[str, int]:
    """One school-wide link: classes of 25, a teacher per five classes, each student in one class.

    Ids are assigned here (the tables are empty), so enrolments need no look-up. Names and pseudonyms
    are made up: nothing here is anyone's data.
    """
    classes = max(1, students // CLASS_SIZE)
    teachers = max(1, classes // CLASSES_PER_TEACHER)
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            insert(Integration),
            [{"id": 1, "provider": SUPPORTED[0], "tenant": "bench-district", "linked_by": "bench-admin",
              "status": "active", "generation": 1, "created_at": now, "status_changed_at": now,
              "consent_basis": "school", "granted_scopes": ""}],
        )  # fmt: skip
        rows = ({"id": n, "integration_id": 1, "external_id": f"class-{n}", "name": f"Class {n}",
                 "section": f"S{n % 7}", "state": "ACTIVE"} for n in range(1, classes + 1))  # fmt: skip
        for batch in _chunks(rows):
            connection.execute(insert(SchoolClass), batch)
        people = ({"id": n, "integration_id": 1, "role": "teacher" if n <= teachers else "student",
                   "pseudonym": secrets.token_hex(32), "display_name": f"Teacher {n}" if n <= teachers else None}
                  for n in range(1, teachers + students + 1))  # fmt: skip
        for batch in _chunks(people):
            connection.execute(insert(Person), batch)
        enrolments = _enrolments(classes, teachers, students)
        for batch in _chunks(enrolments):
            connection.execute(insert(Enrollment), batch)
    return {"classes": classes, "teachers": teachers, "students": students, "members": classes + students}


def _enrolments(classes: int, teachers: int, students: int) -> Iterator[dict[str, Any]]:
    for n in range(1, classes + 1):
        yield {"integration_id": 1, "class_id": n, "person_id": 1 + (n - 1) // CLASSES_PER_TEACHER, "role": "teacher"}
    for n in range(students):
        yield {"integration_id": 1, "class_id": 1 + n % classes, "person_id": teachers + 1 + n, "role": "student"}


def events_written(engine: Engine) -> int:
    """How many events the outbox's triggers wrote for the district (one per class, member and the link)."""
    with engine.connect() as connection:
        return int(connection.execute(select(OutboxHead.last_seq).where(OutboxHead.id == 1)).scalar_one())


# ------------------------------------------------------------------------------------------ the web process
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _web_env(settings: Settings, token: str) -> dict[str, str]:
    assert settings.pseudonym_key is not None and settings.token_keys is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
    return env | {
        "ROSTERSYNC_DATABASE_URL": settings.database_url,
        "ROSTERSYNC_PSEUDONYM_KEY": settings.pseudonym_key.get_secret_value(),
        "ROSTERSYNC_TOKEN_KEYS": settings.token_keys.get_secret_value(),
        "ROSTERSYNC_PLATFORM_TOKENS": token,
    }


def _memory_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: what a page costs the server, whatever else the machine runs."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak(pid: int) -> None:
    """Forget the web process's high-water mark (Linux 4.0+); without it the peak is since its start."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass


class Served:
    """``rostersync web`` on a free loopback port, and a keep-alive session holding the platform token."""

    def __init__(self, settings: Settings, token: str, logs: Path) -> None:
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = logs.open("wb")
        command = [str(Path(sys.executable).with_name("rostersync")), "web", "--host", "127.0.0.1", "--port", str(port)]
        self.process = subprocess.Popen(command, env=_web_env(settings, token), stdout=self.log, stderr=self.log)  # noqa: S603 - our own executable
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http.get(f"{self.base}/healthz", timeout=2)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"rostersync web did not start: see {logs}") from None
                time.sleep(0.2)

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(self.base + path, params=params, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def time_feed_pages(served: Served, events: int) -> dict[str, Any]:
    """``PAGES_TIMED`` consecutive pages of ``PAGE`` events, as a consumer catching up reads them."""
    served.get("/v1/changes", after=0, limit=PAGE)  # warm: the pool's connection, the first statement's plan
    timings: list[float] = []
    after = 0
    cpu = _cpu_seconds(served.process.pid)
    for _ in range(min(PAGES_TIMED, events // PAGE)):
        started = time.perf_counter()
        page = served.get("/v1/changes", after=after, limit=PAGE)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(page["data"]) == PAGE, "a short page: the events were not all written"
        after = page["next"]
    cpu = _cpu_seconds(served.process.pid) - cpu
    timings.sort()
    return {
        "changes_page_web_cpu_ms": round(cpu * 1000 / max(1, len(timings)), 1),
        "changes_pages": len(timings),
        "changes_page_ms_median": round(statistics.median(timings), 1),
        "changes_page_ms_p95": round(timings[math.ceil(len(timings) * 0.95) - 1], 1),
        "changes_page_ms_max": round(timings[-1], 1),
    }


def walk_snapshot(served: Served) -> dict[str, Any]:
    """Every page of every list, as a consumer takes a snapshot; the web process's memory around it."""
    pid = served.process.pid
    before = _memory_mb(pid, "VmRSS")
    _reset_peak(pid)
    counts = {"integrations": 0, "classes": 0, "members": 0}
    started = time.perf_counter()
    for integration in _every(served, "/v1/integrations"):
        counts["integrations"] += 1
        for kind in ("classes", "members"):
            counts[kind] += sum(1 for _ in _every(served, f"/v1/integrations/{integration['id']}/{kind}"))
    return {
        "snapshot_s": round(time.perf_counter() - started, 2),
        "snapshot_items": counts,
        "snapshot_rss_before_mb": round(before, 1),
        "snapshot_peak_rss_mb": round(_memory_mb(pid, "VmHWM"), 1),
    }


def _every(served: Served, path: str) -> Iterator[dict[str, Any]]:
    after: str | None = None
    while True:
        page = served.get(path, limit=PAGE, **({"after": after} if after else {}))
        yield from page["data"]
        after = page["next"]
        if after is None:
            return


# ------------------------------------------------------------------------------------------ the run
def run_feed(students: int | None = None, database_url: str | None = None) -> dict[str, Any]:
    """The figures on every database (SQLite; PostgreSQL when configured), keyed by database."""
    configured = database_url if database_url is not None else os.environ.get("ROSTERSYNC_DATABASE_URL")
    size = students or STUDENTS
    report: dict[str, Any] = {"students": size, "goal_changes_page_ms": GOAL_MS, "databases": {}}
    with (
        tempfile.TemporaryDirectory(prefix="rostersync-feed-bench-") as workdir,
        throwaway_databases(Path(workdir), configured) as databases,
    ):
        for database, url in databases:
            report["databases"][database] = _one_database(database, url, size, Path(workdir))
    return report


def _one_database(database: str, url: str, students: int, workdir: Path) -> dict[str, Any]:
    settings, token = feed_settings(url)
    runtime = build_runtime(settings)
    err.print(f"  {database}: writing a district of {students:,} students (the outbox writes its events) ...")
    figures: dict[str, Any] = write_district(runtime.engine, students)
    events = events_written(runtime.engine)
    _analyze(runtime.engine)
    runtime.engine.dispose()
    served = Served(settings, token, workdir / f"web-{database}.log")
    try:
        err.print(f"  {database}: GET /v1/changes, {PAGES_TIMED} pages of {PAGE:,} ...")
        figures |= time_feed_pages(served, events)
        err.print(f"  {database}: the whole snapshot, {PAGE:,} a page ...")
        figures |= walk_snapshot(served)
    finally:
        served.stop()
    return figures


def _analyze(engine: Engine) -> None:
    """What autovacuum does within a minute of a first sync: without statistics PostgreSQL takes the fresh
    tables for empty and joins the members page class by class (seconds a page instead of milliseconds)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE integrations, classes, people, enrollments, change_events")


def print_feed(report: dict[str, Any]) -> None:
    for database, row in report["databases"].items():
        out.print(
            f"feed ({database}, {report['students']:,} students): GET /v1/changes of {PAGE:,} events "
            f"median {row['changes_page_ms_median']} ms, p95 {row['changes_page_ms_p95']} ms "
            f"(goal < {GOAL_MS} ms; web process CPU {row['changes_page_web_cpu_ms']} ms a page); "
            f"snapshot of {row['snapshot_items']['members']:,} members in "
            f"{row['snapshot_s']} s, web process peak RSS {row['snapshot_peak_rss_mb']:.0f} MB "
            f"(from {row['snapshot_rss_before_mb']:.0f} MB)"
        )
