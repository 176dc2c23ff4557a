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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator

GOOGLE = {"teachers": 3, "courses_per_teacher": 2, "students_per_course": 12}
CLEVER = {"districts": 1, "teachers": 2, "students_per_course": 6}
MICROSOFT = {"tenants": 2, "teachers": 3, "students_per_course": 8}


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
