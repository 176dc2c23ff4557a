"""Several provider pages, one write: small roster pages gathered into batches of a few hundred rows.

A Google roster page holds at most thirty students and a Graph ``$batch`` answers twenty small
member lists at once; written page by page, each costs a fenced transaction and half a dozen
statements whatever its size, which made the writes, not the download, the larger part of a
sync. Pages are gathered here until ``rows`` is reached and written in one fenced transaction;
applying the union of pages is the same as applying them in turn (every upsert is idempotent,
a person named twice is kept once, the complete record preferred).
"""

from __future__ import annotations

from mappers.records import RosterBatch

ROWS = 1_000
"""Rows (people and enrolments) gathered before a write: large enough that a transaction's fixed cost
is spread thin, small enough that memory stays flat and little is lost to a crash."""


class Coalescer:
    """Gathers mapped pages; ``add`` says when enough are held, ``take`` hands them over as one batch."""

    def __init__(self, rows: int = ROWS) -> None:
        self.rows = rows
        self._batch = RosterBatch()
        self._held = 0

    def add(self, batch: RosterBatch) -> bool:
        """Hold one page's records; True once a write is due."""
        self._batch.classes.extend(batch.classes)
        self._batch.people.extend(batch.people)
        self._batch.enrollments.extend(batch.enrollments)
        self._held += len(batch.classes) + len(batch.people) + len(batch.enrollments)
        return self._held >= self.rows

    @property
    def empty(self) -> bool:
        return self._held == 0

    def take(self) -> RosterBatch:
        batch, self._batch, self._held = self._batch, RosterBatch(), 0
        return batch
