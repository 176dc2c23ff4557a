"""The providers as a person names them on the command line: listed in help texts, matched in any case.

Its own module because it imports the provider registry (and with it every provider's client library):
only the commands that take a provider pay for that.
"""

from __future__ import annotations

from collections.abc import Iterable

import typer

from providers.registry import PROVIDERS, SUPPORTED


def either(names: Iterable[str]) -> str:
    """``a, b or c``: choices as a help text lists them (from the registry, so a new provider is listed too)."""
    listed = list(names)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} or {listed[-1]}"


PROVIDER_CHOICES = either(SUPPORTED)
"""Every registered provider, as a help text lists them: ``a, b or c``."""

ORGANISATIONS = {name: row.organisation for name, row in PROVIDERS.items() if row.org_grant is not None}
"""The providers that link a whole organisation, and what it is (its row's ``organisation``), for help texts."""


def provider_name(value: str | None) -> str | None:
    """A ``--provider`` value as the registry spells it, whatever its case (a capitalised name is the registry's
    lowercase one); an unknown name is refused with the supported ones (a usage error: one line, exit 2)."""
    if value is None:
        return None
    name = value.strip().lower()
    if name not in PROVIDERS:
        raise typer.BadParameter(f"no provider named {value!r} (supported: {', '.join(SUPPORTED)})")
    return name
