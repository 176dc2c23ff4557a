"""Where webhook delivery of the change feed stands: the one ``webhook_cursor`` row, read, claimed, moved.

Delivery is at least once and in seq order: a batch is read from ``delivered_through`` on, sent, and the
position moves past it only after the receiver answered 2xx. One batch is in flight at a time, whichever
process sends it: ``claim`` holds the row's lock for the length of one batch. On PostgreSQL that is
``SELECT .. FOR UPDATE SKIP LOCKED`` in a transaction kept open across the POST (a row lock only: the
outbox and the syncs never touch this row); a second worker finds the row taken and leaves. On SQLite the
database's one write lock cannot be held across an HTTP call without stopping every sync, so the lock is
the process's (SQLite is the one-machine default, where the in-process worker delivers); the position
still only moves from where the batch started (``WHERE delivered_through = :start``), so a replay made
meanwhile wins and nothing is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select, update

from store import feed
from store.db import ADVISORY_READ, utcnow
from store.models import ChangeEvent, OutboxHead, WebhookCursor

ERROR_LENGTH = 300
"""Longest ``last_error`` kept; the texts are fixed words from services.webhooks, never a receiver's body."""

_sqlite_lock = threading.Lock()


@dataclass(frozen=True)
class Position:
    """The cursor row and the feed's ends, as ``rostersync webhooks status`` and /metrics show them."""

    delivered_through: int
    failures: int
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    head: int  # the newest seq handed out
    forgotten_through: int  # the newest seq retention deleted

    @property
    def lag(self) -> int:
        """Events written but not yet delivered."""
        return max(0, self.head - self.delivered_through)


def _head(connection: Connection) -> tuple[int, int]:
    """(head, forgotten_through): the counter row, or the newest event where a writer left no counter."""
    row = connection.execute(select(OutboxHead.last_seq, OutboxHead.forgotten_through)).first()
    newest = connection.execute(select(func.coalesce(func.max(ChangeEvent.seq), 0))).scalar_one()
    last_seq, forgotten = (int(row[0]), int(row[1])) if row is not None else (0, 0)
    return max(last_seq, int(newest)), forgotten


def _position(connection: Connection) -> Position:
    row = connection.execute(select(WebhookCursor).where(WebhookCursor.id == 1)).one()
    head, forgotten = _head(connection)
    return Position(
        delivered_through=int(row.delivered_through),
        failures=int(row.failures),
        last_attempt_at=row.last_attempt_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        head=head,
        forgotten_through=forgotten,
    )


def read(engine: Engine) -> Position:
    """The position as last committed (a read that takes no lock, on either database)."""
    with engine.connect().execution_options(**{ADVISORY_READ: True}) as connection, connection.begin():
        return _position(connection)


class Claim:
    """One batch's hold on the cursor row: read the position and the events past it, then move or fail."""

    def __init__(self, connection: Connection, position: Position, *, locked_here: bool) -> None:
        self._connection = connection
        self.position = position
        self._locked_here = locked_here  # PostgreSQL: this transaction holds the row; writes go through it

    def events(self, limit: int) -> list[feed.Event]:
        """The next ``limit`` events past the position, in seq order: the feed's reading, in the claim's transaction."""
        return feed.read_events(self._connection, self.position.delivered_through, limit)

    def advance(self, engine: Engine, through: int) -> bool:
        """After a 2xx: the position moves to ``through``, failures clear. False when a replay came between."""
        now = utcnow()
        statement = (
            update(WebhookCursor)
            .where(WebhookCursor.id == 1, WebhookCursor.delivered_through == self.position.delivered_through)
            .values(delivered_through=through, failures=0, last_attempt_at=now, last_success_at=now, last_error="")
        )
        return self._write(engine, statement)

    def fail(self, engine: Engine, error: str) -> None:
        """A failed attempt: counted, timed and described (fixed words), the position unchanged."""
        statement = (
            update(WebhookCursor)
            .where(WebhookCursor.id == 1)
            .values(failures=WebhookCursor.failures + 1, last_attempt_at=utcnow(), last_error=error[:ERROR_LENGTH])
        )
        self._write(engine, statement)

    def _write(self, engine: Engine, statement: object) -> bool:
        if self._locked_here:
            return bool(self._connection.execute(statement).rowcount)  # type: ignore[call-overload]
        with engine.begin() as connection:
            return bool(connection.execute(statement).rowcount)  # type: ignore[call-overload]


@contextmanager
def claim(engine: Engine) -> Iterator[Claim | None]:
    """Hold the cursor for one batch; None when another delivery holds it (it will send what is pending)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection, connection.begin():
            taken = connection.execute(
                select(WebhookCursor.id).where(WebhookCursor.id == 1).with_for_update(skip_locked=True)
            ).first()
            if taken is None:
                yield None
                return
            yield Claim(connection, _position(connection), locked_here=True)
        return
    if not _sqlite_lock.acquire(blocking=False):
        yield None
        return
    try:
        with engine.connect().execution_options(**{ADVISORY_READ: True}) as connection, connection.begin():
            yield Claim(connection, _position(connection), locked_here=False)
    finally:
        _sqlite_lock.release()


class ReplayRefused(Exception):
    """``webhooks replay --from SEQ`` cannot move there; the message says why and what would work."""


def replay_from(engine: Engine, first: int) -> Position:
    """Move the position back so that delivery resends from ``first`` on; returns the position before.

    Refused past the head (nothing to send), below what retention forgot (those events are gone: the
    receiver needs a new snapshot), and forwards (that would skip events never delivered).
    """
    with engine.begin() as connection:
        # After the batch in flight (PostgreSQL: it holds this row), so the checks see where it left the position.
        connection.execute(select(WebhookCursor.id).where(WebhookCursor.id == 1).with_for_update())
        before = _position(connection)
        oldest = before.forgotten_through + 1
        if first > before.head:
            raise ReplayRefused(f"seq {first} is beyond the head of the feed ({before.head}); nothing to replay")
        if first < oldest:
            raise ReplayRefused(
                f"seq {first} is older than the oldest event kept ({oldest}): retention forgot it; "
                "the receiver must take a new snapshot"
            )
        if first - 1 > before.delivered_through:
            raise ReplayRefused(
                f"seq {first} is past the delivery position ({before.delivered_through}): replay only moves back"
            )
        connection.execute(
            update(WebhookCursor).where(WebhookCursor.id == 1).values(delivered_through=first - 1, failures=0)
        )
    return before
