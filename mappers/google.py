"""Google Classroom payloads -> canonical records, and the ``fields=`` masks that keep the rest off the wire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mappers.policy import FieldRule, MappingContext, project, rules_for
from mappers.records import ClassRecord, EnrollmentRecord, PersonRecord, RawPage, Role, RosterBatch
from mappers.text import MAX_STATE_LENGTH, display, identifier

PROVIDER = "google"

EMAILS_SCOPE = "https://www.googleapis.com/auth/classroom.profile.emails"
"""The optional scope under which Classroom returns a teacher's ``emailAddress``."""

ALLOWLIST: dict[str, tuple[FieldRule, ...]] = {
    "class": (
        FieldRule("external_id", ("id",)),
        FieldRule("name", ("name",)),
        FieldRule("section", ("section",)),
        FieldRule("state", ("courseState",)),
    ),
    "teacher": (
        FieldRule("subject", ("userId",)),
        FieldRule("display_name", ("profile", "name", "fullName")),
        FieldRule("email_address", ("profile", "emailAddress"), requires_scope=EMAILS_SCOPE),
    ),
    "student": (FieldRule("subject", ("userId",)),),
}

LIST_KEYS: dict[str, str] = {"class": "courses", "student": "students", "teacher": "teachers"}


def _selector(paths: Sequence[tuple[str, ...]]) -> str:
    """Google partial-response syntax for a set of paths: ``a,b(c,d(e))``."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for key in path:
            node = node.setdefault(key, {})
    return _render(tree)


def _render(tree: dict[str, Any]) -> str:
    return ",".join(f"{key}({_render(sub)})" if sub else key for key, sub in tree.items())


def field_mask(role: str, granted_scopes: frozenset[str]) -> str:
    """The ``fields`` parameter for one list call, derived from the allowlist alone."""
    rules: tuple[FieldRule, ...] = rules_for(ALLOWLIST, role, granted_scopes)
    return f"{LIST_KEYS[role]}({_selector([rule.path for rule in rules])}),nextPageToken"


def map_page(page: RawPage, context: MappingContext) -> RosterBatch:
    """One raw page of the full listing -> records: ``courses`` are classes, ``students``/``teachers`` members."""
    if page.kind == "courses":
        return _map_classes(page.records, context)
    role: Role = "student" if page.kind == "students" else "teacher"
    return _map_members(page.records, str(page.parent_id), role, context)


def _map_classes(raw_records: Sequence[Any], context: MappingContext) -> RosterBatch:
    batch = RosterBatch()
    rules = rules_for(ALLOWLIST, "class", context.granted_scopes)
    for raw in raw_records:
        fields = project(raw, rules) if isinstance(raw, dict) else {}
        external_id, name = identifier(fields.get("external_id"), strip=False), display(fields.get("name"), strip=False)
        if external_id is None or name is None:
            batch.skipped += 1
            continue
        state = identifier(fields.get("state"), max_length=MAX_STATE_LENGTH) or "ACTIVE"
        batch.classes.append(ClassRecord(external_id, name, display(fields.get("section"), strip=False), state))
    return batch


def _map_members(
    raw_records: Sequence[Any], class_external_id: str, role: Role, context: MappingContext
) -> RosterBatch:
    batch = RosterBatch()
    rules = rules_for(ALLOWLIST, role, context.granted_scopes)
    for raw in raw_records:
        fields = project(raw, rules) if isinstance(raw, dict) else {}
        subject = identifier(fields.get("subject"), strip=False)
        if subject is None:
            batch.skipped += 1
            continue
        pseudonym = context.pseudonymiser.pseudonym(PROVIDER, context.tenant, subject)
        batch.people.append(
            PersonRecord(
                role=role,
                pseudonym=pseudonym,
                display_name=display(fields.get("display_name"), strip=False),
                email_address=display(fields.get("email_address"), strip=False),
            )
        )
        batch.enrollments.append(EnrollmentRecord(class_external_id, pseudonym, role))
    return batch
