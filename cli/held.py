"""``rostersync held``: removals the mass-removal breaker held (issue 10, part 1), listed, approved or dropped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import RIGHTS_ACTOR, fail, json_out, runtime, user_errors
from services.console import err, out
from store import breaker
from store.breaker import HoldError
from store.models import MAX_ID

held_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Removals the mass-removal breaker held: list them, approve or drop them.",
)


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


RunId = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The run that held the removals (see held list).")]


@contextmanager
def held_errors() -> Iterator[None]:
    with user_errors():
        try:
            yield
        except HoldError as error:
            fail(str(error))


@held_app.command("list")
def held_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False) -> None:
    """Every held sweep: its run, integration, why, and what approving it would remove now."""
    with held_errors():
        rows = [view.as_json() for view in breaker.pending(runtime().engine)]
    if as_json:
        json_out({"held": rows})
    elif rows:
        out.print(held_table(rows))
    else:
        err.print("no removals are held")


@held_app.command("approve")
def held_approve(run_id: RunId) -> None:
    """Apply exactly the removals this run held (fenced: a revoke or re-link since wins); audited."""
    with held_errors():
        rt = runtime()
        done = breaker.approve(rt.engine, run_id, actor=RIGHTS_ACTOR, lease_seconds=rt.settings.lease_seconds)
    err.print(f"integration {done.integration_id}: run {run_id}'s held removals applied ({done.removed} row(s))")


@held_app.command("drop")
def held_drop(run_id: RunId) -> None:
    """Discard this run's held removals: nothing is removed; a later listing that still misses them holds again."""
    with held_errors():
        done = breaker.drop(runtime().engine, run_id, actor=RIGHTS_ACTOR)
    err.print(f"integration {done.integration_id}: run {run_id}'s held removals dropped; nothing removed")
