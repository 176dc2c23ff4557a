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


def modules_after(statement: str, env: dict[str, str] | None = None) -> set[str]:
    """Every module (dotted names) a fresh interpreter holds after ``statement``."""
    probe = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    return set(result.stdout.split())


STATUS_NEVER_LOADS = ("sqlalchemy.orm", "sqlalchemy.dialects.postgresql", "cryptography", "alembic", "store.models")
"""What ``rostersync status`` does without (issue 22, item 5): it reads with Core (store.summaries), builds no token
vault or pseudonymiser, and finds the schema up to date by reading its version."""


def loaded_under(loaded: set[str], packages: tuple[str, ...]) -> set[str]:
    """The modules of ``loaded`` that are one of ``packages`` or inside one."""
    return {name for name in loaded if any(name == p or name.startswith(p + ".") for p in packages)}


def test_status_loads_no_provider_client_or_web_stack() -> None:
    loaded = imported_by("import cli.status")
    assert loaded & {"googleapiclient", "msal", "alembic", "fastapi", "uvicorn", "dramatiq", "rich"} == set()


def test_importing_status_loads_no_orm_postgresql_dialect_or_cryptography() -> None:
    assert loaded_under(modules_after("import cli.status"), STATUS_NEVER_LOADS) == set()


def test_a_status_run_on_sqlite_loads_no_orm_postgresql_dialect_or_cryptography(
    sqlite_settings: Settings,
) -> None:
    """The whole command on a migrated, empty SQLite database: nothing to draw (``--json``, or no integration and
    no hold: one line), so it loads no Rich either."""
    env = env_for(sqlite_settings)
    assert run("status", env=env).returncode == 0  # migrates the new file once (that one loads Alembic)
    command = "import contextlib\nimport cli.app\nwith contextlib.suppress(SystemExit):\n    cli.app.run()"
    shown = modules_after(f"sys.argv = ['rostersync', 'status']\n{command}", env)
    assert loaded_under(shown, (*STATUS_NEVER_LOADS, "rich")) == set()
    as_json = modules_after(f"sys.argv = ['rostersync', 'status', '--json']\n{command}", env)
    assert loaded_under(as_json, (*STATUS_NEVER_LOADS, "rich")) == set()


def plugin_switch_after_status(env: dict[str, str]) -> str:
    """``PYDANTIC_DISABLE_PLUGINS`` as a ``status`` run through the console entry point leaves it."""
    probe = (
        "import contextlib, os, sys\nsys.argv = ['rostersync', 'status', '--json']\nimport cli.app\n"
        "with contextlib.suppress(SystemExit):\n    cli.app.run()\n"
        "print(os.environ.get('PYDANTIC_DISABLE_PLUGINS'), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_the_entry_point_skips_pydantics_plugin_scan_unless_told_otherwise(sqlite_settings: Settings) -> None:
    """rostersync uses no pydantic plugin, so its entry point turns pydantic's scan of every installed
    distribution off (pydantic's documented variable); a value the user set is kept."""
    env = {k: v for k, v in env_for(sqlite_settings).items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    assert plugin_switch_after_status(env) == "1"
    assert plugin_switch_after_status(env | {"PYDANTIC_DISABLE_PLUGINS": "0"}) == "0"


def test_the_status_tables_are_the_models_own() -> None:
    """store.summaries names its tables and columns without the ORM: each name must be one of the schema's."""
    from store.models import Base
    from store.summaries import LIGHT_TABLES

    for light in LIGHT_TABLES:
        assert light.name in Base.metadata.tables, light.name
        assert {c.name for c in light.c} <= set(Base.metadata.tables[light.name].c.keys()), light.name


def test_the_command_lines_id_bound_is_the_stores() -> None:
    from cli.app import BIGGEST_ID
    from store.models import MAX_ID

    assert BIGGEST_ID == MAX_ID


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
    """One line that says what to do, and no empty table under it."""
    env = env_for(sqlite_settings)
    shown = run("status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("no integrations yet: link a teacher")
    assert len(shown.stdout.splitlines()) == 1 and "┏" not in shown.stdout, shown.stdout
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


def collector_probe(argv: list[str], env: dict[str, str], before: str = "") -> list[str]:
    """What the collector looked like while ``status`` ran (if it ran) and after the entry point returned: lines of
    ``<where> <enabled> <frozen objects>`` on stderr."""
    probe = (
        "import contextlib, gc, sys\n"
        f"{before}\n"
        f"sys.argv = {['rostersync', *argv]!r}\n"
        "import cli.app, cli.status\n"
        "shown = cli.status.print_status\n"
        "def print_status(*args):\n"
        "    print('command', gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)\n"
        "    shown(*args)\n"
        "cli.status.print_status = print_status\n"
        "with contextlib.suppress(SystemExit):\n    cli.app.run()\n"
        "print('after', gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith(("command ", "after "))]


def frozen(line: str) -> int:
    return int(line.split()[2])


def test_the_entry_point_pauses_the_collector_only_while_the_command_line_starts(sqlite_settings: Settings) -> None:
    """The start-up's objects are frozen once the command is imported, and the command runs with the collector on
    (a sync of a whole district, a worker for days); ``--help`` leaves it on too."""
    env = env_for(sqlite_settings)
    assert run("status", env=env).returncode == 0  # migrates the new file once
    during, after = collector_probe(["status", "--json"], env)
    assert during.startswith("command True ") and frozen(during) > 10_000
    assert after.startswith("after True ")
    (helped,) = collector_probe(["--help"], env)
    assert helped.startswith("after True ") and frozen(helped) > 0


def test_a_collector_turned_off_before_the_entry_point_stays_off_and_nothing_is_frozen(
    sqlite_settings: Settings,
) -> None:
    during, after = collector_probe(["status", "--json"], env_for(sqlite_settings), before="gc.disable()")
    assert (during, after) == ("command False 0", "after False 0")


def test_building_the_commands_in_process_leaves_the_collector_alone() -> None:
    """A test or a program that drives the command tree itself (``CliRunner``) keeps its collector as it was."""
    probe = (
        "import gc\nfrom typer.testing import CliRunner\nfrom cli.app import app\n"
        "shown = CliRunner().invoke(app, ['status', '--help'], prog_name='rostersync')\n"
        "assert shown.exit_code == 0, shown.output\nprint(gc.isenabled(), gc.get_freeze_count())"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["True", "0"]
