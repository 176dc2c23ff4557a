"""Dramatiq actors. They only orchestrate: messages carry integration ids, never a name or a token.

Importing this module only declares the actors (on ``worker.broker.declaring()``); ``install``
moves them onto the broker made from the settings, and ``dramatiq worker.main`` is what sets one up
in a worker process. The sync's time limit is the setting's, read then (``sync_time_limit=True``).
Retries of a sync follow ``worker.retry_policy``, the policy ``sync --now`` runs under too: the actor
asks it for the delay (``Retry(delay=)``: a rate limit no sooner than the provider asked, transient
faults with exponential backoff and jitter) and, once a cap is reached, the integration is marked
``failed`` and the message ends. A lost grant never reaches here, ``run_sync`` has already ended it.
Every actor has a time limit and a retry cap of its own.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from services.pending_revokes import retry_one
from services.retention import purge_expired as purge_now
from services.revoke import revoke_integration as revoke_now
from services.webhooks import backoff_seconds, deliver_pending
from store import integrations
from store import webhooks as webhook_store
from store.runtime import get_runtime
from store.scheduling import run_ended
from sync.cycle import run_sync
from worker.broker import QUEUE, declaring
from worker.retry_policy import RETRYABLE, RetryPolicy, give_up

WAITED_OPTION = "rostersync_waited_s"
"""Message option: seconds this sync has waited between its attempts so far (travels with the retried message)."""
SHORT_TIME_LIMIT_MS = 5 * 60 * 1000
"""Actors that make at most one provider call (with its timeouts) or a few writes."""
EXHAUSTED_REASON = (
    "sync gave up: it kept failing with an unexpected error or ran past ROSTERSYNC_SYNC_TIME_LIMIT_SECONDS "
    "until its retries were exhausted; resume it with rostersync resume ID (or the admin API) once the cause is fixed"
)


@dramatiq.actor(
    broker=declaring(),
    queue_name=QUEUE,
    sync_time_limit=True,
    notify_shutdown=True,  # on SIGTERM the run stops at once and releases its lease (run_sync's finally)
    on_retry_exhausted="sync_retries_exhausted",
)
def sync_integration(integration_id: int) -> None:
    """One sync; the scheduler's "queued" mark is cleared when no retry of it will follow.

    Its retry cap is the Retries middleware's ``MAX_RETRIES`` (worker.broker), the same number the
    policy counts with, so the policy always decides first for provider faults; the middleware's cap
    only catches what the policy never sees (time limit, unexpected errors).
    """
    runtime, retrying = get_runtime(), False
    generation = integrations.load(runtime.engine, integration_id).generation
    try:
        run_sync(runtime, integration_id)
    except RETRYABLE as error:
        message = CurrentMessage.get_current_message()
        options: dict[str, Any] = message.options if message is not None else {}
        attempt, waited = int(options.get("retries", 0)) + 1, float(options.get(WAITED_OPTION, 0.0))
        wait = RetryPolicy.from_settings(runtime.settings).wait_after(error, attempt, waited)
        if wait is None:
            give_up(runtime, integration_id, generation, error, attempt, waited)
            return
        retrying = True
        options[WAITED_OPTION] = waited + wait
        raise dramatiq.Retry(str(error), delay=int(wait * 1000)) from None
    except BaseException:  # shutdown, time limit, the unexpected: the Retries middleware sends it again
        retrying = True
        raise
    finally:
        if not retrying:
            run_ended(runtime.engine, integration_id, default_interval=runtime.settings.sync_interval_seconds)


@dramatiq.actor(broker=declaring(), queue_name=QUEUE, max_retries=3, time_limit=SHORT_TIME_LIMIT_MS)
def sync_retries_exhausted(message: dict[str, Any], _retry_info: dict[str, Any]) -> None:
    """The last retry of a sync failed outside the policy's view: mark it failed and release its mark."""
    runtime = get_runtime()
    integration_id = int(message["args"][0])
    try:
        state = integrations.load(runtime.engine, integration_id)
    except integrations.UnknownIntegration:
        return  # erased meanwhile: nothing left to mark
    integrations.mark_failed(
        runtime.engine, integration_id, state.generation, actor="system:sync", reason=EXHAUSTED_REASON
    )
    run_ended(runtime.engine, integration_id, default_interval=runtime.settings.sync_interval_seconds)


@dramatiq.actor(broker=declaring(), queue_name=QUEUE, max_retries=0, time_limit=SHORT_TIME_LIMIT_MS)
def retry_pending_revoke(pending_id: int) -> None:
    """One more attempt at a provider revoke that failed transiently (claimed by the scheduler)."""
    retry_one(get_runtime(), pending_id)


@dramatiq.actor(broker=declaring(), queue_name=QUEUE, max_retries=3, time_limit=SHORT_TIME_LIMIT_MS)
def revoke_integration(integration_id: int, requested_by: str) -> None:
    revoke_now(get_runtime(), integration_id, actor=requested_by, reason="requested")


@dramatiq.actor(broker=declaring(), queue_name=QUEUE, max_retries=3, sync_time_limit=True)
def purge_expired() -> None:
    """The retention job (P10), for the scheduler to enqueue daily; it takes no argument, so it carries nothing."""
    purge_now(get_runtime())


@dramatiq.actor(broker=declaring(), queue_name=QUEUE, max_retries=3, time_limit=SHORT_TIME_LIMIT_MS)
def deliver_webhooks() -> None:
    """Push the change feed to WEBHOOK_URL from the stored position (services.webhooks); it carries nothing.

    A failed attempt is retried after the backoff its failure count gives (``Retry(delay=)``), up to three
    times; after that the scheduler's tick sends it again once the backoff has run out, so retries never end
    while something is undelivered. A run that stopped after its share of batches sends itself again at once.
    Duplicate messages are harmless: one batch is in flight at a time (the cursor's lock), and a run that
    finds nothing due ends.
    """
    runtime = get_runtime()
    result = deliver_pending(runtime)
    if result.stopped == "more":
        deliver_webhooks.send()
    elif result.failed:
        failures = webhook_store.read(runtime.engine).failures
        wait = backoff_seconds(runtime.settings, failures)
        raise dramatiq.Retry("webhook delivery failed", delay=int(wait * 1000) + 1)


ALL = (
    sync_integration,
    revoke_integration,
    sync_retries_exhausted,
    retry_pending_revoke,
    purge_expired,
    deliver_webhooks,
)
