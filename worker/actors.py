"""Dramatiq actors. They only orchestrate: messages carry integration ids, never a name or a token.

``dramatiq worker.actors`` imports this module, so it sets the broker up from the settings first.
Retry policy: ``RateLimited`` is retried no sooner than the provider asked (``Retry(delay=)``);
``TransientError`` falls through to the Retries middleware (exponential backoff with jitter);
a lost grant never reaches here, ``run_sync`` has already ended the integration.
"""

from __future__ import annotations

import random

import dramatiq

from connectors.base import RateLimited
from settings import get_settings
from worker.broker import QUEUE, ensure_broker
from worker.retention import purge_expired as purge_now
from worker.revoke import revoke_integration as revoke_now
from worker.runtime import get_runtime
from worker.sync import run_sync

ensure_broker(get_settings())


@dramatiq.actor(queue_name=QUEUE, time_limit=30 * 60 * 1000)
def sync_integration(integration_id: int) -> None:
    try:
        run_sync(get_runtime(), integration_id)
    except RateLimited as error:
        delay_ms = int(error.retry_after * 1000) + random.randint(0, 1000)
        raise dramatiq.Retry(str(error), delay=delay_ms) from None


@dramatiq.actor(queue_name=QUEUE, max_retries=3)
def revoke_integration(integration_id: int, requested_by: str) -> None:
    revoke_now(get_runtime(), integration_id, actor=requested_by, reason="requested")


@dramatiq.actor(queue_name=QUEUE, max_retries=3)
def purge_expired() -> None:
    """The retention job (P10), for the scheduler to enqueue daily; it takes no argument, so it carries nothing."""
    purge_now(get_runtime())


ALL = (sync_integration, revoke_integration, purge_expired)
