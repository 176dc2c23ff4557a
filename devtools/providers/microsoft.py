"""Microsoft 365 Education's emulator kit: the emulator, the settings that point at it (Entra, Graph), its tenants."""

from __future__ import annotations

from typing import Any

from devtools.providers.base import EmulatorKit
from emulators.microsoft import MicrosoftEmulator


def settings(emulator: MicrosoftEmulator) -> dict[str, Any]:
    """The authority host, the Graph endpoint (``graph_endpoint``, its historical flat name) and the client."""
    return {
        "microsoft_authority_host": emulator.authority_host,
        "graph_endpoint": emulator.graph_endpoint,
        "microsoft_client_id": emulator.client_id,
        "microsoft_client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }


def notes(emulator: MicrosoftEmulator) -> list[str]:
    """A tenant links as an organisation: its id is needed."""
    return [f"tenants: {', '.join(emulator.tenant_ids)}"]


KIT = EmulatorKit(name="microsoft", build=MicrosoftEmulator, settings=settings, notes=notes)
