"""Microsoft Graph Education payloads -> canonical records, through the allowlist in ``mappers.policy``.

Graph supports ``$select``, so minimisation starts on the wire: ``field_masks`` derives each read's
``$select`` from the allowlist (a class's ``members`` as ``id,primaryRole``; names only from its
``teachers``), and the projection below drops whatever arrives anyway (a token with more rights,
a property Graph adds tomorrow). Students come out as pseudonyms of their Graph id and nothing
else. Records that break the documented shape are skipped and counted, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappers.policy import FieldRule, MappingContext, project, rules_for
from mappers.records import ROLES as PERSON_ROLES
from mappers.records import ChangeBatch, ClassRecord, EnrollmentRecord, PersonRecord, RawPage, RosterBatch
from mappers.text import display, identifier

PROVIDER = "microsoft"

MAIL_PERMISSION = "EduRoster.Read.All"
"""The Graph permission under which a teacher's ``mail`` is returned (delegated tokens get no ``mail``)."""

# Microsoft Graph Education (providers.md 3.2). Each rule's first path element is also the
# ``$select`` that asks Graph for it, so a student's ``members`` read is ``id,primaryRole``: no
# name, mail, UPN, phone, address, birth date, guardian or ``student.*`` ever crosses the wire.
# ``role`` (primaryRole) is read only to tell students from teachers among a class's members.
# Graph has no section or period property on educationClass, so there is no section label.
ALLOWLIST: dict[str, tuple[FieldRule, ...]] = {
    "class": (
        FieldRule("external_id", ("id",)),
        FieldRule("name", ("displayName",)),
    ),
    "teacher": (
        FieldRule("subject", ("id",)),
        FieldRule("display_name", ("displayName",)),
        FieldRule("email_address", ("mail",), requires_scope=MAIL_PERMISSION),
    ),
    "student": (
        FieldRule("subject", ("id",)),
        FieldRule("role", ("primaryRole",)),
    ),
}
ACTIVE = "ACTIVE"
"""Graph classes have no state: a listed class is active, a deleted one is gone (404, full reconcile)."""
EXPIRED = "EXPIRED"
SDS_EXPIRED_NAMES = (re.compile(r"^exp\d{4}[\s_-]", re.IGNORECASE),)
"""School Data Sync's year-end "mark classes expired" tags the class's display name (SDS Classic: "tags the
sections as EXP in the display name"; SDS renames the group with an ``Exp<MMYY>`` prefix) and keeps it
listed with the same id. The tag is a heuristic, not a contract: this table is the one place it is read.
A class so tagged is EXPIRED, an end the school decided (docs/reliability.md, "School year's end")."""


def class_state(name: str) -> str:
    """EXPIRED when School Data Sync's year-end tag marks the class's name, else ACTIVE."""
    return EXPIRED if any(pattern.match(name) for pattern in SDS_EXPIRED_NAMES) else ACTIVE


ROLES = ("class", "student", "teacher")
MASK_ROLES: Mapping[str, str] = {"class": "class", "member": "student", "teacher": "teacher"}
"""Connector mask key -> allowlist role: a class's ``members`` are read with the student rules."""


def field_mask(role: str, granted_scopes: frozenset[str]) -> str:
    """The ``$select`` for reading ``role`` records: the Graph properties the allowlist names, nothing more."""
    if role not in ROLES:
        raise KeyError(f"unknown role {role!r}")
    properties = dict.fromkeys(rule.path[0] for rule in rules_for(ALLOWLIST, role, granted_scopes))
    return ",".join(properties)


def field_masks(granted_scopes: frozenset[str]) -> dict[str, str]:
    """The masks the connector takes (``class``, ``member``, ``teacher``) under this grant."""
    return {key: field_mask(role, granted_scopes) for key, role in MASK_ROLES.items()}


def _pseudonym(context: MappingContext, subject: str) -> str:
    return context.pseudonymiser.pseudonym(PROVIDER, context.tenant, subject)


# ----------------------------------------------------------------------------------------- pages
def map_classes(raw_records: Sequence[Any], context: MappingContext) -> RosterBatch:
    """A page of educationClass records -> classes; one without an id or a display name is skipped."""
    batch = RosterBatch()
    rules = rules_for(ALLOWLIST, "class", context.granted_scopes)
    for raw in raw_records:
        fields = project(raw, rules) if isinstance(raw, Mapping) else {}
        external_id, name = identifier(fields.get("external_id")), display(fields.get("name"))
        if external_id is None or name is None:
            batch.skipped += 1
            continue
        batch.classes.append(ClassRecord(external_id, name, None, class_state(name)))
    return batch


def map_members(class_id: str, raw_records: Sequence[Any], context: MappingContext) -> RosterBatch:
    """A page of a class's ``members`` -> pseudonymous students and their enrolments.

    Teachers among the members are left to ``map_teachers`` (the ``teachers`` list names them, and is
    the authority on who teaches); members of any other role are not ours to keep. A member without
    an id or a role is skipped and counted.
    """
    batch = RosterBatch()
    rules = rules_for(ALLOWLIST, "student", context.granted_scopes)
    seen: set[str] = set()
    for raw in raw_records:
        fields = project(raw, rules) if isinstance(raw, Mapping) else {}
        subject, role = identifier(fields.get("subject")), identifier(fields.get("role"))
        if subject is None or role is None:
            batch.skipped += 1
            continue
        if role != "student":
            continue
        person = PersonRecord(role="student", pseudonym=_pseudonym(context, subject))
        if person.pseudonym in seen:
            continue
        seen.add(person.pseudonym)
        batch.people.append(person)
        batch.enrollments.append(EnrollmentRecord(class_id, person.pseudonym, "student"))
    return batch


def map_teacher(raw: Any, context: MappingContext) -> PersonRecord | None:
    """One teacher from a class's ``teachers`` -> a named PersonRecord; None when it breaks the shape."""
    if not isinstance(raw, Mapping):
        return None
    fields = project(raw, rules_for(ALLOWLIST, "teacher", context.granted_scopes))
    subject = identifier(fields["subject"])
    if subject is None:
        return None
    return PersonRecord(
        role="teacher",
        pseudonym=_pseudonym(context, subject),
        display_name=display(fields["display_name"]),
        email_address=display(fields.get("email_address")),
    )


def map_teachers(class_id: str, raw_records: Sequence[Any], context: MappingContext) -> RosterBatch:
    """A page of a class's ``teachers`` -> named teachers and their enrolments."""
    batch = RosterBatch()
    seen: set[str] = set()
    for raw in raw_records:
        person = map_teacher(raw, context)
        if person is None:
            batch.skipped += 1
            continue
        if person.pseudonym in seen:
            continue
        seen.add(person.pseudonym)
        batch.people.append(person)
        batch.enrollments.append(EnrollmentRecord(class_id, person.pseudonym, "teacher"))
    return batch


def map_records(kind: str, parent_id: str | None, raw_records: Sequence[Any], context: MappingContext) -> RosterBatch:
    """One connector page (``classes``, ``members``, ``teachers``) -> a RosterBatch.

    ``unreadable`` markers and delta ``users`` pages carry nothing to store as a batch (see
    ``map_user_delta``); an unknown kind is a programming error.
    """
    if kind == "classes":
        return map_classes(raw_records, context)
    if kind in ("members", "teachers"):
        if parent_id is None:
            raise ValueError(f"a {kind} page needs its class id")
        mapper = map_members if kind == "members" else map_teachers
        return mapper(parent_id, raw_records, context)
    if kind in ("unreadable", "users"):
        return RosterBatch()
    raise ValueError(f"unknown Microsoft page kind {kind!r}")


# ------------------------------------------------------------------------------------------ delta
@dataclass
class DeltaChange:
    """What a delta page asks of the store; applying it twice must change nothing."""

    upserts: RosterBatch = field(default_factory=RosterBatch)
    removed_classes: list[str] = field(default_factory=list)
    removed_people: list[str] = field(default_factory=list)


def _removed(raw: Mapping[str, Any]) -> bool:
    """Directory delta's ``@removed`` marker ([U] on education delta, providers.md 3.3); only its presence is read."""
    return "@removed" in raw


def map_user_delta(raw_records: Sequence[Any], context: MappingContext) -> DeltaChange:
    """A users delta page (``id,primaryRole``) -> student pseudonyms, and removals for ``@removed`` entries.

    A removed entry carries no role, so its pseudonym is removed whatever role it was stored under.
    A changed teacher is left alone: a delta record has no name (by design), and teachers are named
    from the classes' ``teachers`` lists.
    """
    change = DeltaChange()
    rules = rules_for(ALLOWLIST, "student", context.granted_scopes)
    for raw in raw_records:
        fields = project(raw, rules) if isinstance(raw, Mapping) else {}
        subject = identifier(fields.get("subject"))
        if subject is None:
            change.upserts.skipped += 1
            continue
        assert isinstance(raw, Mapping)
        if _removed(raw):
            change.removed_people.append(_pseudonym(context, subject))
            continue
        role = identifier(fields.get("role"))
        if role is None:
            change.upserts.skipped += 1
        elif role == "student":
            change.upserts.people.append(PersonRecord(role="student", pseudonym=_pseudonym(context, subject)))
    return change


def map_class_delta(raw_records: Sequence[Any], context: MappingContext) -> DeltaChange:
    """A classes delta page -> changed classes, and removals for ``@removed`` entries (should Graph send them)."""
    change = DeltaChange()
    rules = rules_for(ALLOWLIST, "class", context.granted_scopes)
    kept: list[Any] = []
    for raw in raw_records:
        if isinstance(raw, Mapping) and _removed(raw):
            external_id = identifier(project(raw, rules).get("external_id"))
            if external_id is None:
                change.upserts.skipped += 1
            else:
                change.removed_classes.append(external_id)
        else:
            kept.append(raw)
    mapped = map_classes(kept, context)
    change.upserts.classes, change.upserts.skipped = mapped.classes, change.upserts.skipped + mapped.skipped
    return change


# ------------------------------------------------------------------------------- the generic entries
def map_page(page: RawPage, context: MappingContext) -> RosterBatch:
    """One page of a full listing (``classes``, a class's ``members`` or ``teachers``) -> a RosterBatch."""
    return map_records(page.kind, page.parent_id, page.records, context)


def map_changes(page: RawPage, context: MappingContext) -> ChangeBatch:
    """One page of a delta round -> one ChangeBatch; applying it twice changes nothing.

    ``users`` pages: students (pseudonyms) and ``@removed`` people (teachers and students);
    ``classes`` pages: changed classes and ``@removed`` ones; the ``members``/``teachers`` pages of a
    changed class upsert its enrolments. They replace nothing: a class's roster arrives over several
    pages (members, then teachers), so an enrolment that ended is removed by the periodic full
    reconcile, as are deleted classes (class delta never reports them).
    """
    if page.kind == "users":
        change = map_user_delta(page.records, context)
        # ``@removed`` carries an id and no role, and the pseudonym is the same whatever the role:
        # the person goes as a teacher or a student, whichever is stored (with their enrolments).
        removed = [(role, pseudonym) for pseudonym in change.removed_people for role in PERSON_ROLES]
        return ChangeBatch(upserts=change.upserts, deleted_people=removed)
    if page.kind == "classes":
        change = map_class_delta(page.records, context)
        return ChangeBatch(upserts=change.upserts, deleted_classes=list(change.removed_classes))
    return ChangeBatch(upserts=map_records(page.kind, page.parent_id, page.records, context))


# ---------------------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class MicrosoftIdentity:
    """Who a delegated token acts for (``/education/me`` with ``$select=id,primaryRole``)."""

    user_id: str
    role: str


def identity(raw_me: Any) -> MicrosoftIdentity | None:
    """Only ``id`` and ``primaryRole`` are read."""
    if not isinstance(raw_me, Mapping):
        return None
    user_id, role = identifier(raw_me.get("id")), identifier(raw_me.get("primaryRole"))
    if user_id is None or role is None:
        return None
    return MicrosoftIdentity(user_id=user_id, role=role)
