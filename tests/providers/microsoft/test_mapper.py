"""The Microsoft mapper keeps exactly the allowlist projection, and the ``$select`` it derives keeps
every student's personal property off the wire: against educationUser records carrying every
documented property plus an unknown one, no canary value survives mapping, and the emulator's
request log shows no request that could return a student's name."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from connectors.microsoft import MicrosoftConnector, link_tenant
from emulators.microsoft import MicrosoftEmulator
from mappers.microsoft import (
    ALLOWLIST,
    field_mask,
    field_masks,
    identity,
    map_class_delta,
    map_classes,
    map_members,
    map_records,
    map_teachers,
    map_user_delta,
)
from mappers.microsoft import MAIL_PERMISSION as MICROSOFT_MAIL_PERMISSION
from mappers.policy import MappingContext, Pseudonymiser
from mappers.records import ClassRecord, PersonRecord
from tests.microsoft_fixtures import ms_settings

pytestmark = pytest.mark.microsoft(tenants=1, teachers=2, students_per_course=6)

KEY = "k" * 40
APP = frozenset({MICROSOFT_MAIL_PERMISSION})
# Every property of a fully read educationUser that names, reaches or describes a person (providers.md 3.2).
STUDENT_PERSONAL = {
    "displayName", "givenName", "middleName", "surname", "mail", "mailNickname", "userPrincipalName",
    "mobilePhone", "businessPhones", "mailingAddress", "residenceAddress", "relatedContacts", "student",
    "onPremisesInfo", "createdBy", "externalSource", "externalSourceDetail", "department", "preferredLanguage",
    "usageLocation", "assignedLicenses", "assignedPlans", "provisionedPlans", "passwordProfile",
    "learnerWellbeingNote",
}  # fmt: skip


def _context(scopes: frozenset[str] = frozenset()) -> MappingContext:
    return MappingContext(tenant="school-a", granted_scopes=scopes, pseudonymiser=Pseudonymiser(KEY))


def _students(microsoft: MicrosoftEmulator, class_id: str) -> list[dict[str, Any]]:
    tenant = microsoft.tenant_ids[0]
    return [microsoft.user_record(u) for u in microsoft.members_of(class_id) if u in microsoft.student_ids(tenant)]


# ------------------------------------------------------------------------------------ masks
def test_masks_come_from_the_allowlist_and_name_no_personal_property_of_a_student() -> None:
    assert field_mask("student", APP) == "id,primaryRole"
    assert field_mask("class", APP) == "id,displayName"
    assert field_mask("teacher", frozenset()) == "id,displayName"
    assert field_mask("teacher", APP) == "id,displayName,mail"
    assert field_masks(APP) == {"class": "id,displayName", "member": "id,primaryRole", "teacher": "id,displayName,mail"}
    assert not set(field_mask("student", APP).split(",")) & STUDENT_PERSONAL
    with pytest.raises(KeyError):
        field_mask("guardian", APP)


# ------------------------------------------------------------------------------------ projection
def test_stored_projection_equals_the_allowlist(microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    class_id = microsoft.class_ids(tenant)[0]
    context = _context(APP)
    classes = map_classes([microsoft.class_record(class_id)], context)
    assert classes.classes == [ClassRecord(class_id, microsoft.class_record(class_id)["displayName"], None, "ACTIVE")]

    teacher_raw = microsoft.user_record(microsoft.teachers_of(class_id)[0])
    teachers = map_teachers(class_id, [teacher_raw], context)
    teacher = teachers.people[0]
    assert teacher == PersonRecord(
        role="teacher",
        pseudonym=Pseudonymiser(KEY).pseudonym("microsoft", "school-a", teacher_raw["id"]),
        display_name=teacher_raw["displayName"],
        email_address=teacher_raw["mail"],
    )
    allowed = {rule.canonical for rule in ALLOWLIST["teacher"]} - {"subject"} | {"role", "pseudonym"}
    stored = {k for k, v in dataclasses.asdict(teacher).items() if v is not None and k != "complete"}  # a flag
    assert stored == allowed
    without_mail = map_teachers(class_id, [teacher_raw], _context()).people[0]
    assert without_mail.email_address is None and without_mail.display_name == teacher_raw["displayName"]

    students = map_members(class_id, _students(microsoft, class_id), context)
    assert students.people and all(
        {k for k, v in dataclasses.asdict(p).items() if v is not None and k != "complete"} == {"role", "pseudonym"}
        for p in students.people
    )
    assert [e.role for e in students.enrollments] == ["student"] * len(students.people)
    assert all(e.class_external_id == class_id for e in students.enrollments)


def test_no_canary_pii_survives_mapping(microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    context = _context(APP)
    out: list[Any] = []
    allowed: set[str] = set()
    for class_id in microsoft.class_ids(tenant):
        out.append(map_classes([microsoft.class_record(class_id)], context))
        everyone = [microsoft.user_record(u) for u in microsoft.members_of(class_id)]
        out.append(map_members(class_id, everyone, context))  # fully read members, teachers included
        teachers = [microsoft.user_record(u) for u in microsoft.teachers_of(class_id)]
        out.append(map_teachers(class_id, teachers, context))
        allowed |= {t["displayName"] for t in teachers} | {t["mail"] for t in teachers}
        out.append(map_user_delta(everyone, context))
    dumped = repr(out)
    leaks = {s for s in microsoft.personal_strings() if s in dumped and not any(s in value for value in allowed)}
    assert leaks == set()
    assert "learnerWellbeingNote" not in dumped and "canary-unknown" not in dumped


def test_schema_breaks_are_skipped_and_counted() -> None:
    context = _context()
    broken: list[Any] = [None, "id", {"displayName": "No id"}, {"id": 5, "displayName": "x"}, {"id": "c1"}]
    assert map_classes([*broken, {"id": "c2", "displayName": "Fine"}], context).skipped == 5
    members = map_members(
        "c1", [{"id": "u1"}, {"primaryRole": "student"}, [], {"id": "u2", "primaryRole": "student"}], context
    )
    assert members.skipped == 3 and len(members.people) == 1
    teachers = map_teachers("c1", [{"displayName": "Nameless id"}, 7, {"id": "t1", "displayName": "T"}], context)
    assert teachers.skipped == 2 and len(teachers.people) == 1
    others = map_members("c1", [{"id": "u3", "primaryRole": "teacher"}, {"id": "u4", "primaryRole": "none"}], context)
    assert others.people == [] and others.skipped == 0


def test_delta_removals_and_changes() -> None:
    context = _context()
    users = map_user_delta(
        [
            {"id": "s1", "primaryRole": "student"},
            {"id": "t1", "primaryRole": "teacher"},
            {"id": "gone", "@removed": {"reason": "deleted"}},
            {"primaryRole": "student"},
        ],
        context,
    )
    pseudonym = Pseudonymiser(KEY).pseudonym
    assert users.upserts.people == [PersonRecord(role="student", pseudonym=pseudonym("microsoft", "school-a", "s1"))]
    assert users.removed_people == [pseudonym("microsoft", "school-a", "gone")] and users.upserts.skipped == 1
    classes = map_class_delta(
        [{"id": "c1", "displayName": "Renamed"}, {"id": "c2", "@removed": {"reason": "changed"}}, {"bad": 1}], context
    )
    assert [c.name for c in classes.upserts.classes] == ["Renamed"]
    assert classes.removed_classes == ["c2"] and classes.upserts.skipped == 1


def test_map_page_and_identity() -> None:
    context = _context()
    assert map_records("classes", None, [{"id": "c", "displayName": "C"}], context).classes[0].external_id == "c"
    member = [{"id": "s", "primaryRole": "student"}]
    assert map_records("members", "c", member, context).enrollments[0].role == "student"
    assert map_records("unreadable", "c", [], context).people == []
    with pytest.raises(ValueError):
        map_records("members", None, [], context)
    with pytest.raises(ValueError):
        map_records("guardians", None, [], context)
    me = identity({"id": "u", "primaryRole": "teacher", "displayName": "Never read"})
    assert me is not None and (me.user_id, me.role) == ("u", "teacher") and identity({"id": "u"}) is None


# ------------------------------------------------------------------------------------ the wire
def test_no_student_property_beyond_id_and_role_crosses_the_wire(microsoft: MicrosoftEmulator) -> None:
    """A whole tenant read and a delta round with the masks derived from the allowlist: every request
    that returns students selects ``id,primaryRole`` only, and no mapped value is a student's."""
    tenant = microsoft.tenant_ids[0]
    settings = ms_settings(microsoft)
    grant = link_tenant(settings, tenant)
    masks = field_masks(grant.scopes)
    context = _context(grant.scopes)
    batches = []
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        cursor = connector.change_cursor(masks)
        assert cursor is not None
        pages = list(connector.classes(masks))
        class_ids = [c.external_id for p in pages for c in map_classes(p.records, context).classes]
        pages += list(connector.members(class_ids, masks))
        microsoft.add_student(class_ids[0])
        pages += list(connector.changes(cursor))
        batches = [map_records(p.kind, p.parent_id, p.records, context) for p in pages]
    graph = [r for r in microsoft.requests if r.path.startswith("/v1.0/education/")]
    student_reads = [r for r in graph if r.path.endswith(("/members", "/users/delta"))]
    selected = [r for r in student_reads if "$select" in r.query]
    assert selected and all(r.query["$select"] == ["id,primaryRole"] for r in selected)
    # Continuations carry Graph's own token, which holds the $select of the request that started them.
    assert all("$deltatoken" in r.query or "$skiptoken" in r.query for r in student_reads if r not in selected)
    student_pages = [p for p in pages if p.kind in ("members", "users")]
    assert student_pages and all(set(r) <= {"id", "primaryRole", "@removed"} for p in student_pages for r in p.records)
    assert not [
        r
        for r in graph
        if r.path.endswith("/education/users") or "/education/users/" in r.path.replace("/users/delta", "")
    ]
    assert all("$select" in r.query or "$deltatoken" in r.query or "$skiptoken" in r.query for r in graph)
    student_strings = set()
    for student in microsoft.student_ids(tenant):
        record = microsoft.user_record(student)
        student_strings |= {
            record["displayName"],
            record["mail"],
            record["userPrincipalName"],
            record["student"]["birthDate"],
        }
    dumped = repr(batches)
    assert not {s for s in student_strings if s in dumped}
    people = [p for b in batches for p in b.people if p.role == "student"]
    assert people and all(p.display_name is None and p.email_address is None for p in people)
