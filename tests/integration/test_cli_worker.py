"""`rostersync worker` hands every option to Dramatiq; `worker`, `web` and `scheduler` refuse bad set-ups in one
line, exit 2, before they say they are ready (issue 18, item 28)."""

from __future__ import annotations

import socket
import subprocess
import uuid

from settings import Settings
from tests.clikit import ROSTERSYNC, env_for, one_line_error, run

REDIS_URL = "redis://127.0.0.1:6379/0"
MISSING_DB = "rostersync_no_such_database"


def missing_database(settings: Settings) -> dict[str, str]:
    return env_for(settings) | {
        "ROSTERSYNC_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{MISSING_DB}",
        "ROSTERSYNC_BROKER_URL": REDIS_URL,
        "ROSTERSYNC_BROKER_NAMESPACE": f"rs-startup-{uuid.uuid4().hex[:10]}",  # never another test's queue
        "ROSTERSYNC_WORKER_METRICS_PORT": "0",
    }


def test_worker_takes_dramatiq_options_and_needs_a_broker(sqlite_settings: Settings) -> None:
    # Typer used to reject --processes; now it reaches the broker check (the fleet test runs real workers).
    result = run("worker", "--processes", "2", "--threads", "8", env=env_for(sqlite_settings))
    one_line_error(result, "ROSTERSYNC_BROKER_URL is not set")


def test_a_worker_on_a_missing_database_stops_before_it_is_ready(sqlite_settings: Settings) -> None:
    """It used to say "ready for action", then fail every message it took with a 60-line traceback."""
    result = subprocess.run(
        [ROSTERSYNC, "worker", "--processes", "1", "--threads", "1"],
        env=missing_database(sqlite_settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    one_line_error(result, f'database "{MISSING_DB}" does not exist', "ROSTERSYNC_DATABASE_URL")
    assert "ready" not in result.stdout + result.stderr


def test_scheduler_and_web_on_a_missing_database_say_which(sqlite_settings: Settings) -> None:
    env = missing_database(sqlite_settings)
    for command in (("scheduler",), ("web", "--port", "1")):
        one_line_error(run(*command, env=env), f'database "{MISSING_DB}" does not exist')


def test_scheduler_with_an_unreachable_broker_is_one_line(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings) | {"ROSTERSYNC_BROKER_URL": "redis://127.0.0.1:1/0"}
    one_line_error(run("scheduler", "--once", env=env), "message broker unreachable")


def test_web_port_out_of_range_is_one_line(sqlite_settings: Settings) -> None:
    one_line_error(run("web", "--port", "70000", env=env_for(sqlite_settings)), "--port")


def test_web_on_a_busy_port_is_one_line_and_exit_2(sqlite_settings: Settings) -> None:
    """uvicorn used to exit 3 with its own log text."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("web", "--host", "127.0.0.1", "--port", str(port), env=env_for(sqlite_settings))
    one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")
