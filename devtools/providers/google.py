"""Google Classroom's emulator kit: the emulator, the ``google_*`` settings that point at it, and its parts in
the bench, the demo and the fleet bench.

Google links teacher by teacher (no organisation-wide link) and has no change feed: the bench links a
hundred-odd teachers of five classes of thirty, and reads rosters in Classroom's ``multipart/mixed``
batches. The demo's chapter: three teachers link; the first sync runs with progress; a roster change
is synced; one teacher revokes at Google and the next cycle honours it; an admin revokes another; the
third stays active. The fleet bench is Google's: its emulator enforces Classroom's published read quotas
(1,200 requests a minute per user, 3,000 per client project).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from connectors.http import http_session
from devtools.headless import consent_headlessly, headless_redirect
from devtools.providers.base import (
    CLASSES_PER_TEACHER,
    BenchKit,
    DemoChapter,
    EmulatorKit,
    Fetch,
    FleetKit,
    Story,
    access_token,
    pages,
    query_params,
    shape,
)
from emulators.core import RequestRecord
from emulators.google import PUBLISHED_RATE_LIMITS, GoogleEmulator
from services.console import err
from services.linking import complete_link, start_link
from services.revoke import revoke_integration
from store import integrations
from store.runtime import Runtime


def settings(emulator: GoogleEmulator) -> dict[str, Any]:
    """OAuth endpoints, the Classroom API and the emulator's client, in the order ``emulate`` prints them."""
    return {
        "google_auth_uri": emulator.auth_uri,
        "google_token_uri": emulator.token_uri,
        "google_revoke_uri": emulator.revoke_uri,
        "google_api_endpoint": emulator.api_endpoint,
        "google_client_id": emulator.client_id,
        "google_client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }


def link_teachers(runtime: Runtime, emulator: GoogleEmulator, prefix: str, every: int = 0) -> list[int]:
    """Every teacher of the emulator links through the consent screen (``{prefix}-{n}``); progress every ``every``."""
    ids = []
    with http_session(runtime.settings) as browser:
        for n, user in enumerate(emulator.teacher_ids):
            emulator.set_consent_user(user)
            url = start_link(runtime, provider_name="google", teacher=f"{prefix}-{n}")
            ids.append(complete_link(runtime, consent_headlessly(browser, url)))
            if every and (n + 1) % every == 0:
                err.print(f"  linked {n + 1:,} teachers")
    return ids


# ------------------------------------------------------------------------------------ the bench
CLASS_SIZE = 30
"""Students per class; the district generator shares a fifth of each class with the previous one."""
COURSES_PAGE, ROSTER_PAGE = 10, 30  # the emulator's caps; Google's documented roster default is 30
BATCH = 50  # Classroom's documented batch limit (connectors.google.BATCH_LIMIT)
API_PREFIX, BATCH_PATH = "/v1/", "/batch"


class GoogleScenario:
    """Teacher links of realistic size: five classes of thirty a teacher, one link per teacher."""

    name = "google"

    def __init__(self, students: int, workdir: Path, *, class_size: int | None = None) -> None:
        if class_size is None:
            teachers, size = shape(students, CLASS_SIZE)
            self.emulator: GoogleEmulator = GoogleEmulator(
                teachers=teachers, courses_per_teacher=CLASSES_PER_TEACHER, students_per_course=size, cert_dir=workdir
            ).start()
        else:
            self.emulator = _one_teacher(students, class_size, workdir)
        self._users: dict[int, str] = {}

    def settings(self) -> dict[str, Any]:
        return settings(self.emulator) | {"google_redirect_uri": headless_redirect("google")}

    def link(self, runtime: Runtime) -> list[int]:
        ids = link_teachers(runtime, self.emulator, "bench-teacher")
        self._users |= dict(zip(ids, self.emulator.teacher_ids, strict=True))
        return ids

    def _active(self) -> set[str]:
        return {c for t in self.emulator.teacher_ids for c in self.emulator.course_ids_of(t, states=["ACTIVE"])}

    def students(self) -> int:
        return len({s for c in self._active() for s in self.emulator.student_ids_of(c)})

    def classes(self) -> int:
        return len(self._active())

    def minimum(self, *, resync: bool) -> int:
        """Per link: its course pages, then its roster list calls in batches of ``BATCH`` (no change feed).

        A link's rosters need at least ceil(list calls / 50) batches, and at least as many as its longest
        roster has pages: a follow-up page can only be asked for once the page before it is in.
        """
        e = self.emulator
        teachers_of: dict[str, int] = {}
        for teacher in e.teacher_ids:
            for course in e.course_ids_of(teacher, states=["ACTIVE"]):
                teachers_of[course] = teachers_of.get(course, 0) + 1
        total = 0
        for teacher in e.teacher_ids:
            courses = e.course_ids_of(teacher, states=["ACTIVE"])
            total += pages(len(courses), COURSES_PAGE)
            listings = [pages(len(e.student_ids_of(course)), ROSTER_PAGE) for course in courses]
            listings += [pages(teachers_of[course], ROSTER_PAGE) for course in courses]
            if listings:
                total += max(math.ceil(sum(listings) / BATCH), max(listings))
        return total

    def change(self, count: int) -> int:
        courses = sorted(self._active())
        for n in range(count):
            course = courses[n % len(courses)]
            leaving = self.emulator.student_ids_of(course)
            if leaving:
                self.emulator.remove_student(course, leaving[0])
            self.emulator.add_student(course)
        return count

    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]:
        by_user = {self._users[i]: access_token(runtime, i) for i in ids}
        return lambda record: by_user[str(record.user_id)]


def one_teacher(students: int, class_size: int, workdir: Path) -> GoogleScenario:
    """The big teacher: one link whose classes hold ``class_size`` students each, as many as make ``students``."""
    return GoogleScenario(students, workdir, class_size=class_size)


def _one_teacher(students: int, class_size: int, workdir: Path) -> GoogleEmulator:
    """One teacher of ``ceil(students / class_size)`` active courses of ``class_size`` students, no student in two
    of them (the district generator shares a fifth of each course with the one before: replaced here)."""
    courses = max(1, math.ceil(students / class_size))
    emulator = GoogleEmulator(
        teachers=1, courses_per_teacher=courses, students_per_course=class_size, cert_dir=workdir
    ).start()
    seen: set[str] = set()
    for course in reversed(emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])):  # oldest first
        for student in emulator.student_ids_of(course):
            if student in seen:
                emulator.remove_student(course, student)
                emulator.add_student(course)
        seen.update(emulator.student_ids_of(course))
    return emulator


def multipart_body(parts: Sequence[RequestRecord]) -> tuple[bytes, str]:
    """A Google batch body of one ``application/http`` GET per logged part, and its Content-Type."""
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <part-{n}>\r\n\r\n"
        f"GET {record.path}?{urlencode(query_params(record))} HTTP/1.1\r\n\r\n"
        for n, record in enumerate(parts, start=1)
    ]
    return ("".join(chunks) + f"--{boundary}--\r\n").encode(), f"multipart/mixed; boundary={boundary}"


def batch_fetch(parts: Sequence[RequestRecord], url: str, token: str, prefix: str) -> Fetch:
    """A Google batch as a plain client sends it: ``multipart/mixed``, the token on the batch (Google applies
    it to its parts)."""
    data, content_type = multipart_body(parts)
    return Fetch("POST", url, token, data=data, content_type=content_type)


def _roster_list(path: str) -> bool:
    return path.rstrip("/").endswith(("/students", "/teachers"))  # Google's roster lists travel only in batches


BENCH = BenchKit(
    scenario=GoogleScenario,
    default_students=10_000,  # linked teacher by teacher: a hundred-odd teacher links, not a district's worth
    api_prefix=API_PREFIX,
    batch_path=BATCH_PATH,
    batched=_roster_list,
    batch_fetch=batch_fetch,
    one_teacher=one_teacher,
)


# ------------------------------------------------------------------------------------ the demo
TEACHERS = ("teacher-ada", "teacher-bo", "teacher-cy")
COURSES_PER_TEACHER = 2


def demo_emulator(students: int, workdir: Path) -> GoogleEmulator:
    """The synthetic district of the demo: three teachers, two courses each, ``students`` spread over them."""
    per_course = max(1, math.ceil(students / (len(TEACHERS) * COURSES_PER_TEACHER)))
    return GoogleEmulator(
        teachers=len(TEACHERS),
        courses_per_teacher=COURSES_PER_TEACHER,
        students_per_course=per_course,
        cert_dir=workdir,
    )


def tell(story: Story, emulator: GoogleEmulator) -> None:
    """The Google part: three teachers link, a change syncs, a revoke at Google and one here are honoured."""
    rt = story.runtime
    ids = _link_demo_teachers(story, emulator)
    err.print(story.heading("First sync"))
    seconds = story.cycle()
    total_students = sum(s.counts.students for s in integrations.summaries(rt.engine))
    err.print(
        f"  first sync of all three integrations took {seconds:.2f} s ({total_students} student rows stored, "
        "each a pseudonym only)"
    )

    err.print(story.heading("The roster changes at Google", ": one student joins, one leaves, the teacher is renamed"))
    first, second, third = (ids[t] for t in TEACHERS)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    emulator.add_student(course)
    emulator.remove_student(course, emulator.student_ids_of(course)[0])
    emulator.rename_user(emulator.teacher_ids[0])
    story.cycle()
    err.print("  change synced")

    err.print(story.heading(f"{TEACHERS[1]} removes rostersync in their Google account", "; the next cycle honours it"))
    emulator.revoke_grants(emulator.teacher_ids[1])
    story.cycle()
    err.print(f"  integration {second}: {integrations.load(rt.engine, second).status}, roster purged")

    err.print(story.heading(f"An admin revokes {TEACHERS[2]}'s integration here"))
    result = revoke_integration(rt, third, actor="admin:demo", reason="teacher left the school")
    err.print(
        f"  integration {third}: revoked here, roster purged, "
        f"{'revoked at Google too' if result.provider_revoked else 'Google revoke not confirmed'}"
    )

    err.print(story.heading("One more cycle", ": only the active integration calls Google"))
    calls_before = len(emulator.requests)
    story.cycle()
    calls = emulator.requests[calls_before:]
    revoked_users = set(emulator.teacher_ids[1:3])
    stray = sum(1 for call in calls if call.user_id in revoked_users)
    err.print(f"  {len(calls)} calls to Google for integration {first}, {stray} for the revoked ones")


def _link_demo_teachers(story: Story, emulator: GoogleEmulator) -> dict[str, int]:
    rt = story.runtime
    err.print(story.heading("Three teachers link their Google accounts", " (consent with state + PKCE)"))
    ids: dict[str, int] = {}
    with http_session(rt.settings) as browser:
        for teacher, google_user in zip(TEACHERS, emulator.teacher_ids, strict=False):
            emulator.set_consent_user(google_user)
            callback = consent_headlessly(browser, start_link(rt, provider_name="google", teacher=teacher))
            ids[teacher] = complete_link(rt, callback)
            err.print(f"  {teacher} linked as integration {ids[teacher]}")
    return ids


DEMO = DemoChapter(label="Google", build=demo_emulator, tell=tell)


# ------------------------------------------------------------------------------------ the fleet bench
def fleet_emulator(
    teachers: int, classes: int, sizes: tuple[int, int], workdir: Path, seed: int = 11
) -> GoogleEmulator:
    """Teachers of ``classes`` classes each; every class topped up to a size drawn from ``sizes`` (the generator's
    are the smallest)."""
    emulator = GoogleEmulator(
        teachers=teachers, courses_per_teacher=classes, students_per_course=sizes[0], cert_dir=workdir
    ).start()
    draw = random.Random(seed)
    for teacher in emulator.teacher_ids:
        for course in emulator.course_ids_of(teacher, states=["ACTIVE"]):
            for _ in range(draw.randint(*sizes) - sizes[0]):
                emulator.add_student(course)
    return emulator


def _enforce(emulator: GoogleEmulator, per_client: int) -> None:
    emulator.set_rate_limits(per_user=PUBLISHED_RATE_LIMITS["user"], per_client=per_client)


FLEET = FleetKit(
    build=fleet_emulator,
    link=lambda runtime, emulator: link_teachers(runtime, emulator, "fleet-teacher", every=500),
    enforce=_enforce,
    quota=PUBLISHED_RATE_LIMITS["client"],
    rate_limit="Google Classroom read requests per minute per client project",
    round_trip=lambda record: record.path.startswith(API_PREFIX) or record.path == BATCH_PATH,
    quota_call=lambda record: record.path.startswith(API_PREFIX),  # each part of a batch is one, the batch none
)


KIT = EmulatorKit(name="google", build=GoogleEmulator, settings=settings, bench=BENCH, demo=DEMO, fleet=FLEET)
