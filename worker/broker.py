"""Broker selection: ``ROSTERSYNC_BROKER_URL=redis://..`` gives Redis; unset, an in-memory broker and worker.

With the in-memory broker the work runs in this very process, so a command that enqueues must
``drain()`` before it exits or the work is lost with the process.

Actors are declared at import on a holding broker that sends nothing (``worker.actors`` imports
this module, never the reverse); ``install`` moves every declared actor onto the broker made from
the settings, which is when the sync time limit is read (``SyncTimeLimit``).
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import dramatiq.errors
import redis.exceptions
from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware, Retries, TimeLimit

from settings import Settings

QUEUE = "rostersync"

_lock = threading.Lock()
_inprocess_worker: dramatiq.Worker | None = None


class SyncTimeLimit(Middleware):
    """Gives an actor declared with ``sync_time_limit=True`` the broker's time limit, the one ``make_broker``
    read from ROSTERSYNC_SYNC_TIME_LIMIT_SECONDS, in its own options (where a reader sees every actor's bound)."""

    @property
    def actor_options(self) -> set[str]:
        return {"sync_time_limit"}

    def before_declare_actor(self, broker: Broker, actor: Any) -> None:
        if actor.options.get("sync_time_limit"):
            [limit] = [one for one in broker.middleware if isinstance(one, TimeLimit)]
            actor.options["time_limit"] = limit.time_limit


class Holding(StubBroker):
    """Where our actors are declared until ``install``: it refuses messages, which would be lost here."""

    def __init__(self) -> None:
        super().__init__()
        self.add_middleware(SyncTimeLimit())

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        raise RuntimeError("no message broker is installed yet (worker.broker.install)")


_current: Broker = Holding()


def declaring() -> Broker:
    """The broker an actor is declared on: the installed one, else the holding broker that ``install`` empties."""
    return _current


def make_broker(settings: Settings) -> Broker:
    broker: Broker
    if settings.broker_url:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.broker_url, namespace=settings.broker_namespace
        )
    else:
        broker = StubBroker(fail_fast_default=False)
    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            middleware.min_backoff = settings.retry_min_backoff_ms
            middleware.max_backoff = settings.retry_max_backoff_ms
            middleware.max_retries = settings.max_retries
        if isinstance(middleware, TimeLimit):
            middleware.time_limit = settings.sync_time_limit_seconds * 1000
    broker.add_middleware(SyncTimeLimit())
    broker.add_middleware(CurrentMessage())  # the sync actor reads its attempt count and waits (worker.retry_policy)
    if settings.broker_url and settings.worker_metrics_port:
        from dramatiq.middleware.prometheus import Prometheus  # only exports from `dramatiq` worker processes

        broker.add_middleware(Prometheus())
    return broker


class BrokerUnavailable(Exception):
    """The message broker cannot be reached; the message names the setting, never the URL (it may hold a password)."""


def check(broker: Broker) -> None:
    """Fail before any work is done (a link state consumed, a sync half-queued) when the broker is down."""
    if isinstance(broker, RedisBroker):
        try:
            broker.client.ping()
        except redis.exceptions.RedisError as error:
            raise BrokerUnavailable(
                f"message broker unreachable ({type(error).__name__}); check ROSTERSYNC_BROKER_URL"
            ) from None


def enqueue(actor: Any, *args: Any) -> None:
    """Send one message; a broker that fails at this point is the same clear error as one found down before."""
    try:
        actor.send(*args)
    except (dramatiq.errors.BrokerError, redis.exceptions.RedisError) as error:
        raise BrokerUnavailable(
            f"message broker refused the message ({type(error).__name__}); check ROSTERSYNC_BROKER_URL"
        ) from None


def enqueue_with_delay(actor: Any, delay_ms: int, *args: Any) -> None:
    """``enqueue`` with a delay (the scheduler's jitter)."""
    try:
        actor.send_with_options(args=args, delay=delay_ms)
    except (dramatiq.errors.BrokerError, redis.exceptions.RedisError) as error:
        raise BrokerUnavailable(
            f"message broker refused the message ({type(error).__name__}); check ROSTERSYNC_BROKER_URL"
        ) from None


def install(broker: Broker) -> Broker:
    """Make ``broker`` the global one and move every declared actor onto it (tests and the demo switch brokers)."""
    global _inprocess_worker, _current
    with _lock:
        if _inprocess_worker is not None:
            _inprocess_worker.stop()
            _inprocess_worker = None
        dramatiq.set_broker(broker)
        for actor in list(_current.actors.values()):
            actor.broker = broker
            broker.declare_actor(actor)
        _current = broker
    return broker


def ensure_broker(settings: Settings) -> Broker:
    """The installed broker, set up from settings the first time it is asked for."""
    if isinstance(_current, Holding):
        install(make_broker(settings))
    return _current


def is_in_memory(broker: Broker) -> bool:
    return isinstance(broker, StubBroker)


def drain(broker: Broker, *, timeout_ms: int | None = None) -> None:
    """In memory: run the in-process worker until every queued (and delayed) message is done."""
    global _inprocess_worker
    if not isinstance(broker, StubBroker):
        return
    with _lock:
        if _inprocess_worker is None:
            broker.emit_after("process_boot")
            _inprocess_worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=4)
            _inprocess_worker.start()
    broker.join(QUEUE, fail_fast=False, timeout=timeout_ms)
    _inprocess_worker.join()


def shutdown() -> None:
    global _inprocess_worker
    with _lock:
        if _inprocess_worker is not None:
            _inprocess_worker.stop()
            _inprocess_worker = None
