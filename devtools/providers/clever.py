"""Clever's emulator kit: the emulator, the ``clever_*`` settings that point at it, its districts, and its parts
in the bench and the demo.

A district links once for all its students (``link org``), and its sections carry the student ids: the
bench's district is one of 100,000 students. The demo's chapter: two districts link school-wide and one
Library teacher signs in; a change arrives through Clever's events; one district disconnects and the
next cycle honours it while the other district and the teacher stay active.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from connectors.http import http_session
from devtools.headless import consent_headlessly
from devtools.providers.base import CLASSES_PER_TEACHER, BenchKit, DemoChapter, EmulatorKit, Story, pages, shape
from emulators.clever import CleverEmulator
from emulators.core import RequestRecord
from services.console import err
from services.linking import complete_link, link_org, start_link
from store import integrations
from store.runtime import Runtime


def settings(emulator: CleverEmulator) -> dict[str, Any]:
    """Sign-in, token (and district token) URLs, the API base and the emulator's client."""
    return {
        "clever_authorize_url": emulator.authorize_url,
        "clever_token_url": emulator.token_url,
        "clever_api_base": emulator.api_base,
        "clever_client_id": emulator.client_id,
        "clever_client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }


def notes(emulator: CleverEmulator) -> list[str]:
    """A district links as an organisation, a Library teacher by their own sign-in: both ids are needed."""
    library = ", ".join(emulator.teacher_ids(None))
    return [f"districts: {', '.join(emulator.district_ids)}; Library teachers: {library}"]


# ------------------------------------------------------------------------------------ the bench
CLASS_SIZE = 25
PAGE = 10_000  # Clever's largest ``limit``
API_PREFIX = "/v3.0/"


class CleverScenario:
    """One district linked school-wide (``link org``): its sections carry the student ids."""

    name = "clever"

    def __init__(self, students: int, workdir: Path) -> None:
        teachers, size = shape(students, CLASS_SIZE)
        self.emulator: CleverEmulator = CleverEmulator(
            districts=1,
            teachers=teachers,
            courses_per_teacher=CLASSES_PER_TEACHER,
            students_per_course=size,
            library_teachers=0,
            cert_dir=workdir,
            rate_limit=10**9,  # the bench measures speed; the published limit is the fleet's business
        ).start()
        self.district = self.emulator.district_ids[0]

    def settings(self) -> dict[str, Any]:
        return settings(self.emulator)

    def link(self, runtime: Runtime) -> list[int]:
        return [link_org(runtime, provider_name="clever", org=self.district, tenant=f"bench-{uuid.uuid4().hex[:8]}")]

    def students(self) -> int:
        return len(self.emulator.student_ids(self.district))

    def classes(self) -> int:
        return len(self.emulator.section_ids(self.district))

    def minimum(self, *, resync: bool) -> int:
        """Full: the event cursor, the sections (students ride inside them), the teachers. Re-sync: one events page."""
        if resync:
            return 1
        sections = pages(self.classes(), PAGE)
        return 1 + sections + pages(len(self.emulator.teacher_ids(self.district)), PAGE)

    def change(self, count: int) -> int:
        sections = self.emulator.section_ids(self.district)
        for n in range(count):
            section = sections[n % len(sections)]
            leaving = self.emulator.students_of(section)
            if leaving:
                self.emulator.remove_student(section, leaving[0])
            self.emulator.add_student(section)
        return count

    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]:
        token = self.emulator.district_token(self.district)
        assert token is not None
        return lambda record: token


BENCH = BenchKit(scenario=CleverScenario, default_students=100_000, api_prefix=API_PREFIX)


# ------------------------------------------------------------------------------------ the demo
COURSES_PER_TEACHER = 2


def demo_emulator(students: int, workdir: Path) -> CleverEmulator:
    """Two synthetic districts and one Library teacher; ``students`` spread over the districts' sections."""
    per_section = max(1, math.ceil(students / (2 * 2 * COURSES_PER_TEACHER)))
    return CleverEmulator(
        districts=2,
        teachers=2,
        courses_per_teacher=COURSES_PER_TEACHER,
        students_per_course=per_section,
        cert_dir=workdir,
    )


def _calls(clever: CleverEmulator, since: int) -> int:
    return sum(1 for call in clever.requests[since:] if call.path.startswith("/v3.0"))


def tell(story: Story, clever: CleverEmulator) -> None:
    """The Clever part: district links, a Library teacher, events, a disconnect honoured."""
    first = clever.district_ids[0]
    gone, stays, library = _link(story, clever)
    before = len(clever.requests)
    story.cycle()
    err.print(
        f"  first Clever sync: {_calls(clever, before)} requests in all (per district: the event cursor, "
        "one page of sections, one of teachers; no student record is ever requested)"
    )

    err.print(story.heading("The roster changes in Clever", ": a student joins a section; Clever records events"))
    section = clever.section_ids(first)[0]
    clever.add_student(section)
    before = len(clever.requests)
    story.cycle()
    err.print(f"  synced from the events feed: {_calls(clever, before)} requests for all three Clever links")

    err.print(story.heading(f"District {first[-6:]} disconnects rostersync in Clever", "; the next cycle honours it"))
    clever.disconnect_district(first)
    story.cycle()
    engine = story.runtime.engine
    err.print(f"  integration {gone}: {integrations.load(engine, gone).status}, roster purged")
    before = len(clever.requests)
    story.cycle()
    stray = sum(1 for call in clever.requests[before:] if call.user_id == first)
    err.print(
        f"  one more cycle: integrations {stays} and {library} "
        f"{integrations.load(engine, stays).status} and {integrations.load(engine, library).status}, "
        f"{stray} requests for the disconnected district"
    )


def _link(story: Story, clever: CleverEmulator) -> tuple[int, int, int]:
    """Two districts link school-wide, a Library teacher signs in: the district that goes, the one that stays,
    the teacher."""
    rt = story.runtime
    first, second = clever.district_ids[:2]
    err.print(story.heading("Two districts link school-wide in Clever", " (`rostersync link org --provider clever`)"))
    gone = link_org(rt, provider_name="clever", org=first, tenant="district-one")
    stays = link_org(rt, provider_name="clever", org=second, tenant="district-two")
    err.print(f"  district links: integrations {gone} and {stays} (their app tokens sealed in the vault)")
    teacher = clever.teacher_ids(None)[0]
    clever.set_consent_user(teacher)
    with http_session(rt.settings) as browser:
        callback = consent_headlessly(browser, start_link(rt, provider_name="clever", teacher="teacher-dee"))
    library = complete_link(rt, callback)
    err.print(f"  a Library teacher (no district) signs in with Clever: integration {library}")
    return gone, stays, library


DEMO = DemoChapter(label="Clever", build=demo_emulator, tell=tell)


KIT = EmulatorKit(name="clever", build=CleverEmulator, settings=settings, notes=notes, bench=BENCH, demo=DEMO)
