"""Fenced write transactions: a revoke that commits first turns every later sync write into a no-op.

A sync remembers the integration's ``generation`` when it starts. Each of its write
transactions first re-reads ``status`` and ``generation`` under a lock (``FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` write lock), and aborts with ``Fenced`` if a revoke
bumped the generation or changed the status meanwhile.

A sync also holds a lease, so that two syncs of one integration never interleave their writes.
The fence checks the lease too: a sync whose lease was taken over by another (it outlived it)
stops at its next write. A sync that still holds its lease renews it here, once half of it is
spent, so a long sync keeps it without a timer thread of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, Engine, bindparam, select, update

from store.db import ADVISORY_READ, WROTE, utcnow, wrote
from store.models import Integration

SYNCABLE = ("active", "blocked")
"""Statuses a sync may run and write on: ``blocked`` too, since only a sync can find the block lifted."""

_STATE = select(
    Integration.status, Integration.generation, Integration.lease_owner, Integration.lease_expires_at
).where(Integration.id == bindparam("integration_id"))
"""Built once: the check runs after every provider page, and building the statement cost more than running it."""
_LOCKED_STATE = _STATE.with_for_update()


class Fenced(Exception):
    """The integration was revoked (or re-linked, or its lease taken over) after this sync started; stop."""

    def __init__(self, integration_id: int, why: str = "changed under the sync") -> None:
        super().__init__(f"integration {integration_id} {why}; write discarded")
        self.integration_id = integration_id


@dataclass(frozen=True)
class Lease:
    """Who holds the integration's lease and for how long each renewal lasts."""

    owner: str
    seconds: int


def still_current(engine: Engine, integration_id: int, generation: int, lease: Lease | None = None) -> None:
    """Raise ``Fenced`` if a revoke, re-link or lease take-over has committed; an unlocked read, no write
    (but for renewing the lease once half of it is spent).

    Between two fenced writes a sync reads several provider pages; checking here after each page
    keeps it from asking the provider for more once the integration has ended (the write that
    follows is fenced all the same).
    """
    with engine.connect().execution_options(**read_options(engine)) as connection:
        row = connection.execute(_STATE, {"integration_id": integration_id}).one_or_none()
    if row is None or row.status not in SYNCABLE or row.generation != generation:
        raise Fenced(integration_id)
    if lease is None:
        return
    if row.lease_owner != lease.owner:
        raise Fenced(integration_id, "lease was taken over by another sync")
    if row.lease_expires_at is None or row.lease_expires_at - utcnow() < timedelta(seconds=lease.seconds / 2):
        with fenced(engine, integration_id, generation, lease):
            pass  # renews the lease under the lock, as a write would, so a long run of reads keeps it


def read_options(engine: Engine) -> dict[str, object]:
    """The unlocked read's connection: on PostgreSQL in autocommit, one round trip for the ``SELECT`` alone.

    A read in a transaction costs two more (``BEGIN``, then ``ROLLBACK`` when the connection goes back to
    the pool), and the big teacher's sync reads the fence before each of its hundred batches. A single
    statement sees the latest commit either way (READ COMMITTED). SQLite keeps its own setting: its
    connections run without a driver transaction already, and the advisory option spares the write lock.
    """
    if engine.dialect.name == "postgresql":
        return {ADVISORY_READ: True, "isolation_level": "AUTOCOMMIT"}
    return {ADVISORY_READ: True}


@contextmanager
def fenced(engine: Engine, integration_id: int, generation: int, lease: Lease | None = None) -> Iterator[Connection]:
    """A write transaction on the generation (and the lease) the caller started on; ``Fenced`` otherwise.

    One that wrote no row is rolled back rather than committed: the same outcome (its only change was the
    row lock), but on PostgreSQL a commit of a transaction that locked a row waits for the write-ahead log
    to reach the disk, and a no-change re-sync's fenced writes were each such a wait.
    """
    with engine.begin() as connection:
        connection.info[WROTE] = False
        row = connection.execute(_LOCKED_STATE, {"integration_id": integration_id}).one_or_none()
        if row is None or row.status not in SYNCABLE or row.generation != generation:
            raise Fenced(integration_id)
        if lease is not None:
            if row.lease_owner != lease.owner:
                raise Fenced(integration_id, "lease was taken over by another sync")
            now = utcnow()
            if row.lease_expires_at is None or row.lease_expires_at - now < timedelta(seconds=lease.seconds / 2):
                connection.execute(
                    update(Integration)
                    .where(Integration.id == integration_id)
                    .values(lease_expires_at=now + timedelta(seconds=lease.seconds))
                )
        yield connection
        if not wrote(connection):
            connection.rollback()
