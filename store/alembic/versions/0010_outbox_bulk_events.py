"""the outbox's insert triggers pause too (issue 22): a first sync's bulk write tells its own events

The insert triggers of ``classes`` and ``enrollments`` (``class.upserted``, ``member.added``) now write
nothing for an integration that has a row in ``outbox_pause``, as the hard deletes' triggers already
did. Only store.bulk_events inserts such a row around an insert, inside its own fenced transaction and
deleted before the commit: it writes the same events itself, set-based from the values the first
sync's write has in hand, instead of the triggers' join of every new row to ``classes`` and ``people``
(docs/architecture.md, The outbox). Every other writer never pauses an insert, so its rows' events are
written by the triggers as before; the update and delete triggers are unchanged.

- PostgreSQL: the two statement functions are replaced; each returns at once when every new row's
  integration is paused (no join, no head update), and otherwise leaves out the paused rows.
- SQLite: the two row triggers are created again with the pause in their ``WHEN``.

``ix_change_events_person`` keys each event by the first 8 characters of its pseudonym instead of all 64
(store.models, ``PERSON_KEY``): an erase still finds a person's events through it (the prefix, then the
whole pseudonym compared), and each event written costs the index less (about 0.4 s of CPU in 100,000
on SQLite, whose random 64-character keys were half the cost of writing an event).

Revision ID: 0010_outbox_bulk_events
Revises: 0009_outbox_triggers
Create Date: 2026-12-07 06:10:00
"""

# ruff: noqa: S608  (the SQL is built from this file's own constants only, never from input)
import sqlalchemy as sa
from alembic import op

revision = "0010_outbox_bulk_events"
down_revision = "0009_outbox_triggers"
branch_labels = None
depends_on = None

_COLUMNS = "seq, at, type, integration_id, person, data"
_UNPAUSED = "NOT EXISTS (SELECT 1 FROM outbox_pause WHERE outbox_pause.integration_id = {row}.integration_id)"

# --------------------------------------------------------------------------- PostgreSQL (as in 0009, and the pause)

_PG_SELECTS = {
    "classes": (
        "SELECT n.id AS ord, n.integration_id AS integration_id, 'class.upserted'::varchar AS type, "
        "NULL::varchar AS person, json_build_object('key', n.external_id, 'name', n.name, 'section', n.section, "
        "'state', n.state)::text AS data FROM new_rows n WHERE n.removed_at IS NULL"
    ),
    "enrollments": (
        "SELECT n.id AS ord, n.integration_id AS integration_id, 'member.added'::varchar AS type, "
        "P.pseudonym::varchar AS person, json_build_object('class', C.external_id, 'person', P.pseudonym, "
        "'role', n.role, 'display_name', CASE WHEN n.role = 'teacher' THEN P.display_name END)::text AS data "
        "FROM new_rows n JOIN classes C ON C.id = n.class_id JOIN people P ON P.id = n.person_id "
        "WHERE n.removed_at IS NULL"
    ),
}


def _pg_function(table: str, paused: bool) -> str:
    select = _PG_SELECTS[table]
    early = ""
    if paused:
        select += " AND " + _UNPAUSED.format(row="n")
        early = (
            f"IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE {_UNPAUSED.format(row='n')}) THEN\n"
            "        RETURN NULL;  -- every row's events are written by the bulk write that paused the trigger\n"
            "    END IF;\n    "
        )
    return f"""
CREATE OR REPLACE FUNCTION outbox_{table}_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {early}WITH events AS MATERIALIZED ({select}),
    wanted AS (SELECT count(*) AS n FROM events),
    head AS (
        UPDATE outbox_head SET last_seq = last_seq + wanted.n FROM wanted
        WHERE outbox_head.id = 1 AND wanted.n > 0 RETURNING outbox_head.last_seq, wanted.n
    )
    INSERT INTO change_events ({_COLUMNS})
    SELECT head.last_seq - head.n + row_number() OVER (ORDER BY events.ord, events.type),
           statement_timestamp() AT TIME ZONE 'UTC', events.type, events.integration_id, events.person, events.data
    FROM events CROSS JOIN head;
    RETURN NULL;
END;
$$;
"""


# ----------------------------------------------------------------------------------- SQLite (as in 0009, and the pause)

_SQLITE = {
    "class_added": (
        "classes",
        "SELECT outbox_head.last_seq, strftime('%Y-%m-%d %H:%M:%f', 'now'), 'class.upserted', NEW.integration_id, "
        "NULL, json_object('key', NEW.external_id, 'name', NEW.name, 'section', NEW.section, 'state', NEW.state) "
        "FROM outbox_head WHERE outbox_head.id = 1",
    ),
    "member_added": (
        "enrollments",
        "SELECT outbox_head.last_seq, strftime('%Y-%m-%d %H:%M:%f', 'now'), 'member.added', NEW.integration_id, "
        "P.pseudonym, json_object('class', C.external_id, 'person', P.pseudonym, 'role', NEW.role, 'display_name', "
        "CASE WHEN NEW.role = 'teacher' THEN P.display_name END) FROM outbox_head "
        "JOIN classes C ON C.id = NEW.class_id JOIN people P ON P.id = NEW.person_id WHERE outbox_head.id = 1",
    ),
}


def _sqlite_trigger(name: str, paused: bool) -> str:
    table, select = _SQLITE[name]
    when = "NEW.removed_at IS NULL" + (" AND " + _UNPAUSED.format(row="NEW") if paused else "")
    return (
        f"CREATE TRIGGER outbox_{name} AFTER INSERT ON {table} WHEN {when} BEGIN "
        "UPDATE outbox_head SET last_seq = last_seq + 1 WHERE id = 1; "
        f"INSERT INTO change_events ({_COLUMNS}) {select}; END"
    )


def _set(paused: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _PG_SELECTS:
            op.execute(_pg_function(table, paused))
    else:
        for name in _SQLITE:
            op.execute(f"DROP TRIGGER outbox_{name}")
            op.execute(_sqlite_trigger(name, paused))


def _person_index(key: str) -> None:
    op.drop_index("ix_change_events_person", table_name="change_events")
    op.create_index("ix_change_events_person", "change_events", [sa.text(key)])


def upgrade() -> None:
    _set(paused=True)
    _person_index("substr(person, 1, 8)")


def downgrade() -> None:
    _person_index("person")
    _set(paused=False)
