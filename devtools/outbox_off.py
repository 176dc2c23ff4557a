"""The outbox's cost, measured: ``rostersync bench --without-outbox`` drops its triggers in a throwaway database.

Issue 20's budget says the outbox may cost a full sync at most 1.15x; the only way to see that cost is the same
sync with and without it, in one run. The triggers are the ones store/alembic/versions/0009_outbox_triggers.py
creates (every name starts ``outbox_``), found in the database's own catalogue so that a later migration's
triggers are dropped too. Only ever called on the bench's own databases: without its triggers a database writes
no change feed, so no real one is ever touched here.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

WITHOUT_OUTBOX = "_without_outbox"
"""The suffix of a bench database's name (``sqlite_without_outbox``) whose outbox triggers are dropped."""

_SQLITE = text(r"SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'outbox\_%' ESCAPE '\'")
_POSTGRESQL = text(
    r"SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    r"WHERE NOT t.tgisinternal AND t.tgname LIKE 'outbox\_%' AND c.relnamespace = current_schema()::regnamespace"
)


def outbox_triggers(engine: Engine) -> list[tuple[str, str]]:
    """(trigger, table) of every outbox trigger in the engine's database (its current schema on PostgreSQL)."""
    query = _POSTGRESQL if engine.dialect.name == "postgresql" else _SQLITE
    with engine.connect() as connection:
        return sorted((str(name), str(table)) for name, table in connection.execute(query).all())


def drop_outbox_triggers(engine: Engine) -> int:
    """Drop them all in one transaction; how many there were. The roster writes the same rows, and no event."""
    found = outbox_triggers(engine)
    postgresql = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        for name, table in found:
            on_table = f' ON "{table}"' if postgresql else ""
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"{on_table}')
    return len(found)
