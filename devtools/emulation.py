"""Starting a local emulator by provider name, and the settings that point rostersync at it.

The command line's ``emulate`` serves one from here, so that only ``devtools`` (and the tests) import
``emulators``: the product's floors never depend on a fake of a provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator

AnyEmulator = GoogleEmulator | CleverEmulator | MicrosoftEmulator
EMULATED = ("google", "clever", "microsoft")


class UnknownEmulator(ValueError):
    """No emulator of that name: the message lists those there are."""


@dataclass(frozen=True)
class Served:
    """A running emulator: where it listens, the environment that points rostersync at it, and what to tell."""

    base_url: str
    environment: dict[str, str]
    notes: list[str]


def build(provider: str, *, port: int, students: int, teachers: int, seed: int) -> AnyEmulator:
    """A configured, not yet started emulator of ``provider``."""
    if provider == "google":
        return GoogleEmulator(port=port, students_per_course=students, teachers=teachers, seed=seed)
    if provider == "clever":
        return CleverEmulator(port=port, students_per_course=students, teachers=teachers, seed=seed)
    if provider == "microsoft":
        return MicrosoftEmulator(port=port, students_per_course=students, teachers=teachers, seed=seed)
    raise UnknownEmulator(f"no emulator for {provider!r} yet (available: {', '.join(EMULATED)})")


def environment(emulator: AnyEmulator) -> dict[str, str]:
    """The ``ROSTERSYNC_`` settings that point rostersync at a running emulator."""
    lines: dict[str, str]
    if isinstance(emulator, GoogleEmulator):
        lines = {
            "ROSTERSYNC_GOOGLE_AUTH_URI": emulator.auth_uri,
            "ROSTERSYNC_GOOGLE_TOKEN_URI": emulator.token_uri,
            "ROSTERSYNC_GOOGLE_REVOKE_URI": emulator.revoke_uri,
            "ROSTERSYNC_GOOGLE_API_ENDPOINT": emulator.api_endpoint,
            "ROSTERSYNC_GOOGLE_CLIENT_ID": emulator.client_id,
            "ROSTERSYNC_GOOGLE_CLIENT_SECRET": emulator.client_secret,
        }
    elif isinstance(emulator, CleverEmulator):
        lines = {
            "ROSTERSYNC_CLEVER_AUTHORIZE_URL": emulator.authorize_url,
            "ROSTERSYNC_CLEVER_TOKEN_URL": emulator.token_url,
            "ROSTERSYNC_CLEVER_API_BASE": emulator.api_base,
            "ROSTERSYNC_CLEVER_CLIENT_ID": emulator.client_id,
            "ROSTERSYNC_CLEVER_CLIENT_SECRET": emulator.client_secret,
        }
    else:
        lines = {
            "ROSTERSYNC_MICROSOFT_AUTHORITY_HOST": emulator.authority_host,
            "ROSTERSYNC_GRAPH_ENDPOINT": emulator.graph_endpoint,
            "ROSTERSYNC_MICROSOFT_CLIENT_ID": emulator.client_id,
            "ROSTERSYNC_MICROSOFT_CLIENT_SECRET": emulator.client_secret,
        }
    lines["ROSTERSYNC_CA_BUNDLE"] = str(emulator.ca_path)
    return lines


def notes(emulator: AnyEmulator) -> list[str]:
    """The ids a person needs to link against this emulator (districts, Library teachers, tenants)."""
    if isinstance(emulator, CleverEmulator):
        library = ", ".join(emulator.teacher_ids(None))
        return [f"districts: {', '.join(emulator.district_ids)}; Library teachers: {library}"]
    if isinstance(emulator, MicrosoftEmulator):
        return [f"tenants: {', '.join(emulator.tenant_ids)}"]
    return []


@contextmanager
def serving(
    provider: str, *, port: int, students: int, teachers: int, seed: int
) -> Iterator[tuple[Served, AnyEmulator]]:
    """Start the emulator (OSError if the port is taken), yield what to print, stop it on the way out."""
    emulator = build(provider, port=port, students=students, teachers=teachers, seed=seed)
    emulator.start()
    try:
        yield Served(emulator.base_url, environment(emulator), notes(emulator)), emulator
    finally:
        emulator.stop()
