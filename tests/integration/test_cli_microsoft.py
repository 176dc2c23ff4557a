"""`rostersync emulate --provider microsoft` prints settings that really point the Microsoft connector at it."""

from __future__ import annotations

from pathlib import Path

from connectors.microsoft import link_tenant
from tests.clikit import emulated, settings_from

NAMES = {
    "ROSTERSYNC_MICROSOFT_AUTHORITY_HOST",
    "ROSTERSYNC_GRAPH_ENDPOINT",
    "ROSTERSYNC_MICROSOFT_CLIENT_ID",
    "ROSTERSYNC_MICROSOFT_CLIENT_SECRET",
    "ROSTERSYNC_CA_BUNDLE",
}


def test_emulate_microsoft_prints_working_exports(tmp_path: Path) -> None:
    with emulated("microsoft", NAMES, tmp_path) as (exports, process):
        assert process.stderr is not None
        tenants = ""
        while not tenants:
            line = process.stderr.readline()
            assert line, "the emulator exited before naming its tenants"
            if line.startswith("tenants: "):
                tenants = line.removeprefix("tenants: ").strip()
        grant = link_tenant(settings_from(exports), tenants.split(", ")[0])
        assert grant.scopes == {"EduRoster.Read.All"}


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
