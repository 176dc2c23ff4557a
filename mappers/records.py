"""The canonical records the store accepts. They hold only what the allowlist lets through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

Role = Literal["student", "teacher"]
ROLES: tuple[Role, ...] = ("student", "teacher")


@dataclass(frozen=True)
class ClassRecord:
    external_id: str
    name: str
    section: str | None
    state: str


@dataclass(frozen=True)
class PersonRecord:
    """A student carries its pseudonym only; a teacher may carry a display name and email."""

    role: Role
    pseudonym: str
    display_name: str | None = None
    email_address: str | None = None


@dataclass(frozen=True)
class EnrollmentRecord:
    class_external_id: str
    pseudonym: str
    role: Role


RecordT = TypeVar("RecordT")


@dataclass
class MappedBatch(Generic[RecordT]):
    """One page's worth of records plus how many raw records broke the schema and were skipped."""

    records: list[RecordT] = field(default_factory=list)
    skipped: int = 0


@dataclass
class MembersBatch:
    people: list[PersonRecord] = field(default_factory=list)
    enrollments: list[EnrollmentRecord] = field(default_factory=list)
    skipped: int = 0


@dataclass
class RosterBatch:
    """Classes, people and enrolments from one page of a provider whose classes carry their members
    (Clever's sections list ``students[]`` and ``teachers[]``), plus how many raw records were skipped."""

    classes: list[ClassRecord] = field(default_factory=list)
    people: list[PersonRecord] = field(default_factory=list)
    enrollments: list[EnrollmentRecord] = field(default_factory=list)
    skipped: int = 0
