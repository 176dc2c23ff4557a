"""Google's batch endpoint end to end: the real google-api-python-client against the real emulator.

Course rosters go to Google ``50`` list calls a batch; each part must come back, and fail, exactly
as the call would on its own, and a batch is one HTTP round trip for every count that says so
(the emulator's hooks, ``requests_made``, ``sync_runs.provider_calls``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.base import UNREADABLE, Page, RateLimited
from connectors.google import BATCH_LIMIT, GoogleConnector, _batch_answers, classroom
from emulators.core import Request, RequestRecord, Response
from emulators.google import MAX_BATCH_CALLS, GoogleEmulator
from providers.registry import tokens_from_payload
from store import integrations
from store.runtime import Runtime, build_runtime, set_runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher, settings_for
from tests.helpers import enrollments

MASKS = {
    "class": "courses(id,name,section,courseState),nextPageToken",
    "student": "students(userId),nextPageToken",
    "teacher": "teachers(userId,profile(name(fullName))),nextPageToken",
}


@pytest.fixture
def rt(emulator: GoogleEmulator, tmp_path: Path) -> Iterator[Runtime]:
    runtime = build_runtime(settings_for(emulator, f"sqlite:///{tmp_path / 'batch.db'}"))
    set_runtime(runtime)
    yield runtime
    set_runtime(None)
    runtime.engine.dispose()


class Trips:
    """An emulator hook: the HTTP round trips to the API (a batch once, its parts never)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, record: RequestRecord) -> None:
        if record.path.startswith("/v1/") or record.path == "/batch":
            self.paths.append(record.path)


def connector(runtime: Runtime, integration_id: int, slept: list[float] | None = None) -> GoogleConnector:
    blob = integrations.load(runtime.engine, integration_id).token_blob
    assert blob is not None
    tokens = tokens_from_payload(runtime.vault.open(blob))
    waits = slept if slept is not None else []
    return GoogleConnector(runtime.settings, tokens, lambda _tokens: None, sleep=waits.append)


def parts_of_batches(emulator: GoogleEmulator, since: int = 0) -> list[list[RequestRecord]]:
    """The log's batches, each as the parts logged just before it."""
    batches: list[list[RequestRecord]] = []
    parts: list[RequestRecord] = []
    for record in emulator.requests[since:]:
        if record.path == "/batch":
            batches.append(parts)
            parts = []
        elif record.path.endswith(("/students", "/teachers")):
            parts.append(record)
    return batches


def roster(pages: list[Page]) -> dict[tuple[str | None, str], set[str]]:
    found: dict[tuple[str | None, str], set[str]] = {}
    for page in pages:
        found.setdefault((page.parent_id, page.kind), set()).update(str(r.get("userId")) for r in page.records)
    return found


# ------------------------------------------------------------------------------------ round trip
def test_one_batch_reads_every_roster_with_its_mask_and_is_one_round_trip(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    trips = Trips()
    emulator.add_hook(trips)
    seen = len(emulator.requests)
    reader = connector(rt, integration_id)
    pages = list(reader.members(courses, MASKS))
    assert [p.parent_id for p in pages] == [c for c in courses for _ in ("students", "teachers")]
    assert [p.kind for p in pages] == ["students", "teachers"] * len(courses)  # course by course, as before
    got = roster(pages)
    for course in courses:
        assert got[(course, "students")] == set(emulator.student_ids_of(course))
    [parts] = parts_of_batches(emulator, seen)
    assert len(parts) == 2 * len(courses) and all(part.status == 200 for part in parts)
    for part in parts:  # minimal masks on every part (P2)
        kind = part.path.rsplit("/", 1)[-1]
        assert part.query["fields"] == [MASKS["student" if kind == "students" else "teacher"]]
    assert trips.paths == ["/batch"] and reader.requests_made == 1  # the hooks see the batch once


def test_the_emulator_answers_each_part_with_its_own_status_and_content_id(
    emulator: GoogleEmulator, rt: Runtime
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    token = tokens_from_payload(
        rt.vault.open(integrations.load(rt.engine, integration_id).token_blob or b"")
    ).access_token
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    data, content_type = batch_body(
        [f"/v1/courses/{course}/students?fields=students(userId)", "/v1/courses/999999999999/teachers"]
    )
    answer = post_batch(emulator, data, content_type, token)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    text = answer.text
    assert text.index("Content-ID: <response-item-1>") < text.index("Content-ID: <response-item-2>")
    assert "HTTP/1.1 200 OK" in text and "HTTP/1.1 404 Not Found" in text
    assert '"userId"' in text and "profile" not in text  # the part's own mask applied


def test_a_batch_over_the_documented_limit_is_refused_whole(emulator: GoogleEmulator, rt: Runtime) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    token = tokens_from_payload(
        rt.vault.open(integrations.load(rt.engine, integration_id).token_blob or b"")
    ).access_token
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    seen = len(emulator.requests)
    data, content_type = batch_body([f"/v1/courses/{course}/students"] * (MAX_BATCH_CALLS + 1))
    answer = post_batch(emulator, data, content_type, token)
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert [r.path for r in emulator.requests[seen:]] == ["/batch"]  # no part was served
    data, content_type = batch_body([f"/v1/courses/{course}/students"] * MAX_BATCH_CALLS)
    assert post_batch(emulator, data, content_type, token).status_code == 200


def test_many_courses_go_fifty_calls_a_batch(tmp_path: Path) -> None:
    with GoogleEmulator(cert_dir=tmp_path, teachers=1, courses_per_teacher=30, students_per_course=3) as emulator:
        runtime = build_runtime(settings_for(emulator, f"sqlite:///{tmp_path / 'many.db'}"))
        try:
            integration_id = link_teacher(runtime, emulator, 0)
            courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
            seen = len(emulator.requests)
            pages = list(connector(runtime, integration_id).members(courses, MASKS))
            assert len(pages) == 2 * len(courses)
            sizes = [len(parts) for parts in parts_of_batches(emulator, seen)]
            assert sizes == [BATCH_LIMIT, 2 * len(courses) - BATCH_LIMIT]
        finally:
            runtime.engine.dispose()


def test_follow_up_pages_go_in_the_next_batch_and_a_closed_reader_sends_nothing(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    for _ in range(40):  # 52 students: two pages
        emulator.add_student(courses[0])
    seen = len(emulator.requests)
    pages = connector(rt, integration_id).members(courses, MASKS)
    first = next(pages)
    assert first.parent_id == courses[0] and len(first.records) == 30
    assert len(parts_of_batches(emulator, seen)) == 1  # the follow-up is not fetched ahead of the reader
    pages.close()  # the worker stopped reading (a fence, a revoke)
    assert len(parts_of_batches(emulator, seen)) == 1
    everything = list(connector(rt, integration_id).members(courses, MASKS))
    assert roster(everything)[(courses[0], "students")] == set(emulator.student_ids_of(courses[0]))
    follow_up = parts_of_batches(emulator, seen)[-1]
    assert [("pageToken" in r.query, r.path.endswith("/students")) for r in follow_up] == [(True, True)]


# ------------------------------------------------------------------------------------ part failures
def test_a_part_404_marks_that_course_unreadable_and_the_others_sync(rt: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    pages = list(connector(rt, integration_id).members([courses[0], "999999999999", courses[1]], MASKS))
    assert [(p.parent_id, p.kind) for p in pages] == [
        (courses[0], "students"),
        (courses[0], "teachers"),
        ("999999999999", UNREADABLE),
        (courses[1], "students"),
        (courses[1], "teachers"),
    ]


def test_a_course_whose_teachers_fail_is_unreadable_even_with_students_still_to_page(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    for _ in range(40):  # the students need a follow-up page the broken course never gets
        emulator.add_student(courses[0])
    emulator.fail_next(f"/courses/{courses[0]}/teachers", 404)
    seen = len(emulator.requests)
    pages = list(connector(rt, integration_id).members(courses, MASKS))
    assert [(p.parent_id, p.kind) for p in pages] == [
        (courses[0], UNREADABLE),
        *[(course, kind) for course in courses[1:] for kind in ("students", "teachers")],
    ]
    assert len(parts_of_batches(emulator, seen)) == 1  # no follow-up for a course already lost


def test_a_part_401_costs_one_refresh_and_only_the_failed_parts_are_sent_again(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    emulator.fail_next(f"/courses/{courses[0]}/teachers", 401)
    seen = len(emulator.requests)
    reader = connector(rt, integration_id)
    pages = list(reader.members(courses, MASKS))
    assert (
        roster(pages)[(courses[0], "teachers")] == {emulator.teacher_ids[0]} | roster(pages)[(courses[0], "teachers")]
    )
    assert [r.path for r in emulator.requests[seen:] if r.path == "/token"] == ["/token"]
    batches = parts_of_batches(emulator, seen)
    assert [len(parts) for parts in batches] == [2 * len(courses), 1]
    assert batches[1][0].path.endswith(f"{courses[0]}/teachers") and reader.requests_made == 2


def test_a_throttled_part_is_sent_again_after_its_retry_after(rt: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    emulator.fail_next(f"/courses/{courses[1]}/students", 429, retry_after=2)
    slept: list[float] = []
    pages = list(connector(rt, integration_id, slept).members(courses, MASKS))
    assert slept == [2.0]
    assert roster(pages)[(courses[1], "students")] == set(emulator.student_ids_of(courses[1]))


def test_a_part_over_the_quota_is_rate_limited_after_the_pages_already_in(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    """Google's quota 429 names no Retry-After: too long to wait in place. The pages answered before it
    are handed out, then ``RateLimited``; no further batch goes out."""
    integration_id = link_teacher(rt, emulator, 0)
    courses = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])
    emulator.set_rate_limits(per_user=3)  # every call counts, the parts of a batch too: the 4th is refused
    seen = len(emulator.requests)
    got: list[Page] = []
    with pytest.raises(RateLimited):
        for page in connector(rt, integration_id).members(courses, MASKS):
            got.append(page)
    assert [(p.parent_id, p.kind) for p in got] == [
        (courses[0], "students"),
        (courses[0], "teachers"),
        (courses[1], "students"),
    ]
    [parts] = parts_of_batches(emulator, seen)
    assert [p.status for p in parts] == [200, 200, 200] + [429] * (len(parts) - 3)


# ------------------------------------------------------------------------------------ the sync
def test_a_malformed_batch_answer_is_a_provider_data_error_and_removes_nothing(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    assert run_sync(rt, integration_id).outcome == "ok"
    before = {(e.class_id, e.person_id) for e in enrollments(rt.engine, integration_id)}
    emulator.remove_student(*first_student(emulator))  # a whole listing would remove one

    def broken(request: Request, response: Response) -> Response:
        boundary = "batch_cut"
        return Response(200, f"--{boundary}\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 2".encode(),
                        [("Content-Type", f"multipart/mixed; boundary={boundary}")])  # fmt: skip

    emulator.tamper_next("/batch", broken)
    outcome = run_sync(rt, integration_id)
    assert (outcome.outcome, outcome.removed) == ("provider_data", 0)
    assert {(e.class_id, e.person_id) for e in enrollments(rt.engine, integration_id)} == before
    assert run_sync(rt, integration_id).outcome == "ok"


def test_provider_calls_are_the_round_trips_and_fewer_than_the_roster_lists(
    rt: Runtime, emulator: GoogleEmulator
) -> None:
    integration_id = link_teacher(rt, emulator, 0)
    trips = Trips()
    emulator.add_hook(trips)
    seen = len(emulator.requests)
    outcome = run_sync(rt, integration_id)
    lists = [r for r in emulator.requests[seen:] if r.path.endswith(("/students", "/teachers"))]
    assert outcome.outcome == "ok"
    assert outcome.provider_calls == len(trips.paths) == 2  # the course list and one batch
    assert outcome.provider_calls < len(lists)


def first_student(emulator: GoogleEmulator) -> tuple[str, str]:
    course = emulator.course_ids_of(emulator.teacher_ids[0], states=["ACTIVE"])[0]
    return course, emulator.student_ids_of(course)[0]


# ------------------------------------------------------------------------------------ helpers
def batch_body(targets: list[str]) -> tuple[bytes, str]:
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item-{n}>\r\n\r\nGET {target} HTTP/1.1\r\n\r\n"
        for n, target in enumerate(targets, start=1)
    ]
    return ("".join(chunks) + f"--{boundary}--\r\n").encode(), f"multipart/mixed; boundary={boundary}"


def post_batch(emulator: GoogleEmulator, data: bytes, content_type: str, token: str | None) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(emulator.ca_path)
        return session.post(
            emulator.api_endpoint + "/batch",
            data=data,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
            timeout=10,
        )


def test_a_batch_answer_is_read_part_by_part_whatever_its_line_ends() -> None:
    """The connector reads Google's answer itself: each part by its ``Content-ID``, bare LF line ends and a
    folded header too; a part left out, or no closing delimiter, is not a whole answer."""
    crlf = (
        b"--b\r\nContent-Type: application/http\r\nContent-ID: <response-x+1>\r\n\r\n"
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"students": []}\r\n'
        b"--b\r\nContent-Type: application/http\r\nContent-ID:\r\n <response-x+2>\r\n\r\n"
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n\r\n{}\r\n--b--\r\n"
    )
    answers = _batch_answers('multipart/mixed; boundary="b"', crlf)
    assert answers["x+1"] == (200, {"content-type": "application/json"}, b'{"students": []}')
    assert answers["x+2"][:2] == (429, {"retry-after": "3"})
    assert _batch_answers("multipart/mixed; boundary=b", crlf.replace(b"\r\n", b"\n")) == answers
    with pytest.raises(ValueError):
        _batch_answers("multipart/mixed; boundary=b", crlf.removesuffix(b"--b--\r\n"))
    with pytest.raises(ValueError):
        _batch_answers("text/html", crlf)


@pytest.mark.parametrize("course_id", ["123456789", "abc-_.~9", "a b", "x/y", "%41", "é"])
@pytest.mark.parametrize("role", ["student", "teacher"])
def test_a_roster_call_is_the_request_the_library_builds(role: str, course_id: str) -> None:
    """The roster list calls are copies of one call built per role and mask (``_Classroom.roster_call``): each is
    the request the library would have built for its course, to the byte; an id the library escapes is its own."""
    shared = classroom("https://classroom.googleapis.com/")
    collection = shared.students if role == "student" else shared.teachers
    for _ in range(2):  # the call that builds the shared one, then a copy of it
        built = collection.list(courseId=course_id, fields=MASKS[role])
        copied = shared.roster_call(role, course_id, MASKS[role])
        assert copied is not built
        assert vars(copied) == vars(built) | {"postproc": copied.postproc}
        assert copied.postproc == built.postproc
        assert copied.headers is not shared.roster_calls.get((role, MASKS[role]), built).headers
