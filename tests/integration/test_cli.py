"""The command line as an IT admin meets it: real processes, real exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

from emulators.google import GoogleEmulator
from settings import Settings
from tests.clikit import ROSTERSYNC, env_for, one_line_error, run


def test_link_start_prints_an_unwrapped_url_and_complete_syncs(
    sqlite_settings: Settings, emulator: GoogleEmulator
) -> None:
    import requests

    env = env_for(sqlite_settings)
    started = run("link", "start", "--provider", "google", "--teacher", "teacher-42", env=env)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert "\n" not in url and url.startswith(emulator.auth_uri + "?") and len(url) > 60  # longer than COLUMNS

    session = requests.Session()
    session.trust_env = False
    emulator.set_consent_user(emulator.teacher_ids[0])
    callback = session.get(url, allow_redirects=False, verify=str(emulator.ca_path)).headers["Location"]
    completed = run("link", "complete", callback, env=env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "integration 1"
    status = json.loads(run("status", "--json", env=env).stdout)
    [row] = status["integrations"]
    assert row["status"] == "active" and row["students"] > 0 and row["classes"] >= 2

    reused = run("link", "complete", callback, env=env)
    one_line_error(reused, "state already used")


def test_unknown_integration_is_exit_2(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    one_line_error(run("sync", "99", env=env), "no integration with id 99")
    one_line_error(run("revoke", "99", env=env), "no integration with id 99")


def test_malformed_callback_is_exit_2(sqlite_settings: Settings) -> None:
    one_line_error(run("link", "complete", "::nonsense::", env=env_for(sqlite_settings)), "malformed callback URL")


def test_unreachable_database_is_exit_2(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings) | {"ROSTERSYNC_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    one_line_error(run("status", env=env), "database unreachable: connection refused")


def test_a_missing_postgresql_database_is_named(sqlite_settings: Settings) -> None:
    """Issue 18, item 28: "database unreachable (OperationalError)" hid what the server said."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/rostersync_no_such_database"
    result = run("status", env=env_for(sqlite_settings) | {"ROSTERSYNC_DATABASE_URL": url})
    one_line_error(result, 'database "rostersync_no_such_database" does not exist', "ROSTERSYNC_DATABASE_URL")


def test_a_postgres_scheme_gets_a_hint(sqlite_settings: Settings) -> None:
    for url in ("postgres://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"):
        result = run("status", env=env_for(sqlite_settings) | {"ROSTERSYNC_DATABASE_URL": url})
        one_line_error(result, "ROSTERSYNC_DATABASE_URL", "postgresql+psycopg://")


def test_missing_keys_are_exit_2(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    del env["ROSTERSYNC_TOKEN_KEYS"]
    one_line_error(run("status", env=env), "ROSTERSYNC_TOKEN_KEYS")


def test_emulator_port_in_use_is_exit_2(sqlite_settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(run("emulate", "--port", str(port), env=env_for(sqlite_settings)), f"127.0.0.1:{port}")


def test_demo_json_tells_the_final_state(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | {"TMPDIR": str(scratch)}
    result = subprocess.run(
        [ROSTERSYNC, "demo", "--json", "--students", "30"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    rows = payload["integrations"]
    assert [(row["provider"], row["status"]) for row in rows] == [
        ("google", "active"),
        ("google", "revoked"),
        ("google", "revoked"),
        ("clever", "revoked"),  # the district that disconnected
        ("clever", "active"),  # the other district
        ("clever", "active"),  # the Library teacher
        ("microsoft", "active"),  # the tenant link
        ("microsoft", "revoked"),  # the teacher whose tenant withdrew consent
        ("microsoft", "active"),  # the teacher of the linked school
    ]
    assert set(rows[0]) == {"id", "provider", "status", "status_reason", "classes", "teachers", "students"}
    assert rows[0]["students"] > 0 and rows[0]["classes"] >= 2 and rows[0]["teachers"] >= 1
    assert all(row[k] == 0 for row in rows[1:4] for k in ("classes", "teachers", "students"))
    assert all(row["students"] > 0 and row["classes"] > 0 for row in rows[4:7])
    assert all(row["students"] > 0 and row["classes"] > 0 for row in (rows[6], rows[8]))
    assert all(rows[7][k] == 0 for k in ("classes", "teachers", "students"))
    assert "throwaway keys" in result.stderr
    assert "`rostersync demo --console`" in result.stderr  # how to open the admin console on this data
    # The story is told in its own words: no log record (time, level, logger) among them.
    assert not re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ (DEBUG|INFO|WARNING|ERROR) ", result.stderr, re.M), result.stderr
    assert list(tmp_path.iterdir()) == [scratch]  # the demo writes nothing where it runs ...
    assert list(scratch.iterdir()) == []  # ... and removes its throwaway database, CA and keys
