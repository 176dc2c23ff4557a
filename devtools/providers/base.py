"""What devtools knows of one provider's emulator: how to build it, the settings that point rostersync at it,
and the provider's part in the demo and the benches.

One ``EmulatorKit`` per provider (``devtools/providers/<name>.py``), listed once in
``devtools/providers/__init__.py`` under the provider's registry name; ``devtools.emulation``, the
demo, the benches and the tests reach an emulator only through it, so "settings pointed at an
emulator", a bench scenario and a demo chapter are written once per provider, in its own module, and
the generic modules (``devtools.demo``, ``devtools.bench``, ``devtools.fleet_bench``) iterate the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dramatiq.broker import Broker

from emulators.core import EmulatorCore, RequestRecord
from providers.registry import tokens_from_payload
from store import integrations
from store.runtime import Runtime


class AnyEmulator(Protocol):
    """What every emulator offers the command line's ``emulate`` and the benches: a served, stoppable HTTPS app."""

    @property
    def base_url(self) -> str: ...

    @property
    def ca_path(self) -> Path: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def serve_forever(self) -> None: ...


# ------------------------------------------------------------------------------------ the bench's part
CLASSES_PER_TEACHER = 5
"""The bench's districts: five classes a teacher (``devtools.bench``)."""


@dataclass(frozen=True)
class Fetch:
    """One request of the bench's baseline: a GET with its query, or a batch with its body (``body``, JSON; or
    ``data`` sent as ``content_type``), as a plain client would send it."""

    method: str
    url: str
    token: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: dict[str, Any] | None = None
    data: bytes | None = None
    content_type: str | None = None


class Scenario(Protocol):
    """One provider's district in its emulator: how it is built, linked, changed and counted."""

    name: str

    @property
    def emulator(self) -> EmulatorCore: ...

    def settings(self) -> dict[str, Any]: ...
    def link(self, runtime: Runtime) -> list[int]: ...
    def students(self) -> int: ...
    def classes(self) -> int: ...
    def minimum(self, *, resync: bool) -> int: ...
    def change(self, count: int) -> int: ...
    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]: ...


BatchFetch = Callable[[Sequence[RequestRecord], str, str, str], Fetch]
"""A batch's logged parts, its URL, its token and the API prefix -> the batch as a plain client sends it."""


@dataclass(frozen=True)
class BenchKit:
    """A provider's bench: its scenario, its default size, and how its API requests are told and replayed.

    ``batch_path`` is the batch endpoint of a provider that has one: a round trip of its own, its parts
    logged just before it (``batched`` says which paths travel only inside a batch).
    """

    scenario: Callable[[int, Path], Scenario]  # students, workdir
    default_students: int
    api_prefix: str
    batch_path: str | None = None
    batched: Callable[[str], bool] = lambda path: False
    batch_fetch: BatchFetch | None = None
    one_teacher: Callable[[int, int, Path], Scenario] | None = None
    """Students, class size, workdir -> one teacher link of classes that size (``bench --class-size``); None where
    a provider's links are organisations, not teachers."""


def shape(students: int, class_size: int) -> tuple[int, int]:
    """Teachers and classes for about ``students`` students (each class shares a fifth with the previous)."""
    fresh = class_size - class_size // 5
    classes = max(1, math.ceil(students / fresh))
    return max(1, math.ceil(classes / CLASSES_PER_TEACHER)), class_size


def pages(count: int, size: int) -> int:
    """Pages of ``size`` for ``count`` items; an empty listing is still one page."""
    return max(1, math.ceil(count / size))


def query_params(record: RequestRecord) -> list[tuple[str, str]]:
    """A logged request's query, as ``requests`` takes it."""
    return [(name, value) for name, values in record.query.items() for value in values]


def access_token(runtime: Runtime, integration_id: int) -> str:
    """The access token a link holds (unsealed), for the baseline to read with the same grant."""
    blob = integrations.load(runtime.engine, integration_id).token_blob
    assert blob is not None
    token = tokens_from_payload(runtime.vault.open(blob)).access_token
    assert token is not None
    return token


# ------------------------------------------------------------------------------------ the demo's part
@dataclass
class Story:
    """What a demo chapter tells with: the runtime, a sync cycle drained here, and the chapters' running number."""

    runtime: Runtime
    broker: Broker
    cycle: Callable[[], float]  # one sync of every syncable integration, drained; its seconds
    told: int = 0

    def heading(self, title: str, rest: str = "") -> str:
        """The next chapter's heading, numbered across the providers' chapters."""
        self.told += 1
        return f"\n[bold]{self.told}. {title}[/]{rest}"


@dataclass(frozen=True)
class DemoChapter:
    """A provider's part of ``rostersync demo``: its synthetic organisation, and the story told against it."""

    label: str  # how the demo introduces the emulator: "local <label> emulator at ..."
    build: Callable[[int, Path], Any]  # students, workdir -> a not yet started emulator (a context manager)
    tell: Callable[[Story, Any], None]


# ------------------------------------------------------------------------------------ the fleet's part
@dataclass(frozen=True)
class FleetKit:
    """A provider whose emulator enforces its published quota: M teacher links synced by a fleet of workers."""

    build: Callable[[int, int, tuple[int, int], Path], Any]  # teachers, classes each, class sizes, workdir -> started
    link: Callable[[Runtime, Any], list[int]]  # every teacher links through the consent screen
    enforce: Callable[[Any, int], None]  # the emulator starts enforcing the published quotas (per client: the int)
    quota: int  # the quota a fleet shares, per minute
    rate_limit: str  # what the quota counts, in words
    round_trip: Callable[[RequestRecord], bool]  # an API round trip (a batch is one)
    quota_call: Callable[[RequestRecord], bool]  # an API call as the quota counts them (each part of a batch)


# ------------------------------------------------------------------------------------ the kit
@dataclass(frozen=True)
class EmulatorKit:
    """One provider's emulator, as devtools and the tests use it.

    ``settings`` gives the flat ``Settings`` keywords (``<provider>_client_id``, ...) that point at a running
    emulator, its CA included; the redirect URI is the caller's (a test's headless one, a platform's).
    ``bench``, ``demo`` and ``fleet``: the provider's part in each, None where it has none.
    """

    name: str
    build: Callable[..., AnyEmulator]  # port, students_per_course, teachers, seed, and the emulator's own options
    settings: Callable[[Any], dict[str, Any]]
    notes: Callable[[Any], list[str]] = lambda emulator: []
    bench: BenchKit | None = None
    demo: DemoChapter | None = None
    fleet: FleetKit | None = None
