"""Orchestration: Dramatiq broker and actors, the sync cycle, linking, revocation, the CLI and the demo."""
