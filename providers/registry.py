"""The provider registry: one line per provider, and the look-up by name.

A provider is its connector, mapper, emulator, its glue module (``providers/<name>.py``, which builds
its ``Provider`` row) and one line here; nothing shared names it. The protocol is ``providers.base``,
re-exported here for the callers that only need the registry.
"""

from __future__ import annotations

from providers import clever, google, microsoft
from providers.base import (
    Callback,
    ConsentStart,
    ConsentUrl,
    Grant,
    Provider,
    tokens_from_payload,
    tokens_to_payload,
)

PROVIDERS: dict[str, Provider] = {
    row.name: row
    for row in (
        google.PROVIDER,
        clever.PROVIDER,
        microsoft.PROVIDER,
    )
}

SUPPORTED = tuple(PROVIDERS)

__all__ = [
    "PROVIDERS",
    "SUPPORTED",
    "Callback",
    "ConsentStart",
    "ConsentUrl",
    "Grant",
    "Provider",
    "provider",
    "tokens_from_payload",
    "tokens_to_payload",
]


def provider(name: str) -> Provider:
    """The row of a provider by name; an unknown name lists the known ones (it may have come from a command line)."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r} (known: {', '.join(sorted(PROVIDERS))})") from None
