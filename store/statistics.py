"""Fresh planner statistics while one sync writes a district into roster tables that were nearly empty.

PostgreSQL plans the store's look-ups (``pseudonym IN (...)`` within an integration and role) from
the statistics of the last ANALYZE. Autovacuum refreshes them at most once a minute, so during a
district's first sync the planner still believes the tables are (nearly) empty: it scans every
row of the integration instead of probing the unique index for each key, and every page's look-up
costs more than the one before (measured: a 10,000-student district spent 2.5 s of 4.5 s
in two such look-ups, growing with the square of the district). Bulk loaders ANALYZE as they load;
so does a sync, when its writes have doubled since its last ANALYZE. SQLite plans equality on a
unique index the same way whatever it knows, so nothing is done there. A database user that does
not own the tables gets a warning from PostgreSQL and no statistics, never an error.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from store.models import Enrollment, Person, SchoolClass

FIRST_AT = 5_000
"""Rows a run writes before its first ANALYZE: below that a scan of the integration's rows costs little."""

NAMES = tuple(model.__tablename__ for model in (SchoolClass, Person, Enrollment))
TABLES = ", ".join(NAMES)

STALE = (
    "SELECT relname FROM pg_class WHERE oid IN ('classes'::regclass, 'people'::regclass, 'enrollments'::regclass)"
    " AND (reltuples < 0 OR pg_relation_size(oid) > 2 * relpages * current_setting('block_size')::bigint)"
)
"""The roster tables never analyzed, or grown past twice their size at their last ANALYZE (or VACUUM).

By the table's file, not ``pg_stat_user_tables.n_mod_since_analyze``: a backend flushes its row counters
to the shared statistics only when idle and at most once a second, so the rows a run has just committed
may not be counted yet; ``pg_relation_size`` is the file's size now (dead rows count too: with autovacuum
off, a table grown by updates is analyzed a little early, never late)."""


def stale(connection: Connection) -> list[str]:
    """The roster tables whose statistics a first sync refreshes (PostgreSQL): see ``STALE``."""
    found = set(connection.exec_driver_sql(STALE).scalars())
    return [name for name in NAMES if name in found]


def refresh(connection: Connection, rows_written: int) -> int:
    """ANALYZE, after a first sync's load, the roster tables whose statistics no longer describe them.

    All three after a load of ``FIRST_AT`` rows or more (the district's own rows outweigh what the
    statistics sampled); else only those never analyzed or grown past twice their analyzed size, so
    a burst of small first syncs into new tables analyzes them about log2(growth) times, not once a
    link (each ANALYZE was ~40 ms, more than the rest of a teacher's first sync). Returns how many
    tables it analyzed.
    """
    names = list(NAMES) if rows_written >= FIRST_AT else stale(connection)
    if names:
        connection.exec_driver_sql(f"ANALYZE {', '.join(names)}")
    return len(names)


class Statistics:
    """Told how many rows a run has written so far; ANALYZEs the roster tables at 5,000, 10,000, 20,000, ...

    A run that writes N rows ANALYZEs about log2(N / 5,000) times; each samples at most 30,000 rows
    a table, so the cost stays a few tens of milliseconds however large the district.
    """

    def __init__(self, engine: Engine, first_at: int | None = None) -> None:
        self._engine = engine
        first = FIRST_AT if first_at is None else first_at
        self._next_at = first if engine.dialect.name == "postgresql" else None

    def written(self, rows: int) -> None:
        if self._next_at is None or rows < self._next_at:
            return
        with self._engine.connect() as connection:
            connection.exec_driver_sql(f"ANALYZE {TABLES}")
            connection.commit()
        self._next_at = 2 * rows
