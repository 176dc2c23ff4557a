"""``rostersync bench --feed --json`` on a small district: the shape and meaning of its figures, not their values.

Speed is the bench's to measure (BENCHMARKS.md); here: one JSON object on stdout, both databases,
every feed page timed was full, and the snapshot walked every class and member written.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.clikit import ROSTERSYNC

STUDENTS = 2500


@pytest.mark.timeout(600)
def test_bench_feed_reports_pages_and_snapshot_memory_on_both_databases(pg_url: str) -> None:
    done = subprocess.run(
        [ROSTERSYNC, "bench", "--feed", "--students", str(STUDENTS), "--json"],
        env={k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
        | {"ROSTERSYNC_DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["feed"]
    assert report["students"] == STUDENTS and report["goal_changes_page_ms"] == 50
    assert set(report["databases"]) == {"sqlite", "postgresql"}
    for row in report["databases"].values():
        assert row["changes_pages"] == STUDENTS // 1000
        assert 0 < row["changes_page_ms_median"] <= row["changes_page_ms_p95"] <= row["changes_page_ms_max"]
        assert row["changes_page_web_cpu_ms"] > 0
        assert row["snapshot_items"] == {
            "integrations": 1,
            "classes": STUDENTS // 25,
            "members": STUDENTS + STUDENTS // 25,
        }
        assert row["snapshot_peak_rss_mb"] >= row["snapshot_rss_before_mb"] > 0
