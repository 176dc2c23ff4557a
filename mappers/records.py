"""The canonical records the store accepts. They hold only what the allowlist lets through."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

Role = Literal["student", "teacher"]
ROLES: tuple[Role, ...] = ("student", "teacher")

ENDED_STATES = frozenset({"ARCHIVED", "EXPIRED"})
"""Class states that say the school ended the class (a Google course archived at the year's end, a
School Data Sync class expired): the store ends such a class with its enrolments, with no hold
(store.breaker, "explained" removals), and restores it if it comes back in another state."""


def ended(state: str) -> bool:
    """Whether a class in this state was ended by the school (see ``ENDED_STATES``)."""
    return state.upper() in ENDED_STATES


class RawPage(Protocol):
    """The shape of a connector's page as a mapper reads it (mappers never import the connectors)."""

    @property
    def kind(self) -> str: ...

    @property
    def parent_id(self) -> str | None: ...

    @property
    def records(self) -> Sequence[Any]: ...


@dataclass(frozen=True)
class ClassRecord:
    external_id: str
    name: str
    section: str | None
    state: str


@dataclass(frozen=True)
class PersonRecord:
    """A student carries its pseudonym only; a teacher may carry a display name and email.

    ``complete=False`` marks a mere reference (Clever names a section's teachers by id only): the
    store inserts it if missing and restores it if soft-deleted, but never overwrites a stored name
    or email with its empty fields.
    """

    role: Role
    pseudonym: str
    display_name: str | None = None
    email_address: str | None = None
    complete: bool = True


@dataclass(frozen=True)
class EnrollmentRecord:
    class_external_id: str
    pseudonym: str
    role: Role


@dataclass
class RosterBatch:
    """Classes, people and enrolments from one raw page (of any provider), plus how many raw records were skipped.

    A person no enrolment of the batch names (e.g. a page of a district's teachers) only updates a
    row already stored: people enter the roster as members of a class, never on their own.
    """

    classes: list[ClassRecord] = field(default_factory=list)
    people: list[PersonRecord] = field(default_factory=list)
    enrollments: list[EnrollmentRecord] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True)
class Reappeared:
    """A person a change feed says is (back) at the provider with an id it deleted before.

    ``subject`` is the provider's own id, the allowlisted ``subject``: it is kept in memory only, for the
    worker to ask the provider for this person's classes, and is never stored, logged or shown.
    """

    role: Role
    pseudonym: str
    subject: str

    def __repr__(self) -> str:  # the provider id stays out of any log line or traceback
        return f"Reappeared(role={self.role!r}, pseudonym={self.pseudonym[:8]!r}...)"


@dataclass(frozen=True)
class MembershipDelta:
    """What a provider says changed in one replaced class's membership, besides the class whole (on demand).

    A provider's "updated" event may carry a class's members before it (Clever's ``previous_attributes``).
    When the store holds exactly that many members of each role (``before``), holds every member that
    ``left`` and none of those who joined, it ends ``left`` and writes the joined members (the page's
    ``upserts`` of this class) without looking at the members who stayed, and without their pseudonyms
    being computed. Otherwise it takes ``whole()``, the class's members in full, and replaces the class
    as before (store.membership.settle).
    """

    class_external_id: str
    before: dict[Role, int]
    left: list[EnrollmentRecord]
    whole: Callable[[], RosterBatch] = field(repr=False, compare=False)  # holds provider ids: never printed


@dataclass
class ChangeBatch:
    """What one page of a change feed asks of the store; applying it twice changes nothing.

    ``replaced_classes`` (external ids) are classes whose whole membership is ``upserts``' enrolments
    of them: any other stored enrolment of theirs is soft-deleted. ``deleted_people`` are
    ``(role, pseudonym)`` pairs. ``reappeared`` are people the feed says were created: those the store
    holds as removed get their classes re-read before the page is applied (``sync.reappeared``).

    ``classes_deleted_by_provider``: every one of ``deleted_classes`` is the provider's own word that
    the class ended (a Clever ``sections.deleted`` event), the school's decision: the store ends those
    classes with no hold. Classes ending in an ``ENDED_STATES`` state among ``upserts`` are ended too.

    ``deltas``: replaced classes (by external id) whose ``upserts`` hold only the members who joined, with
    what the provider said changed (``MembershipDelta``); the store settles each against what it holds.
    """

    upserts: RosterBatch = field(default_factory=RosterBatch)
    replaced_classes: list[str] = field(default_factory=list)
    deleted_classes: list[str] = field(default_factory=list)
    deleted_people: list[tuple[Role, str]] = field(default_factory=list)
    ignored: int = 0
    reappeared: list[Reappeared] = field(default_factory=list)
    classes_deleted_by_provider: bool = False
    deltas: dict[str, MembershipDelta] = field(default_factory=dict)

    def whole(self, keep: Container[str] = ()) -> ChangeBatch:
        """This page with every delta but those in ``keep`` taken whole: the class's ``upserts`` are then all its
        members (``MembershipDelta.whole``), so the store replaces it as it would without the delta."""
        taken = [delta for external_id, delta in self.deltas.items() if external_id not in keep]
        if not taken:
            return self
        ids = {delta.class_external_id for delta in taken}
        upserts = replace(
            self.upserts,
            people=list(self.upserts.people),
            enrollments=[e for e in self.upserts.enrollments if e.class_external_id not in ids],
        )
        for delta in taken:
            whole = delta.whole()
            upserts.enrollments += whole.enrollments
            upserts.people += whole.people
        deltas = {external_id: delta for external_id, delta in self.deltas.items() if external_id in keep}
        return replace(self, upserts=upserts, deltas=deltas)
