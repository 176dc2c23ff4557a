"""The ``rostersync`` command line (the contract of DESIGN.md). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import pydantic
import sqlalchemy.exc
import typer
from dramatiq.broker import Broker
from rich.table import Table

from connectors.base import ConnectorError
from settings import ConfigError, Settings
from store import integrations
from store.vault import VaultError
from worker import broker as brokers
from worker.console import configure_logging, err, out, sync_progress
from worker.linking import LinkError, complete_link, start_link
from worker.revoke import revoke_integration
from worker.runtime import Runtime, build_runtime, set_runtime

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
link_app = typer.Typer(no_args_is_help=True, help="Link a teacher's provider account (headless OAuth).")
app.add_typer(link_app, name="link")


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line; nothing personal or secret is printed."""
    try:
        yield
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        name = "ROSTERSYNC_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        fail(f"setting {name}: {first['msg']}")
    except (ConfigError, LinkError, VaultError, integrations.UnknownIntegration, ConnectorError) as error:
        fail(str(error))
    except sqlalchemy.exc.OperationalError as error:
        fail(f"database unreachable ({type(error.orig).__name__}); check ROSTERSYNC_DATABASE_URL")
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
    """The JSON shape shared by ``status --json`` and ``demo --json``."""
    return {
        "integrations": [
            {
                "id": summary.id,
                "provider": summary.provider,
                "status": summary.status,
                "classes": summary.counts.classes,
                "teachers": summary.counts.teachers,
                "students": summary.counts.students,
            }
            for summary in integrations.summaries(rt.engine)
        ]
    }


def print_status(rt: Runtime, as_json: bool) -> None:
    payload = status_payload(rt)
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    table = Table(title="integrations")
    for column in ("id", "provider", "status", "classes", "teachers", "students"):
        table.add_column(column, justify="right" if column in ("id", "classes", "teachers", "students") else "left")
    for row in payload["integrations"]:
        table.add_row(*(str(row[key]) for key in ("id", "provider", "status", "classes", "teachers", "students")))
    out.print(table)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log sync steps to stderr.")] = False) -> None:
    configure_logging(verbose)


@link_app.command("start")
def link_start(
    provider: Annotated[str, typer.Option(help="Provider to link: google.")],
    teacher: Annotated[str, typer.Option(help="The platform's id of the teacher who links.")],
    tenant: Annotated[str | None, typer.Option(help="The platform's school; the default tenant if left out.")] = None,
) -> None:
    """Print the consent URL (on a line of its own) for the teacher to open."""
    with user_errors():
        url = start_link(runtime(), provider_name=provider, teacher=teacher, tenant=tenant)
    err.print("Open this URL, grant access, then pass the URL you are sent back to to `rostersync link complete`:")
    sys.stdout.write(url + "\n")


@link_app.command("complete")
def link_complete(
    callback_url: Annotated[str, typer.Argument(help="The full URL the browser was sent back to.")],
) -> None:
    """Finish a link: exchange the code, check the scopes, store the tokens encrypted, enqueue the first sync."""
    with user_errors():
        rt = runtime()
        integration_id = complete_link(rt, callback_url)
        broker = install_broker(rt.settings)
        from worker.actors import sync_integration

        sync_integration.send(integration_id)
        err.print(f"linked: integration {integration_id}; first sync enqueued")
        if brokers.is_in_memory(broker):
            with sync_progress():
                brokers.drain(broker)
            brokers.shutdown()
    out.print(f"integration {integration_id}")


@app.command()
def sync(
    integration_id: Annotated[int | None, typer.Argument(help="Integration to sync.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Sync every active integration.")] = False,
    now: Annotated[bool, typer.Option("--now", help="Run here and now instead of through the queue.")] = False,
) -> None:
    """Sync one integration or all of them (queued; with the in-memory broker this waits until done)."""
    if (integration_id is None) == (not all_):
        fail("give an integration ID or --all (not both)")
    with user_errors():
        rt = runtime()
        ids = integrations.syncable_ids(rt.engine) if all_ else [integrations.load(rt.engine, integration_id or 0).id]
        if now:
            from worker.sync import run_sync

            with sync_progress():
                for one in ids:
                    result = run_sync(rt, one)
                    err.print(f"integration {one}: {result.outcome}")
            return
        broker = install_broker(rt.settings)
        from worker.actors import sync_integration

        for one in ids:
            sync_integration.send(one)
        err.print(f"enqueued {len(ids)} sync(s)")
        if brokers.is_in_memory(broker):
            with sync_progress():
                brokers.drain(broker)
            brokers.shutdown()


@app.command()
def revoke(
    integration_id: Annotated[int, typer.Argument(help="Integration to end.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Revoke an integration: local revoke and purge at once, then revoke the grant at the provider."""
    with user_errors():
        result = revoke_integration(runtime(), integration_id, actor="admin:cli", reason=reason)
    if result.already_revoked:
        err.print(f"integration {integration_id} was already revoked; nothing to do")
        return
    at_provider = "revoked at the provider" if result.provider_revoked else "provider revoke NOT confirmed"
    err.print(f"integration {integration_id}: revoked, tokens deleted, roster purged; {at_provider}")


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
    from worker.demo import run_demo

    with user_errors():
        run_demo(students, lambda rt: print_status(rt, as_json))


@app.command()
def emulate(
    provider: Annotated[str, typer.Option(help="Provider to emulate: google or clever.")] = "google",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 picks a free one).")] = 8443,
    students: Annotated[int, typer.Option(min=1, help="Students per course.")] = 25,
    teachers: Annotated[int, typer.Option(min=1, help="Teachers in the district (in each, for Clever).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic district.")] = 7,
) -> None:
    """Serve a local HTTPS emulator of the provider, and print the settings that point rostersync at it."""
    from emulators.clever import CleverEmulator
    from emulators.google import GoogleEmulator

    emulator: GoogleEmulator | CleverEmulator
    if provider == "google":
        emulator = GoogleEmulator(port=port, students_per_course=students, teachers=teachers, seed=seed)
    elif provider == "clever":
        emulator = CleverEmulator(port=port, students_per_course=students, teachers=teachers, seed=seed)
    else:
        fail(f"no emulator for {provider!r} yet (available: google, clever)")
    try:
        emulator.start()
    except OSError as error:
        fail(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}")
    if isinstance(emulator, GoogleEmulator):
        lines = {
            "ROSTERSYNC_GOOGLE_AUTH_URI": emulator.auth_uri,
            "ROSTERSYNC_GOOGLE_TOKEN_URI": emulator.token_uri,
            "ROSTERSYNC_GOOGLE_REVOKE_URI": emulator.revoke_uri,
            "ROSTERSYNC_GOOGLE_API_ENDPOINT": emulator.api_endpoint,
            "ROSTERSYNC_GOOGLE_CLIENT_ID": emulator.client_id,
            "ROSTERSYNC_GOOGLE_CLIENT_SECRET": emulator.client_secret,
        }
    else:
        lines = {
            "ROSTERSYNC_CLEVER_AUTHORIZE_URL": emulator.authorize_url,
            "ROSTERSYNC_CLEVER_TOKEN_URL": emulator.token_url,
            "ROSTERSYNC_CLEVER_API_BASE": emulator.api_base,
            "ROSTERSYNC_CLEVER_CLIENT_ID": emulator.client_id,
            "ROSTERSYNC_CLEVER_CLIENT_SECRET": emulator.client_secret,
        }
    lines["ROSTERSYNC_CA_BUNDLE"] = str(emulator.ca_path)
    for name, value in lines.items():
        sys.stdout.write(f"export {name}={value}\n")
    sys.stdout.flush()
    err.print(f"{provider.capitalize()} emulator on {emulator.base_url}; Ctrl-C stops it")
    if isinstance(emulator, CleverEmulator):
        library = ", ".join(emulator.teacher_ids(None))
        err.print(f"districts: {', '.join(emulator.district_ids)}; Library teachers: {library}")
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


@app.command()
def worker(args: Annotated[list[str] | None, typer.Argument(help="Extra arguments for `dramatiq`.")] = None) -> None:
    """Run Dramatiq workers on the configured broker (same as `dramatiq worker.actors`)."""
    with user_errors():
        settings = Settings()
        settings.require_secrets()
    if not settings.broker_url:
        fail("ROSTERSYNC_BROKER_URL is not set: the in-memory broker has no separate workers")
    os.execv(sys.executable, [sys.executable, "-m", "dramatiq", "worker.actors", *(args or [])])  # noqa: S606
