"""Token keys: a token no configured key opens fails its integration once (never retried, told to the admin),
and `keys rotate` re-seals every stored secret so that an old key can be retired without breaking a link."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from dramatiq.brokers.stub import StubBroker

from connectors.google import http_session
from devtools.demo import consent_headlessly
from emulators.google import GoogleEmulator
from services.linking import complete_link, start_link
from settings import Settings
from store import audit, integrations, runs
from store.runtime import Runtime, build_runtime, set_runtime
from store.secrets import reseal_all
from store.vault import new_key
from sync.cycle import UNREADABLE_GRANT_REASON, run_sync
from tests.clikit import env_for, run
from tests.conftest import link_teacher, settings_for
from worker import broker as brokers
from worker.actors import sync_integration

MakeRuntime = Callable[[str], Runtime]


@pytest.fixture
def old_key() -> str:
    return new_key()


@pytest.fixture
def make_runtime(emulator: GoogleEmulator, database_url: str) -> Iterator[MakeRuntime]:
    """Runtimes on one database and one pseudonym key, differing only in their token keys."""
    made: list[Runtime] = []
    pseudonym_key = secrets.token_urlsafe(48)

    def make(token_keys: str) -> Runtime:
        rt = build_runtime(settings_for(emulator, database_url, token_keys=token_keys, pseudonym_key=pseudonym_key))
        made.append(rt)
        set_runtime(rt)
        return rt

    yield make
    set_runtime(None)
    for rt in made:
        rt.engine.dispose()


def test_rotate_then_retire_the_old_key(make_runtime: MakeRuntime, emulator: GoogleEmulator, old_key: str) -> None:
    before = make_runtime(old_key)
    integration_id = link_teacher(before, emulator, 0)
    emulator.set_consent_user(emulator.teacher_ids[1])
    in_flight = start_link(before, provider_name="google", teacher="teacher-later")

    fresh = new_key()
    rotating = make_runtime(f"{fresh},{old_key}")
    report = reseal_all(rotating.engine, rotating.vault)
    assert (report.tokens, report.link_states, report.unreadable_integrations) == (1, 1, [])

    after = make_runtime(fresh)  # the old key is gone from the configuration
    assert run_sync(after, integration_id).outcome == "ok"
    with http_session(after.settings) as browser:
        assert complete_link(after, consent_headlessly(browser, in_flight)) != integration_id


def test_a_token_no_key_opens_fails_the_integration_once_and_is_not_retried(
    make_runtime: MakeRuntime, emulator: GoogleEmulator, old_key: str
) -> None:
    linked = make_runtime(old_key)
    integration_id = link_teacher(linked, emulator, 0)
    assert run_sync(linked, integration_id).outcome == "ok"
    [synced] = integrations.summaries(linked.engine)
    rt = make_runtime(new_key())  # the key that sealed the token was retired without `keys rotate`
    broker = brokers.make_broker(rt.settings)
    assert isinstance(broker, StubBroker)
    brokers.install(broker)
    try:
        sync_integration.send(integration_id)
        brokers.drain(broker)
    finally:
        brokers.shutdown()
    assert broker.dead_letters == []  # ended cleanly: not retried, not dead-lettered
    assert runs.run_count(rt.engine) == 2  # the good sync, then the one failed attempt
    state = integrations.load(rt.engine, integration_id)
    assert state.status == "failed"
    [summary] = integrations.summaries(rt.engine)
    assert summary.status_reason == UNREADABLE_GRANT_REASON and "rostersync resume" in summary.status_reason
    assert summary.counts == synced.counts and synced.counts.students > 0  # kept as it was, not purged
    assert "purged" not in audit.actions(rt.engine, integration_id)
    assert integrations.syncable_ids(rt.engine) == []

    # re-linking makes it active again
    assert link_teacher(rt, emulator, 0) == integration_id
    assert integrations.load(rt.engine, integration_id).status == "active"
    assert run_sync(rt, integration_id).outcome == "ok"


def test_keys_rotate_command(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    started = run("link", "start", "--provider", "google", "--teacher", "t", env=env)
    assert started.returncode == 0
    old = env["ROSTERSYNC_TOKEN_KEYS"]
    rotated = run("keys", "rotate", env=env | {"ROSTERSYNC_TOKEN_KEYS": f"{new_key()},{old}"})
    assert rotated.returncode == 0, rotated.stderr
    assert "re-sealed 0 token set(s) and 1 consent(s) in flight under the first key" in rotated.stderr
