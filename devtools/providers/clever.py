"""Clever's emulator kit: the emulator, the ``clever_*`` settings that point at it, and its districts."""

from __future__ import annotations

from typing import Any

from devtools.providers.base import EmulatorKit
from emulators.clever import CleverEmulator


def settings(emulator: CleverEmulator) -> dict[str, Any]:
    """Sign-in, token (and district token) URLs, the API base and the emulator's client."""
    return {
        "clever_authorize_url": emulator.authorize_url,
        "clever_token_url": emulator.token_url,
        "clever_api_base": emulator.api_base,
        "clever_client_id": emulator.client_id,
        "clever_client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }


def notes(emulator: CleverEmulator) -> list[str]:
    """A district links as an organisation, a Library teacher by their own sign-in: both ids are needed."""
    library = ", ".join(emulator.teacher_ids(None))
    return [f"districts: {', '.join(emulator.district_ids)}; Library teachers: {library}"]


KIT = EmulatorKit(name="clever", build=CleverEmulator, settings=settings, notes=notes)
