"""A first sync's bulk path (store.bulk) stores exactly what the page-by-page path stores, and a revoke holds.

The bulk path is taken when a listing meets an integration that holds nothing; it writes set-based
straight into the roster tables in larger fenced transactions. What it must not change: the rows stored (every
provider, both databases, compared as table dumps by natural key), the rows counted as written, a
re-sync that writes nothing after it, and the fence: a revoke that commits while a bulk write is in
its transaction leaves nothing of the sync behind.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from emulators.clever import CleverEmulator
from emulators.core import RequestRecord
from mappers.records import ClassRecord, EnrollmentRecord, PersonRecord, RosterBatch
from store import bulk, integrations, roster, suppressions
from store.models import Enrollment, Person, SchoolClass
from store.runtime import build_runtime
from sync import listing
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.helpers import row_count
from tests.outboxkit import events
from tests.provider_worlds import PROVIDERS, opened

BULK = "first sync, bulk path"


def dump(engine: Engine, integration_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """The integration's roster by natural key (ids differ between two loads of the same rows)."""
    mine = SchoolClass.integration_id == integration_id
    with engine.connect() as connection:
        classes = connection.execute(
            select(
                SchoolClass.external_id,
                SchoolClass.name,
                SchoolClass.section,
                SchoolClass.state,
                SchoolClass.removed_at.is_(None),
            ).where(mine)
        ).all()
        people = connection.execute(
            select(
                Person.role, Person.pseudonym, Person.display_name, Person.email_address, Person.removed_at.is_(None)
            ).where(Person.integration_id == integration_id)
        ).all()
        enrollments = connection.execute(
            select(
                SchoolClass.external_id, Person.role, Person.pseudonym, Enrollment.role, Enrollment.removed_at.is_(None)
            )
            .join(SchoolClass, SchoolClass.id == Enrollment.class_id)
            .join(Person, Person.id == Enrollment.person_id)
            .where(Enrollment.integration_id == integration_id)
        ).all()
    return {name: sorted(map(tuple, rows)) for name, rows in (("c", classes), ("p", people), ("e", enrollments))}


def told(engine: Engine, integration_id: int) -> list[tuple[str, str | None, str]]:
    """The roster events the integration's feed holds, in seq order, without their seqs and times."""
    found = events(engine, integration_id)
    return [(e.type, e.person, repr(sorted(e.data.items()))) for e in found if e.type != "integration.updated"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_bulk_path_stores_the_same_rows_as_the_page_by_page_path(
    provider: str, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with opened(provider, tmp_path, database_url) as world:
        paged = world.runtime(bulk_first_sync=False)
        integration_id = world.link(paged)
        with caplog.at_level(logging.INFO, logger="rostersync.sync"):
            first = run_sync(paged, integration_id)
        assert first.outcome == "ok" and BULK not in caplog.text
        stored = dump(paged.engine, integration_id)
        assert stored["c"] and stored["p"] and stored["e"]
        feed = told(paged.engine, integration_id)
        with paged.engine.begin() as connection:  # the integration empty again, its next sync a full listing
            roster.purge(connection, integration_id)
            integrations.store_cursor(connection, integration_id, None)

        loaded = world.runtime()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rostersync.sync"):
            again = run_sync(loaded, integration_id)
        assert again.outcome == "ok" and BULK in caplog.text
        assert dump(loaded.engine, integration_id) == stored
        # the same events (the purge forgot the first sync's): classes first, each event once
        bulk_feed = [e for e in told(loaded.engine, integration_id) if e[0] != "integration.purged"]
        assert sorted(bulk_feed) == sorted(feed)
        assert [e for e in bulk_feed if e[0] == "class.upserted"] == bulk_feed[: len(stored["c"])]
        assert again.counts().rows_written == first.counts().rows_written
        assert again.removed == first.removed
        assert run_sync(loaded, integration_id).rows_written == 0  # a re-sync after it writes nothing


def test_a_revoke_during_a_bulk_write_leaves_nothing(
    clever: CleverEmulator, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The revoke starts while the sections' bulk write holds its transaction (its classes loaded, nothing else):
    it waits for that write's commit, purges, and the sync's next write (the teachers page) is fenced. Each page
    is written as it comes here (a write's rows made one), not gathered with the next (sync.listing)."""
    monkeypatch.setattr(listing, "BULK_ROWS", 1)
    rt = build_runtime(clever_settings_for(clever, database_url))
    revoker: list[threading.Thread] = []
    try:
        integration_id = link_district(rt, clever)
        copy = bulk._copy

        def revoke_mid_write(connection: Any, table: Any, columns: Any, rows: Any) -> int:
            loaded = copy(connection, table, columns, rows)
            if not revoker:
                revoker.append(threading.Thread(target=_revoke, args=(rt.engine, integration_id)))
                revoker[0].start()
            return loaded

        def teachers_wait_for_the_revoke(record: RequestRecord) -> None:
            if record.path.endswith("/users") and revoker:  # the teachers page, after the sections' write
                revoker[0].join(timeout=60)

        monkeypatch.setattr(bulk, "_copy", revoke_mid_write)
        clever.add_hook(teachers_wait_for_the_revoke)
        with caplog.at_level(logging.INFO, logger="rostersync.sync"):
            outcome = run_sync(rt, integration_id)
        assert BULK in caplog.text and revoker
        revoker[0].join(timeout=60)
        assert outcome.outcome == "fenced"
        assert row_count(rt.engine, integration_id) == 0
        assert integrations.load(rt.engine, integration_id).status == "revoked"
    finally:
        rt.engine.dispose()


def _revoke(engine: Engine, integration_id: int) -> None:
    integrations.end_integration(engine, integration_id, status="revoked", actor="admin:test", reason="mid-load")


def test_a_suppressed_student_stays_out_of_a_bulk_first_sync(
    clever: CleverEmulator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The tenant's suppressions are read once a write; an erased pseudonym is neither stored nor told."""
    rt = build_runtime(clever_settings_for(clever, database_url))
    try:
        integration_id = link_district(rt, clever)
        section = clever.section_ids(clever.district_ids[0])[0]
        erased, kept = clever.students_of(section)[:2]
        tenant = rt.settings.default_tenant
        pseudonym = rt.pseudonymiser.pseudonym("clever", tenant, erased)
        with rt.engine.begin() as connection:
            suppressions.add(connection, provider="clever", tenant=tenant, pseudonym=pseudonym, actor="admin:test")
        with caplog.at_level(logging.INFO, logger="rostersync.sync"):
            assert run_sync(rt, integration_id).outcome == "ok"
        assert BULK in caplog.text
        stored = dump(rt.engine, integration_id)
        assert pseudonym not in {p[1] for p in stored["p"]} | {e[2] for e in stored["e"]}
        assert rt.pseudonymiser.pseudonym("clever", tenant, kept) in {p[1] for p in stored["p"]}
        assert pseudonym not in repr(told(rt.engine, integration_id))
    finally:
        rt.engine.dispose()


STUDENT, TEACHER = "ab" * 32, "Teacher-7"  # a pseudonym as mappers.policy writes it, and one that is not hex


def _page(class_name: str, teacher: PersonRecord) -> RosterBatch:
    return RosterBatch(
        classes=[ClassRecord("c-1", class_name, None, "ACTIVE")],
        people=[PersonRecord("student", STUDENT), teacher],
        enrollments=[EnrollmentRecord("c-1", STUDENT, "student"), EnrollmentRecord("c-1", TEACHER, "teacher")],
    )


@pytest.mark.parametrize("copy_from", [bulk.COPY_FROM, 1], ids=["insert", "copy"])
def test_a_page_that_lists_again_what_an_earlier_page_stored_updates_only_what_changed(
    clever: CleverEmulator, database_url: str, copy_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writes of one first sync name the same class, people and enrolments: the second stores the class's
    new name and the teacher's name over the reference, and leaves the enrolments as they are (no duplicate
    key: the page's row is taken back on PostgreSQL, ignored on SQLite). On PostgreSQL a few rows go as one
    ``INSERT`` and more by ``COPY`` (``COPY_FROM``): both are run here."""
    monkeypatch.setattr(bulk, "COPY_FROM", copy_from)
    rt = build_runtime(clever_settings_for(clever, database_url))
    try:
        integration_id = link_district(rt, clever)
        stored = bulk.FirstSync()
        counts = []
        named = PersonRecord("teacher", TEACHER, "Ms Smith", "smith@example.org")
        for page in (_page("Maths", PersonRecord("teacher", TEACHER, complete=False)), _page("Maths 2", named)):
            with rt.engine.begin() as connection:
                written, own, new = bulk.apply_batch(connection, integration_id, page, stored)
            stored.merge(new)
            counts.append(written)
            assert set(own) == {"c-1"}
        assert counts == [5, 2]
        assert dump(rt.engine, integration_id) == {
            "c": [("c-1", "Maths 2", None, "ACTIVE", True)],
            "p": [("student", STUDENT, None, None, True), ("teacher", TEACHER, "Ms Smith", "smith@example.org", True)],
            "e": [("c-1", "student", STUDENT, "student", True), ("c-1", "teacher", TEACHER, "teacher", True)],
        }
        kinds = [kind for kind, _, _ in told(rt.engine, integration_id)]
        assert sorted(kinds) == sorted(["class.upserted"] * 2 + ["member.added"] * 2 + ["person.updated"])
    finally:
        rt.engine.dispose()


@pytest.mark.parametrize("copy_from", [bulk.COPY_FROM, 1], ids=["insert", "copy"])
def test_a_bulk_write_that_fails_at_its_end_stores_nothing_of_it_and_fails_the_sync(
    clever: CleverEmulator, database_url: str, monkeypatch: pytest.MonkeyPatch, copy_from: int
) -> None:
    """The end of a write (on PostgreSQL it runs on the listing's writer thread while the next page is read:
    sync.listing) fails after its rows were sent: that transaction is rolled back, the sync fails with it,
    and no write after it starts; a sync after it stores the district as a whole. Each page is written as it
    comes (a small district's pages are otherwise one write, the sweep's, in turn), its new people by
    ``COPY`` (ended by the tail) or by ``INSERT`` from arrays (at once: store.bulk ``COPY_FROM``)."""
    monkeypatch.setattr(listing, "BULK_ROWS", 1)
    monkeypatch.setattr(bulk, "COPY_FROM", copy_from)
    rt = build_runtime(clever_settings_for(clever, database_url))
    try:
        integration_id = link_district(rt, clever)
        begin, ended = bulk.begin_batch, []

        def failing_at_the_end(*args: Any) -> Any:
            count, own, written, tail = begin(*args)

            def end() -> int:
                tail()
                ended.append(threading.current_thread().name)
                raise RuntimeError("the write's end failed")

            return count, own, written, end

        monkeypatch.setattr(bulk, "begin_batch", failing_at_the_end)
        with pytest.raises(RuntimeError, match="the write's end failed"):
            run_sync(rt, integration_id)
        assert len(ended) == 1 and ended[0].startswith("rostersync-write") == database_url.startswith("postgresql")
        assert row_count(rt.engine, integration_id) == 0
        monkeypatch.undo()
        assert run_sync(rt, integration_id).outcome == "ok"
        assert dump(rt.engine, integration_id)["e"]
    finally:
        rt.engine.dispose()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_first_sync_whose_writes_end_behind_stores_and_tells_what_one_written_in_turn_does(
    provider: str, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page its own write and every new row by ``COPY`` (else a small world's pages are one write, the
    sweep's, in turn): on PostgreSQL each write's end, the people's ``COPY`` left open among it, runs on the
    listing's writer thread (sync.listing ``_write_behind``). The same rows, the same events in the same
    order and the same count as the same sync with every write in turn (``Listing.behind`` off)."""
    monkeypatch.setattr(listing, "BULK_ROWS", 1)
    monkeypatch.setattr(bulk, "COPY_FROM", 1)
    with opened(provider, tmp_path, database_url) as world:
        loaded = world.runtime()
        integration_id = world.link(loaded)
        behind = run_sync(loaded, integration_id)
        assert behind.outcome == "ok"
        stored, feed = dump(loaded.engine, integration_id), told(loaded.engine, integration_id)
        assert stored["e"]
        with loaded.engine.begin() as connection:  # the integration empty again, its next sync a full listing
            roster.purge(connection, integration_id)
            integrations.store_cursor(connection, integration_id, None)
        write = listing.Listing.write

        def in_turn(self: listing.Listing, batch: RosterBatch) -> dict[str, int]:
            self.behind = False
            return write(self, batch)

        monkeypatch.setattr(listing.Listing, "write", in_turn)
        again = run_sync(loaded, integration_id)
        assert again.outcome == "ok"
        assert dump(loaded.engine, integration_id) == stored
        assert [e for e in told(loaded.engine, integration_id) if e[0] != "integration.purged"] == feed
        assert again.counts().rows_written == behind.counts().rows_written
