"""The audit log: who did what, when, to which integration, with ids and counts only.

Append-only: this module only inserts and reads, and the database refuses UPDATE and DELETE on
``audit_events`` (migration 0003). An event never holds a name, an email or a provider's raw id:
``details`` takes integers, ids, pseudonyms and short fixed words, checked here before it is written,
so a careless caller cannot slip a roster value in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select

from store.db import utcnow
from store.models import AuditEvent, Integration
from store.summaries import status_reason as status_reason  # the Core-only reading `status` uses

Detail = int | str | bool | None | list[int]
NOT_RECORDED = "not recorded"


class UnsafeDetail(ValueError):
    """A detail value that could carry personal data (free text, nested objects); never written."""


def _check(details: Mapping[str, Detail]) -> None:
    for key, value in details.items():
        if isinstance(value, list):
            if not all(isinstance(item, int) for item in value):
                raise UnsafeDetail(f"audit detail {key!r}: lists hold ids only")
        elif isinstance(value, str):
            # Short words (outcomes, statuses) or 64-hex pseudonyms; nothing with spaces, @ or markup.
            if value != word(value):
                raise UnsafeDetail(f"audit detail {key!r}: only short words or pseudonyms")
        elif value is not None and not isinstance(value, bool | int):
            raise UnsafeDetail(f"audit detail {key!r}: unsupported type")


def word(text: str) -> str:
    """A status or outcome made safe for ``details``: anything but ``[A-Za-z0-9_:.-]`` becomes ``_``."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-:.") else "_" for ch in text)[:64]


APPEND = insert(AuditEvent)
"""Built once, its values given at execution: a sync audits every run it closes, and building the statement
(and its cache key) each time cost more of a teacher link's sync than sending it."""


def record(
    connection: Connection,
    *,
    action: str,
    actor: str,
    integration_id: int | None = None,
    details: Mapping[str, Detail] | None = None,
    reason: str = "",
) -> None:
    """Append one event inside the caller's transaction, so the event and the change commit together."""
    connection.execute(
        APPEND,
        {"integration_id": integration_id} | event_values(action=action, actor=actor, details=details, reason=reason),
    )


def event_values(*, action: str, actor: str, details: Mapping[str, Detail] | None, reason: str) -> dict[str, Any]:
    """An event's values but its integration, its details checked (``UnsafeDetail``) and written as JSON.

    Apart from ``record`` so that a statement that appends the event itself (a sync's release on PostgreSQL,
    store.leases) writes exactly what ``record`` would, after the same check."""
    _check(details or {})
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "reason": reason,
        "details": json.dumps(dict(details), sort_keys=True) if details else None,
    }


def actions(engine: Engine, integration_id: int) -> list[str]:
    """The actions recorded for one integration, oldest first (what happened to it, without the why)."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(AuditEvent.action).where(AuditEvent.integration_id == integration_id).order_by(AuditEvent.id)
            ).scalars()
        )


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    actor: str
    action: str
    integration_id: int | None
    consent_basis: str | None
    reason: str
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat() + "Z",
            "actor": self.actor,
            "action": self.action,
            "integration_id": self.integration_id,
            "consent_basis": self.consent_basis,
            "reason": self.reason,
            "details": self.details,
        }


def events(engine: Engine, integration_id: int | None = None) -> list[Event]:
    """Every event in order; with an id, the events of that integration, including multi-integration ones."""
    query = (
        select(
            AuditEvent.id,
            AuditEvent.at,
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.integration_id,
            AuditEvent.reason,
            AuditEvent.details,
            Integration.consent_basis,
            Integration.id.label("known"),
        )
        .outerjoin(Integration, Integration.id == AuditEvent.integration_id)
        .order_by(AuditEvent.id)
    )
    if integration_id is not None:
        query = query.where(or_(AuditEvent.integration_id == integration_id, AuditEvent.integration_id.is_(None)))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found: list[Event] = []
    for row in rows:
        details = json.loads(row.details) if row.details else {}
        spans_others = integration_id is not None and row.integration_id is None
        if spans_others and integration_id not in details.get("integrations", []):
            continue
        if row.integration_id is None:
            basis = None
        elif row.known is None:
            basis = "integration erased"
        else:
            basis = row.consent_basis or NOT_RECORDED
        found.append(
            Event(
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                integration_id=row.integration_id,
                consent_basis=basis,
                reason=row.reason,
                details=details,
            )
        )
    return found


def count(engine: Engine, action: str) -> int:
    """How many events of one kind exist (tests and the CLI's one-line summaries)."""
    with engine.connect() as connection:
        return len(connection.execute(select(AuditEvent.id).where(AuditEvent.action == action)).all())


def ids_of(values: Sequence[int]) -> list[int]:
    """A sorted, de-duplicated id list for ``details``."""
    return sorted(set(values))
