"""The command line run as a person runs it: the installed ``rostersync`` in a child process, its
environment built from test settings, and the one-line error every failure must be.

Why a module of its own: a dozen test files (the CLI's, the web app's served tests, the benches, the
fault matrix) drive the real command; they used to import these from ``tests/integration/test_cli.py``,
a test module, so importing a helper collected that module's tests into the importer's namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from settings import Settings

ROSTERSYNC = str(Path(sys.executable).with_name("rostersync"))


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
    assert settings.pseudonym_key is not None and settings.token_keys is not None
    env |= {
        "ROSTERSYNC_DATABASE_URL": settings.database_url,
        "ROSTERSYNC_PSEUDONYM_KEY": settings.pseudonym_key.get_secret_value(),
        "ROSTERSYNC_TOKEN_KEYS": settings.token_keys.get_secret_value(),
        "ROSTERSYNC_GOOGLE_CLIENT_ID": settings.google.client_id,
        "ROSTERSYNC_GOOGLE_CLIENT_SECRET": settings.google.client_secret.get_secret_value(),
        "ROSTERSYNC_GOOGLE_AUTH_URI": settings.google.auth_uri,
        "ROSTERSYNC_GOOGLE_TOKEN_URI": settings.google.token_uri,
        "ROSTERSYNC_GOOGLE_REVOKE_URI": settings.google.revoke_uri,
        "ROSTERSYNC_GOOGLE_API_ENDPOINT": settings.google.api_endpoint,
        "ROSTERSYNC_GOOGLE_REDIRECT_URI": settings.google.redirect_uri,
        "ROSTERSYNC_CA_BUNDLE": str(settings.ca_bundle),
        "COLUMNS": "60",
    }
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROSTERSYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def bench_json(pg_url: str, *arguments: str) -> tuple[dict[str, Any], str]:
    """``rostersync bench ARGUMENTS --json`` on PostgreSQL with no other ROSTERSYNC_ setting: its one object and
    its progress (stderr).

    Fails with the command's stderr when it does not exit 0; stdout must hold the one object and nothing else.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
    done = subprocess.run(
        [ROSTERSYNC, "bench", *arguments, "--json"],
        env=env | {"ROSTERSYNC_DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report, done.stderr


@contextmanager
def emulated(provider: str, names: set[str], tmp_path: Path) -> Iterator[tuple[dict[str, str], subprocess.Popen[str]]]:
    """``rostersync emulate --provider PROVIDER`` running in a child with no ROSTERSYNC_ setting: the exports it
    printed (until every one of ``names`` is there) and the process, whose stderr is piped for what it says
    after them; it is stopped on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | {"TMPDIR": str(tmp_path)}
    command = [ROSTERSYNC, "emulate", "--provider", provider, "--port", "0", "--students", "4"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        exports: dict[str, str] = {}
        while set(exports) != names:
            line = process.stdout.readline()
            assert line, "the emulator exited before printing its settings"
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exports[name] = value
        yield exports, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def settings_from(exports: dict[str, str]) -> Settings:
    """The settings a user gets by pasting the printed exports into their shell."""
    return Settings(**{name.removeprefix("ROSTERSYNC_").lower(): value for name, value in exports.items()})
