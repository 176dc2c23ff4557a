"""The per-process wiring (settings, database, vault, pseudonymiser), built once and shared by actors and CLI."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from mappers.policy import Pseudonymiser
from settings import Settings, get_settings
from store.db import make_engine, migrate
from store.vault import TokenVault


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    vault: TokenVault
    pseudonymiser: Pseudonymiser


def build_runtime(settings: Settings, *, run_migrations: bool = True) -> Runtime:
    """Check the secrets, connect, and bring the schema up to date."""
    settings.require_secrets()
    assert settings.pseudonym_key is not None and settings.token_keys is not None
    engine = make_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    return Runtime(
        settings=settings,
        engine=engine,
        vault=TokenVault(settings.token_keys.get_secret_value()),
        pseudonymiser=Pseudonymiser(settings.pseudonym_key.get_secret_value()),
    )


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """Built once per process, under a lock: a fresh worker's threads take their first messages at the same
    moment, and two migrations at once break Alembic's process-wide context (``KeyError: 'config'``)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install the runtime actors use in this process (demo, tests, CLI with overrides)."""
    global _runtime
    _runtime = runtime
