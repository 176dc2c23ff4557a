"""The SQLite file holds sealed tokens and teachers' names: created readable by its owner alone (issue 18,
item 27), with its WAL and shared-memory files, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.db import make_engine, migrate


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default: files 0644 unless created otherwise
    yield
    os.umask(previous)


@pytest.mark.usefixtures("loose_umask")
def test_a_new_sqlite_database_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "rostersync.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as connection:  # WAL mode: the -wal and -shm files exist while a connection is open
        connection.exec_driver_sql("SELECT 1")
        made = [path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm"))]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in made if p.exists()}
    engine.dispose()
    assert modes["rostersync.db"] == 0o600
    assert set(modes.values()) == {0o600}, modes


@pytest.mark.usefixtures("loose_umask")
def test_an_existing_file_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
