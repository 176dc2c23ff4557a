"""``rostersync bench --feed --json`` on a small district: the shape and meaning of its figures, not their values.

Speed is the bench's to measure (BENCHMARKS.md); here: one JSON object on stdout, both databases,
every feed page timed was full, and the snapshot walked every class and member written.
"""

from __future__ import annotations

import pytest

from tests.clikit import bench_json

STUDENTS = 2500


@pytest.mark.timeout(600)
def test_bench_feed_reports_pages_and_snapshot_memory_on_both_databases(pg_url: str) -> None:
    report = bench_json(pg_url, "--feed", "--students", str(STUDENTS))[0]["feed"]
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
