"""The change path of a sync: the provider's change feed (delta, events) read from the stored cursor.

Why apart from the listing (sync.listing): this path removes only what the provider says ended,
never what is merely absent, and it stores the cursor page by page with the writes it stands for,
so a run stopped halfway resumes where it stopped. The mass-removal breaker still guards each page
(store.breaker.ChangeGuard).
"""

from __future__ import annotations

from mappers.records import ROLES, ChangeBatch
from store import breaker, integrations
from sync import cursor as cursor_document
from sync import reappeared
from sync.context import SyncPass


def follow_changes(run: SyncPass, saved: cursor_document.CursorState) -> None:
    """Apply the change feed page by page; each page's writes and the cursor after it commit together."""
    map_changes = run.spec.map_changes
    assert map_changes is not None
    run.outcome.mode = "changes"
    guard = breaker.ChangeGuard(run.state.id, run.limits(), run.outcome.run_id)
    for page in run.connector.changes(saved.cursor):
        batch = map_changes(page, run.mapping)
        # a re-used id: its classes
        reappeared.restore(run.runtime.engine, run.state.id, run.spec, run.connector, run.mapping, batch)
        if not set(ROLES) <= set(run.roles):
            batch = batch.whole()  # a class's whole membership, filtered below, is what a partial consent keeps
        batch.upserts = run.within(batch.upserts)
        with run.fenced_write() as connection:
            run.outcome.rows_written += guard.apply(connection, batch)
            if page.cursor is not None and page.cursor != saved.cursor:
                saved = saved.advanced(page.cursor)
                integrations.store_cursor(connection, run.state.id, saved.dumps())
        _count(run, batch)


def _count(run: SyncPass, batch: ChangeBatch) -> None:
    run.outcome.classes_seen += len(batch.upserts.classes)
    run.outcome.members_seen += len(batch.upserts.people)
    run.outcome.records_skipped += batch.upserts.skipped
