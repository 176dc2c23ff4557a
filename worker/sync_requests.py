"""Asking for a sync outside the schedule: right after a link, or by a person (with a cooldown).

Both take the scheduler's "queued" mark first (store.scheduling), so a request made while a sync
is queued or running is coalesced into that one instead of queueing a second.
"""

from __future__ import annotations

from store import scheduling
from store.runtime import Runtime
from store.scheduling import ManualRequest, ManualVerdict
from worker import broker as brokers
from worker.actors import sync_integration


def sync_after_link(runtime: Runtime, integration_id: int) -> bool:
    """Queue the first sync of a fresh link; False when one is already queued or running (coalesced)."""
    if not scheduling.mark_queued(runtime.engine, integration_id, stale_seconds=runtime.settings.queue_stale_seconds):
        return False
    _send(runtime, sync_integration, integration_id)
    return True


def request_sync(runtime: Runtime, integration_id: int) -> ManualVerdict:
    """A manual sync: queued at most once per MANUAL_SYNC_COOLDOWN_SECONDS, coalesced with a running one."""
    settings = runtime.settings
    result = scheduling.request_manual(
        runtime.engine,
        integration_id,
        cooldown_seconds=settings.manual_sync_cooldown_seconds,
        stale_seconds=settings.queue_stale_seconds,
    )
    if result.request is ManualRequest.QUEUED:
        _send(runtime, sync_integration, integration_id)
    return result


def _send(runtime: Runtime, actor: object, integration_id: int) -> None:
    try:
        brokers.enqueue(actor, integration_id)
    except brokers.BrokerUnavailable:
        scheduling.unqueue(runtime.engine, [integration_id])  # nothing was queued: the mark must not say so
        raise
