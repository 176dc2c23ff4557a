"""Limits everywhere (issue 10, part 5): no provider can hold a worker by stalling or by paging forever,
and every actor is bounded in time and in retries. Nothing here asserts on time: a stalled emulator
holds its answer until the test ends, so only a timeout can have ended the call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq.middleware import Retries

import connectors.clever
import connectors.microsoft
from connectors.base import TransientError
from emulators.core import RequestRecord
from settings import get_settings
from store import integrations
from sync.cycle import run_sync
from tests.helpers import classes, enrollments
from tests.provider_worlds import PROVIDERS, World, opened
from tests.provider_worlds import world_fixture as world_fixture  # the parametrized fixture
from worker import actors
from worker import broker as brokers
from worker.retry_policy import RetryPolicy


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: a stalled emulator thread holds its answer until then."""
    event = threading.Event()
    yield event
    event.set()


def stall(world: World, path_part: str, release: threading.Event) -> None:
    """Every request whose path contains ``path_part`` waits (up to a minute) for the test to end."""

    def hook(record: RequestRecord) -> None:
        if path_part in record.path:
            release.wait(60)

    world.emulator.add_hook(hook)


@pytest.mark.parametrize("what", ["data", "identity"])
def test_a_stalled_provider_is_a_transient_error_within_the_read_timeout(
    world: World, what: str, release: threading.Event
) -> None:
    """``data``: the class listing stalls. ``identity``: the token side stalls (for Microsoft, MSAL's own
    OpenID discovery, sent through the session we hand MSAL, which drops its own ``timeout=``)."""
    rt = world.runtime(http_timeout_seconds=0.5, http_connect_timeout_seconds=0.5)
    integration_id = world.link(rt)
    identity = {
        "google": "/token",  # the refresh a sync starts with once the access token is stale
        "clever": "/oauth/tokens",  # the district token, fetched again after a 401
        "microsoft": "/.well-known/openid-configuration",
    }[world.provider]
    if what == "identity":
        if world.provider == "google":
            world.emulator.expire_access_tokens()  # type: ignore[attr-defined]
        if world.provider == "clever":
            world.emulator.rotate_district_token(world.emulator.district_ids[0])  # type: ignore[attr-defined]
    stall(world, world.data_path if what == "data" else identity, release)
    with pytest.raises(TransientError) as raised:
        run_sync(rt, integration_id)
    # ReadTimeout (requests), TimeoutError (httplib2), or google-auth's TransportError around a ReadTimeout
    assert "Timeout" in str(raised.value) or "unreachable" in str(raised.value)
    assert integrations.load(rt.engine, integration_id).status == "active"  # one timeout ends nothing


@pytest.fixture(params=PROVIDERS, name="paged")
def paged_world(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """A world whose class listing takes two pages or more: Google's emulator serves one course a page,
    Clever and Graph are asked for two records a page."""
    monkeypatch.setattr(connectors.clever, "PAGE_LIMIT", 2)
    monkeypatch.setattr(connectors.microsoft, "PAGE_SIZE", 2)
    options = {"courses_page_cap": 1} if request.param == "google" else {}
    with opened(str(request.param), tmp_path, pg_url, **options) as one:
        yield one


def test_a_listing_past_max_pages_is_a_provider_data_error_and_removes_nothing(
    paged: World, caplog: pytest.LogCaptureFixture
) -> None:
    rt = paged.runtime()
    integration_id = paged.link(rt)
    assert run_sync(rt, integration_id).outcome == "ok"  # the default bound lets a real listing through
    kept = (len(classes(rt.engine, integration_id)), len(enrollments(rt.engine, integration_id)))
    assert kept[0] >= 3

    with rt.engine.begin() as connection:  # no change-feed cursor: the next sync is a full listing, the one under test
        integrations.store_cursor(connection, integration_id, None)
    bounded = paged.runtime(max_pages=1)
    with caplog.at_level(logging.WARNING, logger="rostersync.sync"):
        assert run_sync(bounded, integration_id).outcome == "provider_data"
    assert "more than 1 pages (ROSTERSYNC_MAX_PAGES); listing stopped" in caplog.text
    # a listing not received in full is never read as "the rest left"
    assert (len(classes(rt.engine, integration_id)), len(enrollments(rt.engine, integration_id))) == kept


def test_every_actor_has_a_time_limit_and_a_retry_cap() -> None:
    settings = get_settings()  # what the actors were declared with
    for actor in actors.ALL:
        assert 0 < actor.options["time_limit"] <= settings.sync_time_limit_seconds * 1000, actor.actor_name
    for actor in actors.ALL:
        if actor is actors.sync_integration:
            continue
        assert 0 <= actor.options["max_retries"] <= 3, actor.actor_name
    # The sync actor takes its cap from the broker's Retries middleware: the number the policy counts with.
    broker = brokers.make_broker(settings)
    [retries] = [m for m in broker.middleware if isinstance(m, Retries)]
    assert "max_retries" not in actors.sync_integration.options
    assert retries.max_retries == settings.max_retries == RetryPolicy.from_settings(settings).max_attempts - 1


@pytest.mark.parametrize("world", ["google"], indirect=True)  # the actor is provider-neutral
def test_a_sync_whose_retries_ran_out_outside_the_policy_ends_failed(world: World) -> None:
    """What the Retries middleware hands ``on_retry_exhausted`` (a time limit, an unexpected error) ends ``failed``."""
    rt = world.runtime()
    integration_id = world.link(rt)
    assert actors.sync_integration.options["on_retry_exhausted"] == "sync_retries_exhausted"
    actors.sync_retries_exhausted({"args": [integration_id]}, {"retries": 5, "max_retries": 5})
    [summary] = [s for s in integrations.summaries(rt.engine) if s.id == integration_id]
    assert summary.status == "failed" and summary.status_reason == actors.EXHAUSTED_REASON
    assert "SYNC_TIME_LIMIT_SECONDS" in summary.status_reason
    actors.sync_retries_exhausted({"args": [integration_id + 1000]}, {})  # erased meanwhile: nothing to mark
