"""Engine construction and schema migration, the same code for SQLite and PostgreSQL.

SQLite gets ``BEGIN IMMEDIATE`` on every transaction: the fence check at the start of a write
transaction must see the latest committed revoke, which on SQLite only holds once the write lock
is taken. PostgreSQL gets the same guarantee from ``SELECT .. FOR UPDATE`` (store.fence).
``hide_parameters`` keeps bound values (names!) out of every SQL error text and log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Engine,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

if TYPE_CHECKING:
    from sqlalchemy.orm import QueryableAttribute

ALEMBIC_DIR = Path(__file__).with_name("alembic")
MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(1920170350, hashtext(coalesce(current_schema(), '')))")
"""PostgreSQL: one migration at a time per schema (the first key is ours: 'rsyn' in ASCII)."""
ADVISORY_READ = "rostersync_advisory_read"
"""Execution option of a read whose answer only advises (a fenced write re-checks it under the lock): on
SQLite it reads the last commit without taking the write lock that every other transaction takes."""


class JsonList(TypeDecorator[Sequence[Any]]):
    """A list of ids or texts bound to SQLite as one JSON text (``json_each`` reads it back, each value in turn).

    ``ensure_ascii=False``: the text goes to SQLite as the UTF-8 of its values, so a value round-trips exactly
    (what JSON escapes, quotes, backslashes and control characters, SQLite's json1 decodes), and a value that
    cannot be bound at all (a lone surrogate) fails as binding it alone did. ``json_each`` gives integers as
    INTEGER and strings as TEXT, the types of the id and text columns it is compared with. A NUL, which SQLite's
    json1 would cut a text at, is refused as PostgreSQL refuses it: no id can hold one (``mappers.text``).
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Any) -> str | None:
        if value is None:
            return None
        listed = json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))
        if "\\u0000" in listed and any(isinstance(item, str) and "\x00" in item for item in value):
            raise ValueError("a listed value holds a NUL character")
        return listed


def _in_json(column: ColumnElement[Any] | QueryableAttribute[Any], parameter: Any) -> ColumnElement[bool]:
    """``column IN (SELECT value FROM json_each(:parameter))``: SQLite probes the column's index with each value,
    as it does for an IN list (EXPLAIN QUERY PLAN in tests/features/test_sqlite_lists.py)."""
    listed = func.json_each(parameter).table_valued("value")
    return column.in_(select(listed.c.value))


def one_of(
    connection: Connection, column: ColumnElement[Any] | QueryableAttribute[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``column IN values`` as one parameter however many values: ``column = ANY(:array)`` on PostgreSQL,
    ``column IN (SELECT value FROM json_each(:json))`` on SQLite.

    Why: an IN list of 500 values is 500 parameters. SQLAlchemy renders each of them (with its cast) at every
    execution, and psycopg rewrites every placeholder of a statement too long for its cache, in Python: on a
    1% change at 100,000 students (BENCHMARKS.md, issue 22) that was about a fifth of the sync's profiled
    time on PostgreSQL. With one array parameter the statement stays short and both cache it; PostgreSQL plans
    ``= ANY(array)`` as it plans an IN list (it turns the one into the other itself). On SQLite an expanding
    IN list made each list length a new statement text, compiled again by SQLAlchemy and parsed again by
    SQLite, with a parameter bound per value; the JSON text is one parameter of one cached statement.
    """
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return _in_json(column, bindparam(None, list(values), type_=JsonList()))


def listed_by_name(column: ColumnElement[Any], dialect: str, *, sqlite_list: bool = False) -> ColumnElement[bool]:
    """``one_of`` for a statement built once and cached: the list is the parameter named after the column,
    given at each execution (a JSON text on SQLite; an expanding ``IN`` list with ``sqlite_list``, for a
    statement SQLite plans better when it knows how many values a list holds)."""
    if dialect == "postgresql":
        return column == any_(bindparam(column.key, type_=ARRAY(column.type)))
    if sqlite_list:
        return column.in_(bindparam(column.key, expanding=True))
    return _in_json(column, bindparam(column.key, type_=JsonList()))


def utcnow() -> datetime:
    """Naive UTC, the one time format every table uses."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_private_sqlite_file(url: str) -> None:
    """A new SQLite file is made 0600 before SQLite opens it (its WAL and -shm files copy that mode).

    It holds sealed tokens and teachers' names; SQLite would create it 0644 under the usual umask.
    An existing file keeps the mode its owner gave it; a missing directory is left for SQLite to report.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    with contextlib.suppress(OSError):  # exists already, or SQLite reports the unusable path itself
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        create_private_sqlite_file(url)
        engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            if not connection.get_execution_options().get(ADVISORY_READ):
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, hide_parameters=True)
    from store import pgarrays  # psycopg's own module, imported with the dialect anyway: not at start-up

    pgarrays.register(engine)
    event.listen(engine, "after_cursor_execute", _note_writes)
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 1.0
"""A pooled connection unused this long is pinged before it is handed out; one used since is not."""
_USED_AT = "rostersync_used_at"


def _ping_when_idle(engine: Engine) -> None:
    """The pool's pre-ping, but only for a connection that sat idle (``IDLE_PING_SECONDS``).

    Why not ``pool_pre_ping``: it pings at every check-out, and a sync checks a connection out for each of
    its transactions, milliseconds apart: a round trip each, a visible share of a teacher link's sync.
    A connection that went stale while idle (a restart, a failover, an idle timeout) is still found before
    use and replaced, as the pre-ping did. One that dies within a second of its last use fails its next
    statement instead, like one that dies mid-transaction: SQLAlchemy then drops the whole pool's older
    connections, the run is recorded ``error`` on a fresh one and the actor retries it
    (docs/reliability.md, "PostgreSQL connection dropped mid-transaction").
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, record: Any) -> None:
        record.info[_USED_AT] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_USED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_USED_AT, 0.0) < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError("idle connection found closed; replaced") from error


WROTE = "rostersync_wrote"
"""``Connection.info`` key: set when a statement of the connection's transaction may have changed a row
(``wrote``). PostgreSQL only: its driver's row count is final when the statement returns."""


def _note_writes(connection: Connection, cursor: Any, statement: str, *_args: Any) -> None:
    """Any statement but a ``SELECT`` counts as a write unless the server said it touched no row (0)."""
    if cursor.rowcount != 0 and statement.lstrip()[:6].upper() != "SELECT":
        connection.info[WROTE] = True


def wrote(connection: Connection) -> bool:
    """Whether the transaction may have changed a row since ``connection.info[WROTE]`` was last cleared.

    On SQLite always True: its driver counts an ``INSERT .. RETURNING``'s rows only as they are fetched.
    """
    return connection.dialect.name != "postgresql" or bool(connection.info.get(WROTE, True))


class _AlembicSetUp(logging.Filter):
    """Alembic's set-up lines ("Context impl SQLiteImpl.", "Will assume transactional DDL.", "setup plugin ..."),
    logged at INFO on every start: they would open the log of every process that logs at INFO (a Dramatiq
    worker does). A migration that runs is still logged ("Running upgrade ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "alembic.runtime.plugins" or str(record.msg).startswith(("Context impl", "Will assume"))
        )


_QUIET_SET_UP = _AlembicSetUp()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision; safe when several processes start at once.

    A schema already there is told by reading its version (``rostersync status`` need not import Alembic,
    about 0.4 s); anything else, an unreadable version included, goes through Alembic under the lock."""
    if at_newest_revision(engine):
        return
    run_alembic(engine, "upgrade", "head")


_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=(.*)$", re.M)


def newest_revisions() -> set[str]:
    """The heads of the migration scripts, read as text: every revision no other script builds on."""
    revisions: set[str] = set()
    built_on: set[str] = set()
    for script in (ALEMBIC_DIR / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(text))
        for down in _DOWN_REVISION.findall(text):
            built_on.update(re.findall(r"['\"]([^'\"]+)['\"]", down))
    return revisions - built_on


def at_newest_revision(engine: Engine) -> bool:
    """Whether the schema's recorded version is exactly the scripts' head(s); False when in any doubt (no
    version table, a missing database file, a script this reading cannot parse: Alembic then decides)."""
    heads = newest_revisions()
    if not heads:
        return False
    try:
        with engine.connect().execution_options(**{ADVISORY_READ: True}) as connection:
            stored = set(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    except Exception:  # any failure to read it: the full migration path reports what is wrong
        return False
    return stored == heads


def run_alembic(engine: Engine, verb: Literal["upgrade", "downgrade"], revision: str) -> None:
    """An Alembic command (``upgrade``/``downgrade``) in one transaction that holds the migration lock.

    The lock is taken before Alembic reads the version, so a process that waited for another one's
    migration finds it done. On PostgreSQL it is an advisory lock of the transaction, keyed by the
    schema (two schemas of one database migrate independently) and released by the commit, or by the
    server if the process dies. On SQLite the ``BEGIN IMMEDIATE`` of every transaction is the lock:
    the database's one write lock, waited for up to the busy timeout.
    """
    for name in ("alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(name).addFilter(_QUIET_SET_UP)  # the same filter once: addFilter keeps no duplicate
    # lazy, after the filter: Alembic logs its plugins as it is imported, and a command that does not
    # migrate (`rostersync --help`) need not pay for importing it
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    with _migration_connection(engine) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(MIGRATION_LOCK)
        config.attributes["connection"] = connection
        getattr(command, verb)(config, revision)
        _check_foreign_keys(connection)


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection to migrate on; on SQLite with foreign keys off meanwhile, as SQLite's ALTER TABLE guide asks.

    Alembic's batch mode rebuilds a table by copying it and dropping the old one; with foreign keys on,
    dropping ``integrations`` would first delete every row of it, cascading into the whole roster.
    The pragma is a no-op inside a transaction, so it is set before the transaction begins.
    """
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            yield connection
            return
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys=OFF")
        try:
            yield connection
        finally:
            driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    """With foreign keys off during a migration, prove before the commit that every reference still holds."""
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"migration left {len(broken)} rows naming a missing row (first in {broken[0][0]})")
