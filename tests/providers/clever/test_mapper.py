"""The Clever mapper keeps exactly the allowlist projection: against records carrying every property
of the published v3.0 and v3.1 definitions, no canary value survives mapping."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from connectors.clever import CleverConnector, district_token
from emulators.clever import CleverEmulator
from mappers.clever import (
    ALLOWLIST,
    USER,
    CleverIdentity,
    field_mask,
    identity,
    map_event,
    map_sections,
    map_teachers,
    role_from_userinfo,
    user_records_needed,
)
from mappers.policy import MappingContext, Pseudonymiser
from mappers.records import ClassRecord, PersonRecord
from tests.clever_fixtures import clever_settings

KEY = "k" * 40


# Both published API versions, through the plugin's ``clever`` (its default sizes: one district).
BOTH_VERSIONS = pytest.mark.parametrize(
    "clever", [{"version": "v3.0"}, {"version": "v3.1"}], ids=["v3.0", "v3.1"], indirect=True
)


@pytest.fixture
def context() -> MappingContext:
    return MappingContext(tenant="school-a", granted_scopes=frozenset(), pseudonymiser=Pseudonymiser(KEY))


def _raw(clever: CleverEmulator) -> tuple[list[Any], list[Any], list[Any]]:
    """Sections, teachers and (only for this test's contrast) students, straight off the wire."""
    settings = clever_settings(clever)
    district_id = clever.district_ids[0]
    token = district_token(settings, district_id)
    assert token is not None
    with CleverConnector(settings, token, district_id=district_id) as connector:
        sections = [r for page in connector.sections() for r in page.records]
        teachers = [r for page in connector.teachers() for r in page.records]
        students = [connector.user(s) for s in clever.student_ids(district_id)[:3]]
    return sections, teachers, students


def _dump(value: Any) -> str:
    return repr(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)


@BOTH_VERSIONS
def test_records_equal_the_allowlist_projection(clever: CleverEmulator, context: MappingContext) -> None:
    sections, raw_teachers, _ = _raw(clever)
    teachers, skipped = map_teachers(raw_teachers, context)
    assert skipped == 0
    pseudonymiser = context.pseudonymiser
    for raw in raw_teachers:
        pseudonym = pseudonymiser.pseudonym("clever", "school-a", raw["id"])
        assert teachers[pseudonym] == PersonRecord(
            role="teacher",
            pseudonym=pseudonym,
            display_name=f"{raw['name']['first']} {raw['name']['last']}",
            email_address=raw["email"],
        )
    batch = map_sections(sections, context, teachers)
    assert batch.skipped == 0
    assert batch.classes == [ClassRecord(s["id"], s["name"], s["period"], "ACTIVE") for s in sections]
    for section in sections:
        enrolled = {(e.pseudonym, e.role) for e in batch.enrollments if e.class_external_id == section["id"]}
        expected = {(pseudonymiser.pseudonym("clever", "school-a", s), "student") for s in section["students"]}
        expected |= {(pseudonymiser.pseudonym("clever", "school-a", t), "teacher") for t in section["teachers"]}
        assert enrolled == expected
    students = [p for p in batch.people if p.role == "student"]
    assert students and all(p.display_name is None and p.email_address is None for p in students)
    assert all(p.display_name for p in batch.people if p.role == "teacher"), "teachers named from the teachers page"


@BOTH_VERSIONS
def test_no_canary_pii_or_student_id_survives(clever: CleverEmulator, context: MappingContext) -> None:
    sections, raw_teachers, raw_students = _raw(clever)
    canaries = clever.personal_strings()
    assert any(c in repr(raw_students) for c in canaries), "the raw records do carry the canaries"
    assert "guardian_phone" in repr(raw_students)
    teachers, _ = map_teachers(raw_teachers, context)
    batch = map_sections(sections, context, teachers)
    allowed = {f"{t['name']['first']} {t['name']['last']}" for t in raw_teachers} | {t["email"] for t in raw_teachers}
    dumped = _dump(batch)
    leaked = {c for c in canaries if c in dumped and not any(c in value for value in allowed)}
    assert leaked == set()
    student_ids = {s for section in sections for s in section["students"]}
    assert not {s for s in student_ids if s in dumped}, "no Clever student id is kept"
    for event_student in raw_students:
        change = map_event({"id": "e1", "type": "users.updated", "data": {"object": event_student}}, context)
        assert change.ignored and _dump(change.upserts) == _dump(type(change.upserts)())


def test_broken_records_are_skipped_and_counted(context: MappingContext) -> None:
    good = {"id": "s1", "name": "Algebra", "period": "3", "students": ["u1"], "teachers": ["t1"]}
    broken: list[Any] = [
        {"name": "no id", "students": [], "teachers": []},
        {"id": "s2", "name": "students not a list", "students": "u1", "teachers": []},
        {"id": "s3", "name": "ids not strings", "students": [1, 2], "teachers": []},
        {"id": 4, "name": "id not a string"},
        "<html>not a record</html>",
        None,
    ]
    batch = map_sections([good, *broken], context)
    assert batch.skipped == len(broken)
    assert [c.external_id for c in batch.classes] == ["s1"]
    label = map_sections([{**good, "period": None, "section_number": "07"}], context).classes[0].section
    assert label == "07"
    teachers, skipped = map_teachers([{"id": "t1", "name": {"first": "A"}}, {"name": {"first": "B"}}, 7], context)
    assert skipped == 2 and [t.display_name for t in teachers.values()] == ["A"]


def test_events_map_idempotently(context: MappingContext) -> None:
    section = {"id": "s1", "name": "Renamed", "period": "2", "students": ["u1", "u2"], "teachers": ["t1"]}
    updated = {"id": "e1", "type": "sections.updated", "data": {"object": section, "previous_attributes": {}}}
    first, second = map_event(updated, context), map_event(updated, context)
    assert first == second
    assert [c.name for c in first.upserts.classes] == ["Renamed"] and len(first.upserts.enrollments) == 3
    deleted = map_event({"id": "e2", "type": "sections.deleted", "data": {"object": section}}, context)
    assert deleted.deleted_classes == ["s1"]
    teacher = {"id": "t1", "name": {"first": "Ann", "last": "Lee"}, "email": "a@x.test", "roles": {"teacher": {}}}
    person = map_event({"id": "e3", "type": "users.updated", "data": {"object": teacher}}, context)
    assert [p.display_name for p in person.upserts.people] == ["Ann Lee"]
    gone = map_event({"id": "e4", "type": "users.deleted", "data": {"object": teacher}}, context)
    assert gone.deleted_people == [("teacher", context.pseudonymiser.pseudonym("clever", "school-a", "t1"))]
    assert map_event({"id": "e5", "type": "schools.updated", "data": {"object": {}}}, context).ignored
    assert map_event({"id": "e6", "type": "sections.updated", "data": None}, context).upserts.skipped == 1


def test_masks_and_what_is_requested_come_from_the_allowlist() -> None:
    assert user_records_needed("student") is False
    assert user_records_needed("teacher") is True
    assert field_mask("class", frozenset()) == ""
    student_paths = {rule.path for rule in ALLOWLIST["student"]}
    assert student_paths == {("id",)}


def test_identity_reads_only_id_district_and_type() -> None:
    me = identity({"id": "u1", "district": "d1", "type": "teacher", "authorized_by": "district"})
    assert me is not None and (me.user_id, me.district_id, me.user_type) == ("u1", "d1", "teacher")
    library = identity({"id": "u2", "district": None, "type": "teacher"})
    assert library is not None and library.district_id is None
    assert identity({"district": "d1"}) is None


def test_pseudonyms_are_per_tenant(context: MappingContext) -> None:
    other = MappingContext(tenant="school-b", granted_scopes=frozenset(), pseudonymiser=context.pseudonymiser)
    raw = [{"id": "s1", "name": "A", "students": ["u1"], "teachers": []}]
    assert map_sections(raw, context).people != map_sections(raw, other).people
    assert map_sections(raw, context).people == map_sections(raw, context).people


def test_an_event_page_folds_in_order_and_a_later_event_wins(context: MappingContext) -> None:
    from connectors.base import Page
    from mappers.clever import map_changes

    def event(number: int, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"e{number}", "type": kind, "data": {"object": record}}

    section = {"id": "s1", "name": "Maths", "period": "1", "students": ["u1"], "teachers": ["t1"]}
    teacher = {"id": "t1", "name": {"first": "Ann", "last": "Lee"}, "email": "a@x.test", "roles": {"teacher": {}}}
    student = {"id": "u9", "name": {"first": "Kid"}, "dob": "1/1/2015", "roles": {"student": {}}}
    page = Page(
        kind="events",
        parent_id=None,
        records=[
            event(1, "sections.deleted", section),
            event(2, "sections.created", {**section, "name": "Maths again", "students": ["u1", "u2"]}),
            event(3, "users.created", student),  # only its id is read: it may be back with an old id
            event(4, "users.updated", teacher),
            event(5, "sections.deleted", {"id": "s2", "name": "Gone"}),
        ],
        cursor="e5",
    )
    batch = map_changes(page, context)
    assert [c.name for c in batch.upserts.classes] == ["Maths again"]
    assert batch.replaced_classes == ["s1"] and batch.deleted_classes == ["s2"]
    assert batch.ignored == 0 and batch.upserts.skipped == 0
    u9 = context.pseudonymiser.pseudonym("clever", "school-a", "u9")
    assert [(r.role, r.pseudonym, r.subject) for r in batch.reappeared] == [("student", u9, "u9")]
    assert ("student", u9) not in {(p.role, p.pseudonym) for p in batch.upserts.people}, "no student record upserted"
    named = [p for p in batch.upserts.people if p.role == "teacher" and p.complete]
    assert [p.display_name for p in named] == ["Ann Lee"]
    assert "Kid" not in repr(batch) and "2015" not in repr(batch)
    assert [p.complete for p in batch.upserts.people if p.role == "teacher"] == [False, True]  # reference, then name


def test_a_library_me_of_type_user_takes_its_role_from_userinfo() -> None:
    """v3.0 Library ``/me`` is ``{"id", "type": "user"}``; ``/userinfo`` tells the role and maybe the district."""
    me = identity({"id": "u1", "type": "user"})
    assert me == CleverIdentity(user_id="u1", district_id=None, user_type=USER)
    info = {"user_id": "u1", "user_type": "teacher", "email": "t@x.test", "name": {"first": "T"}}
    assert role_from_userinfo(me, info) == CleverIdentity(user_id="u1", district_id=None, user_type="teacher")
    in_district = {"user_id": "u1", "user_type": "student", "district_id": "d1"}
    assert role_from_userinfo(me, in_district) == CleverIdentity("u1", "d1", "student")
    assert role_from_userinfo(me, {"user_id": "someone-else", "user_type": "teacher"}) is None
    assert role_from_userinfo(me, {"user_id": "u1"}) is None
    assert role_from_userinfo(me, ["not", "an", "object"]) is None
    district_teacher = identity({"id": "u2", "district": "d1", "type": "teacher", "authorized_by": "district"})
    assert district_teacher == CleverIdentity("u2", "d1", "teacher")


def test_a_user_deleted_then_created_folds_to_there_and_flags_the_id(context: MappingContext) -> None:
    """users.deleted archives a teacher or a student (only the id is read); a later users.created in the page
    cancels it and flags the id (``reappeared``); a later users.deleted cancels the flag."""
    from connectors.base import Page
    from mappers.clever import map_changes

    teacher = {"id": "t1", "name": {"first": "Ann", "last": "Lee"}, "email": "a@x.test", "roles": {"teacher": {}}}
    student = {"id": "u9", "name": {"first": "Kid"}, "dob": "1/1/2015", "roles": {"student": {}}}
    staff = {"id": "x1", "roles": {"staff": {}}}

    def page(*events: tuple[str, dict[str, Any]]) -> Page:
        records = [{"id": f"e{n}", "type": kind, "data": {"object": rec}} for n, (kind, rec) in enumerate(events)]
        return Page(kind="events", parent_id=None, records=records)

    t1, u9 = (context.pseudonymiser.pseudonym("clever", "school-a", subject) for subject in ("t1", "u9"))
    gone = map_changes(page(("users.deleted", teacher), ("users.deleted", student), ("users.deleted", staff)), context)
    assert gone.deleted_people == [("teacher", t1), ("student", u9)] and gone.reappeared == []
    assert gone.ignored == 1, "a staff user is not ours"
    back = map_changes(page(("users.deleted", teacher), ("users.created", teacher), ("users.deleted", student),
                            ("users.created", student)), context)  # fmt: skip
    assert back.deleted_people == []
    assert [(r.role, r.subject) for r in back.reappeared] == [("teacher", "t1"), ("student", "u9")]
    assert [p.display_name for p in back.upserts.people] == ["Ann Lee"]
    assert "u9" not in repr(back.reappeared) and "t1" not in repr(back.reappeared), "the provider id stays out of logs"
    again = map_changes(page(("users.created", teacher), ("users.deleted", teacher)), context)
    assert again.deleted_people == [("teacher", t1)] and again.reappeared == []


class CountingPseudonymiser(Pseudonymiser):
    """Counts HMACs: what a change page costs to map grows with what the page keeps, not with its events."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.made = 0

    def pseudonym(self, provider: str, tenant: str, subject: str) -> str:
        self.made += 1
        return super().pseudonym(provider, tenant, subject)


def test_a_section_that_moves_twice_in_a_page_is_pseudonymised_once_as_its_last_event_says() -> None:
    """A student leaves and another joins (two ``sections.updated``, a ``users.created``): the page keeps the
    last section, whole, and each of its members costs one HMAC; a broken later event is skipped, not kept."""
    from connectors.base import Page
    from mappers.clever import map_changes

    counting = CountingPseudonymiser(KEY)
    context = MappingContext(tenant="school-a", granted_scopes=frozenset(), pseudonymiser=counting)
    students = [f"u{n}" for n in range(20)]
    section = {"id": "s1", "name": "Maths", "period": "1", "teachers": ["t1"]}

    def event(number: int, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"e{number}", "type": kind, "data": {"object": record, "previous_attributes": {}}}

    records = [
        event(1, "sections.updated", {**section, "students": students[1:]}),
        event(2, "users.created", {"id": "u99", "roles": {"student": {}}}),
        event(3, "sections.updated", {**section, "students": [*students[1:], "u99"]}),
        event(4, "sections.updated", {**section, "students": "not a list"}),
    ]
    batch = map_changes(Page(kind="events", parent_id=None, records=records, cursor="e4"), context)
    alone = map_sections([{**section, "students": [*students[1:], "u99"]}], context)
    assert (batch.upserts.classes, batch.upserts.enrollments) == (alone.classes, alone.enrollments)
    assert batch.replaced_classes == ["s1"] and batch.upserts.skipped == 1
    counting.made = 0
    map_changes(Page(kind="events", parent_id=None, records=records, cursor="e4"), context)
    assert counting.made == 1 + 20 + 1, "the teacher, the section's twenty students and u99's users.created"


def test_previous_attributes_make_a_delta_of_who_joined_and_who_left() -> None:
    """Two chained ``sections.updated`` (u0 leaves, then u99 joins): the page pseudonymises the teacher-less delta
    only (u99 and u0), keeps the count before and the section whole on demand, and prints no Clever id."""
    from connectors.base import Page
    from mappers.clever import map_changes

    counting = CountingPseudonymiser(KEY)
    context = MappingContext(tenant="school-a", granted_scopes=frozenset(), pseudonymiser=counting)
    students = [f"u{n}" for n in range(20)]
    section = {"id": "s1", "name": "Maths", "period": "1", "teachers": ["t1"]}

    def updated(number: int, now: list[str], before: list[str]) -> dict[str, Any]:
        data = {"object": {**section, "students": now}, "previous_attributes": {"students": before}}
        return {"id": f"e{number}", "type": "sections.updated", "data": data}

    records = [updated(1, students[1:], students), updated(2, [*students[1:], "u99"], students[1:])]
    batch = map_changes(Page(kind="events", parent_id=None, records=records, cursor="e2"), context)
    pseudonym = context.pseudonymiser.pseudonym
    assert counting.made == 2, "u99, who joined, and u0, who left: not the teacher nor the nineteen who stayed"
    assert batch.replaced_classes == ["s1"] and list(batch.deltas) == ["s1"]
    assert [(e.role, e.pseudonym) for e in batch.upserts.enrollments] == [
        ("student", pseudonym("clever", "school-a", "u99"))
    ]
    delta = batch.deltas["s1"]
    assert delta.before == {"teacher": 1, "student": 20}
    assert [(e.role, e.pseudonym) for e in delta.left] == [("student", pseudonym("clever", "school-a", "u0"))]
    assert not any(subject in repr(batch) for subject in [*students, "u99", "t1"])
    whole = batch.whole()
    alone = map_sections([{**section, "students": [*students[1:], "u99"]}], context)
    assert (whole.upserts.classes, whole.upserts.enrollments, whole.deltas) == (alone.classes, alone.enrollments, {})
    broken = [records[0], updated(2, [*students[1:], "u99"], students)]  # its "before" is not the first's "after"
    assert map_changes(Page(kind="events", parent_id=None, records=broken, cursor="e2"), context).deltas == {}


def test_a_chained_events_before_is_checked_unless_it_is_the_earlier_events_after() -> None:
    """The second event's ``previous_attributes`` list is taken as the first event's checked list only when it is
    that list; one with a repeat, another order or an id that cannot be one is checked as any other."""
    from connectors.base import Page
    from mappers.clever import map_changes

    context = MappingContext(tenant="school-a", granted_scopes=frozenset(), pseudonymiser=Pseudonymiser(KEY))
    students = [f"u{n}" for n in range(20)]
    section = {"id": "s1", "name": "Maths", "period": "1", "teachers": ["t1"]}

    def page(second_before: list[str]) -> Any:
        now = students[1:]
        first = {"object": {**section, "students": now}, "previous_attributes": {"students": students}}
        second = {"object": {**section, "students": [*now, "u99"]}, "previous_attributes": {"students": second_before}}
        records = [{"type": "sections.updated", "data": first}, {"type": "sections.updated", "data": second}]
        return map_changes(Page(kind="events", parent_id=None, records=records, cursor="e2"), context)

    for follows in (students[1:], [*students[1:], students[1]], students[:0:-1]):
        delta = page(follows).deltas["s1"]
        assert delta.before == {"teacher": 1, "student": 20} and len(delta.left) == 1
    for broken in ([*students[1:], "u\x00"], [*students[1:], 7], "u1"):
        batch = page(broken)  # type: ignore[arg-type]
        assert batch.deltas == {} and len(batch.upserts.enrollments) == 1 + 20
