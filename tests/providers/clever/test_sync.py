"""Clever through the provider-neutral sync cycle, against the Clever emulator, on SQLite and PostgreSQL.

District links (full listing, then events), teacher links (district-shared and Library), rotation,
disconnects, unsharing, rate limits and bad records; what crosses the wire is counted.
"""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.worker import Worker
from sqlalchemy import select, update

from connectors.base import Page, RateLimited
from emulators.clever import CleverEmulator
from mappers.clever import map_changes
from mappers.policy import MappingContext
from providers.registry import tokens_from_payload
from services.linking import LinkError
from settings import Settings
from store import audit, integrations, roster, runs
from store.models import AuditEvent, Integration
from store.runtime import Runtime
from sync import changes, collector, listing
from sync import cursor as cursor_document
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_clever_teacher, link_district
from tests.conftest import MessageRecorder
from tests.helpers import classes, dump_tables, enrollments, people
from worker import broker as brokers

pytestmark = pytest.mark.clever(districts=2, teachers=3, students_per_course=12)


@pytest.fixture
def settings(clever: CleverEmulator, database_url: str) -> Settings:
    return clever_settings_for(clever, database_url)


def api_calls(clever: CleverEmulator, since: int = 0) -> list[tuple[str, dict[str, list[str]], int]]:
    return [(r.path, r.query, r.status) for r in clever.requests[since:] if r.path.startswith("/v3.0")]


def stored_roster(runtime: Runtime, integration_id: int) -> tuple[set[tuple[str, str]], set[str], set[tuple[int, int]]]:
    return (
        {(c.external_id, c.name) for c in classes(runtime.engine, integration_id)},
        {p.pseudonym for p in people(runtime.engine, integration_id)},
        {(e.class_id, e.person_id) for e in enrollments(runtime.engine, integration_id)},
    )


def cursor_of(runtime: Runtime, integration_id: int) -> cursor_document.CursorState | None:
    return cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor)


# ------------------------------------------------------------------------------------- district
def test_district_full_sync_stores_the_allowlist_and_never_asks_for_students(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")

    pseudonym = runtime.pseudonymiser.pseudonym
    tenant = runtime.settings.default_tenant
    sections = clever.section_ids(district)
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(sections)
    students = {pseudonym("clever", tenant, s) for section in sections for s in clever.students_of(section)}
    stored_students = people(runtime.engine, integration_id, role="student")
    assert {p.pseudonym for p in stored_students} == students
    assert {(p.display_name, p.email_address) for p in stored_students} == {(None, None)}
    teachers = people(runtime.engine, integration_id, role="teacher")
    assert {p.pseudonym for p in teachers} == {pseudonym("clever", tenant, t) for t in clever.teacher_ids(district)}
    assert all(p.display_name and p.email_address for p in teachers), "every teacher named by /users?role=teacher"

    calls = api_calls(clever)
    assert [(path, query.get("role")) for path, query, _ in calls] == [
        ("/v3.0/events", None),
        ("/v3.0/sections", None),
        ("/v3.0/users", ["teacher"]),
    ], "one request per page the data needs, plus the event cursor"
    assert outcome.provider_calls == 3
    assert all(int(query.get("limit", ["100"])[0]) <= 10_000 for _, query, _ in calls)
    assert 413 not in {status for _, _, status in calls}
    student_ids = set(clever.student_ids(district))
    assert not [path for path, _, _ in calls if path.rsplit("/", 1)[-1] in student_ids], "no student record asked for"

    dump = dump_tables(runtime.engine)
    for teacher in teachers:
        dump = dump.replace(teacher.display_name, "").replace(teacher.email_address, "")
    assert not [s for s in clever.personal_strings() if s in dump], "a dropped Clever field reached a table"
    assert not [t for t in clever.issued_tokens() if t in dump], "a token in the clear"


def test_v31_records_are_minimised_the_same_way(tmp_path: Path, database_url: str) -> None:
    from store.runtime import build_runtime, set_runtime

    with CleverEmulator(cert_dir=tmp_path, districts=1, version="v3.1", students_per_course=5) as v31:
        rt = build_runtime(clever_settings_for(v31, database_url))
        set_runtime(rt)
        try:
            integration_id = link_district(rt, v31)
            assert run_sync(rt, integration_id).outcome == "ok"
            dump = dump_tables(rt.engine)
            for teacher in people(rt.engine, integration_id, role="teacher"):
                dump = dump.replace(teacher.display_name, "").replace(teacher.email_address, "")
            assert not [s for s in v31.personal_strings() if s in dump]
        finally:
            set_runtime(None)
            rt.engine.dispose()


def test_no_change_resync_uses_one_events_request_and_writes_nothing(runtime: Runtime, clever: CleverEmulator) -> None:
    integration_id = link_district(runtime, clever)
    first = run_sync(runtime, integration_id)
    before = len(clever.requests)
    second = run_sync(runtime, integration_id)
    assert (second.outcome, second.mode, second.rows_written, second.removed) == ("ok", "changes", 0, 0)
    assert [path for path, _, _ in api_calls(clever, before)] == ["/v3.0/events"]
    assert first.provider_calls == 3 and second.provider_calls == 1


def test_events_are_applied_and_match_a_full_sync(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section, other = clever.section_ids(district)[:2]
    leaving = clever.students_of(section)[0]
    clever.add_student(section)
    clever.remove_student(section, leaving)
    clever.rename_section(other, "Algebra II (renamed)")
    clever.rename_user(clever.teacher_ids(district)[0])
    clever.unshare_section(clever.section_ids(district)[-1])

    incremental = run_sync(runtime, integration_id)
    assert (incremental.outcome, incremental.mode) == ("ok", "changes") and incremental.rows_written > 0
    after_events = stored_roster(runtime, integration_id)
    assert "Algebra II (renamed)" in {name for _, name in after_events[0]}
    gone = runtime.pseudonymiser.pseudonym("clever", runtime.settings.default_tenant, leaving)
    class_id = next(c.id for c in classes(runtime.engine, integration_id) if c.external_id == section)
    person_ids = {p.id for p in people(runtime.engine, integration_id, current=False) if p.pseudonym == gone}
    assert not {(class_id, person) for person in person_ids} & after_events[2], "the student left the section"

    # The full listing (forced by an old reconcile time) finds exactly what the events made.
    state = cursor_of(runtime, integration_id)
    assert state is not None
    with runtime.engine.begin() as connection:
        old = cursor_document.CursorState(state.cursor, state.allowlist, state.full_at.replace(year=2000))
        integrations.store_cursor(connection, integration_id, old.dumps())
    full = run_sync(runtime, integration_id)
    assert full.mode == "full" and (full.rows_written, full.removed) == (0, 0)
    assert stored_roster(runtime, integration_id) == after_events


def test_the_same_event_page_applied_twice_changes_nothing(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section = clever.section_ids(district)[0]
    clever.add_student(section)
    clever.remove_student(section, clever.students_of(section)[0])
    clever.unshare_section(clever.section_ids(district)[1])
    clever.rename_user(clever.teacher_ids(district)[1])
    state = cursor_of(runtime, integration_id)
    assert state is not None
    from connectors.clever import CleverConnector, district_token

    token = district_token(runtime.settings, district)
    assert token is not None
    with CleverConnector(runtime.settings, token, district_id=district) as reader:
        pages: list[Page] = list(reader.events(state.cursor or None))
    context = MappingContext(runtime.settings.default_tenant, frozenset(), runtime.pseudonymiser)
    batch = map_changes(pages[0], context)
    with runtime.engine.begin() as connection:
        first = roster.apply_changes(connection, integration_id, batch)
    snapshot = stored_roster(runtime, integration_id)
    with runtime.engine.begin() as connection:
        second = roster.apply_changes(connection, integration_id, batch)
    assert first > 0 and second == 0
    assert stored_roster(runtime, integration_id) == snapshot


def test_expired_cursor_disabled_events_and_allowlist_change_fall_back_to_a_full_sync(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    district = clever.district_ids[0]
    clever.rename_section(clever.section_ids(district)[1], "History")  # the feed holds an event: a real cursor
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    clever.add_student(clever.section_ids(district)[0])
    clever.expire_events(district)
    expired = run_sync(runtime, integration_id)
    assert (expired.outcome, expired.mode) == ("ok", "full") and expired.rows_written > 0
    assert run_sync(runtime, integration_id).mode == "changes"

    monkeypatch.setattr("sync.cycle.allowlist_digest", lambda provider, scopes: "a-new-allowlist")
    assert run_sync(runtime, integration_id).mode == "full"
    assert run_sync(runtime, integration_id).mode == "changes"

    clever.set_events_enabled(district, False)
    disabled = run_sync(runtime, integration_id)
    assert (disabled.outcome, disabled.mode) == ("ok", "full")
    assert cursor_of(runtime, integration_id) is None, "no feed: every sync is a full one"
    assert run_sync(runtime, integration_id).mode == "full"


def test_a_rotated_district_token_is_not_a_revocation(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    new = clever.rotate_district_token(district)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "active" and state.token_blob is not None
    stored = tokens_from_payload(runtime.vault.open(state.token_blob))
    assert stored.access_token == new and stored.extra == {"district_id": district}
    assert "revoked" not in audit.actions(runtime.engine, integration_id)


def test_a_disconnected_district_is_revoked_purged_and_never_called_again(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    first, second = clever.district_ids[:2]
    gone = link_district(runtime, clever, 0)
    stays = link_district(runtime, clever, 1)
    for one in (gone, stays):
        run_sync(runtime, one)
    clever.disconnect_district(first)
    outcome = run_sync(runtime, gone)
    assert outcome.outcome == "revoked"
    state = integrations.load(runtime.engine, gone)
    assert state.status == "revoked" and state.token_blob is None and state.sync_cursor is None
    assert (classes(runtime.engine, gone, current=False), people(runtime.engine, gone, current=False)) == ([], [])
    actions = [a for a in audit.actions(runtime.engine, gone) if a not in runs.RUN_ACTIONS]
    assert actions[-3:] == ["revoked", "purged", "provider_revoke_unsupported"]
    before = len(clever.requests)
    assert run_sync(runtime, gone).outcome == "skipped:revoked"
    assert run_sync(runtime, stays).outcome == "ok"
    assert [r for r in clever.requests[before:] if r.user_id == first] == []
    assert integrations.load(runtime.engine, stays).status == "active" and classes(runtime.engine, stays)
    assert second != first


def test_a_401_while_clever_still_lists_the_token_is_transient_and_keeps_the_roster(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    """Clever's disconnect is the token leaving /oauth/tokens (issue 23 item 3): a 401 with the same token
    still listed is retried, then ``failed`` with a reason once the retry caps run out; never revoked."""
    from connectors.base import TransientError
    from worker.retry_policy import run_with_retries

    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    held = stored_roster(runtime, integration_id)
    clever.refuse_calls(district)
    with pytest.raises(TransientError):
        run_sync(runtime, integration_id)
    assert integrations.load(runtime.engine, integration_id).status == "active"
    runtime.settings.max_retries = 1
    slept: list[float] = []
    assert run_with_retries(runtime, integration_id, sleep=slept.append) == "token_refused"
    assert len(slept) == 1, "retried under the policy, not given up at once"
    [summary] = [s for s in integrations.summaries(runtime.engine) if s.id == integration_id]
    assert summary.status == "failed"
    assert "Clever kept refusing the district's token (401) although it still lists it" in summary.status_reason
    assert "resume it with rostersync resume ID" in summary.status_reason
    state = integrations.load(runtime.engine, integration_id)
    assert state.token_blob is not None, "the grant is kept"
    assert stored_roster(runtime, integration_id) == held, "nothing purged"
    assert "revoked" not in audit.actions(runtime.engine, integration_id)
    assert clever.district_token(district) is not None

    clever.refuse_calls(district, refusing=False)
    assert integrations.resume_failed(runtime.engine, integration_id, actor="admin:test")
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert stored_roster(runtime, integration_id) == held


def test_a_401_then_a_token_gone_from_the_list_is_the_disconnect(runtime: Runtime, clever: CleverEmulator) -> None:
    """The same 401, once the district's token has left /oauth/tokens, is the disconnect: revoked and purged."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    clever.refuse_calls(district)
    clever.disconnect_district(district)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    assert integrations.load(runtime.engine, integration_id).status == "revoked"
    assert classes(runtime.engine, integration_id, current=False) == []


def test_an_unshared_section_is_removed_and_restored(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section = clever.section_ids(district)[0]
    members = len(enrollments(runtime.engine, integration_id))
    clever.unshare_section(section)
    assert run_sync(runtime, integration_id).mode == "changes"
    assert section not in {c.external_id for c in classes(runtime.engine, integration_id)}
    assert section in {c.external_id for c in classes(runtime.engine, integration_id, current=False)}
    clever.reshare_section(section)
    run_sync(runtime, integration_id)
    assert section in {c.external_id for c in classes(runtime.engine, integration_id)}
    assert len(enrollments(runtime.engine, integration_id)) == members


def current_enrollments_of(runtime: Runtime, integration_id: int, role: str, pseudonym: str) -> set[str]:
    """The external ids of the classes this person is currently enrolled in (none when archived)."""
    person = {p.id for p in people(runtime.engine, integration_id, role=role) if p.pseudonym == pseudonym}
    names = {c.id: c.external_id for c in classes(runtime.engine, integration_id)}
    return {names[e.class_id] for e in enrollments(runtime.engine, integration_id) if e.person_id in person}


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_user_deleted_and_recreated_with_the_same_id_comes_back_with_their_enrolments(
    runtime: Runtime, clever: CleverEmulator, role: str
) -> None:
    """Clever's certification: archive a user deleted in Clever, "restore records if the Clever ID reappears"
    (issue 23 item 5): through events, the person and their enrolments are back at the next sync."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section = clever.section_ids(district)[0]
    user = clever.teacher_ids(district)[0] if role == "teacher" else clever.students_of(section)[0]
    pseudonym = runtime.pseudonymiser.pseudonym("clever", runtime.settings.default_tenant, user)
    held = stored_roster(runtime, integration_id)
    theirs = current_enrollments_of(runtime, integration_id, role, pseudonym)
    sections = clever.section_ids(teacher_id=user) if role == "teacher" else clever.section_ids(district)
    assert theirs == {s for s in sections if role == "teacher" or user in clever.students_of(s)}

    clever.delete_user(user)
    deleted = run_sync(runtime, integration_id)
    assert (deleted.outcome, deleted.mode) == ("ok", "changes")
    assert pseudonym not in {p.pseudonym for p in people(runtime.engine, integration_id, role=role)}, "archived"
    assert current_enrollments_of(runtime, integration_id, role, pseudonym) == set()

    clever.recreate_user(user)
    before = len(clever.requests)
    back = run_sync(runtime, integration_id)
    assert (back.outcome, back.mode) == ("ok", "changes")
    assert current_enrollments_of(runtime, integration_id, role, pseudonym) == theirs
    assert stored_roster(runtime, integration_id) == held
    assert [path for path, _, _ in api_calls(clever, before)] == ["/v3.0/events", f"/v3.0/users/{user}/sections"]
    assert back.provider_calls == 2
    if role == "teacher":
        named = {p.pseudonym: p.display_name for p in people(runtime.engine, integration_id, role="teacher")}
        assert named[pseudonym], "named again from the users.created record"

    # Deleted and re-created between two syncs: the page folds to "still here", and nothing is re-read.
    clever.delete_user(user)
    clever.recreate_user(user)
    before = len(clever.requests)
    assert run_sync(runtime, integration_id).mode == "changes"
    assert stored_roster(runtime, integration_id) == held
    assert [path for path, _, _ in api_calls(clever, before)] == ["/v3.0/events"]


def test_the_reread_of_a_reappeared_user_spends_the_request_budget(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one extra request a reappeared id costs is metered like every listing (PROVIDER_BUDGETS)."""
    import sync.budgets

    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    teacher = clever.teacher_ids(district)[0]
    clever.delete_user(teacher)
    run_sync(runtime, integration_id)
    clever.recreate_user(teacher)
    taken: list[str] = []
    real = sync.budgets.take_one

    def counting(settings: Settings, provider: str) -> int | None:
        taken.append(provider)
        return real(settings, provider)

    monkeypatch.setattr(sync.budgets, "take_one", counting)
    runtime.settings.provider_budgets = "clever=1000/60"
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.provider_calls) == ("ok", 2)
    # a unit before each page and one more to learn each listing ended: the events and the re-read
    assert taken == ["clever"] * 4


def test_a_new_user_costs_no_extra_read(runtime: Runtime, clever: CleverEmulator) -> None:
    """users.created of someone never stored is not a reappearance: their sections come with sections events."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    clever.add_student(clever.section_ids(district)[0])
    before = len(clever.requests)
    assert run_sync(runtime, integration_id).mode == "changes"
    assert [path for path, _, _ in api_calls(clever, before)] == ["/v3.0/events"]


def test_unshared_section_is_swept_by_a_full_sync_too(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    clever.set_events_enabled(district, False)
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    section = clever.section_ids(district)[0]
    clever.unshare_section(section)
    assert run_sync(runtime, integration_id).mode == "full"
    assert section not in {c.external_id for c in classes(runtime.engine, integration_id)}
    clever.reshare_section(section)
    run_sync(runtime, integration_id)
    assert section in {c.external_id for c in classes(runtime.engine, integration_id)}


def test_429_is_raised_for_the_actor_with_the_reset_wait(runtime: Runtime, clever: CleverEmulator) -> None:
    integration_id = link_district(runtime, clever)
    clever.fail_next("/v3.0/sections", 429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        run_sync(runtime, integration_id)
    assert 5 <= caught.value.retry_after <= 8
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert run_sync(runtime, integration_id).outcome == "ok"


def test_bad_records_are_skipped_and_counted_and_remove_nothing(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    clever.set_events_enabled(district, False)  # full listings only
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    held = stored_roster(runtime, integration_id)
    clever.rename_section(clever.section_ids(district)[0], "   ")  # breaks the definition: no name
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok" and outcome.records_skipped == 1 and outcome.removed == 0
    assert stored_roster(runtime, integration_id) == held


# ------------------------------------------------------------------------------------- teachers
def test_a_district_shared_teacher_is_synced_through_the_district_token(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    district = clever.district_ids[0]
    teacher = clever.teacher_ids(district)[0]
    integration_id = link_clever_teacher(runtime, clever, teacher, "teacher-7")
    state = integrations.load(runtime.engine, integration_id)
    assert state.token_blob is not None
    extra = tokens_from_payload(runtime.vault.open(state.token_blob)).extra
    assert extra == {"district_id": district, "teacher_id": teacher}
    with runtime.engine.connect() as connection:
        columns = connection.execute(select(Integration.linked_by, Integration.account_key)).one()
    assert teacher not in str(tuple(columns)), "the Clever id is sealed or pseudonymised, never in clear"
    before = len(clever.requests)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(
        clever.section_ids(teacher_id=teacher)
    )
    assert [path for path, _, _ in api_calls(clever, before)] == [
        f"/v3.0/users/{teacher}/sections",
        f"/v3.0/users/{teacher}",
    ]
    me = runtime.pseudonymiser.pseudonym("clever", runtime.settings.default_tenant, teacher)
    named = {p.pseudonym: p.display_name for p in people(runtime.engine, integration_id, role="teacher")}
    assert named[me]


def test_a_library_teacher_is_synced_with_their_sso_token_without_paging(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    teacher = clever.teacher_ids(None)[0]
    integration_id = link_clever_teacher(runtime, clever, teacher, "teacher-lib")
    before = len(clever.requests)
    assert run_sync(runtime, integration_id).outcome == "ok"
    calls = api_calls(clever, before)
    assert [path for path, _, _ in calls] == [f"/v3.0/users/{teacher}/sections", f"/v3.0/users/{teacher}"]
    assert all(not query for _, query, _ in calls), "no limit or paging parameters with an SSO token"
    assert classes(runtime.engine, integration_id)
    assert {p.display_name for p in people(runtime.engine, integration_id, role="student")} == {None}


def test_a_library_teacher_links_by_what_userinfo_says_and_syncs(runtime: Runtime, clever: CleverEmulator) -> None:
    """v3.0 ``/me`` names a Library sign-in ``"type": "user"`` (dev.clever.com/docs/classroom-rostering); the role
    is ``/userinfo``'s ``user_type`` (issue 23 item 6)."""
    teacher = clever.teacher_ids(None)[0]
    before = len(clever.requests)
    integration_id = link_clever_teacher(runtime, clever, teacher, "teacher-lib")
    paths = [r.path for r in clever.requests[before:]]
    assert "/v3.0/me" in paths and "/userinfo" in paths
    state = integrations.load(runtime.engine, integration_id)
    assert state.token_blob is not None
    assert tokens_from_payload(runtime.vault.open(state.token_blob)).extra == {"teacher_id": teacher}
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(
        clever.section_ids(teacher_id=teacher)
    )


def test_a_library_student_sign_in_is_refused_clearly_and_nothing_is_stored(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    student = clever.student_ids(None)[0]
    with pytest.raises(LinkError, match="this Clever sign-in is a student, not a teacher: only a teacher links"):
        link_clever_teacher(runtime, clever, student, "student-lib")
    assert integrations.summaries(runtime.engine) == []


def test_a_teacher_links_401_is_access_revoked(runtime: Runtime, clever: CleverEmulator) -> None:
    teacher = clever.teacher_ids(None)[0]
    integration_id = link_clever_teacher(runtime, clever, teacher, "teacher-lib")
    run_sync(runtime, integration_id)
    state = integrations.load(runtime.engine, integration_id)
    assert state.token_blob is not None
    token = tokens_from_payload(runtime.vault.open(state.token_blob)).access_token
    assert token is not None
    clever.revoke_token(token)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    assert people(runtime.engine, integration_id, current=False) == []


def test_a_teacher_of_an_unconnected_district_is_refused_and_nothing_is_stored(
    runtime: Runtime, clever: CleverEmulator
) -> None:
    district = clever.district_ids[1]
    clever.disconnect_district(district)
    with pytest.raises(LinkError, match="has not connected"):
        link_clever_teacher(runtime, clever, clever.teacher_ids(district)[0], "teacher-9")
    assert integrations.summaries(runtime.engine) == []


def test_link_org_for_a_district_without_a_token_stores_nothing(runtime: Runtime, clever: CleverEmulator) -> None:
    clever.disconnect_district(clever.district_ids[0])
    with pytest.raises(LinkError, match="nothing was stored"):
        link_district(runtime, clever, 0)
    with pytest.raises(LinkError, match="organisation-wide"):
        from services.linking import link_org

        link_org(runtime, provider_name="google", org="x")
    assert integrations.summaries(runtime.engine) == []


def test_relinking_a_district_keeps_its_roster(runtime: Runtime, clever: CleverEmulator) -> None:
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    held = stored_roster(runtime, integration_id)
    assert link_district(runtime, clever) == integration_id
    assert stored_roster(runtime, integration_id) == held
    assert cursor_of(runtime, integration_id) is None, "a re-link starts with a full sync"


def test_admin_revoke_says_clever_has_no_revoke_endpoint(runtime: Runtime, clever: CleverEmulator) -> None:
    from services.revoke import revoke_integration
    from sync.grants import AtProvider

    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    before = len(clever.requests)
    result = revoke_integration(runtime, integration_id, actor="admin:test")
    assert result.at_provider is AtProvider.UNSUPPORTED and not result.provider_revoked
    assert clever.requests[before:] == []
    with runtime.engine.connect() as connection:
        actions = list(connection.execute(select(AuditEvent.action).where(AuditEvent.integration_id == integration_id)))
    assert ("provider_revoke_unsupported",) in [tuple(a) for a in actions]
    assert ("provider_revoked",) not in [tuple(a) for a in actions]


# ------------------------------------------------------------------------------------- Dramatiq
def test_in_process_worker_queues_ids_only_and_logs_nothing_personal(
    runtime: Runtime,
    clever: CleverEmulator,
    stub_broker: StubBroker,
    message_recorder: MessageRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    from worker.actors import sync_integration

    ids = [link_district(runtime, clever, 0), link_district(runtime, clever, 1)]
    ids.append(link_clever_teacher(runtime, clever, clever.teacher_ids(None)[0], "teacher-lib"))
    clever.add_student(clever.section_ids(clever.district_ids[0])[0])
    worker = Worker(stub_broker, worker_timeout=50)
    worker.start()
    try:
        for _round in range(2):
            for one in ids:
                brokers.enqueue(sync_integration, one)
            stub_broker.join(sync_integration.queue_name)
            worker.join()
    finally:
        worker.stop()
    assert all(classes(runtime.engine, one) for one in ids)
    text = "\n".join(record.getMessage() for record in caplog.records)
    text += b"\n".join(message_recorder.encoded).decode()
    assert all(json.loads(m)["args"] in ([one] for one in ids) for m in message_recorder.encoded)
    assert not [s for s in clever.personal_strings() if s in text]
    assert not [t for t in clever.issued_tokens() if t in text]


def test_a_stale_cursor_document_is_ignored(runtime: Runtime, clever: CleverEmulator) -> None:
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    with runtime.engine.begin() as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(sync_cursor="{not json"))
    assert run_sync(runtime, integration_id).mode == "full"


def test_a_broken_page_stops_the_run_unswept_and_removes_nothing(runtime: Runtime, clever: CleverEmulator) -> None:
    district = clever.district_ids[0]
    clever.set_events_enabled(district, False)
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    held = stored_roster(runtime, integration_id)
    clever.unshare_section(clever.section_ids(district)[0])  # would be swept by a complete run
    clever.fail_next("/v3.0/users", 501)  # the teachers' page breaks: ProviderDataError
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "provider_data" and outcome.removed == 0
    assert stored_roster(runtime, integration_id) == held
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert len(classes(runtime.engine, integration_id)) == len(held[0]) - 1


def test_a_suppressed_student_stays_out_of_events_and_full_listings(runtime: Runtime, clever: CleverEmulator) -> None:
    from store import suppressions

    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    newcomer = clever.add_student(clever.section_ids(district)[0])
    tenant = runtime.settings.default_tenant
    pseudonym = runtime.pseudonymiser.pseudonym("clever", tenant, newcomer)
    with runtime.engine.begin() as connection:
        suppressions.add(connection, provider="clever", tenant=tenant, pseudonym=pseudonym, actor="admin:test")
    assert run_sync(runtime, integration_id).mode == "changes"
    assert pseudonym not in {p.pseudonym for p in people(runtime.engine, integration_id, current=False)}
    clever.set_events_enabled(district, False)
    assert run_sync(runtime, integration_id).mode == "full"
    assert pseudonym not in {p.pseudonym for p in people(runtime.engine, integration_id, current=False)}


def test_without_a_consent_basis_no_clever_student_is_stored(runtime: Runtime, clever: CleverEmulator) -> None:
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    assert people(runtime.engine, integration_id, role="student")
    with runtime.engine.begin() as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(consent_basis=None))
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full"), "the roles changed: the cursor is not trusted"
    assert people(runtime.engine, integration_id, role="student", current=False) == []
    assert people(runtime.engine, integration_id, role="teacher") and classes(runtime.engine, integration_id)
    assert run_sync(runtime, integration_id).mode == "changes"


def test_an_events_page_is_read_mapped_and_written_with_the_collector_paused(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sync.collector.collector_paused``: no cyclic collection while a page is handled, back on after."""
    district = clever.district_ids[0]
    integration_id = link_district(runtime, clever)
    run_sync(runtime, integration_id)
    clever.add_student(clever.section_ids(district)[0])
    during: list[bool] = []
    restore = changes.reappeared.restore

    def watched(*args: Any) -> None:
        during.append(gc.isenabled())
        restore(*args)

    monkeypatch.setattr(changes.reappeared, "restore", watched)
    assert gc.isenabled()
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "changes") and outcome.rows_written > 0
    assert during == [False] and gc.isenabled()


def test_the_collector_pause_gives_back_what_it_found() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector.collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a page that fails")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "a collector someone else turned off stays off"
    finally:
        gc.enable()


def test_a_listing_page_is_mapped_and_written_with_the_collector_paused(
    runtime: Runtime, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first sync's pages too (sync.listing): no cyclic collection while a page is handled, back on after."""
    during: list[bool] = []
    apply = listing.Listing.apply  # every write's (a small district's pages are all gathered into the sweep's)

    def watched(self: listing.Listing, connection: Any, batch: Any) -> Any:
        during.append(gc.isenabled())
        return apply(self, connection, batch)

    monkeypatch.setattr(listing.Listing, "apply", watched)
    outcome = run_sync(runtime, link_district(runtime, clever))
    assert (outcome.outcome, outcome.mode) == ("ok", "full") and outcome.rows_written > 0
    assert during and not any(during) and gc.isenabled()
