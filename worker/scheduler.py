"""``rostersync scheduler``: claim due syncs and pending provider revokes in the database, and get them run.

With a Redis broker each tick claims (store.scheduling) and enqueues, spreading the messages over
``SCHEDULER_JITTER_SECONDS`` so a thousand integrations due at midnight do not hit a provider in
the same second; several schedulers may run, the claim keeps them from queueing one sync twice.
On the embedded default (in-memory broker) there are no separate workers: ``--once`` runs every
due sync and revoke here, one after the other, and exits, so one cron line schedules a machine.
With WEBHOOK_URL set, each tick also enqueues one webhook delivery run when events are past the delivery
position and its backoff has run out (``--once`` on the embedded default delivers here).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.base import ConnectorError
from services.pending_revokes import retry_one
from services.webhooks import deliver_pending
from services.webhooks import pending as webhooks_pending
from store import pending_revokes, scheduling
from store.runtime import Runtime
from sync.outcomes import verdict
from worker import broker as brokers
from worker.actors import deliver_webhooks, retry_pending_revoke, sync_integration
from worker.retry_policy import run_with_retries

log = logging.getLogger("rostersync.scheduler")

REVOKE_HOLD_SECONDS = 600
"""A claimed pending revoke is hidden this long from other schedulers while its attempt runs."""


@dataclass
class TickReport:
    """What one tick (or one ``--once`` run) did, in ids and counts only."""

    syncs: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    revokes: int = 0
    webhooks: int | None = None  # delivery runs enqueued (tick) or batches delivered (here); None: not configured

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "synced": len(self.syncs) - len(self.failed),
            "failed": self.failed,
            "revoke_attempts": self.revokes,
        }
        if self.webhooks is not None:
            shown["webhook_batches"] = self.webhooks
        return shown


def jitter_ms(runtime: Runtime) -> int:
    return int(random.uniform(0, runtime.settings.scheduler_jitter_seconds) * 1000)


def tick(runtime: Runtime) -> TickReport:
    """Claim everything due now and enqueue it (Redis broker); the workers run it."""
    settings, report = runtime.settings, TickReport()
    while True:
        ids = scheduling.claim_due(
            runtime.engine,
            limit=settings.scheduler_batch,
            stale_seconds=settings.queue_stale_seconds,
            default_interval=settings.sync_interval_seconds,
        )
        for position, integration_id in enumerate(ids):
            try:
                brokers.enqueue_with_delay(sync_integration, jitter_ms(runtime), integration_id)
            except brokers.BrokerUnavailable:
                scheduling.unqueue(runtime.engine, ids[position:])  # claimed but not sent: due again next tick
                raise
            report.syncs.append(integration_id)
        if len(ids) < settings.scheduler_batch:
            break
    for pending_id in pending_revokes.claim_due(
        runtime.engine, limit=settings.scheduler_batch, hold_seconds=REVOKE_HOLD_SECONDS
    ):
        brokers.enqueue(retry_pending_revoke, pending_id)
        report.revokes += 1
    if settings.webhooks_enabled:
        report.webhooks = 0
        if webhooks_pending(runtime):  # something past the position, backoff run out: one run (the lock dedups)
            brokers.enqueue(deliver_webhooks)
            report.webhooks = 1
    if report.syncs or report.revokes:
        log.info("scheduler: enqueued %s sync(s) and %s revoke attempt(s)", len(report.syncs), report.revokes)
    return report


def run_due_here(runtime: Runtime) -> TickReport:
    """Every due sync and revoke, run in this process one after the other (embedded default, ``--once``).

    Each sync runs under the one retry policy (worker.retry_policy), as on a worker: rate limits and
    transient faults are waited out within this run, and past the policy's caps the integration is
    ``failed``; the caps bound every sync, so the run always ends.
    """
    settings, report = runtime.settings, TickReport()
    done: set[int] = set()
    while True:
        ids = scheduling.claim_due(
            runtime.engine,
            limit=settings.scheduler_batch,
            stale_seconds=settings.queue_stale_seconds,
            default_interval=settings.sync_interval_seconds,
        )
        again = [one for one in ids if one in done]
        scheduling.unqueue(runtime.engine, again)
        fresh = [one for one in ids if one not in done]
        if not fresh:
            break
        for integration_id in fresh:
            done.add(integration_id)
            report.syncs.append(integration_id)
            if not run_claimed_here(runtime, integration_id):
                report.failed.append(integration_id)
    for pending_id in pending_revokes.claim_due(
        runtime.engine, limit=settings.scheduler_batch, hold_seconds=REVOKE_HOLD_SECONDS
    ):
        retry_one(runtime, pending_id)
        report.revokes += 1
    if settings.webhooks_enabled:  # one attempt per run; a failure waits for a later run's backoff check
        report.webhooks = 0
        while (delivery := deliver_pending(runtime)).stopped == "more":
            report.webhooks += delivery.batches
        report.webhooks += delivery.batches
    return report


def run_claimed_here(runtime: Runtime, integration_id: int) -> bool:
    """Run one claimed sync in this process under the retry policy; True when it completed.

    The claim is released either way; a failure the policy does not retry leaves it due for the next run.
    """
    keep_due = False
    try:
        outcome = run_with_retries(runtime, integration_id)
    except ConnectorError as error:
        log.warning("integration %s: sync failed, due again at the next run: %s", integration_id, error)
        keep_due, outcome = True, error.kind
    finally:
        if keep_due:
            scheduling.unqueue(runtime.engine, [integration_id])
        else:
            scheduling.run_ended(
                runtime.engine, integration_id, default_interval=runtime.settings.sync_interval_seconds
            )
    return verdict(integration_id, outcome).ok


def serve(runtime: Runtime, job: Callable[[Runtime], TickReport]) -> None:
    """Tick every ``SCHEDULER_TICK_SECONDS`` until SIGTERM (APScheduler 3, one tick at a time); Ctrl-C stops it too.

    The signal handler only sets an event: a handler that shut the scheduler down could run inside the first
    tick, before the scheduler ran, where the tick's own error handling swallowed the refusal and the
    scheduler then ran on for ever (seen under load: a SIGTERM'd scheduler that never exited).
    """
    scheduler = BackgroundScheduler(timezone="UTC")

    def safe_tick() -> None:
        try:
            job(runtime)
        except Exception as error:  # a failed tick (database or broker down) must not stop the scheduler
            log.warning(
                "scheduler tick failed (%s); next tick in %ss",
                type(error).__name__,
                runtime.settings.scheduler_tick_seconds,
            )

    scheduler.add_job(
        safe_tick,
        IntervalTrigger(seconds=runtime.settings.scheduler_tick_seconds),
        next_run_time=datetime.now(UTC),  # at start-up, not one interval later
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    stopped = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    scheduler.start()
    try:
        while not stopped.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=False)
