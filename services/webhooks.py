"""The change feed pushed to ``WEBHOOK_URL``: batches of events in seq order, signed per Standard Webhooks.

Why push as well as ``/v1/changes``: a platform that cannot poll still hears of every change, deletions
first among them (P12). The guarantees are the feed's: events in seq order, each batch the events right
after the last one the receiver acknowledged, at least once (a batch whose 2xx was lost is sent again, so
a receiver applies events idempotently, as the feed's contract already asks). The position lives in the
database (store.webhooks) and moves only after a 2xx, so a receiver that is down for an hour, or a day,
gets everything when it is back: nothing is dropped, only retried later and later, from
``RETRY_MIN_BACKOFF_MS`` doubling up to ``RETRY_MAX_BACKOFF_MS`` (the sync's retry settings: one notion of
backoff for an operator to tune). The Dramatiq actor (worker.actors.deliver_webhooks) retries on that
schedule, and the scheduler's tick sends it again whenever something is past the position and the
backoff has run out, so a worker restart or an exhausted retry count loses nothing either.

What is recorded about a failure is a fixed phrase per kind (could not connect, timed out, HTTP 500):
never the URL (it may carry a token), the secret, or what the receiver answered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from standardwebhooks import Webhook

from connectors.http import RedirectNotFollowed, http_session
from settings import Settings
from store import feed, webhooks
from store.db import utcnow
from store.runtime import Runtime

log = logging.getLogger("rostersync.webhooks")

MAX_BATCHES_PER_RUN = 50
RUN_SECONDS = 120.0
"""Batches, and seconds, one run sends for before it hands over (the actor sends itself again): a run stays
well inside its time limit, and a long backlog does not keep one worker thread for good."""
USER_AGENT = "rostersync-webhooks"


@dataclass(frozen=True)
class Delivery:
    """What one run did: batches and events acknowledged, and why it stopped."""

    batches: int = 0
    events: int = 0
    stopped: str = "caught_up"  # caught_up | failed | busy | not_due | more | off

    @property
    def failed(self) -> bool:
        return self.stopped == "failed"


def backoff_seconds(settings: Settings, failures: int) -> float:
    """The wait after ``failures`` consecutive failed attempts: doubling from the minimum, capped."""
    if failures <= 0:
        return 0.0
    minimum, maximum = settings.retry_min_backoff_ms / 1000, settings.retry_max_backoff_ms / 1000
    return float(min(maximum, minimum * 2 ** min(failures - 1, 62)))


def due(settings: Settings, position: webhooks.Position, now: datetime) -> bool:
    """Something is past the position and the backoff of the last failure (if any) has run out."""
    if not settings.webhooks_enabled or position.lag == 0:
        return False
    if position.failures == 0 or position.last_attempt_at is None:
        return True
    return now >= position.last_attempt_at + timedelta(seconds=backoff_seconds(settings, position.failures))


def pending(runtime: Runtime) -> bool:
    """For the scheduler's tick: is a delivery run worth enqueueing now?"""
    if not runtime.settings.webhooks_enabled:
        return False
    return due(runtime.settings, webhooks.read(runtime.engine), utcnow())


def compact_data(event: feed.Event) -> str:
    """An event's ``data`` without spaces, whichever database wrote it (PostgreSQL's JSON text spaces its
    separators), non-ASCII text kept as it is: what a batch has always carried."""
    return json.dumps(json.loads(event.data or "{}"), separators=(",", ":"), ensure_ascii=False)


def batch_body(events: Sequence[feed.Event]) -> bytes:
    """The bytes that are signed and sent: ``{"type": "changes", "data": [events]}``, each event written by the
    feed's own writer (store.feed.event_items), as ``/v1/changes`` serves it."""
    return f'{{"type":"changes","data":[{feed.event_items(events, compact_data)}]}}'.encode()


def message_id(events: list[feed.Event]) -> str:
    """``webhook-id``: the batch's seq range, the same when the same batch is sent again (Standard Webhooks)."""
    return f"rs_{events[0].seq}_{events[-1].seq}"


def signed_headers(signer: Webhook, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers (id, timestamp in Unix seconds, ``v1,`` signature) and the type."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }


def post(session: requests.Session, settings: Settings, signer: Webhook, events: list[feed.Event]) -> str | None:
    """POST one batch; None on a 2xx, else the failure in fixed words (no URL, no body, no secret)."""
    body = batch_body(events)
    headers = signed_headers(signer, message_id(events), body, datetime.now(UTC))
    try:
        response = session.post(settings.webhook_url, data=body, headers=headers, timeout=settings.http_timeouts)
    except requests.exceptions.SSLError:
        return "TLS with WEBHOOK_URL failed (check the receiver's certificate and ROSTERSYNC_CA_BUNDLE)"
    except requests.exceptions.Timeout:
        return "WEBHOOK_URL did not answer in time"
    except requests.exceptions.ConnectionError:
        return "could not connect to WEBHOOK_URL"
    except RedirectNotFollowed:
        return "WEBHOOK_URL answered with a redirect; not followed"
    except requests.exceptions.RequestException as error:
        return f"the request to WEBHOOK_URL failed ({type(error).__name__})"
    with response:
        if 200 <= response.status_code < 300:
            return None
        return f"WEBHOOK_URL answered HTTP {response.status_code}"


def deliver_one(runtime: Runtime, session: requests.Session, signer: Webhook) -> tuple[str, int]:
    """One batch under the cursor's lock: (outcome, events acknowledged); outcome is sent, caught_up, failed,
    busy (another delivery holds the cursor) or not_due (still backing off)."""
    engine, settings = runtime.engine, runtime.settings
    with webhooks.claim(engine) as held:
        if held is None:
            return "busy", 0
        if not due(settings, held.position, utcnow()):
            return ("caught_up" if held.position.lag == 0 else "not_due"), 0
        events = held.events(settings.webhook_batch_size)
        if not events:
            return "caught_up", 0
        error = post(session, settings, signer, events)
        if error is not None:
            held.fail(engine, error)
            log.warning("webhook delivery failed: %s; position stays at %s", error, held.position.delivered_through)
            return "failed", 0
        if not held.advance(engine, events[-1].seq):
            return "busy", 0  # a replay moved the position meanwhile: the next run starts from there
        log.info("webhooks: delivered seq %s..%s", events[0].seq, events[-1].seq)
        return "sent", len(events)


def deliver_pending(runtime: Runtime) -> Delivery:
    """Send batches until the receiver has everything, an attempt fails, or the run's share is spent."""
    settings = runtime.settings
    if not settings.webhooks_enabled:
        return Delivery(stopped="off")
    assert settings.webhook_secret is not None
    signer = Webhook(settings.webhook_secret.get_secret_value())
    batches = events = 0
    until = time.monotonic() + RUN_SECONDS
    with http_session(settings) as session:
        while batches < MAX_BATCHES_PER_RUN and time.monotonic() < until:
            outcome, sent = deliver_one(runtime, session, signer)
            if outcome != "sent":
                return Delivery(batches, events, outcome)
            batches, events = batches + 1, events + sent
    return Delivery(batches, events, "more")
