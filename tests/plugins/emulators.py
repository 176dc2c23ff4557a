"""The emulators as pytest fixtures, one name each: ``emulator`` (Google), ``clever`` and ``microsoft``.

Why one module: the same three emulators used to be started in sixteen test files under three names
(``emulator``, ``emu``, ``clever``), each with its sizes copied by hand, so a change to how an emulator
starts (a CA directory, a port, a size) meant sixteen edits. Registered for the whole suite by
``tests/conftest.py`` (``pytest_plugins``).

Each emulator is started fresh for the test (its data is what the test changes) and stopped after it.
Its sizes are the defaults below, changed in this order, the later winning:

- a marker of the fixture's name on the module, the class or the test:
  ``pytestmark = pytest.mark.clever(districts=2, teachers=3, students_per_course=12)``;
- an indirect parameter (a dict of options):
  ``@pytest.mark.parametrize("microsoft", [{"delta_reports_removed": True}], indirect=True)``.

Any constructor option goes the same way, the Clever API version included:
``pytest.mark.clever(version="v3.1")``, or both versions by indirect parameter
(``@pytest.mark.parametrize("clever", [{"version": "v3.0"}, {"version": "v3.1"}], indirect=True)``).

A test that needs several emulators, or one started mid-test with sizes of its own, asks for
``make_emulator`` instead: ``make_emulator(GoogleEmulator, teachers=1)`` starts one with the class's own
defaults and exactly the options given (no defaults of this module), its CA in the test's ``tmp_path``,
and every one it started is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from emulators.clever import CleverEmulator
from emulators.core import EmulatorCore
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator

GOOGLE = {"teachers": 3, "courses_per_teacher": 2, "students_per_course": 12}
CLEVER = {"districts": 1, "teachers": 2, "students_per_course": 6}
MICROSOFT = {"tenants": 2, "teachers": 3, "students_per_course": 8}

E = TypeVar("E", bound=EmulatorCore)


class MakeEmulator(Protocol):
    """``make_emulator(CleverEmulator, districts=2)``: a started emulator of that class, typed as that class."""

    def __call__(self, kind: type[E], /, **options: Any) -> E: ...


def pytest_configure(config: pytest.Config) -> None:
    """The markers are registered, so that ``--strict-markers`` accepts them."""
    for name, emulator in (("emulator", "Google"), ("clever", "Clever"), ("microsoft", "Microsoft")):
        config.addinivalue_line("markers", f"{name}(**options): sizes and options of the {emulator} emulator")


def options_for(request: pytest.FixtureRequest, name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults, then the markers from the module down to the test, then an indirect parameter."""
    options = dict(defaults)
    for mark in reversed(list(request.node.iter_markers(name))):
        options.update(mark.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        options.update(param)
    return options


@pytest.fixture
def emulator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GoogleEmulator]:
    """The Google emulator (the name predates the other two and is kept: some forty files use it)."""
    with GoogleEmulator(cert_dir=tmp_path, **options_for(request, "emulator", GOOGLE)) as emu:
        yield emu


@pytest.fixture
def clever(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CleverEmulator]:
    """The Clever emulator."""
    with CleverEmulator(cert_dir=tmp_path, **options_for(request, "clever", CLEVER)) as emu:
        yield emu


@pytest.fixture
def microsoft(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MicrosoftEmulator]:
    """The Microsoft emulator."""
    with MicrosoftEmulator(cert_dir=tmp_path, **options_for(request, "microsoft", MICROSOFT)) as emu:
        yield emu


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[MakeEmulator]:
    """A factory for tests that start several emulators, or one with sizes of its own, in one test.

    Why not the named fixtures: their sizes are fixed before the test runs; a test of the emulator itself
    (two on one port, a second with other sizes) decides them as it goes. Each is stopped after the test.
    """
    started: list[EmulatorCore] = []

    def make(kind: type[E], /, **options: Any) -> E:
        options.setdefault("cert_dir", tmp_path)
        emulator = kind(**options).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()
