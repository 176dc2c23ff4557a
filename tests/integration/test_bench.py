"""``rostersync bench --json`` on a tiny district of every provider: the shape of its report, not its timings.

Speed is the bench's to measure, never a test's; what is asserted is what the figures must mean:
one JSON object on stdout keyed by provider, both databases measured, the baseline replaying
exactly the requests the full sync made, the documented minimum of requests met, a no-change
re-sync writing nothing and a 1% change writing something.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from devtools.bench import PhaseResult, _database_figures
from devtools.providers.google import one_teacher
from emulators.google import GoogleEmulator
from store.runtime import Runtime, build_runtime
from sync.cycle import run_sync
from tests.clikit import ROSTERSYNC, bench_json, one_line_error
from tests.conftest import REDIS_URL, link_teacher, settings_for

HEADLINE = {
    "baseline_s",
    "full_s",
    "full_ratio",
    "limit_s",
    "full_vs_limit",
    "resync_s",
    "resync_ratio",
    "resync_rows_written",
    "change_s",
    "requests",
    "requests_minimum",
    "peak_rss_mb",
}


@pytest.mark.timeout(600)
def test_bench_json_reports_every_provider_on_both_databases(pg_url: str) -> None:
    report, progress = bench_json(pg_url, "--students", "60")  # stdout: the one object and nothing else
    assert set(report) == {"google", "clever", "microsoft"}
    assert "full sync" in progress  # progress goes to stderr
    for provider, figures in report.items():
        assert set(figures) >= HEADLINE, provider
        assert all(isinstance(figures[key], int | float) for key in HEADLINE), provider
        assert set(figures["databases"]) == {"sqlite", "postgresql"}, provider
        assert figures["students"] >= 60 and figures["classes"] >= 1
        assert figures["baseline_s"] > 0 and figures["baseline_requests"] == figures["requests"], provider
        assert figures["requests"] <= figures["requests_minimum"] * 1.05, provider
        for database, row in figures["databases"].items():
            where = (provider, database)
            ms = 0.0005  # seconds are printed to the millisecond
            assert row["outcomes"] == ["ok"], where
            assert row["full_rows_written"] > 0 and row["resync_rows_written"] == 0, where
            assert row["change_rows_written"] > 0, where
            # The change's floor: its own requests, replayed by a plain client in the same run.
            assert row["change_download_requests"] == row["change_requests"] > 0, where
            assert row["change_download_s"] > 0, where
            low = (row["change_s"] - ms) / (row["change_download_s"] + ms) - 0.005
            high = (row["change_s"] + ms) / max(row["change_download_s"] - ms, 1e-9) + 0.005
            assert low <= row["change_vs_download"] <= high, where
            # The re-sync's floor too: its own requests (one empty round of a change feed, a whole listing of Google's).
            assert row["resync_download_requests"] == row["resync_requests"] > 0, where
            assert row["resync_download_s"] > 0, where
            # A link's cost beyond its own download: never the seconds of a full download taken from a re-sync's.
            resync_fixed = (row["resync_s"] - row["resync_download_s"]) / figures["links"] * 1000
            slack = 1 / figures["links"] + 0.1
            assert row["fixed_ms_per_link"]["resync"] == pytest.approx(resync_fixed, abs=slack), where
            # Seconds are printed to the millisecond and a tiny district's baseline is a few of them: the
            # ratio (from the unrounded times, to 0.01) must lie within what the printed times allow.
            full, base = row["full_s"], figures["baseline_s"]
            low, high = (full - ms) / (base + ms) - 0.005, (full + ms) / max(base - ms, 1e-9) + 0.005
            assert low <= row["full_ratio"] <= high, where
            assert row["peak_rss_mb"] >= max(row["phase_peak_rss_mb"].values()) > 0, where
            # The limit: the download plus bulk-loading exactly the rows the full sync left in the store.
            assert row["bulk_load_rows"] > 0 and row["bulk_load_s"] > 0, where
            assert abs(row["limit_s"] - (base + row["bulk_load_s"])) <= 0.002, where
            assert row["full_vs_limit"] == pytest.approx(full / row["limit_s"], abs=0.02, rel=0.05), where
            fixed = (full - base) / figures["links"] * 1000  # ms a link beyond the download, from the printed times
            assert row["fixed_ms_per_link"]["full"] == pytest.approx(fixed, abs=1 / figures["links"] + 0.1), where
    for provider in ("clever", "microsoft"):  # a change feed: the no-change re-sync reads one empty round
        assert report[provider]["resync_requests"] == report[provider]["resync_requests_minimum"]


def test_a_no_change_resync_on_postgresql_locks_no_roster_row(pg_url: str, emulator: GoogleEmulator) -> None:
    """What the store holds is read and left alone: no upsert reaches a row whose values are unchanged.

    PostgreSQL's ``ON CONFLICT DO UPDATE .. WHERE`` locks a conflicting row even when the WHERE
    is false, and the lock is a write (the row's ``xmax``); a no-change re-sync must leave every
    roster row exactly as it was, ``xmin`` and ``xmax`` included (the first sync's foreign-key
    checks leave share locks' xmax behind; the re-sync must not replace them).
    """
    rt = build_runtime(settings_for(emulator, pg_url))
    try:
        integration_id = link_teacher(rt, emulator, 0)
        assert run_sync(rt, integration_id).rows_written > 0
        before = _row_versions(rt)
        again = run_sync(rt, integration_id)
        assert again.outcome == "ok" and again.rows_written == 0 and again.members_seen > 0
        after = _row_versions(rt)
        assert after == before and len(after) > 0  # a lock would have set xmax to the re-sync's transaction
    finally:
        rt.engine.dispose()


def _row_versions(rt: Runtime) -> list[tuple[str, int, str, str]]:
    with rt.engine.connect() as connection:
        return [
            (table, row_id, xmin, xmax)
            for table in ("classes", "people", "enrollments")
            for row_id, xmin, xmax in connection.exec_driver_sql(
                f"SELECT id, xmin::text, xmax::text FROM {table} ORDER BY id"  # noqa: S608 - fixed table names
            )
        ]


FLEET = {
    "integrations",
    "workers",
    "seconds",
    "integrations_per_min",
    "requests",
    "rate_limit_per_min",
    "limit_share",
    "http_429",
}


def _clean_env(**overrides: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | overrides


@pytest.mark.timeout(300)
def test_bench_fleet_json_reports_a_tiny_fleet_synced_by_two_workers_through_redis(pg_url: str) -> None:
    done = subprocess.run(
        [ROSTERSYNC, "bench", "--fleet", "6", "--json"],
        env=_clean_env(ROSTERSYNC_DATABASE_URL=pg_url, ROSTERSYNC_BROKER_URL=REDIS_URL),
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"fleet"}  # --fleet alone runs the fleet only
    assert "integrations/min" in done.stderr  # progress on stderr
    fleet = report["fleet"]
    assert set(fleet) >= FLEET
    assert fleet["integrations"] == 6 and fleet["workers"] == 2
    assert fleet["rate_limit_per_min"] == 3000 and fleet["http_429"] == 0
    # Every teacher's sync lists its classes and each class's students and teachers: 5 requests at least.
    assert fleet["requests"] >= 6 * 5
    assert fleet["seconds"] > 0
    assert fleet["integrations_per_min"] == pytest.approx(6 / fleet["seconds"] * 60, rel=0.01)
    per_minute = fleet["requests"] / fleet["seconds"] * 60
    assert fleet["limit_share"] == pytest.approx(per_minute / 3000, rel=0.01, abs=0.001)
    assert 0 < fleet["busiest_minute_share"] <= 1


def test_bench_fleet_without_redis_is_one_clear_error(pg_url: str) -> None:
    done = subprocess.run(
        [ROSTERSYNC, "bench", "--fleet", "6"],
        env=_clean_env(ROSTERSYNC_DATABASE_URL=pg_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    one_line_error(done, "ROSTERSYNC_BROKER_URL")


def test_the_big_teacher_is_one_link_of_disjoint_courses_of_the_class_size(tmp_path: Path) -> None:
    """``bench --provider google --class-size C``: one teacher, students / C active courses of C, no one in two."""
    scenario = one_teacher(300, 100, tmp_path)
    try:
        emulator = scenario.emulator
        courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
        assert len(emulator.teacher_ids) == 1 and len(courses) == 3
        rosters = [set(emulator.student_ids_of(course)) for course in courses]
        assert [len(roster) for roster in rosters] == [100, 100, 100]
        assert len(set().union(*rosters)) == 300 and scenario.students() == 300
        # the course page, then one batch a roster page: 100 students are four pages of 30
        assert scenario.minimum(resync=False) == 1 + 4
    finally:
        emulator.stop()


def test_a_links_fixed_cost_is_each_phase_beyond_the_download_shared_over_the_links() -> None:
    results = {
        "full": PhaseResult(3.0),
        "resync": PhaseResult(2.0),
        "change": PhaseResult(2.5),
        "bulk_load": PhaseResult(0.5),
        "resync_download": PhaseResult(1.5),
        "change_download": PhaseResult(0.5),
    }
    figures = _database_figures(results, PhaseResult(1.0), links=4)
    # each phase beyond its own download: the full sync's the baseline, the others' their own requests
    assert figures["fixed_ms_per_link"] == {"full": 500.0, "resync": 125.0, "change": 500.0}
    assert figures["resync_vs_download"] == 1.33 and figures["change_vs_download"] == 5.0
