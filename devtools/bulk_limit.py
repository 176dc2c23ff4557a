"""The write half of the bench's limit: how long the database takes to bulk-load the rows a full sync wrote.

A sync must download a district and write it. The bench's baseline measures the download; this
measures the write at its fastest: the classes, people and enrolments the full sync left in the
store, read back and loaded in ONE transaction into scratch copies of the three tables (same
columns, same unique constraints and indexes, same foreign keys), with the database's own bulk
path: ``COPY .. FROM STDIN`` on PostgreSQL (psycopg's ``Cursor.copy``), one ``executemany`` per
table on SQLite. Download plus this load is the physical limit of a first sync on this machine
(``limit_s`` in the bench). Reading the rows back and creating the scratch tables are not timed;
the scratch tables (a schema of their own on PostgreSQL, a file of their own on SQLite) are
dropped at the end. Triggers on the real tables (the change feed's) are not copied: the limit is
the rows alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, MetaData, Table, select

from store.db import make_engine
from store.models import Base, Enrollment, Integration, Person, SchoolClass

LOADED: tuple[type[Base], ...] = (SchoolClass, Person, Enrollment)
"""In this order: enrolments name their class and their person."""


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _read(engine: Engine, integration_ids: Sequence[int]) -> Rows:
    """Every row of the integrations and of the three roster tables that came through them (not timed)."""
    rows: Rows = {}
    with engine.connect() as connection:
        integrations = _table(Integration)
        rows["integrations"] = [
            tuple(r) for r in connection.execute(select(integrations).where(integrations.c.id.in_(integration_ids)))
        ]
        for model in LOADED:
            table = _table(model)
            query = select(table).where(table.c.integration_id.in_(integration_ids)).order_by(table.c.id)
            rows[table.name] = [tuple(r) for r in connection.execute(query)]
    return rows


Rows = dict[str, list[tuple[Any, ...]]]


def _load(engine: Engine, tables: dict[str, Table], rows: Rows, names: Sequence[str]) -> None:
    """The named tables' rows in one transaction, each table in one bulk statement."""
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        for name in names:
            table = tables[name]
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            target = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
            if engine.dialect.name == "postgresql":
                with raw.cursor() as cursor, cursor.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
                    for row in rows[name]:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" for _ in table.columns)
                raw.executemany(f"INSERT INTO {target} ({columns}) VALUES ({marks})", rows[name])  # noqa: S608 - our tables


def bulk_load_seconds(database_url: str, integration_ids: Sequence[int], scratch_dir: Path) -> tuple[float, int]:
    """Seconds to bulk-load the integrations' roster rows into scratch tables, and how many rows that was."""
    engine = make_engine(database_url)
    rows = _read(engine, integration_ids)
    postgres = engine.dialect.name == "postgresql"
    schema = f"rostersync_limit_{uuid.uuid4().hex[:10]}" if postgres else None
    scratch_file = scratch_dir / f"limit-{uuid.uuid4().hex[:10]}.db"
    scratch = engine if postgres else make_engine(f"sqlite:///{scratch_file}")
    metadata = MetaData()
    models: tuple[type[Base], ...] = (Integration, *LOADED)
    placed: dict[str, Any] = {"schema": schema} if schema is not None else {}
    tables = {model.__tablename__: _table(model).to_metadata(metadata, **placed) for model in models}
    try:
        if schema is not None:
            with scratch.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        metadata.create_all(scratch)
        _load(scratch, tables, rows, ["integrations"])
        started = time.perf_counter()
        _load(scratch, tables, rows, [model.__tablename__ for model in LOADED])
        seconds = time.perf_counter() - started
    finally:
        if schema is not None:
            with scratch.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        scratch.dispose()
        engine.dispose()
        scratch_file.unlink(missing_ok=True)
    return seconds, sum(len(rows[model.__tablename__]) for model in LOADED)
