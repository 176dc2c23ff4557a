"""Microsoft 365 Education's emulator kit: the emulator, the settings that point at it (Entra, Graph), its
tenants, and its parts in the bench and the demo.

An Entra tenant links once for all its students (client credentials): the bench's tenant is one of
100,000 students, its classes listed and their members read in Graph ``$batch``es. The demo's chapter:
one tenant links school-wide and two teachers sign in, one of another tenant and one of the linked
school; a change arrives through Graph delta; the first teacher's tenant withdraws consent and the next
cycle honours it while the tenant link and the other teacher stay active.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from connectors.http import http_session
from devtools.headless import consent_headlessly
from devtools.providers.base import (
    CLASSES_PER_TEACHER,
    BenchKit,
    DemoChapter,
    EmulatorKit,
    Fetch,
    Story,
    pages,
    query_params,
    shape,
)
from emulators.core import RequestRecord
from emulators.microsoft import MicrosoftEmulator
from services.console import err
from services.linking import complete_link, link_org, start_link
from store import integrations
from store.runtime import Runtime


def settings(emulator: MicrosoftEmulator) -> dict[str, Any]:
    """The authority host, the Graph endpoint (``graph_endpoint``, its historical flat name) and the client."""
    return {
        "microsoft_authority_host": emulator.authority_host,
        "graph_endpoint": emulator.graph_endpoint,
        "microsoft_client_id": emulator.client_id,
        "microsoft_client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }


def notes(emulator: MicrosoftEmulator) -> list[str]:
    """A tenant links as an organisation: its id is needed."""
    return [f"tenants: {', '.join(emulator.tenant_ids)}"]


# ------------------------------------------------------------------------------------ the bench
CLASS_SIZE = 25
GRAPH_PAGE, GRAPH_BATCH = 999, 20  # Graph's largest $top for directory lists; its $batch limit
API_PREFIX, BATCH_PATH = "/v1.0/", "/v1.0/$batch"


class MicrosoftScenario:
    """One Entra tenant linked school-wide (client credentials): classes, then members in ``$batch``es."""

    name = "microsoft"

    def __init__(self, students: int, workdir: Path) -> None:
        teachers, size = shape(students, CLASS_SIZE)
        self.emulator: MicrosoftEmulator = MicrosoftEmulator(
            tenants=1,
            teachers=teachers,
            courses_per_teacher=CLASSES_PER_TEACHER,
            students_per_course=size,
            cert_dir=workdir,
        ).start()
        self.tenant = self.emulator.tenant_ids[0]

    def settings(self) -> dict[str, Any]:
        return settings(self.emulator)

    def link(self, runtime: Runtime) -> list[int]:
        return [link_org(runtime, provider_name="microsoft", org=self.tenant, tenant=f"bench-{uuid.uuid4().hex[:8]}")]

    def students(self) -> int:
        return len(self.emulator.student_ids(self.tenant))

    def classes(self) -> int:
        return len(self.emulator.class_ids(self.tenant))

    def minimum(self, *, resync: bool) -> int:
        """Full: both delta walks (the cursor), the class list, members and teachers 20 to a ``$batch``.

        Re-sync: one page of class delta and one of user delta.
        """
        if resync:
            return 2
        classes = self.classes()
        users = classes and len(self.emulator.teacher_ids(self.tenant)) + self.students()
        return 2 * pages(classes, GRAPH_PAGE) + pages(users, GRAPH_PAGE) + math.ceil(2 * classes / GRAPH_BATCH)

    def change(self, count: int) -> int:
        e = self.emulator
        classes = e.class_ids(self.tenant)
        students = set(e.student_ids(self.tenant))
        for n in range(count):
            klass = classes[n % len(classes)]
            leaving = [m for m in e.members_of(klass) if m in students]
            if leaving:
                e.remove_member(klass, leaving[0])
            students.add(e.add_student(klass))
        return count

    def tokens(self, runtime: Runtime, ids: Sequence[int]) -> Callable[[RequestRecord], str]:
        e = self.emulator
        answer = requests.post(
            e.authority(self.tenant) + "/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": e.client_id,
                "client_secret": e.client_secret,
                "scope": "https://graph.microsoft.com/.default",
            },
            verify=str(e.ca_path),
            timeout=30,
        )
        answer.raise_for_status()
        token = str(answer.json()["access_token"])
        return lambda record: token


def record_url(record: RequestRecord, prefix: str) -> str:
    """A logged request as a ``$batch`` part's relative URL."""
    query = urlencode(query_params(record), safe="$,")
    return "/" + record.path.removeprefix(prefix) + (f"?{query}" if query else "")


def batch_fetch(parts: Sequence[RequestRecord], url: str, token: str, prefix: str) -> Fetch:
    """A Graph ``$batch`` as a plain client sends it: its parts as JSON, one GET each."""
    body = {
        "requests": [
            {
                "id": str(n),
                "method": "GET",
                "url": record_url(sub, prefix),
            }
            for n, sub in enumerate(parts)
        ]
    }
    return Fetch("POST", url, token, body=body)


def _member_list(path: str) -> bool:
    return path.rstrip("/").endswith(("/members", "/teachers"))  # a class's people are read in ``$batch``es


BENCH = BenchKit(
    scenario=MicrosoftScenario,
    default_students=100_000,
    api_prefix=API_PREFIX,
    batch_path=BATCH_PATH,
    batched=_member_list,
    batch_fetch=batch_fetch,
)


# ------------------------------------------------------------------------------------ the demo
COURSES_PER_TEACHER = 2


def demo_emulator(students: int, workdir: Path) -> MicrosoftEmulator:
    """Two synthetic tenants: one links school-wide and a teacher of it signs in; so does a teacher of the other."""
    per_class = max(1, math.ceil(students / (2 * 2 * COURSES_PER_TEACHER)))
    return MicrosoftEmulator(
        tenants=2, teachers=2, courses_per_teacher=COURSES_PER_TEACHER, students_per_course=per_class, cert_dir=workdir
    )


def _graph_calls(microsoft: MicrosoftEmulator, since: int) -> int:
    return sum(
        1 for call in microsoft.requests[since:] if call.path.startswith("/v1.0/") and "/$batch" not in call.path
    )


def tell(story: Story, microsoft: MicrosoftEmulator) -> None:
    """The Microsoft part: a tenant link, two teacher links, a Graph delta change, one teacher's consent withdrawn."""
    school, other = microsoft.tenant_ids[:2]
    tenant_link, withdrawn, stays = _link(story, microsoft)
    before = len(microsoft.requests)
    story.cycle()
    err.print(
        f"  first Microsoft sync: {_graph_calls(microsoft, before)} Graph reads for the three links ($batch "
        "sub-requests counted one by one; members asked for id,primaryRole only: no student name crosses the wire)"
    )

    err.print(story.heading("The roster changes in Microsoft 365", ": a student joins a class; Graph delta reports it"))
    microsoft.add_student(microsoft.class_ids(school)[0])
    before = len(microsoft.requests)
    story.cycle()
    err.print(f"  synced: {_graph_calls(microsoft, before)} Graph reads (the tenant link read its delta)")

    err.print(
        story.heading(
            "teacher-eve's tenant admin withdraws rostersync's consent in Entra", "; the next cycle honours it"
        )
    )
    microsoft.withdraw_consent(other)
    story.cycle()
    engine = story.runtime.engine
    err.print(f"  integration {withdrawn}: {integrations.load(engine, withdrawn).status}, roster purged")
    before = len(microsoft.requests)
    story.cycle()
    stray = sum(1 for call in microsoft.requests[before:] if call.user_id in microsoft.teacher_ids(other))
    err.print(
        f"  one more cycle: integrations {tenant_link} and {stays} "
        f"{integrations.load(engine, tenant_link).status} and {integrations.load(engine, stays).status}, "
        f"{stray} requests for the withdrawn teacher (Microsoft has no revoke endpoint: consent is the switch)"
    )


def _link(story: Story, microsoft: MicrosoftEmulator) -> tuple[int, int, int]:
    """A tenant links school-wide; a teacher of another tenant and one of the linked school sign in: the tenant
    link, the teacher whose consent is withdrawn, the one who stays."""
    rt = story.runtime
    school, other = microsoft.tenant_ids[:2]
    err.print(
        story.heading(
            "A Microsoft 365 tenant links school-wide",
            " (`rostersync link org --provider microsoft`: client credentials, EduRoster.Read.All)",
        )
    )
    tenant_link = link_org(rt, provider_name="microsoft", org=school, tenant="tenant-one")
    teacher_links: dict[str, int] = {}
    with http_session(rt.settings) as browser:
        for teacher, user, tenant in (
            ("teacher-eve", microsoft.teacher_ids(other)[0], "tenant-two"),
            ("teacher-fay", microsoft.teacher_ids(school)[0], "tenant-one"),
        ):
            microsoft.set_signin_user(user)
            url = start_link(rt, provider_name="microsoft", teacher=teacher, tenant=tenant)
            teacher_links[teacher] = complete_link(rt, consent_headlessly(browser, url))
    withdrawn, stays = teacher_links["teacher-eve"], teacher_links["teacher-fay"]
    err.print(
        f"  tenant link: integration {tenant_link}; two teachers sign in (auth code + PKCE, EduRoster.ReadBasic): "
        f"teacher-eve of another tenant, integration {withdrawn}, and teacher-fay of the linked school, "
        f"integration {stays}; MSAL token caches sealed in the vault"
    )
    return tenant_link, withdrawn, stays


DEMO = DemoChapter(label="Microsoft (Entra ID + Graph)", build=demo_emulator, tell=tell)


KIT = EmulatorKit(name="microsoft", build=MicrosoftEmulator, settings=settings, notes=notes, bench=BENCH, demo=DEMO)
