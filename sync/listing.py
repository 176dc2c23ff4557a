"""The listing path of a sync: every class, then every class's members, then the sweep of what was not seen.

Why apart from the change path (sync.changes): only a listing that was read whole may remove what
it did not see, so this path carries what the sweep needs (the classes and enrolment keys seen,
whether the class list was whole, the classes whose roster broke) from the first page to the last,
and sweeps only when no page failed. The feed position is taken before the first page and stored
with the sweep, so the change path resumes from a point the listing already covers.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack

from sqlalchemy import Connection

from connectors.base import UNREADABLE, ConnectorError, Masks, Page
from mappers.records import RosterBatch, ended
from store import breaker, bulk, integrations, roster
from store.consent import purge_role
from store.db import utcnow
from store.fence import Fenced
from store.statistics import Statistics
from sync import cursor as cursor_document
from sync.coalesce import Coalescer, split
from sync.collector import collector_paused
from sync.context import SyncPass
from sync.progress import ProgressEvent, emit

log = logging.getLogger("rostersync.sync")


class Listing:
    """What a listing has seen so far, and its writes: each fenced, each counted, each key kept for the sweep."""

    def __init__(self, run: SyncPass, *, bulk_load: bool = False) -> None:
        self.run = run
        self.bulk_load = bulk_load  # a first sync: rows straight into their tables (store.bulk), larger transactions
        self.stored = bulk.FirstSync()  # what a first sync has stored so far (ids by natural key)
        self.unmerged = bulk.FirstSync()  # what its write in progress stored, merged once that write commits
        self.class_ids: dict[str, int] = {}  # external id -> class id, of the classes listed
        self.seen = roster.SeenEnrollments()
        self.classes_complete = True  # no class record was skipped: a class not listed really is gone
        self.done: set[str] = set()  # classes whose members have begun to arrive (for progress)
        self.incomplete_keys: set[str] = set()  # listed classes whose roster is not whole (by external id)
        self.class_keys: set[str] = set()  # every class the class pages listed so far, ended ones too
        self.pending = Coalescer(BULK_ROWS if bulk_load else None)  # small member pages, one transaction
        self.statistics = Statistics(run.runtime.engine)
        # a first sync on PostgreSQL ends each write on a thread while the next page is read (_write_behind)
        self.behind = bulk_load and run.runtime.engine.dialect.name == "postgresql"
        self.writer: ThreadPoolExecutor | None = None
        self.inflight: tuple[Future[int], bulk.FirstSync] | None = None

    def write(self, batch: RosterBatch) -> dict[str, int]:
        """One fenced write; returns the batch's classes (external id -> class id)."""
        if self.behind:
            return self._write_behind(batch)
        with self.run.fenced_write() as connection:
            ids = self.apply(connection, batch)
        if self.bulk_load:  # committed: later writes may count on what this one stored
            self.stored.merge(self.unmerged)
        else:  # the bulk path plans no join on these tables' statistics (bulk.analyze before its sweep)
            self.statistics.written(self.run.outcome.rows_written)
        return ids

    def apply(self, connection: Connection, batch: RosterBatch) -> dict[str, int]:
        """``write`` inside a fenced transaction the caller holds."""
        state = self.run.state
        if self.bulk_load:  # nothing was stored before this sync: no key is kept for the sweep (bulk.sweep)
            written, ids, self.unmerged = bulk.apply_batch(connection, state.id, batch, self.stored)
        else:
            # no removal hold stood when the lease was taken, and only this sync's sweep can make one
            unheld = state.hold_stands is False
            written, ids, keys = roster.apply_batch(connection, state.id, batch, hold_possible=not unheld)
            self.seen.update(keys)
        self.run.outcome.rows_written += written
        self.written_classes(ids)
        return ids

    def written_classes(self, ids: dict[str, int]) -> None:
        """A gathered class page's ids, now written (``gather_classes``), kept for the sweep; a member page's
        classes are not listed ones."""
        self.class_ids.update((key, class_id) for key, class_id in ids.items() if key in self.class_ids)

    def gather_classes(self, batch: RosterBatch) -> None:
        """A class page, gathered with the member pages that follow instead of written on its own.

        Why: a teacher's class list is a few rows, and its own fenced transaction cost a link three or four
        round trips (``BEGIN``, the fence, the classes' read, the commit or rollback) and, on a first sync, a
        durable commit; gathered, it goes into the members' write (the sweep's, for a teacher), classes first,
        so the same statements write the same rows and tell the same events in the same order, and the
        classes are read once. The fence is still checked before the members are asked for
        (``SyncPass.still_current``: no fenced write came between). A revoke finds nothing more of this
        sync's to purge (its writes are fenced as before); a crash before the write loses the class page's
        changes, which the next sync lists again; a provider error writes what was gathered first, as
        before (``_write_classes``, ``_write_members``).

        The listed classes' keys are what the write gives back (store.roster / store.bulk ``apply_batch``):
        each class the page lists (its last record) that is not ended; their ids come with the write
        (``apply``), before the sweep that needs them, and a roster found incomplete meanwhile is kept by key
        (``incomplete``).
        """
        states = {record.external_id: record.state for record in batch.classes}
        self.class_ids.update((key, UNWRITTEN) for key, state in states.items() if not ended(state))
        if self.pending.add(batch):
            self.write_pending()

    def _write_behind(self, batch: RosterBatch) -> dict[str, int]:
        """A first sync's write on PostgreSQL, its end left to a thread: the page's classes and its new people's
        rows are sent here and its enrolments' rows built; the thread ends the people's ``COPY``, writes their
        updates and the enrolments, and commits (store.bulk.begin_batch's tail), waiting on the server (the
        enrolments' key checks and outbox trigger, most of a page's server time) while this thread reads and
        maps the next page. The thread's own Python is a few milliseconds a page: a write-behind that built
        and sent every row lost more to the two threads' turns than it overlapped (BENCHMARKS.md,
        ``firstsync``). One write is in flight at a time; ``settle`` waits for it before anything that could
        depend on it (the page's rows are sorted out before: they depend on nothing stored)."""
        page = bulk.page_rows(batch)
        self.settle()
        if self.writer is None:
            self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rostersync-write")
        with ExitStack() as stack:
            connection = stack.enter_context(self.run.fenced_write())
            written, ids, unmerged, tail = bulk.begin_batch(connection, self.run.state.id, page, self.stored)
            self.inflight = (self.writer.submit(_end, stack.pop_all(), tail), unmerged)
        self.run.outcome.rows_written += written
        self.written_classes(ids)  # as ``apply``: known before the commit, taken from the sequence
        return ids

    def settle(self) -> None:
        """Wait for the write in flight to commit and take in what it stored; its error, if it failed."""
        if self.inflight is None:
            return
        (ending, unmerged), self.inflight = self.inflight, None
        self.run.outcome.rows_written += ending.result()
        self.stored.merge(unmerged)

    def close(self) -> None:
        """Settle the write in flight (its error goes up) and stop the writer's thread."""
        try:
            self.settle()
        finally:
            if self.writer is not None:
                self.writer.shutdown()
                self.writer = None

    def write_pending(self) -> None:
        """One fenced write for the pages gathered so far (small pages cost one transaction together)."""
        if not self.pending.empty:
            self.write(self.pending.take())

    def incomplete(self, parent_id: str | None) -> None:
        """That class's roster is not whole: the sweep leaves its enrolments alone (``listed_ids``)."""
        if parent_id in self.class_ids:
            self.incomplete_keys.add(parent_id)

    def listed_ids(self) -> set[int]:
        """The listed classes' ids, once every page is written (the sweep's): the incomplete rosters' ids go
        to the outcome with them."""
        self.run.outcome.incomplete_classes.update(self.class_ids[key] for key in self.incomplete_keys)
        return set(self.class_ids.values())

    def progress(self, parent_id: str | None) -> None:
        if parent_id is not None and parent_id in self.class_ids and parent_id not in self.done:
            self.done.add(parent_id)
            emit(ProgressEvent(self.run.state.id, "class", len(self.done), len(self.class_ids)))


def full_sync(run: SyncPass, allowlist: str, *, teacher_scoped: bool) -> None:
    """Classes, then the rest of the roster, then the sweep; the feed position is taken first, stored last.

    Only the roles the consent basis allows get a mask, and a role without a mask is not requested;
    members a provider returns inline with its classes are dropped here before any write.
    """
    run.outcome.mode = "full"
    masks = {role: run.spec.field_mask(role, run.state.granted_scopes) for role in ("class", *run.roles)}
    cursor = run.connector.change_cursor() if run.spec.map_changes is not None else None
    listing = Listing(run, bulk_load=_first_sync(run))
    try:
        _write_classes(listing, masks)
        _write_members(listing, masks)
    finally:  # a write in flight ends first; its error is the one a write in turn would have raised first
        listing.close()
    # Reached only when every page above was read without error: a failure anywhere raised, unswept.
    # The last pages gathered are written in the sweep's transaction: a teacher's link is then two
    # transactions (lease, class list gathered with the members and the sweep) and its release. That write is a page's
    # like any other, with the collector paused (sync.collector): on a first sync it holds every member
    # gathered, and the collector's full run over them there was a fifth to a quarter of the big teacher's CPU.
    with collector_paused(), run.fenced_write() as connection:
        if not listing.pending.empty:
            listing.apply(connection, listing.pending.take())
        _sweep(connection, listing, teacher_scoped=teacher_scoped)
        document = cursor_document.CursorState(cursor, allowlist, utcnow()).dumps() if cursor is not None else None
        if document is not None or run.state.sync_cursor is not None:  # no feed, no cursor: nothing to write
            integrations.store_cursor(connection, run.state.id, document)


UNWRITTEN = 0
"""A gathered class's id until its write gives the real one (``Listing.gather_classes``); no row has id 0."""


def _rows(batch: RosterBatch) -> int:
    return len(batch.classes) + len(batch.people) + len(batch.enrollments)


def _end(transaction: ExitStack, tail: bulk.Tail) -> int:
    """The writer thread's part of a write: its tail (the people's ``COPY`` ended, the rest written), then the
    commit (the rollback and the error, if either fails); the rows the tail wrote."""
    with transaction:
        return tail()


BULK_ROWS = 20_000
"""Rows gathered before a first sync's write (store.bulk): a bulk statement's fixed cost is spread over many."""


def _first_sync(run: SyncPass) -> bool:
    """The bulk path (store.bulk) when the integration holds nothing yet and the setting allows it.

    What the lease read at the start (``IntegrationState.roster_stored``) still holds when this run has not
    written or removed anything before its listing (a change page may have); else it is asked again.
    """
    if not run.runtime.settings.bulk_first_sync:
        return False
    stored = run.state.roster_stored
    if stored is None or run.outcome.rows_written or run.outcome.removed:
        with run.runtime.engine.connect() as connection:
            stored = not bulk.is_empty(connection, run.state.id)
    if not stored:
        log.info("integration %s: first sync, bulk path", run.state.id)
    return not stored


def _write_classes(listing: Listing, masks: Masks) -> None:
    """Fetch, map and write the class list; a page of thousands of classes is written a thousand rows at a time."""
    run = listing.run
    pages = iter(run.connector.classes(masks))
    # a page read, mapped and written with the collector paused (sync.collector); the page goes straight into
    # _class_page, which lets it go once mapped, so no frame here holds it while its rows are written
    try:
        while True:
            with collector_paused():
                if not _class_page(listing, next(pages, None)):
                    break
    except ConnectorError:  # the pages gathered before it are written, as if each had been written as it came
        with contextlib.suppress(Fenced):
            listing.write_pending()
        raise
    run.outcome.classes_seen = len(listing.class_ids)
    emit(ProgressEvent(run.state.id, "classes", 0, len(listing.class_ids)))


def _class_page(listing: Listing, page: Page | None) -> bool:
    """Map and write one page of the class list; False when there was none left."""
    if page is None:
        return False
    run = listing.run
    batch = run.within(run.spec.map_page(page, run.mapping))
    del page  # mapped: neither the raw page nor (below) its batch is held while the next page is read
    keys = {record.external_id for record in batch.classes}
    if (listing.bulk_load or _rows(batch) <= listing.pending.rows) and keys.isdisjoint(listing.class_keys):
        listing.gather_classes(batch)
    else:  # a page of thousands of classes, or one listing a class again: written as it comes, in parts,
        listing.write_pending()  # after what was gathered before it (a class's records stay apart, in order)
        for part in [batch] if listing.bulk_load else split(batch):
            listing.class_ids.update(listing.write(part))
    listing.class_keys |= keys
    run.outcome.members_seen += len(batch.enrollments)
    run.outcome.records_skipped += batch.skipped
    listing.classes_complete = listing.classes_complete and batch.skipped == 0
    return True


def _write_members(listing: Listing, masks: Masks) -> None:
    """Fetch, map and write each listed class's members; the last pages gathered are left to the sweep's write.

    On a provider error the pages read before it are kept as if written one by one (and leave any
    hold they list); nothing is swept. A revoke that fenced them first wins: the original error still
    goes up.
    """
    run = listing.run
    pages = iter(run.connector.members(list(listing.class_ids), masks))
    try:
        while True:  # as the class list's pages (_write_classes)
            with collector_paused():
                if not _member_page(listing, next(pages, None)):
                    break
    except ConnectorError:
        with contextlib.suppress(Fenced):
            listing.write_pending()
        raise


def _member_page(listing: Listing, page: Page | None) -> bool:
    """Map one page of a class's members and gather it (written once enough are gathered); False when there
    was none left."""
    if page is None:
        return False
    run, parent_id = listing.run, page.parent_id
    listing.progress(parent_id)
    if page.kind == UNREADABLE:
        listing.incomplete(parent_id)
        run.outcome.records_skipped += 1
        log.warning("integration %s: roster of one class skipped (unreadable)", run.state.id)
        return True
    batch = run.within(run.spec.map_page(page, run.mapping))
    del page  # mapped: the raw page is not held while the gathered pages are written
    run.outcome.members_seen += len(batch.enrollments)
    run.outcome.records_skipped += batch.skipped
    if batch.skipped:  # a member record broke: that roster is not whole
        listing.incomplete(parent_id)
    if listing.pending.add(batch):
        listing.write_pending()
    return True


def _sweep(connection: Connection, listing: Listing, *, teacher_scoped: bool) -> None:
    """Remove what the whole listing did not see, unless the mass-removal breaker holds it for an admin."""
    run, outcome, integration_id = listing.run, listing.run.outcome, listing.run.state.id
    if listing.bulk_load:  # statistics for the sweep's statements, where the tables' growth calls for them
        bulk.analyze(connection, outcome.rows_written)
    if "student" not in run.roles:
        outcome.removed += purge_role(connection, integration_id, "student")  # policy, not a listing: never held
    # Classes the provider listed as ended (archived, expired) end first, as the school's decision.
    current = roster.current_classes(connection, integration_id)
    ended = breaker.end_explained(connection, integration_id=integration_id, run_id=outcome.run_id, current=current)
    outcome.removed += ended
    if listing.bulk_load:
        outcome.removed += bulk.sweep(connection, integration_id)
        return
    plan = roster.plan_removals(
        connection,
        integration_id,
        listing.listed_ids(),
        listing.seen,
        outcome.incomplete_classes,
        sweep_classes=listing.classes_complete,
        active=None if ended else set(current),  # read again once ended classes went
    )
    swept = breaker.sweep(
        connection,
        integration_id=integration_id,
        run_id=outcome.run_id,
        generation=run.state.generation,
        plan=plan,
        limits=run.limits(),
        # a teacher with zero classes
        explained=teacher_scoped and listing.classes_complete and not listing.class_ids,
        hold_possible=run.state.hold_stands is not False,
    )
    outcome.removed += swept.removed
    if swept.held is not None:
        outcome.outcome = "held"
        log.warning("integration %s: sweep held by the mass-removal breaker (%s)", integration_id, swept.held)
