"""Careless and hostile input at the command line: one `error:` line and exit 2, the same on both databases,
nothing half-done; work the command waited for is reported with its outcome and exit code."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import create_engine, select, update

from emulators.google import GoogleEmulator
from settings import Settings
from store.models import Integration, LinkAttempt
from store.vault import TokenVault, new_key
from tests.clikit import ROSTERSYNC, env_for, one_line_error, run

HUGE_ID = "99999999999999999999"


def consent(emulator: GoogleEmulator, url: str, teacher_index: int = 0) -> str:
    session = requests.Session()
    session.trust_env = False
    emulator.set_consent_user(emulator.teacher_ids[teacher_index])
    location: str = session.get(url, allow_redirects=False, verify=str(emulator.ca_path)).headers["Location"]
    return location


def link_with_cli(emulator: GoogleEmulator, env: dict[str, str], teacher: str = "teacher-1") -> str:
    started = run("link", "start", "--provider", "google", "--teacher", teacher, env=env)
    assert started.returncode == 0, started.stderr
    return consent(emulator, started.stdout.strip())


# --- defect 3: user and provider text is printed literally ------------------------------------------
def test_markup_in_input_is_printed_literally(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    one_line_error(run("link", "start", "--provider", "[/x]", "--teacher", "t", env=env), "'[/x]'")
    started = run("link", "start", "--provider", "google", "--teacher", "t", env=env)
    state = parse_qs(urlsplit(started.stdout.strip()).query)["state"][0]
    refused = f"https://platform.example/integrations/google/callback?state={state}&error=%5B/x%5D"
    one_line_error(run("link", "complete", refused, env=env), "([/x])")


# --- defect 4: a broker that is down or misnamed ----------------------------------------------------
def test_unreachable_broker_fails_link_complete_before_the_state_is_spent(
    sqlite_settings: Settings, emulator: GoogleEmulator
) -> None:
    env = env_for(sqlite_settings)
    callback = link_with_cli(emulator, env)
    down = env | {"ROSTERSYNC_BROKER_URL": "redis://127.0.0.1:1/0"}
    one_line_error(run("link", "complete", callback, env=down), "message broker unreachable", "BROKER_URL")
    assert json.loads(run("status", "--json", env=env).stdout) == {"held": [], "integrations": []}  # nothing stored

    completed = run("link", "complete", callback, env=env)  # the state was not used up
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "integration 1"


def test_malformed_broker_url_is_one_line(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings) | {"ROSTERSYNC_BROKER_URL": "notaurl"}
    one_line_error(run("sync", "1", env=env), "ROSTERSYNC_BROKER_URL", "redis://")
    down = env_for(sqlite_settings) | {"ROSTERSYNC_BROKER_URL": "redis://127.0.0.1:1/0"}
    one_line_error(run("sync", "--all", env=down), "message broker unreachable")


# --- defect 5: input that used to reach the database as a traceback --------------------------------
def test_out_of_range_and_malformed_ids_are_one_line(settings: Settings) -> None:
    env = env_for(settings)
    for command in ("sync", "revoke"):
        one_line_error(run(command, HUGE_ID, env=env), "integration_id")
        one_line_error(run(command, "0", env=env), "integration_id")
    one_line_error(run("sync", "abc", env=env), "integration_id", "integer")
    one_line_error(run("sync", "1", "2", env=env), "unexpected extra argument")
    one_line_error(run("no-such-command", env=env), "no-such-command")


def test_overlong_and_control_character_ids_are_refused_before_the_database(settings: Settings) -> None:
    env = env_for(settings)
    start = ("link", "start", "--provider", "google")
    one_line_error(run(*start, "--teacher", "t" * 129, env=env), "--teacher", "128")
    one_line_error(run(*start, "--teacher", "t", "--tenant", "s" * 129, env=env), "--tenant", "128")
    one_line_error(run(*start, "--teacher", "t\x1b[2J", env=env), "--teacher", "control")
    assert run(*start, "--teacher", "t" * 128, "--tenant", "s" * 128, env=env).returncode == 0
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        assert connection.execute(select(LinkAttempt.linked_by)).scalars().all() == ["t" * 128]
    engine.dispose()


def test_invalid_utf8_argument_is_one_line(sqlite_settings: Settings) -> None:
    result = subprocess.run(
        [ROSTERSYNC.encode(), b"link", b"start", b"--provider", b"google", b"--teacher", b"\xff\xfe"],
        env=env_for(sqlite_settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    one_line_error(result, "not valid UTF-8")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROSTERSYNC_LEASE_SECONDS", "1" + "0" * 20),
        ("ROSTERSYNC_LINK_STATE_TTL_SECONDS", "1" + "0" * 20),
        ("ROSTERSYNC_SYNC_INTERVAL_SECONDS", "1" + "0" * 20),
        ("ROSTERSYNC_DEFAULT_TENANT", "s" * 129),
        ("ROSTERSYNC_RETRY_MAX_WAIT_SECONDS", "1" + "0" * 20),
        ("ROSTERSYNC_HTTP_CONNECT_TIMEOUT_SECONDS", "0"),  # no timeout is no limit
        ("ROSTERSYNC_MAX_PAGES", "0"),
    ],
)
def test_unbounded_settings_are_refused(sqlite_settings: Settings, variable: str, value: str) -> None:
    one_line_error(run("status", env=env_for(sqlite_settings) | {variable: value}), variable)


# --- defect 6: a queued sync that fails ---------------------------------------------------------------
def test_a_failed_queued_sync_is_exit_1_with_one_line_and_no_traceback(
    sqlite_settings: Settings, emulator: GoogleEmulator
) -> None:
    env = env_for(sqlite_settings) | {
        "ROSTERSYNC_MAX_RETRIES": "1",
        "ROSTERSYNC_RETRY_MIN_BACKOFF_MS": "10",
        "ROSTERSYNC_RETRY_MAX_BACKOFF_MS": "20",
    }
    assert run("link", "complete", link_with_cli(emulator, env), env=env).returncode == 0
    emulator.fail_next("/v1/courses", 503, count=2)  # both attempts (MAX_RETRIES=1)
    result = run("sync", "1", env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: integration 1: sync failed: the provider kept failing or could not be reached: retries exhausted, "
        "integration marked failed"
    ]
    # Past the retry cap the integration is failed (issue 10, part 5), with a reason in our own words ...
    status = run("status", env=env)
    assert "integration 1 is failed: sync gave up after 2 attempt(s)" in status.stderr
    one_line_error(run("sync", "1", env=env), "integration 1 is failed")
    # ... and linking it again resumes syncing.
    assert run("link", "complete", link_with_cli(emulator, env), env=env).returncode == 0
    ok = run("sync", "1", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "integration 1: synced" in ok.stderr


def test_a_revoked_integration_is_refused_by_sync(sqlite_settings: Settings, emulator: GoogleEmulator) -> None:
    env = env_for(sqlite_settings)
    assert run("link", "complete", link_with_cli(emulator, env), env=env).returncode == 0
    assert run("revoke", "1", env=env).returncode == 0
    one_line_error(run("sync", "1", env=env), "integration 1 is revoked", "link it again")


# --- defect 7: undecryptable tokens, one failure among many, key rotation ---------------------------
def test_sync_all_now_reports_each_and_carries_on_past_a_failed_one(
    sqlite_settings: Settings, emulator: GoogleEmulator
) -> None:
    env = env_for(sqlite_settings)
    for teacher, google_teacher in (("a", 0), ("b", 1), ("c", 2)):
        started = run("link", "start", "--provider", "google", "--teacher", teacher, env=env)
        assert (
            run("link", "complete", consent(emulator, started.stdout.strip(), google_teacher), env=env).returncode == 0
        )
    # Integration 1's token was sealed under a key that is no longer configured: it cannot be opened.
    engine = create_engine(sqlite_settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            update(Integration).where(Integration.id == 1).values(token_blob=TokenVault(new_key()).seal({"x": 1}))
        )
    engine.dispose()
    result = run("sync", "--all", "--now", env=env)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: integration 1: sync failed: the stored token cannot be decrypted with the configured keys: "
        "add the key that sealed it back to ROSTERSYNC_TOKEN_KEYS, then `rostersync resume 1` "
        "(re-link only if that key is lost)"
    ]
    assert "integration 2: synced" in result.stderr and "integration 3: synced" in result.stderr

    status = run("status", env=env)
    assert "integration 1 is failed: stored token cannot be decrypted" in status.stderr
    # never retried: a failed integration is no longer among those --all syncs
    again = run("sync", "--all", "--now", env=env)
    assert again.returncode == 0 and "integration 1" not in again.stderr
    one_line_error(run("sync", "1", env=env), "integration 1 is failed")


def test_an_undecryptable_token_is_mended_by_its_key_and_resume(
    sqlite_settings: Settings, emulator: GoogleEmulator
) -> None:
    """Issue 18, item 28: the advice was "re-link" (the teacher consents again); putting the key back and
    `resume` is the route, and it works."""
    env = env_for(sqlite_settings)
    assert run("link", "complete", link_with_cli(emulator, env), env=env).returncode == 0
    old = env["ROSTERSYNC_TOKEN_KEYS"]
    retired = env | {"ROSTERSYNC_TOKEN_KEYS": new_key()}  # the sealing key removed without `keys rotate`
    failed = run("sync", "1", "--now", env=retired)
    assert failed.returncode == 1 and "ROSTERSYNC_TOKEN_KEYS, then `rostersync resume 1`" in failed.stderr
    assert "`rostersync resume`" in run("status", env=retired).stderr
    one_line_error(run("sync", "1", env=retired), "integration 1 is failed", "rostersync resume 1")
    rotate = run("keys", "rotate", env=retired)
    assert "add the key that sealed it back to ROSTERSYNC_TOKEN_KEYS" in rotate.stderr

    mended = retired | {"ROSTERSYNC_TOKEN_KEYS": f"{retired['ROSTERSYNC_TOKEN_KEYS']},{old}"}
    assert run("resume", "1", env=mended).returncode == 0
    synced = run("sync", "1", "--now", env=mended)
    assert synced.returncode == 0 and "integration 1: synced" in synced.stderr
