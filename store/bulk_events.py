"""A first sync's change events, written set-based from the values its bulk write has in hand (store.bulk).

Why: the outbox's insert triggers (migration ``0009_outbox_triggers``) describe each new class and
enrolment by joining the new rows to ``classes`` and ``people`` for the class key, the pseudonym and a
teacher's name. On a first sync that join (and, on SQLite, a trigger program, a head update and two
lookups a row) is most of what the outbox costs, yet the bulk write holds every one of those values
already: the page's class keys and the pseudonyms it looked the ids up by. So around each ``COPY`` of
new classes or enrolments the bulk write pauses the insert trigger for its integration (a row in
``outbox_pause``, migration ``0010_outbox_bulk_events``, inserted and deleted inside the write's own
fenced transaction, so no other transaction ever sees it) and writes the same events itself: one seq
allocation from ``outbox_head`` (store.outbox.allocate, whose lock keeps seq order commit order) and
one ``INSERT .. SELECT`` of the page's values, their JSON built by the same SQL functions as the
triggers', in the order the trigger gives (the rows' insert order). Updates, deletes and every other
writer of the roster are untouched: their triggers write their events as before.

The bulk write stands in for the trigger only where the trigger is there: the pause row is inserted
only if the table's insert trigger exists (the bench's ``--without-outbox`` databases drop the outbox's
triggers, devtools/outbox_off.py, and must then write no event either).
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

INSERT_TRIGGERS = {
    "classes": ("outbox_classes_insert", "outbox_class_added"),
    "enrollments": ("outbox_enrollments_insert", "outbox_member_added"),
}
"""The insert trigger each table has on PostgreSQL and on SQLite (migration 0009)."""

_PAUSE = {
    "postgresql": text(
        "INSERT INTO outbox_pause (integration_id) SELECT :integration_id WHERE EXISTS "
        "(SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(:table) AND tgname = :trigger)"
    ),
    "sqlite": text(
        "INSERT INTO outbox_pause (integration_id) SELECT :integration_id WHERE EXISTS "
        "(SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table AND name = :trigger)"
    ),
}
_UNPAUSE = text("DELETE FROM outbox_pause WHERE integration_id = :integration_id")
_COLUMNS = "seq, at, type, integration_id, person, data"
_POSTGRESQL = {
    "classes": (
        f"INSERT INTO change_events ({_COLUMNS}) SELECT %s + e.ord, statement_timestamp() AT TIME ZONE 'UTC',"
        " 'class.upserted', %s, NULL,"
        " json_build_object('key', e.v ->> 0, 'name', e.v ->> 1, 'section', e.v ->> 2, 'state', e.v ->> 3)::text"
        " FROM json_array_elements(%s::json) WITH ORDINALITY AS e(v, ord)"
    ),
    "enrollments": (
        f"INSERT INTO change_events ({_COLUMNS}) SELECT %s + e.ord, statement_timestamp() AT TIME ZONE 'UTC',"
        " 'member.added', %s, e.v ->> 1, json_build_object('class', e.v ->> 0, 'person', e.v ->> 1,"
        " 'role', e.v ->> 2, 'display_name', e.v ->> 3)::text"
        " FROM json_array_elements(%s::json) WITH ORDINALITY AS e(v, ord)"
    ),
}
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
"""The events of one table's new rows, as its insert trigger writes them, from the rows as one JSON array
(one parameter: a quarter of the client's CPU of four text arrays, measured): seq ``first + position``
(PostgreSQL's ordinality counts from 1, SQLite's array index from 0: each is given the matching base)."""


def pause_insert_trigger(connection: Connection, integration_id: int, table: str) -> bool:
    """Pause the table's insert trigger for the integration, in this transaction only; False (nothing paused,
    and the caller writes no event) where the outbox's trigger is absent."""
    dialect = "postgresql" if connection.dialect.name == "postgresql" else "sqlite"
    trigger = INSERT_TRIGGERS[table][0 if dialect == "postgresql" else 1]
    params = {"integration_id": integration_id, "table": table, "trigger": trigger}
    return bool(connection.execute(_PAUSE[dialect], params).rowcount)


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
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_POSTGRESQL[table], (first - 1, integration_id, json.dumps(events)))
    else:
        connection.exec_driver_sql(_SQLITE[table], (first, integration_id, json.dumps(events)))
