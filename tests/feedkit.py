"""Writing the change feed the way the outbox does, for tests of its read side (store.feed, /v1).

Until the outbox writes events in the roster change's own transaction, tests put them in directly:
seq taken from ``outbox_head`` under its row lock, in one transaction with the rows. ``forget``
is the retention sweep's part: delete up to a seq and remember how far.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from store.db import utcnow
from store.models import ChangeEvent, OutboxHead

Written = tuple[str, int, dict[str, Any]]
"""``(type, integration_id, data)``: one event to write."""


def write_events(engine: Engine, events: Sequence[Written], *, at: datetime | None = None) -> list[int]:
    """Append the events in order, in one transaction; returns their seqs."""
    with engine.begin() as connection:
        last = connection.execute(select(OutboxHead.last_seq).where(OutboxHead.id == 1).with_for_update()).scalar_one()
        rows = [
            {
                "seq": last + offset,
                "at": at or utcnow(),
                "type": kind,
                "integration_id": integration_id,
                "person": data.get("person"),
                "data": json.dumps(data),
            }
            for offset, (kind, integration_id, data) in enumerate(events, start=1)
        ]
        if rows:
            connection.execute(insert(ChangeEvent), rows)
            connection.execute(update(OutboxHead).where(OutboxHead.id == 1).values(last_seq=last + len(rows)))
    return [row["seq"] for row in rows]


def forget(engine: Engine, through: int) -> None:
    """What retention does: events up to ``through`` deleted, and the counter row told so."""
    with engine.begin() as connection:
        connection.execute(delete(ChangeEvent).where(ChangeEvent.seq <= through))
        connection.execute(update(OutboxHead).where(OutboxHead.id == 1).values(forgotten_through=through))
