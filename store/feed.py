"""The read side of the platform API (docs/platform.md): pages of the change feed, and the snapshot.

The outbox (``change_events``, ``outbox_head``) is written in the roster change's own transaction;
this module only reads it. A feed page is read before the counter row, so that a retention sweep
committing between the two reads makes the page refused (``Forgotten``) rather than silently short.

Snapshots are keyset pages (``WHERE id > :after ORDER BY id LIMIT :n``): each request reads at most
one page from the database, so a district of 100,000 students is never held in memory, and a page
costs the same at the end of a listing as at its start. Consecutive pages are not one point in time:
a consumer takes the feed's head *before* the snapshot and applies the feed from there, and every
event is idempotent, so it ends in step (docs/platform.md, "Staying in step").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, select

from store.models import ChangeEvent, Enrollment, Integration, OutboxHead, Person, SchoolClass

WITHOUT_ROSTER = ("revoked", "degraded")
"""Statuses whose roster was purged when they were set: their classes and members are empty lists."""


# ------------------------------------------------------------------------------------------ the feed
@dataclass(frozen=True)
class Head:
    """The counter row: the last seq handed out, and the highest seq retention has deleted."""

    last_seq: int
    forgotten_through: int


@dataclass(frozen=True)
class Event:
    """One event as stored; ``data`` is the JSON text the outbox wrote (pseudonyms and class keys only)."""

    seq: int
    at: datetime
    type: str
    integration_id: int
    data: str


class OutOfWindow(Exception):
    """A position this feed cannot serve: older than the events kept, or past the last seq handed out.

    Either way the reader is not in step any more (it missed events, or its position came from another
    database, a restored backup say) and must take a new snapshot.
    """

    def __init__(self, position: int, current: Head) -> None:
        self.position = position
        self.head = current
        self.forgotten = position < current.forgotten_through
        where = "older than the events kept" if self.forgotten else "past the feed's head"
        super().__init__(f"position {position} is {where}")


@dataclass(frozen=True)
class FeedPage:
    """Events after a position, and the counter row as it stood just after they were read."""

    events: list[Event]
    head: Head


def _head(connection: Connection) -> Head:
    row = connection.execute(select(OutboxHead.last_seq, OutboxHead.forgotten_through)).one_or_none()
    return Head(row.last_seq, row.forgotten_through) if row is not None else Head(0, 0)


def head(engine: Engine) -> Head:
    with engine.connect() as connection:
        return _head(connection)


def events_after(engine: Engine, after: int, limit: int) -> FeedPage:
    """Up to ``limit`` events with ``seq > after``, in seq order; ``OutOfWindow`` when ``after`` cannot be served.

    ``after == 0`` is "from the oldest kept" and is never refused. The events are read first and the
    counter row second: a retention sweep that commits in between makes the page refused instead of
    returned with a hole at its start.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            select(ChangeEvent.seq, ChangeEvent.at, ChangeEvent.type, ChangeEvent.integration_id, ChangeEvent.data)
            .where(ChangeEvent.seq > after)
            .order_by(ChangeEvent.seq)
            .limit(limit)
        ).all()
        current = _head(connection)
    if after and (after < current.forgotten_through or after > current.last_seq):
        raise OutOfWindow(after, current)
    return FeedPage([Event(row.seq, row.at, row.type, row.integration_id, row.data) for row in rows], current)


# ------------------------------------------------------------------------------------------ snapshot
@dataclass(frozen=True)
class Page:
    """One keyset page: its items and the id to continue after (None: this was the last page)."""

    items: list[dict[str, Any]]
    next_after: int | None


def _page(engine: Engine, query: Select[*tuple[Any, ...]], key: Any, after: int, limit: int) -> Page:
    """``limit + 1`` rows asked for, so that the last page says so instead of costing one more empty request."""
    with engine.connect() as connection:
        rows = connection.execute(query.where(key > after).order_by(key).limit(limit + 1)).mappings().all()
    kept = rows[:limit]
    items = [{name: value for name, value in row.items() if name != "position"} for row in kept]
    return Page(items, kept[-1]["position"] if len(rows) > limit else None)


def integration_status(engine: Engine, integration_id: int) -> str | None:
    """The integration's status; None when there is no such integration (any more)."""
    with engine.connect() as connection:
        status = connection.execute(select(Integration.status).where(Integration.id == integration_id)).scalar()
    return str(status) if status is not None else None


def integrations(engine: Engine, *, tenant: str | None, status: str | None, after: int, limit: int) -> Page:
    """Integrations in id order, optionally of one tenant and one status; ``updated_at`` is the last status change."""
    query = select(
        Integration.id.label("position"),
        Integration.id,
        Integration.provider,
        Integration.tenant,
        Integration.linked_by,
        Integration.status,
        Integration.consent_basis,
        Integration.status_changed_at.label("updated_at"),
    )
    if tenant is not None:
        query = query.where(Integration.tenant == tenant)
    if status is not None:
        query = query.where(Integration.status == status)
    return _page(engine, query, Integration.id, after, limit)


def classes(engine: Engine, integration_id: int, *, after: int, limit: int) -> Page:
    """The classes the integration holds now (not removed), in row order; the caller has checked its status."""
    query = select(
        SchoolClass.id.label("position"),
        SchoolClass.external_id.label("key"),
        SchoolClass.name,
        SchoolClass.section,
        SchoolClass.state,
    ).where(SchoolClass.integration_id == integration_id, SchoolClass.removed_at.is_(None))
    return _page(engine, query, SchoolClass.id, after, limit)


def members(engine: Engine, integration_id: int, *, class_key: str | None, after: int, limit: int) -> Page:
    """Current enrolments (of current people in current classes), in row order; names for teachers only."""
    query = (
        select(
            Enrollment.id.label("position"),
            SchoolClass.external_id.label("class"),
            Person.pseudonym.label("person"),
            Enrollment.role,
            Person.display_name,
        )
        .join(SchoolClass, SchoolClass.id == Enrollment.class_id)
        .join(Person, Person.id == Enrollment.person_id)
        .where(
            Enrollment.integration_id == integration_id,
            Enrollment.removed_at.is_(None),
            SchoolClass.removed_at.is_(None),
            Person.removed_at.is_(None),
        )
    )
    if class_key is not None:
        query = query.where(SchoolClass.external_id == class_key)
    page = _page(engine, query, Enrollment.id, after, limit)
    for item in page.items:
        if item["role"] != "teacher":
            item["display_name"] = None  # never stored for a student; said here too, so no path can leak one
    return page
