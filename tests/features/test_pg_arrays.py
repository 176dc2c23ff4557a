"""``store.pgarrays``: a list of texts or integers joined into one array literal on PostgreSQL (issue 22, item 3).

Every list comes back from PostgreSQL exactly as psycopg's own dumper sends it (the same values, the same
array type), including the texts the array syntax quotes or escapes; what the joined path does not take
(``None``, a ``bool``, nested lists, a NUL) goes through psycopg's dumper as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.adapt import PyFormat
from sqlalchemy import Engine, select

from store.db import make_engine, one_of
from store.models import SchoolClass
from store.pgarrays import JoinedListDumper
from tests.helpers import classes_named

TEXTS = [
    "plain",
    "",
    "NULL",
    "null",
    'a"b\\c',
    "\\",
    '"',
    "{braces}",
    "com,ma",
    "semi;colon",
    " lead and trail ",
    "tab\tnew\nline\rreturn",
    "\x01\x1f\x7f",
    "é 日本語 \U0001f600",
    "\u2028\u2029\u3000\u00a0",
]
LISTS: list[list[Any]] = [
    TEXTS,
    [t for t in TEXTS if t][::-1],
    ["one"],
    [0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, 10**30],
    [7],
    [],
    ["a", None, "NULL"],  # psycopg's own path
    [True, False],  # psycopg's own path
]


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _sent(cursor: Any, value: list[Any]) -> tuple[Any, str]:
    """The value PostgreSQL received and the type it took it as: a list of texts (of unknown type, as psycopg
    sends texts) cast to ``text[]`` as SQLAlchemy casts a bound array, any other list as sent."""
    texts = any(isinstance(item, str) for item in value) or not value
    query = "SELECT %s::text[], pg_typeof(%s::text[])::text" if texts else "SELECT %s, pg_typeof(%s)::text"
    found = cursor.execute(query, [value, value]).fetchone()
    assert found is not None
    return found[0], found[1]


def test_every_list_comes_back_as_psycopg_sends_it(engine: Engine) -> None:
    with engine.connect() as connection:
        joined = connection.connection.dbapi_connection
        assert isinstance(joined, psycopg.Connection)
        dumper = joined.adapters.get_dumper(list, PyFormat.AUTO)
        assert dumper is JoinedListDumper
        plain = psycopg.connect(joined.info.dsn)
        try:
            for value in LISTS:
                expected = _sent(plain.cursor(), value)
                assert _sent(joined.cursor(), value) == expected, repr(value)
                if value and all(type(item) in (str, int) for item in value) and len({type(v) for v in value}) == 1:
                    assert expected[0] == value, repr(value)
        finally:
            plain.close()


def test_a_nul_is_refused_as_before(engine: Engine) -> None:
    with engine.connect() as connection:
        joined = connection.connection.dbapi_connection
        assert isinstance(joined, psycopg.Connection)
        with pytest.raises(psycopg.DataError):
            joined.cursor().execute("SELECT %s::text[]", [["a", "b\x00c"]])


def test_one_of_finds_every_text(engine: Engine) -> None:
    ids = classes_named(engine, TEXTS)
    with engine.connect() as connection:
        for text in TEXTS:
            named = select(SchoolClass.id).where(one_of(connection, SchoolClass.external_id, [text]))
            assert connection.execute(named).scalars().all() == [ids[text]], repr(text)
        every = select(SchoolClass.external_id).where(one_of(connection, SchoolClass.external_id, TEXTS))
        assert sorted(connection.execute(every).scalars()) == sorted(TEXTS)
        by_id = select(SchoolClass.external_id).where(one_of(connection, SchoolClass.id, list(ids.values())))
        assert sorted(connection.execute(by_id).scalars()) == sorted(TEXTS)
