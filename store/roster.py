"""Batched, idempotent roster writes: upsert what a page holds, soft-delete what the provider no longer has.

Every upsert updates a row only when a value differs (or the row was soft-deleted), so a re-sync
with no change writes no rows. ``RETURNING`` tells which rows were written, portably.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from mappers.records import (
    ENDED_STATES,
    ChangeBatch,
    ClassRecord,
    EnrollmentRecord,
    PersonRecord,
    RosterBatch,
    ended,
)
from store import holds, membership, outbox, suppressions
from store.db import listed_by_name, one_of, utcnow
from store.models import Base, Enrollment, HeldRemoval, Person, RemovalHold, SchoolClass

CHUNK = 500
STREAMED = {"stream_results": True, "yield_per": 2_000}
"""Rows read a few thousand at a time (a server-side cursor on PostgreSQL, whose driver would otherwise
fetch the whole result into memory first; SQLite reads lazily anyway)."""


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _upsert(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str], values: Sequence[str]
) -> int:
    """INSERT .. ON CONFLICT DO UPDATE .. WHERE changed; returns how many rows were really written."""
    return len(_upserted(connection, table, rows, keys, values))


def _upserted(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    values: Sequence[str],
    returned: tuple[str, ...] = (),
) -> Sequence[Any]:
    """``_upsert``'s rows really written, each its id and its ``returned`` columns."""
    if not rows:
        return []
    dialect = connection.dialect.name
    upsert = _upsert_statement(dialect, table, tuple(keys), tuple(values), tuple(rows[0]), returned)
    return connection.execute(upsert, _parameters(dialect, rows)).all()


def _insert(dialect: str, table: Table, columns: tuple[str, ...]) -> Any:
    """``INSERT INTO table (columns)``: on PostgreSQL from ``SELECT unnest(:column), ..``, one array a column.

    Why: SQLAlchemy sends many rows as one ``VALUES (..), (..)`` of a placeholder per value, rendered at every
    execution, and psycopg rewrites every placeholder of a statement that long in Python: on a 1% change at
    100,000 students (issue 22) that was most of the CPU of its few large writes. With one array a column the
    statement is short and the same whatever the rows, so both cache it; PostgreSQL unnests the arrays side
    by side (equal lengths), row by row in the order given. SQLite has no arrays: its rows stay VALUES.
    ``_parameters`` gives the rows in the matching form.
    """
    if dialect != "postgresql":
        return sqlite.insert(table)
    arrays = [func.unnest(bindparam(name, type_=ARRAY(table.c[name].type))) for name in columns]
    return postgresql.insert(table).from_select(list(columns), select(*arrays))


def _parameters(dialect: str, rows: Sequence[dict[str, Any]]) -> Any:
    """The rows for ``_insert``'s statement: a list a column on PostgreSQL, the rows themselves elsewhere."""
    if dialect != "postgresql":
        return list(rows)
    return {name: [row[name] for row in rows] for name in rows[0]}


NULL = null()
"""``removed_at`` is restored with a literal NULL: a Python None would be a bound parameter outside the
VALUES rows, and SQLAlchemy then sends an upsert row by row instead of a thousand rows a statement
("insertmanyvalues"); measured on a 10,000-student district's first sync, 23,902 INSERTs became 133."""


@functools.cache
def _upsert_statement(
    dialect: str,
    table: Table,
    keys: tuple[str, ...],
    values: tuple[str, ...],
    columns: tuple[str, ...],
    returned: tuple[str, ...] = (),
) -> Any:
    """Built once per table and dialect: constructing it anew took a third of a no-change page's time."""
    statement = _insert(dialect, table, columns)
    changed = or_(
        table.c.removed_at.is_not(None), *(table.c[name].is_distinct_from(statement.excluded[name]) for name in values)
    )
    set_ = {name: statement.excluded[name] for name in values} | {"removed_at": NULL}
    upsert = statement.on_conflict_do_update(index_elements=list(keys), set_=set_, where=changed)
    return upsert.returning(table.c.id, *(table.c[name] for name in returned))


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


@functools.cache
def _lookup(dialect: str, model: type[Base], names: tuple[str, ...], listed: tuple[str, ...]) -> Select[Any]:
    """``SELECT names FROM model WHERE integration_id = :integration_id AND <each of listed> IN (:<its name>)``,
    built once per dialect (constructing a statement anew cost more than running it).

    Enrolments keep SQLite's IN lists: told a list's length, SQLite looks a few classes' enrolments up by
    (class, person); given a JSON list of unknown length it probes each person's enrolments instead, every
    class of theirs (BENCHMARKS.md, issue 22, branch ``inlist``)."""
    table = _table(model)
    return select(*(table.c[name] for name in names)).where(
        table.c.integration_id == bindparam("integration_id"),
        *(listed_by_name(table.c[name], dialect, sqlite_list=model is Enrollment) for name in listed),
    )


def _look_up(
    connection: Connection, model: type[Base], names: tuple[str, ...], integration_id: int, **lists: Sequence[Any]
) -> Sequence[Any]:
    """Run ``_lookup`` with these lists (keyed by column name); its rows fetched at once.

    Why ``all()``: a result iterated row by row is fetched row by row (a call through SQLAlchemy and psycopg a
    row); fetched in one call, a teacher link's re-sync made a tenth fewer Python calls (BENCHMARKS.md, issue 22).
    """
    statement = _lookup(connection.dialect.name, model, names, tuple(lists))
    parameters = {"integration_id": integration_id, **{k: list(v) for k, v in lists.items()}}
    return connection.execute(statement, parameters).all()


def _class_ids(connection: Connection, integration_id: int, external_ids: Iterable[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted(set(external_ids))):
        found = _look_up(connection, SchoolClass, ("external_id", "id"), integration_id, external_id=chunk)
        ids.update({external_id: class_id for external_id, class_id in found})
    return ids


def _person_ids(
    connection: Connection, integration_id: int, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    ids: dict[tuple[str, str], int] = {}
    wanted = set(keys)
    for role in {role for role, _ in wanted}:
        # One equality per key column (not a row-value IN), so SQLite too looks rows up by the unique index.
        pseudonyms = sorted(pseudonym for person_role, pseudonym in wanted if person_role == role)
        for chunk in _chunks(pseudonyms):
            found = _look_up(connection, Person, ("pseudonym", "id"), integration_id, role=[role], pseudonym=chunk)
            ids.update({(role, pseudonym): person_id for pseudonym, person_id in found})
    return ids


_PERSON = ("role", "pseudonym", "id", "display_name", "email_address", "removed_at")


def _stored_people(
    connection: Connection, integration_id: int, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """The stored rows (id, fields, removed_at) of these ``(role, pseudonym)`` keys, soft-deleted ones too.

    One statement a chunk for every role at once (``role IN .. AND pseudonym IN ..`` still probes the unique
    index on both databases); a row of another role with the same pseudonym is read and left out.
    """
    stored: dict[tuple[str, str], Any] = {}
    wanted = set(keys)
    roles = sorted({role for role, _ in wanted})
    for chunk in _chunks(sorted({pseudonym for _, pseudonym in wanted})):
        found = _look_up(connection, Person, _PERSON, integration_id, role=roles, pseudonym=chunk)
        stored.update({key: row for row in found if (key := (row.role, row.pseudonym)) in wanted})
    return stored


def archived_people(
    connection: Connection, integration_id: int, keys: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Of these ``(role, pseudonym)`` keys, those stored and soft-deleted: the people a change feed's "created"
    brings back (issue 23 item 5), whose classes must be re-read for their enrolments to return with them."""
    return {key for key, row in _stored_people(connection, integration_id, keys).items() if row.removed_at is not None}


def _stored_enrollments(
    connection: Connection, integration_id: int, keys: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], tuple[str, Any]]:
    """``(class id, person id) -> (role, removed_at)`` of these enrolments as stored (a pair of a class and a
    person named apart, not among ``keys``, may come too).

    Looked up by class and person, a chunk of people at a time, not every enrolment of the classes: a write
    of a few hundred members of a class of 3,000 read the whole class, so a re-sync of a teacher of two
    such classes read 36,000 enrolments for the 6,000 it listed.
    """
    people_of: dict[int, set[int]] = {}
    for class_id, person_id in keys:
        people_of.setdefault(class_id, set()).add(person_id)
    stored: dict[tuple[int, int], tuple[str, Any]] = {}
    names = ("class_id", "person_id", "role", "removed_at")
    for classes in _chunks(sorted(people_of)):
        for people in _chunks(sorted({person for class_id in classes for person in people_of[class_id]})):
            found = _look_up(connection, Enrollment, names, integration_id, class_id=classes, person_id=people)
            stored.update({(class_id, person): (role, gone) for class_id, person, role, gone in found})
    return stored


def _stored_classes(
    connection: Connection, integration_id: int, external_ids: Iterable[str]
) -> dict[str, tuple[int, bool]]:
    """``external id -> (class id, ended)`` of these classes as stored; ``ended``: removed in a state the school
    ended (``mappers.records.ENDED_STATES``), so no enrolment of theirs is written. One read for both."""
    stored: dict[str, tuple[int, bool]] = {}
    for chunk in _chunks(sorted(set(external_ids))):
        names = ("external_id", "id", "state", "removed_at")
        found = _look_up(connection, SchoolClass, names, integration_id, external_id=chunk)
        for external_id, class_id, state, removed_at in found:
            stored[external_id] = (class_id, _ended(state, removed_at))
    return stored


def _ended(state: str | None, removed_at: datetime | None) -> bool:
    """Removed in a state the school ended."""
    return removed_at is not None and state is not None and ended(state)


def _upsert_classes(
    connection: Connection, integration_id: int, records: Sequence[ClassRecord]
) -> tuple[int, dict[str, tuple[int, bool]] | None]:
    """Write the classes that changed; returns rows written and, when it wrote none, ``_stored_classes`` of those
    stored, from its own read (nothing was written since, so a second read would return the same rows)."""
    rows = {
        r.external_id: {
            "integration_id": integration_id,
            "external_id": r.external_id,
            "name": r.name,
            "section": r.section,
            "state": r.state,
        }
        for r in records
    }
    stored: dict[str, tuple[Any, ...]] = {}
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted(rows)):
        names = ("external_id", "name", "section", "state", "removed_at", "id")
        found = _look_up(connection, SchoolClass, names, integration_id, external_id=chunk)
        stored.update({external_id: tuple(values) for external_id, *values, _ in found})
        ids.update({row[0]: row[-1] for row in found})

    def wanted(key: str, row: dict[str, Any]) -> bool:
        """Changed, and not an ended class that is unknown or already ended (it is never stored or restored ended)."""
        if stored.get(key) == (row["name"], row["section"], row["state"], None):
            return False
        return not (ended(row["state"]) and (key not in stored or stored[key][3] is not None))

    changed = [row for key, row in rows.items() if wanted(key, row)]
    if not changed:
        return 0, {key: (ids[key], _ended(state, removed_at)) for key, (_, _, state, removed_at) in stored.items()}
    keys, values = ("integration_id", "external_id"), ("name", "section", "state")
    return _upsert(connection, _table(SchoolClass), changed, keys, values), None


def _restore_references(connection: Connection, rows: Sequence[dict[str, Any]]) -> Sequence[Any]:
    """Insert people known by reference only if missing, restore them if soft-deleted; never touch their fields.
    Returns the rows written, ``(id, role, pseudonym)`` each."""
    if not rows:
        return []
    dialect = connection.dialect.name
    return connection.execute(_restore_statement(dialect, tuple(rows[0])), _parameters(dialect, rows)).all()


@functools.cache
def _restore_statement(dialect: str, columns: tuple[str, ...]) -> Any:
    table = _table(Person)
    upsert = _insert(dialect, table, columns).on_conflict_do_update(
        index_elements=["integration_id", "role", "pseudonym"],
        set_={"removed_at": NULL},
        where=table.c.removed_at.is_not(None),
    )
    return upsert.returning(table.c.id, table.c.role, table.c.pseudonym)


def _update_known(connection: Connection, integration_id: int, people: Sequence[PersonRecord]) -> int:
    """Refresh the fields of people already stored (whatever their state); never inserts, never restores."""
    written = 0
    for p in people:
        written += connection.execute(
            update(Person)
            .where(
                Person.integration_id == integration_id,
                Person.role == p.role,
                Person.pseudonym == p.pseudonym,
                or_(
                    Person.display_name.is_distinct_from(p.display_name),
                    Person.email_address.is_distinct_from(p.email_address),
                ),
            )
            .values(display_name=p.display_name, email_address=p.email_address)
        ).rowcount
    return written


def apply_batch(
    connection: Connection,
    integration_id: int,
    batch: RosterBatch,
    *,
    enrollments_new: bool = False,
    hold_possible: bool = True,
) -> tuple[int, dict[str, int], set[tuple[int, int]]]:
    """Upsert one page's classes, people and enrolments, whatever provider it came from.

    Returns rows written, ``external_id -> class id`` of the batch's classes, and the
    ``(class id, person id)`` keys of its enrolments (for the sweep). Enrolments may name classes
    stored by an earlier page; one naming a class that is not stored, or that the school ended
    (``mappers.records.ENDED_STATES``), is dropped; an ended class is left out of the returned classes. People no
    enrolment names only update rows already stored; references (``complete=False``) never overwrite.
    A suppressed (erased) person is dropped here, inside the fenced transaction, so no sync brings
    them back (neither a full listing nor a change feed). A class or enrolment the page lists again
    leaves any removal hold it was in (store.holds): approving a hold never removes what was seen since.
    ``enrollments_new``: the caller already took out the enrolments stored as listed (store.membership),
    so the rest are upserted without reading their classes' enrolments first. ``hold_possible=False``: the
    caller knows no removal hold stands (store.leases), so none is looked for.
    """
    written, own_classes, keys, _ = _write_batch(
        connection, integration_id, batch, enrollments_new=enrollments_new, hold_possible=hold_possible
    )
    return written, own_classes, keys


def _write_batch(
    connection: Connection,
    integration_id: int,
    batch: RosterBatch,
    *,
    enrollments_new: bool,
    hold_possible: bool,
) -> tuple[int, dict[str, int], set[tuple[int, int]], dict[PersonKey, int]]:
    """``apply_batch``, also returning the ids of the people its admitted enrolments name (every one of them,
    looked up once): a change page needs them again and need not look them up a second time."""
    written, stored_classes = _upsert_classes(connection, integration_id, batch.classes)
    named = {c.external_id for c in batch.classes} | {e.class_external_id for e in batch.enrollments}
    if stored_classes is None:
        stored_classes = _stored_classes(connection, integration_id, named)
    else:  # no class written: the batch's own classes as read before, the others its enrolments name read now
        listed = {c.external_id for c in batch.classes}
        stored_classes |= _stored_classes(connection, integration_id, named - listed)
    closed = {external_id for external_id, (_, shut) in stored_classes.items() if shut}
    enrollments, people = _admitted(connection, integration_id, batch, closed)
    members: set[PersonKey] = {(e.role, e.pseudonym) for e in enrollments}
    people_written, person_ids = _write_people(connection, integration_id, people, members)
    class_ids = {external_id: class_id for external_id, (class_id, _) in stored_classes.items()}
    enrollments_written, keys = _write_enrollments(
        connection, integration_id, enrollments, class_ids, person_ids, read_first=not enrollments_new
    )
    # An ended class is not the listing's to read or to keep: the sweep ends it (store.breaker.end_explained).
    own_classes = {
        c.external_id: class_ids[c.external_id]
        for c in batch.classes
        if c.external_id in class_ids and not ended(c.state)
    }
    if hold_possible:
        holds.release_listed(connection, integration_id, set(own_classes.values()), keys)
    return written + people_written + enrollments_written, own_classes, keys, person_ids


PersonKey = tuple[str, str]
"""``(role, pseudonym)``: how a page names a person."""


def _admitted(
    connection: Connection, integration_id: int, batch: RosterBatch, closed: set[str]
) -> tuple[list[EnrollmentRecord], dict[PersonKey, PersonRecord]]:
    """The page's enrolments and people that may be written: no suppressed person, no enrolment in an ended
    class (``closed``: their external ids).

    A person listed twice is kept once, the complete record over a reference.
    """
    blocked = suppressions.suppressed(
        connection, integration_id, {p.pseudonym for p in batch.people} | {e.pseudonym for e in batch.enrollments}
    )
    enrollments = [e for e in batch.enrollments if e.pseudonym not in blocked and e.class_external_id not in closed]
    people: dict[PersonKey, PersonRecord] = {}
    for p in (p for p in batch.people if p.pseudonym not in blocked):
        key = (p.role, p.pseudonym)
        if key not in people or (p.complete and not people[key].complete):
            people[key] = p
    return enrollments, people


def _write_people(
    connection: Connection, integration_id: int, people: dict[PersonKey, PersonRecord], members: set[PersonKey]
) -> tuple[int, dict[PersonKey, int]]:
    """Write the people who changed; returns rows written and the ids of every member.

    What the store already holds is read first and left alone: a no-change page then writes nothing
    and locks no row (PostgreSQL's ON CONFLICT DO UPDATE locks a row even when its WHERE is false).
    """

    def row(p: PersonRecord) -> dict[str, Any]:
        return {
            "integration_id": integration_id,
            "role": p.role,
            "pseudonym": p.pseudonym,
            "display_name": p.display_name if p.complete else None,
            "email_address": p.email_address if p.complete else None,
        }

    stored = _stored_people(connection, integration_id, set(people) | members)

    def differs(key: PersonKey, p: PersonRecord) -> bool:
        found = stored.get(key)
        return (
            found is None
            or found.removed_at is not None
            or (found.display_name, found.email_address) != (p.display_name, p.email_address)
        )

    complete = [row(p) for key, p in people.items() if key in members and p.complete and differs(key, p)]
    references = [
        row(p)
        for key, p in people.items()
        if key in members and not p.complete and (key not in stored or stored[key].removed_at is not None)
    ]
    known = [p for key, p in people.items() if key not in members and p.complete and key in stored and differs(key, p)]
    keys, values = ("integration_id", "role", "pseudonym"), ("display_name", "email_address")
    upserted = _upserted(connection, _table(Person), complete, keys, values, ("role", "pseudonym"))
    restored = _restore_references(connection, references)
    written = len(upserted) + len(restored) + _update_known(connection, integration_id, known)
    # The ids: of the people stored before, of those just written (as the writes returned them), and of the
    # rest looked up (none, unless a member had no record on the page).
    person_ids: dict[PersonKey, int] = {key: stored[key].id for key in members if key in stored}
    person_ids |= {(role, pseudonym): person_id for person_id, role, pseudonym in [*upserted, *restored]}
    person_ids |= _person_ids(connection, integration_id, members - set(person_ids))
    return written, person_ids


def _write_enrollments(
    connection: Connection,
    integration_id: int,
    enrollments: Sequence[EnrollmentRecord],
    class_ids: dict[str, int],
    person_ids: dict[PersonKey, int],
    *,
    read_first: bool = True,
) -> tuple[int, set[tuple[int, int]]]:
    """Write the enrolments that changed; returns rows written and the ``(class id, person id)`` keys listed.

    Without ``read_first`` every row goes to the upsert, whose ``WHERE`` still writes only what differs.
    """
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for e in enrollments:
        class_id, person_id = class_ids.get(e.class_external_id), person_ids.get((e.role, e.pseudonym))
        if class_id is None or person_id is None:
            continue
        rows[(class_id, person_id)] = {
            "integration_id": integration_id,
            "class_id": class_id,
            "person_id": person_id,
            "role": e.role,
        }
    stored = _stored_enrollments(connection, integration_id, rows) if read_first else {}
    changed = [row for key, row in rows.items() if stored.get(key) != (row["role"], None)]
    written = 0
    for chunk in _chunks(changed):
        written += _upsert(connection, _table(Enrollment), chunk, ("class_id", "person_id"), ("role",))
    return written, set(rows)


def _soft_delete(
    connection: Connection, model: type[SchoolClass | Person | Enrollment], condition: Any, now: Any
) -> int:
    return int(
        connection.execute(update(model).where(condition, model.removed_at.is_(None)).values(removed_at=now)).rowcount
    )


def _remove_people_without_enrollment(connection: Connection, integration_id: int, now: Any, *, probe: bool) -> int:
    """The integration's people left with no current enrolment go (after a sweep).

    ``probe``: each of the integration's people is looked up in the enrolments' person index, one probe a
    person (``OFFSET 0`` keeps PostgreSQL from turning the ``NOT EXISTS`` into an anti join). As an anti join,
    once the statistics know the enrolments, PostgreSQL hashed every enrolment in the table for each sweep: a
    scan that grew with the whole fleet's rosters (4 ms a teacher's re-sync at 20,000 enrolments, against 0.2
    ms for the probes). A first sync's sweep (store.bulk) keeps the anti join: its integration's rows are newer
    than the statistics, which then plan it as the probes anyway, and a district's one sweep hashes faster
    than it probes. The same rows go either way."""
    live = select(Enrollment.id).where(Enrollment.person_id == Person.id, Enrollment.removed_at.is_(None))
    has_enrollment = live.offset(0).exists() if probe else live.exists()
    return _soft_delete(connection, Person, and_(Person.integration_id == integration_id, ~has_enrollment), now)


def _remove_orphans(connection: Connection, integration_id: int, person_ids: set[int], now: Any) -> int:
    """Soft-delete those of ``person_ids`` left with no current enrolment (the others are not looked at)."""
    has_enrollment = exists().where(Enrollment.person_id == Person.id, Enrollment.removed_at.is_(None))
    removed = 0
    for chunk in _chunks(sorted(person_ids)):
        removed += _soft_delete(
            connection,
            Person,
            and_(Person.integration_id == integration_id, one_of(connection, Person.id, chunk), ~has_enrollment),
            now,
        )
    return removed


def apply_changes(
    connection: Connection,
    integration_id: int,
    changes: ChangeBatch,
    *,
    now: datetime | None = None,
    ended_at: datetime | None = None,
) -> int:
    """Apply one change-feed page: upsert, replace memberships, soft-delete; idempotent. Returns rows written."""
    return apply_change_page(connection, integration_id, changes, now=now, ended_at=ended_at).written


@dataclass
class Tally:
    """What a change page soft-deleted at one moment, counted as it goes: the breaker's measure of the page.

    Counted from the statements' own results (row counts, the enrolments' person ids), so judging a
    page never counts over the whole integration (a ``removed_at`` has no index).
    """

    classes: int = 0
    enrollments: int = 0
    people: int = 0
    touched: set[int] = field(default_factory=set)

    @property
    def rows(self) -> int:
        return self.classes + self.enrollments + self.people

    def measure(self) -> Measure:
        return Measure(self.classes, self.enrollments, self.people, len(self.touched), 0, 0, 0)


@dataclass(frozen=True)
class PageResult:
    """Rows a change page wrote, what it soft-deleted at ``now`` and what it ended at ``ended_at``."""

    written: int
    removed: Measure
    ended: Measure


def apply_change_page(
    connection: Connection,
    integration_id: int,
    changes: ChangeBatch,
    *,
    now: datetime | None = None,
    ended_at: datetime | None = None,
) -> PageResult:
    """Apply one change-feed page at the cost of its rows, not of the integration; idempotent.

    The page's classes are read once as stored (store.membership): enrolments already stored as
    listed are not looked up or written again, and a replaced class's enrolments the page no longer
    lists are soft-deleted together. A class the provider said who joined and left (a settled
    ``MembershipDelta``) is read for those members only. People left with no enrolment go too; only the people this page
    took an enrolment from (or wrote) can be, so only they are looked at. Every row it soft-deletes
    carries ``now`` as ``removed_at`` and is counted in ``removed``; the classes the provider itself
    ended (``ended_classes``) go last, with ``ended_at``, counted in ``ended``, so the breaker can leave
    them out.
    """
    now = now or utcnow()
    changes, settled = membership.settle(connection, integration_id, changes)
    explained = ended_classes(changes)
    if explained:
        stated = set(explained)
        changes = replace(changes, deleted_classes=[c for c in changes.deleted_classes if c not in stated])
    removed, ended_tally = Tally(), Tally()
    written, touched = _upsert_page(connection, integration_id, changes, removed, now, settled)
    for chunk in _chunks(list(_class_ids(connection, integration_id, changes.deleted_classes).values())):
        removed.classes += _soft_delete(connection, SchoolClass, one_of(connection, SchoolClass.id, chunk), now)
        touched.update(_end_enrollments(connection, one_of(connection, Enrollment.class_id, chunk), now, removed))
    for chunk in _chunks(list(_person_ids(connection, integration_id, changes.deleted_people).values())):
        removed.people += _soft_delete(connection, Person, one_of(connection, Person.id, chunk), now)
        _end_enrollments(connection, one_of(connection, Enrollment.person_id, chunk), now, removed)
    removed.people += _remove_orphans(connection, integration_id, touched, now)
    written += removed.rows
    if explained:
        written += end_classes(connection, integration_id, explained, ended_at or now, ended_tally)
    return PageResult(written, removed.measure(), ended_tally.measure())


def _upsert_page(
    connection: Connection,
    integration_id: int,
    changes: ChangeBatch,
    removed: Tally,
    now: datetime,
    settled: membership.Stored,
) -> tuple[int, set[int]]:
    """Write the page's upserts that change something and end what its replaced classes no longer list.
    ``settled``: the delta classes' members ``membership.settle`` read, not read again.

    Returns rows written by the upserts and the people to look at for orphans: those who lost an
    enrolment here, and those the page wrote or named without an enrolment that landed.
    """
    upserts = changes.upserts
    stored = membership.read(
        connection,
        integration_id,
        [*changes.replaced_classes, *(e.class_external_id for e in upserts.enrollments)],
        changes.deltas,
        settled,
    )
    blocked = suppressions.suppressed(connection, integration_id, {e.pseudonym for e in upserts.enrollments})
    reduced, listed, kept_people = membership.unchanged(upserts, stored, blocked)
    written, _classes, seen, known = _write_batch(
        connection, integration_id, reduced, enrollments_new=True, hold_possible=True
    )
    holds.release_listed(connection, integration_id, set(), listed)
    seen |= listed
    enrolled = kept_people | {person_id for _, person_id in seen}
    members = {(e.role, e.pseudonym) for e in reduced.enrollments}
    # The batch's admitted members' ids as it wrote them; only the members it dropped (an ended class, an
    # erased person) are looked up.
    found: dict[PersonKey, int] = {key: known[key] for key in members if key in known}
    found |= _person_ids(connection, integration_id, members - set(found))
    touched = set(found.values())
    touched -= enrolled
    gone = [m for m in stored.members(changes.replaced_classes) if (m.class_id, m.person_id) not in seen]
    for chunk in _chunks([m.enrollment_id for m in gone]):
        touched.update(_end_enrollments(connection, one_of(connection, Enrollment.id, chunk), now, removed))
    return written, touched


def _end_enrollments(connection: Connection, condition: Any, now: datetime, tally: Tally) -> set[int]:
    """Soft-delete the current enrolments matching ``condition``, counted in ``tally``; their people's ids."""
    ended_people = list(
        connection.execute(
            update(Enrollment)
            .where(condition, Enrollment.removed_at.is_(None))
            .values(removed_at=now)
            .returning(Enrollment.person_id)
        ).scalars()
    )
    tally.enrollments += len(ended_people)
    tally.touched.update(ended_people)
    return set(ended_people)


def ended_classes(changes: ChangeBatch) -> list[str]:
    """External ids of the classes a change page says the school ended: stated deletions and ended states."""
    stated = changes.deleted_classes if changes.classes_deleted_by_provider else []
    return list(dict.fromkeys([*stated, *(c.external_id for c in changes.upserts.classes if ended(c.state))]))


def end_classes(
    connection: Connection,
    integration_id: int,
    external_ids: Sequence[str],
    now: datetime,
    tally: Tally | None = None,
) -> int:
    """Soft-delete these classes and their enrolments at ``now``; their members left with none go too."""
    tally = tally if tally is not None else Tally()
    touched: set[int] = set()
    for chunk in _chunks(list(_class_ids(connection, integration_id, external_ids).values())):
        tally.classes += _soft_delete(connection, SchoolClass, one_of(connection, SchoolClass.id, chunk), now)
        touched.update(_end_enrollments(connection, one_of(connection, Enrollment.class_id, chunk), now, tally))
    tally.people += _remove_orphans(connection, integration_id, touched, now)
    return tally.rows


@dataclass(frozen=True)
class Removals:
    """What a sweep would soft-delete, and how much of the integration that is (for the breaker).

    ``enrollments`` holds ``(enrolment id, class id, person id)``; ``people`` is how many current
    people would be left with no enrolment (and so be removed too), ``touched`` how many people lose
    at least one enrolment. ``active_*`` are the integration's current counts before the sweep.
    """

    classes: list[int]
    enrollments: list[tuple[int, int, int]]
    people: int
    touched: int
    active_classes: int
    active_people: int
    active_enrollments: int

    @property
    def empty(self) -> bool:
        return not self.classes and not self.enrollments and not self.people

    def measure(self) -> Measure:
        return Measure(
            classes=len(self.classes),
            enrollments=len(self.enrollments),
            people=self.people,
            touched=self.touched,
            active_classes=self.active_classes,
            active_enrollments=self.active_enrollments,
            active_people=self.active_people,
        )


@dataclass(frozen=True)
class Measure:
    """How much a removal takes, in counts, against the integration's current counts (what the breaker judges).

    Enrolments count on their own: students who all lose one of their two classes lose no class and
    leave no one without an enrolment, yet half of every roster is gone.
    """

    classes: int
    enrollments: int
    people: int
    touched: int
    active_classes: int
    active_enrollments: int
    active_people: int

    def shares(self) -> tuple[tuple[int, int], ...]:
        """``(removed, current)`` of classes, enrolments and people."""
        return (
            (self.classes, self.active_classes),
            (self.enrollments, self.active_enrollments),
            (self.people, self.active_people),
        )


def impact(
    connection: Connection,
    integration_id: int,
    gone_classes: Iterable[int],
    gone_enrollments: Iterable[tuple[int, int]],
) -> Removals:
    """The removals of these classes and ``(class id, person id)`` enrolments, with what they would do."""
    classes_gone, keys_gone = set(gone_classes), set(gone_enrollments)
    return _removals(
        connection,
        integration_id,
        _active_classes(connection, integration_id),
        classes_gone,
        lambda class_id, person_id: class_id in classes_gone or (class_id, person_id) in keys_gone,
    )


_ACTIVE_CLASSES = select(SchoolClass.id).where(
    SchoolClass.integration_id == bindparam("integration_id"), SchoolClass.removed_at.is_(None)
)
_CURRENT_CLASSES = select(SchoolClass.id, SchoolClass.state).where(
    SchoolClass.integration_id == bindparam("integration_id"), SchoolClass.removed_at.is_(None)
)
_CURRENT_ENROLLMENTS = select(Enrollment.id, Enrollment.class_id, Enrollment.person_id).where(
    Enrollment.integration_id == bindparam("integration_id"), Enrollment.removed_at.is_(None)
)
_CURRENT_PEOPLE = select(Person.id).where(
    Person.integration_id == bindparam("integration_id"), Person.removed_at.is_(None)
)
"""The sweep's reads, built once with the integration as a parameter: every sync sweeps, and building them (and
their cache keys) anew each time was a visible share of a teacher link's re-sync (BENCHMARKS.md, issue 22)."""


def _active_classes(connection: Connection, integration_id: int) -> set[int]:
    return set(connection.execute(_ACTIVE_CLASSES, {"integration_id": integration_id}).scalars())


def _removals(
    connection: Connection,
    integration_id: int,
    active_classes: set[int],
    gone_classes: set[int],
    goes: Callable[[int, int], bool],
) -> Removals:
    """One pass over the integration's current enrolments, each kept or gone by ``goes(class id, person id)``.

    The enrolments are read as a stream, not as a list: a district's hundreds of thousands of rows,
    held twice over, were the peak of a full sync's memory. What stays is a set of person ids.
    """
    enrollments = _read(connection, _CURRENT_ENROLLMENTS, integration_id)
    gone: list[tuple[int, int, int]] = []
    keeping: set[int] = set()
    active_enrollments = 0
    for enrollment_id, class_id, person_id in enrollments:
        active_enrollments += 1
        if goes(class_id, person_id):
            gone.append((enrollment_id, class_id, person_id))
        else:
            keeping.add(person_id)
    active_people = 0
    left_without: set[int] = set()
    for (person_id,) in _read(connection, _CURRENT_PEOPLE, integration_id):
        active_people += 1
        if person_id not in keeping:
            left_without.add(person_id)
    return Removals(
        classes=sorted(gone_classes & active_classes),
        enrollments=gone,
        people=len(left_without),
        touched=len({person_id for _, _, person_id in gone} | left_without),
        active_classes=len(active_classes),
        active_people=active_people,
        active_enrollments=active_enrollments,
    )


def _read(connection: Connection, statement: Select[*tuple[Any, ...]], integration_id: int) -> Iterable[Any]:
    """The rows of ``statement`` (of one integration): at most ``STREAMED``'s ``yield_per`` of them in one round
    trip, more as a stream.

    Why not always the stream: on PostgreSQL it is a server-side cursor (declare, describe, fetch, close),
    four round trips where a teacher's few hundred rows need one. A result larger than that is read again
    as the stream, so memory stays flat for a district.
    """
    small = int(STREAMED["yield_per"])
    parameters = {"integration_id": integration_id}
    rows = connection.execute(_limited(statement, small + 1), parameters).all()
    if len(rows) <= small:
        return rows
    return connection.execute(statement, parameters, execution_options=STREAMED)


@functools.cache
def _limited(statement: Select[*tuple[Any, ...]], limit: int) -> Select[*tuple[Any, ...]]:
    """``statement.limit(limit)``, built once for each of the sweep's reads (all built once, at import)."""
    return statement.limit(limit)


class SeenEnrollments:
    """The ``(class id, person id)`` keys a full listing saw, held until its sweep, one packed int each.

    A district's hundreds of thousands of keys as tuples of two ints were a full sync's largest
    structure after the page itself; a packed int takes under half the memory. Ids are 32-bit
    columns, so ``class id << 32 | person id`` is one-to-one.
    """

    def __init__(self) -> None:
        self._keys: set[int] = set()

    def update(self, keys: Iterable[tuple[int, int]]) -> None:
        self._keys.update(class_id << 32 | person_id for class_id, person_id in keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        class_id, person_id = key
        return (class_id << 32 | person_id) in self._keys


def current_classes(connection: Connection, integration_id: int) -> dict[int, str | None]:
    """The integration's current classes and their states: what ``plan_ended`` and ``plan_removals`` both start from."""
    found = connection.execute(_CURRENT_CLASSES, {"integration_id": integration_id}).all()
    return {class_id: state for class_id, state in found}


def plan_ended(
    connection: Connection, integration_id: int, current: dict[int, str | None] | None = None
) -> Removals | None:
    """The current classes whose stored state says the school ended them, with all their enrolments; None if none.

    ``current``: ``current_classes``, when the caller has read it already."""
    if current is None:
        gone = set(
            connection.execute(
                select(SchoolClass.id).where(
                    SchoolClass.integration_id == integration_id,
                    SchoolClass.removed_at.is_(None),
                    func.upper(SchoolClass.state).in_(sorted(ENDED_STATES)),
                )
            ).scalars()
        )
    else:
        gone = {class_id for class_id, state in current.items() if state is not None and ended(state)}
    if not gone:
        return None
    active = _active_classes(connection, integration_id)
    return _removals(connection, integration_id, active, gone, lambda class_id, _person_id: class_id in gone)


def split(
    connection: Connection,
    integration_id: int,
    plan: Removals,
    classes: Container[int],
    keys: Container[tuple[int, int]],
) -> tuple[Removals, Removals]:
    """``plan`` cut in two: what a hold of these classes and ``(class id, person id)`` keys names, and the rest."""
    held_classes = [class_id for class_id in plan.classes if class_id in classes]
    rest_classes = [class_id for class_id in plan.classes if class_id not in classes]
    held_keys: list[tuple[int, int]] = []
    rest_keys: list[tuple[int, int]] = []
    for _, class_id, person_id in plan.enrollments:
        named = class_id in classes or (class_id, person_id) in keys
        (held_keys if named else rest_keys).append((class_id, person_id))
    held = impact(connection, integration_id, held_classes, held_keys)
    return held, impact(connection, integration_id, rest_classes, rest_keys)


def plan_removals(
    connection: Connection,
    integration_id: int,
    seen_classes: set[int],
    seen_enrollments: Container[tuple[int, int]],
    incomplete_classes: set[int],
    *,
    sweep_classes: bool = True,
    active: set[int] | None = None,
) -> Removals:
    """What a complete listing did not see, without removing anything yet.

    Enrolments of a class whose roster could not be read in full are left alone, and so are classes
    (with their enrolments) when a class record of this run was malformed (``sweep_classes=False``).
    ``active``: the current class ids, when the caller has read them in this transaction.
    """
    active_classes = _active_classes(connection, integration_id) if active is None else active
    gone_classes = {class_id for class_id in active_classes if class_id not in seen_classes} if sweep_classes else set()

    def goes(class_id: int, person_id: int) -> bool:
        return class_id in gone_classes or (
            (class_id, person_id) not in seen_enrollments
            and class_id not in incomplete_classes
            and (sweep_classes or class_id in seen_classes)
        )

    return _removals(connection, integration_id, active_classes, gone_classes, goes)


def apply_removals(connection: Connection, integration_id: int, removals: Removals, *, probe: bool = True) -> int:
    """Soft-delete the planned classes and enrolments (those still current); people left with none go too
    (``probe``: how they are found, ``_remove_people_without_enrollment``)."""
    now = utcnow()
    removed = 0
    enrollment_ids = [enrollment_id for enrollment_id, _, _ in removals.enrollments]
    for model, ids in ((SchoolClass, removals.classes), (Enrollment, enrollment_ids)):
        for chunk in _chunks(ids):
            removed += _soft_delete(connection, model, one_of(connection, model.id, chunk), now)
    removed += _remove_people_without_enrollment(connection, integration_id, now, probe=probe)
    return removed


def purge(connection: Connection, integration_id: int) -> None:
    """Hard-delete every roster row that came through the integration; the feed gets one ``integration.purged``.

    The outbox triggers are paused for the integration meanwhile: a district's every enrolment as a
    ``member.removed``, written only to be forgotten by the purge, would cost as much as the purge itself.
    """
    outbox.pause(connection, [integration_id])
    for model in (HeldRemoval, RemovalHold, Enrollment, Person, SchoolClass):
        connection.execute(delete(model).where(model.integration_id == integration_id))
    outbox.unpause(connection, [integration_id])
    outbox.purged(connection, integration_id)


@dataclass(frozen=True)
class RosterCounts:
    classes: int
    teachers: int
    students: int


def counts(connection: Connection, integration_id: int) -> RosterCounts:
    """Current (not soft-deleted) classes, teachers and students of one integration."""
    classes = connection.execute(
        select(func.count()).where(SchoolClass.integration_id == integration_id, SchoolClass.removed_at.is_(None))
    ).scalar_one()
    by_role = dict(
        connection.execute(
            select(Person.role, func.count())
            .where(and_(Person.integration_id == integration_id, Person.removed_at.is_(None)))
            .group_by(Person.role)
        ).all()
    )
    return RosterCounts(classes=classes, teachers=by_role.get("teacher", 0), students=by_role.get("student", 0))
