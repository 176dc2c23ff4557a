"""`rostersync emulate --provider clever` prints settings that really point the Clever connector at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from connectors.clever import district_tokens
from settings import Settings

ROSTERSYNC = str(Path(sys.executable).with_name("rostersync"))
NAMES = {
    "ROSTERSYNC_CLEVER_AUTHORIZE_URL",
    "ROSTERSYNC_CLEVER_TOKEN_URL",
    "ROSTERSYNC_CLEVER_API_BASE",
    "ROSTERSYNC_CLEVER_CLIENT_ID",
    "ROSTERSYNC_CLEVER_CLIENT_SECRET",
    "ROSTERSYNC_CA_BUNDLE",
}


def test_emulate_clever_prints_working_exports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | {"TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [ROSTERSYNC, "emulate", "--provider", "clever", "--port", "0", "--students", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        exports: dict[str, str] = {}
        while set(exports) != NAMES:
            line = process.stdout.readline()
            assert line, "the emulator exited before printing its settings"
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exports[name] = value
        settings = Settings(**{name.removeprefix("ROSTERSYNC_").lower(): value for name, value in exports.items()})
        assert len(district_tokens(settings)) == 2
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_unknown_provider_is_a_one_line_error() -> None:
    result = subprocess.run(
        [ROSTERSYNC, "emulate", "--provider", "nope", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "google, clever" in result.stderr
