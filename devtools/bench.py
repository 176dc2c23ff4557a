"""``rostersync bench``: how close a sync comes to downloading the same pages, at district scale.

A sync can be no faster than fetching its pages, so every figure is set against that: the
**baseline** replays, with a plain ``requests`` session trusting the emulator's CA, exactly the
API requests the full sync made (same paths, same queries, Graph ``$batch`` bodies and Google
batch ``multipart/mixed`` bodies rebuilt from the emulator's log) and throws the answers away.
Then, per database: a **full sync**, a **no-change re-sync** (a change feed where the provider
has one, a full listing where not) and a **1% change re-sync** (1% of the students leave a class
and as many new ones join, through the emulator's controls). For each: wall time, ratio to the
baseline, API requests (counted by an emulator hook: HTTP round trips, a ``$batch`` or a Google
batch is one) against the documented minimum computed from the district's counts and the
providers' page and batch sizes, rows written (the ``sync_runs`` counters) and peak RSS.

Every phase, the baseline too, runs in a fresh process of its own (``spawn``), so that its peak
RSS (``VmHWM``, reset when the phase starts) is that phase's alone: a forked child would share
the emulator's district (hundreds of MB) and a thread would share one high-water mark across
phases. The peak includes the interpreter and its imports (``rss_at_start_mb`` says how much). The
emulators serve from this process, so a phase never shares its interpreter (or its GIL) with
the server. The figures are for one machine and one emulator; ``BENCHMARKS.md`` says which.
"""

from __future__ import annotations

import json
import math
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
from typing import Any, Protocol
from urllib.parse import urlencode

import requests
import sqlalchemy
from pydantic import SecretStr
from rich.table import Table

from devtools.demo import consent_headlessly, headless_redirect
from devtools.emulation import settings_values
from emulators.clever import CleverEmulator
from emulators.core import EmulatorCore, RequestRecord
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from providers.registry import tokens_from_payload
from services.console import err, out
from services.linking import complete_link, link_org, start_link
from settings import Settings
from store import integrations
from store.runtime import Runtime, build_runtime
from store.vault import new_key

PROVIDERS = ("google", "clever", "microsoft")
DEFAULT_STUDENTS = {"google": 10_000, "clever": 100_000, "microsoft": 100_000}
"""A Clever district or an Entra tenant is linked once for all its students; Google is linked teacher by
teacher, so its default is a hundred-odd teacher links rather than a district's worth of them."""
CLASS_SIZE = {"google": 30, "clever": 25, "microsoft": 25}
"""Students per class; the district generator shares a fifth of each class with the previous one."""
CLASSES_PER_TEACHER = 5
API_PREFIX = {"google": "/v1/", "clever": "/v3.0/", "microsoft": "/v1.0/"}
BATCH_PATH = {"google": "/batch", "microsoft": "/v1.0/$batch"}
"""The batch endpoint of a provider that has one: a round trip of its own, its parts logged just before it."""
GOOGLE_COURSES_PAGE, GOOGLE_ROSTER_PAGE = 10, 30  # the emulator's caps; Google's documented roster default is 30
GOOGLE_BATCH = 50  # Classroom's documented batch limit (connectors.google.BATCH_LIMIT)
CLEVER_PAGE = 10_000  # Clever's largest ``limit``
GRAPH_PAGE, GRAPH_BATCH = 999, 20  # Graph's largest $top for directory lists; its $batch limit
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
        written += outcome.counters()["rows_written"]
        outcomes.append(outcome.outcome)
    seconds = time.perf_counter() - started
    runtime.engine.dispose()
    return PhaseResult(seconds, written, start_rss, _rss_mb(), outcomes=outcomes)


@dataclass(frozen=True)
class Fetch:
    """One request of the baseline: a GET with its query, a Graph ``$batch`` with its JSON body, or a
    Google batch with its ``multipart/mixed`` body (``data``, sent as ``content_type``)."""

    method: str
    url: str
    token: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: dict[str, Any] | None = None
    data: bytes | None = None
    content_type: str | None = None


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


def _in_child(function: Callable[..., PhaseResult], *args: Any) -> PhaseResult:
    """Run one phase in a fresh interpreter, so its peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ------------------------------------------------------------------------------------ scenarios
class Scenario(Protocol):
    """One provider's district in its emulator: how it is built, linked, changed and counted."""

    name: str

    @property
    def emulator(self) -> EmulatorCore: ...

    def settings(self) -> dict[str, Any]: ...
    def link(self, runtime: Runtime) -> list[int]: ...
    def students(self) -> int: ...
    def classes(self) -> int: ...
    def minimum(self, *, resync: bool) -> int: ...
    def change(self, count: int) -> int: ...
    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]: ...


def _shape(students: int, class_size: int) -> tuple[int, int]:
    """Teachers and classes for about ``students`` students (each class shares a fifth with the previous)."""
    fresh = class_size - class_size // 5
    classes = max(1, math.ceil(students / fresh))
    return max(1, math.ceil(classes / CLASSES_PER_TEACHER)), class_size


def _pages(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


class GoogleScenario:
    """Teacher links of realistic size: five classes of thirty a teacher, one link per teacher."""

    name = "google"

    def __init__(self, students: int, workdir: Path) -> None:
        teachers, size = _shape(students, CLASS_SIZE["google"])
        self.emulator: GoogleEmulator = GoogleEmulator(
            teachers=teachers, courses_per_teacher=CLASSES_PER_TEACHER, students_per_course=size, cert_dir=workdir
        ).start()
        self._users: dict[int, str] = {}

    def settings(self) -> dict[str, Any]:
        return settings_values(self.name, self.emulator) | {"google_redirect_uri": headless_redirect("google")}

    def link(self, runtime: Runtime) -> list[int]:
        from connectors.google import http_session

        ids = []
        with http_session(runtime.settings) as browser:
            for n, user in enumerate(self.emulator.teacher_ids):
                self.emulator.set_consent_user(user)
                url = start_link(runtime, provider_name="google", teacher=f"bench-teacher-{n}")
                integration_id = complete_link(runtime, consent_headlessly(browser, url))
                self._users[integration_id] = user
                ids.append(integration_id)
        return ids

    def _active(self) -> set[str]:
        return {c for t in self.emulator.teacher_ids for c in self.emulator.course_ids_of(t, states=["ACTIVE"])}

    def students(self) -> int:
        return len({s for c in self._active() for s in self.emulator.student_ids_of(c)})

    def classes(self) -> int:
        return len(self._active())

    def minimum(self, *, resync: bool) -> int:
        """Per link: its course pages, then its roster list calls in batches of ``GOOGLE_BATCH`` (no change feed).

        A link's rosters need at least ceil(list calls / 50) batches, and at least as many as its longest
        roster has pages: a follow-up page can only be asked for once the page before it is in.
        """
        e = self.emulator
        teachers_of: dict[str, int] = {}
        for teacher in e.teacher_ids:
            for course in e.course_ids_of(teacher, states=["ACTIVE"]):
                teachers_of[course] = teachers_of.get(course, 0) + 1
        total = 0
        for teacher in e.teacher_ids:
            courses = e.course_ids_of(teacher, states=["ACTIVE"])
            total += _pages(len(courses), GOOGLE_COURSES_PAGE)
            listings = [_pages(len(e.student_ids_of(course)), GOOGLE_ROSTER_PAGE) for course in courses]
            listings += [_pages(teachers_of[course], GOOGLE_ROSTER_PAGE) for course in courses]
            if listings:
                total += max(math.ceil(sum(listings) / GOOGLE_BATCH), max(listings))
        return total

    def change(self, count: int) -> int:
        courses = sorted(self._active())
        for n in range(count):
            course = courses[n % len(courses)]
            leaving = self.emulator.student_ids_of(course)
            if leaving:
                self.emulator.remove_student(course, leaving[0])
            self.emulator.add_student(course)
        return count

    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]:
        by_user = {self._users[i]: _access_token(runtime, i) for i in ids}
        return lambda record: by_user[str(record.user_id)]


class CleverScenario:
    """One district linked school-wide (``link org``): its sections carry the student ids."""

    name = "clever"

    def __init__(self, students: int, workdir: Path) -> None:
        teachers, size = _shape(students, CLASS_SIZE["clever"])
        self.emulator: CleverEmulator = CleverEmulator(
            districts=1,
            teachers=teachers,
            courses_per_teacher=CLASSES_PER_TEACHER,
            students_per_course=size,
            library_teachers=0,
            cert_dir=workdir,
            rate_limit=10**9,  # the bench measures speed; the published limit is the fleet's business
        ).start()
        self.district = self.emulator.district_ids[0]

    def settings(self) -> dict[str, Any]:
        return settings_values(self.name, self.emulator)

    def link(self, runtime: Runtime) -> list[int]:
        return [link_org(runtime, provider_name="clever", org=self.district, tenant=f"bench-{uuid.uuid4().hex[:8]}")]

    def students(self) -> int:
        return len(self.emulator.student_ids(self.district))

    def classes(self) -> int:
        return len(self.emulator.section_ids(self.district))

    def minimum(self, *, resync: bool) -> int:
        """Full: the event cursor, the sections (students ride inside them), the teachers. Re-sync: one events page."""
        if resync:
            return 1
        sections = _pages(self.classes(), CLEVER_PAGE)
        return 1 + sections + _pages(len(self.emulator.teacher_ids(self.district)), CLEVER_PAGE)

    def change(self, count: int) -> int:
        sections = self.emulator.section_ids(self.district)
        for n in range(count):
            section = sections[n % len(sections)]
            leaving = self.emulator.students_of(section)
            if leaving:
                self.emulator.remove_student(section, leaving[0])
            self.emulator.add_student(section)
        return count

    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]:
        token = self.emulator.district_token(self.district)
        assert token is not None
        return lambda record: token


class MicrosoftScenario:
    """One Entra tenant linked school-wide (client credentials): classes, then members in ``$batch``es."""

    name = "microsoft"

    def __init__(self, students: int, workdir: Path) -> None:
        teachers, size = _shape(students, CLASS_SIZE["microsoft"])
        self.emulator: MicrosoftEmulator = MicrosoftEmulator(
            tenants=1,
            teachers=teachers,
            courses_per_teacher=CLASSES_PER_TEACHER,
            students_per_course=size,
            cert_dir=workdir,
        ).start()
        self.tenant = self.emulator.tenant_ids[0]

    def settings(self) -> dict[str, Any]:
        return settings_values(self.name, self.emulator)

    def link(self, runtime: Runtime) -> list[int]:
        return [link_org(runtime, provider_name="microsoft", org=self.tenant, tenant=f"bench-{uuid.uuid4().hex[:8]}")]

    def students(self) -> int:
        return len(self.emulator.student_ids(self.tenant))

    def classes(self) -> int:
        return len(self.emulator.class_ids(self.tenant))

    def minimum(self, *, resync: bool) -> int:
        """Full: both delta walks (the cursor), the class list, members and teachers 20 to a ``$batch``.

        Re-sync: one page of class delta and one of user delta.
        """
        if resync:
            return 2
        classes = self.classes()
        users = classes and len(self.emulator.teacher_ids(self.tenant)) + self.students()
        return 2 * _pages(classes, GRAPH_PAGE) + _pages(users, GRAPH_PAGE) + math.ceil(2 * classes / GRAPH_BATCH)

    def change(self, count: int) -> int:
        e = self.emulator
        classes = e.class_ids(self.tenant)
        students = set(e.student_ids(self.tenant))
        for n in range(count):
            klass = classes[n % len(classes)]
            leaving = [m for m in e.members_of(klass) if m in students]
            if leaving:
                e.remove_member(klass, leaving[0])
            students.add(e.add_student(klass))
        return count

    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]:
        e = self.emulator
        answer = requests.post(
            e.authority(self.tenant) + "/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": e.client_id,
                "client_secret": e.client_secret,
                "scope": "https://graph.microsoft.com/.default",
            },
            verify=str(e.ca_path),
            timeout=30,
        )
        answer.raise_for_status()
        token = str(answer.json()["access_token"])
        return lambda record: token


SCENARIOS: dict[str, Callable[[int, Path], Scenario]] = {
    "google": GoogleScenario,
    "clever": CleverScenario,
    "microsoft": MicrosoftScenario,
}


def _access_token(runtime: Runtime, integration_id: int) -> str:
    blob = integrations.load(runtime.engine, integration_id).token_blob
    assert blob is not None
    token = tokens_from_payload(runtime.vault.open(blob)).access_token
    assert token is not None
    return token


# ------------------------------------------------------------------------------------ the baseline
def replay_plan(
    records: Sequence[RequestRecord], base_url: str, prefix: str, token: Callable[[RequestRecord], str]
) -> list[Fetch]:
    """The API requests of a full sync, from the emulator's log, as a plain client would send them.

    The log holds a batch's parts just before the batch itself (one request is served at a time
    under the emulator's lock), so they are gathered back into its body: a Graph ``$batch``'s JSON,
    a Google batch's ``multipart/mixed`` (the token on the batch, which Google applies to its parts).
    """
    plan: list[Fetch] = []
    pending: list[RequestRecord] = []

    def flush() -> None:
        for record in pending:
            plan.append(Fetch("GET", base_url + record.path, token(record), _params(record)))
        pending.clear()

    for record in records:
        if record.path == BATCH_PATH["google"] and prefix == API_PREFIX["google"]:
            data, content_type = multipart_body(pending)
            plan.append(Fetch("POST", base_url + record.path, token(record), data=data, content_type=content_type))
            pending.clear()
            continue
        if not record.path.startswith(prefix):
            continue
        if record.path.endswith("/$batch"):
            body = {
                "requests": [
                    {
                        "id": str(n),
                        "method": "GET",
                        "url": record_url(sub, prefix),
                    }
                    for n, sub in enumerate(pending)
                ]
            }
            plan.append(Fetch("POST", base_url + record.path, token(record), body=body))
            pending.clear()
        elif record.path.rstrip("/").endswith(("/members", "/teachers")) and prefix == API_PREFIX["microsoft"]:
            pending.append(record)
        elif record.path.rstrip("/").endswith(("/students", "/teachers")) and prefix == API_PREFIX["google"]:
            pending.append(record)  # Google's roster lists travel only in batches
        else:
            flush()
            plan.append(Fetch("GET", base_url + record.path, token(record), _params(record)))
    flush()
    return plan


def multipart_body(parts: Sequence[RequestRecord]) -> tuple[bytes, str]:
    """A Google batch body of one ``application/http`` GET per logged part, and its Content-Type."""
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <part-{n}>\r\n\r\n"
        f"GET {record.path}?{urlencode(_params(record))} HTTP/1.1\r\n\r\n"
        for n, record in enumerate(parts, start=1)
    ]
    return ("".join(chunks) + f"--{boundary}--\r\n").encode(), f"multipart/mixed; boundary={boundary}"


def _params(record: RequestRecord) -> list[tuple[str, str]]:
    return [(name, value) for name, values in record.query.items() for value in values]


def record_url(record: RequestRecord, prefix: str) -> str:
    query = urlencode(_params(record), safe="$,")
    return "/" + record.path.removeprefix(prefix) + (f"?{query}" if query else "")


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


def bench_provider(name: str, students: int, databases: Sequence[tuple[str, str]], workdir: Path) -> dict[str, Any]:
    """Build the district, then baseline and the three phases on every database; the figures as a dict."""
    err.print(f"[bold]{name}[/]: building a district of about {students:,} students in the emulator")
    scenario = SCENARIOS[name](students, workdir)
    counter = Counter(API_PREFIX[name], BATCH_PATH.get(name))
    scenario.emulator.add_hook(counter)
    try:
        return _measure(scenario, counter, databases)
    finally:
        scenario.emulator.stop()


def _measure(scenario: Scenario, counter: Counter, databases: Sequence[tuple[str, str]]) -> dict[str, Any]:
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
                records = scenario.emulator.requests[log_start:]
                plan = replay_plan(records, scenario.emulator.base_url, API_PREFIX[name], scenario.tokens(runtime, ids))
                err.print(f"  baseline: the same {len(plan)} requests with a plain requests session ...")
                baseline = _in_child(_baseline_phase, str(scenario.emulator.ca_path), plan)
                baseline.requests = len(plan)
            err.print(
                f"    {result.seconds:.2f} s, {result.requests} requests, {result.rows_written} rows written, "
                f"peak RSS {result.peak_rss_mb:.0f} MB"
            )
        runtime.engine.dispose()
        assert baseline is not None
        per_database[database] = _database_figures(results, baseline)
    assert baseline is not None
    figures |= {
        "baseline_s": round(baseline.seconds, 3),
        "baseline_requests": baseline.requests,
        "baseline_peak_rss_mb": round(baseline.peak_rss_mb, 1),
    }
    figures |= per_database[databases[0][0]]  # the embedded default is the headline
    figures["databases"] = per_database
    err.print(
        f"  [bold]{name}[/]: full {figures['full_ratio']}x baseline, re-sync {figures['resync_ratio']}x, "
        f"{figures['requests']} requests (minimum {figures['requests_minimum']})"
    )
    return figures


def _database_figures(results: dict[str, PhaseResult], baseline: PhaseResult) -> dict[str, Any]:
    full, resync, change = results["full"], results["resync"], results["change"]
    return {
        "full_s": round(full.seconds, 3),
        "full_ratio": _ratio(full.seconds, baseline.seconds),
        "full_rows_written": full.rows_written,
        "resync_s": round(resync.seconds, 3),
        "resync_ratio": _ratio(resync.seconds, baseline.seconds),
        "resync_share_of_full": round(resync.seconds / full.seconds, 3) if full.seconds > 0 else 0.0,
        "resync_rows_written": resync.rows_written,
        "change_s": round(change.seconds, 3),
        "change_ratio": _ratio(change.seconds, baseline.seconds),
        "change_rows_written": change.rows_written,
        "requests": full.requests,
        "resync_requests": resync.requests,
        "change_requests": change.requests,
        "peak_rss_mb": round(max(r.peak_rss_mb for r in results.values()), 1),
        "phase_peak_rss_mb": {phase: round(r.peak_rss_mb, 1) for phase, r in results.items()},
        "rss_at_start_mb": round(full.rss_start_mb, 1),
        "outcomes": sorted({o for r in results.values() for o in r.outcomes}),
    }


def run_bench(providers: Sequence[str], students: int | None, database_url: str | None = None) -> dict[str, Any]:
    """The figures of every provider asked for, keyed by provider; every database and key is thrown away."""
    configured = database_url if database_url is not None else os.environ.get("ROSTERSYNC_DATABASE_URL")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rostersync-bench-") as workdir:
        for name in providers:
            with throwaway_databases(Path(workdir) / name, configured) as databases:
                (Path(workdir) / name).mkdir(exist_ok=True)
                report[name] = bench_provider(name, students or DEFAULT_STUDENTS[name], databases, Path(workdir) / name)
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
        "full",
        "re-sync",
        "1% change",
        "requests",
        "rows re-sync",
        "peak RSS MB",
    ):
        table.add_column(column, justify="right" if column not in ("provider", "db") else "left")
    for name, figures in report.items():
        if name == "fleet":
            continue
        for database, row in figures["databases"].items():
            table.add_row(
                name,
                database,
                f"{figures['students']:,}",
                f"{figures['baseline_s']:.2f}",
                f"{row['full_s']:.2f} ({row['full_ratio']}x)",
                f"{row['resync_s']:.2f} ({row['resync_ratio']}x)",
                f"{row['change_s']:.2f} ({row['change_ratio']}x)",
                f"{row['requests']} / {figures['requests_minimum']}",
                str(row["resync_rows_written"]),
                f"{row['peak_rss_mb']:.0f}",
            )
    if table.rows:
        out.print(table)
    if "fleet" in report:
        fleet = report["fleet"]
        out.print(
            f"fleet: {fleet['integrations']:,} teacher links, {fleet['workers']} workers: "
            f"{fleet['integrations_per_min']} integrations/min; {fleet['requests']:,} requests, "
            f"{fleet['limit_share']:.0%} of the {fleet['rate_limit_per_min']:,}/min quota "
            f"(busiest minute {fleet['busiest_minute_share']:.0%}); {fleet['http_429']} HTTP 429"
        )
