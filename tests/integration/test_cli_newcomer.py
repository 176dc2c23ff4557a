"""The command line as a newcomer meets it (issue 21, item 4; issue 22, item 5): a version, help in plain
words, provider names in any case, and a start that imports only what the command needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from settings import Settings
from tests.clikit import ROSTERSYNC, env_for, one_line_error, run

HEAVY = ("googleapiclient", "msal", "alembic", "fastapi", "uvicorn", "starlette")
"""What `rostersync --help` must not pay for: the provider clients, the migrations, the web stack."""


def imported_by(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after ``statement``."""
    probe = f"import sys\n{statement}\nprint(' '.join(sorted({{name.split('.')[0] for name in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(result.stdout.split())


def test_importing_the_command_line_loads_no_provider_client_migration_or_web_stack() -> None:
    assert imported_by("import cli.app") & set(HEAVY) == set()


def test_the_help_listing_loads_no_command_module() -> None:
    """``rostersync --help`` lists every command from the registry's one-line texts, without importing them."""
    loaded = imported_by(
        "import contextlib, sys\nsys.argv = ['rostersync', '--help']\nimport cli.app\n"
        "with contextlib.suppress(SystemExit):\n    cli.app.run()"
    )
    assert loaded & {*HEAVY, "sqlalchemy", "dramatiq", "pydantic_settings"} == set()


def test_status_loads_no_provider_client_or_web_stack() -> None:
    loaded = imported_by("import cli.runs")
    assert loaded & {"googleapiclient", "msal", "alembic", "fastapi", "uvicorn"} == set()


def test_version() -> None:
    from importlib.metadata import version

    result = subprocess.run([ROSTERSYNC, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"rostersync {version('rostersync')}\n"


def every_help() -> dict[str, str]:
    """The help of the program and of every command and subcommand, on a narrow terminal (60 columns).

    In this process (two dozen child processes take minutes on a busy machine): the command tree ``run`` uses."""
    from typer.testing import CliRunner

    from cli.app import COMMANDS, app, load

    paths: list[tuple[str, ...]] = [()]
    for entry in COMMANDS:
        command = load(entry)
        paths.append((entry.name,))
        paths.extend((entry.name, sub) for sub in getattr(command, "commands", {}))
    helps = {}
    for path in paths:
        shown = CliRunner().invoke(app, [*path, "--help"], prog_name="rostersync", terminal_width=60)
        assert shown.exit_code == 0, (path, shown.output)
        helps[" ".join(path) or "rostersync"] = shown.output
    return helps


def test_help_is_in_plain_words() -> None:
    """No document the repository lacks, no markup, no type tags, no privacy-promise numbers, no wrapped ids."""
    for where, text in every_help().items():
        assert "DESIGN.md" not in text and "issue" not in text.lower(), where
        assert "``" not in text and "`" not in text, where
        assert not re.search(r"<(bool|str|int|int range|path)>", text), (where, text)
        assert not re.search(r"\bP\d+\b", text), where
        assert "922337203685477580" not in text or "9223372036854775807" in text, where


def test_the_registry_one_liners_are_the_commands_own() -> None:
    """The listing shows the registry's texts; each is the first paragraph of the command's own help."""
    from cli.app import COMMANDS, first_paragraph, load

    for entry in COMMANDS:
        assert entry.summary == first_paragraph(load(entry).help or ""), entry.name


def test_provider_names_are_case_blind(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    started = run("link", "start", "--provider", "Google", "--teacher", "teacher-42", env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("https://")


def test_an_unknown_provider_lists_the_supported_ones(sqlite_settings: Settings) -> None:
    from providers.registry import SUPPORTED

    result = run("link", "start", "--provider", "Moodle", "--teacher", "teacher-42", env=env_for(sqlite_settings))
    one_line_error(result, "Moodle", *SUPPORTED)
    assert "not supported yet" not in result.stderr


def test_an_empty_status_says_so(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    shown = run("status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "no integrations" in (shown.stdout + shown.stderr).lower()
    assert json.loads(run("status", "--json", env=env).stdout)["integrations"] == []


def test_alembic_set_up_lines_stay_out_of_a_worker_log(sqlite_settings: Settings, tmp_path: Path) -> None:
    """A worker logs at INFO (Dramatiq's set-up); its first message migrates, and Alembic's "Context impl
    SQLiteImpl." and "Will assume non-transactional DDL." would open every worker's log. A migration that
    really runs is still said."""
    env = env_for(sqlite_settings) | {"ROSTERSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    probe = (
        "import logging, sys\nlogging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from settings import Settings\nfrom store.runtime import build_runtime\nbuild_runtime(Settings())"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade" in result.stderr
    for set_up in ("Context impl", "Will assume", "setup plugin"):
        assert set_up not in result.stderr, result.stderr


def test_a_schema_at_its_newest_revision_is_not_migrated_again(sqlite_settings: Settings, tmp_path: Path) -> None:
    """Every command that opens the database migrates it; one already up to date is told by reading its version
    (Alembic, about 0.4 s to import, is loaded only when there is something to do). A schema behind is still
    brought up to date (the fresh file of the first process)."""
    env = env_for(sqlite_settings) | {"ROSTERSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'twice.db'}"}
    probe = (
        "import sys\nfrom settings import Settings\nfrom store.runtime import build_runtime\n"
        "from store import integrations\nrt = build_runtime(Settings())\n"
        "assert integrations.summaries(rt.engine) == []\nprint('alembic' in sys.modules)"
    )
    for expected in ("True", "False"):  # the first process migrates the new file, the second finds it done
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
