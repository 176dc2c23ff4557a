"""One emulator, settings and link per provider, so a fault test can be parametrized over all three.

A ``World`` knows where its provider's first listing lives (``data_path``: where a test injects a
fault or a stall), how to link one integration headlessly, and how to turn its settings into the
environment of a ``rostersync`` process.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from devtools.demo import headless_redirect
from devtools.emulation import settings_values
from emulators.clever import CleverEmulator
from emulators.core import EmulatorCore
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from services.linking import link_org
from settings import Settings
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from tests.clever_fixtures import link_district
from tests.conftest import link_teacher

PROVIDERS = ("google", "clever", "microsoft")


@dataclass
class World:
    provider: str
    emulator: EmulatorCore
    data_path: str
    """Part of the path of the provider's class listing, the first roster read of a full sync."""
    values: dict[str, Any]
    linker: Callable[[Runtime], int]
    runtimes: list[Runtime] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        return Settings(**(self.values | overrides))

    def runtime(self, **overrides: Any) -> Runtime:
        """A runtime on these settings, installed for the actors; disposed of at the end of the test."""
        rt = build_runtime(self.settings(**overrides))
        set_runtime(rt)
        self.runtimes.append(rt)
        return rt

    def link(self, runtime: Runtime) -> int:
        return self.linker(runtime)


def env_of(settings: Settings) -> dict[str, str]:
    """Every setting as the ``ROSTERSYNC_*`` variable a process reads it from."""
    env: dict[str, str] = {}
    for name, value in settings.flat_values().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"ROSTERSYNC_{name.upper()}"] = str(value)
    return env


def _base(database_url: str) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "broker_url": None,
        "pseudonym_key": secrets.token_urlsafe(48),
        "token_keys": new_key(),
        "retry_min_backoff_ms": 10,
        "retry_max_backoff_ms": 50,
        "http_timeout_seconds": 5,
    }


def _google(tmp_path: Path, database_url: str, **options: Any) -> Iterator[World]:
    sizes = {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 6} | options
    with GoogleEmulator(cert_dir=tmp_path, **sizes) as emu:
        redirect = {"google_redirect_uri": headless_redirect("google")}
        values = _base(database_url) | settings_values("google", emu) | redirect
        yield World("google", emu, "/v1/courses", values, lambda rt: link_teacher(rt, emu, 0))


def _clever(tmp_path: Path, database_url: str, **options: Any) -> Iterator[World]:
    sizes = {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 6} | options
    with CleverEmulator(cert_dir=tmp_path, districts=1, **sizes) as emu:
        values = _base(database_url) | settings_values("clever", emu)
        yield World("clever", emu, "/v3.0/sections", values, lambda rt: link_district(rt, emu, 0))


def _microsoft(tmp_path: Path, database_url: str, **options: Any) -> Iterator[World]:
    sizes = {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 6} | options
    with MicrosoftEmulator(cert_dir=tmp_path, tenants=1, **sizes) as emu:
        values = _base(database_url) | settings_values("microsoft", emu)

        def link(rt: Runtime) -> int:
            return link_org(rt, provider_name="microsoft", org=emu.tenant_ids[0])

        yield World("microsoft", emu, "/education/classes", values, link)


WORLDS = {"google": _google, "clever": _clever, "microsoft": _microsoft}


@contextmanager
def opened(provider: str, tmp_path: Path, database_url: str, **options: Any) -> Iterator[World]:
    """One provider's world (emulator options passed on), torn down with its runtimes."""
    made = WORLDS[provider](tmp_path, database_url, **options)
    one = next(made)
    try:
        yield one
    finally:
        set_runtime(None)
        for rt in one.runtimes:
            rt.engine.dispose()
        made.close()


@pytest.fixture(params=PROVIDERS, name="world")
def world_fixture(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[World]:
    """One provider's emulator and settings on a PostgreSQL schema of this test's own."""
    with opened(str(request.param), tmp_path, pg_url) as one:
        yield one
