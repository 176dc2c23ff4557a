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

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, select

from mappers.records import EnrollmentRecord, PersonRecord, RosterBatch
from store.models import Enrollment, Person, SchoolClass

CHUNK = 500

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


def read(connection: Connection, integration_id: int, external_ids: Iterable[str]) -> Stored:
    """The current enrolments of these classes (by external id), with their people; a query per 500 classes."""
    stored = Stored()
    wanted = sorted(set(external_ids))
    for start in range(0, len(wanted), CHUNK):
        query = (
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
                SchoolClass.external_id.in_(wanted[start : start + CHUNK]),
                Enrollment.removed_at.is_(None),
            )
        )
        for row in connection.execute(query):
            external_id, enrollment_id, class_id, person_id, role, person_role, pseudonym, name, email, *gone = row
            member = Member(enrollment_id, class_id, person_id, role, name, email, gone[0] is None, gone[1] is None)
            stored.classes.setdefault(external_id, {})[(person_role, pseudonym)] = member
    return stored


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
