"""A first sync's change events on SQLite, written set-based from the values its bulk write has in hand.

Why: SQLite's outbox insert triggers (migration ``0009_outbox_triggers``) are row triggers: each new
class and enrolment runs a trigger program of its own that raises ``outbox_head`` by one and joins the
row to ``classes`` and ``people`` for the class key, the pseudonym and a teacher's name. On a first
sync that was most of what the outbox cost, yet the bulk write (store.bulk) holds every one of those
values already: the page's class keys and the pseudonyms it looked the ids up by. So around each insert
of new classes or enrolments it pauses the table's insert trigger for its integration (a row in
``outbox_pause``, honoured by the insert triggers since migration ``0010_outbox_bulk_events``, inserted
and deleted inside the write's own fenced transaction, so no other transaction ever sees it) and writes
the same events itself: one seq allocation from ``outbox_head`` (store.outbox.allocate, whose lock keeps
seq order commit order) and one ``INSERT .. SELECT`` of the page's values, their JSON built by the same
SQL function as the triggers', in the rows' insert order. Updates, deletes and every other writer of the
roster are untouched: their triggers write their events as before.

PostgreSQL keeps its statement triggers for these rows too: one join of a whole page's new rows costs
its server no more than events built from the values in hand, and sending those costs the client more
(measured: BENCHMARKS.md, "The outbox on a first sync"). The bulk write stands in for a trigger only
where that trigger is there: the bench's ``--without-outbox`` databases drop the outbox's triggers
(devtools/outbox_off.py) and must then write no event either.
"""

# ruff: noqa: S608  (the SQL is this module's constants; values go as parameters)
from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, text

from store import outbox

ClassEvent = tuple[str, str, str | None, str]
"""A new class: external id (the event's ``key``), name, section, state."""
MemberEvent = tuple[str, str, str, str | None]
"""A new enrolment: class key, pseudonym, role, the person's display name if a teacher (else None)."""

INSERT_TRIGGERS = {"classes": "outbox_class_added", "enrollments": "outbox_member_added"}
"""The SQLite insert trigger of each table (migration 0009)."""

_PAUSE = text(
    "INSERT INTO outbox_pause (integration_id) SELECT :integration_id WHERE EXISTS "
    "(SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table AND name = :trigger)"
)
_UNPAUSE = text("DELETE FROM outbox_pause WHERE integration_id = :integration_id")
_COLUMNS = "seq, at, type, integration_id, person, data"
_SQLITE = {
    "classes": (
        f"INSERT INTO change_events ({_COLUMNS}) SELECT ? + key, strftime('%Y-%m-%d %H:%M:%f', 'now'),"
        " 'class.upserted', ?, NULL,"
        " json_object('key', value ->> 0, 'name', value ->> 1, 'section', value ->> 2, 'state', value ->> 3)"
        " FROM json_each(?) ORDER BY key"
    ),
    "enrollments": (
        f"INSERT INTO change_events ({_COLUMNS}) SELECT ? + key, strftime('%Y-%m-%d %H:%M:%f', 'now'),"
        " 'member.added', ?, value ->> 1,"
        " json_object('class', value ->> 0, 'person', value ->> 1, 'role', value ->> 2, 'display_name', value ->> 3)"
        " FROM json_each(?) ORDER BY key"
    ),
}
"""The events of one table's new rows, as its insert trigger writes them, from the rows as one JSON array:
seq ``first + position`` in the rows' order."""


def tells_itself(connection: Connection) -> bool:
    """Whether a bulk write on this connection tells its new rows' events itself (SQLite), so that it gathers
    them; on PostgreSQL the statement triggers do, and gathering them would be work thrown away."""
    return connection.dialect.name != "postgresql"


def pause_insert_trigger(connection: Connection, integration_id: int, table: str) -> bool:
    """Pause the table's insert trigger for the integration, in this transaction only, on SQLite; False
    (nothing paused: the trigger tells the rows' events, or there is none to tell them) on PostgreSQL, and
    where the outbox's trigger is absent.

    Why not PostgreSQL: there the statement trigger joins a whole page's new rows to ``classes`` and
    ``people`` at once, and that join costs the server no more than these events built from the values
    in hand, while sending them costs the client more (measured: BENCHMARKS.md, "The outbox on a first
    sync"). On SQLite each row's trigger is a program of its own: a head update and two look-ups a row.
    """
    if not tells_itself(connection):
        return False
    params = {"integration_id": integration_id, "table": table, "trigger": INSERT_TRIGGERS[table]}
    return bool(connection.execute(_PAUSE, params).rowcount)


def unpause(connection: Connection, integration_id: int) -> None:
    """Insert triggers (and the hard deletes' ones) write the integration's events again."""
    connection.execute(_UNPAUSE, {"integration_id": integration_id})


def write(
    connection: Connection, integration_id: int, table: str, events: Sequence[ClassEvent] | Sequence[MemberEvent]
) -> None:
    """The events of the rows just inserted into ``table`` (in their insert order), with one seq allocation."""
    if not events:
        return
    first = outbox.allocate(connection, len(events))
    connection.exec_driver_sql(_SQLITE[table], (first, integration_id, json.dumps(events)))
