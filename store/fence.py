"""Fenced write transactions: a revoke that commits first turns every later sync write into a no-op.

A sync remembers the integration's ``generation`` when it starts. Each of its write
transactions first re-reads ``status`` and ``generation`` under a lock (``FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` write lock), and aborts with ``Fenced`` if a revoke
bumped the generation or changed the status meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, select

from store.models import Integration

SYNCABLE = ("active",)


class Fenced(Exception):
    """The integration was revoked (or re-linked) after this sync started; stop, write nothing."""

    def __init__(self, integration_id: int) -> None:
        super().__init__(f"integration {integration_id} changed under the sync; write discarded")
        self.integration_id = integration_id


@contextmanager
def fenced(engine: Engine, integration_id: int, generation: int) -> Iterator[Connection]:
    with engine.begin() as connection:
        row = connection.execute(
            select(Integration.status, Integration.generation).where(Integration.id == integration_id).with_for_update()
        ).one_or_none()
        if row is None or row.status not in SYNCABLE or row.generation != generation:
            raise Fenced(integration_id)
        yield connection
