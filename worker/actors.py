"""Dramatiq actors. They only orchestrate: messages carry integration ids, never a name or a token.

``dramatiq worker.actors`` imports this module, so it sets the broker up from the settings first.
Retry policy: ``RateLimited`` is retried no sooner than the provider asked (``Retry(delay=)``);
``TransientError`` falls through to the Retries middleware (exponential backoff with jitter);
a lost grant never reaches here, ``run_sync`` has already ended the integration.
"""

from __future__ import annotations

import random
from typing import Any

import dramatiq

from connectors.base import RateLimited
from settings import get_settings
from store.scheduling import run_ended
from worker.broker import QUEUE, ensure_broker
from worker.pending_revokes import retry_one
from worker.retention import purge_expired as purge_now
from worker.revoke import revoke_integration as revoke_now
from worker.runtime import get_runtime
from worker.sync import run_sync

ensure_broker(get_settings())


@dramatiq.actor(
    queue_name=QUEUE,
    time_limit=get_settings().sync_time_limit_seconds * 1000,
    notify_shutdown=True,  # on SIGTERM the run stops at once and releases its lease (run_sync's finally)
    on_retry_exhausted="sync_retries_exhausted",
)
def sync_integration(integration_id: int) -> None:
    """One sync; the scheduler's "queued" mark is cleared when no retry of it will follow."""
    runtime, retrying = get_runtime(), False
    try:
        run_sync(runtime, integration_id)
    except RateLimited as error:
        retrying = True
        delay_ms = int(error.retry_after * 1000) + random.randint(0, 1000)
        raise dramatiq.Retry(str(error), delay=delay_ms) from None
    except BaseException:  # transient, shutdown, time limit: the Retries middleware sends it again
        retrying = True
        raise
    finally:
        if not retrying:
            run_ended(runtime.engine, integration_id, default_interval=runtime.settings.sync_interval_seconds)


@dramatiq.actor(queue_name=QUEUE, max_retries=3)
def sync_retries_exhausted(message: dict[str, Any], _retry_info: dict[str, Any]) -> None:
    """The last retry of a sync failed: release its mark so the scheduler takes it up one interval on."""
    runtime = get_runtime()
    run_ended(runtime.engine, int(message["args"][0]), default_interval=runtime.settings.sync_interval_seconds)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def retry_pending_revoke(pending_id: int) -> None:
    """One more attempt at a provider revoke that failed transiently (claimed by the scheduler)."""
    retry_one(get_runtime(), pending_id)


@dramatiq.actor(queue_name=QUEUE, max_retries=3)
def revoke_integration(integration_id: int, requested_by: str) -> None:
    revoke_now(get_runtime(), integration_id, actor=requested_by, reason="requested")


@dramatiq.actor(queue_name=QUEUE, max_retries=3)
def purge_expired() -> None:
    """The retention job (P10), for the scheduler to enqueue daily; it takes no argument, so it carries nothing."""
    purge_now(get_runtime())


ALL = (sync_integration, revoke_integration, sync_retries_exhausted, retry_pending_revoke, purge_expired)
