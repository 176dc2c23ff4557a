"""A synthetic school district for the provider emulators.

Every emulator needs people and classes that look real enough to exercise a connector (distinct
names, e-mail addresses, co-teachers, students in two classes, an archived class) yet are plainly
fake and can be rebuilt from a seed. Names are drawn from short built-in lists of uncommon words so
that tests can grep databases and logs for them without false alarms. Nothing here is real.

The district is not thread-safe on its own: the emulator that owns it serialises access with its
own lock.
"""

from __future__ import annotations

import random
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

EMAIL_DOMAIN = "example-school.test"

GIVEN_NAMES: tuple[str, ...] = (
    "Quenby", "Ysolde", "Tamsin", "Oriel", "Perpetua", "Lysander", "Ignatius", "Marisol", "Evander",
    "Seraphine", "Thaddeus", "Ottoline", "Cosimo", "Rosalind", "Barnaby", "Isolde", "Leopold",
    "Wilhelmina", "Caspian", "Philippa", "Anselm", "Briallen", "Corisande", "Dagobert",
)  # fmt: skip

FAMILY_NAMES: tuple[str, ...] = (
    "Thistlewood", "Quarrington", "Fairweather", "Blackthorne", "Ashgrove", "Penhallow", "Wickersham",
    "Dunmore", "Holloway", "Marchbanks", "Greywell", "Ravenscroft", "Ellingham", "Brightwater",
    "Cloudesley", "Harrowgate", "Kingsley", "Loxley", "Montague", "Pemberton", "Oakenshaw", "Quillfeather",
)  # fmt: skip

SUBJECTS: tuple[str, ...] = (
    "Biology", "Algebra", "World History", "Chemistry", "Literature", "Geometry", "Physics",
    "Spanish", "Visual Art", "Music Theory", "Earth Science", "Civics",
)  # fmt: skip

ACTIVE = "ACTIVE"
ARCHIVED = "ARCHIVED"

_EPOCH = datetime(2025, 8, 18, 7, 0, 0, tzinfo=UTC)


@dataclass
class Person:
    """One synthetic pupil or teacher; names change on rename, the id never does."""

    id: str
    number: int
    given_name: str
    family_name: str
    nickname: str
    is_teacher: bool

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def email(self) -> str:
        return f"{self.given_name.lower()}.{self.family_name.lower()}.{self.number}@{EMAIL_DOMAIN}"


@dataclass
class Course:
    """One class; member maps are insertion-ordered user id -> enrolment sequence number.

    The sequence numbers are what paging cursors point at, so that adding or removing a member
    between two pages neither repeats nor skips anybody else.
    """

    id: str
    seq: int
    name: str
    section: str
    room: str
    state: str
    owner_id: str
    created: datetime
    updated: datetime
    enrollment_code: str
    teachers: dict[str, int] = field(default_factory=dict)
    students: dict[str, int] = field(default_factory=dict)


class District:
    """Deterministic roster: the same seed and the same sequence of changes give the same data."""

    def __init__(
        self, *, seed: int = 7, teachers: int = 3, courses_per_teacher: int = 2, students_per_course: int = 25
    ) -> None:
        if teachers < 0 or courses_per_teacher < 0 or students_per_course < 0:
            raise ValueError("district sizes must not be negative")
        self.rng = random.Random(seed)
        self.people: dict[str, Person] = {}
        self.courses: dict[str, Course] = {}
        self.teacher_ids: list[str] = []
        self._past_strings: set[str] = set()
        self._person_counter = 0
        self._course_counter = 0
        self._enrol_counter = 0
        self._build(teachers, courses_per_teacher, students_per_course)

    # ----------------------------------------------------------------------------------- building
    def _build(self, teachers: int, courses_per_teacher: int, students_per_course: int) -> None:
        self.teacher_ids = [self.new_person(is_teacher=True).id for _ in range(teachers)]
        plan: list[tuple[int, str]] = [
            (t, ACTIVE) for t in range(teachers) for _ in range(courses_per_teacher)
        ]
        if teachers:
            plan.insert(0, (0, ARCHIVED))  # created first, so it is the oldest
        shared_per_course = students_per_course // 5
        previous_new: list[str] = []
        for index, (owner_index, state) in enumerate(plan):
            owner = self.teacher_ids[owner_index]
            course = self.new_course(owner, state=state)
            if teachers > 1 and index % 2 == 1:
                self.enrol_teacher(course.id, self.teacher_ids[(owner_index + 1) % teachers])
            shared = previous_new[:shared_per_course]
            for student_id in shared:
                self.enrol_student(course.id, student_id)
            fresh = [self.new_person(is_teacher=False).id for _ in range(students_per_course - len(shared))]
            for student_id in fresh:
                self.enrol_student(course.id, student_id)
            previous_new = fresh

    def _new_id(self, digits: int, taken: Container[str]) -> str:
        while True:
            candidate = str(self.rng.randrange(10 ** (digits - 1), 10**digits))
            if candidate not in taken:
                return candidate

    def _names(self, number: int) -> tuple[str, str, str]:
        given = self.rng.choice(GIVEN_NAMES)
        family = self.rng.choice(FAMILY_NAMES)
        nickname = f"{given[:3]}{family[:4]}{number}"
        return given, family, nickname

    def new_person(self, *, is_teacher: bool) -> Person:
        self._person_counter += 1
        number = self._person_counter
        given, family, nickname = self._names(number)
        person = Person(self._new_id(21, self.people), number, given, family, nickname, is_teacher)
        self.people[person.id] = person
        return person

    def new_course(self, owner_id: str, *, state: str = ACTIVE) -> Course:
        self._course_counter += 1
        seq = self._course_counter
        subject = self.rng.choice(SUBJECTS)
        grade = self.rng.randrange(6, 13)
        created = _EPOCH + timedelta(days=seq, seconds=self.rng.randrange(0, 86_400), milliseconds=seq * 7)
        code_chars = "abcdefghijkmnpqrstuvwxyz23456789"
        course = Course(
            id=self._new_id(12, self.courses),
            seq=seq,
            name=f"{subject} {grade}{'ABCD'[seq % 4]}",
            section=f"Period {1 + seq % 7}",
            room=f"Room {100 + self.rng.randrange(0, 300)}",
            state=state,
            owner_id=owner_id,
            created=created,
            updated=created + timedelta(days=3, minutes=seq),
            enrollment_code="".join(self.rng.choice(code_chars) for _ in range(7)),
        )
        self.courses[course.id] = course
        self.enrol_teacher(course.id, owner_id)
        return course

    # ---------------------------------------------------------------------------------- mutations
    def _next_enrol(self) -> int:
        self._enrol_counter += 1
        return self._enrol_counter

    def enrol_teacher(self, course_id: str, user_id: str) -> None:
        course = self.courses[course_id]
        if user_id not in course.teachers:
            course.teachers[user_id] = self._next_enrol()

    def enrol_student(self, course_id: str, user_id: str) -> None:
        course = self.courses[course_id]
        if user_id not in course.students:
            course.students[user_id] = self._next_enrol()

    def unenrol_student(self, course_id: str, user_id: str) -> None:
        course = self.courses[course_id]
        if user_id not in course.students:
            raise KeyError(f"user {user_id} is not a student of course {course_id}")
        del course.students[user_id]

    def rename(self, user_id: str) -> Person:
        person = self.people[user_id]
        self._past_strings |= self.strings_of(person)
        old = (person.given_name, person.family_name)
        while True:
            given, family, nickname = self._names(person.number)
            if (given, family) != old:
                break
        person.given_name, person.family_name, person.nickname = given, family, nickname
        return person

    def name(self, user_id: str, given: str, family: str) -> Person:
        """Names chosen by the caller (hostile ones, say); the old ones stay in personal_strings."""
        person = self.people[user_id]
        self._past_strings |= self.strings_of(person)
        person.given_name, person.family_name = given, family
        return person

    # ------------------------------------------------------------------------------------ queries
    @staticmethod
    def strings_of(person: Person) -> set[str]:
        return {person.given_name, person.family_name, person.full_name, person.email, person.nickname}

    def personal_strings(self) -> set[str]:
        """Every name, e-mail and nickname any person has ever had (renames keep the old ones)."""
        strings = set(self._past_strings)
        for person in self.people.values():
            strings |= self.strings_of(person)
        return strings

    def find_person(self, key: str) -> Person | None:
        """Look a person up by id or (case-insensitive) e-mail address."""
        person = self.people.get(key)
        if person is not None:
            return person
        lowered = key.lower()
        return next((p for p in self.people.values() if p.email == lowered), None)
