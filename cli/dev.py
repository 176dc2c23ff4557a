"""Developer commands: ``demo`` and ``bench`` (devtools, against the local emulators)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import PROVIDER_CHOICES, fail, user_errors
from cli.runs import print_status


def demo(
    students: Annotated[int, typer.Option(min=1, max=200_000, help="Students in the synthetic district.")] = 150,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON on stdout.")] = False,
) -> None:
    """The whole story on embedded defaults against the local emulator."""
    from devtools.demo import run_demo  # lazy: devtools brings the emulators, which only dev commands load

    with user_errors():
        run_demo(students, lambda rt: print_status(rt, as_json))


def bench(
    provider: Annotated[str | None, typer.Option(help=f"{PROVIDER_CHOICES}; all of them when left out.")] = None,
    students: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=500_000,
            help="Students per district (default 100,000 where a whole organisation links at once; 10,000 where "
            "teachers link one by one).",
        ),
    ] = None,
    fleet: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=20_000,
            help="Link this many teachers (the issue's fleet: 2000) of the provider whose emulator enforces its "
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
) -> None:
    """Time full, no-change and 1% change syncs against a plain download of the same pages (BENCHMARKS.md)."""
    from devtools.bench import PROVIDERS, print_report, run_bench  # lazy: devtools brings the emulators

    if feed:
        from devtools.feed_bench import run_feed  # lazy, like the rest of devtools

        with user_errors():
            print_report({"feed": run_feed(students)}, as_json)
        return
    from devtools.fleet_bench import FleetError, fleet_kit, run_fleet

    if provider is not None and provider not in PROVIDERS:
        fail(f"--provider must be one of {', '.join(PROVIDERS)}")
    if fleet is not None and provider not in (None, fleet_kit().name):
        fail(f"--fleet measures {fleet_kit().name.capitalize()} teacher links only")
    with user_errors():
        report: dict[str, Any] = {}
        if fleet is None or students is not None:
            report = run_bench([provider] if provider else list(PROVIDERS), students)
        if fleet is not None:
            try:
                report["fleet"] = run_fleet(fleet)
            except FleetError as error:
                fail(str(error))
        print_report(report, as_json)
