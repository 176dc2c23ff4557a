"""The devtools-side registry: one line per provider, keyed by the provider's registry name.

Each provider's emulator kit (``devtools/providers/<name>.py``) is found here; nothing else in
devtools names a provider's emulator.
"""

from __future__ import annotations

from devtools.providers import clever, google, microsoft
from devtools.providers.base import EmulatorKit

KITS: dict[str, EmulatorKit] = {
    kit.name: kit
    for kit in (
        google.KIT,
        clever.KIT,
        microsoft.KIT,
    )
}
