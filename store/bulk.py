"""A district's first sync at the speed of a bulk load: rows written straight into their tables.

Why: a first sync writes hundreds of thousands of rows into an integration that holds none. The
ordinary path (store.roster.apply_batch) is built for re-syncs: it reads what the store holds of
every page, compares it in Python and upserts only what differs, a thousand rows a transaction;
that is what lets a no-change re-sync write nothing, but on an empty integration every read finds
nothing. Here the sync itself is the only writer of the integration's roster (it holds the lease,
and the integration held nothing when it began), so what it has stored is known without reading:
``FirstSync`` keeps, for this run, every class and person it wrote with its id (ids taken from the
sequences on PostgreSQL, after the table's largest on SQLite, inside the write's transaction). A page's new
rows then go straight into their tables, ``COPY`` on PostgreSQL (a few, a teacher's, as one ``INSERT ..
SELECT FROM unnest``: one round trip, not two) and one ``INSERT .. SELECT`` on SQLite, with no staging
table, no join and no ``ON CONFLICT`` arbitration; only a row that this run already wrote and that the page
lists with other fields is updated (one statement a table). The change feed's events are written in the same
transaction by the roster tables' triggers, as for any write (on PostgreSQL statement triggers with
transition tables fire for ``COPY`` too), except, on SQLite, those of the new classes and enrolments: this
write tells them itself, one statement over the rows it has just inserted, while their row triggers are
paused for the integration (store.bulk_events).

Exact only on an integration that held no roster row (live or removed) and no hold when the sync
began (``is_empty``): within a sync nothing is soft-deleted before its sweep, so no stored row is
removed, restored or ended while it writes, and the rules below (those of store.roster.apply_batch)
store the same rows and tell the same events (tests/conformance/test_bulk_first_sync.py compares
them). Suppressed (erased) pseudonyms are read once a write, inside its fence, and left out; an
erase during the sync is such a suppression, so the person it deleted is never named again. Every
write is still one fenced transaction of the sync's: a revoke that commits first fences the next
one and its purge takes what the earlier ones wrote; what a write stored joins ``FirstSync`` only
once its transaction has committed.
"""

# ruff: noqa: S608  (table and column names are this module's constants; values go as parameters or COPY rows)
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, Table, exists, select

from mappers.records import PersonRecord, RosterBatch, ended
from store import bulk_events, statistics
from store.db import WROTE
from store.models import Base, Enrollment, Integration, Person, RemovalHold, SchoolClass, Suppression
from store.roster import Removals, apply_removals

ClassRow = tuple[str, str, str | None, str]
"""A class as a page lists it: external id, name, section, state."""
PersonRow = tuple[str, str, str | None, str | None, bool, bool]
"""A person as a page lists them: role, pseudonym, display name, email, complete, named by an enrolment."""
StoredPerson = int | tuple[int, str | None, str | None]
"""A stored person's id, with their display name and email when either is set (a student has neither)."""

CLASS_COLUMNS = ("id", "integration_id", "external_id", "name", "section", "state")
PERSON_COLUMNS = ("id", "integration_id", "role", "pseudonym", "display_name", "email_address")
ENROLLMENT_COLUMNS = ("integration_id", "class_id", "person_id", "role")
UNIQUE_VIOLATION = "23505"
"""PostgreSQL's SQLSTATE for a duplicate key (the driver's error carries it as ``sqlstate``)."""


def _key(pseudonym: str) -> bytes | str:
    """A pseudonym as ``FirstSync`` keeps it: its 32 bytes when it is lowercase hex (HMAC-SHA256, as
    mappers.policy writes it), half the memory of the string; any other pseudonym as it is."""
    try:
        packed = bytes.fromhex(pseudonym)
    except ValueError:
        return pseudonym
    return packed if packed.hex() == pseudonym else pseudonym


@dataclass
class FirstSync:
    """What this first sync has stored so far: each class (id and fields) and person (id, and fields if any).

    About 130 bytes a person: a 100,000-student district keeps about 15 MB for the run.
    """

    classes: dict[str, tuple[int, str, str | None, str]] = field(default_factory=dict)
    people: dict[str, dict[bytes | str, StoredPerson]] = field(default_factory=dict)

    def person_id(self, role: str, pseudonym: str, written: FirstSync) -> int | None:
        """The person's id, stored by an earlier write or by this one (``written``); None if not stored."""
        key = _key(pseudonym)
        found = written.people.get(role, {}).get(key)
        found = self.people.get(role, {}).get(key) if found is None else found
        return None if found is None else _id(found)

    def merge(self, written: FirstSync) -> None:
        """Take in what a write stored, once its transaction has committed."""
        self.classes.update(written.classes)
        for role, people in written.people.items():
            self.people.setdefault(role, {}).update(people)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _id(stored: StoredPerson) -> int:
    return stored if isinstance(stored, int) else stored[0]


def _fields(stored: StoredPerson) -> tuple[str | None, str | None]:
    return (None, None) if isinstance(stored, int) else (stored[1], stored[2])


def is_empty(connection: Connection, integration_id: int) -> bool:
    """No class, person or enrolment of the integration is stored, live or removed, and no hold stands."""
    for model in (SchoolClass, Person, Enrollment, RemovalHold):
        table = _table(model)
        if connection.execute(select(exists().where(table.c.integration_id == integration_id))).scalar():
            return False
    return True


PageRows = tuple[list[ClassRow], list[PersonRow], list[tuple[str, str, str]]]
"""A page's classes, people and enrolments (class external id, role, pseudonym), each once (``page_rows``)."""


def page_rows(batch: RosterBatch) -> PageRows:
    """The page's classes, people (the complete record over a reference) and enrolments, each once."""
    classes = {c.external_id: (c.external_id, c.name, c.section, c.state) for c in batch.classes}
    enrollments = dict.fromkeys((e.class_external_id, e.role, e.pseudonym) for e in batch.enrollments)
    members = {(role, pseudonym) for _, role, pseudonym in enrollments}
    people: dict[tuple[str, str], PersonRecord] = {}
    for p in batch.people:
        key = (p.role, p.pseudonym)
        if key not in people or (p.complete and not people[key].complete):
            people[key] = p
    listed: list[PersonRow] = [
        (
            p.role,
            p.pseudonym,
            p.display_name if p.complete else None,
            p.email_address if p.complete else None,
            p.complete,
            key in members,
        )
        for key, p in people.items()
    ]
    # By pseudonym, the unique index's order within a role: a page's random keys inserted in order meet each
    # index page once; SQLite took a sixth less CPU for the same people (measured). A string key sorts in C.
    listed.sort(key=itemgetter(1))
    return list(classes.values()), listed, list(enrollments)


Tail = Callable[[], int]
"""The rest of a page's write once its new people's rows are sent (PostgreSQL): their ``COPY`` ended (when they
went by ``COPY``), the people it updates, the enrolments; returns the rows it wrote."""


def apply_batch(
    connection: Connection, integration_id: int, batch: RosterBatch, stored: FirstSync
) -> tuple[int, dict[str, int], FirstSync]:
    """Write one page of a first sync; returns rows written, ``external_id -> class id`` of its classes
    that are not ended (as store.roster.apply_batch does), and what it stored, for ``stored.merge`` once
    the transaction has committed."""
    count, own, written, tail = begin_batch(connection, integration_id, page_rows(batch), stored)
    return count + tail(), own, written


def begin_batch(
    connection: Connection, integration_id: int, page: PageRows, stored: FirstSync
) -> tuple[int, dict[str, int], FirstSync, Tail]:
    """``apply_batch`` of a page's rows (``page_rows``) up to the server's heavy work: on PostgreSQL ``Tail`` writes
    the rest (the new people's ``COPY`` ended when they were many enough to go by ``COPY``, updated people, the
    enrolments, whose key checks and outbox trigger are most of a page's server time), so the caller may map
    its next page while the server works (sync.listing): the tail has little Python in it (the enrolments'
    rows are built here). It must run, in this transaction, before it commits. Returns rows written so far,
    the classes and what was stored, as ``apply_batch``."""
    classes, people, enrollments = page
    written = FirstSync()
    new_classes = _plan_classes(classes, stored, written)
    candidates = _new_people(people, stored)
    taken = _take_ids(connection, integration_id, len(new_classes), candidates, bool(people or enrollments))
    count = _write_classes(connection, integration_id, new_classes, taken.classes, written)
    people_count, person_ids, rest = _write_people(
        connection, integration_id, people, candidates, taken, stored, written
    )
    count += people_count
    class_ids = {key: row[0] for key, row in (stored.classes | written.classes).items()}
    # ids this write took, each table's apart (two sequences): no enrolment stored before names them
    fresh_classes, fresh_people = set(taken.classes), set(taken.people)
    rows, may_exist = [], False
    for class_key, role, pseudonym in enrollments:
        # the page's own people by their page key; one it names only in an enrolment, in what is stored
        person_id = person_ids.get((role, pseudonym))
        if person_id is None:
            person_id = stored.person_id(role, pseudonym, written)
        if class_key in class_ids and person_id is not None and pseudonym not in taken.suppressed:
            class_id = class_ids[class_key]
            rows.append((integration_id, class_id, person_id, role))
            may_exist = may_exist or (class_id not in fresh_classes and person_id not in fresh_people)
    own = {key: class_ids[key] for key, _, _, state in classes if not ended(state) and key in class_ids}

    def tail() -> int:
        return rest() + _insert_enrollments(connection, integration_id, rows, may_exist=may_exist)

    if rest is _NOTHING:  # SQLite: written in turn
        return count + tail(), own, written, _NOTHING
    return count, own, written, tail


def _nothing() -> int:
    return 0


_NOTHING: Tail = _nothing


@dataclass
class _Taken:
    """What a write reads and takes before it writes: the tenant's suppressed pseudonyms and the new rows' ids
    (``people`` is for ``_new_people``'s candidates, those not suppressed; ``people_final`` says whether they
    were taken with the suppressions known)."""

    suppressed: frozenset[str]
    classes: list[int]
    people: list[int]
    people_final: bool


_TAKE = (
    "WITH sup AS MATERIALIZED (SELECT array_agg(suppressions.pseudonym) AS names FROM suppressions"
    " JOIN integrations ON suppressions.provider = integrations.provider AND suppressions.tenant = integrations.tenant"
    " WHERE integrations.id = %s::bigint AND %s::boolean),"
    " cs AS MATERIALIZED (SELECT pg_get_serial_sequence('classes', 'id')::regclass AS seq),"
    " ps AS MATERIALIZED (SELECT pg_get_serial_sequence('people', 'id')::regclass AS seq)"
    " SELECT sup.names,"
    " (SELECT array_agg(nextval(cs.seq)) FROM cs, generate_series(1, %s::int)),"
    " (SELECT array_agg(nextval(ps.seq)) FROM ps,"
    " generate_series(1, CASE WHEN sup.names IS NULL THEN %s::int ELSE 0 END))"
    " FROM sup"
)
"""On PostgreSQL, one statement for the suppressions and both tables' ids: the new people's ids are taken here
only when the tenant has no suppression (most have none); else once the candidates are filtered (``_allocate``)."""


def _take_ids(
    connection: Connection, integration_id: int, classes: int, candidates: Sequence[NewPerson], read: bool
) -> _Taken:
    """The suppressions (read only when the page lists people or enrolments) and the new classes' ids, and the
    new people's where they do not depend on the suppressions: one round trip on PostgreSQL instead of three.

    The suppressions are read inside the write's fenced transaction, which holds the integration's row: an
    erase takes that row first (store.outbox, lock order), so none lands between this read and the write.
    """
    if connection.dialect.name != "postgresql" or not (classes or candidates or read):
        suppressed = _suppressed(connection, integration_id) if read else frozenset()
        return _Taken(suppressed, _allocate(connection, "classes", classes), [], False)
    names, class_ids, person_ids = connection.exec_driver_sql(
        _TAKE, (integration_id, read, classes, len(candidates))
    ).one()
    suppressed = frozenset(names or ())
    return _Taken(suppressed, list(class_ids or ()), list(person_ids or ()), not suppressed)


def _suppressed(connection: Connection, integration_id: int) -> frozenset[str]:
    """The suppressed (erased) pseudonyms of the integration's provider and tenant (store.suppressions), read
    inside the write's fenced transaction (``_take_ids``). Most tenants have none."""
    found = select(Suppression.pseudonym).where(
        Integration.id == integration_id,
        Suppression.provider == Integration.provider,
        Suppression.tenant == Integration.tenant,
    )
    return frozenset(connection.execute(found).scalars())


def _plan_classes(classes: Sequence[ClassRow], stored: FirstSync, written: FirstSync) -> list[ClassRow]:
    """The page's classes not stored yet and not ended (never stored ended), to insert; one stored with other
    fields goes into ``written`` with its id, to update (ended too: it ends at the sweep)."""
    new = []
    for key, name, section, state in classes:
        known = stored.classes.get(key)
        if known is None and not ended(state):
            new.append((key, name, section, state))
        elif known is not None and known[1:] != (name, section, state):
            written.classes[key] = (known[0], name, section, state)
    return new


def _write_classes(
    connection: Connection, integration_id: int, new: Sequence[ClassRow], ids: Sequence[int], written: FirstSync
) -> int:
    """The new classes inserted with their ids (``_take_ids``), and the changed ones ``_plan_classes`` put in
    ``written`` updated."""
    changed = list(written.classes.values())  # so far only the changed ones
    for class_id, (key, name, section, state) in zip(ids, new, strict=True):
        written.classes[key] = (class_id, name, section, state)
    rows = [(class_id, integration_id, *row) for class_id, row in zip(ids, new, strict=True)]
    return _copy_told(connection, integration_id, "classes", rows) + _update(
        connection, "classes", ("name", "section", "state"), changed
    )


NewPerson = tuple[str, str, bytes | str, str | None, str | None]
"""A member to insert: role, pseudonym, its ``FirstSync`` key, display name, email."""


def _new_people(people: Sequence[PersonRow], stored: FirstSync) -> list[NewPerson]:
    """The page's members not stored yet, in the page's order (a person no enrolment names is never inserted),
    whatever the suppressions: ``_write_people`` leaves the suppressed out."""
    return [
        (role, pseudonym, key, display_name, email)
        for role, pseudonym, display_name, email, _complete, member in people
        if member and stored.people.get(role, _NONE).get(key := _key(pseudonym)) is None
    ]


def _write_people(
    connection: Connection,
    integration_id: int,
    people: Sequence[PersonRow],
    candidates: Sequence[NewPerson],
    taken: _Taken,
    stored: FirstSync,
    written: FirstSync,
) -> tuple[int, dict[tuple[str, str], int], Tail]:
    """A member not stored yet is inserted (a reference with no fields); a stored person whose complete
    record has other fields is updated; a reference never overwrites, and a suppressed pseudonym is left out.
    Returns rows written, the id of each of the page's people that is stored, by ``(role, pseudonym)`` (the
    page's enrolments look them up there, with no ``_key``), and on PostgreSQL the rest of the write (``Tail``:
    the new people's ``COPY`` ended, when they go by ``COPY``, then the updates; ``_NOTHING`` on SQLite)."""
    changed, ids = [], {}
    suppressed = taken.suppressed
    for role, pseudonym, display_name, email, complete, _member in people:
        if pseudonym in suppressed:
            continue
        known = stored.people.get(role, _NONE).get(key := _key(pseudonym))
        if known is None:
            continue
        ids[(role, pseudonym)] = person_id = _id(known)
        if complete and _fields(known) != (display_name, email):
            changed.append((person_id, display_name, email))
            written.people.setdefault(role, {})[key] = (person_id, display_name, email)
    new = [person for person in candidates if person[1] not in suppressed]
    allocated = taken.people if taken.people_final else _allocate(connection, "people", len(new))
    rows = []
    for person_id, (role, pseudonym, key, display_name, email) in zip(allocated, new, strict=True):
        plain = display_name is None and email is None
        written.people.setdefault(role, {})[key] = person_id if plain else (person_id, display_name, email)
        ids[(role, pseudonym)] = person_id
        rows.append((person_id, integration_id, role, pseudonym, display_name, email))
    if not taken.people_final:
        taken.people = allocated
    if connection.dialect.name != "postgresql":
        count = _copy(connection, "people", PERSON_COLUMNS, rows)
        return count + _update(connection, "people", ("display_name", "email_address"), changed), ids, _NOTHING
    # many rows by COPY, left open for the tail to end; a few (a teacher's) as one INSERT from arrays, now
    finish = _copy_begun(connection, "people", PERSON_COLUMNS, rows) if len(rows) >= COPY_FROM else None
    count = len(rows) if finish is not None else _copy(connection, "people", PERSON_COLUMNS, rows)

    def end() -> int:  # the people's COPY ended, then their updates (in this order, as in turn)
        if finish is not None:
            finish()
        return _update(connection, "people", ("display_name", "email_address"), changed)

    return count, ids, end


_NONE: dict[bytes | str, StoredPerson] = {}
"""No one stored in a role (read only)."""


def _raw(connection: Connection) -> Any:
    return connection.connection.driver_connection


def _allocate(connection: Connection, table: str, count: int) -> list[int]:
    """``count`` new ids for the table: from its sequence on PostgreSQL; after its largest on SQLite, whose
    write lock this transaction holds (and whose roster tables keep plain rowids).

    The sequence is looked up once (the materialized ``s``), not once an id: ``nextval`` of the name as text
    resolved it in the catalogue for every row, nine tenths of this statement's server time (6,000 ids: about
    35 ms against 4 ms, measured in psql)."""
    if count == 0:
        return []
    if connection.dialect.name == "postgresql":
        taken = connection.exec_driver_sql(
            f"WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('{table}', 'id')::regclass AS seq)"
            f" SELECT array_agg(nextval(s.seq)) FROM s, generate_series(1, {count:d})"
        )
        return list(taken.scalar_one())
    largest = int(connection.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one())
    return list(range(largest + 1, largest + 1 + count))


def _copy(connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
    """Rows into a roster table at once: ``COPY`` on PostgreSQL; on SQLite one ``INSERT .. SELECT`` from the
    rows as one JSON array (``json_each``), because one statement a row (``executemany``) pays a statement's
    overhead and its journal for every row that fires the outbox's triggers: 2.5x the CPU (measured)."""
    if not rows:
        return 0
    names = ", ".join(columns)
    if connection.dialect.name == "postgresql":
        if len(rows) < COPY_FROM:
            _insert_arrays(connection, table, columns, rows)
        else:
            with _raw(connection).cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        connection.info[WROTE] = True  # unseen by SQLAlchemy's events: the fence must commit it (store.fence)
        return len(rows)
    verb = "INSERT OR IGNORE" if table == "enrollments" else "INSERT"
    values = ", ".join(f"value ->> {index}" for index in range(len(columns)))
    inserted = _raw(connection).execute(
        f"{verb} INTO {table} ({names}) SELECT {values} FROM json_each(?)", (json.dumps(rows),)
    )
    return int(inserted.rowcount)


COPY_FROM = 1_000
"""Rows from which PostgreSQL gets them by ``COPY``; fewer go as one ``INSERT .. SELECT FROM unnest(..)``."""

_ID_COLUMNS = frozenset({"id", "integration_id", "class_id", "person_id"})


def _insert_arrays(connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """A few rows (a teacher's page) as one ``INSERT .. SELECT FROM unnest(..)``: one round trip where ``COPY``
    takes two (its start, then the rows with its end), the same rows in the same order (the enrolments' ids
    from their sequence row by row as ``COPY`` takes them), the same statement trigger and its events. Sent on
    the driver's connection, as ``COPY`` is, so a duplicate key raises the driver's error (``sqlstate``)."""
    arrays = ", ".join(f"%s::{'bigint' if name in _ID_COLUMNS else 'text'}[]" for name in columns)
    _raw(connection).execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})",
        [list(column) for column in zip(*rows, strict=True)],
    )


def _copy_begun(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> Callable[[], None]:
    """``COPY`` of the rows into a PostgreSQL table, every row sent; the returned call ends it and waits for the
    server's end of the statement (its rows' foreign-key checks and statement triggers)."""
    names = ", ".join(columns)
    with ExitStack() as stack:
        cursor = stack.enter_context(_raw(connection).cursor())
        copy = stack.enter_context(cursor.copy(f"COPY {table} ({names}) FROM STDIN"))
        for row in rows:
            copy.write_row(row)
        connection.info[WROTE] = True  # unseen by SQLAlchemy's events: the fence must commit it (store.fence)
        return stack.pop_all().close
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the with block returns or raises)


class _Duplicate(Exception):
    """The page's enrolments meet one already stored (SQLite's ``INSERT OR IGNORE`` left a row out)."""


def _copy_told(connection: Connection, integration_id: int, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """``_copy`` of new classes or enrolments, whose events the write tells itself (store.bulk_events) while
    the table's insert trigger is paused for the integration; raises ``_Duplicate`` if a row was left out.

    The new rows take the ids after the table's largest (classes: given so by ``_allocate``; enrolments:
    SQLite's own rowids, the largest plus one for each row inserted, under this transaction's write lock).
    """
    if not rows:
        return 0
    columns = CLASS_COLUMNS if table == "classes" else ENROLLMENT_COLUMNS
    if not bulk_events.pause_insert_trigger(connection, integration_id, table):  # no outbox (a bench's copy)
        return _copy(connection, table, columns, rows)
    first_id = _allocate(connection, table, 1)[0]
    if _copy(connection, table, columns, rows) != len(rows):
        raise _Duplicate
    bulk_events.write(connection, table, first_id, len(rows))
    bulk_events.unpause(connection, integration_id)
    return len(rows)


def _insert_enrollments(
    connection: Connection, integration_id: int, rows: Sequence[tuple[Any, ...]], *, may_exist: bool
) -> int:
    """The page's enrolments; one an earlier page of this sync already stored is left as it is (the same
    person has the same role, and nothing is removed before the sweep). Written at once, their events told
    by ``_copy_told``, that write taken to a savepoint: when it meets such a row it is taken back (the
    trigger's pause with it) and the page written with ``ON CONFLICT DO NOTHING`` (``INSERT OR IGNORE`` on
    SQLite), whose rows' events the trigger tells. On PostgreSQL the savepoint (two round trips) is sent only
    where a row may already be stored (``may_exist``: its class and its person were both stored by an earlier
    write): a row naming an id this write took from a sequence cannot be, as no id is taken twice. A teacher's
    first sync, whose classes and people are all one write's, sends none. SQLite's ids (after the largest)
    are not such a proof, and its savepoint costs no round trip: it keeps it."""
    if not rows:
        return 0
    if not may_exist and connection.dialect.name == "postgresql":
        return _copy_told(connection, integration_id, "enrollments", rows)
    connection.exec_driver_sql("SAVEPOINT bulk_enrollments")
    try:
        copied = _copy_told(connection, integration_id, "enrollments", rows)
    except Exception as error:
        if not isinstance(error, _Duplicate) and getattr(error, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT bulk_enrollments")
        connection.exec_driver_sql("RELEASE SAVEPOINT bulk_enrollments")
        return _insert_ignoring(connection, rows)
    connection.exec_driver_sql("RELEASE SAVEPOINT bulk_enrollments")
    return copied


def _insert_ignoring(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Enrolments, leaving out those stored already; the outbox's trigger tells the events of the rest."""
    if connection.dialect.name != "postgresql":
        return _copy(connection, "enrollments", ENROLLMENT_COLUMNS, rows)  # INSERT OR IGNORE
    names = ", ".join(ENROLLMENT_COLUMNS)
    columns = [list(column) for column in zip(*rows, strict=True)]
    inserted = connection.exec_driver_sql(
        f"INSERT INTO enrollments ({names}) SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[],"
        " %s::text[]) ON CONFLICT (class_id, person_id) DO NOTHING",
        tuple(columns),
    )
    return int(inserted.rowcount)


def _update(connection: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> int:
    """Rows this sync stored earlier, their fields set again (and restored, as an upsert would): rows are
    ``(id, *values)``; one statement on PostgreSQL, whose triggers fire per statement."""
    rows = list(rows)
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        arrays = ", ".join(["%s::bigint[]", *("%s::text[]" for _ in columns)])
        assigned = ", ".join(f"{name} = u.{name}" for name in columns)
        names = ", ".join(("id", *columns))
        result = connection.exec_driver_sql(
            f"UPDATE {table} SET {assigned}, removed_at = NULL FROM unnest({arrays}) AS u({names})"
            f" WHERE {table}.id = u.id",
            tuple(list(column) for column in zip(*rows, strict=True)),
        )
        return int(result.rowcount)
    assigned = ", ".join(f"{name} = ?" for name in columns)
    cursor = _raw(connection).executemany(
        f"UPDATE {table} SET {assigned}, removed_at = NULL WHERE id = ?",
        [(*values, row_id) for row_id, *values in rows],
    )
    return int(cursor.rowcount)


def sweep(connection: Connection, integration_id: int) -> int:
    """A first sync's sweep: its listing saw every row it stored, so nothing is unseen and the breaker has
    nothing to judge; as after any sweep, people the listing stored with no enrolment go (store.roster)."""
    return apply_removals(connection, integration_id, Removals([], [], 0, 0, 0, 0, 0), probe=False)


def analyze(connection: Connection, rows_written: int) -> None:
    """Fresh planner statistics once a first sync has loaded the district, where the tables' growth calls for
    them (PostgreSQL; store.statistics.refresh)."""
    if connection.dialect.name == "postgresql":
        statistics.refresh(connection, rows_written)
