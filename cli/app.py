"""The ``rostersync`` command line (the contract of DESIGN.md). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pydantic
import sqlalchemy.exc
import typer
import typer.main
from dramatiq.broker import Broker
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer >= 0.29 vendors click here

from connectors.base import ConnectorError
from providers.config import browser_problems
from services import export_file
from services.console import configure_logging, err, out, sync_progress
from services.linking import LinkError, checked_request, complete_link, link_org, start_link
from services.revoke import revoke_integration
from settings import ConfigError, Settings
from store import integrations, runs
from store.db_errors import unusable_reason
from store.models import MAX_ID
from store.runtime import Runtime, build_runtime, set_runtime
from store.secrets import reseal_all
from store.vault import VaultError
from sync.consent import DEFAULT_BASIS
from sync.grants import AtProvider
from sync.outcomes import Verdict, verdict
from web import signing
from worker import broker as brokers
from worker.sync_requests import sync_after_link

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
link_app = typer.Typer(
    no_args_is_help=True, help="Link a teacher's provider account (headless OAuth), or a whole organisation."
)
app.add_typer(link_app, name="link")
keys_app = typer.Typer(no_args_is_help=True, help="Manage the keys that seal tokens at rest.")
app.add_typer(keys_app, name="keys")
held_app = typer.Typer(
    no_args_is_help=True, help="Removals the mass-removal breaker held: list them, approve or drop them."
)
app.add_typer(held_app, name="held")

IntegrationId = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="Integration id.")]


def error_line(message: str) -> None:
    """``error: ...`` on stderr; the message is printed literally (user and provider text is no markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def fail(message: str) -> NoReturn:
    error_line(message)
    raise typer.Exit(2)


def run() -> None:
    """The console entry point: usage mistakes and undecodable arguments are one ``error:`` line, exit 2."""
    args = sys.argv[1:]
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            error_line("an argument is not valid UTF-8")
            sys.exit(2)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="rostersync", standalone_mode=False)
    except NoArgsIsHelpError:
        code = command.main(args=[*args, "--help"], prog_name="rostersync", standalone_mode=False)
    except UsageError as error:
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        error_line(where + error.format_message().replace("\n", " "))
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line; nothing personal or secret is printed."""
    try:
        yield
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        name = "ROSTERSYNC_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        fail(f"setting {name}: {first['msg']}")
    except (
        ConfigError,
        LinkError,
        VaultError,
        integrations.UnknownIntegration,
        ConnectorError,
        brokers.BrokerUnavailable,
    ) as error:
        fail(str(error))
    except sqlalchemy.exc.OperationalError as error:
        fail(f"database unreachable: {unusable_reason(error)}; check ROSTERSYNC_DATABASE_URL")
    except sqlalchemy.exc.ArgumentError:
        fail("ROSTERSYNC_DATABASE_URL is not a valid database URL")


def runtime() -> Runtime:
    settings = Settings()
    built = build_runtime(settings)
    set_runtime(built)
    return built


def install_broker(settings: Settings) -> Broker:
    return brokers.install(brokers.make_broker(settings))


def status_payload(rt: Runtime) -> dict[str, list[dict[str, object]]]:
    """The JSON shape shared by ``status --json`` and ``demo --json``; ``held``: removals waiting for an admin."""
    from store import breaker

    return {
        "held": [view.as_json() for view in breaker.pending(rt.engine)],
        "integrations": [
            {
                "id": summary.id,
                "provider": summary.provider,
                "status": summary.status,
                "status_reason": summary.status_reason,
                "classes": summary.counts.classes,
                "teachers": summary.counts.teachers,
                "students": summary.counts.students,
            }
            for summary in integrations.summaries(rt.engine)
        ],
    }


def print_status(rt: Runtime, as_json: bool) -> None:
    payload = status_payload(rt)
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    columns = ("id", "provider", "status", "classes", "teachers", "students")
    table = Table(title="integrations")
    for column in columns:
        table.add_column(column, justify="right" if column in ("id", "classes", "teachers", "students") else "left")
    for row in payload["integrations"]:
        table.add_row(*(escape(str(row[key])) for key in columns))
    out.print(table)
    if payload["held"]:
        out.print(held_table(payload["held"]))
        err.print("approve with `rostersync held approve RUN_ID`, or drop with `rostersync held drop RUN_ID`")
    for row in payload["integrations"]:
        if row["status_reason"]:
            err.print(f"integration {row['id']} is {row['status']}: {escape(str(row['status_reason']))}")


HELD_COLUMNS = ("run_id", "integration_id", "provider", "reason", "classes", "enrollments", "people", "held_since")


def held_table(rows: list[dict[str, object]]) -> Table:
    """Held removals: what approving each would remove now, out of the integration's current counts."""
    table = Table(title="removals held by the mass-removal breaker")
    for column in HELD_COLUMNS:
        table.add_column(column.replace("_", " "), justify="left" if column in ("provider", "reason") else "right")
    for row in rows:
        cells = dict(row)
        cells["classes"] = f"{row['classes']} of {row['current_classes']}"
        cells["people"] = f"{row['people']} of {row['current_people']}"
        table.add_row(*(escape(str(cells[key])) for key in HELD_COLUMNS))
    return table


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log sync steps to stderr.")] = False) -> None:
    configure_logging(verbose)


ProviderOption = Annotated[str, typer.Option(help="Provider to link: google, clever or microsoft.")]
TeacherOption = Annotated[str, typer.Option(help="The platform's id of the teacher who links.")]
TenantOption = Annotated[str | None, typer.Option(help="The platform's school; the default tenant if left out.")]
TeacherBasisOption = Annotated[
    str, typer.Option(help="Consent basis (COPPA): school (the school's licence, a teacher acting for it) or parent.")
]


@link_app.command("start")
def link_start(
    provider: ProviderOption,
    teacher: TeacherOption,
    tenant: TenantOption = None,
    basis: TeacherBasisOption = DEFAULT_BASIS,
) -> None:
    """Print the consent URL (on a line of its own) for the teacher to open."""
    with user_errors():
        url = start_link(runtime(), provider_name=provider, teacher=teacher, tenant=tenant, basis=basis)
    err.print("Open this URL, grant access, then pass the URL you are sent back to to `rostersync link complete`:")
    sys.stdout.write(url + "\n")


@link_app.command("url")
def link_url(
    provider: ProviderOption,
    teacher: TeacherOption,
    tenant: TenantOption = None,
    basis: TeacherBasisOption = DEFAULT_BASIS,
) -> None:
    """Print a signed, single-use /link URL exactly as the platform makes one (valid ten minutes).

    For an operator helping a teacher: the teacher opens it in the browser they will finish in. Its
    host is the one of the provider's redirect URI (the web app's callback).
    """
    with user_errors():
        settings = Settings()
        basis = checked_request(provider_name=provider, teacher=teacher, tenant=tenant, basis=basis)
        if problems := browser_problems(settings, provider):
            fail(f"{provider} does not link in the browser on this server: {'; '.join(problems)}")
        assert settings.link_signing_key is not None  # browser_problems names a missing one
        url = signing.link_url(
            settings.link_signing_key.get_secret_value(),
            str(getattr(settings, f"{provider}_redirect_uri")),
            provider=provider,
            teacher=teacher,
            tenant=tenant,
            basis=basis,
            lifetime=signing.MAX_LIFETIME,
        )
    err.print("Give this link to the teacher; it works once, for ten minutes, in the browser that opens it:")
    sys.stdout.write(url + "\n")


@link_app.command("complete")
def link_complete(
    callback_url: Annotated[str, typer.Argument(help="The full URL the browser was sent back to.")],
) -> None:
    """Finish a link: exchange the code, check the scopes, store the tokens encrypted, enqueue the first sync."""
    with user_errors():
        rt = runtime()
        broker = install_broker(rt.settings)
        brokers.check(broker)  # before the single-use state is spent: a down broker leaves nothing half-done
        integration_id = complete_link(rt, callback_url)
        try:
            queued = sync_after_link(rt, integration_id)  # False: the scheduler has queued it already
        except brokers.BrokerUnavailable as error:
            fail(
                f"linked integration {integration_id}, but its first sync could not be queued: {error}; "
                f"run `rostersync sync {integration_id}` once the broker is back"
            )
        err.print(f"linked: integration {integration_id}; first sync {'enqueued' if queued else 'already queued'}")
        verdicts = wait_in_memory(rt, broker, [integration_id]) if queued else []
    out.print(f"integration {integration_id}")
    report(verdicts)


@link_app.command("org")
def link_org_command(
    provider: Annotated[
        str, typer.Option(help="Provider to link: clever (a district) or microsoft (an Entra tenant).")
    ],
    org: Annotated[
        str, typer.Option(help="The provider's id of the organisation (a Clever district id, an Entra tenant id).")
    ],
    tenant: Annotated[str | None, typer.Option(help="The platform's school; the default tenant if left out.")] = None,
    basis: Annotated[
        str, typer.Option(help="Consent basis (COPPA): school (the institution's own link, the default) or parent.")
    ] = "school",
) -> None:
    """Link a whole organisation with the app token it granted at the provider, and enqueue the first sync."""
    with user_errors():
        rt = runtime()
        broker = install_broker(rt.settings)
        brokers.check(broker)  # before anything is stored: a down broker leaves nothing half-done
        integration_id = link_org(rt, provider_name=provider, org=org, tenant=tenant, basis=basis)
        from worker.actors import sync_integration

        try:
            brokers.enqueue(sync_integration, integration_id)
        except brokers.BrokerUnavailable as error:
            fail(
                f"linked integration {integration_id}, but its first sync could not be queued: {error}; "
                f"run `rostersync sync {integration_id}` once the broker is back"
            )
        err.print(f"linked: integration {integration_id}; first sync enqueued")
        verdicts = wait_in_memory(rt, broker, [integration_id])
    out.print(f"integration {integration_id}")
    report(verdicts)


def wait_in_memory(rt: Runtime, broker: Broker, ids: list[int], *, since_run: int | None = None) -> list[Verdict]:
    """With the in-memory broker the work runs here: run it, then say how each sync ended."""
    if not brokers.is_in_memory(broker):
        return []
    after_run = since_run if since_run is not None else runs.last_run_id(rt.engine)
    with sync_progress():
        brokers.drain(broker)
    brokers.shutdown()
    outcomes = runs.latest_outcomes(rt.engine, ids, after_run=after_run)
    return [verdict(one, outcomes.get(one)) for one in ids]


def report(verdicts: list[Verdict]) -> None:
    """One line per sync; exit 1 when any of them did not finish well (the others still ran)."""
    for one in verdicts:
        if one.ok:
            err.print(escape(one.line))
        else:
            error_line(one.line)
    if any(not one.ok for one in verdicts):
        raise typer.Exit(1)


def syncable(rt: Runtime, integration_id: int) -> int:
    """The id, if it can be synced; a revoked, degraded or failed one is refused with what to do.

    A blocked one is synced: an admin who switched the setting back need not wait for its next try."""
    state = integrations.load(rt.engine, integration_id)
    if state.status == "failed":
        fail(
            f"integration {integration_id} is failed (`rostersync status` says why); once that is mended, "
            f"`rostersync resume {integration_id}` makes it active again"
        )
    if state.status not in ("active", "blocked"):
        fail(f"integration {integration_id} is {state.status}; link it again to sync it")
    return state.id


@app.command()
def sync(
    integration_id: Annotated[
        int | None, typer.Argument(min=1, max=MAX_ID, help="Integration to sync.", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Sync every active (or blocked) integration.")] = False,
    now: Annotated[bool, typer.Option("--now", help="Run here and now instead of through the queue.")] = False,
) -> None:
    """Sync one integration or all of them (queued; with the in-memory broker this waits until done).

    Exit code 1 when any sync did not complete (each is reported on its own line, the others still run).
    """
    if (integration_id is None) == (not all_):
        fail("give an integration ID or --all (not both)")
    with user_errors():
        rt = runtime()
        ids = integrations.syncable_ids(rt.engine) if all_ else [syncable(rt, integration_id or 0)]
        if now:
            verdicts = sync_here(rt, ids)
        else:
            broker = install_broker(rt.settings)
            brokers.check(broker)
            from worker.actors import sync_integration

            since_run = runs.last_run_id(rt.engine)
            for one in ids:
                brokers.enqueue(sync_integration, one)
            err.print(f"enqueued {len(ids)} sync(s)")
            verdicts = wait_in_memory(rt, broker, ids, since_run=since_run)
    report(verdicts)


def sync_here(rt: Runtime, ids: list[int]) -> list[Verdict]:
    """``sync --now``: every integration in turn, under the actor's retry policy (each wait shown on stderr).

    One's failure is reported and the next still runs.
    """
    from worker.retry_policy import run_with_retries, wait_line

    verdicts = []
    with sync_progress():
        for one in ids:
            try:
                outcome = run_with_retries(rt, one, on_wait=lambda wait: err.print(wait_line(wait), markup=False))
            except ConnectorError as error:
                verdicts.append(Verdict(one, False, f"integration {one}: sync failed: {error}"))
                continue
            verdicts.append(verdict(one, outcome))
    return verdicts


@app.command()
def revoke(
    integration_id: IntegrationId,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Revoke an integration: local revoke and purge at once, then revoke the grant at the provider."""
    with user_errors():
        result = revoke_integration(runtime(), integration_id, actor="admin:cli", reason=reason)
    if result.already_revoked:
        err.print(f"integration {integration_id} was already revoked; nothing to do")
        return
    at_provider = {
        AtProvider.REVOKED: "revoked at the provider",
        AtProvider.NOT_CONFIRMED: "provider revoke NOT confirmed (see the audit log)",
        AtProvider.NONE_HELD: "no grant was held any more (it was revoked at the provider when it ended)",
        AtProvider.PENDING: "the provider could not be reached: the revoke is kept sealed and retried by the worker",
        AtProvider.UNSUPPORTED: "the provider has no revoke endpoint, so access ends only when it is disconnected "
        "there (Clever: the district removes the app in its Clever dashboard; Microsoft: the tenant admin "
        "withdraws the app's consent or deletes its enterprise application in Entra)",
    }[result.at_provider]
    err.print(f"integration {integration_id}: revoked, tokens deleted, roster purged; {at_provider}")


@app.command()
def resume(integration_id: IntegrationId) -> None:
    """Make a failed integration active again (e.g. after a provider outage outlasted the retry caps)."""
    with user_errors():
        rt = runtime()
        resumed = integrations.resume_failed(rt.engine, integration_id, actor="admin:cli")
        current = None if resumed else integrations.load(rt.engine, integration_id)
    if current is not None:
        fail(
            f"integration {integration_id} is {current.status}, not failed; only a failed integration that still "
            "holds its tokens resumes (a revoked or degraded one is re-linked)"
        )
    err.print(f"integration {integration_id}: resumed; its next sync is due now")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-seal every stored secret under the first of ROSTERSYNC_TOKEN_KEYS, so the others can be retired."""
    with user_errors():
        rt = runtime()
        result = reseal_all(rt.engine, rt.vault)
    for integration_id in result.unreadable_integrations:
        err.print(
            f"warning: integration {integration_id}: its token opens with none of the configured keys; "
            "it cannot sync: add the key that sealed it back to ROSTERSYNC_TOKEN_KEYS and run `keys rotate` again "
            "(re-link it only if that key is lost)"
        )
    if result.unreadable_link_states:
        err.print(f"warning: {result.unreadable_link_states} consent(s) in flight cannot be opened; they will expire")
    err.print(
        f"re-sealed {result.tokens} token set(s) and {result.link_states} consent(s) in flight under the first key; "
        "keys after the first in ROSTERSYNC_TOKEN_KEYS can now be removed"
    )


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False) -> None:
    """Every integration with its status and current stored counts."""
    with user_errors():
        print_status(runtime(), as_json)


@app.command()
def demo(
    students: Annotated[int, typer.Option(min=1, max=200_000, help="Students in the synthetic district.")] = 150,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON on stdout.")] = False,
) -> None:
    """The whole story on embedded defaults against the local emulator."""
    from devtools.demo import run_demo

    with user_errors():
        run_demo(students, lambda rt: print_status(rt, as_json))


@app.command()
def bench(
    provider: Annotated[str | None, typer.Option(help="google, clever or microsoft; all three when left out.")] = None,
    students: Annotated[
        int | None,
        typer.Option(min=1, max=500_000, help="Students per district (default 100,000; Google 10,000)."),
    ] = None,
    fleet: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=20_000,
            help="Link this many Google teachers (the issue's fleet: 2000) and sync them all through Redis "
            "with two worker processes, under the provider's quota. Alone, only the fleet runs.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, keyed by provider.")] = False,
) -> None:
    """Time full, no-change and 1% change syncs against a plain download of the same pages (BENCHMARKS.md)."""
    from devtools.bench import PROVIDERS, print_report, run_bench

    if provider is not None and provider not in PROVIDERS:
        fail(f"--provider must be one of {', '.join(PROVIDERS)}")
    if fleet is not None and provider not in (None, "google"):
        fail("--fleet measures Google teacher links only")
    with user_errors():
        report: dict[str, Any] = {}
        if fleet is None or students is not None:
            report = run_bench([provider] if provider else list(PROVIDERS), students)
        if fleet is not None:
            from devtools.fleet_bench import FleetError, run_fleet

            try:
                report["fleet"] = run_fleet(fleet)
            except FleetError as error:
                fail(str(error))
        print_report(report, as_json)


@app.command()
def emulate(
    provider: Annotated[str, typer.Option(help="Provider to emulate: google, clever or microsoft.")] = "google",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 picks a free one).")] = 8443,
    students: Annotated[int, typer.Option(min=1, help="Students per course.")] = 25,
    teachers: Annotated[int, typer.Option(min=1, help="Teachers per district (or tenant, for Microsoft).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic district.")] = 7,
) -> None:
    """Serve a local HTTPS emulator of the provider, and print the settings that point rostersync at it."""
    from devtools import emulation

    try:
        with emulation.serving(provider, port=port, students=students, teachers=teachers, seed=seed) as (
            served,
            emulator,
        ):
            for name, value in served.environment.items():
                sys.stdout.write(f"export {name}={value}\n")
            sys.stdout.flush()
            err.print(f"{provider.capitalize()} emulator on {served.base_url}; Ctrl-C stops it")
            for note in served.notes:
                err.print(note)
            with contextlib.suppress(KeyboardInterrupt):
                emulator.serve_forever()
    except emulation.UnknownEmulator as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run Dramatiq workers on the configured broker: `dramatiq worker.actors` with every option passed on.

    `rostersync worker --processes 2 --threads 8`. Each worker group exports Prometheus metrics on
    ROSTERSYNC_WORKER_METRICS_PORT (127.0.0.1 unless dramatiq_prom_host says otherwise).
    """
    with user_errors():
        settings = Settings()
        settings.require_secrets()
        if not settings.broker_url:
            fail("ROSTERSYNC_BROKER_URL is not set: the in-memory broker has no separate workers")
        # Before Dramatiq says it is ready: a database it cannot use (or a schema not migrated) would fail
        # every message it takes; the scheduler and the web app check the same at their start.
        build_runtime(settings).engine.dispose()
    env = os.environ.copy()
    if settings.worker_metrics_port:
        env.setdefault("dramatiq_prom_port", str(settings.worker_metrics_port))
        env.setdefault("dramatiq_prom_host", "127.0.0.1")
        metrics_dir = Path(tempfile.gettempdir()) / f"rostersync-prometheus-{env['dramatiq_prom_port']}"
        metrics_dir.mkdir(mode=0o700, exist_ok=True)  # one directory per worker group: dramatiq clears it at start
        env.setdefault("dramatiq_prom_db", str(metrics_dir))
    command = [sys.executable, "-m", "dramatiq", "worker.actors", *ctx.args]
    os.execve(sys.executable, command, env)  # noqa: S606


@app.command()
def scheduler(
    once: Annotated[
        bool, typer.Option("--once", help="Run every due sync and revoke in this process, then exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --once: one JSON object on stdout.")] = False,
) -> None:
    """Claim due syncs and pending provider revokes, and enqueue them (Redis) or run them here (--once).

    Without --once it ticks every ROSTERSYNC_SCHEDULER_TICK_SECONDS until stopped; several may run.
    """
    from worker.scheduler import run_due_here, serve, tick

    with user_errors():
        rt = runtime()
        broker = install_broker(rt.settings)
        brokers.check(broker)
        in_memory = brokers.is_in_memory(broker)
        if once:
            with sync_progress():
                report = run_due_here(rt) if in_memory else tick(rt)
        else:
            err.print(f"scheduler: ticking every {rt.settings.scheduler_tick_seconds:g}s; Ctrl-C stops it")
            serve(rt, run_due_here if in_memory else tick)
            return
    if as_json:
        sys.stdout.write(json.dumps(report.as_json()) + "\n")
    else:
        verb = "ran" if in_memory else "enqueued"
        err.print(f"{verb} {len(report.syncs)} due sync(s) and {report.revokes} provider revoke attempt(s)")
    for integration_id in report.failed:
        error_line(f"integration {integration_id}: sync failed; it stays due for the next run")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the linking pages and the admin API (uvicorn); put it behind TLS, see docs/deploy.md."""
    import uvicorn

    from web.app import create_app
    from web.serving import uvicorn_config

    with user_errors():
        rt = runtime()
        app_ = create_app(rt)
    listening = listen(host, port)
    server = uvicorn.Server(uvicorn_config(app_, rt.settings, host=host, port=port))
    server.run(sockets=[listening])
    if not server.started:  # the app's start-up failed (uvicorn.run would exit 3 here)
        fail("the web app did not start (run with -v for the log)")


def listen(host: str, port: int) -> socket.socket:
    """The web app's socket, bound here so a busy port or an unknown host is one ``error:`` line and exit 2
    (uvicorn binding it itself logs its own text and exits 3)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror or type(error).__name__
        fail(f"cannot listen on {host}:{port}: {reason}")


# --- Data-subject rights, retention, audit and inventory (issue 9) --------------------------------------------

RIGHTS_ACTOR = "admin:cli"
suppressions_app = typer.Typer(no_args_is_help=True, help="Suppressed (erased) people kept out of syncs.")
account_app = typer.Typer(no_args_is_help=True, help="Platform accounts and their retention.")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(account_app, name="account")


@contextmanager
def rights_errors() -> Iterator[None]:
    """``user_errors`` plus the rights commands' own expected failures: one line, exit 2."""
    from services.rights import RightsError
    from store.retention import AlreadyDeleted
    from store.rights import PersonNotFound, StillActive

    with user_errors():
        try:
            yield
        except (RightsError, PersonNotFound, StillActive, AlreadyDeleted) as error:
            fail(str(error))


def _json_out(payload: object) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")


@app.command()
def export(
    person: Annotated[str | None, typer.Option(help="Pseudonym of the person to export (JSON).")] = None,
    integration: Annotated[int | None, typer.Option(min=1, max=MAX_ID, help="Integration to export.")] = None,
    format_: Annotated[
        str, typer.Option("--format", help="json, or oneroster (a zip of OneRoster 1.2 CSV files; needs --out).")
    ] = "json",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Export what is stored about one person or one integration (P9: access, portability); audited."""
    if (person is None) == (integration is None):
        fail("give --person PSEUDONYM or --integration ID (one of them)")
    if format_ not in ("json", "oneroster"):
        fail("--format is json or oneroster")
    if format_ == "oneroster" and (integration is None or out_file is None):
        fail("--format oneroster exports an integration to a zip file: give --integration ID and --out FILE")
    if out_file is None:
        sys.stdout.write(_export_payload(person, integration, oneroster=False).decode())
        return
    try:  # the file is created first, so an export is never audited as done when it cannot be delivered
        with export_file.replacing(out_file) as handle:
            handle.write(_export_payload(person, integration, oneroster=format_ == "oneroster"))
    except OSError as error:
        fail(f"cannot write {out_file}: {error.strerror or type(error).__name__}")
    err.print(f"export written to {out_file}")


def _export_payload(person: str | None, integration: int | None, *, oneroster: bool) -> bytes:
    from services import rights as rights_ops

    with rights_errors():
        rt = runtime()
        if person is not None:
            export = rights_ops.export_person(rt, person, actor=RIGHTS_ACTOR)
            return (json.dumps(export, indent=2) + "\n").encode()
        return rights_ops.export_integration(rt, integration or 0, actor=RIGHTS_ACTOR, oneroster=oneroster)


@app.command()
def erase(
    pseudonym: Annotated[str | None, typer.Argument(help="Pseudonym of the person to erase.")] = None,
    integration: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="Erase a whole integration instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The result as one JSON object on stdout.")] = False,
) -> None:
    """Erase a person (rows and enrolments at once, then suppressed) or an integration (P8, P9); audited."""
    from services import rights as rights_ops

    if (pseudonym is None) == (integration is None):
        fail("give a PSEUDONYM or --integration ID (one of them)")
    with rights_errors():
        rt = runtime()
        if pseudonym is not None:
            person = rights_ops.erase_person(rt, pseudonym, actor=RIGHTS_ACTOR)
            result: dict[str, object] = {
                "erased": "person",
                "integrations": person.integrations,
                "revoked_first": person.revoked,
                "people": person.people,
                "enrollments": person.enrollments,
                "suppressed": True,
            }
            where = ", ".join(map(str, person.integrations))
            line = (
                f"erased from integration(s) {where}: {person.people} person row(s), "
                f"{person.enrollments} enrolment(s); suppressed until `rostersync suppressions lift`"
            )
            if person.revoked:
                line += f"; owned integration(s) revoked first: {', '.join(map(str, person.revoked))}"
        else:
            erased = rights_ops.erase_integration(rt, integration or 0, actor=RIGHTS_ACTOR)
            result = {
                "erased": "integration",
                "integrations": [erased.integration_id],
                "revoked_first": [erased.integration_id] if erased.revoked_first else [],
                "rows": erased.rows,
            }
            line = f"integration {erased.integration_id} erased ({erased.rows} rows)" + (
                "; revoked first" if erased.revoked_first else ""
            )
    if as_json:
        _json_out(result)
    else:
        err.print(line, markup=False)


@suppressions_app.command("list")
def suppressions_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Every suppression: provider, tenant, pseudonym, since when, by whom."""
    from store import suppressions

    with rights_errors():
        entries = suppressions.entries(runtime().engine)
    rows = [
        {
            "provider": e.provider,
            "tenant": e.tenant,
            "pseudonym": e.pseudonym,
            "since": e.created_at.isoformat() + "Z",
            "by": e.created_by,
        }
        for e in entries
    ]
    if as_json:
        _json_out({"suppressions": rows})
        return
    for row in rows:
        sys.stdout.write("\t".join(str(row[key]) for key in ("provider", "tenant", "pseudonym", "since", "by")) + "\n")


@suppressions_app.command("lift")
def suppressions_lift(pseudonym: Annotated[str, typer.Argument(help="Pseudonym to let back in.")]) -> None:
    """Lift a suppression: the next sync brings the person back if the provider still lists them; audited."""
    from services import rights as rights_ops

    with rights_errors():
        lifted = rights_ops.lift_suppression(runtime(), pseudonym, actor=RIGHTS_ACTOR)
    err.print(f"suppression lifted ({lifted} entr{'y' if lifted == 1 else 'ies'}); the next sync may bring them back")


@account_app.command("mark-deleted")
def account_mark_deleted(
    account: Annotated[str, typer.Argument(help="The platform's account id (what `link start --teacher` took).")],
) -> None:
    """Record that the platform deleted this account: what it linked is purged 6 months from now (P10)."""
    from services.retention import mark_account_deleted

    if not account.strip() or len(account) > 128:
        fail("an account id is 1 to 128 characters")
    with rights_errors():
        rt = runtime()
        linked = mark_account_deleted(rt, account, actor=RIGHTS_ACTOR)
    months = rt.settings.deleted_account_retention_months
    err.print(
        f"account marked deleted; the {len(linked)} integration(s) it linked stop syncing now "
        f"and are revoked and purged in {months} months"
    )


@app.command("purge-expired")
def purge_expired_command(
    as_json: Annotated[bool, typer.Option("--json", help="The counts as one JSON object on stdout.")] = False,
) -> None:
    """Run the retention job now (P10): expired rows, ended integrations, deleted accounts; one audit event."""
    from services.retention import purge_expired

    with rights_errors():
        report = purge_expired(runtime())
    payload = report.as_json()
    if as_json:
        _json_out(payload)
        return
    err.print(
        f"purged: {report.removed_rows} soft-deleted row(s), {report.ended_rows} row(s) of ended integrations, "
        f"{report.link_attempts} consent(s) in flight, {report.accounts} deleted account(s) "
        f"({report.account_rows} row(s), {len(report.revoked)} grant(s) revoked)"
    )


@app.command("audit")
def audit_command(
    integration: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="Only events touching this integration.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """The audit log: time, actor, action, integration, consent basis, ids and counts."""
    from store import audit

    with rights_errors():
        events = audit.events(runtime().engine, integration)
    if as_json:
        _json_out({"events": [event.as_json() for event in events]})
        return
    for event in events:
        fields = [
            event.at.isoformat(timespec="seconds") + "Z",
            event.action,
            event.actor,
            f"integration {event.integration_id}" if event.integration_id is not None else "-",
            f"consent basis: {event.consent_basis}" if event.consent_basis else "",
            json.dumps(event.details, sort_keys=True) if event.details else "",
            event.reason,
        ]
        sys.stdout.write("\t".join(fields).rstrip("\t") + "\n")


@app.command()
def inventory(
    integration_id: Annotated[
        int | None, typer.Argument(min=1, max=MAX_ID, help="One integration; every provider if left out.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """What is asked, fetched, kept and for how long, generated from the allowlist, field masks and settings."""
    from providers.registry import PROVIDERS
    from services import inventory as inv

    with rights_errors():
        if integration_id is None:
            settings = Settings()
            inventories = [inv.provider_inventory(settings, name) for name in sorted(PROVIDERS)]
            payload: dict[str, object] = {"providers": inventories}
        else:
            one = inv.integration_inventory(runtime(), integration_id)
            inventories = [one]
            payload = one
    if as_json:
        _json_out(payload)
        return
    sys.stdout.write("\n".join(inv.render(one) for one in inventories))


# --- The mass-removal breaker (issue 10, part 1) ---------------------------------------------------------------

RunId = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The run that held the removals (`held list`).")]


@contextmanager
def held_errors() -> Iterator[None]:
    from store.breaker import HoldError

    with user_errors():
        try:
            yield
        except HoldError as error:
            fail(str(error))


@held_app.command("list")
def held_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False) -> None:
    """Every held sweep: its run, integration, why, and what approving it would remove now."""
    from store import breaker

    with held_errors():
        rows = [view.as_json() for view in breaker.pending(runtime().engine)]
    if as_json:
        _json_out({"held": rows})
    elif rows:
        out.print(held_table(rows))
    else:
        err.print("no removals are held")


@held_app.command("approve")
def held_approve(run_id: RunId) -> None:
    """Apply exactly the removals this run held (fenced: a revoke or re-link since wins); audited."""
    from store import breaker

    with held_errors():
        rt = runtime()
        done = breaker.approve(rt.engine, run_id, actor=RIGHTS_ACTOR, lease_seconds=rt.settings.lease_seconds)
    err.print(f"integration {done.integration_id}: run {run_id}'s held removals applied ({done.removed} row(s))")


@held_app.command("drop")
def held_drop(run_id: RunId) -> None:
    """Discard this run's held removals: nothing is removed; a later listing that still misses them holds again."""
    from store import breaker

    with held_errors():
        done = breaker.drop(runtime().engine, run_id, actor=RIGHTS_ACTOR)
    err.print(f"integration {done.integration_id}: run {run_id}'s held removals dropped; nothing removed")
