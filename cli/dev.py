"""Developer commands: ``demo`` and ``bench`` (devtools, against the local emulators)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.choices import PROVIDER_CHOICES, provider_name
from cli.common import fail, user_errors
from cli.status import print_status

if TYPE_CHECKING:
    from store.runtime import Runtime  # the demo's own runtime; imported by the demo itself, not at start-up


def demo(
    students: Annotated[int, typer.Option(min=1, max=200_000, help="Students in the synthetic district.")] = 150,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON on stdout.")] = False,
    console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="After the story, serve the admin console on its data at http://localhost:8000/console/ "
            "with a throwaway admin token, until Ctrl-C.",
        ),
    ] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="With --console: the port on 127.0.0.1.")] = 8000,
) -> None:
    """The whole story on embedded defaults against the local emulator."""
    from devtools.demo import run_demo, tell_console  # lazy: devtools brings the emulators (dev commands only)

    def report(rt: Runtime) -> None:
        print_status(rt.engine, as_json)
        if console:
            _serve_console(rt, port)
        else:
            tell_console(rt, None)

    rostersync_log = logging.getLogger("rostersync")
    if not rostersync_log.isEnabledFor(logging.INFO):  # without -v the story tells each event in its own words;
        rostersync_log.setLevel(logging.ERROR)  # the sync's warning of the same event would interrupt it
    with user_errors():
        run_demo(students, report)


def _serve_console(rt: Runtime, port: int) -> None:
    """The web app on the demo's runtime, on the loopback interface, until Ctrl-C; then the demo cleans up."""
    import uvicorn

    from cli.serve import listen
    from devtools.demo import tell_console
    from web.app import create_app
    from web.serving import uvicorn_config

    app_ = create_app(rt)
    listening = listen("127.0.0.1", port)
    tell_console(rt, f"http://localhost:{port}/console/")
    uvicorn.Server(uvicorn_config(app_, rt.settings, host="127.0.0.1", port=port)).run(sockets=[listening])


WithoutOutbox = Annotated[
    bool,
    typer.Option(
        "--without-outbox",
        help="Also run the same syncs on a copy of each database without the outbox's triggers (dropped in the "
        "bench's throwaway databases only), reported beside it as sqlite_without_outbox (and "
        "postgresql_without_outbox).",
    ),
]
"""``bench --without-outbox``: the outbox's cost, measured in the same run (devtools/outbox_off.py)."""
ClassSize = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=100_000,
        help="Instead of a district: ONE teacher link whose classes hold this many students each, as many "
        "classes as make --students (a provider whose links are teachers; e.g. --students 6000 --class-size 3000: "
        "two classes of 3,000).",
    ),
]
"""``bench --class-size``: the big teacher (``BenchKit.one_teacher``)."""


def _refuse_mismatches(provider: str | None, class_size: int | None, fleet: int | None) -> None:
    """The option combinations ``bench`` cannot run, each refused with one line naming what would do."""
    from devtools.bench import BENCHES, PROVIDERS
    from devtools.fleet_bench import fleet_kit

    if provider is not None and provider not in PROVIDERS:
        fail(f"--provider must be one of {', '.join(PROVIDERS)}")
    if class_size is not None and (provider is None or BENCHES[provider].one_teacher is None):
        fail(f"--class-size needs --provider {' or '.join(n for n, b in BENCHES.items() if b.one_teacher)}")
    if fleet is not None and provider not in (None, fleet_kit().name):
        fail(f"--fleet measures {fleet_kit().name.capitalize()} teacher links only")


def bench(
    provider: Annotated[
        str | None, typer.Option(help=f"{PROVIDER_CHOICES}; all of them when left out.", callback=provider_name)
    ] = None,
    students: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=500_000,
            help="Students per district (default 100,000 where a whole organisation links at once; 10,000 where "
            "teachers link one by one).",
        ),
    ] = None,
    class_size: ClassSize = None,
    fleet: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=20_000,
            help="Link this many teachers (2000 makes a busy platform) of the provider whose emulator enforces its "
            "published quota, and sync them all through Redis with two worker processes, under that quota. "
            "Alone, only the fleet runs.",
        ),
    ] = None,
    feed: Annotated[
        bool,
        typer.Option(
            "--feed",
            help="Measure the platform API instead: GET /v1/changes pages of 1,000 events and the web process's "
            "memory over the whole snapshot, for a district of --students (default 100,000).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, keyed by provider.")] = False,
    without_outbox: WithoutOutbox = False,
) -> None:
    """Time full, no-change and 1% change syncs against a plain download of the same pages (see BENCHMARKS.md)."""
    from devtools.bench import PROVIDERS, print_report, run_bench  # lazy: devtools brings the emulators

    if feed:
        from devtools.feed_bench import run_feed  # lazy, like the rest of devtools

        with user_errors():
            print_report({"feed": run_feed(students)}, as_json)
        return
    from devtools.fleet_bench import FleetError, run_fleet

    _refuse_mismatches(provider, class_size, fleet)
    with user_errors():
        report: dict[str, Any] = {}
        if fleet is None or students is not None:
            chosen = [provider] if provider else list(PROVIDERS)
            report = run_bench(chosen, students, class_size=class_size, without_outbox=without_outbox)
        if fleet is not None:
            try:
                report["fleet"] = run_fleet(fleet)
            except FleetError as error:
                fail(str(error))
        print_report(report, as_json)
