"""The change path of a sync: the provider's change feed (delta, events) read from the stored cursor.

Why apart from the listing (sync.listing): this path removes only what the provider says ended,
never what is merely absent, and it stores the cursor page by page with the writes it stands for,
so a run stopped halfway resumes where it stopped. The mass-removal breaker still guards each page
(store.breaker.ChangeGuard).

Pages that only upsert and leave the cursor where it was (a delta feed's member lists of the changed
classes, whose new cursor comes with the last page only) are gathered into writes of up to ``CHANGE_ROWS``
(sync.coalesce): written one by one, each cost a fenced transaction and a dozen statements for a dozen
rows. A page that deletes, replaces a class or moves the cursor ends the gathering.
"""

from __future__ import annotations

from connectors.base import Page
from mappers.records import ROLES, ChangeBatch
from store import breaker, integrations
from sync import cursor as cursor_document
from sync import reappeared
from sync.coalesce import Coalescer
from sync.collector import collector_paused
from sync.context import SyncPass

CHANGE_ROWS = 10_000
"""Rows gathered into one write on the change path: more than the listing's default because these pages
move no cursor, so a crash loses nothing a larger write would keep (the run resumes from the stored cursor
and reads them again); a delta's member lists of a thousand changed classes are some 55,000 rows, seven
writes instead of fifty-six, each write's fixed cost (the fence under the lock, the commit) paid once.
20,000 saved no more CPU and held twice the memory (15 MB more at the peak instead of 7)."""


def follow_changes(run: SyncPass, saved: cursor_document.CursorState) -> None:
    """Apply the change feed page by page; each page's writes and the cursor after it commit together."""
    assert run.spec.map_changes is not None
    run.outcome.mode = "changes"
    guard = breaker.ChangeGuard(run.state.id, run.limits(), run.outcome.run_id)
    held = Coalescer(CHANGE_ROWS)
    pages = iter(run.connector.changes(saved.cursor))
    while True:
        with collector_paused():  # a page read, mapped and written
            page = next(pages, None)
            if page is None:
                break
            saved = _follow(run, guard, held, page, saved)
            del page  # freed now, by its reference counts, not traversed by the collector once it resumes
    if not held.empty:
        _write(run, guard, ChangeBatch(upserts=held.take()))


def _follow(
    run: SyncPass, guard: breaker.ChangeGuard, held: Coalescer, page: Page, saved: cursor_document.CursorState
) -> cursor_document.CursorState:
    """One page: mapped, then held for a later write (upserts only) or written with the cursor after it."""
    map_changes = run.spec.map_changes
    assert map_changes is not None
    batch = map_changes(page, run.mapping)
    # a re-used id: its classes
    reappeared.restore(run.runtime.engine, run.state.id, run.spec, run.connector, run.mapping, batch)
    if not set(ROLES) <= set(run.roles):
        batch = batch.whole()  # a class's whole membership, filtered below, is what a partial consent keeps
    batch.upserts = run.within(batch.upserts)
    moved = page.cursor is not None and page.cursor != saved.cursor
    if _upserts_only(batch) and not moved:
        _count(run, batch)
        if held.add(batch.upserts):
            _write(run, guard, ChangeBatch(upserts=held.take()))
        return saved
    if not held.empty:
        _write(run, guard, ChangeBatch(upserts=held.take()))
    saved = _write(run, guard, batch, saved.advanced(page.cursor) if moved and page.cursor else None) or saved
    _count(run, batch)
    return saved


def _upserts_only(batch: ChangeBatch) -> bool:
    """A page whose writes may join others': it deletes nothing, replaces no class and restores no one."""
    return not (batch.replaced_classes or batch.deleted_classes or batch.deleted_people or batch.reappeared)


def _write(
    run: SyncPass,
    guard: breaker.ChangeGuard,
    batch: ChangeBatch,
    advanced: cursor_document.CursorState | None = None,
) -> cursor_document.CursorState | None:
    """One fenced write of ``batch``, and of the cursor after it when it moved (returned)."""
    with run.fenced_write() as connection:
        run.outcome.rows_written += guard.apply(connection, batch)
        if advanced is not None:
            integrations.store_cursor(connection, run.state.id, advanced.dumps())
    return advanced


def _count(run: SyncPass, batch: ChangeBatch) -> None:
    run.outcome.classes_seen += len(batch.upserts.classes)
    run.outcome.members_seen += len(batch.upserts.people)
    run.outcome.records_skipped += batch.upserts.skipped
