"""The long-running processes: ``web``, ``worker``, ``scheduler``, and ``emulate`` for a local provider."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli.choices import ORGANISATIONS, PROVIDER_CHOICES, provider_name
from cli.common import error_line, fail, install_broker, runtime, user_errors
from providers.registry import SUPPORTED
from services.console import err, sync_progress
from settings import Settings
from store.runtime import build_runtime
from worker import broker as brokers
from worker.scheduler import run_due_here, serve, tick


def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the linking pages and the admin API; put it behind TLS (see docs/deploy.md)."""
    # lazy: the web app and uvicorn take 0.8 s to import, which every other command would pay at start
    import uvicorn

    from web.app import create_app
    from web.serving import uvicorn_config

    with user_errors():
        rt = runtime()
        app_ = create_app(rt)
    listening = listen(host, port)  # first: a port it cannot take is the one line said, without warnings before it
    for warning in unset_for_web(rt.settings):
        err.print(f"warning: {warning}", markup=False)
    address, bound_port = listening.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    err.print(f"rostersync web: listening on http://{shown}:{bound_port} (put TLS in front of it: docs/deploy.md)")
    server = uvicorn.Server(uvicorn_config(app_, rt.settings, host=host, port=port))
    server.run(sockets=[listening])
    if not server.started:  # the app's start-up failed (uvicorn.run would exit 3 here)
        fail("the web app did not start (run with -v for the log)")


def unset_for_web(settings: Settings) -> list[str]:
    """What the web app serves to nobody for want of a setting: said at its start, so a missing secret is not
    found by the first person refused."""
    unset = {
        "ROSTERSYNC_ADMIN_TOKENS": (settings.admin_tokens, "the admin API refuses everyone"),
        "ROSTERSYNC_LINK_SIGNING_KEY": (settings.link_signing_key, "teachers cannot link in the browser"),
        "ROSTERSYNC_PLATFORM_TOKENS": (settings.platform_tokens, "the platform API refuses everyone"),
    }
    return [
        f"{name} is not set: {effect}"
        for name, (value, effect) in unset.items()
        if value is None or not value.get_secret_value().strip()  # an empty value configures nothing either
    ]


def listen(host: str, port: int) -> socket.socket:
    """The web app's socket, bound here so a busy port or an unknown host is one ``error:`` line and exit 2
    (uvicorn binding it itself logs its own text and exits 3)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror or type(error).__name__
        fail(f"cannot listen on {host}:{port}: {reason}")


def worker(ctx: typer.Context) -> None:
    """Run Dramatiq workers on the configured broker (dramatiq worker.main), with every option passed on.

    For example: rostersync worker --processes 2 --threads 8. Each worker group exports Prometheus metrics on
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
        env.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")  # as the web app's /metrics: no _created
        metrics_dir = Path(tempfile.gettempdir()) / f"rostersync-prometheus-{env['dramatiq_prom_port']}"
        metrics_dir.mkdir(mode=0o700, exist_ok=True)  # one directory per worker group: dramatiq clears it at start
        env.setdefault("dramatiq_prom_db", str(metrics_dir))
    command = [sys.executable, "-m", "dramatiq", "worker.main", *ctx.args]
    os.execve(sys.executable, command, env)  # noqa: S606


def scheduler(
    once: Annotated[
        bool, typer.Option("--once", help="Run every due sync and revoke in this process, then exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --once: one JSON object on stdout.")] = False,
) -> None:
    """Claim due syncs and pending provider revokes, and enqueue them (Redis) or run them here (--once).

    Without --once it ticks every ROSTERSYNC_SCHEDULER_TICK_SECONDS until stopped; several may run.
    """
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


TEACHERS_HELP = (
    f"Teachers per organisation ({', '.join(ORGANISATIONS.values())}); in all for a provider whose teachers link "
    "one by one."
)


def emulate(
    provider: Annotated[
        str, typer.Option(help=f"Provider to emulate: {PROVIDER_CHOICES}.", callback=provider_name)
    ] = SUPPORTED[0],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 picks a free one).")] = 8443,
    students: Annotated[int, typer.Option(min=1, help="Students per course.")] = 25,
    teachers: Annotated[int, typer.Option(min=1, help=TEACHERS_HELP)] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic district.")] = 7,
) -> None:
    """Serve a local HTTPS emulator of the provider, and print the settings that point rostersync at it."""
    from devtools import emulation  # lazy: devtools brings the emulators, which only dev commands load

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
