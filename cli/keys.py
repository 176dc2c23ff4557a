"""``rostersync keys``: the keys that seal tokens at rest."""

from __future__ import annotations

import typer

from cli.common import runtime, user_errors
from services.console import err
from store.secrets import reseal_all

keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Manage the keys that seal tokens at rest.")


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
