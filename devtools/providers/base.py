"""What devtools knows of one provider's emulator: how to build it, and the settings that point rostersync at it.

One ``EmulatorKit`` per provider (``devtools/providers/<name>.py``), listed once in
``devtools/providers/__init__.py`` under the provider's registry name; ``devtools.emulation``, the
demo, the benches and the tests reach an emulator only through it, so "settings pointed at an
emulator" is written once per provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class AnyEmulator(Protocol):
    """What every emulator offers the command line's ``emulate`` and the benches: a served, stoppable HTTPS app."""

    @property
    def base_url(self) -> str: ...

    @property
    def ca_path(self) -> Path: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def serve_forever(self) -> None: ...


@dataclass(frozen=True)
class EmulatorKit:
    """One provider's emulator, as devtools and the tests use it.

    ``settings`` gives the flat ``Settings`` keywords (``<provider>_client_id``, ...) that point at a running
    emulator, its CA included; the redirect URI is the caller's (a test's headless one, a platform's).
    """

    name: str
    build: Callable[..., AnyEmulator]  # port, students_per_course, teachers, seed, and the emulator's own options
    settings: Callable[[Any], dict[str, Any]]
    notes: Callable[[Any], list[str]] = lambda emulator: []
