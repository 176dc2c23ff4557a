"""A database of each test's own, copied from one migrated per session instead of migrated per test.

Running every Alembic migration for each of the ~400 database cases cost more than many tests' own work.
Each pytest process (each xdist worker) now migrates one template per engine, once, on first use:

- PostgreSQL: a template *schema*, migrated, then read back with ``pg_dump`` (tables, sequences, indexes,
  constraints, triggers and the ``alembic_version`` row); a test gets an empty schema of its own and that
  script replayed into it (a few times faster than migrating), dropped afterwards as before. A template
  *database* (``CREATE DATABASE .. TEMPLATE``) copies faster still, but every ``DROP DATABASE`` forces a
  checkpoint of the whole server, which under load took up to two minutes.
- SQLite: a migrated file copied into the test's ``tmp_path`` (the copy keeps the file's 0600 mode).

Names carry this run's id and the xdist worker, so two runs or two workers never collide. Tests that
exercise the migrations themselves (downgrades, concurrent start-ups under the advisory lock) are marked
``fresh_database`` and get an empty schema of their own, exactly as before. Without ``pg_dump`` on the PATH
every PostgreSQL case is migrated for real, as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from store.db import make_engine, migrate
from tests.plugins.servers import PG_ADMIN_URL

RUN_ID = uuid.uuid4().hex[:8]
"""One per pytest process; with xdist each worker is a process of its own and adds its name below."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fresh_database: the test gets an empty, unmigrated database (for tests of the migrations)"
    )


def _unique(prefix: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{prefix}_{RUN_ID}_{worker}_{uuid.uuid4().hex[:8]}"


def _psycopg_url() -> str:
    """The admin URL as libpq (psycopg, pg_dump) spells it."""
    return PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")


def _schema_url(schema: str) -> str:
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


def wants_fresh(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("fresh_database") is not None


@dataclass(frozen=True)
class SchemaScript:
    """The SQL that rebuilds the migrated template schema, written with the template's (unique) name."""

    template: str
    sql: str

    def build(self, schema: str) -> None:
        with psycopg.connect(_psycopg_url()) as connection:  # one transaction; commits on leaving
            connection.execute(self.sql.replace(self.template, schema).encode())  # no parameters: many statements


def _dump(schema: str) -> str:
    """``pg_dump`` of one schema, structure and rows (only ``alembic_version`` has any), minus psql's
    backslash commands (``\\restrict``), which the server would not understand, and the schema's creation."""
    done = subprocess.run(
        ["pg_dump", "--dbname", _psycopg_url(), "--schema", schema, "--inserts", "--no-owner", "--no-privileges"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    create = f"CREATE SCHEMA {schema};"  # the test's schema exists already
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("\\") and line != create)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[SchemaScript | None]:
    """The migrated template schema as a script, once per process (None without ``pg_dump``)."""
    if shutil.which("pg_dump") is None:
        yield None
        return
    template = _unique("rs_tmpl")
    with _fresh_schema(template) as url:
        _migrate(url)
        yield SchemaScript(template, _dump(template))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, once per process (closed: its WAL is checkpointed into the file)."""
    path = tmp_path_factory.mktemp("template") / "rostersync.db"
    _migrate(f"sqlite:///{path}")
    return path


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


@contextmanager
def _fresh_schema(schema: str) -> Iterator[str]:
    """An empty PostgreSQL schema in the shared test database, dropped afterwards."""
    admin = sqlalchemy.create_engine(PG_ADMIN_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL schema of this test's own, migrated to head (empty under ``fresh_database``)."""
    schema = _unique("rs_test")
    script: SchemaScript | None = None if wants_fresh(request) else request.getfixturevalue("pg_template")
    with _fresh_schema(schema) as url:
        if script is not None:
            script.build(schema)
        elif not wants_fresh(request):
            _migrate(url)
        yield url


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    path = tmp_path / "rostersync.db"
    if not wants_fresh(request):
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both databases, each of its own and migrated to head (empty under ``fresh_database``)."""
    if request.param == "sqlite":
        return _sqlite_url(request, tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url
