"""``rostersync demo``: the whole story on embedded defaults, against every local emulator that tells a chapter.

Each provider's chapter (its synthetic organisation and what happens to it: links, a first sync, a
change, a revoke or disconnect honoured) lives in its emulator kit (``devtools/providers/<name>.py``,
``EmulatorKit.demo``); the chapters are told in the registry's order and numbered across the story.
Throwaway keys, a throwaway SQLite file and the in-memory broker: nothing outside a temporary
directory is touched, and nothing personal is printed.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dramatiq.broker import Broker
from pydantic import SecretStr

from devtools.headless import consent_headlessly, headless_redirect, redirect_setting
from devtools.providers import KITS
from devtools.providers.base import DemoChapter, Story
from services.console import err, sync_progress
from settings import Settings
from store import integrations
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import new_key
from worker import broker as brokers
from worker.actors import sync_integration

__all__ = [
    "CHAPTERS",
    "CONSOLE_PORT",
    "consent_headlessly",
    "demo_settings",
    "headless_redirect",
    "run_demo",
    "tell_console",
    "tell_story",
]
# consent_headlessly and headless_redirect live in devtools.headless; the tests still import them from here.

CONSOLE_PORT = 8000
"""Where ``demo --console`` serves the admin console on the story's data, on the loopback interface only."""

CHAPTERS: dict[str, DemoChapter] = {name: kit.demo for name, kit in KITS.items() if kit.demo is not None}
"""Every provider's chapter, in the registry's order."""


def demo_settings(emulators: Mapping[str, Any], workdir: Path) -> Settings:
    """Embedded defaults pointed at the emulators; the keys are generated here and thrown away.

    One CA bundle holds every emulator's throwaway CA, as ``CA_BUNDLE`` would hold a proxy's.
    """
    pointed: dict[str, Any] = {}
    for name, emulator in emulators.items():
        pointed |= KITS[name].settings(emulator)
    cas = [emulator.ca_path for emulator in emulators.values()]
    ca_bundle = cas[0]
    if len(cas) > 1:
        ca_bundle = workdir / "demo-ca-bundle.pem"
        ca_bundle.write_bytes(b"".join(path.read_bytes() for path in cas))
    redirects: dict[str, str] = {}
    for name in KITS:
        redirects |= redirect_setting(name)
    return Settings(
        **pointed | {"ca_bundle": ca_bundle} | redirects,  # one bundle of every emulator's CA
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        broker_url=None,
        pseudonym_key=SecretStr(secrets.token_urlsafe(48)),
        token_keys=SecretStr(new_key()),
        admin_tokens=SecretStr(secrets.token_urlsafe(32)),  # for the console on this story's data, thrown away too
        retry_min_backoff_ms=100,
        retry_max_backoff_ms=2_000,
    )


def run_demo(students: int, report: Callable[[Runtime], None]) -> None:
    """Tell the story, hand the final state to ``report``, then delete all it made (database, CA, keys)."""
    with tempfile.TemporaryDirectory(prefix="rostersync-demo-") as workdir, ExitStack() as running:
        emulators = {
            name: running.enter_context(chapter.build(students, Path(workdir))) for name, chapter in CHAPTERS.items()
        }
        try:
            runtime = tell_story(emulators, Path(workdir))
            report(runtime)
            runtime.engine.dispose()
        finally:
            brokers.shutdown()


def _sync_cycle(rt: Runtime, broker: Broker) -> float:
    started = time.perf_counter()
    for integration_id in integrations.syncable_ids(rt.engine):
        sync_integration.send(integration_id)
    with sync_progress():
        brokers.drain(broker)
    return time.perf_counter() - started


def tell_story(emulators: Mapping[str, Any], workdir: Path) -> Runtime:
    """The whole demo: every running emulator's chapter (``emulators``: by provider name), in the registry's order."""
    emulators = {name: emulators[name] for name in CHAPTERS if name in emulators}
    _introduce(emulators)
    rt = build_runtime(demo_settings(emulators, workdir))
    set_runtime(rt)
    broker = brokers.install(brokers.make_broker(rt.settings))
    story = Story(rt, broker, cycle=lambda: _sync_cycle(rt, broker))
    for name, emulator in emulators.items():
        CHAPTERS[name].tell(story, emulator)
    err.print("")
    return rt


def _introduce(emulators: Mapping[str, Any]) -> None:
    for n, (name, emulator) in enumerate(emulators.items()):
        where = f"local {CHAPTERS[name].label} emulator at {emulator.base_url}"
        err.print(("[bold]rostersync demo[/]: embedded defaults, " if n == 0 else "  and ") + where)
    err.print(
        "  throwaway keys generated for this run (ROSTERSYNC_PSEUDONYM_KEY, ROSTERSYNC_TOKEN_KEYS, "
        "ROSTERSYNC_ADMIN_TOKENS); a throwaway database, removed at the end"
    )


def tell_console(rt: Runtime, url: str | None) -> None:
    """How to open the admin console on this story's own data: served now at ``url``, or how to ask for it.

    The token printed is this run's throwaway admin token: it opens nothing once the demo has ended.
    """
    if url is None:
        err.print(
            f"Admin console: `rostersync demo --console` tells the same story, then serves its data at "
            f"http://localhost:{CONSOLE_PORT}/console/ with a throwaway admin token, until Ctrl-C (docs/console.md)."
        )
        return
    err.print(f"[bold]Admin console[/] on this story's data: open {url} and sign in with this run's admin token:")
    err.print(f"  {rt.settings.admin_token_list()[0]}")
    err.print("  Ctrl-C stops it; the data and the token are thrown away then.")
