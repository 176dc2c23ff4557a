"""Migrations 0003 and 0002 go down and up again cleanly on both databases, keeping the audit log append-only."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from store.db import ALEMBIC_DIR, make_engine, migrate


def alembic(engine: sqlalchemy.Engine, verb: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, verb)(config, revision)


def test_migrations_downgrade_and_upgrade(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        assert {"suppressions", "account_deletions"} <= set(inspect(engine).get_table_names())
        alembic(engine, "downgrade", "0001")
        assert not {"suppressions", "account_deletions"} & set(inspect(engine).get_table_names())
        with engine.begin() as connection:  # no trigger left behind at 0001
            connection.execute(
                text(
                    "INSERT INTO audit_events (integration_id, at, actor, action, reason) "
                    "VALUES (1, '2026-01-01', 'a', 'b', '')"
                )
            )
            connection.execute(text("DELETE FROM audit_events"))
        migrate(engine)
        with pytest.raises(sqlalchemy.exc.DatabaseError), engine.begin() as connection:
            connection.execute(
                text("INSERT INTO audit_events (at, actor, action, reason) VALUES ('2026-01-01', 'a', 'b', '')")
            )
            connection.execute(text("DELETE FROM audit_events"))
    finally:
        engine.dispose()
