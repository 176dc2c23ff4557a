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

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

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


class Event(NamedTuple):
    """One event as stored; ``data`` is the JSON text the outbox wrote (pseudonyms and class keys only).

    A named tuple, not a frozen dataclass: a page makes a thousand of them, and a frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` a field) was a tenth of a page's time.
    """

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


def read_events(connection: Connection, after: int, limit: int) -> list[Event]:
    """Up to ``limit`` events with ``seq > after``, in seq order, on the caller's connection (its transaction)."""
    rows = connection.execute(
        select(ChangeEvent.seq, ChangeEvent.at, ChangeEvent.type, ChangeEvent.integration_id, ChangeEvent.data)
        .where(ChangeEvent.seq > after)
        .order_by(ChangeEvent.seq)
        .limit(limit)
    ).all()
    return [Event._make(row) for row in rows]


def events_after(engine: Engine, after: int, limit: int) -> FeedPage:
    """Up to ``limit`` events with ``seq > after``, in seq order; ``OutOfWindow`` when ``after`` cannot be served.

    ``after == 0`` is "from the oldest kept" and is never refused. The events are read first and the
    counter row second: a retention sweep that commits in between makes the page refused instead of
    returned with a hole at its start.
    """
    with engine.connect() as connection:
        events = read_events(connection, after, limit)
        current = _head(connection)
    if after and (after < current.forgotten_through or after > current.last_seq):
        raise OutOfWindow(after, current)
    return FeedPage(events, current)


def event_items(events: Sequence[Event], data: Callable[[Event], str] | None = None) -> str:
    """The events as the comma-separated items of a JSON array, as ``/v1/changes`` serves them and a webhook batch
    carries them: ``seq``, ``at`` (RFC 3339 with its offset), ``type``, ``integration_id``, ``data``.

    The one writer of an event's JSON, so the feed and the webhooks cannot drift apart. ``data`` is spliced in as
    the outbox wrote it (parsing and re-encoding 1,000 small objects was most of a page's time), unless ``data``
    gives its text otherwise (a webhook batch compacts it). ``at`` is naive UTC, as every stored time is, so its
    offset is written, not computed.
    """
    quoted = {kind: json.dumps(kind) for kind in {e.type for e in events}}
    return ",".join(
        f'{{"seq":{e.seq},"at":"{e.at.isoformat()}+00:00","type":{quoted[e.type]},'
        f'"integration_id":{e.integration_id},"data":{e.data if data is None else data(e)}}}'
        for e in events
    )


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
