"""``rostersync bench --fleet M``: M teacher links synced through Redis by two worker processes, under the quota.

What a deployment sees: M teachers (two classes each, of 25 to 35 students) of the provider whose
kit has a fleet (``EmulatorKit.fleet``, ``devtools/providers/<name>.py``: its emulator enforces the
provider's published quotas) are linked, one sync of each is queued on the configured Redis broker
(a key namespace of this run's own), and two ``rostersync worker`` processes (four threads each)
drain the queue on PostgreSQL. The fleet's shared budget (``PROVIDER_BUDGETS``, Dramatiq's
sliding-window limiter on the same Redis) is set to 95% of the quota a fleet shares, the per-client
one (no teacher's own syncs come near the per-user one). Reported: integrations per minute, API
requests as the quota counts them (every part of a batch is one) and the HTTP round trips they took,
their share of the quota over the run and in its busiest minute, and the 429s the emulator sent.

Throughput here is bounded by the quota when the machine is fast enough, by the machine when not;
``limit_share`` says which. The figures are one machine's; ``BENCHMARKS.md`` says which.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr
from sqlalchemy import func, select

from devtools.bench import throwaway_databases
from devtools.emulation import environment
from devtools.headless import redirect_setting
from devtools.providers import KITS
from devtools.providers.base import EmulatorKit, FleetKit
from emulators.core import RequestRecord
from services.console import err
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


def fleet_kit() -> EmulatorKit:
    """The kit of the provider the fleet bench measures: the (first) one whose kit has a fleet."""
    return next(kit for kit in KITS.values() if kit.fleet is not None)


def _fleet(kit: EmulatorKit) -> FleetKit:
    assert kit.fleet is not None
    return kit.fleet


class _Clock:
    """An emulator hook: the arrival time of every API round trip (the kit's ``round_trip``), for the busiest minute.

    Hooks see a batch once, not its parts; the quota counts every part (``quota_calls``).
    """

    def __init__(self, round_trip: Callable[[RequestRecord], bool]) -> None:
        self.round_trip = round_trip
        self.times: list[float] = []

    def __call__(self, record: RequestRecord) -> None:
        if self.round_trip(record):
            self.times.append(time.monotonic())


def quota_calls(fleet: FleetKit, records: Sequence[RequestRecord]) -> int:
    """API calls as the provider's quota counts them: each part of a batch is one, the batch itself none."""
    return sum(1 for record in records if fleet.quota_call(record))


def fleet_settings(kit: EmulatorKit, emulator: Any, database_url: str, broker_url: str, budget: str) -> Settings:
    return Settings(
        **kit.settings(emulator) | redirect_setting(kit.name),
        database_url=database_url,
        broker_url=broker_url,
        broker_namespace=f"rs-bench-fleet-{uuid.uuid4().hex[:10]}",
        provider_budgets=budget,
        pseudonym_key=SecretStr(secrets.token_urlsafe(48)),
        token_keys=SecretStr(new_key()),
        max_retries=100,  # a sync stopped by the spent budget is retried until it gets through
        http_timeout_seconds=60,
    )


def worker_env(settings: Settings, emulated: dict[str, str]) -> dict[str, str]:
    """The workers' configuration: this run's database, broker namespace, keys and emulator (``emulated``, the
    variables that point at it, CA included); nothing inherited."""
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
        **emulated,
        "ROSTERSYNC_WORKER_METRICS_PORT": "0",
    }


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


def _start_workers(settings: Settings, emulated: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    rostersync = str(Path(sys.executable).with_name("rostersync"))
    processes = []
    for n in range(WORKERS):
        log = (logs / f"worker{n}.log").open("wb")
        command = [rostersync, "worker", "--processes", "1", "--threads", str(THREADS)]
        processes.append(
            subprocess.Popen(command, env=worker_env(settings, emulated), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - our own executable
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
    kit = fleet_kit()
    quota = _fleet(kit).quota
    budget = f"{kit.name}={int(quota * BUDGET_SHARE * BUDGET_WINDOW / 60)}/{BUDGET_WINDOW}"
    with tempfile.TemporaryDirectory(prefix="rostersync-fleet-") as tmp:
        workdir = Path(tmp)
        with throwaway_databases(workdir, configured) as databases:
            url = dict(databases)["postgresql"]
            err.print(
                f"[bold]fleet[/]: {teachers:,} {kit.name.capitalize()} teachers, two classes of 25-35 each, "
                "in the emulator"
            )
            emulator = _fleet(kit).build(teachers, CLASSES_PER_TEACHER, CLASS_SIZES, workdir)
            settings = fleet_settings(kit, emulator, url, broker, budget)
            try:
                return _drain(kit, emulator, settings, workdir)
            finally:
                emulator.stop()
                client = redis.Redis.from_url(broker)
                for key in client.scan_iter(f"{settings.broker_namespace}*"):
                    client.delete(key)


def _drain(kit: EmulatorKit, emulator: Any, settings: Settings, workdir: Path) -> dict[str, Any]:
    """Link every teacher while the workers boot, queue one sync each, wait for all; the run's figures."""
    fleet = _fleet(kit)
    runtime = build_runtime(settings)
    clock = _Clock(fleet.round_trip)
    try:
        workers = _start_workers(settings, environment(kit.name, emulator), workdir)  # they boot while teachers link
        try:
            ids = fleet.link(runtime, emulator)
            fleet.enforce(emulator, fleet.quota)
            emulator.add_hook(clock)
            brokers.install(brokers.make_broker(settings))
            err.print(
                f"  two workers of {THREADS} threads; budget {settings.provider_budgets} (quota {fleet.quota:,}/min)"
            )
            log_start, started = len(emulator.requests), time.monotonic()
            for integration_id in ids:
                sync_after_link(runtime, integration_id)
            _wait(runtime, workers, clock, len(ids), started, workdir)
            seconds = time.monotonic() - started
        finally:
            _stop(workers)
        records = emulator.requests[log_start:]
    finally:
        runtime.engine.dispose()
    return _figures(fleet, settings, ids, records, clock, seconds)


def _wait(
    runtime: Runtime, workers: Sequence[subprocess.Popen[bytes]], clock: _Clock, total: int, started: float, logs: Path
) -> None:
    """Until every integration has synced ``ok``; a worker that exits or five minutes without a request fail it."""
    done, reported = 0, started
    while done < total:
        if any(process.poll() is not None for process in workers):
            raise FleetError(f"a worker exited early:\n{_log_tail(logs)}")
        if time.monotonic() - max([started, *clock.times[-1:]]) > 300:
            raise FleetError(f"no request for 5 minutes; {done} of {total} synced:\n{_log_tail(logs)}")
        time.sleep(0.5)
        done = _synced(runtime)
        if time.monotonic() - reported >= 10:
            reported = time.monotonic()
            err.print(f"  {done:,} of {total:,} synced, {len(clock.times):,} requests")


def _figures(
    fleet: FleetKit,
    settings: Settings,
    ids: Sequence[int],
    records: Sequence[RequestRecord],
    clock: _Clock,
    seconds: float,
) -> dict[str, Any]:
    """The ``fleet`` object of ``bench --json``, and its line on stderr."""
    quota = fleet.quota
    requests = quota_calls(fleet, records)
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
        "rate_limit": fleet.rate_limit,
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
