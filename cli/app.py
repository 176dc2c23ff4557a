"""The ``rostersync`` command line (the contract of DESIGN.md). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import typer.main
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer >= 0.29 vendors click here

from cli import dev, held, keys, link, rights, runs, serve, webhooks
from cli.common import error_line
from services.console import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log sync steps to stderr.")] = False) -> None:
    configure_logging(verbose)


# The command table, in the order `rostersync --help` lists it (Typer lists commands, then groups, as registered).
app.add_typer(link.link_app, name="link")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(held.held_app, name="held")
app.add_typer(rights.suppressions_app, name="suppressions")
app.add_typer(rights.account_app, name="account")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.command()(runs.sync)
app.command()(runs.revoke)
app.command()(runs.resume)
app.command()(runs.status)
app.command()(dev.demo)
app.command()(dev.bench)
app.command()(serve.emulate)
app.command(context_settings=serve.PASS_THROUGH)(serve.worker)
app.command()(serve.scheduler)
app.command()(serve.web)
app.command()(rights.export)
app.command()(rights.erase)
app.command("purge-expired")(rights.purge_expired_command)
app.command("audit")(rights.audit_command)
app.command()(rights.inventory)
