"""``rostersync webhooks``: where delivery of the change feed to WEBHOOK_URL stands, and a replay from a seq.

What is shown is the position, the feed's head, the lag and the last failure in the fixed words delivery
records (services.webhooks): never the secret, and of the URL only its scheme and host (a path or query
may hold a token of the receiver's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from cli.common import fail, json_out, runtime, user_errors
from services.console import err, out
from settings import Settings
from store import webhooks
from store.models import MAX_ID

webhooks_app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True, help="Delivery of the change feed to WEBHOOK_URL: where it stands, replay from a seq."
)


def receiver(settings: Settings) -> str | None:
    """The receiver as it may be shown: scheme and host only; None when delivery is off."""
    if not settings.webhooks_enabled:
        return None
    parts = urlsplit(settings.webhook_url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _time(value: datetime | None) -> str | None:
    return value.replace(tzinfo=UTC).isoformat() if value is not None else None


def status_json(settings: Settings, position: webhooks.Position) -> dict[str, Any]:
    return {
        "enabled": settings.webhooks_enabled,
        "receiver": receiver(settings),
        "delivered_through": position.delivered_through,
        "head": position.head,
        "lag": position.lag,
        "oldest_kept": position.forgotten_through + 1,
        "failures": position.failures,
        "last_attempt_at": _time(position.last_attempt_at),
        "last_success_at": _time(position.last_success_at),
        "last_error": position.last_error or None,
    }


@webhooks_app.command("status")
def webhooks_status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Position, head, lag (events not yet delivered), consecutive failures and the last error."""
    with user_errors():
        rt = runtime()
        shown = status_json(rt.settings, webhooks.read(rt.engine))
    if as_json:
        json_out(shown)
        return
    where = shown["receiver"] or "off (set ROSTERSYNC_WEBHOOK_URL and ROSTERSYNC_WEBHOOK_SECRET)"
    lines = [
        f"receiver: {where}",
        f"delivered through: {shown['delivered_through']}",
        f"head: {shown['head']}",
        f"lag: {shown['lag']} event(s)",
        f"failures: {shown['failures']} in a row",
        f"last attempt: {shown['last_attempt_at'] or 'never'}",
        f"last success: {shown['last_success_at'] or 'never'}",
        f"last error: {shown['last_error'] or 'none'}",
    ]
    if shown["delivered_through"] + 1 < shown["oldest_kept"]:
        lines.append("warning: retention forgot events the receiver never got: it must take a new snapshot")
    for line in lines:
        out.print(escape(line))


@webhooks_app.command("replay")
def webhooks_replay(
    first: Annotated[
        int, typer.Option("--from", min=1, max=MAX_ID, help="The first seq to send again (at most the head).")
    ],
) -> None:
    """Move the delivery position back so that every event from SEQ on is sent again, in order."""
    with user_errors():
        rt = runtime()
        try:
            before = webhooks.replay_from(rt.engine, first)
        except webhooks.ReplayRefused as error:
            fail(str(error))
    err.print(
        f"delivery position moved from {before.delivered_through} to {first - 1}: events {first}..{before.head} "
        "will be sent again by the next delivery run (the scheduler's tick, or `rostersync scheduler --once`)"
    )
