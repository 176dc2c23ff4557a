"""The one place that names providers' personal fields: per-role allowlists, and the pseudonymiser.

A field is stored only if a rule below names it, so whatever a provider adds tomorrow is
dropped by default. The same rules give the connectors their ``fields=`` masks, so fields we
would drop do not even cross the wire.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

GOOGLE_EMAILS_SCOPE = "https://www.googleapis.com/auth/classroom.profile.emails"
MICROSOFT_MAIL_PERMISSION = "EduRoster.Read.All"
"""The Graph permission under which a teacher's ``mail`` is returned (delegated tokens get no ``mail``)."""


@dataclass(frozen=True)
class FieldRule:
    """``canonical`` is filled from the provider's ``path``; ``requires_scope`` gates fields only some grants return."""

    canonical: str
    path: tuple[str, ...]
    requires_scope: str | None = None


# ``subject`` is the provider's user id: it is read only to be pseudonymised, never stored.
ALLOWLIST: Mapping[str, Mapping[str, tuple[FieldRule, ...]]] = {
    "google": {
        "class": (
            FieldRule("external_id", ("id",)),
            FieldRule("name", ("name",)),
            FieldRule("section", ("section",)),
            FieldRule("state", ("courseState",)),
        ),
        "teacher": (
            FieldRule("subject", ("userId",)),
            FieldRule("display_name", ("profile", "name", "fullName")),
            FieldRule("email_address", ("profile", "emailAddress"), requires_scope=GOOGLE_EMAILS_SCOPE),
        ),
        "student": (FieldRule("subject", ("userId",)),),
    },
    # Clever v3.0 and v3.1 alike (providers.md 2.4). A section carries its enrolments as user ids;
    # ``student_ids``/``teacher_ids`` are read only to be pseudonymised. Nothing else of a student is
    # read: not name, email, dob, demographics, address, usernames, ``ext`` or any v3.1 status.
    "clever": {
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
    },
    # Microsoft Graph Education (providers.md 3.2). Each rule's first path element is also the
    # ``$select`` that asks Graph for it, so a student's ``members`` read is ``id,primaryRole``: no
    # name, mail, UPN, phone, address, birth date, guardian or ``student.*`` ever crosses the wire.
    # ``role`` (primaryRole) is read only to tell students from teachers among a class's members.
    # Graph has no section or period property on educationClass, so there is no section label.
    "microsoft": {
        "class": (
            FieldRule("external_id", ("id",)),
            FieldRule("name", ("displayName",)),
        ),
        "teacher": (
            FieldRule("subject", ("id",)),
            FieldRule("display_name", ("displayName",)),
            FieldRule("email_address", ("mail",), requires_scope=MICROSOFT_MAIL_PERMISSION),
        ),
        "student": (
            FieldRule("subject", ("id",)),
            FieldRule("role", ("primaryRole",)),
        ),
    },
}


def rules_for(provider: str, role: str, granted_scopes: frozenset[str]) -> tuple[FieldRule, ...]:
    """The rules that apply under this grant: a scope-gated field is kept only when the scope was granted."""
    return tuple(
        rule
        for rule in ALLOWLIST[provider][role]
        if rule.requires_scope is None or rule.requires_scope in granted_scopes
    )


def allowlist_digest(provider: str, granted_scopes: frozenset[str]) -> str:
    """A short hash of every rule that applies to this provider under this grant.

    Stored with a change-feed cursor: when the allowlist (or the grant) changes, records already
    stored were projected under other rules, so the next sync is a full one.
    """
    rules = sorted(
        (role, rule.canonical, rule.path)
        for role in ALLOWLIST[provider]
        for rule in rules_for(provider, role, granted_scopes)
    )
    return hashlib.sha256(repr(rules).encode()).hexdigest()[:16]


def project(raw: Mapping[str, Any], rules: tuple[FieldRule, ...]) -> dict[str, Any]:
    """The allowlist projection of one raw record: canonical name -> value, absent fields as None."""
    projected: dict[str, Any] = {}
    for rule in rules:
        value: Any = raw
        for key in rule.path:
            value = value.get(key) if isinstance(value, Mapping) else None
        projected[rule.canonical] = value
    return projected


class Pseudonymiser:
    """HMAC-SHA256 over ``provider|tenant|user id`` under a per-tenant key derived (HKDF) from one secret.

    Stable across syncs, different across tenants, not reversible without the secret.
    """

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("pseudonym key must be at least 32 characters")
        self._secret = secret.encode()
        self._tenant_keys: dict[str, bytes] = {}

    def _tenant_key(self, tenant: str) -> bytes:
        key = self._tenant_keys.get(tenant)
        if key is None:
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"rostersync/pseudonym/v1/" + tenant.encode()
            ).derive(self._secret)
            self._tenant_keys[tenant] = key
        return key

    def pseudonym(self, provider: str, tenant: str, subject: str) -> str:
        message = f"{provider}|{tenant}|{subject}".encode()
        return hmac.new(self._tenant_key(tenant), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class MappingContext:
    """Who the records belong to and what the grant allows: everything a mapper needs besides the payload."""

    tenant: str
    granted_scopes: frozenset[str]
    pseudonymiser: Pseudonymiser
