"""The ``rostersync`` command line. Bad input: one line on stderr, exit code 2.

The commands are a lazy registry: ``rostersync --help`` lists them from the one-line texts below and
imports none of them, and a command imports only its own module (the provider clients, the migrations
and the web stack cost about a second to import; ``--help`` and ``status`` need none of that).
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
import typer.main
from typer import _click as click  # typer >= 0.29 vendors click here
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

HELP = (
    "Keeps class rosters from the school's own systems (see link --help for which) in step with your platform. "
    "A mistake in a command is one line on stderr and exit code 2."
)


@dataclass(frozen=True)
class Entry:
    """One command: its name, where it lives (``module:attribute``, a function or a Typer group) and the one
    line ``rostersync --help`` shows for it (a test holds it equal to the command's own first paragraph)."""

    name: str
    target: str
    summary: str
    context: Mapping[str, Any] = field(default_factory=dict)


PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
"""``worker``'s context: every option it is given goes to Dramatiq unchanged."""

COMMANDS = (
    Entry("sync", "cli.runs:sync", "Sync one integration or all of them (queued; with the in-memory broker this "
          "waits until done)."),
    Entry("revoke", "cli.runs:revoke", "Revoke an integration: its tokens and roster are deleted here at once, "
          "then its access is revoked at the provider."),
    Entry("resume", "cli.runs:resume", "Make a failed integration active again (e.g. after a provider outage "
          "outlasted the retry caps)."),
    Entry("status", "cli.status:status", "Every integration with its status and current stored counts."),
    Entry("demo", "cli.dev:demo", "The whole story on embedded defaults against the local emulator."),
    Entry("bench", "cli.dev:bench", "Time full, no-change and 1% change syncs against a plain download of the "
          "same pages (see BENCHMARKS.md)."),
    Entry("emulate", "cli.serve:emulate", "Serve a local HTTPS emulator of the provider, and print the settings "
          "that point rostersync at it."),
    Entry("worker", "cli.serve:worker", "Run Dramatiq workers on the configured broker (dramatiq worker.main), "
          "with every option passed on.", PASS_THROUGH),
    Entry("scheduler", "cli.serve:scheduler", "Claim due syncs and pending provider revokes, and enqueue them "
          "(Redis) or run them here (--once)."),
    Entry("web", "cli.serve:web", "Serve the linking pages and the admin API; put it behind TLS (see "
          "docs/deploy.md)."),
    Entry("export", "cli.rights:export", "Export what is stored about one person or one integration (the right "
          "of access and portability); audited."),
    Entry("erase", "cli.rights:erase", "Erase a person (their rows and enrolments at once, then kept out of "
          "later syncs) or a whole integration; audited."),
    Entry("purge-expired", "cli.rights:purge_expired_command", "Run the retention job now: expired rows, ended "
          "integrations, deleted accounts; one audit event."),
    Entry("audit", "cli.rights:audit_command", "The audit log: time, actor, action, integration, consent basis, "
          "ids and counts."),
    Entry("inventory", "cli.rights:inventory", "What is asked, fetched, kept and for how long, generated from "
          "the allowlist, field masks and settings."),
    Entry("link", "cli.link:link_app", "Link a teacher's provider account (headless OAuth), or a whole "
          "organisation."),
    Entry("keys", "cli.keys:keys_app", "Manage the keys that seal tokens at rest."),
    Entry("held", "cli.held:held_app", "Removals the mass-removal breaker held: list them, approve or drop them."),
    Entry("suppressions", "cli.rights:suppressions_app", "Suppressed (erased) people kept out of syncs."),
    Entry("account", "cli.rights:account_app", "Platform accounts and their retention."),
    Entry("webhooks", "cli.webhooks:webhooks_app", "Delivery of the change feed to WEBHOOK_URL: where it stands, "
          "replay from a seq."),
)  # fmt: skip
"""The command table, in the order ``rostersync --help`` lists it."""


def first_paragraph(text: str) -> str:
    """A help text's first paragraph on one line: what the listing shows of a command."""
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


BIGGEST_ID = 2**63 - 1
"""An id's upper bound (``store.models.MAX_ID``, not imported: the listing must not load the store). An id's help
says "integration id", not "[1<=x<=9223372036854775807]", which wraps as ``922337203685477580 7``."""


class PlainArgument(TyperArgument):
    """An argument shown by its name alone (Typer adds ``<int range>``)."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None

    def _get_number_range_help_str(self) -> str | None:
        return None if self.max == BIGGEST_ID else super()._get_number_range_help_str()


class PlainOption(TyperOption):
    """An option shown as ``--name NAME`` (Typer writes ``--name <str>`` and ``--flag <bool>``)."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        if self.metavar:
            return self.metavar
        if self.max == BIGGEST_ID:
            return "ID"
        return max(self.opts, key=len).lstrip("-").upper()

    def _get_number_range_help_str(self) -> str | None:
        return None if self.max == BIGGEST_ID else super()._get_number_range_help_str()


def plain(command: click.Command) -> click.Command:
    """Help in plain words: the command's parameters (and its subcommands') shown without type tags."""
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = PlainArgument
        elif type(param) is TyperOption:
            param.__class__ = PlainOption
    for sub in getattr(command, "commands", {}).values():
        plain(sub)
    return command


def load(entry: Entry) -> click.Command:
    """Import the command's module and build its click command (a group for a Typer group)."""
    module_name, attribute = entry.target.split(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        command: click.Command = typer.main.get_group(target)
    else:
        single = typer.Typer(rich_markup_mode=None, add_completion=False)
        single.command(entry.name, context_settings=dict(entry.context))(target)
        command = typer.main.get_command(single)
    command.name = entry.name
    return plain(command)


class LazyGroup(TyperGroup):
    """The top-level group: a command is imported when it runs (or shows its own help), never to be listed."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.entries = {entry.name: entry for entry in COMMANDS}
        self.listing = False
        for entry in COMMANDS:  # placeholders: the names for "did you mean", the one-liners for the listing
            self.commands[entry.name] = TyperCommand(entry.name, help=entry.summary)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.entries.get(cmd_name)
        if entry is None or self.listing:
            return super().get_command(ctx, cmd_name)
        command = load(entry)
        self.commands[cmd_name] = command
        START_UP.done()  # the command's imports are in: collect as usual while it runs
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


app = typer.Typer(cls=LazyGroup, no_args_is_help=True, add_completion=False, help=HELP, rich_markup_mode=None)


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"rostersync {version('rostersync')}\n")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log sync steps to stderr.")] = False,
    _version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    configure_logging(verbose)


def configure_logging(verbose: bool = False) -> None:
    """Log lines to stderr; -v adds the sync's steps. Set here, without Rich: ``status --json`` never loads it."""
    import logging

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("rostersync").setLevel(logging.INFO if verbose else logging.WARNING)
    # The in-process worker's own failure logs carry tracebacks; the command reports each sync's
    # outcome in one line of its own instead (sync.outcomes). -v shows them.
    logging.getLogger("dramatiq").setLevel(logging.WARNING if verbose else logging.CRITICAL)


def error_line(message: str) -> None:
    from cli.common import error_line as shown  # lazy: the common module loads the settings and the store

    shown(message)


NO_PYDANTIC_PLUGINS = ("PYDANTIC_DISABLE_PLUGINS", "1")
"""Pydantic's documented switch: its first model otherwise scans every installed distribution's entry points for
plugins (about 1.5% of ``status``). rostersync uses no pydantic plugin; set by default, a user's value wins."""


class StartUp:
    """The garbage collector paused while the command line starts: from the entry point until the command's module
    is imported (``LazyGroup.get_command``), or until ``run`` returns for ``--help``, ``--version`` or a mistake.

    Why: importing SQLAlchemy, pydantic and Typer makes tens of thousands of objects the collector tracks (54,000 for
    ``status``), which live as long as the process; Python's cyclic collector traversed them again and again as they
    were made, then once more at exit: a tenth of ``status``'s instructions (BENCHMARKS.md, "Start-up, fourth
    step"). They are frozen when the start ends
    (``gc.freeze``, Python's documented way to keep long-lived start-up objects out of every later collection),
    so the command itself, a sync of 100,000 students or a worker that runs for days, collects as usual over what
    it makes. Only the console entry point pauses: a test or a program that builds the commands in its own process
    (``typer.testing.CliRunner``) keeps its collector as it is.
    """

    def __init__(self) -> None:
        self.paused = False

    def begin(self) -> None:
        if gc.isenabled():  # a collector someone else turned off stays off, and nothing is frozen for them
            gc.disable()
            self.paused = True

    def done(self) -> None:
        if self.paused:
            gc.freeze()
            gc.enable()
            self.paused = False


START_UP = StartUp()


def run() -> None:
    """The console entry point: usage mistakes and undecodable arguments are one ``error:`` line, exit 2."""
    START_UP.begin()
    try:
        start(sys.argv[1:])
    finally:
        START_UP.done()


def start(args: list[str]) -> None:
    """Parse ``args`` and run the command they name (``run``'s work, inside its paused collector)."""
    os.environ.setdefault(*NO_PYDANTIC_PLUGINS)  # before any command imports pydantic
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
