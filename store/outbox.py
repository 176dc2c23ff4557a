"""The transactional outbox of the platform's change feed (docs/architecture.md, The outbox; docs/platform.md).

Roster events are written by database triggers (migration ``0009_outbox_triggers``) in the transaction
of the change they describe, so every path that writes the roster writes its events, fenced alike (on SQLite a
first sync's bulk write tells its own inserts while it pauses their triggers: store.bulk_events). This
module writes the events no roster row stands for (a purge, an erase) with the same sequence allocation,
and makes the outbox forget: an erased person's events, a purged integration's, and everything older
than the feed's retention window.

Sequence numbers: ``outbox_head.last_seq`` is raised by ``UPDATE .. RETURNING`` and the writer holds
that row's lock until it commits, so a second writer gets its numbers only after the first has
committed: seq order is commit order, and a reader that has seen seq 105 can never later find a 103.
Lock order is always the integration's row first (the fence, a revoke, an erase), then the head; a
transaction that takes the head never waits for an integration row after it (store.retention locks
every integration it purges before it deletes anything).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, func, insert, literal_column, select, update

from store.db import utcnow
from store.models import PERSON_KEY, ChangeEvent, OutboxHead, OutboxPause

HEAD = 1
"""The id of the one ``outbox_head`` row."""


@dataclass(frozen=True)
class Event:
    """One change-feed event to append; ``person`` is the pseudonym it names, so an erase can forget it."""

    type: str
    integration_id: int
    data: dict[str, Any] = field(default_factory=dict)
    person: str | None = None


def allocate(connection: Connection, count: int) -> int:
    """Take ``count`` seqs from the head; returns the first. The head's row lock is held until commit."""
    last = connection.execute(
        update(OutboxHead)
        .where(OutboxHead.id == HEAD)
        .values(last_seq=OutboxHead.last_seq + count)
        .returning(OutboxHead.last_seq)
    ).scalar_one()
    return int(last) - count + 1


def append(connection: Connection, events: Sequence[Event]) -> list[int]:
    """Write these events in the caller's transaction, in order; returns their seqs."""
    if not events:
        return []
    first = allocate(connection, len(events))
    now = utcnow()
    rows = [
        {
            "seq": first + offset,
            "at": now,
            "type": event.type,
            "integration_id": event.integration_id,
            "person": event.person,
            "data": json.dumps(event.data, separators=(",", ":")),
        }
        for offset, event in enumerate(events)
    ]
    connection.execute(insert(ChangeEvent), rows)
    return list(range(first, first + len(events)))


def forget_integration(connection: Connection, integration_id: int) -> int:
    """Delete the events of this integration written so far (a purge) but its latest status; returns how many.

    The status (``integration.updated``: provider, tenant, status) names no roster data, and without it a
    consumer replaying the feed from the start would not know the integration that a re-link or the
    retention job purged exists at all.
    """
    latest = (
        select(func.max(ChangeEvent.seq))
        .where(ChangeEvent.integration_id == integration_id, ChangeEvent.type == "integration.updated")
        .scalar_subquery()
    )
    return int(
        connection.execute(
            delete(ChangeEvent).where(
                ChangeEvent.integration_id == integration_id, ChangeEvent.seq.is_distinct_from(latest)
            )
        ).rowcount
    )


def forget_person(connection: Connection, pseudonym: str) -> int:
    """Delete every event that names this pseudonym (an erase); returns how many."""
    return int(connection.execute(delete(ChangeEvent).where(naming(pseudonym))).rowcount)


def naming(pseudonym: str) -> ColumnElement[bool]:
    """The events that name this pseudonym, found through ``ix_change_events_person``, which keys each event
    by the pseudonym's first ``PERSON_KEY`` characters (store.models): the prefix picks the few candidates,
    the whole pseudonym decides. The prefix is written as the index's own expression (literal numbers, not
    parameters), or neither database would match the two."""
    key = func.substr(ChangeEvent.person, literal_column("1"), literal_column(str(PERSON_KEY)))
    return and_(key == pseudonym[:PERSON_KEY], ChangeEvent.person == pseudonym)


def pause(connection: Connection, integration_ids: Iterable[int]) -> None:
    """Hard deletes of these integrations' current rows write no ``*.removed`` event until ``unpause``.

    Inside the caller's transaction only: the row is deleted before the commit, so no other
    transaction ever sees it.
    """
    rows = [{"integration_id": integration_id} for integration_id in sorted(set(integration_ids))]
    if rows:
        connection.execute(insert(OutboxPause), rows)


def unpause(connection: Connection, integration_ids: Iterable[int]) -> None:
    ids = sorted(set(integration_ids))
    if ids:
        connection.execute(delete(OutboxPause).where(OutboxPause.integration_id.in_(ids)))


def purged(connection: Connection, integration_id: int) -> int:
    """The integration's roster is gone: forget its earlier events, then tell the platform; returns the seq.

    Called after the roster's delete (between ``pause`` and ``unpause``), in the same transaction.
    """
    forget_integration(connection, integration_id)
    return append(connection, [Event("integration.purged", integration_id)])[0]


def erased(connection: Connection, pseudonym: str, integration_ids: Iterable[int]) -> list[int]:
    """A person was erased: forget every event naming them, then one ``person.erased`` per integration."""
    forget_person(connection, pseudonym)
    events = [Event("person.erased", i, {"person": pseudonym}, pseudonym) for i in sorted(set(integration_ids))]
    return append(connection, events)


def prune(connection: Connection, older_than: datetime) -> int:
    """Delete the events older than ``older_than`` (the retention window); returns how many.

    Only a run of the oldest events goes: everything below the first event still in the window, so the
    feed always keeps a contiguous tail. ``forgotten_through`` rises to the highest seq deleted, and a
    reader whose position is below it must take a new snapshot (410 on ``/v1/changes``).
    """
    kept = connection.execute(select(func.min(ChangeEvent.seq)).where(ChangeEvent.at >= older_than)).scalar_one()
    if kept is None:
        kept = connection.execute(select(OutboxHead.last_seq).where(OutboxHead.id == HEAD)).scalar_one() + 1
    through = int(kept) - 1
    removed = int(connection.execute(delete(ChangeEvent).where(ChangeEvent.seq <= through)).rowcount)
    connection.execute(
        update(OutboxHead)
        .where(OutboxHead.id == HEAD, OutboxHead.forgotten_through < through)
        .values(forgotten_through=through)
    )
    return removed


def head(connection: Connection) -> tuple[int, int]:
    """``(last_seq, forgotten_through)``: the newest seq handed out and the highest one retention deleted."""
    row = connection.execute(
        select(OutboxHead.last_seq, OutboxHead.forgotten_through).where(OutboxHead.id == HEAD)
    ).one()
    return int(row.last_seq), int(row.forgotten_through)
