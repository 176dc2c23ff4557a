"""The change feed as a consumer sees it: read the events, apply them to a mirror, read the roster to compare.

The mirror applies each event type exactly as docs/platform.md tells a platform to, idempotently; the
roster is read from the tables the way the snapshot endpoints show it. A mirror that followed the feed
from the start equals that roster: the test of every outbox test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from store.models import ChangeEvent, Enrollment, Integration, OutboxHead, Person, SchoolClass


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    type: str
    integration_id: int
    person: str | None
    data: dict[str, Any]


def read_events(connection: Connection, after: int = 0, limit: int | None = None) -> list[FeedEvent]:
    """The events after ``after`` in seq order, as ``/v1/changes`` serves them."""
    query = (
        select(ChangeEvent.seq, ChangeEvent.type, ChangeEvent.integration_id, ChangeEvent.person, ChangeEvent.data)
        .where(ChangeEvent.seq > after)
        .order_by(ChangeEvent.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        FeedEvent(row.seq, row.type, row.integration_id, row.person, json.loads(row.data))
        for row in connection.execute(query)
    ]


def events(engine: Engine, integration_id: int | None = None) -> list[FeedEvent]:
    with engine.connect() as connection:
        found = read_events(connection)
    return [e for e in found if integration_id is None or e.integration_id == integration_id]


def head(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(select(OutboxHead.last_seq, OutboxHead.forgotten_through)).one()
    return int(row.last_seq), int(row.forgotten_through)


@dataclass
class Mirror:
    """A platform's copy: integrations, classes ``(integration, key)`` and members ``(integration, class, person)``."""

    integrations: dict[int, dict[str, Any]] = field(default_factory=dict)
    classes: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    members: dict[tuple[int, str, str], dict[str, Any]] = field(default_factory=dict)

    def apply(self, event: FeedEvent) -> None:
        i, data = event.integration_id, event.data
        if event.type == "integration.updated":
            self.integrations[i] = dict(data)
        elif event.type == "class.upserted":
            self.classes[(i, data["key"])] = {k: data[k] for k in ("name", "section", "state")}
        elif event.type == "class.removed":
            self.classes.pop((i, data["key"]), None)
            self._drop(lambda key: key[0] == i and key[1] == data["key"])
        elif event.type == "member.added":
            self.members[(i, data["class"], data["person"])] = {
                "role": data["role"],
                "display_name": data["display_name"],
            }
        elif event.type == "member.removed":
            self.members.pop((i, data["class"], data["person"]), None)
        elif event.type == "person.updated":
            for key, member in self.members.items():
                if key[0] == i and key[2] == data["person"]:
                    member["display_name"] = data["display_name"]
        elif event.type == "integration.purged":
            self.classes = {key: value for key, value in self.classes.items() if key[0] != i}
            self._drop(lambda key: key[0] == i)
        elif event.type == "person.erased":
            self._drop(lambda key: key[0] == i and key[2] == data["person"])
        else:
            raise AssertionError(f"unknown event type {event.type}")

    def _drop(self, goes: Any) -> None:
        self.members = {key: value for key, value in self.members.items() if not goes(key)}

    def roster(self) -> Roster:
        return Roster(self.integrations, self.classes, self.members)


@dataclass(frozen=True)
class Roster:
    integrations: dict[int, dict[str, Any]]
    classes: dict[tuple[int, str], dict[str, Any]]
    members: dict[tuple[int, str, str], dict[str, Any]]


def stored_roster(engine: Engine) -> Roster:
    """What the tables hold now, in the mirror's shape: current classes and current members of current classes."""
    with engine.connect() as connection:
        integrations = {
            row.id: {"status": row.status, "provider": row.provider, "tenant": row.tenant, "linked_by": row.linked_by}
            for row in connection.execute(select(Integration))
        }
        classes = {
            (row.integration_id, row.external_id): {"name": row.name, "section": row.section, "state": row.state}
            for row in connection.execute(select(SchoolClass).where(SchoolClass.removed_at.is_(None)))
        }
        members = connection.execute(
            select(
                Enrollment.integration_id,
                SchoolClass.external_id,
                Person.pseudonym,
                Enrollment.role,
                Person.display_name,
            )
            .join(SchoolClass, SchoolClass.id == Enrollment.class_id)
            .join(Person, Person.id == Enrollment.person_id)
            .where(Enrollment.removed_at.is_(None), SchoolClass.removed_at.is_(None))
        )
        return Roster(
            integrations,
            classes,
            {
                (row.integration_id, row.external_id, row.pseudonym): {
                    "role": row.role,
                    "display_name": row.display_name if row.role == "teacher" else None,
                }
                for row in members
            },
        )


def replayed(engine: Engine) -> Mirror:
    """A mirror that followed the whole feed kept so far."""
    mirror = Mirror()
    for event in events(engine):
        mirror.apply(event)
    return mirror
