"""Starting a local emulator by provider name, and the settings that point rostersync at it.

The command line's ``emulate`` serves one from here, so that only ``devtools`` (and the tests) import
``emulators``: the product's floors never depend on a fake of a provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from devtools.providers import KITS
from devtools.providers.base import AnyEmulator, EmulatorKit

EMULATED = tuple(KITS)


class UnknownEmulator(ValueError):
    """No emulator of that name: the message lists those there are."""


@dataclass(frozen=True)
class Served:
    """A running emulator: where it listens, the environment that points rostersync at it, and what to tell."""

    base_url: str
    environment: dict[str, str]
    notes: list[str]


def kit(provider: str) -> EmulatorKit:
    """A provider's emulator kit by its registry name."""
    try:
        return KITS[provider]
    except KeyError:
        raise UnknownEmulator(f"no emulator for {provider!r} yet (available: {', '.join(EMULATED)})") from None


def build(provider: str, *, port: int, students: int, teachers: int, seed: int) -> AnyEmulator:
    """A configured, not yet started emulator of ``provider``."""
    return kit(provider).build(port=port, students_per_course=students, teachers=teachers, seed=seed)


def settings_values(provider: str, emulator: Any) -> dict[str, Any]:
    """The flat ``Settings`` keywords that point rostersync at a running emulator of ``provider``, CA included."""
    return kit(provider).settings(emulator)


def environment(provider: str, emulator: Any) -> dict[str, str]:
    """The same settings as ``ROSTERSYNC_`` variables (a flat keyword is its variable's name in lower case)."""
    return {f"ROSTERSYNC_{name.upper()}": _plain(value) for name, value in settings_values(provider, emulator).items()}


def _plain(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


@contextmanager
def serving(
    provider: str, *, port: int, students: int, teachers: int, seed: int
) -> Iterator[tuple[Served, AnyEmulator]]:
    """Start the emulator (OSError if the port is taken), yield what to print, stop it on the way out."""
    emulator = build(provider, port=port, students=students, teachers=teachers, seed=seed)
    emulator.start()
    try:
        yield Served(emulator.base_url, environment(provider, emulator), kit(provider).notes(emulator)), emulator
    finally:
        emulator.stop()
