"""Webhooks (issue 20, item 3): the change feed POSTed to a real receiver process, signed per Standard Webhooks,
in seq order, at least once, through an hour of outage, on SQLite and PostgreSQL.

The receiver (tests/webhook_receiver.py) verifies every request with ``standardwebhooks.Webhook.verify``
and records it; events are written as the outbox writes them (tests/webhookkit.py). The hour of outage
runs on time-machine's clock, the clock the backoff reads; nothing sleeps.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import time_machine
from dramatiq.brokers.stub import StubBroker
from fastapi.testclient import TestClient

import services.webhooks
from services.webhooks import deliver_pending
from settings import Settings
from store import webhooks
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from tests.webhookkit import Receiver, add_events, forget_through, new_secret
from web.app import create_app
from worker import actors
from worker import broker as brokers
from worker.broker import QUEUE
from worker.scheduler import run_due_here, tick


def webhook_settings(database_url: str, receiver: Receiver, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": None,
        "pseudonym_key": secrets.token_urlsafe(48),
        "token_keys": new_key(),
        "ca_bundle": receiver.ca_path,
        "webhook_url": receiver.url,
        "webhook_secret": receiver.secret,
        "webhook_batch_size": 3,
        "retry_min_backoff_ms": 2_000,
        "retry_max_backoff_ms": 600_000,
        "http_timeout_seconds": 5,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    folder = tmp_path / "receiver"
    folder.mkdir()
    started = Receiver(folder).start()
    yield started
    started.stop()


@pytest.fixture
def make_runtime(database_url: str, receiver: Receiver) -> Iterator[Any]:
    """``make_runtime(**settings)``: a runtime on the test's database, delivering to the receiver."""
    built: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        rt = build_runtime(webhook_settings(database_url, receiver, **overrides), run_migrations=False)
        set_runtime(rt)
        built.append(rt)
        return rt

    yield make
    set_runtime(None)
    brokers.shutdown()
    for rt in built:
        rt.engine.dispose()


def test_batches_arrive_in_seq_order_signed_and_verified(make_runtime: Any, receiver: Receiver) -> None:
    rt = make_runtime()
    add_events(rt.engine, 7)
    done = deliver_pending(rt)
    assert (done.batches, done.events, done.stopped) == (3, 7, "caught_up")
    entries = receiver.entries()
    assert [entry["verified"] for entry in entries] == [True, True, True]  # standardwebhooks.Webhook.verify
    assert [entry["id"] for entry in entries] == ["rs_1_3", "rs_4_6", "rs_7_7"]
    assert [[event["seq"] for event in batch] for batch in receiver.batches()] == [[1, 2, 3], [4, 5, 6], [7]]
    first = receiver.batches()[0][0]
    assert set(first) == {"seq", "at", "type", "integration_id", "data"}
    assert datetime.fromisoformat(first["at"]).utcoffset() == timedelta(0)  # RFC 3339 with its offset
    assert (first["type"], first["integration_id"], first["data"]["role"]) == ("member.added", 7, "student")
    position = webhooks.read(rt.engine)
    assert (position.delivered_through, position.head, position.lag, position.failures) == (7, 7, 0, 0)

    add_events(rt.engine, 2)
    assert deliver_pending(rt).events == 2
    assert receiver.seqs() == list(range(1, 10))
    assert deliver_pending(rt).stopped == "caught_up"  # nothing new: nothing sent
    assert len(receiver.entries()) == 4


def test_a_receiver_with_another_secret_refuses_every_batch(make_runtime: Any, receiver: Receiver) -> None:
    """The signature is checked for real: signed with another secret, verification fails and nothing moves."""
    rt = make_runtime(webhook_secret=new_secret())
    add_events(rt.engine, 2)
    assert deliver_pending(rt).stopped == "failed"
    [entry] = receiver.entries()
    assert (entry["verified"], entry["error"]) == (False, "No matching signature found")
    position = webhooks.read(rt.engine)
    assert (position.delivered_through, position.failures) == (0, 1)
    assert position.last_error == "WEBHOOK_URL answered HTTP 401"


def _outage_hour(rt: Runtime, receiver: Receiver, broker: StubBroker) -> tuple[int, list[str]]:
    """Sixty scheduler ticks a minute apart: the receiver refuses connections for 30 minutes, then answers
    500 for 30; an event is written every minute. Returns the delivery attempts and the errors recorded."""
    attempts, errors = 0, []
    with time_machine.travel(datetime.now(UTC) - timedelta(hours=3), tick=False) as clock:
        for minute in range(60):
            add_events(rt.engine, 1)
            if minute == 30:
                receiver.start()
                receiver.mode("fail")
            if tick(rt).webhooks:
                assert len(broker.queues[QUEUE].queue) == 1  # one delivery run, carrying nothing
                broker.flush_all()
                with pytest.raises(dramatiq.Retry):  # what the worker would retry after the backoff
                    actors.deliver_webhooks.fn()
                attempts += 1
                errors.append(webhooks.read(rt.engine).last_error)
            clock.shift(60)
    return attempts, errors


def test_an_hour_down_loses_nothing_and_keeps_the_order(make_runtime: Any, receiver: Receiver) -> None:
    rt = make_runtime()
    broker = brokers.install(brokers.make_broker(rt.settings))
    assert isinstance(broker, StubBroker)
    add_events(rt.engine, 5)
    assert deliver_pending(rt).events == 5
    receiver.stop()

    attempts, errors = _outage_hour(rt, receiver, broker)
    # Backed off (from 2 s doubling to 10 min), never given up: far fewer attempts than ticks, the last ones late.
    assert 8 <= attempts < 30
    assert set(errors) == {"could not connect to WEBHOOK_URL", "WEBHOOK_URL answered HTTP 500"}
    assert receiver.seqs() == list(range(1, 6))  # the 500s received nothing
    position = webhooks.read(rt.engine)
    assert (position.delivered_through, position.lag, position.failures) == (5, 60, attempts)
    assert rt.settings.webhook_url not in position.last_error

    receiver.mode("ok")  # back, two hours later (the real clock)
    assert tick(rt).webhooks == 1
    broker.flush_all()
    actors.deliver_webhooks.fn()
    assert receiver.seqs() == list(range(1, 66))  # everything, once, in order
    assert all(entry["verified"] for entry in receiver.entries() if entry["mode"] == "ok")
    position = webhooks.read(rt.engine)
    assert (position.delivered_through, position.lag, position.failures, position.last_error) == (65, 0, 0, "")
    assert tick(rt).webhooks == 0


def test_metrics_show_the_lag_and_the_failures(make_runtime: Any, receiver: Receiver) -> None:
    rt = make_runtime(metrics_access="open")
    add_events(rt.engine, 4)
    deliver_pending(rt)
    add_events(rt.engine, 3)
    receiver.mode("fail")
    deliver_pending(rt)
    with TestClient(create_app(rt), base_url="https://rostersync.test") as client:
        text = client.get("/metrics").text
    assert "rostersync_webhook_lag_events 3.0" in text
    assert "rostersync_webhook_failures 1.0" in text
    assert "rostersync_webhook_last_success_timestamp_seconds" in text
    assert receiver.secret not in text and str(receiver.port) not in text


def test_a_lost_acknowledgement_sends_the_batch_again(make_runtime: Any, receiver: Receiver) -> None:
    """At least once: a batch received but not acknowledged comes again, same id, then the rest; no gap."""
    rt = make_runtime(retry_min_backoff_ms=1)
    add_events(rt.engine, 4)
    receiver.mode("ack-lost")
    assert deliver_pending(rt).stopped == "failed"
    receiver.mode("ok")
    assert deliver_pending(rt).events == 4
    assert receiver.seqs() == [1, 2, 3, 1, 2, 3, 4]
    assert [entry["id"] for entry in receiver.entries()] == ["rs_1_3", "rs_1_3", "rs_4_4"]
    seen = 0
    for batch in receiver.batches():
        seqs = [event["seq"] for event in batch]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] <= seen + 1  # in order, no gap
        seen = max(seen, seqs[-1])


def test_one_batch_is_in_flight_at_a_time_whoever_sends_it(make_runtime: Any, receiver: Receiver) -> None:
    """Three senders at once (PostgreSQL: three connections contending for the cursor row's lock) against a
    receiver that serves requests in parallel: it never sees two batches at once, nor one twice."""
    rt = make_runtime()
    add_events(rt.engine, 12)
    receiver.mode("slow")

    def sender() -> None:
        while webhooks.read(rt.engine).lag:
            deliver_pending(rt)

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert receiver.seqs() == list(range(1, 13))
    assert {entry["concurrent"] for entry in receiver.entries()} == {1}


def test_the_actor_retries_with_backoff_until_the_receiver_answers(make_runtime: Any, receiver: Receiver) -> None:
    rt = make_runtime(retry_min_backoff_ms=20, retry_max_backoff_ms=100)
    broker = brokers.install(brokers.make_broker(rt.settings))
    add_events(rt.engine, 4)
    receiver.mode("fail-first:2")
    brokers.enqueue(actors.deliver_webhooks)
    brokers.drain(broker, timeout_ms=60_000)
    assert [entry["mode"] for entry in receiver.entries()] == ["fail", "fail", "ok", "ok"]
    assert receiver.seqs() == [1, 2, 3, 4]
    assert webhooks.read(rt.engine).delivered_through == 4


def test_a_long_backlog_is_sent_over_several_runs(
    make_runtime: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run hands over after its share of batches; the actor sends itself again, in order, until caught up."""
    monkeypatch.setattr(services.webhooks, "MAX_BATCHES_PER_RUN", 2)
    rt = make_runtime()
    broker = brokers.install(brokers.make_broker(rt.settings))
    add_events(rt.engine, 10)
    assert deliver_pending(rt) == services.webhooks.Delivery(2, 6, "more")
    brokers.enqueue(actors.deliver_webhooks)
    brokers.drain(broker, timeout_ms=60_000)
    assert receiver.seqs() == list(range(1, 11))


def test_the_scheduler_sends_delivery_only_when_something_is_due(make_runtime: Any, receiver: Receiver) -> None:
    rt = make_runtime()
    broker = brokers.install(brokers.make_broker(rt.settings))
    assert tick(rt).webhooks == 0  # nothing written yet
    add_events(rt.engine, 2)
    report = tick(rt)
    assert report.webhooks == 1 and report.as_json()["webhook_batches"] == 1
    assert [message.actor_name for message in _queued(broker)] == ["deliver_webhooks"]
    broker.flush_all()
    # The embedded default (no broker of its own): `scheduler --once` delivers in its own process.
    assert run_due_here(rt).webhooks == 1
    assert receiver.seqs() == [1, 2]
    assert tick(rt).webhooks == 0


def _queued(broker: StubBroker) -> list[Any]:
    from dramatiq.message import Message

    return [Message.decode(raw) for raw in broker.queues[QUEUE].queue]


def test_replay_moves_the_position_back_within_what_is_kept(make_runtime: Any, receiver: Receiver) -> None:
    rt = make_runtime()
    add_events(rt.engine, 6)
    deliver_pending(rt)
    assert webhooks.replay_from(rt.engine, 4).delivered_through == 6
    assert webhooks.read(rt.engine).delivered_through == 3
    deliver_pending(rt)
    assert receiver.seqs() == [1, 2, 3, 4, 5, 6, 4, 5, 6]

    with pytest.raises(webhooks.ReplayRefused, match=r"seq 7 is beyond the head of the feed \(6\)"):
        webhooks.replay_from(rt.engine, 7)
    forget_through(rt.engine, 2)
    with pytest.raises(webhooks.ReplayRefused, match=r"older than the oldest event kept \(3\)"):
        webhooks.replay_from(rt.engine, 2)
    webhooks.replay_from(rt.engine, 3)
    assert webhooks.read(rt.engine).delivered_through == 2


def test_webhooks_are_off_without_both_settings(database_url: str) -> None:
    rt = build_runtime(
        Settings(database_url=database_url, pseudonym_key=secrets.token_urlsafe(48), token_keys=new_key()),
        run_migrations=False,
    )
    try:
        add_events(rt.engine, 1)
        assert deliver_pending(rt).stopped == "off"
        brokers.install(brokers.make_broker(rt.settings))
        report = tick(rt)
        assert report.webhooks is None and "webhook_batches" not in report.as_json()
    finally:
        brokers.shutdown()
        rt.engine.dispose()
