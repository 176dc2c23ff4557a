"""Raw provider payloads in, minimal canonical records out. No I/O; raw payloads die here."""
