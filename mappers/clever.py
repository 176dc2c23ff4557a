"""Clever payloads (v3.0 and v3.1 alike) -> canonical records, through the allowlist in ``mappers.policy``.

Clever returns whole records and offers no field selection, so minimisation here is twofold:
the allowlist projection below, and the choice of what to ask for at all. A section's
``students[]`` ids are all a student pseudonym needs, so ``user_records_needed("student")`` is
False (derived from the allowlist, not stated) and no student record is ever requested; of a
student's ``users.*`` event only the id is read, through the same allowlist (to archive a deleted
student and restore one whose id reappears), and ``users.updated`` of a student is dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from mappers.policy import FieldRule, MappingContext, Pseudonymiser, project, rules_for
from mappers.records import (
    ChangeBatch,
    ClassRecord,
    EnrollmentRecord,
    MembershipDelta,
    PersonRecord,
    RawPage,
    Reappeared,
    Role,
    RosterBatch,
)
from mappers.text import display, identifier, identifiers

PROVIDER = "clever"

# Clever v3.0 and v3.1 alike (providers.md 2.4). A section carries its enrolments as user ids;
# ``student_ids``/``teacher_ids`` are read only to be pseudonymised. Nothing else of a student is
# read: not name, email, dob, demographics, address, usernames, ``ext`` or any v3.1 status.
ALLOWLIST: dict[str, tuple[FieldRule, ...]] = {
    "class": (
        FieldRule("external_id", ("id",)),
        FieldRule("name", ("name",)),
        FieldRule("section", ("period",)),
        FieldRule("section_number", ("section_number",)),
        FieldRule("student_ids", ("students",)),
        FieldRule("teacher_ids", ("teachers",)),
    ),
    "teacher": (
        FieldRule("subject", ("id",)),
        FieldRule("given_name", ("name", "first")),
        FieldRule("family_name", ("name", "last")),
        FieldRule("email_address", ("email",)),
    ),
    "student": (FieldRule("subject", ("id",)),),
}
ACTIVE = "ACTIVE"
"""Clever sections have no state: a shared section is active, an unshared one is gone (404)."""


def field_mask(role: str, granted_scopes: frozenset[str]) -> str:
    """Clever has no ``fields``/``$select``: the mask is empty and minimisation is by endpoint choice."""
    rules_for(ALLOWLIST, role, granted_scopes)  # an unknown role fails here, as for the other providers
    return ""


def user_records_needed(role: Role) -> bool:
    """Whether the allowlist keeps anything of this role beyond the id a section already lists.

    False for students: the worker must never request student records.
    """
    return any(rule.canonical != "subject" for rule in rules_for(ALLOWLIST, role, frozenset()))


def _ids(value: Any) -> list[str] | None:
    """A list of Clever ids, or None when the payload breaks the definition (not a list of usable ids).

    Checked as one string, not id by id: an events page carries some 100,000 ids (issue 22).
    """
    if value is None:
        return []
    if not isinstance(value, list) or not identifiers(value):
        return None
    return list(dict.fromkeys(value))


def _is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether ``value`` is a JSON object (any mapping). A decoded page's objects are dicts, told by their type at
    once: the ABC check behind ``isinstance(value, Mapping)`` is a Python call, and an events page makes some
    30,000 of them."""
    return type(value) is dict or isinstance(value, Mapping)


def _pseudonym(context: MappingContext, subject: str) -> str:
    return context.pseudonymiser.pseudonym(PROVIDER, context.tenant, subject)


# ------------------------------------------------------------------------------------------ people
def map_teacher(raw: Any, context: MappingContext) -> PersonRecord | None:
    """One teacher user record -> a named PersonRecord; None when it breaks the definition."""
    if not isinstance(raw, Mapping):
        return None
    fields = project(raw, rules_for(ALLOWLIST, "teacher", context.granted_scopes))
    subject = identifier(fields["subject"])
    if subject is None:
        return None
    parts = [part for part in (display(fields["given_name"]), display(fields["family_name"])) if part]
    return PersonRecord(
        role="teacher",
        pseudonym=_pseudonym(context, subject),
        display_name=" ".join(parts) or None,
        email_address=display(fields["email_address"]),
    )


def map_teachers(raw_records: Sequence[Any], context: MappingContext) -> tuple[dict[str, PersonRecord], int]:
    """A page of teacher users -> {pseudonym: record} (what ``map_sections`` names teachers by), skipped count."""
    teachers: dict[str, PersonRecord] = {}
    skipped = 0
    for raw in raw_records:
        record = map_teacher(raw, context)
        if record is None:
            skipped += 1
            continue
        teachers[record.pseudonym] = record
    return teachers, skipped


# ----------------------------------------------------------------------------------------- classes
@dataclass(frozen=True)
class _Section:
    """One section as read and checked, its members still Clever ids: pseudonymised only if it is kept."""

    klass: ClassRecord
    teacher_ids: list[str]
    student_ids: list[str]


def _section(raw: Any, rules: tuple[FieldRule, ...]) -> _Section | None:
    """A section record through the allowlist; None when it misses its id or name, or its member lists are
    not lists of ids."""
    fields = project(raw, rules) if _is_object(raw) else {}
    external_id, name = identifier(fields.get("external_id")), display(fields.get("name"))
    student_ids, teacher_ids = _ids(fields.get("student_ids")), _ids(fields.get("teacher_ids"))
    if external_id is None or name is None or student_ids is None or teacher_ids is None:
        return None
    section = display(fields.get("section")) or display(fields.get("section_number"))
    return _Section(ClassRecord(external_id, name, section, ACTIVE), teacher_ids, student_ids)


class _Pseudonyms(dict[str, str]):
    """Pseudonyms of one page's subjects, each computed once: a student in two sections costs one HMAC."""

    def __init__(self, context: MappingContext) -> None:
        super().__init__()
        self._context = context

    def __missing__(self, subject: str) -> str:
        pseudonym = self[subject] = _pseudonym(self._context, subject)
        return pseudonym


def _add_section(
    batch: RosterBatch,
    section: _Section,
    pseudonyms: Mapping[str, str],
    known: Mapping[str, PersonRecord],
    seen: set[tuple[str, str]],
) -> None:
    """The section's class, enrolments and people (each person once per ``seen``) into ``batch``."""
    external_id = section.klass.external_id
    batch.classes.append(section.klass)
    members: list[PersonRecord] = []
    for subject in section.teacher_ids:
        pseudonym = pseudonyms[subject]
        members.append(known.get(pseudonym) or PersonRecord(role="teacher", pseudonym=pseudonym, complete=False))
    members += [PersonRecord(role="student", pseudonym=pseudonyms[subject]) for subject in section.student_ids]
    for person in members:
        batch.enrollments.append(EnrollmentRecord(external_id, person.pseudonym, person.role))
        if (person.pseudonym, person.role) not in seen:
            seen.add((person.pseudonym, person.role))
            batch.people.append(person)


def map_sections(
    raw_records: Sequence[Any],
    context: MappingContext,
    teachers: Mapping[str, PersonRecord] | None = None,
) -> RosterBatch:
    """A page of sections -> classes, people and enrolments.

    Students come out as pseudonyms only. A teacher is the named record from ``teachers`` (from
    ``map_teachers``) when known, else a nameless reference (``complete=False``) that the store
    never lets overwrite a name it holds. A section missing its id or name, or whose
    member lists are not lists of ids, is skipped and counted.
    """
    batch = RosterBatch()
    known = teachers or {}
    seen: set[tuple[str, str]] = set()
    rules = rules_for(ALLOWLIST, "class", context.granted_scopes)
    pseudonyms = _Pseudonyms(context)
    for raw in raw_records:
        section = _section(raw, rules)
        if section is None:
            batch.skipped += 1
            continue
        _add_section(batch, section, pseudonyms, known, seen)
    return batch


# ------------------------------------------------------------------------------------------ events
@dataclass
class EventChange:
    """What one Clever event asks of the store; applying it twice must change nothing.

    A ``sections.created``/``updated`` event carries the whole section: its class and enrolments
    in ``upserts`` replace what is stored for that class. ``*.deleted`` names what to soft-delete.
    A ``users.created`` names a person who may be back with an id Clever deleted before
    (``reappeared``): Clever's certification asks to "restore records if the Clever ID reappears".
    """

    upserts: RosterBatch = field(default_factory=RosterBatch)
    deleted_classes: list[str] = field(default_factory=list)
    deleted_people: list[tuple[Role, str]] = field(default_factory=list)
    reappeared: list[Reappeared] = field(default_factory=list)
    ignored: bool = False


def _role_of(raw: Mapping[str, Any]) -> Role | None:
    """Only the role keys are looked at, never a value; a user of any other role is not ours (None)."""
    roles = raw.get("roles")
    if not isinstance(roles, Mapping):
        return None
    if "teacher" in roles:
        return "teacher"
    return "student" if "student" in roles else None


def _map_section_event(record: Mapping[str, Any], action: str, context: MappingContext) -> EventChange:
    change = EventChange()
    if action != "deleted":
        change.upserts = map_sections([record], context)
        return change
    external_id = identifier(project(record, rules_for(ALLOWLIST, "class", context.granted_scopes))["external_id"])
    if external_id is None:
        change.upserts.skipped = 1
    else:
        change.deleted_classes.append(external_id)
    return change


def _map_user_event(record: Mapping[str, Any], action: str, context: MappingContext) -> EventChange:
    """A teacher's record names them; of a student's only the id is read, through the allowlist (the same id
    a section lists), to archive them when deleted and re-read their sections when they come back."""
    change = EventChange()
    role = _role_of(record)
    if role is None or (role == "student" and action == "updated"):
        change.ignored = True  # nothing of a student's record is kept beyond the id their sections list
        return change
    subject = identifier(project(record, rules_for(ALLOWLIST, role, context.granted_scopes))["subject"])
    teacher = map_teacher(record, context) if role == "teacher" else None
    if subject is None or (role == "teacher" and teacher is None):
        change.upserts.skipped = 1
        return change
    pseudonym = _pseudonym(context, subject)
    if action == "deleted":
        change.deleted_people.append((role, pseudonym))
        return change
    if teacher is not None:
        change.upserts.people.append(teacher)
    if action == "created":
        change.reappeared.append(Reappeared(role, pseudonym, subject))
    return change


def map_event(raw: Any, context: MappingContext) -> EventChange:
    """One event -> an EventChange. Events of other record types are ignored; a broken one is skipped."""
    change = EventChange()
    if not _is_object(raw) or not isinstance(raw.get("type"), str):
        change.upserts.skipped = 1
        return change
    record_type, _, action = str(raw["type"]).partition(".")
    data = raw.get("data")
    record = data.get("object") if _is_object(data) else None
    if record_type not in ("sections", "users"):
        change.ignored = True
        return change
    if not _is_object(record) or action not in ("created", "updated", "deleted"):
        change.upserts.skipped = 1
        return change
    if record_type == "sections":
        return _map_section_event(record, action, context)
    return _map_user_event(record, action, context)


# ------------------------------------------------------------------------------- the generic entries
def map_page(page: RawPage, context: MappingContext) -> RosterBatch:
    """One page of a full listing: ``sections`` (classes with their members) or ``teachers`` (names)."""
    if page.kind == "sections":
        return map_sections(page.records, context)
    teachers, skipped = map_teachers(page.records, context)
    return RosterBatch(people=list(teachers.values()), skipped=skipped)


Members = tuple[list[str], list[str]]
"""A section's ``(teacher ids, student ids)``."""


def _previous(
    previous: Any, rules: Mapping[str, FieldRule], section: _Section, pending: _Section | None
) -> Members | None:
    """The section's members before its ``sections.updated``, by ``previous_attributes`` ("the changed fields'
    old values", providers.md 2.5): a member list it does not name did not change. None when the event
    carries no ``previous_attributes``, or a list there breaks the definition.

    ``rules``: the class rules by canonical name. ``pending``: the page's earlier event of this section, if any.
    A list equal to that event's list (checked, without repeats) needs no check of its own: it is that list. A
    section that moves twice in a page has two events, and the second one's "before" is the first one's "after".
    """
    if not _is_object(previous):
        return None
    lists: list[list[str]] = []
    for canonical, now, earlier in (
        ("teacher_ids", section.teacher_ids, pending.teacher_ids if pending is not None else None),
        ("student_ids", section.student_ids, pending.student_ids if pending is not None else None),
    ):
        rule = rules.get(canonical)
        if rule is None:
            return None
        if not _names(previous, rule.path):
            lists.append(now)
            continue
        raw = project(previous, (rule,))[canonical]
        old = earlier if earlier is not None and type(raw) is list and raw == earlier else _ids(raw)
        if old is None:
            return None
        lists.append(old)
    return lists[0], lists[1]


def _names(raw: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Whether ``raw`` holds a value (even null) at ``path``."""
    value: Any = raw
    for key in path[:-1]:
        value = value.get(key) if _is_object(value) else None
    return _is_object(value) and path[-1] in value


@dataclass
class _Fold:
    """A page of events folded in order, so that a later event about the same record wins.

    A section's event is kept as read (``_Section``, Clever ids) and pseudonymised in ``batch`` only if no
    later event of the page supersedes it: a section that moves twice in a page (a student leaves, another
    joins) costs its members' HMACs once, not twice. Its members before the page's first event of it are
    kept too (``before``) while each later event's ``previous_attributes`` follow on from the one before:
    the page then says who joined and who left (``mappers.records.MembershipDelta``).
    """

    sections: dict[str, _Section | None] = field(default_factory=dict)
    before: dict[str, Members | None] = field(default_factory=dict)
    people: dict[tuple[Role, str], PersonRecord | Reappeared | None] = field(default_factory=dict)
    reappeared: dict[tuple[Role, str], Reappeared] = field(default_factory=dict)
    skipped: int = 0
    ignored: int = 0

    def section(self, section: _Section | None, previous: Members | None) -> None:
        """A ``sections.created`` / ``sections.updated`` event's record (None when it broke the definition),
        with its members before the event (None: not known)."""
        if section is None:
            self.skipped += 1
            return
        key = section.klass.external_id
        if key in self.sections:  # a later event of the page: its "before" must be the earlier event's "after"
            pending = self.sections[key]
            follows = pending is not None and previous is not None and _same(previous, pending)
            previous = self.before.get(key) if follows else None
        self._set(self.sections, key, section)
        self.before[key] = previous

    def add(self, change: EventChange) -> None:
        """Any other event, as ``map_event`` mapped it."""
        self.skipped += change.upserts.skipped
        self.ignored += change.ignored
        for external_id in change.deleted_classes:
            self._set(self.sections, external_id, None)
        for person in change.upserts.people:
            self._set(self.people, (person.role, person.pseudonym), person)
        for back in change.reappeared:
            key = (back.role, back.pseudonym)
            if not isinstance(self.people.get(key), PersonRecord):  # a student is only "there": nothing to upsert
                self._set(self.people, key, back)
            self.reappeared[key] = back
        for key in change.deleted_people:
            self._set(self.people, key, None)
            self.reappeared.pop(key, None)

    @staticmethod
    def _set(fold: dict[Any, Any], key: Any, value: Any) -> None:
        fold.pop(key, None)
        fold[key] = value

    def batch(self, context: MappingContext) -> ChangeBatch:
        # A section's deletion is Clever's own word (a rollover the district approved at Clever, a section
        # unshared): explained, applied with no hold (docs/reliability.md, "School year's end").
        result = ChangeBatch(
            ignored=self.ignored, reappeared=list(self.reappeared.values()), classes_deleted_by_provider=True
        )
        result.upserts.skipped = self.skipped
        pseudonyms = _Pseudonyms(context)
        for external_id, section in self.sections.items():
            if section is None:
                result.deleted_classes.append(external_id)
                continue
            before = self.before.get(external_id)
            if before is None:
                _add_section(result.upserts, section, pseudonyms, {}, set())  # each section's members stand whole
            else:
                result.deltas[external_id] = _delta(result.upserts, section, before, pseudonyms, context)
            result.replaced_classes.append(external_id)
        for key, person in self.people.items():
            if person is None:
                result.deleted_people.append(key)
            elif isinstance(person, PersonRecord):
                result.upserts.people.append(person)
        return result


def _same(previous: Members, section: _Section) -> bool:
    """Whether ``previous`` holds the section's members, in any order (the same lists in the same order at once)."""
    if previous[0] == section.teacher_ids and previous[1] == section.student_ids:
        return True
    return set(previous[0]) == set(section.teacher_ids) and set(previous[1]) == set(section.student_ids)


def _delta(
    batch: RosterBatch, section: _Section, before: Members, pseudonyms: Mapping[str, str], context: MappingContext
) -> MembershipDelta:
    """The section's class and its joined members into ``batch``; what left, and the section whole on demand."""
    old_teachers, old_students = set(before[0]), set(before[1])
    joined = _Section(
        section.klass,
        [subject for subject in section.teacher_ids if subject not in old_teachers],
        [subject for subject in section.student_ids if subject not in old_students],
    )
    _add_section(batch, joined, pseudonyms, {}, set())
    external_id = section.klass.external_id
    roles: tuple[tuple[Role, list[str], set[str]], ...] = (
        ("teacher", before[0], set(section.teacher_ids)),
        ("student", before[1], set(section.student_ids)),
    )
    left = [
        EnrollmentRecord(external_id, pseudonyms[subject], role)
        for role, old, now in roles
        for subject in old
        if subject not in now
    ]
    whole = functools.partial(_whole, section, context)
    return MembershipDelta(external_id, {"teacher": len(before[0]), "student": len(before[1])}, left, whole)


def _whole(section: _Section, context: MappingContext) -> RosterBatch:
    """The section with every member, as a page without ``previous_attributes`` would have carried it."""
    batch = RosterBatch()
    _add_section(batch, section, _Pseudonyms(context), {}, set())
    return batch


def _section_event(raw: Any) -> tuple[Mapping[str, Any], Any] | None:
    """The section of a ``sections.created`` / ``sections.updated`` event that has one, with the
    ``previous_attributes`` of an update (else None); None for any other event."""
    if not _is_object(raw) or raw.get("type") not in ("sections.created", "sections.updated"):
        return None
    data = raw.get("data")
    record = data.get("object") if _is_object(data) else None
    if not _is_object(record):
        return None
    assert isinstance(data, Mapping)
    return record, data.get("previous_attributes") if raw.get("type") == "sections.updated" else None


def map_changes(page: RawPage, context: MappingContext) -> ChangeBatch:
    """One page of events -> one ChangeBatch, folded in event order (a later event about a record wins).

    A section's event carries the whole section, so its enrolments replace the stored ones; where the
    page's ``previous_attributes`` say who joined and who left, only those are pseudonymised and the
    store settles the change against what it holds (``mappers.records.MembershipDelta``). A person
    deleted and created again within the page is simply there; one created after an earlier page or
    sync deleted them is in ``reappeared``, for the worker to restore with their sections.
    """
    fold = _Fold()
    rules = rules_for(ALLOWLIST, "class", context.granted_scopes)
    by_name = {rule.canonical: rule for rule in rules}
    for raw in page.records:
        event = _section_event(raw)
        if event is None:
            fold.add(map_event(raw, context))
            continue
        section = _section(event[0], rules)
        if section is None:
            fold.section(None, None)
            continue
        fold.section(section, _previous(event[1], by_name, section, fold.sections.get(section.klass.external_id)))
    return fold.batch(context)


# ---------------------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class CleverIdentity:
    """Who a token acts for (``/me``, and ``/userinfo`` for the role): the linking step needs the user id,
    the district and the role, nothing else."""

    user_id: str
    district_id: str | None
    user_type: str


USER = "user"
"""``/me``'s ``type`` for a Library sign-in in v3.0 (dev.clever.com/docs/classroom-rostering): a user whose
role ``/me`` does not tell; ``/userinfo``'s ``user_type`` does (``role_from_userinfo``)."""


def identity(raw_me: Any) -> CleverIdentity | None:
    """``/me``'s ``data`` -> identity; only ``id``, ``district`` and ``type`` are read (providers.md 2.1).

    ``type`` is the role for a district teacher's Instant Login and ``user`` for a Library sign-in, as
    Clever's v3.0 Library page documents it; a ``user`` needs ``role_from_userinfo`` before it may link.
    """
    if not isinstance(raw_me, Mapping):
        return None
    user_id, user_type = identifier(raw_me.get("id")), identifier(raw_me.get("type"))
    if user_id is None or user_type is None:
        return None
    return CleverIdentity(user_id=user_id, district_id=identifier(raw_me.get("district")), user_type=user_type)


def role_from_userinfo(me: CleverIdentity, raw_userinfo: Any) -> CleverIdentity | None:
    """``/userinfo`` (dev.clever.com/docs/the-userinfo-endpoint) completes a ``user`` identity with its role
    "in the current login context"; only ``user_id``, ``user_type`` and ``district_id`` are read (never a name
    or an email). None when it breaks that shape or speaks of another user than ``/me``."""
    if not isinstance(raw_userinfo, Mapping):
        return None
    user_id, user_type = identifier(raw_userinfo.get("user_id")), identifier(raw_userinfo.get("user_type"))
    if user_id != me.user_id or user_type is None:
        return None
    district = me.district_id or identifier(raw_userinfo.get("district_id"))
    return CleverIdentity(user_id=me.user_id, district_id=district, user_type=user_type)


def pseudonyms(subjects: Iterable[str], pseudonymiser: Pseudonymiser, tenant: str) -> list[str]:
    """Pseudonyms of Clever ids, e.g. the ids a ``users.deleted`` event or a 404 names."""
    return [pseudonymiser.pseudonym(PROVIDER, tenant, subject) for subject in subjects]
