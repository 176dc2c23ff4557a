"""`rostersync worker` hands every option to Dramatiq; `web` and `scheduler` refuse bad set-ups in one line."""

from __future__ import annotations

from settings import Settings
from tests.test_cli import env_for, one_line_error, run


def test_worker_takes_dramatiq_options_and_needs_a_broker(sqlite_settings: Settings) -> None:
    # Typer used to reject --processes; now it reaches the broker check (the fleet test runs real workers).
    result = run("worker", "--processes", "2", "--threads", "8", env=env_for(sqlite_settings))
    one_line_error(result, "ROSTERSYNC_BROKER_URL is not set")


def test_scheduler_with_an_unreachable_broker_is_one_line(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings) | {"ROSTERSYNC_BROKER_URL": "redis://127.0.0.1:1/0"}
    one_line_error(run("scheduler", "--once", env=env), "message broker unreachable")


def test_web_port_out_of_range_is_one_line(sqlite_settings: Settings) -> None:
    one_line_error(run("web", "--port", "70000", env=env_for(sqlite_settings)), "--port")
