"""`rostersync sync --now` under the retry policy, as a person at a terminal meets it: a real process against
an emulator answering 429 (with Retry-After, or Clever's reset header) a few times, then a storm past the cap.
The waits are one second each, real, and nothing asserts on time.
"""

from __future__ import annotations

import json
import os
import subprocess

from store.runtime import Runtime
from tests.clikit import ROSTERSYNC
from tests.provider_worlds import World, env_of
from tests.provider_worlds import world_fixture as world_fixture  # the parametrized fixture


def cli(*args: str, rt: Runtime) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | env_of(rt.settings)
    env["COLUMNS"] = "200"
    return subprocess.run([ROSTERSYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_sync_now_waits_out_429s_shows_each_wait_and_finishes(world: World) -> None:
    rt = world.runtime()
    integration_id = world.link(rt)
    world.emulator.fail_next(world.data_path, 429, count=2, retry_after=1)
    result = cli("sync", str(integration_id), "--now", rt=rt)
    assert result.returncode == 0, result.stderr
    waits = [line for line in result.stderr.splitlines() if "rate limited by the provider; waiting" in line]
    assert len(waits) == 2, result.stderr
    assert waits[0].startswith(f"integration {integration_id}: ") and waits[0].endswith("before attempt 2 of 6")
    assert waits[1].endswith("before attempt 3 of 6")
    assert f"integration {integration_id}: synced" in result.stderr
    assert "error" not in result.stderr.lower()
    status = json.loads(cli("status", "--json", rt=rt).stdout)
    [row] = [r for r in status["integrations"] if r["id"] == integration_id]
    assert row["status"] == "active" and row["classes"] > 0


def test_a_storm_past_the_cap_ends_failed_with_a_safe_reason_shown_by_status(world: World) -> None:
    """...and once the provider answers again, `resume` brings it back without a new consent."""
    rt = world.runtime(max_retries=1)
    integration_id = world.link(rt)
    world.emulator.fail_next(world.data_path, 429, count=2, retry_after=1)  # both attempts the cap allows
    result = cli("sync", str(integration_id), "--now", rt=rt)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "by the provider; waiting" in line]) == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: integration {integration_id}: sync failed: the provider kept rate-limiting us: retries exhausted, "
        "integration marked failed"
    ]
    reason = (
        "sync gave up after 2 attempt(s) and 1s of waiting: the provider kept rate-limiting it; "
        "resume it with rostersync resume ID (or the admin API) once the cause is fixed"
    )
    status = cli("status", rt=rt)
    assert f"integration {integration_id} is failed: {reason}" in status.stderr
    [row] = [r for r in json.loads(cli("status", "--json", rt=rt).stdout)["integrations"] if r["id"] == integration_id]
    assert row["status"] == "failed" and row["status_reason"] == reason
    resumed = cli("resume", str(integration_id), rt=rt)
    assert resumed.returncode == 0, resumed.stderr
    assert f"integration {integration_id}: resumed" in resumed.stderr
    again = cli("resume", str(integration_id), rt=rt)
    assert again.returncode == 2
    assert again.stderr.strip().startswith(f"error: integration {integration_id} is active, not failed")
    synced = cli("sync", str(integration_id), "--now", rt=rt)
    assert synced.returncode == 0, synced.stderr
    [row] = [r for r in json.loads(cli("status", "--json", rt=rt).stdout)["integrations"] if r["id"] == integration_id]
    assert row["status"] == "active" and row["classes"] > 0
    assert cli("resume", "999999", rt=rt).returncode == 2
