"""`rostersync emulate --provider clever` prints settings that really point the Clever connector at it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from connectors.clever import district_tokens
from emulators.clever import CleverEmulator
from tests.clikit import ROSTERSYNC, emulated, settings_from

NAMES = {
    "ROSTERSYNC_CLEVER_AUTHORIZE_URL",
    "ROSTERSYNC_CLEVER_TOKEN_URL",
    "ROSTERSYNC_CLEVER_API_BASE",
    "ROSTERSYNC_CLEVER_CLIENT_ID",
    "ROSTERSYNC_CLEVER_CLIENT_SECRET",
    "ROSTERSYNC_CA_BUNDLE",
}


def test_emulate_clever_prints_working_exports(tmp_path: Path) -> None:
    with emulated("clever", NAMES, tmp_path) as (exports, _process):
        assert len(district_tokens(settings_from(exports))) == 2


def test_unknown_provider_is_a_one_line_error() -> None:
    result = subprocess.run(
        [ROSTERSYNC, "emulate", "--provider", "nope", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "google, clever" in result.stderr


def clever_env(clever: CleverEmulator, tmp_path: Path) -> dict[str, str]:
    from tests.clever_fixtures import clever_settings_for
    from tests.clikit import env_for

    settings = clever_settings_for(clever, f"sqlite:///{tmp_path / 'cli.db'}")
    return env_for(settings) | {
        "ROSTERSYNC_CLEVER_CLIENT_ID": clever.client_id,
        "ROSTERSYNC_CLEVER_CLIENT_SECRET": clever.client_secret,
        "ROSTERSYNC_CLEVER_AUTHORIZE_URL": clever.authorize_url,
        "ROSTERSYNC_CLEVER_TOKEN_URL": clever.token_url,
        "ROSTERSYNC_CLEVER_API_BASE": clever.api_base,
        "ROSTERSYNC_CLEVER_REDIRECT_URI": settings.clever.redirect_uri,
    }


def test_link_org_links_a_district_and_runs_its_first_sync(tmp_path: Path) -> None:
    from tests.clikit import one_line_error, run

    with CleverEmulator(cert_dir=tmp_path, districts=2, teachers=2, students_per_course=4) as clever:
        env = clever_env(clever, tmp_path)
        linked = run("link", "org", "--provider", "clever", "--org", clever.district_ids[0], env=env)
        assert linked.returncode == 0, linked.stderr
        assert linked.stdout.strip() == "integration 1" and "first sync enqueued" in linked.stderr
        status = run("status", "--json", env=env)
        [row] = json.loads(status.stdout)["integrations"]
        assert (row["provider"], row["status"]) == ("clever", "active") and row["classes"] > 0

        clever.disconnect_district(clever.district_ids[1])
        refused = run("link", "org", "--provider", "clever", "--org", clever.district_ids[1], env=env)
        one_line_error(refused, "has not connected the app")
        one_line_error(run("link", "org", "--provider", "google", "--org", "x", env=env), "organisation-wide")

        revoked = run("revoke", "1", env=env)
        assert revoked.returncode == 0 and "no revoke endpoint" in revoked.stderr
        assert "Clever dashboard" in revoked.stderr and "Entra" not in revoked.stderr  # its own provider's words
