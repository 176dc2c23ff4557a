"""SQLite's outbox insert triggers pause too; ``ix_change_events_person`` keys a pseudonym's prefix (issue 22)

SQLite: the row triggers of inserts into ``classes`` and ``enrollments`` (``class.upserted``,
``member.added``) now write nothing for an integration that has a row in ``outbox_pause``, as the hard
deletes' triggers already did. Only store.bulk_events inserts such a row around an insert, inside its own
fenced transaction and deleted before the commit: a first sync's bulk write then writes the same events
itself, set-based from the values it has in hand, instead of one trigger program a row with its head
update and its two look-ups (docs/architecture.md, The outbox). Every other writer never pauses an
insert, so its rows' events are written by the triggers as before; the update and delete triggers are
unchanged. PostgreSQL's statement triggers are unchanged: there a page's join costs no more than the
values in hand (measured), so the bulk write leaves its events to them and never pauses an insert.

Both databases: ``ix_change_events_person`` keys each event by the first 8 characters of its pseudonym
instead of all 64 (store.models, ``PERSON_KEY``): an erase still finds a person's events through it (the
prefix, then the whole pseudonym compared), and each event written costs the index less (about 0.4 s of
CPU in 100,000 on SQLite, whose random 64-character keys were half the cost of writing an event).

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

# ------------------------------------------------------------------------- SQLite: as in 0009, and the pause

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
    if op.get_bind().dialect.name == "sqlite":
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
