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
