"""Google Classroom's emulator kit: the emulator and the ``google_*`` settings that point at it."""

from __future__ import annotations

from typing import Any

from devtools.providers.base import EmulatorKit
from emulators.google import GoogleEmulator


def settings(emulator: GoogleEmulator) -> dict[str, Any]:
    """OAuth endpoints, the Classroom API and the emulator's client, in the order ``emulate`` prints them."""
    return {
        "google_auth_uri": emulator.auth_uri,
        "google_token_uri": emulator.token_uri,
        "google_revoke_uri": emulator.revoke_uri,
        "google_api_endpoint": emulator.api_endpoint,
        "google_client_id": emulator.client_id,
        "google_client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }


KIT = EmulatorKit(name="google", build=GoogleEmulator, settings=settings)
