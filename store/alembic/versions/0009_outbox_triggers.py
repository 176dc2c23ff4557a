"""the transactional outbox (issue 20): triggers write the change feed in the transaction of each roster change

Every change to ``classes``, ``enrollments``, ``people`` (a teacher's name) and ``integrations`` (its
status) writes its ``change_events`` rows from a trigger, so whatever path writes the roster (the batched
upserts, the soft deletes, a bulk COPY) writes its events in the same statement's transaction, with the
same fence. Sequence numbers come from the one row of ``outbox_head`` (``last_seq = last_seq + n``): the
writer holds that row's lock until it commits, so seq order is commit order.

- PostgreSQL: statement-level AFTER triggers with transition tables, one per table and verb (PostgreSQL
  allows transition tables on single-event triggers only); each one allocates all its seqs with one
  UPDATE of the head and writes all its events with one INSERT .. SELECT. ``integrations`` has row
  triggers with a ``WHEN`` on the status instead: most of its UPDATEs (leases, due times, cursors) change
  no status, and a row trigger whose ``WHEN`` is false costs nothing, where a statement trigger would
  build transition tables for each of them.
- SQLite: row triggers, one per event kind, each with its condition in ``WHEN``.

Hard deletes of current rows (a class, an enrolment) also write their ``*.removed`` event, unless the
integration has a row in ``outbox_pause``: a purge inserts that row, deletes the roster, deletes the
row, and writes one ``integration.purged`` instead of one event per row (store.outbox).

SQLite drops a table's triggers with the table: a later migration that rebuilds ``classes``,
``people``, ``enrollments`` or ``integrations`` in batch mode must create these triggers again.

Revision ID: 0009_outbox_triggers
Revises: 0008_change_feed
Create Date: 2026-12-06 21:45:00
"""

# ruff: noqa: S608  (the SQL is built from this file's own constants only, never from input)
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op

revision = "0009_outbox_triggers"
down_revision = "0008_change_feed"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


@dataclass(frozen=True)
class Kind:
    """One event kind a table's verb writes. ``N.`` / ``O.`` are the new and old row; ``C`` and ``P`` the
    enrolment's class and person (joined on ``ROW.class_id`` / ``ROW.person_id``, ROW being N or O)."""

    name: str
    table: str
    verb: str  # INSERT | UPDATE | DELETE
    type: str
    when: str
    data: tuple[tuple[str, str], ...]
    person: str = "NULL"
    joined: str = ""  # "N" or "O": the row whose class_id and person_id are joined to C and P
    pausable: bool = False


_CLASS = (("key", "N.external_id"), ("name", "N.name"), ("section", "N.section"), ("state", "N.state"))
_MEMBER = (
    ("class", "C.external_id"),
    ("person", "P.pseudonym"),
    ("role", "N.role"),
    ("display_name", "CASE WHEN N.role = 'teacher' THEN P.display_name END"),
)
_GONE = (("class", "C.external_id"), ("person", "P.pseudonym"))

KINDS = (
    Kind("class_added", "classes", "INSERT", "class.upserted", "N.removed_at IS NULL", _CLASS),
    Kind(
        "class_changed",
        "classes",
        "UPDATE",
        "class.upserted",
        "N.removed_at IS NULL AND (O.removed_at IS NOT NULL OR N.name IS DISTINCT FROM O.name"
        " OR N.section IS DISTINCT FROM O.section OR N.state IS DISTINCT FROM O.state)",
        _CLASS,
    ),
    Kind(
        "class_removed",
        "classes",
        "UPDATE",
        "class.removed",
        "N.removed_at IS NOT NULL AND O.removed_at IS NULL",
        (("key", "N.external_id"),),
    ),
    Kind(
        "class_deleted",
        "classes",
        "DELETE",
        "class.removed",
        "O.removed_at IS NULL",
        (("key", "O.external_id"),),
        pausable=True,
    ),
    Kind("member_added", "enrollments", "INSERT", "member.added", "N.removed_at IS NULL", _MEMBER, "P.pseudonym", "N"),
    Kind(
        "member_back",
        "enrollments",
        "UPDATE",
        "member.added",
        "N.removed_at IS NULL AND (O.removed_at IS NOT NULL OR N.role IS DISTINCT FROM O.role)",
        _MEMBER,
        "P.pseudonym",
        "N",
    ),
    Kind(
        "member_removed",
        "enrollments",
        "UPDATE",
        "member.removed",
        "N.removed_at IS NOT NULL AND O.removed_at IS NULL",
        _GONE,
        "P.pseudonym",
        "N",
    ),
    Kind(
        "member_deleted",
        "enrollments",
        "DELETE",
        "member.removed",
        "O.removed_at IS NULL",
        _GONE,
        "P.pseudonym",
        "O",
        pausable=True,
    ),
    Kind(
        "person_renamed",
        "people",
        "UPDATE",
        "person.updated",
        "N.role = 'teacher' AND N.removed_at IS NULL AND N.display_name IS DISTINCT FROM O.display_name",
        (("person", "N.pseudonym"), ("display_name", "N.display_name")),
        "N.pseudonym",
    ),
)
"""Every roster event kind; ``integration.updated`` is written by the integrations triggers below."""

_INTEGRATION = (
    ("status", "NEW.status"),
    ("provider", "NEW.provider"),
    ("tenant", "NEW.tenant"),
    ("linked_by", "NEW.linked_by"),
)
TABLE_VERBS = tuple(dict.fromkeys((kind.table, kind.verb) for kind in KINDS))
_COLUMNS = "seq, at, type, integration_id, person, data"


def _json(pairs: tuple[tuple[str, str], ...], dialect: str) -> str:
    body = ", ".join(f"'{key}', {value}" for key, value in pairs)
    return f"json_build_object({body})::text" if dialect == "postgresql" else f"json_object({body})"


def _rows(sql: str, dialect: str) -> str:
    """``N.`` / ``O.`` as the dialect names the new and old row: transition table aliases, or NEW / OLD."""
    if dialect == "postgresql":
        return sql.replace("N.", "n.").replace("O.", "o.")
    return sql.replace("N.", "NEW.").replace("O.", "OLD.")


def _integration_id(kind: Kind) -> str:
    return "O.integration_id" if kind.verb == "DELETE" else "N.integration_id"


def _paused(kind: Kind) -> str:
    if not kind.pausable:
        return ""
    return f" AND NOT EXISTS (SELECT 1 FROM outbox_pause WHERE outbox_pause.integration_id = {_integration_id(kind)})"


# ------------------------------------------------------------------------------------------- PostgreSQL


def _pg_select(kind: Kind) -> str:
    """The events of one kind from the statement's transition tables ``n`` (new rows) and ``o`` (old rows)."""
    row = "O" if kind.verb == "DELETE" else "N"
    source = {"INSERT": "new_rows n", "DELETE": "old_rows o", "UPDATE": "new_rows n JOIN old_rows o ON o.id = n.id"}
    joins = ""
    if kind.joined:
        joins = f" JOIN classes C ON C.id = {kind.joined}.class_id JOIN people P ON P.id = {kind.joined}.person_id"
    sql = (
        f"SELECT {row}.id AS ord, {_integration_id(kind)} AS integration_id, '{kind.type}'::varchar AS type, "
        f"{kind.person}::varchar AS person, {_json(kind.data, 'postgresql')} AS data "
        f"FROM {source[kind.verb]}{joins} WHERE {kind.when}{_paused(kind)}"
    )
    return _rows(sql, "postgresql")


def _transition_tables(verb: str) -> str:
    return {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows"}.get(
        verb, "OLD TABLE AS old_rows NEW TABLE AS new_rows"
    )


def _pg_function(table: str, verb: str) -> str:
    """One statement: the events of every kind of this table and verb, their seqs taken from the head at once."""
    selects = " UNION ALL ".join(_pg_select(kind) for kind in KINDS if (kind.table, kind.verb) == (table, verb))
    name = f"outbox_{table}_{verb.lower()}"
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH events AS MATERIALIZED ({selects}),
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
CREATE TRIGGER {name} AFTER {verb} ON {table}
    REFERENCING {_transition_tables(verb)}
    FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""


PG_INTEGRATION = f"""
CREATE FUNCTION outbox_integration_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
BEGIN
    UPDATE outbox_head SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq INTO top;
    INSERT INTO change_events ({_COLUMNS}) VALUES (
        top, statement_timestamp() AT TIME ZONE 'UTC', 'integration.updated', NEW.id, NULL,
        {_json(_INTEGRATION, "postgresql")}
    );
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_integration_created AFTER INSERT ON integrations
    FOR EACH ROW EXECUTE FUNCTION outbox_integration_status();
CREATE TRIGGER outbox_integration_status AFTER UPDATE ON integrations
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION outbox_integration_status();
"""


# ----------------------------------------------------------------------------------------------- SQLite


def _sqlite_trigger(name: str, table: str, verb: str, when: str, select: str) -> str:
    return (
        f"CREATE TRIGGER outbox_{name} AFTER {verb} ON {table} WHEN {when} BEGIN "
        "UPDATE outbox_head SET last_seq = last_seq + 1 WHERE id = 1; "
        f"INSERT INTO change_events ({_COLUMNS}) {select}; END"
    )


def _sqlite_kind(kind: Kind) -> str:
    joins = ""
    if kind.joined:
        joins = f" JOIN classes C ON C.id = {kind.joined}.class_id JOIN people P ON P.id = {kind.joined}.person_id"
    select = (
        f"SELECT outbox_head.last_seq, strftime('%Y-%m-%d %H:%M:%f', 'now'), '{kind.type}', "
        f"{_integration_id(kind)}, {kind.person}, {_json(kind.data, 'sqlite')} FROM outbox_head{joins} "
        "WHERE outbox_head.id = 1"
    )
    return _sqlite_trigger(
        kind.name, kind.table, kind.verb, _rows(kind.when + _paused(kind), "sqlite"), _rows(select, "sqlite")
    )


def _sqlite_integration(name: str, verb: str, when: str) -> str:
    select = (
        "SELECT outbox_head.last_seq, strftime('%Y-%m-%d %H:%M:%f', 'now'), 'integration.updated', NEW.id, NULL, "
        f"{_json(_INTEGRATION, 'sqlite')} FROM outbox_head WHERE outbox_head.id = 1"
    )
    return _sqlite_trigger(name, "integrations", verb, when, select)


SQLITE_INTEGRATION = (
    _sqlite_integration("integration_created", "INSERT", "1"),
    _sqlite_integration("integration_status", "UPDATE", "OLD.status IS NOT NEW.status"),
)


def upgrade() -> None:
    op.create_table(
        "outbox_pause",
        sa.Column("integration_id", _ID, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("integration_id", name=op.f("pk_outbox_pause")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table, verb in TABLE_VERBS:
            op.execute(_pg_function(table, verb))
        op.execute(PG_INTEGRATION)
    else:
        for kind in KINDS:
            op.execute(_sqlite_kind(kind))
        for trigger in SQLITE_INTEGRATION:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, verb in TABLE_VERBS:
            op.execute(f"DROP TRIGGER outbox_{table}_{verb.lower()} ON {table}")
            op.execute(f"DROP FUNCTION outbox_{table}_{verb.lower()}()")
        op.execute("DROP TRIGGER outbox_integration_created ON integrations")
        op.execute("DROP TRIGGER outbox_integration_status ON integrations")
        op.execute("DROP FUNCTION outbox_integration_status()")
    else:
        for name in [kind.name for kind in KINDS] + ["integration_created", "integration_status"]:
            op.execute(f"DROP TRIGGER outbox_{name}")
    op.drop_table("outbox_pause")
