"""PostgreSQL: a list of texts or of integers sent as an array in one join, not an element at a time.

Why: the store sends its id and pseudonym lists as one array parameter each (``store.db.one_of``, the
``unnest`` inserts of ``store.roster``), and psycopg's text dumper of a list builds that array in Python,
a dumper call, a regex search and an append per element: about 1.2 us an element, some 24 ms of a 1% change
at 100,000 students (BENCHMARKS.md, issue 22, item 3), every one of them spent while the server waits. When
every element of a list is a ``str`` (or every one an ``int``), the same array literal is built by a few
joins in C: each text quoted and its ``"`` and ``\\`` escaped (what psycopg does to the texts that need it;
quoting every one is the same array to PostgreSQL), each integer as ``str`` writes it. Anything else (a
``None``, a ``bool``, an enum, nested lists, a text holding a NUL, a connection not in UTF-8) takes psycopg's
own path, unchanged. The array's type (its OID, chosen by psycopg from the elements) is psycopg's, as before.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection as PsycopgConnection
from psycopg.types.array import ListDumper
from sqlalchemy import Engine, event

_SEPARATOR = "\x00"
"""Joins the texts before they are quoted: no PostgreSQL text can hold it, so a text that does is sent as
before (and refused by PostgreSQL as before)."""


class JoinedListDumper(ListDumper):
    """psycopg's text ``list`` dumper, with a flat list of only texts or only integers joined at once."""

    def dump(self, obj: list[Any]) -> Any:
        if obj and self.sub_dumper is not None and self.delimiter == b"," and self._utf8():
            kinds = set(map(type, obj))
            if kinds == {str}:
                joined = _SEPARATOR.join(obj)
                if joined.count(_SEPARATOR) == len(obj) - 1:  # no text holds the separator itself
                    if "\\" in joined or '"' in joined:
                        joined = joined.replace("\\", "\\\\").replace('"', '\\"')
                    return ('{"' + joined.replace(_SEPARATOR, '","') + '"}').encode()
            elif kinds == {int}:
                return ("{" + ",".join(map(str, obj)) + "}").encode()
        return super().dump(obj)

    def _utf8(self) -> bool:
        """Whether the connection's client encoding is UTF-8, in which the joined texts are encoded."""
        connection = self.connection
        return connection is not None and connection.info.encoding == "utf-8"


def register(engine: Engine) -> None:
    """Every psycopg connection of ``engine`` dumps lists with ``JoinedListDumper`` (its own adapters only)."""

    @event.listens_for(engine, "connect")
    def _joined_lists(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, PsycopgConnection):
            dbapi_connection.adapters.register_dumper(list, JoinedListDumper)
