"""The rights, retention, audit and inventory commands as an admin runs them: real processes, stdout for
results alone, one `error:` line and exit 2 for bad input, no personal data on stderr or in the audit."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from emulators.google import GoogleEmulator
from settings import Settings
from store.runtime import build_runtime, set_runtime
from sync.cycle import run_sync
from tests.clikit import env_for, one_line_error, run
from tests.conftest import link_teacher


def test_rights_commands_end_to_end(emulator: GoogleEmulator, tmp_path: Path) -> None:
    from tests.conftest import settings_for

    settings: Settings = settings_for(emulator, f"sqlite:///{tmp_path / 'cli.db'}")
    rt = build_runtime(settings)
    set_runtime(rt)
    try:
        integration_id = link_teacher(rt, emulator, 0)
        run_sync(rt, integration_id)
    finally:
        set_runtime(None)
    tenant = settings.default_tenant
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    student = rt.pseudonymiser.pseudonym("google", tenant, emulator.student_ids_of(course)[0])
    rt.engine.dispose()
    env = env_for(settings)

    exported = run("export", "--integration", str(integration_id), env=env)
    assert exported.returncode == 0, exported.stderr
    payload = json.loads(exported.stdout)
    assert student in {p["pseudonym"] for p in payload["people"]}

    zip_path = tmp_path / "roster.zip"
    zipped = run(
        "export", "--integration", str(integration_id), "--format", "oneroster", "--out", str(zip_path), env=env
    )
    assert zipped.returncode == 0 and zipped.stdout == "", zipped.stderr
    assert "users.csv" in zipfile.ZipFile(io.BytesIO(zip_path.read_bytes())).namelist()

    person = json.loads(run("export", "--person", student, env=env).stdout)
    assert [r["role"] for r in person["records"]] == ["student"]

    erased = run("erase", student, "--json", env=env)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["integrations"] == [integration_id]
    listed = json.loads(run("suppressions", "list", "--json", env=env).stdout)
    assert [s["pseudonym"] for s in listed["suppressions"]] == [student]
    assert run("suppressions", "lift", student, env=env).returncode == 0

    marked = run("account", "mark-deleted", "teacher-0", env=env)
    assert marked.returncode == 0, marked.stderr
    purged = run("purge-expired", "--json", env=env)
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["deleted_accounts"] == 0  # six months are not over

    inventory = json.loads(run("inventory", "--json", env=env).stdout)
    assert [p["provider"] for p in inventory["providers"]] == ["clever", "google", "microsoft"]
    one = json.loads(run("inventory", str(integration_id), "--json", env=env).stdout)
    assert one["integration"] == integration_id and one["consent_basis"] == "school"
    assert run("inventory", str(integration_id), env=env).stdout.startswith(f"integration {integration_id} (google")

    events = json.loads(run("audit", "--integration", str(integration_id), "--json", env=env).stdout)["events"]
    actions = [e["action"] for e in events]
    for action in ("linked", "synced", "exported", "erased", "suppression_lifted", "account_deleted"):
        assert action in actions, action
    every = json.loads(run("audit", "--json", env=env).stdout)["events"]
    assert [e["action"] for e in every].count("purged_expired") == 1  # a run that touched nothing names no integration
    assert actions.count("exported") == 3 and actions.count("erased") == 1
    text_log = run("audit", env=env).stdout
    everything = json.dumps(events) + text_log + erased.stderr + purged.stderr
    assert not [s for s in emulator.personal_strings() if s in everything]


def test_rights_commands_refuse_bad_input_in_one_line(emulator: GoogleEmulator, tmp_path: Path) -> None:
    from tests.conftest import settings_for

    env = env_for(settings_for(emulator, f"sqlite:///{tmp_path / 'cli.db'}"))
    one_line_error(run("export", env=env), "--person PSEUDONYM or --integration ID")
    one_line_error(run("export", "--integration", "1", "--format", "oneroster", env=env), "--out FILE")
    one_line_error(run("export", "--integration", "7", env=env), "no integration with id 7")
    one_line_error(run("export", "--person", "a" * 64, env=env), "no person with that pseudonym")
    one_line_error(run("erase", "Jane Doe", env=env), "64 lowercase hex")
    one_line_error(run("erase", env=env), "PSEUDONYM or --integration ID")
    one_line_error(run("erase", "--integration", "0", env=env), "--integration")
    one_line_error(run("suppressions", "lift", "b" * 64, env=env), "not suppressed")
    one_line_error(run("audit", "--integration", "-3", env=env), "--integration")
    one_line_error(run("inventory", "42", env=env), "no integration with id 42")
    assert run("account", "mark-deleted", "teacher-9", env=env).returncode == 0
    one_line_error(run("account", "mark-deleted", "teacher-9", env=env), "already marked deleted")
    one_line_error(run("account", "mark-deleted", "x" * 129, env=env), "1 to 128 characters")


def test_an_export_that_cannot_be_written_is_refused_before_it_is_audited(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    from tests.conftest import settings_for

    env = env_for(settings_for(emulator, f"sqlite:///{tmp_path / 'cli.db'}"))
    one_line_error(
        run("export", "--integration", "1", "--out", str(tmp_path / "missing" / "x.json"), env=env), "cannot write"
    )
    target = tmp_path / "x.json"
    one_line_error(run("export", "--integration", "1", "--out", str(target), env=env), "no integration with id 1")
    assert not target.exists()
    assert json.loads(run("audit", "--json", env=env).stdout) == {"events": []}


def synced_env(emulator: GoogleEmulator, tmp_path: Path) -> tuple[dict[str, str], int]:
    """The environment of a database holding one linked and synced Google integration."""
    from tests.conftest import settings_for

    settings: Settings = settings_for(emulator, f"sqlite:///{tmp_path / 'cli.db'}")
    rt = build_runtime(settings)
    set_runtime(rt)
    try:
        integration_id = link_teacher(rt, emulator, 0)
        run_sync(rt, integration_id)
    finally:
        set_runtime(None)
        rt.engine.dispose()
    return env_for(settings), integration_id


def test_a_failed_export_leaves_the_file_it_would_replace_as_it_was(emulator: GoogleEmulator, tmp_path: Path) -> None:
    from tests.conftest import settings_for

    env = env_for(settings_for(emulator, f"sqlite:///{tmp_path / 'cli.db'}"))
    target = tmp_path / "exports" / "integration.json"
    target.parent.mkdir()
    target.write_bytes(b'{"an": "earlier export"}\n')
    target.chmod(0o644)
    one_line_error(run("export", "--integration", "1", "--out", str(target), env=env), "no integration with id 1")
    assert target.read_bytes() == b'{"an": "earlier export"}\n'
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["integration.json"]  # no partial file left behind
    one_line_error(run("export", "--integration", "1", "--out", str(target.parent), env=env), "is a directory")
    assert json.loads(run("audit", "--json", env=env).stdout) == {"events": []}  # nothing exported, nothing audited


def test_an_export_replaces_the_file_with_a_new_one_only_its_owner_can_read(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    env, integration_id = synced_env(emulator, tmp_path)
    target = tmp_path / "integration.json"
    target.write_bytes(b"an earlier export, left readable by everyone\n")
    target.chmod(0o644)
    done = run("export", "--integration", str(integration_id), "--out", str(target), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["integration"]["id"] == integration_id
    assert target.stat().st_mode & 0o777 == 0o600


def test_an_export_to_a_symlink_replaces_the_link_and_never_writes_through_it(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    env, integration_id = synced_env(emulator, tmp_path)
    elsewhere = tmp_path / "not-mine" / "precious.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"someone else's file\n")
    elsewhere.chmod(0o644)
    link = tmp_path / "exports" / "out.zip"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    done = run("export", "--integration", str(integration_id), "--format", "oneroster", "--out", str(link), env=env)
    assert done.returncode == 0, done.stderr
    assert elsewhere.read_bytes() == b"someone else's file\n" and elsewhere.stat().st_mode & 0o777 == 0o644
    assert not link.is_symlink() and link.stat().st_mode & 0o777 == 0o600
    assert "users.csv" in zipfile.ZipFile(link).namelist()
    assert [p.name for p in link.parent.iterdir()] == ["out.zip"]  # no partial file left behind
