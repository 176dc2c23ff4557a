"""``rostersync bench``: how close a sync comes to downloading the same pages, at district scale.

A sync can be no faster than fetching its pages, so every figure is set against that: the
**baseline** replays, with a plain ``requests`` session trusting the emulator's CA, exactly the
API requests the full sync made (same paths, same queries, batch bodies rebuilt from the emulator's
log by the provider's kit) and throws the answers away.
Then, per database: a **full sync**, a **no-change re-sync** (a change feed where the provider
has one, a full listing where not) and a **1% change re-sync** (1% of the students leave a class
and as many new ones join, through the emulator's controls). For each: wall time, ratio to the
baseline, API requests (counted by an emulator hook: HTTP round trips, a batch is one) against the
documented minimum computed from the district's counts and the providers' page and batch sizes,
rows written (the ``sync_runs`` counters) and peak RSS. Each provider's district (its scenario,
default size, API prefix and batch endpoint) is its kit's ``bench`` (``devtools/providers/<name>.py``).

Every phase, the baseline too, runs in a fresh process of its own (``spawn``), so that its peak
RSS (``VmHWM``, reset when the phase starts) is that phase's alone: a forked child would share
the emulator's district (hundreds of MB) and a thread would share one high-water mark across
phases. The peak includes the interpreter and its imports (``rss_at_start_mb`` says how much). The
emulators serve from this process, so a phase never shares its interpreter (or its GIL) with
the server. The figures are for one machine and one emulator; ``BENCHMARKS.md`` says which.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import requests
import sqlalchemy
from pydantic import SecretStr
from rich.table import Table

from devtools.outbox_off import WITHOUT_OUTBOX, drop_outbox_triggers
from devtools.providers import KITS
from devtools.providers.base import BenchKit, Fetch, Scenario, query_params
from emulators.core import RequestRecord
from services.console import err, out
from settings import Settings
from store.runtime import Runtime, build_runtime
from store.vault import new_key

BENCHES: dict[str, BenchKit] = {name: kit.bench for name, kit in KITS.items() if kit.bench is not None}
"""Every provider's bench (its kit's), in the registry's order: ``bench`` runs them all when none is named."""
PROVIDERS = tuple(BENCHES)
CHANGE_SHARE = 0.01


# ------------------------------------------------------------------------------------ results
@dataclass
class PhaseResult:
    """What one phase measured (in its own process, apart from ``requests``)."""

    seconds: float
    rows_written: int = 0
    rss_start_mb: float = 0.0
    peak_rss_mb: float = 0.0
    requests: int = 0
    outcomes: list[str] = field(default_factory=list)


def _status_mb(field_name: str) -> float | None:
    """A ``/proc/self/status`` memory figure in MB (Linux), None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> float:
    """Forget the high-water mark this process inherited; returns the current RSS in MB.

    A spawned child is forked before it execs, and Linux carries the fork's high-water mark (the
    parent's, emulator and all) across exec; writing 5 to ``clear_refs`` resets it (Linux 4.0+).
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass
    current = _status_mb("VmRSS")
    return current if current is not None else _rss_mb()


def _rss_mb() -> float:
    """Peak RSS of this process since ``_reset_peak`` (ru_maxrss where /proc is not there)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync_phase(settings: Settings, ids: Sequence[int]) -> PhaseResult:
    """Child process: sync every integration once, in turn; rows written as ``sync_runs`` counts them."""
    from sync.cycle import run_sync

    runtime = build_runtime(settings, run_migrations=False)
    start_rss = _reset_peak()
    written, outcomes = 0, []
    started = time.perf_counter()
    for integration_id in ids:
        outcome = run_sync(runtime, integration_id)
        written += outcome.counts().rows_written
        outcomes.append(outcome.outcome)
    seconds = time.perf_counter() - started
    runtime.engine.dispose()
    return PhaseResult(seconds, written, start_rss, _rss_mb(), outcomes=outcomes)


def _baseline_phase(ca_bundle: str, fetches: Sequence[Fetch]) -> PhaseResult:
    """Child process: the same pages with a plain session, bodies read and thrown away."""
    start_rss = _reset_peak()
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override ``verify``
        session.verify = ca_bundle
        started = time.perf_counter()
        for fetch in fetches:
            headers = {"Authorization": f"Bearer {fetch.token}"}
            if fetch.content_type is not None:
                headers["Content-Type"] = fetch.content_type
            response = session.request(
                fetch.method,
                fetch.url,
                params=fetch.params or None,
                json=fetch.body,
                data=fetch.data,
                headers=headers,
                timeout=300,
            )
            response.raise_for_status()
            _ = response.content
        seconds = time.perf_counter() - started
    return PhaseResult(seconds, 0, start_rss, _rss_mb())


def _limit_phase(database_url: str, ids: Sequence[int], scratch_dir: Path) -> PhaseResult:
    """Child process: bulk-load the rows the full sync wrote into scratch tables (devtools.bulk_limit)."""
    from devtools.bulk_limit import bulk_load_seconds

    start_rss = _reset_peak()
    seconds, rows = bulk_load_seconds(database_url, ids, scratch_dir)
    return PhaseResult(seconds, rows, start_rss, _rss_mb())


def _in_child(function: Callable[..., PhaseResult], *args: Any) -> PhaseResult:
    """Run one phase in a fresh interpreter, so its peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ------------------------------------------------------------------------------------ the baseline
def replay_plan(
    records: Sequence[RequestRecord], base_url: str, bench: BenchKit, token: Callable[[RequestRecord], str]
) -> list[Fetch]:
    """The API requests of a full sync, from the emulator's log, as a plain client would send them.

    The log holds a batch's parts just before the batch itself (one request is served at a time
    under the emulator's lock), so they are gathered back into its body, as the provider's kit builds
    it (``BenchKit.batch_fetch``).
    """
    plan: list[Fetch] = []
    pending: list[RequestRecord] = []

    def flush() -> None:
        for record in pending:
            plan.append(Fetch("GET", base_url + record.path, token(record), query_params(record)))
        pending.clear()

    for record in records:
        if record.path == bench.batch_path and bench.batch_fetch is not None:
            plan.append(bench.batch_fetch(pending, base_url + record.path, token(record), bench.api_prefix))
            pending.clear()
        elif not record.path.startswith(bench.api_prefix):
            continue
        elif bench.batched(record.path):
            pending.append(record)
        else:
            flush()
            plan.append(Fetch("GET", base_url + record.path, token(record), query_params(record)))
    flush()
    return plan


# ------------------------------------------------------------------------------------ databases
@contextmanager
def throwaway_databases(workdir: Path, configured: str | None) -> Iterator[list[tuple[str, str]]]:
    """The embedded SQLite default, and a schema of its own in PostgreSQL when the configured URL is one."""
    found = [("sqlite", f"sqlite:///{workdir / 'bench.db'}")]
    if not configured or not configured.startswith("postgresql"):
        yield found
        return
    schema = f"rostersync_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(configured)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sqlalchemy.make_url(configured).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield [*found, ("postgresql", url.render_as_string(hide_password=False))]
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def bench_databases(workdir: Path, configured: str | None, without_outbox: bool) -> Iterator[list[tuple[str, str]]]:
    """The throwaway databases; with ``without_outbox`` each is followed by a copy of its own whose outbox
    triggers ``_measure`` drops (``sqlite_without_outbox``): the same syncs with and without the outbox, one run."""
    with throwaway_databases(workdir, configured) as databases:
        if not without_outbox:
            yield databases
            return
        (workdir / "without_outbox").mkdir(parents=True, exist_ok=True)
        with throwaway_databases(workdir / "without_outbox", configured) as bare:
            yield [one for pair in zip(databases, bare, strict=True) for one in (pair[0], _bare(pair[1]))]


def _bare(database: tuple[str, str]) -> tuple[str, str]:
    return database[0] + WITHOUT_OUTBOX, database[1]


def bench_settings(scenario: Scenario, database_url: str) -> Settings:
    """Embedded defaults pointed at one emulator, with throwaway keys; no broker, no budgets."""
    return Settings(
        **scenario.settings(),
        database_url=database_url,
        broker_url=None,
        provider_budgets="",
        pseudonym_key=SecretStr(secrets.token_urlsafe(48)),
        token_keys=SecretStr(new_key()),
        http_timeout_seconds=300,  # one emulator thread answers a 100,000-user delta page on a loaded machine
    )


# ------------------------------------------------------------------------------------ one provider
class Counter:
    """An emulator hook counting the API's HTTP round trips (a batch is one; its parts are not hooked)."""

    def __init__(self, prefix: str, batch_path: str | None = None) -> None:
        self.prefix = prefix
        self.batch_path = batch_path
        self.count = 0

    def __call__(self, record: RequestRecord) -> None:
        if record.path.startswith(self.prefix) or record.path == self.batch_path:
            self.count += 1


def _ratio(seconds: float, baseline: float) -> float:
    return round(seconds / baseline, 2) if baseline > 0 else 0.0


def bench_provider(
    name: str, students: int, databases: Sequence[tuple[str, str]], workdir: Path, class_size: int | None = None
) -> dict[str, Any]:
    """Build the district, then baseline and the three phases on every database; the figures as a dict.

    ``class_size``: one teacher link of classes that size instead (the provider's ``one_teacher`` scenario).
    """
    bench = BENCHES[name]
    if class_size is None:
        err.print(f"[bold]{name}[/]: building a district of about {students:,} students in the emulator")
        scenario = bench.scenario(students, workdir)
    else:
        if bench.one_teacher is None:
            raise ValueError(f"--class-size: {name} links organisations, not teachers")
        err.print(f"[bold]{name}[/]: one teacher of {students:,} students in classes of {class_size:,}")
        scenario = bench.one_teacher(students, class_size, workdir)
    counter = Counter(bench.api_prefix, bench.batch_path)
    scenario.emulator.add_hook(counter)
    try:
        return _measure(scenario, bench, counter, databases, workdir)
    finally:
        scenario.emulator.stop()


def _measure(
    scenario: Scenario, bench: BenchKit, counter: Counter, databases: Sequence[tuple[str, str]], workdir: Path
) -> dict[str, Any]:
    name = scenario.name
    figures: dict[str, Any] = {
        "students": scenario.students(),
        "classes": scenario.classes(),
        "requests_minimum": scenario.minimum(resync=False),
        "resync_requests_minimum": scenario.minimum(resync=True),
    }
    baseline: PhaseResult | None = None
    per_database: dict[str, Any] = {}
    for database, url in databases:
        settings = bench_settings(scenario, url)
        runtime = build_runtime(settings)
        if database.endswith(WITHOUT_OUTBOX):
            err.print(f"  {database}: dropped the {drop_outbox_triggers(runtime.engine)} outbox triggers")
        ids = scenario.link(runtime)
        figures["links"] = len(ids)
        results: dict[str, PhaseResult] = {}
        for phase in ("full", "resync", "change"):
            if phase == "change":
                changed = scenario.change(max(1, round(figures["students"] * CHANGE_SHARE)))
                figures["changed_students"] = changed
            err.print(f"  {database}: {phase} sync of {len(ids)} link(s) ...")
            log_start, before = len(scenario.emulator.requests), counter.count
            result = _in_child(_sync_phase, settings, ids)
            result.requests = counter.count - before
            results[phase] = result
            if phase == "full" and baseline is None:
                baseline = _download(scenario, bench, runtime, ids, log_start, "baseline")
            if phase != "full":  # the re-sync's and the change's own pages: the floor under each one's time
                results[f"{phase}_download"] = _download(scenario, bench, runtime, ids, log_start, f"{phase} download")
            err.print(
                f"    {result.seconds:.2f} s, {result.requests} requests, {result.rows_written} rows written, "
                f"peak RSS {result.peak_rss_mb:.0f} MB"
            )
            if phase == "full":
                results["bulk_load"] = _in_child(_limit_phase, url, ids, workdir)
                err.print(f"  {database}: bulk load of the same rows: {results['bulk_load'].seconds:.2f} s")
        runtime.engine.dispose()
        assert baseline is not None
        per_database[database] = _database_figures(results, baseline, len(ids))
    assert baseline is not None
    figures |= {
        "baseline_s": round(baseline.seconds, 3),
        "baseline_requests": baseline.requests,
        "baseline_peak_rss_mb": round(baseline.peak_rss_mb, 1),
    }
    figures |= per_database[databases[0][0]]  # the embedded default is the headline
    figures["databases"] = per_database
    err.print(
        f"  [bold]{name}[/]: full {figures['full_ratio']}x baseline, {figures['full_vs_limit']}x the limit "
        f"(download + bulk load {figures['limit_s']:.2f} s), re-sync {figures['resync_ratio']}x, "
        f"{figures['requests']} requests (minimum {figures['requests_minimum']}); a link's fixed cost "
        f"{_fixed_text(figures['fixed_ms_per_link'])} ms (full / re-sync / change)"
    )
    return figures


def _download(
    scenario: Scenario, bench: BenchKit, runtime: Runtime, ids: Sequence[int], log_start: int, what: str
) -> PhaseResult:
    """The API requests the emulator logged since ``log_start``, replayed by a plain client (``_baseline_phase``)."""
    records = scenario.emulator.requests[log_start:]
    plan = replay_plan(records, scenario.emulator.base_url, bench, scenario.tokens(runtime, ids))
    err.print(f"  {what}: the same {len(plan)} requests with a plain requests session ...")
    download = _in_child(_baseline_phase, str(scenario.emulator.ca_path), plan)
    download.requests = len(plan)
    return download


def _fixed_text(fixed: dict[str, float]) -> str:
    return " / ".join(f"{fixed[phase]:.0f}" for phase in ("full", "resync", "change"))


def _database_figures(results: dict[str, PhaseResult], baseline: PhaseResult, links: int) -> dict[str, Any]:
    """One database's figures; ``limit_s`` is the download plus the bulk load of the rows the full sync wrote.

    ``fixed_ms_per_link``: per phase, what the sync took beyond that phase's own download, shared out over
    the links (``(phase seconds - its download's seconds) / links``, in ms): for teacher links, whose
    download is a couple of round trips each, this is a link's own cost (lease, run record, fence, tokens,
    client, writes). Each phase against its own requests, because a change feed's re-sync and change ask
    for a page or a hundred where the full sync asked for the district: against the full download they gave
    a negative "cost" of whole seconds.
    """
    full, resync, change, load = results["full"], results["resync"], results["change"], results["bulk_load"]
    resync_download = results.get("resync_download", baseline)
    change_download = results.get("change_download", baseline)
    phases = {"full": full, "resync": resync, "change": change}
    downloads = {"full": baseline, "resync": resync_download, "change": change_download}
    limit = baseline.seconds + load.seconds
    return {
        "fixed_ms_per_link": {
            phase: round((result.seconds - downloads[phase].seconds) / max(links, 1) * 1000, 1)
            for phase, result in phases.items()
        },
        "full_s": round(full.seconds, 3),
        "full_ratio": _ratio(full.seconds, baseline.seconds),
        "bulk_load_s": round(load.seconds, 3),
        "bulk_load_rows": load.rows_written,
        "limit_s": round(limit, 3),
        "full_vs_limit": _ratio(full.seconds, limit),
        "full_rows_written": full.rows_written,
        "resync_s": round(resync.seconds, 3),
        "resync_ratio": _ratio(resync.seconds, baseline.seconds),
        "resync_share_of_full": round(resync.seconds / full.seconds, 3) if full.seconds > 0 else 0.0,
        "resync_rows_written": resync.rows_written,
        "resync_download_s": round(resync_download.seconds, 3),
        "resync_download_requests": resync_download.requests,
        "resync_vs_download": _ratio(resync.seconds, resync_download.seconds),
        "change_s": round(change.seconds, 3),
        "change_ratio": _ratio(change.seconds, baseline.seconds),
        "change_rows_written": change.rows_written,
        "change_download_s": round(change_download.seconds, 3),
        "change_download_requests": change_download.requests,
        "change_vs_download": _ratio(change.seconds, change_download.seconds),
        "requests": full.requests,
        "resync_requests": resync.requests,
        "change_requests": change.requests,
        "peak_rss_mb": round(max(r.peak_rss_mb for r in phases.values()), 1),
        "phase_peak_rss_mb": {phase: round(r.peak_rss_mb, 1) for phase, r in phases.items()},
        "rss_at_start_mb": round(full.rss_start_mb, 1),
        "outcomes": sorted({o for r in phases.values() for o in r.outcomes}),
    }


def run_bench(
    providers: Sequence[str],
    students: int | None,
    database_url: str | None = None,
    class_size: int | None = None,
    *,
    without_outbox: bool = False,
) -> dict[str, Any]:
    """The figures of every provider asked for, keyed by provider; every database and key is thrown away.

    ``class_size``: each provider's one-teacher scenario (``BenchKit.one_teacher``) instead of its district;
    ``without_outbox``: each database followed by a copy without the outbox's triggers (devtools/outbox_off.py)."""
    configured = database_url if database_url is not None else os.environ.get("ROSTERSYNC_DATABASE_URL")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rostersync-bench-") as workdir:
        for name in providers:
            with bench_databases(Path(workdir) / name, configured, without_outbox) as databases:
                (Path(workdir) / name).mkdir(exist_ok=True)
                report[name] = bench_provider(
                    name, students or BENCHES[name].default_students, databases, Path(workdir) / name, class_size
                )
    return report


def print_report(report: dict[str, Any], as_json: bool) -> None:
    """``--json``: one object on stdout, nothing else there; otherwise a table per database."""
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    table = Table(title="rostersync bench (seconds; x = ratio to the plain download)")
    for column in (
        "provider",
        "db",
        "students",
        "baseline",
        "limit",
        "full",
        "re-sync",
        "1% change",
        "requests",
        "fixed ms/link",
        "rows re-sync",
        "peak RSS MB",
    ):
        table.add_column(column, justify="right" if column not in ("provider", "db") else "left")
    for name, figures in report.items():
        if name in ("fleet", "feed"):
            continue
        for database, row in figures["databases"].items():
            table.add_row(
                name,
                database,
                f"{figures['students']:,}",
                f"{figures['baseline_s']:.2f}",
                f"{row['limit_s']:.2f}",
                f"{row['full_s']:.2f} ({row['full_ratio']}x, {row['full_vs_limit']}x limit)",
                f"{row['resync_s']:.2f} ({row['resync_ratio']}x)",
                f"{row['change_s']:.2f} ({row['change_ratio']}x; its download {row['change_download_s']:.2f})",
                f"{row['requests']} / {figures['requests_minimum']}",
                _fixed_text(row["fixed_ms_per_link"]),
                str(row["resync_rows_written"]),
                f"{row['peak_rss_mb']:.0f}",
            )
    if table.rows:
        out.print(table)
    if "feed" in report:
        from devtools.feed_bench import print_feed  # it imports this module

        print_feed(report["feed"])
    if "fleet" in report:
        fleet = report["fleet"]
        out.print(
            f"fleet: {fleet['integrations']:,} teacher links, {fleet['workers']} workers: "
            f"{fleet['integrations_per_min']} integrations/min; {fleet['requests']:,} requests, "
            f"{fleet['limit_share']:.0%} of the {fleet['rate_limit_per_min']:,}/min quota "
            f"(busiest minute {fleet['busiest_minute_share']:.0%}); {fleet['http_429']} HTTP 429"
        )
