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
    ErrorWords,
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


def _error_words() -> dict[str, ErrorWords]:
    """Every provider's own error kinds, by kind; a kind is one provider's, so two rows never claim one."""
    found: dict[str, ErrorWords] = {}
    for row in PROVIDERS.values():
        claimed = found.keys() & row.error_words.keys()
        assert not claimed, f"error kinds claimed twice: {sorted(claimed)}"
        found |= row.error_words
    return found


ERROR_WORDS = _error_words()
"""The words a person reads about an error kind only one provider raises (``sync.outcomes``, the retry policy)."""

__all__ = [
    "ERROR_WORDS",
    "PROVIDERS",
    "SUPPORTED",
    "Callback",
    "ConsentStart",
    "ConsentUrl",
    "ErrorWords",
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
