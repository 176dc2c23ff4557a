"""`rostersync emulate --provider microsoft` prints settings that really point the Microsoft connector at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from connectors.microsoft import link_tenant
from settings import Settings

ROSTERSYNC = str(Path(sys.executable).with_name("rostersync"))
NAMES = {
    "ROSTERSYNC_MICROSOFT_AUTHORITY_HOST",
    "ROSTERSYNC_GRAPH_ENDPOINT",
    "ROSTERSYNC_MICROSOFT_CLIENT_ID",
    "ROSTERSYNC_MICROSOFT_CLIENT_SECRET",
    "ROSTERSYNC_CA_BUNDLE",
}


def test_emulate_microsoft_prints_working_exports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | {"TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [ROSTERSYNC, "emulate", "--provider", "microsoft", "--port", "0", "--students", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        exports: dict[str, str] = {}
        while set(exports) != NAMES:
            line = process.stdout.readline()
            assert line, "the emulator exited before printing its settings"
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exports[name] = value
        tenants = ""
        while not tenants:
            line = process.stderr.readline()
            assert line, "the emulator exited before naming its tenants"
            if line.startswith("tenants: "):
                tenants = line.removeprefix("tenants: ").strip()
        settings = Settings(**{name.removeprefix("ROSTERSYNC_").lower(): value for name, value in exports.items()})
        grant = link_tenant(settings, tenants.split(", ")[0])
        assert grant.scopes == {"EduRoster.Read.All"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_link_org_with_a_malformed_tenant_id_blames_the_id_not_microsoft(tmp_path: Path) -> None:
    """Issue 18, item 28: `--org not-a-guid` went to Microsoft and came back as "the tenant has not admitted
    this app"; the id itself is wrong, and nothing needs asking."""
    from emulators.microsoft import MicrosoftEmulator
    from tests.clikit import env_for, one_line_error, run
    from tests.microsoft_fixtures import microsoft_env, microsoft_settings_for

    with MicrosoftEmulator(cert_dir=tmp_path, tenants=1) as emu:
        settings = microsoft_settings_for(emu, f"sqlite:///{tmp_path / 'cli.db'}")
        env = env_for(settings) | microsoft_env(settings)
        for bad in ("not-a-guid", "1234", "72f988bf-86f1-41af-91ab"):
            result = run("link", "org", "--provider", "microsoft", "--org", bad, env=env)
            one_line_error(result, "not a valid Entra tenant id", "GUID", "nothing was asked")
        assert emu.requests == []  # nothing was asked of Microsoft
