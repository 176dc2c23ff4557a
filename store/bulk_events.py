"""A first sync's change events on SQLite, written set-based for a whole page's new rows.

Why: SQLite's outbox insert triggers (migration ``0009_outbox_triggers``) are row triggers: each new
class and enrolment runs a trigger program of its own that raises ``outbox_head`` by one and joins the
row to ``classes`` and ``people`` for the class key, the pseudonym and a teacher's name. On a first
sync that was most of what the outbox cost. So around each insert of new classes or enrolments the bulk
write (store.bulk) pauses the table's insert trigger for its integration (a row in ``outbox_pause``,
honoured by the insert triggers since migration ``0010_outbox_bulk_events``, inserted and deleted inside
the write's own fenced transaction, so no other transaction ever sees it) and writes the same events
itself: one seq allocation from ``outbox_head`` (store.outbox.allocate, whose lock keeps seq order commit
order) and one ``INSERT .. SELECT`` over the rows it has just inserted (their ids, which this write
took), joined to their class and person by primary key as the trigger joins them, their JSON built by
the same SQL function as the triggers', in the rows' insert order. Updates, deletes and every other
writer of the roster are untouched: their triggers write their events as before.

PostgreSQL keeps its statement triggers for these rows too: one join of a whole page's new rows costs
its server no more than events built from the values in hand, and sending those costs the client more
(measured: BENCHMARKS.md, "The outbox on a first sync"). The bulk write stands in for a trigger only
where that trigger is there: the bench's ``--without-outbox`` databases drop the outbox's triggers
(devtools/outbox_off.py) and must then write no event either.
"""

# ruff: noqa: S608  (the SQL is this module's constants; values go as parameters)
from __future__ import annotations

from sqlalchemy import Connection, text

from store import outbox

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
        f"INSERT INTO change_events ({_COLUMNS}) SELECT ? + C.id - ?, strftime('%Y-%m-%d %H:%M:%f', 'now'),"
        " 'class.upserted', C.integration_id, NULL,"
        " json_object('key', C.external_id, 'name', C.name, 'section', C.section, 'state', C.state)"
        " FROM classes C WHERE C.id >= ? AND C.id < ? ORDER BY C.id"
    ),
    "enrollments": (
        f"INSERT INTO change_events ({_COLUMNS}) SELECT ? + E.id - ?, strftime('%Y-%m-%d %H:%M:%f', 'now'),"
        " 'member.added', E.integration_id, P.pseudonym,"
        " json_object('class', C.external_id, 'person', P.pseudonym, 'role', E.role,"
        " 'display_name', CASE WHEN E.role = 'teacher' THEN P.display_name END)"
        " FROM enrollments E JOIN classes C ON C.id = E.class_id JOIN people P ON P.id = E.person_id"
        " WHERE E.id >= ? AND E.id < ? ORDER BY E.id"
    ),
}
"""The events of one table's new rows, as its insert trigger writes them (the same columns, joins and JSON), for
the ids ``first_id`` to ``first_id + count - 1`` at once: seq ``first + id - first_id``, in id (insert) order."""


def tells_itself(connection: Connection) -> bool:
    """Whether a bulk write on this connection tells its new rows' events itself (SQLite); on PostgreSQL the
    statement triggers do."""
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


def write(connection: Connection, table: str, first_id: int, count: int) -> None:
    """The events of the ``count`` rows just inserted into ``table`` with the ids ``first_id`` onwards (their
    insert order), with one seq allocation; read back from the rows, one statement for all of them.

    Why read back, not sent: the rows' values are in the table and its two parents' primary keys, inside
    this transaction; sending them again as one JSON array (class key, pseudonym, role, a teacher's name
    an enrolment) cost the write the array's building, ``json.dumps`` and SQLite's parse of it: a fifth
    more CPU for the same events (measured: BENCHMARKS.md, "A first sync's SQLite writes"). Raises if
    fewer rows than ``count`` hold those ids: the ids were not the ones the insert took.
    """
    if count == 0:
        return
    first = outbox.allocate(connection, count)
    told = connection.exec_driver_sql(_SQLITE[table], (first, first_id, first_id, first_id + count))
    if told.rowcount != count:
        raise RuntimeError(f"{table}: {told.rowcount} new rows told of {count} inserted")
