"""Several provider pages, one write: small roster pages gathered into batches of a few hundred rows.

A roster page may hold thirty students, and a batch answer twenty small member lists at once;
written page by page, each costs a fenced transaction and half a dozen
statements whatever its size, which made the writes, not the download, the larger part of a
sync. Pages are gathered here until ``rows`` is reached and written in one fenced transaction;
applying the union of pages is the same as applying them in turn (every upsert is idempotent,
a person named twice is kept once, the complete record preferred).
"""

from __future__ import annotations

from collections.abc import Iterator

from mappers.records import ClassRecord, EnrollmentRecord, PersonRecord, RosterBatch

ROWS = 1_000
"""Rows (people and enrolments) gathered before a write: large enough that a transaction's fixed cost
is spread thin, small enough that memory stays flat and little is lost to a crash."""


class Coalescer:
    """Gathers mapped pages; ``add`` says when enough are held, ``take`` hands them over as one batch."""

    def __init__(self, rows: int | None = None) -> None:
        self.rows = ROWS if rows is None else rows
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


def split(batch: RosterBatch, rows: int | None = None) -> Iterator[RosterBatch]:
    """One large page (a provider's page may hold 10,000 classes with their students) as writes of ~``rows``.

    Each part holds whole classes with the enrolments naming them and the people those enrolments
    name; enrolments of classes stored earlier and people no enrolment names come last. Applying
    the parts in turn stores what applying the page at once would, with the write side's memory
    (parameters, stored values read back) bounded by a part instead of the page.
    """
    rows = ROWS if rows is None else rows
    if len(batch.classes) + len(batch.people) + len(batch.enrollments) <= rows:
        yield batch
        return
    by_class: dict[str, list[EnrollmentRecord]] = {}
    for enrollment in batch.enrollments:
        by_class.setdefault(enrollment.class_external_id, []).append(enrollment)
    people: dict[tuple[str, str], list[PersonRecord]] = {}
    for person in batch.people:
        people.setdefault((person.role, person.pseudonym), []).append(person)
    named: set[tuple[str, str]] = set()
    part, held = RosterBatch(), 0

    def add(classes: list[ClassRecord], enrollments: list[EnrollmentRecord]) -> None:
        nonlocal held
        part.classes.extend(classes)
        part.enrollments.extend(enrollments)
        keys = dict.fromkeys((e.role, e.pseudonym) for e in enrollments)
        for key in keys:
            part.people.extend(people.get(key, ()))
        named.update(keys)
        held += len(classes) + len(enrollments) + len(keys)

    for klass in batch.classes:
        add([klass], by_class.pop(klass.external_id, []))
        if held >= rows:
            yield part
            part, held = RosterBatch(), 0
    add([], [e for enrollments in by_class.values() for e in enrollments])
    part.people.extend(p for key, group in people.items() if key not in named for p in group)
    part.skipped = batch.skipped
    yield part
