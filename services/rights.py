"""Data-subject rights as the CLI (and later the admin API) runs them: export, erase, lift a suppression.

Each operation leaves exactly one audit event of its own, holding ids, counts and pseudonyms only.
An erase that hits the account a grant belongs to ends that grant first (``revoke_integration``:
provider revoke, tokens deleted, purge, with the revoke's own audit events), so no later sync reads
that person's courses through their own token. Whatever its status: a ``failed`` or ``suspended``
integration still holds a live grant, and one left ``failed`` could be resumed (issue 18).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.oneroster import csv_files, zipped
from services.revoke import revoke_integration
from store import audit, rights, suppressions
from store.integrations import load
from store.retention import not_ended
from store.runtime import Runtime

PSEUDONYM = re.compile(r"[0-9a-f]{64}")


class RightsError(Exception):
    """Bad input for a rights command; the message names no person."""


def check_pseudonym(pseudonym: str) -> str:
    if not PSEUDONYM.fullmatch(pseudonym):
        raise RightsError("a pseudonym is 64 lowercase hex characters (as `rostersync export` shows it)")
    return pseudonym


def _audit_export(runtime: Runtime, actor: str, details: dict[str, audit.Detail], integration_id: int | None) -> None:
    with runtime.engine.begin() as connection:
        audit.record(connection, action="exported", actor=actor, integration_id=integration_id, details=details)


def export_person(runtime: Runtime, pseudonym: str, *, actor: str) -> dict[str, Any]:
    """Everything stored about one person, in every integration that holds them; audited."""
    check_pseudonym(pseudonym)
    export = rights.export_person(runtime.engine, pseudonym)
    touched = rights.integrations_of(export)
    _audit_export(
        runtime,
        actor,
        {"subject": "person", "format": "json", "pseudonym": pseudonym, "integrations": touched},
        touched[0] if len(touched) == 1 else None,
    )
    return export


def export_integration(runtime: Runtime, integration_id: int, *, actor: str, oneroster: bool = False) -> bytes:
    """One integration as JSON, or as a zip of OneRoster CSV files; audited either way."""
    export = rights.export_integration(runtime.engine, integration_id)
    payload = zipped(csv_files(export)) if oneroster else (json.dumps(export, indent=2) + "\n").encode()
    _audit_export(
        runtime,
        actor,
        {
            "subject": "integration",
            "format": "oneroster_csv" if oneroster else "json",
            "integrations": [integration_id],
            "classes": len(export["classes"]),
            "people": len(export["people"]),
            "enrollments": len(export["enrollments"]),
        },
        integration_id,
    )
    return payload


@dataclass(frozen=True)
class PersonErased:
    integrations: list[int]
    revoked: list[int]
    people: int
    enrollments: int


def erase_person(runtime: Runtime, pseudonym: str, *, actor: str) -> PersonErased:
    """Remove a person and their enrolments at once and suppress them; a grant they own is ended first."""
    check_pseudonym(pseudonym)
    found = rights.holdings(runtime.engine, pseudonym)
    if not found:
        raise rights.PersonNotFound()
    revoked = []
    for holding in found:
        if holding.owner and not_ended(holding.status):
            revoke_integration(runtime, holding.integration_id, actor=actor, reason="owner erased")
            revoked.append(holding.integration_id)
    erasure = rights.erase_person(
        runtime.engine,
        pseudonym,
        scopes={(holding.provider, holding.tenant) for holding in found},
        actor=actor,
        revoked=revoked,
    )
    return PersonErased(erasure.integrations, revoked, erasure.people, erasure.enrollments)


@dataclass(frozen=True)
class IntegrationErased:
    integration_id: int
    revoked_first: bool
    rows: int


def erase_integration(runtime: Runtime, integration_id: int, *, actor: str) -> IntegrationErased:
    """End the grant whatever its status (revoke, then at the provider), then remove the record and all left of it."""
    state = load(runtime.engine, integration_id)
    revoked_first = not_ended(state.status)
    if revoked_first:
        revoke_integration(runtime, integration_id, actor=actor, reason="integration erased")
    rows = rights.erase_integration(runtime.engine, integration_id, actor=actor)
    return IntegrationErased(integration_id, revoked_first, rows)


def lift_suppression(runtime: Runtime, pseudonym: str, *, actor: str) -> int:
    """Let the next sync bring the person back; one audit event. Returns the entries removed."""
    check_pseudonym(pseudonym)
    with runtime.engine.begin() as connection:
        lifted, covered = suppressions.lift(connection, pseudonym)
        if lifted == 0:
            raise RightsError("that pseudonym is not suppressed")
        audit.record(
            connection,
            action="suppression_lifted",
            actor=actor,
            integration_id=covered[0] if len(covered) == 1 else None,
            details={"pseudonym": pseudonym, "suppressions": lifted, "integrations": covered},
        )
    return lifted
