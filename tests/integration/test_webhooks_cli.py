"""``rostersync webhooks status`` and ``replay``, and the webhook settings refused at start-up: the installed
command in a child process, on a SQLite file it shares with the test."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.webhooks import deliver_pending
from settings import Settings
from store import webhooks
from store.runtime import Runtime, build_runtime
from store.vault import new_key
from tests.clikit import one_line_error, run
from tests.webhookkit import Receiver, add_events, forget_through, new_secret


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    folder = tmp_path / "receiver"
    folder.mkdir()
    started = Receiver(folder).start()
    yield started
    started.stop()


@pytest.fixture
def env(tmp_path: Path, receiver: Receiver) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
    return values | {
        "ROSTERSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "ROSTERSYNC_PSEUDONYM_KEY": secrets.token_urlsafe(48),
        "ROSTERSYNC_TOKEN_KEYS": new_key(),
        "ROSTERSYNC_CA_BUNDLE": str(receiver.ca_path),
        "ROSTERSYNC_WEBHOOK_URL": receiver.url + "?token=receiver-own-token",
        "ROSTERSYNC_WEBHOOK_SECRET": receiver.secret,
        "ROSTERSYNC_WEBHOOK_BATCH_SIZE": "2",
        "COLUMNS": "200",
    }


@pytest.fixture
def rt(env: dict[str, str]) -> Iterator[Runtime]:
    """The same database as the commands, migrated by this process first."""
    settings = Settings(
        database_url=env["ROSTERSYNC_DATABASE_URL"],
        pseudonym_key=env["ROSTERSYNC_PSEUDONYM_KEY"],
        token_keys=env["ROSTERSYNC_TOKEN_KEYS"],
        ca_bundle=env["ROSTERSYNC_CA_BUNDLE"],
        webhook_url=env["ROSTERSYNC_WEBHOOK_URL"],
        webhook_secret=env["ROSTERSYNC_WEBHOOK_SECRET"],
        webhook_batch_size=2,
    )
    built = build_runtime(settings)
    yield built
    built.engine.dispose()


def test_status_shows_position_head_lag_and_the_last_error_without_secrets(
    rt: Runtime, env: dict[str, str], receiver: Receiver
) -> None:
    add_events(rt.engine, 5)
    deliver_pending(rt)
    add_events(rt.engine, 3)
    receiver.stop()
    assert deliver_pending(rt).failed

    shown = run("webhooks", "status", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["receiver"] == f"https://127.0.0.1:{receiver.port}"  # no path, no query: it may hold a token
    assert (status["delivered_through"], status["head"], status["lag"], status["failures"]) == (5, 8, 3, 1)
    assert status["last_error"] == "could not connect to WEBHOOK_URL"
    assert status["last_attempt_at"].endswith("+00:00") and status["last_success_at"].endswith("+00:00")

    plain = run("webhooks", "status", env=env)
    assert plain.returncode == 0, plain.stderr
    assert "delivered through: 5\nhead: 8\nlag: 3 event(s)\nfailures: 1 in a row\n" in plain.stdout
    assert "last error: could not connect to WEBHOOK_URL" in plain.stdout
    for text in (shown.stdout, shown.stderr, plain.stdout, plain.stderr):
        assert receiver.secret not in text and "receiver-own-token" not in text and "/hooks" not in text


def test_replay_moves_back_and_refuses_what_it_cannot_send(
    rt: Runtime, env: dict[str, str], receiver: Receiver
) -> None:
    add_events(rt.engine, 6)
    deliver_pending(rt)
    forget_through(rt.engine, 2)

    moved = run("webhooks", "replay", "--from", "4", env=env)
    assert moved.returncode == 0, moved.stderr
    assert "delivery position moved from 6 to 3" in moved.stderr
    assert webhooks.read(rt.engine).delivered_through == 3
    deliver_pending(rt)
    assert receiver.seqs() == [1, 2, 3, 4, 5, 6, 4, 5, 6]

    one_line_error(run("webhooks", "replay", "--from", "7", env=env), "seq 7 is beyond the head of the feed (6)")
    one_line_error(
        run("webhooks", "replay", "--from", "2", env=env), "older than the oldest event kept (3)", "new snapshot"
    )
    assert webhooks.read(rt.engine).delivered_through == 6  # a refusal moves nothing


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("ROSTERSYNC_WEBHOOK_SECRET", "not-a-whsec-secret-at-all-but-long", "must start with whsec_"),
        ("ROSTERSYNC_WEBHOOK_SECRET", "whsec_not*base64*at*all*but*long*enough", "standard base64"),
        ("ROSTERSYNC_WEBHOOK_SECRET", "whsec_c2hvcnQ=", "24 to 64 random bytes"),
        ("ROSTERSYNC_WEBHOOK_SECRET", "", "is required with ROSTERSYNC_WEBHOOK_URL"),
        ("ROSTERSYNC_WEBHOOK_URL", "http://127.0.0.1:9/hooks", "must be an https URL"),
    ],
)
def test_a_bad_webhook_setting_stops_start_up_with_one_line(
    env: dict[str, str], name: str, value: str, words: str
) -> None:
    result = run("webhooks", "status", env=env | {name: value})
    one_line_error(result, name, words)
    assert not value or value not in result.stderr, "the value is never echoed"


def test_the_scheduler_refuses_a_bad_secret_at_start_up(env: dict[str, str]) -> None:
    one_line_error(run("scheduler", "--once", env=env | {"ROSTERSYNC_WEBHOOK_SECRET": "whsec_"}), "WEBHOOK_SECRET")


def test_a_secret_without_a_url_is_refused() -> None:
    secret = new_secret()
    with pytest.raises(ValueError, match="ROSTERSYNC_WEBHOOK_URL is not: set both") as refused:
        Settings(webhook_secret=secret)
    assert secret not in str(refused.value)
