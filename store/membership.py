"""A change page's classes as stored, read once, so the page writes only what it changes.

Why: a change feed names a class whole (a provider's section event carries every student of the
section), so a page that moves 1,000 students names some 26,000 enrolments. Looking each of them up
by pseudonym, and then every class's enrolments one class at a time, made a 1% change at 100,000
students cost seconds where writing its 3,001 rows costs milliseconds. One read of the classes'
current enrolments, joined with their people, tells which of the page's enrolments are already
stored exactly as listed; those are taken out of the batch (their keys still count as listed), and
the store's usual path writes the rest. The same read gives the enrolments a replaced class no
longer lists, set-based, instead of a query per class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, case, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from mappers.records import ChangeBatch, EnrollmentRecord, MembershipDelta, PersonRecord, RosterBatch
from store import holds
from store.db import one_of
from store.models import Enrollment, Person, SchoolClass

CHUNK = 500
"""Values a statement names on SQLite, where each is a parameter of an ``IN`` list."""
ARRAY_CHUNK = 5_000
"""Values a statement names on PostgreSQL, where they travel as one array (``store.db.one_of``). Why larger:
the planner reads the integration's enrolments (or people) whole for a few hundred classes as for a few
thousand (a hash join beat index look-ups at 100,000 students), so each extra statement of a page was one
more pass over the district; a 1% change at 100,000 students named 1,000 classes in 2 + 4 statements. Settle's
statements now look their rows up by key (``_counted_by_class``, ``_named_members``), and a large chunk still
saves round trips."""


def _chunk(connection: Connection) -> int:
    return ARRAY_CHUNK if connection.dialect.name == "postgresql" else CHUNK


PersonKey = tuple[str, str]
"""``(role, pseudonym)``: how a page names a person."""


@dataclass(frozen=True)
class Member:
    """One current enrolment of a stored class, with the person it names as stored."""

    enrollment_id: int
    class_id: int
    person_id: int
    role: str
    display_name: str | None
    email_address: str | None
    person_current: bool
    class_current: bool


@dataclass
class Stored:
    """The current enrolments of some classes: ``external id -> (role, pseudonym) -> Member``."""

    classes: dict[str, dict[PersonKey, Member]] = field(default_factory=dict)

    def members(self, external_ids: Iterable[str]) -> list[Member]:
        """Every current enrolment of these classes."""
        return [member for external_id in external_ids for member in self.classes.get(external_id, {}).values()]


def settle(connection: Connection, integration_id: int, batch: ChangeBatch) -> tuple[ChangeBatch, Stored]:
    """``batch`` with each class delta (``MembershipDelta``) kept only where the store holds what the provider
    had before it; every other one taken whole, so the class is replaced as it would be without the delta.
    Also what it read of the delta classes' members (who left, who joined), for ``read`` to reuse.

    A delta is kept when the class holds, as current enrolments of current people of the same role, exactly
    ``before`` members of each role, every member who left and none who joined. Nothing is kept while the
    integration has a held sweep (store.holds): its held enrolments are stored but no longer the provider's,
    and a class replaced whole ends them, as a delta would not. A few statements a page, whatever its size.
    """
    if not batch.deltas:
        return batch, Stored()
    if holds.of_integration(connection, integration_id) is not None:
        return batch.whole(), Stored()
    counts = _counts(connection, integration_id, sorted(batch.deltas))
    joined: dict[str, set[PersonKey]] = {external_id: set() for external_id in batch.deltas}
    for e in batch.upserts.enrollments:
        if e.class_external_id in joined:
            joined[e.class_external_id].add((e.role, e.pseudonym))
    named = {external_id: _named(delta) | joined[external_id] for external_id, delta in batch.deltas.items()}
    seen = _read_named(connection, integration_id, named)
    found = seen.classes
    keep = {
        external_id
        for external_id, delta in batch.deltas.items()
        if counts.get(external_id, {}) == {role: (n, n) for role, n in delta.before.items() if n}
        and _named(delta) <= found.get(external_id, {}).keys()
        and not joined[external_id] & found.get(external_id, {}).keys()
    }
    return batch.whole(keep), seen


def _counts(
    connection: Connection, integration_id: int, external_ids: list[str]
) -> dict[str, dict[str, tuple[int, int]]]:
    """``external id -> role -> (current enrolments, those whose person is current and of that role)`` of these
    classes while current; counted by the database, a row per class and role."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    size = _chunk(connection)
    counted = _counted
    if connection.dialect.name == "postgresql":
        counted = _counted_by_class
        connection.exec_driver_sql("SET LOCAL jit = off")  # this transaction only: see _counted_by_class
    for start in range(0, len(external_ids), size):
        query = counted(connection, integration_id, external_ids[start : start + size])
        for external_id, role, total, good in connection.execute(query):
            found.setdefault(external_id, {})[role] = (int(total), int(good or 0))
    return found


def _sound() -> ColumnElement[int]:
    """1 for an enrolment whose person is current and of the enrolment's role, else 0."""
    return case((and_(Person.removed_at.is_(None), Person.role == Enrollment.role), 1), else_=0)


def _counted(connection: Connection, integration_id: int, external_ids: list[str]) -> Select[*tuple[Any, ...]]:
    """``_counts`` as one join of the classes with their enrolments and people (SQLite: index look-ups already)."""
    return (
        select(SchoolClass.external_id, Enrollment.role, func.count(), func.sum(_sound()))
        .join(Enrollment, Enrollment.class_id == SchoolClass.id)
        .join(Person, Person.id == Enrollment.person_id)
        .where(
            SchoolClass.integration_id == integration_id,
            one_of(connection, SchoolClass.external_id, external_ids),
            SchoolClass.removed_at.is_(None),
            Enrollment.removed_at.is_(None),
        )
        .group_by(SchoolClass.external_id, Enrollment.role)
    )


def _counted_by_class(connection: Connection, integration_id: int, external_ids: list[str]) -> Select[*tuple[Any, ...]]:
    """``_counts`` on PostgreSQL: each class's enrolments counted apart (a ``LATERAL`` aggregate), by the
    enrolments' class index and the people's key. Why: as one join, the planner hashed every person of the
    district and read every enrolment to count a page's classes (BENCHMARKS.md, issue 22, item 3); an aggregate
    a class cannot be merged into such a join, so each class costs its own members.

    Its estimate (a key look-up a member, some 26,500 for a 1% change at 100,000 students) passes PostgreSQL's
    ``jit_above_cost``, and compiling it took about 9 ms of the statement's 45; so ``_counts`` turns JIT off
    for its transaction first (``SET LOCAL``: no plan changes, and no later transaction inherits it)."""
    per_role = (
        select(Enrollment.role, func.count().label("total"), func.sum(_sound()).label("good"))
        .join(Person, Person.id == Enrollment.person_id)
        .where(Enrollment.class_id == SchoolClass.id, Enrollment.removed_at.is_(None))
        .group_by(Enrollment.role)
        .lateral("per_role")
    )
    return (
        select(SchoolClass.external_id, per_role.c.role, per_role.c.total, per_role.c.good)
        .join(per_role, true())
        .where(
            SchoolClass.integration_id == integration_id,
            one_of(connection, SchoolClass.external_id, external_ids),
            SchoolClass.removed_at.is_(None),
        )
    )


def read(
    connection: Connection,
    integration_id: int,
    external_ids: Iterable[str],
    deltas: Mapping[str, MembershipDelta] | None = None,
    seen: Stored | None = None,
) -> Stored:
    """The current enrolments of these classes (by external id), with their people; a query per 500 classes.

    Of a class with a settled delta (``settle``) only the members it names (who left, who joined) are read:
    the others stay as they are, and reading them was most of a change page's cost. ``seen``: what ``settle``
    read of those members in the same transaction, taken instead of reading them again.
    """
    stored = Stored()
    deltas = deltas or {}
    wanted = sorted(set(external_ids))
    whole = [external_id for external_id in wanted if external_id not in deltas]
    size = _chunk(connection)
    for start in range(0, len(whole), size):
        _read_into(stored, connection, _members_of(connection, integration_id, whole[start : start + size]))
    chosen = set(wanted)
    named = {external_id: _named(delta) for external_id, delta in deltas.items() if external_id in chosen}
    if seen is None:
        return _read_named(connection, integration_id, named, stored)
    for external_id, keys in named.items():
        members = {key: member for key, member in seen.classes.get(external_id, {}).items() if key in keys}
        if members:
            stored.classes[external_id] = members
    return stored


def _read_named(
    connection: Connection, integration_id: int, named: Mapping[str, set[PersonKey]], stored: Stored | None = None
) -> Stored:
    """The current enrolments of these classes of the members each names, with their people."""
    stored = stored if stored is not None else Stored()
    for chunk in _named_chunks(named, _chunk(connection)):
        if connection.dialect.name == "postgresql":
            query = _named_members(connection, integration_id, chunk, named)
        else:
            query = _named_by_person(connection, integration_id, chunk, named)
        _read_into(stored, connection, query, named)
    return stored


def _named_by_person(
    connection: Connection, integration_id: int, chunk: list[str], named: Mapping[str, set[PersonKey]]
) -> Select[*tuple[Any, ...]]:
    """``_read_named`` on SQLite: the named people looked up by the people's unique key (integration, role,
    pseudonym), then their enrolments by person, each kept when its class is one of ``chunk`` (the same rows as
    ``_members_of`` filtered by pseudonym, once ``_read_into`` keeps only what each class names).

    Why: joined from the classes, SQLite read every current enrolment of the chunk's classes and its person
    (some 6,500 for 250 classes of a 1% change at 100,000 students) to keep the few hundred named; from the
    people it reads the named ones and their own enrolments. The class condition is written ``+ external_id``,
    SQLite's way of keeping a term from an index, so that the classes' key is not taken as the outer loop
    (which gave the join from the classes back); EXPLAIN QUERY PLAN in tests/features/test_sqlite_lists.py.
    """
    roles = sorted({role for external_id in chunk for role, _ in named[external_id]})
    pseudonyms = sorted({pseudonym for external_id in chunk for _, pseudonym in named[external_id]})
    column = SchoolClass.__table__.c.external_id
    external_id = UnaryExpression(column, operator=custom_op("+"), type_=column.type)
    return _members_of(connection, integration_id, chunk, class_key=external_id).where(
        Person.integration_id == integration_id,
        one_of(connection, Person.role, roles),
        one_of(connection, Person.pseudonym, pseudonyms),
    )


def _named_members(
    connection: Connection, integration_id: int, chunk: list[str], named: Mapping[str, set[PersonKey]]
) -> Select[*tuple[Any, ...]]:
    """``_read_named`` on PostgreSQL: each named ``(class, role, pseudonym)`` looked up by the unique keys of the
    people and the enrolments, one probe each (the same rows as ``_members_of`` filtered by pseudonym, once
    ``_read_into`` keeps only what each class names).

    Why: filtered by pseudonym, the planner hashed the named people and joined them with every enrolment of the
    district. The look-ups sit in ``LATERAL`` subqueries with ``OFFSET 0``, which PostgreSQL does not merge into
    the join, so they stay index probes whatever it estimates (a plain join was planned as a hash of every
    person again: BENCHMARKS.md, issue 22, item 3)."""
    triples = sorted((external_id, role, pseudonym) for external_id in chunk for role, pseudonym in named[external_id])
    columns = (SchoolClass.external_id, Person.role, Person.pseudonym)
    keys = (
        func.unnest(*(bindparam(None, [t[i] for t in triples], type_=ARRAY(c.type)) for i, c in enumerate(columns)))
        .table_valued("external_id", "role", "pseudonym")
        .render_derived(name="named")
    )
    person = (
        select(Person.id, Person.role, Person.pseudonym, Person.display_name, Person.email_address, Person.removed_at)
        .where(
            Person.integration_id == integration_id, Person.role == keys.c.role, Person.pseudonym == keys.c.pseudonym
        )
        .offset(0)
        .lateral("person")
    )
    enrolment = (
        select(Enrollment.id, Enrollment.class_id, Enrollment.person_id, Enrollment.role)
        .where(
            Enrollment.class_id == SchoolClass.id, Enrollment.person_id == person.c.id, Enrollment.removed_at.is_(None)
        )
        .offset(0)
        .lateral("enrolment")
    )
    return (
        select(
            SchoolClass.external_id,
            enrolment.c.id,
            enrolment.c.class_id,
            enrolment.c.person_id,
            enrolment.c.role,
            person.c.role,
            person.c.pseudonym,
            person.c.display_name,
            person.c.email_address,
            person.c.removed_at,
            SchoolClass.removed_at,
        )
        .select_from(keys)
        .join(
            SchoolClass,
            and_(SchoolClass.integration_id == integration_id, SchoolClass.external_id == keys.c.external_id),
        )
        .join(person, true())
        .join(enrolment, true())
        .where(one_of(connection, SchoolClass.external_id, chunk))
    )


def _members_of(
    connection: Connection,
    integration_id: int,
    external_ids: list[str],
    class_key: ColumnElement[str] | None = None,
) -> Select[*tuple[Any, ...]]:
    """The current enrolments of these classes with their people; ``class_key``: how the classes' external id is
    compared with ``external_ids`` (the column itself by default)."""
    return (
        select(
            SchoolClass.external_id,
            Enrollment.id,
            Enrollment.class_id,
            Enrollment.person_id,
            Enrollment.role,
            Person.role,
            Person.pseudonym,
            Person.display_name,
            Person.email_address,
            Person.removed_at,
            SchoolClass.removed_at,
        )
        .join(Enrollment, Enrollment.class_id == SchoolClass.id)
        .join(Person, Person.id == Enrollment.person_id)
        .where(
            SchoolClass.integration_id == integration_id,
            one_of(connection, SchoolClass.external_id if class_key is None else class_key, external_ids),
            Enrollment.removed_at.is_(None),
        )
    )


def _read_into(
    stored: Stored,
    connection: Connection,
    query: Select[*tuple[Any, ...]],
    named: Mapping[str, set[PersonKey]] | None = None,
) -> None:
    """The rows of ``query`` into ``stored``; with ``named``, only the members each class names."""
    for row in connection.execute(query):
        external_id, enrollment_id, class_id, person_id, role, person_role, pseudonym, name, email, *gone = row
        if named is not None and (person_role, pseudonym) not in named[external_id]:
            continue
        member = Member(enrollment_id, class_id, person_id, role, name, email, gone[0] is None, gone[1] is None)
        stored.classes.setdefault(external_id, {})[(person_role, pseudonym)] = member


def _named(delta: MembershipDelta) -> set[PersonKey]:
    return {(e.role, e.pseudonym) for e in delta.left}


def _named_chunks(named: Mapping[str, set[PersonKey]], size: int) -> Iterable[list[str]]:
    """The classes in groups whose named members together stay within a statement's ``size`` of values."""
    chunk: list[str] = []
    held = 0
    for external_id, keys in sorted(named.items()):
        if chunk and (held + len(keys) > size or len(chunk) >= size):
            yield chunk
            chunk, held = [], 0
        chunk.append(external_id)
        held += len(keys)
    if chunk:
        yield chunk


def unchanged(
    batch: RosterBatch, stored: Stored, blocked: set[str]
) -> tuple[RosterBatch, set[tuple[int, int]], set[int]]:
    """``batch`` without what the store already holds as listed; the ``(class id, person id)`` keys taken out,
    and the ids of the people they name (who keep a current enrolment).

    An enrolment goes when it is current with the same role, in a current class, and its person is
    current and not ``blocked`` (suppressed: the store's path drops those, and their stored enrolment with them). A
    person goes when every enrolment the page gives them went and their record would change nothing
    (a reference never does; a complete record when the stored name and email are the same).
    """
    kept: list[EnrollmentRecord] = []
    listed: set[tuple[int, int]] = set()
    members: dict[PersonKey, Member] = {}
    for e in batch.enrollments:
        member = stored.classes.get(e.class_external_id, {}).get((e.role, e.pseudonym))
        if member is None or e.pseudonym in blocked or not _current(member, e):
            kept.append(e)
            continue
        listed.add((member.class_id, member.person_id))
        members[(e.role, e.pseudonym)] = member
    still_named: set[PersonKey] = {(e.role, e.pseudonym) for e in kept}
    people = [p for p in batch.people if not _settled(p, members, still_named)]
    reduced = replace(batch, enrollments=kept, people=people)
    return reduced, listed, {member.person_id for member in members.values()}


def _current(member: Member, listed: EnrollmentRecord) -> bool:
    return member.person_current and member.class_current and member.role == listed.role


def _settled(person: PersonRecord, members: dict[PersonKey, Member], still_named: set[PersonKey]) -> bool:
    """Whether the page's record of this person writes nothing: all their enrolments are stored and so are they."""
    key = (person.role, person.pseudonym)
    member = members.get(key)
    if member is None or key in still_named:
        return False
    return not person.complete or (member.display_name, member.email_address) == (
        person.display_name,
        person.email_address,
    )
