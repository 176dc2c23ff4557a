"""Clever payloads (v3.0 and v3.1 alike) -> canonical records, through the allowlist in ``mappers.policy``.

Clever returns whole records and offers no field selection, so minimisation here is twofold:
the allowlist projection below, and the choice of what to ask for at all. A section's
``students[]`` ids are all a student pseudonym needs, so ``user_records_needed("student")`` is
False (derived from the allowlist, not stated) and no student record is ever requested; of a
student's ``users.*`` event only the id is read, through the same allowlist (to archive a deleted
student and restore one whose id reappears), and ``users.updated`` of a student is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappers.policy import FieldRule, MappingContext, Pseudonymiser, project, rules_for
from mappers.records import (
    ChangeBatch,
    ClassRecord,
    EnrollmentRecord,
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
    """A list of Clever ids, or None when the payload breaks the definition (not a list of usable ids)."""
    if value is None:
        return []
    if not isinstance(value, list) or not identifiers(value):
        return None
    return list(dict.fromkeys(value))


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


class _Members:
    """A page's people and enrolments as its sections name them; each subject pseudonymised once a page.

    A district's sections share students (a fifth of a class sat in the one before it in the bench's
    district; a real student sits in several): the HMAC of a subject already met is looked up, and a
    person already in the batch is not built again (issue 22: mapping was a fifth of a first sync).
    """

    def __init__(self, batch: RosterBatch, context: MappingContext, teachers: Mapping[str, PersonRecord]) -> None:
        self.batch, self.context, self.teachers = batch, context, teachers
        self.pseudonyms: dict[str, str] = {}
        self.seen: set[tuple[str, str]] = set()

    def pseudonym(self, subject: str) -> str:
        found = self.pseudonyms.get(subject)
        if found is None:
            found = self.pseudonyms[subject] = _pseudonym(self.context, subject)
        return found

    def add(self, external_id: str, teacher_ids: list[str], student_ids: list[str]) -> None:
        """Teachers first, then students, in the section's order, as the page lists them."""
        batch, seen = self.batch, self.seen
        for subject in teacher_ids:
            pseudonym = self.pseudonym(subject)
            batch.enrollments.append(EnrollmentRecord(external_id, pseudonym, "teacher"))
            if (pseudonym, "teacher") not in seen:
                seen.add((pseudonym, "teacher"))
                named = self.teachers.get(pseudonym)
                batch.people.append(named or PersonRecord(role="teacher", pseudonym=pseudonym, complete=False))
        for subject in student_ids:
            pseudonym = self.pseudonym(subject)
            batch.enrollments.append(EnrollmentRecord(external_id, pseudonym, "student"))
            if (pseudonym, "student") not in seen:
                seen.add((pseudonym, "student"))
                batch.people.append(PersonRecord(role="student", pseudonym=pseudonym))


# ----------------------------------------------------------------------------------------- classes
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
    members = _Members(batch, context, teachers or {})
    rules = rules_for(ALLOWLIST, "class", context.granted_scopes)
    for raw in raw_records:
        fields = project(raw, rules) if isinstance(raw, Mapping) else {}
        external_id, name = identifier(fields.get("external_id")), display(fields.get("name"))
        student_ids, teacher_ids = _ids(fields.get("student_ids")), _ids(fields.get("teacher_ids"))
        if external_id is None or name is None or student_ids is None or teacher_ids is None:
            batch.skipped += 1
            continue
        section = display(fields.get("section")) or display(fields.get("section_number"))
        batch.classes.append(ClassRecord(external_id, name, section, ACTIVE))
        members.add(external_id, teacher_ids, student_ids)
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
    if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
        change.upserts.skipped = 1
        return change
    record_type, _, action = str(raw["type"]).partition(".")
    data = raw.get("data")
    record = data.get("object") if isinstance(data, Mapping) else None
    if record_type not in ("sections", "users"):
        change.ignored = True
        return change
    if not isinstance(record, Mapping) or action not in ("created", "updated", "deleted"):
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


@dataclass
class _Fold:
    """A page of events folded in order, so that a later event about the same record wins."""

    sections: dict[str, RosterBatch | None] = field(default_factory=dict)
    people: dict[tuple[Role, str], PersonRecord | Reappeared | None] = field(default_factory=dict)
    reappeared: dict[tuple[Role, str], Reappeared] = field(default_factory=dict)
    skipped: int = 0
    ignored: int = 0

    def add(self, change: EventChange) -> None:
        self.skipped += change.upserts.skipped
        self.ignored += change.ignored
        for external_id in change.deleted_classes:
            self._set(self.sections, external_id, None)
        for cls in change.upserts.classes:
            one = RosterBatch(classes=[cls])
            one.enrollments = [e for e in change.upserts.enrollments if e.class_external_id == cls.external_id]
            named = {(e.role, e.pseudonym) for e in one.enrollments}
            one.people = [p for p in change.upserts.people if (p.role, p.pseudonym) in named]
            self._set(self.sections, cls.external_id, one)
        if not change.upserts.classes:
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

    def batch(self) -> ChangeBatch:
        # A section's deletion is Clever's own word (a rollover the district approved at Clever, a section
        # unshared): explained, applied with no hold (docs/reliability.md, "School year's end").
        result = ChangeBatch(
            ignored=self.ignored, reappeared=list(self.reappeared.values()), classes_deleted_by_provider=True
        )
        result.upserts.skipped = self.skipped
        for external_id, section in self.sections.items():
            if section is None:
                result.deleted_classes.append(external_id)
                continue
            result.upserts.classes += section.classes
            result.upserts.people += section.people
            result.upserts.enrollments += section.enrollments
            result.replaced_classes.append(external_id)
        for key, person in self.people.items():
            if person is None:
                result.deleted_people.append(key)
            elif isinstance(person, PersonRecord):
                result.upserts.people.append(person)
        return result


def map_changes(page: RawPage, context: MappingContext) -> ChangeBatch:
    """One page of events -> one ChangeBatch, folded in event order (a later event about a record wins).

    A section's event carries the whole section, so its enrolments replace the stored ones. A person
    deleted and created again within the page is simply there; one created after an earlier page or
    sync deleted them is in ``reappeared``, for the worker to restore with their sections.
    """
    fold = _Fold()
    for raw in page.records:
        fold.add(map_event(raw, context))
    return fold.batch()


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
