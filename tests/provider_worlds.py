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
from tests.microsoft_fixtures import link_microsoft_teacher

PROVIDERS = ("google", "clever", "microsoft")


@dataclass
class World:
    provider: str
    emulator: EmulatorCore
    data_path: str
    """Part of the path of the provider's class listing, the first roster read of a full sync."""
    values: dict[str, Any]
    linker: Callable[[Runtime], int]
    empty_listing: Callable[[], None]
    """Every class of the linked integration leaves the provider's listing with no word why (not archived,
    not reported deleted), and the next sync is a full listing: what the breaker's empty-listing rule holds."""
    revocable: Callable[[Runtime], tuple[int, str]] | None = None
    """Links a second grant, of the world's last organisation, that the provider itself can end; returns its
    integration id and the provider user whose requests must stop once it has ended."""
    end_grant: Callable[[], None] | None = None
    """The provider ends the ``revocable`` grant (a user's revoke, a district's disconnect, withdrawn consent)."""
    full_linker: Callable[[Runtime], int] | None = None
    """Links an integration whose every sync is a full listing (no change feed between): where the breaker judges
    a sweep. A Google teacher's link; a Clever district's with its events off; a Microsoft teacher's link."""
    rosters: Callable[[], dict[str, list[str]]] = dict
    """The students of every class the ``full_linker`` link sees, at the provider (class id -> student ids)."""
    unenrol: Callable[[str, str], None] | None = None
    """The provider takes one student out of one class (``class id, student id``), in its own way."""
    enrol: Callable[[str, str], None] | None = None
    """The provider puts a student (back) into a class."""
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

    def link_revocable(self, runtime: Runtime) -> tuple[int, str]:
        assert self.revocable is not None
        return self.revocable(runtime)

    def end_revocable_grant(self) -> None:
        assert self.end_grant is not None
        self.end_grant()

    def link_full_listings(self, runtime: Runtime) -> int:
        assert self.full_linker is not None
        return self.full_linker(runtime)

    def take_students(self, per_class: int) -> list[tuple[str, str]]:
        """Take ``per_class`` students out of each class of the link at the provider; ``(class, student)`` pairs."""
        assert self.unenrol is not None
        gone = [(klass, student) for klass, students in self.rosters().items() for student in students[:per_class]]
        for klass, student in gone:
            self.unenrol(klass, student)
        return gone

    def give_back(self, gone: list[tuple[str, str]]) -> None:
        """The students taken away are back in their classes at the provider."""
        assert self.enrol is not None
        for klass, student in gone:
            self.enrol(klass, student)

    def left(self, gone: list[tuple[str, str]]) -> int:
        """How many of the students taken away are in none of the link's classes any more (people removed)."""
        still = {student for students in self.rosters().values() for student in students}
        return len({student for _, student in gone} - still)


def env_of(settings: Settings) -> dict[str, str]:
    """Every setting as the ``ROSTERSYNC_*`` variable a process reads it from; a provider's nested settings
    by the flat names the process reads (``ROSTERSYNC_GOOGLE_CLIENT_ID``, ``ROSTERSYNC_GRAPH_ENDPOINT``)."""
    env: dict[str, str] = {}
    for name, value in settings.flat_values().items():
        _put(env, f"ROSTERSYNC_{name.upper()}", value)
    return env


def _put(env: dict[str, str], name: str, value: Any) -> None:
    if value is None:
        return
    env[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)


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


def _google(tmp_path: Path, database_url: str, orgs: int = 1, **options: Any) -> Iterator[World]:
    """A Google teacher is their own organisation: the world has at least two (``orgs`` is not needed)."""
    sizes = {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 6} | options
    with GoogleEmulator(cert_dir=tmp_path, **sizes) as emu:
        redirect = {"google_redirect_uri": headless_redirect("google")}
        values = _base(database_url) | settings_values("google", emu) | redirect

        def empty_listing() -> None:
            for course in emu.course_ids_of(emu.teacher_ids[0]):
                emu.set_course_state(course, "SUSPENDED")  # SUSPENDED is not asked for; ARCHIVED would explain

        def revocable(rt: Runtime) -> tuple[int, str]:
            return link_teacher(rt, emu, len(emu.teacher_ids) - 1), emu.teacher_ids[-1]

        def end_grant() -> None:
            emu.revoke_grants(emu.teacher_ids[-1])

        def full_linker(rt: Runtime) -> int:
            return link_teacher(rt, emu, 0)  # a teacher's courses have no change feed: every sync lists them

        def rosters() -> dict[str, list[str]]:
            courses = emu.course_ids_of(emu.teacher_ids[0], states=["ACTIVE"])
            return {course: emu.student_ids_of(course) for course in courses}

        yield World(
            "google",
            emu,
            "/v1/courses",
            values,
            lambda rt: link_teacher(rt, emu, 0),
            empty_listing,
            revocable,
            end_grant,
            full_linker,
            rosters,
            emu.remove_student,
            emu.enroll_student,
        )


def _clever(tmp_path: Path, database_url: str, orgs: int = 1, **options: Any) -> Iterator[World]:
    """``orgs`` districts; the link is the first one's."""
    sizes = {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 6} | options
    with CleverEmulator(cert_dir=tmp_path, districts=orgs, **sizes) as emu:
        values = _base(database_url) | settings_values("clever", emu)

        def empty_listing() -> None:
            district = emu.district_ids[0]
            emu.set_events_enabled(district, False)  # a full listing, where no sections.deleted explains it
            for section in emu.section_ids(district):
                emu.unshare_section(section)

        def revocable(rt: Runtime) -> tuple[int, str]:
            return link_district(rt, emu, len(emu.district_ids) - 1), emu.district_ids[-1]

        def end_grant() -> None:
            emu.disconnect_district(emu.district_ids[-1])

        def full_linker(rt: Runtime) -> int:
            emu.set_events_enabled(emu.district_ids[0], False)  # every sync is a full listing
            return link_district(rt, emu, 0)

        def rosters() -> dict[str, list[str]]:
            return {section: emu.students_of(section) for section in emu.section_ids(emu.district_ids[0])}

        yield World(
            "clever",
            emu,
            "/v3.0/sections",
            values,
            lambda rt: link_district(rt, emu, 0),
            empty_listing,
            revocable,
            end_grant,
            full_linker,
            rosters,
            emu.remove_student,
            emu.enroll_student,
        )


def _microsoft(tmp_path: Path, database_url: str, orgs: int = 1, **options: Any) -> Iterator[World]:
    """``orgs`` tenants; the link is the first one's tenant link, the revocable grant a teacher's of the last."""
    sizes = {"teachers": 2, "courses_per_teacher": 2, "students_per_course": 6} | options
    with MicrosoftEmulator(cert_dir=tmp_path, tenants=orgs, **sizes) as emu:
        redirect = {"microsoft_redirect_uri": "https://platform.example/integrations/microsoft/callback"}
        values = _base(database_url) | settings_values("microsoft", emu) | redirect  # a teacher's link needs it

        def link(rt: Runtime) -> int:
            return link_org(rt, provider_name="microsoft", org=emu.tenant_ids[0])

        def empty_listing() -> None:
            tenant = emu.tenant_ids[0]
            for class_id in emu.class_ids(tenant):
                emu.delete_class(class_id)  # never reported by class delta, as Graph documents
            emu.expire_delta_tokens(tenant)  # so the next sync is the full listing that sees it

        def revocable(rt: Runtime) -> tuple[int, str]:
            teacher = emu.teacher_ids(emu.tenant_ids[-1])[0]
            return link_microsoft_teacher(rt, emu, teacher, "t-1"), teacher

        def end_grant() -> None:
            emu.withdraw_consent(emu.tenant_ids[-1])

        def full_linker(rt: Runtime) -> int:
            return link_microsoft_teacher(rt, emu, emu.teacher_ids(emu.tenant_ids[0])[0])  # full listings

        def rosters() -> dict[str, list[str]]:
            tenant = emu.tenant_ids[0]
            students = set(emu.student_ids(tenant))
            mine = emu.class_ids(tenant, teacher_id=emu.teacher_ids(tenant)[0])
            return {c: [m for m in emu.members_of(c) if m in students] for c in mine}

        yield World(
            "microsoft",
            emu,
            "/education/classes",
            values,
            link,
            empty_listing,
            revocable,
            end_grant,
            full_linker,
            rosters,
            emu.remove_member,
            emu.add_member,
        )


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
