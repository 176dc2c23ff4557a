"""``rostersync bench --fleet M``: M teacher links synced through Redis by two worker processes, under the quota.

What a deployment sees: M Google teachers (two classes each, of 25 to 35 students) are linked,
one sync of each is queued on the configured Redis broker (a key namespace of this run's own),
and two ``rostersync worker`` processes (four threads each) drain the queue on PostgreSQL. The
emulator enforces Classroom's published read quotas (1,200 requests a minute per user, 3,000 per
client project); the fleet's shared budget (``PROVIDER_BUDGETS``, Dramatiq's sliding-window
limiter on the same Redis) is set to 95% of the quota a fleet shares, the per-client one (no
teacher's own syncs come near 1,200 a minute). Reported: integrations per minute, API requests as
the quota counts them (every part of a roster batch is one) and the HTTP round trips they took,
their share of the quota over the run and in its busiest minute, and the 429s the emulator sent.

Throughput here is bounded by the quota when the machine is fast enough, by the machine when not;
``limit_share`` says which. The figures are one machine's; ``BENCHMARKS.md`` says which.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr
from sqlalchemy import func, select

from devtools.bench import throwaway_databases
from devtools.demo import consent_headlessly, headless_redirect
from devtools.emulation import settings_values
from emulators.core import RequestRecord
from emulators.google import PUBLISHED_RATE_LIMITS, GoogleEmulator
from services.console import err
from services.linking import complete_link, start_link
from settings import Settings
from store.models import SyncRun
from store.runtime import Runtime, build_runtime
from store.vault import new_key
from worker import broker as brokers
from worker.sync_requests import sync_after_link

DEFAULT_FLEET = 2_000
CLASSES_PER_TEACHER = 2
CLASS_SIZES = (25, 35)
WORKERS, THREADS = 2, 4
BUDGET_SHARE = 0.95
"""The fleet's budget as a share of the quota: the margin absorbs a unit taken in one second and
spent in the next, and the emulator's calendar minute against the limiter's sliding one."""
BUDGET_WINDOW = 10
"""Seconds: the quota's minute in six slices, so a sync stopped by a spent budget waits 10 s, not 60."""


class FleetError(RuntimeError):
    """The fleet cannot run here (no Redis, no PostgreSQL) or did not finish; the message says why."""


class _Clock:
    """An emulator hook: the arrival time of every API round trip (``/v1/``, ``/batch``), for the busiest minute.

    Hooks see a batch once, not its parts; the quota counts every part (``quota_calls``).
    """

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, record: RequestRecord) -> None:
        if record.path.startswith("/v1/") or record.path == "/batch":
            self.times.append(time.monotonic())


def quota_calls(records: Sequence[RequestRecord]) -> int:
    """API calls as Google's quota counts them: each part of a batch is one, the batch itself none."""
    return sum(1 for record in records if record.path.startswith("/v1/"))


def build_emulator(teachers: int, workdir: Path, seed: int = 11) -> GoogleEmulator:
    """Teachers of two classes each; every class topped up to a size drawn from 25-35 (the generator's are 25)."""
    emulator = GoogleEmulator(
        teachers=teachers, courses_per_teacher=CLASSES_PER_TEACHER, students_per_course=CLASS_SIZES[0], cert_dir=workdir
    ).start()
    draw = random.Random(seed)
    for teacher in emulator.teacher_ids:
        for course in emulator.course_ids_of(teacher, states=["ACTIVE"]):
            for _ in range(draw.randint(*CLASS_SIZES) - CLASS_SIZES[0]):
                emulator.add_student(course)
    return emulator


def fleet_settings(emulator: GoogleEmulator, database_url: str, broker_url: str, budget: str) -> Settings:
    return Settings(
        **settings_values("google", emulator),
        google_redirect_uri=headless_redirect("google"),
        database_url=database_url,
        broker_url=broker_url,
        broker_namespace=f"rs-bench-fleet-{uuid.uuid4().hex[:10]}",
        provider_budgets=budget,
        pseudonym_key=SecretStr(secrets.token_urlsafe(48)),
        token_keys=SecretStr(new_key()),
        max_retries=100,  # a sync stopped by the spent budget is retried until it gets through
        http_timeout_seconds=60,
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """The workers' configuration: this run's database, broker namespace, keys and emulator; nothing inherited."""
    assert settings.pseudonym_key is not None and settings.token_keys is not None and settings.broker_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
    return env | {
        "ROSTERSYNC_DATABASE_URL": settings.database_url,
        "ROSTERSYNC_BROKER_URL": settings.broker_url,
        "ROSTERSYNC_BROKER_NAMESPACE": settings.broker_namespace,
        "ROSTERSYNC_PROVIDER_BUDGETS": settings.provider_budgets,
        "ROSTERSYNC_MAX_RETRIES": str(settings.max_retries),
        "ROSTERSYNC_HTTP_TIMEOUT_SECONDS": str(settings.http_timeout_seconds),
        "ROSTERSYNC_PSEUDONYM_KEY": settings.pseudonym_key.get_secret_value(),
        "ROSTERSYNC_TOKEN_KEYS": settings.token_keys.get_secret_value(),
        "ROSTERSYNC_GOOGLE_CLIENT_ID": settings.google.client_id,
        "ROSTERSYNC_GOOGLE_CLIENT_SECRET": settings.google.client_secret.get_secret_value(),
        "ROSTERSYNC_GOOGLE_AUTH_URI": settings.google.auth_uri,
        "ROSTERSYNC_GOOGLE_TOKEN_URI": settings.google.token_uri,
        "ROSTERSYNC_GOOGLE_REVOKE_URI": settings.google.revoke_uri,
        "ROSTERSYNC_GOOGLE_API_ENDPOINT": settings.google.api_endpoint,
        "ROSTERSYNC_CA_BUNDLE": str(settings.ca_bundle),
        "ROSTERSYNC_WORKER_METRICS_PORT": "0",
    }


def link_teachers(runtime: Runtime, emulator: GoogleEmulator) -> list[int]:
    """Every teacher links through the consent screen, as in the bench's Google scenario."""
    from connectors.google import http_session

    ids = []
    with http_session(runtime.settings) as browser:
        for n, user in enumerate(emulator.teacher_ids):
            emulator.set_consent_user(user)
            url = start_link(runtime, provider_name="google", teacher=f"fleet-teacher-{n}")
            ids.append(complete_link(runtime, consent_headlessly(browser, url)))
            if (n + 1) % 500 == 0:
                err.print(f"  linked {n + 1:,} teachers")
    return ids


def _synced(runtime: Runtime) -> int:
    """Integrations with a sync that ended ``ok``."""
    with runtime.engine.connect() as connection:
        query = select(func.count(func.distinct(SyncRun.integration_id))).where(SyncRun.outcome == "ok")
        return int(connection.execute(query).scalar_one())


def busiest_minute(times: Sequence[float]) -> int:
    """The most requests that arrived within any 60 seconds."""
    ordered = sorted(times)
    return max((bisect_left(ordered, t + 60) - i for i, t in enumerate(ordered)), default=0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_workers(settings: Settings, logs: Path) -> list[subprocess.Popen[bytes]]:
    rostersync = str(Path(sys.executable).with_name("rostersync"))
    processes = []
    for n in range(WORKERS):
        log = (logs / f"worker{n}.log").open("wb")
        command = [rostersync, "worker", "--processes", "1", "--threads", str(THREADS)]
        processes.append(
            subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - our own executable
        )
    return processes


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _log_tail(logs: Path) -> str:
    return "\n".join(path.read_text(errors="replace")[-2000:] for path in sorted(logs.glob("*.log")))


def run_fleet(teachers: int, database_url: str | None = None, broker_url: str | None = None) -> dict[str, Any]:
    """Link, queue and drain the fleet; the figures of the ``fleet`` object of ``bench --json``."""
    configured = database_url if database_url is not None else os.environ.get("ROSTERSYNC_DATABASE_URL")
    broker = broker_url if broker_url is not None else os.environ.get("ROSTERSYNC_BROKER_URL")
    if not broker or not broker.startswith("redis"):
        raise FleetError("bench --fleet needs Redis: set ROSTERSYNC_BROKER_URL (redis://...)")
    if not configured or not configured.startswith("postgresql"):
        raise FleetError("bench --fleet needs PostgreSQL for its two worker processes: set ROSTERSYNC_DATABASE_URL")
    quota = PUBLISHED_RATE_LIMITS["client"]
    budget = f"google={int(quota * BUDGET_SHARE * BUDGET_WINDOW / 60)}/{BUDGET_WINDOW}"
    with tempfile.TemporaryDirectory(prefix="rostersync-fleet-") as tmp:
        workdir = Path(tmp)
        with throwaway_databases(workdir, configured) as databases:
            url = dict(databases)["postgresql"]
            err.print(f"[bold]fleet[/]: {teachers:,} Google teachers, two classes of 25-35 each, in the emulator")
            emulator = build_emulator(teachers, workdir)
            settings = fleet_settings(emulator, url, broker, budget)
            try:
                return _drain(emulator, settings, teachers, quota, workdir)
            finally:
                emulator.stop()
                client = redis.Redis.from_url(broker)
                for key in client.scan_iter(f"{settings.broker_namespace}*"):
                    client.delete(key)


def _drain(emulator: GoogleEmulator, settings: Settings, teachers: int, quota: int, workdir: Path) -> dict[str, Any]:
    runtime = build_runtime(settings)
    try:
        workers = _start_workers(settings, workdir)  # they boot while the teachers link
        try:
            ids = link_teachers(runtime, emulator)
            emulator.set_rate_limits(per_user=PUBLISHED_RATE_LIMITS["user"], per_client=quota)
            clock = _Clock()
            emulator.add_hook(clock)
            brokers.install(brokers.make_broker(settings))
            err.print(f"  two workers of {THREADS} threads; budget {settings.provider_budgets} (quota {quota:,}/min)")
            log_start, started = len(emulator.requests), time.monotonic()
            for integration_id in ids:
                sync_after_link(runtime, integration_id)
            done, reported = 0, started
            while done < len(ids):
                if any(process.poll() is not None for process in workers):
                    raise FleetError(f"a worker exited early:\n{_log_tail(workdir)}")
                if time.monotonic() - max([started, *clock.times[-1:]]) > 300:
                    raise FleetError(f"no request for 5 minutes; {done} of {len(ids)} synced:\n{_log_tail(workdir)}")
                time.sleep(0.5)
                done = _synced(runtime)
                if time.monotonic() - reported >= 10:
                    reported = time.monotonic()
                    err.print(f"  {done:,} of {len(ids):,} synced, {len(clock.times):,} requests")
            seconds = time.monotonic() - started
        finally:
            _stop(workers)
        records = emulator.requests[log_start:]
    finally:
        runtime.engine.dispose()
    requests = quota_calls(records)
    per_minute = requests / seconds * 60
    # The busiest minute's round trips, scaled to calls by the run's calls per round trip (the hook sees
    # a batch, not its parts, and the log has the parts but no times).
    per_trip = requests / max(1, len(clock.times))
    figures = {
        "integrations": len(ids),
        "workers": WORKERS,
        "threads_per_worker": THREADS,
        "classes_per_teacher": CLASSES_PER_TEACHER,
        "seconds": round(seconds, 2),
        "integrations_per_min": round(len(ids) / seconds * 60, 1),
        "requests": requests,
        "round_trips": len(clock.times),
        "requests_per_min": round(per_minute, 1),
        "rate_limit": "Google Classroom read requests per minute per client project",
        "rate_limit_per_min": quota,
        "budget": settings.provider_budgets,
        "limit_share": round(per_minute / quota, 3),
        "busiest_minute_share": round(min(1.0, busiest_minute(clock.times) * per_trip / quota), 3),
        "http_429": sum(1 for record in records if record.status == 429),
    }
    err.print(
        f"  [bold]fleet[/]: {figures['integrations_per_min']} integrations/min, {per_minute:.0f} requests/min "
        f"({figures['limit_share']:.0%} of {quota:,}/min; busiest minute {figures['busiest_minute_share']:.0%}), "
        f"{figures['http_429']} HTTP 429"
    )
    return figures
