"""``store.db.one_of`` on SQLite: a list travels as one JSON parameter (issue 22, branch ``inlist``).

The statement's text no longer depends on the list's length (SQLAlchemy and SQLite cache it), every value
comes back exactly as bound, and SQLite still looks each value up in the column's index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import StatementError

from store import membership
from store.db import make_engine, migrate, one_of
from store.models import Enrollment, SchoolClass
from tests.helpers import classes_named

TEXTS = [
    "plain",
    "é",
    "日本語",
    "\U0001f600",  # beyond the BMP: JSON would escape it as a surrogate pair
    'a"b\\c',
    "\\u0000",  # a backslash and "u0000", not a NUL
    "tab\tnew\nline\rreturn",
    "\x01\x1f\x7f",
    "\u2028\u2029",
    " ",
]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'lists.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_every_text_and_id_comes_back_as_bound(engine: Engine) -> None:
    ids = classes_named(engine, TEXTS)
    with engine.connect() as connection:
        for text in TEXTS:
            named = select(SchoolClass.id).where(one_of(connection, SchoolClass.external_id, [text]))
            assert connection.execute(named).scalars().all() == [ids[text]], repr(text)
        by_id = select(SchoolClass.external_id).where(one_of(connection, SchoolClass.id, [*ids.values(), 2**62]))
        assert sorted(connection.execute(by_id).scalars()) == sorted(TEXTS)
        assert connection.execute(select(SchoolClass.id).where(one_of(connection, SchoolClass.id, []))).all() == []


def test_a_nul_or_a_lone_surrogate_is_refused_not_cut(engine: Engine) -> None:
    """json1 would cut a text at a NUL: refused (no id holds one). A lone surrogate fails to bind, as before."""
    with engine.connect() as connection:
        with pytest.raises(StatementError, match="NUL"):
            connection.execute(select(SchoolClass.id).where(one_of(connection, SchoolClass.external_id, ["a\x00b"])))
        with pytest.raises(UnicodeEncodeError):
            connection.execute(select(SchoolClass.id).where(one_of(connection, SchoolClass.external_id, ["\ud800"])))


def test_one_statement_text_and_one_parameter_whatever_the_length(engine: Engine) -> None:
    seen: list[tuple[str, int]] = []

    def record(_c: object, _cursor: object, statement: str, parameters: tuple[object, ...], *_a: object) -> None:
        if statement.startswith("SELECT"):
            seen.append((statement, len(parameters)))

    event.listen(engine, "before_cursor_execute", record)
    with engine.connect() as connection:
        for length in (1, 2, 500, 5_000):
            connection.execute(select(SchoolClass.id).where(one_of(connection, SchoolClass.id, list(range(length)))))
    assert len(seen) == 4
    assert len({statement for statement, _ in seen}) == 1
    assert {count for _, count in seen} == {1}


@pytest.mark.parametrize(
    ("column", "values", "index"),
    [
        (SchoolClass.id, [1, 2, 3], "INTEGER PRIMARY KEY"),
        (Enrollment.class_id, [1, 2, 3], "sqlite_autoindex_enrollments_1 (class_id=?)"),
        (Enrollment.person_id, [1, 2, 3], "ix_enrollments_person_id (person_id=?)"),
    ],
)
def test_each_value_is_looked_up_in_the_index(engine: Engine, column: object, values: list[int], index: str) -> None:
    table = column.class_.__table__  # type: ignore[attr-defined]
    sent: list[tuple[str, tuple[object, ...]]] = []

    def record(_c: object, _cursor: object, statement: str, parameters: tuple[object, ...], *_a: object) -> None:
        sent.append((statement, parameters))

    with engine.connect() as connection:
        statement = select(table.c.id).where(one_of(connection, column, values))  # type: ignore[arg-type]
        event.listen(connection, "before_cursor_execute", record)
        connection.execute(statement)
        event.remove(connection, "before_cursor_execute", record)
        (sql, parameters), *_ = (sent_one for sent_one in sent if sent_one[0].startswith("SELECT"))
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).all()
    details = [row[-1] for row in plan]
    assert any(detail.startswith(f"SEARCH {table.name} USING") and index in detail for detail in details), details
    assert not any(detail.startswith(f"SCAN {table.name}") for detail in details), details


def test_settles_named_members_are_looked_up_by_person_not_read_by_class(engine: Engine) -> None:
    """``store.membership._read_named`` on SQLite probes each named person by the people's unique key, then their
    enrolments by person, and keeps those in the chunk's classes: it never reads a class's enrolments whole
    (issue 22, branch ``litechange2``: some 6,500 enrolments read to keep 500 on a 1% change at 100,000 students)."""
    ids = classes_named(engine, TEXTS)
    sent: list[tuple[str, tuple[object, ...]]] = []

    def record(_c: object, _cursor: object, statement: str, parameters: tuple[object, ...], *_a: object) -> None:
        sent.append((statement, parameters))

    with engine.connect() as connection:
        link = connection.execute(select(SchoolClass.integration_id).limit(1)).scalar_one()
        named = {text: {("student", f"p-{n}"), ("teacher", f"t-{n}")} for n, text in enumerate(sorted(ids)[:3])}
        event.listen(connection, "before_cursor_execute", record)
        assert membership._read_named(connection, link, named).classes == {}
        event.remove(connection, "before_cursor_execute", record)
        ((sql, parameters),) = sent
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).all()
    details = [row[-1] for row in plan]
    by_key = "SEARCH people USING INDEX sqlite_autoindex_people_1 (integration_id=? AND role=? AND pseudonym=?)"
    assert details[0] == by_key, details
    assert any("enrollments USING INDEX ix_enrollments_person_id (person_id=?)" in d for d in details), details
    assert any(d.startswith("SEARCH classes USING INTEGER PRIMARY KEY") for d in details), details
    assert not any(d.startswith(("SCAN people", "SCAN enrollments", "SCAN classes")) for d in details), details
