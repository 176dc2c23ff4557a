"""``rostersync status``: every integration with its status and counts, and the removals held for an admin.

A module of its own, light to import: ``status`` is the command an operator runs most, so it opens the database
and reads with SQLAlchemy Core (store.summaries) and nothing else. The ORM (through store.breaker) is loaded only
when the breaker holds removals, Rich only to draw the table (``--json`` never does), and the token vault and
pseudonymiser are never built (BENCHMARKS.md, "Start-up").
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from sqlalchemy import Engine

from cli.common import database, user_errors
from store import summaries

NO_INTEGRATIONS = "no integrations yet: link a teacher (rostersync link start) or an organisation (rostersync link org)"


def status_payload(engine: Engine) -> dict[str, list[dict[str, object]]]:
    """The JSON shape shared by ``status --json`` and ``demo --json``; ``held``: removals waiting for an admin."""
    return {
        "held": held(engine),
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
            for summary in summaries.summaries(engine)
        ],
    }


def held(engine: Engine) -> list[dict[str, object]]:
    """The open holds as JSON; the breaker's views (ORM models) are imported only when there is one."""
    if not summaries.any_held(engine):
        return []
    from store import breaker

    return [view.as_json() for view in breaker.pending(engine)]


def print_status(engine: Engine, as_json: bool) -> None:
    payload = status_payload(engine)
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    if not payload["integrations"] and not payload["held"]:
        sys.stdout.write(NO_INTEGRATIONS + "\n")  # nothing to draw: the line Rich would print, without Rich
        return
    from services.console import out  # lazy, with Rich: drawing is all they are needed for

    if payload["integrations"]:
        out.print(integrations_table(payload["integrations"]))
    else:
        out.print(NO_INTEGRATIONS)
    tell_held_and_reasons(payload)


def integrations_table(rows: list[dict[str, object]]) -> object:
    """The integrations as a Rich table; every cell printed literally (no markup)."""
    from rich.markup import escape
    from rich.table import Table

    columns = ("id", "provider", "status", "classes", "teachers", "students")
    table = Table(title="integrations")
    for column in columns:
        table.add_column(column, justify="right" if column in ("id", "classes", "teachers", "students") else "left")
    for row in rows:
        table.add_row(*(escape(str(row[key])) for key in columns))
    return table


def tell_held_and_reasons(payload: dict[str, list[dict[str, object]]]) -> None:
    """The held removals (and what to do about them), then why each integration that is not active is so."""
    from rich.markup import escape

    from services.console import err, out

    if payload["held"]:
        from cli.held import held_table

        out.print(held_table(payload["held"]))
        err.print("approve with `rostersync held approve RUN_ID`, or drop with `rostersync held drop RUN_ID`")
    for row in payload["integrations"]:
        if row["status_reason"]:
            err.print(f"integration {row['id']} is {row['status']}: {escape(str(row['status_reason']))}")


def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False) -> None:
    """Every integration with its status and current stored counts."""
    with user_errors():
        print_status(database(), as_json)
