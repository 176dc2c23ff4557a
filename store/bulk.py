"""A district's first sync at the speed of a bulk load: set-based writes from staging tables.

Why: a first sync writes hundreds of thousands of rows into an integration that holds none. The
ordinary path (store.roster.apply_batch) is built for re-syncs: it reads what the store holds of
every page, compares it in Python and upserts only what differs, a thousand rows a transaction;
that is what lets a no-change re-sync write nothing, but on an empty integration every read finds
nothing and every row goes through Python twice. Here a page's rows are bulk-loaded into staging
tables of this transaction (``COPY`` on PostgreSQL, one ``executemany`` on SQLite) and moved into
the roster tables by one ``INSERT .. SELECT .. ON CONFLICT`` per table: the database joins the
enrolments to their classes and people through the unique indexes, leaves suppressed (erased)
pseudonyms out, and fires the roster tables' triggers as any write does (no trigger is disabled: on
SQLite they are row triggers, and writing their events set-based instead was measured and saved
nothing, the cost being the events' own rows and indexes). Whether the tenant has any suppression is
read once a write, inside its fence; most have none, and their statements then test no row against
``suppressions`` (on SQLite that test was a third of the enrolments' statement at 100,000 students).

Exact only on an integration that held no roster row (live or removed) and no hold when the sync
began (``is_empty``): within a sync nothing is soft-deleted before its sweep, so no stored row is
removed, restored or ended while it writes, and the upserts below store what apply_batch would,
the same rows (tests/conformance/test_bulk_first_sync.py compares the tables). Every write is still
one fenced transaction of the sync's: a revoke that commits first fences the next one and its
purge takes what the earlier ones wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mappers.records import ENDED_STATES, PersonRecord, RosterBatch
from store.models import Base, Enrollment, Integration, Person, RemovalHold, SchoolClass, Suppression
from store.roster import NULL, Removals, apply_removals

_STAGING = MetaData()
STAGED_CLASSES = Table(
    "rostersync_bulk_classes",
    _STAGING,
    Column("external_id", Text),
    Column("name", Text),
    Column("section", Text),
    Column("state", Text),
)
STAGED_PEOPLE = Table(
    "rostersync_bulk_people",
    _STAGING,
    Column("role", Text),
    Column("pseudonym", Text),
    Column("display_name", Text),
    Column("email_address", Text),
    Column("complete", Boolean),
    Column("member", Boolean),  # an enrolment of the page names them
)
STAGED_ENROLLMENTS = Table(
    "rostersync_bulk_enrollments",
    _STAGING,
    Column("class_external_id", Text),
    Column("role", Text),
    Column("pseudonym", Text),
)
STAGED = (STAGED_CLASSES, STAGED_PEOPLE, STAGED_ENROLLMENTS)

COUNTED = {"preserve_rowcount": True}
"""An INSERT .. SELECT's rowcount (rows inserted or updated) is kept: it is the sync's rows written."""
INTEGRATION = bindparam("bulk_integration_id", type_=BigInteger)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def is_empty(connection: Connection, integration_id: int) -> bool:
    """No class, person or enrolment of the integration is stored, live or removed, and no hold stands."""
    for model in (SchoolClass, Person, Enrollment, RemovalHold):
        table = _table(model)
        if connection.execute(select(exists().where(table.c.integration_id == integration_id))).scalar():
            return False
    return True


def _create_staging(connection: Connection) -> None:
    """This transaction's staging tables: dropped at commit on PostgreSQL, emptied and reused on SQLite."""
    postgres = connection.dialect.name == "postgresql"
    for table in STAGED:
        columns = ", ".join(f"{c.name} {'boolean' if isinstance(c.type, Boolean) else 'text'}" for c in table.columns)
        if postgres:
            connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {table.name} ({columns}) ON COMMIT DROP")
        else:
            connection.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table.name} ({columns})")
            connection.exec_driver_sql(f"DELETE FROM temp.{table.name}")  # noqa: S608 - our staging tables


def _stage(connection: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-load rows into a staging table: ``COPY`` on PostgreSQL, one ``executemany`` on SQLite."""
    if not rows:
        return
    raw: Any = connection.connection.driver_connection
    columns = ", ".join(c.name for c in table.columns)
    if connection.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # A temporary table has no statistics until analysed: the joins below are planned on the real counts.
        connection.exec_driver_sql(f"ANALYZE {table.name}")
    else:
        marks = ", ".join("?" for _ in table.columns)
        raw.executemany(f"INSERT INTO temp.{table.name} ({columns}) VALUES ({marks})", rows)  # noqa: S608 - staging


def _staged_rows(batch: RosterBatch) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The page as staging rows: a class, person (the complete record over a reference) or enrolment once."""
    classes = {c.external_id: (c.external_id, c.name, c.section, c.state) for c in batch.classes}
    enrollments = dict.fromkeys((e.class_external_id, e.role, e.pseudonym) for e in batch.enrollments)
    members = {(role, pseudonym) for _, role, pseudonym in enrollments}
    people: dict[tuple[str, str], PersonRecord] = {}
    for p in batch.people:
        key = (p.role, p.pseudonym)
        if key not in people or (p.complete and not people[key].complete):
            people[key] = p
    staged_people = [
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
    return list(classes.values()), staged_people, list(enrollments)


def apply_batch(connection: Connection, integration_id: int, batch: RosterBatch) -> tuple[int, dict[str, int]]:
    """Write one page of a first sync set-based; returns rows written and ``external_id -> class id`` of its
    classes that are not ended (as store.roster.apply_batch does, whose rules these statements follow)."""
    classes, people, enrollments = _staged_rows(batch)
    _create_staging(connection)
    for table, rows in zip(STAGED, (classes, people, enrollments), strict=True):
        _stage(connection, table, rows)
    statements = _statements(connection.dialect.name, _any_suppressed(connection, integration_id))
    parameters = {"bulk_integration_id": integration_id}
    written = 0
    for statement in statements:
        written += int(connection.execute(statement, parameters, execution_options=COUNTED).rowcount)
    own = connection.execute(_own_classes(), parameters).all()
    return written, {external_id: class_id for external_id, class_id in own}


def _any_suppressed(connection: Connection, integration_id: int) -> bool:
    """Whether the integration's provider and tenant have any suppressed (erased) pseudonym.

    Read inside the write's fenced transaction, which holds the integration's row: an erase takes that
    row first (store.outbox, lock order), so none lands between this read and the statements. Most
    tenants have none, and their statements then test no row against ``suppressions``.
    """
    found = select(
        exists().where(
            Integration.id == integration_id,
            Suppression.provider == Integration.provider,
            Suppression.tenant == Integration.tenant,
        )
    )
    return bool(connection.execute(found).scalar())


def _not_suppressed(pseudonym: Any, screen: bool) -> Any:
    """The pseudonym is not suppressed in the integration's provider and tenant (store.suppressions);
    always true when the tenant has no suppression (``screen`` False)."""
    if not screen:
        return true()
    return ~exists().where(
        Integration.id == INTEGRATION,
        Suppression.provider == Integration.provider,
        Suppression.tenant == Integration.tenant,
        Suppression.pseudonym == pseudonym,
    )


def _ended(state: Any) -> Any:
    return func.upper(state).in_(sorted(ENDED_STATES))


@functools.cache
def _statements(dialect: str, screen: bool) -> tuple[Any, ...]:
    """Classes, people (complete, references, people known only), enrolments: built once per dialect, and with
    or without the suppression test (``_not_suppressed``)."""
    return (
        _classes(dialect),
        _people(dialect, screen),
        _references(dialect, screen),
        _known(screen),
        _enrollments(dialect, screen),
    )


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _classes(dialect: str) -> Any:
    """Every class of the page, but an ended one that is not stored live (it is never stored ended)."""
    table, staged = _table(SchoolClass), STAGED_CLASSES
    live = exists().where(
        table.c.integration_id == INTEGRATION, table.c.external_id == staged.c.external_id, table.c.removed_at.is_(None)
    )
    source = select(INTEGRATION, staged.c.external_id, staged.c.name, staged.c.section, staged.c.state).where(
        or_(~_ended(staged.c.state), live)
    )
    columns = ["integration_id", "external_id", "name", "section", "state"]
    statement = _insert(dialect)(table).from_select(columns, source)
    values = ("name", "section", "state")
    return statement.on_conflict_do_update(
        index_elements=["integration_id", "external_id"],
        set_={name: statement.excluded[name] for name in values} | {"removed_at": NULL},
        where=or_(
            table.c.removed_at.is_not(None), *(table.c[n].is_distinct_from(statement.excluded[n]) for n in values)
        ),
    )


def _people(dialect: str, screen: bool) -> Any:
    """Complete records of members: inserted, or their fields refreshed (and restored) where they differ."""
    table, staged = _table(Person), STAGED_PEOPLE
    source = select(
        INTEGRATION, staged.c.role, staged.c.pseudonym, staged.c.display_name, staged.c.email_address
    ).where(staged.c.member, staged.c.complete, _not_suppressed(staged.c.pseudonym, screen))
    columns = ["integration_id", "role", "pseudonym", "display_name", "email_address"]
    statement = _insert(dialect)(table).from_select(columns, source)
    values = ("display_name", "email_address")
    return statement.on_conflict_do_update(
        index_elements=["integration_id", "role", "pseudonym"],
        set_={name: statement.excluded[name] for name in values} | {"removed_at": NULL},
        where=or_(
            table.c.removed_at.is_not(None), *(table.c[n].is_distinct_from(statement.excluded[n]) for n in values)
        ),
    )


def _references(dialect: str, screen: bool) -> Any:
    """Members known by reference only: inserted if missing, restored if removed, their fields never touched."""
    table, staged = _table(Person), STAGED_PEOPLE
    source = select(INTEGRATION, staged.c.role, staged.c.pseudonym).where(
        staged.c.member, ~staged.c.complete, _not_suppressed(staged.c.pseudonym, screen)
    )
    statement = _insert(dialect)(table).from_select(["integration_id", "role", "pseudonym"], source)
    return statement.on_conflict_do_update(
        index_elements=["integration_id", "role", "pseudonym"],
        set_={"removed_at": NULL},
        where=table.c.removed_at.is_not(None),
    )


def _known(screen: bool) -> Any:
    """People no enrolment of the page names: their stored rows' fields refreshed; never inserted or restored."""
    table, staged = _table(Person), STAGED_PEOPLE
    return (
        update(table)
        .values(display_name=staged.c.display_name, email_address=staged.c.email_address)
        .where(
            table.c.integration_id == INTEGRATION,
            table.c.role == staged.c.role,
            table.c.pseudonym == staged.c.pseudonym,
            ~staged.c.member,
            staged.c.complete,
            _not_suppressed(staged.c.pseudonym, screen),
            or_(
                table.c.display_name.is_distinct_from(staged.c.display_name),
                table.c.email_address.is_distinct_from(staged.c.email_address),
            ),
        )
    )


def _enrollments(dialect: str, screen: bool) -> Any:
    """Every enrolment whose class and person are stored, the class not removed as ended, the person not
    suppressed; joined through the unique indexes."""
    table, staged = _table(Enrollment), STAGED_ENROLLMENTS
    classes, people = _table(SchoolClass), _table(Person)
    joined = staged.join(
        classes, and_(classes.c.integration_id == INTEGRATION, classes.c.external_id == staged.c.class_external_id)
    ).join(
        people,
        and_(
            people.c.integration_id == INTEGRATION,
            people.c.role == staged.c.role,
            people.c.pseudonym == staged.c.pseudonym,
        ),
    )
    source = (
        select(INTEGRATION, classes.c.id, people.c.id, staged.c.role)
        .select_from(joined)
        .where(
            _not_suppressed(staged.c.pseudonym, screen),
            ~and_(classes.c.removed_at.is_not(None), _ended(classes.c.state)),
        )
    )
    statement = _insert(dialect)(table).from_select(["integration_id", "class_id", "person_id", "role"], source)
    return statement.on_conflict_do_update(
        index_elements=["class_id", "person_id"],
        set_={"role": statement.excluded.role, "removed_at": NULL},
        where=or_(table.c.removed_at.is_not(None), table.c.role.is_distinct_from(statement.excluded.role)),
    )


@functools.cache
def _own_classes() -> Any:
    """The page's classes as stored, but those it lists as ended: what the listing reads members of."""
    classes, staged = _table(SchoolClass), STAGED_CLASSES
    return (
        select(staged.c.external_id, classes.c.id)
        .join(classes, and_(classes.c.integration_id == INTEGRATION, classes.c.external_id == staged.c.external_id))
        .where(~_ended(staged.c.state))
    )


def sweep(connection: Connection, integration_id: int) -> int:
    """A first sync's sweep: its listing saw every row it stored, so nothing is unseen and the breaker has
    nothing to judge; as after any sweep, people the listing stored with no enrolment go (store.roster)."""
    return apply_removals(connection, integration_id, Removals([], [], 0, 0, 0, 0, 0))


def analyze(connection: Connection) -> None:
    """Fresh planner statistics once a first sync has loaded the district (PostgreSQL; see store.statistics)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ANALYZE classes, people, enrollments")
