"""A JSON list answer read as it arrives, a few hundred records at a time, never the whole page at once.

Why: Clever answers a district's sections 10,000 to a page (the fewest requests), each section with
every student id it holds. Parsed whole, one page of a 100,000-student district held some 100 MB
of dicts before the first row was written, and a sync's peak memory grew with the district.
Read as a stream (ijson, over the response's raw socket), only the part being mapped and written
is in memory, whatever the page size; the other top-level values (``links``, read after the list
or before it) are kept once the answer is read to its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import ijson
from ijson.common import ObjectBuilder

from connectors.base import ProviderDataError

PART_RECORDS = 500
"""Records a part holds: enough that a part is one efficient write, few enough that memory stays flat."""

Event = tuple[str, str, Any]


class Readable(Protocol):
    """What ijson reads from: a file, or ``ChunkReader``."""

    def read(self, size: int = -1, /) -> bytes: ...


class ChunkReader:
    """``read`` over ``Response.iter_content``: requests still decodes gzip and turns socket faults into its
    own exceptions, which a read of the raw socket would not. A read may return less than asked, as a
    socket's does; ijson reads until it gets no bytes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, size: int = -1, /) -> bytes:
        if size == 0:
            return b""  # ijson reads nothing first, to learn whether the stream gives bytes or text
        if size < 0:
            return b"".join(self._chunks)
        return next(self._chunks, b"")


class StreamedList:
    """The items of the list at ``list_key`` of one JSON object answer, in parts; then the kept values.

    ``kept`` holds the top-level values named in ``keep`` once ``parts()`` is exhausted. A body that is
    not a JSON object, has no list at ``list_key`` or ends half-way is a ``ProviderDataError``
    (raised when it is met, after the parts before it); errors of the stream itself (timeouts,
    resets) come up as the stream raised them, for the connector to sort.
    """

    def __init__(self, stream: Readable, list_key: str = "data", keep: tuple[str, ...] = ("links",)) -> None:
        self._stream = stream
        self._list_key = list_key
        self._keep = keep
        self._list_seen = False
        self._builders: dict[str, ObjectBuilder] = {}
        self.kept: dict[str, Any] = {}

    def parts(self, size: int | None = None) -> Iterator[list[Any]]:
        """Lists of at most ``size`` (``PART_RECORDS``) items, in order; at least one (maybe empty) for any
        readable answer."""
        size = PART_RECORDS if size is None else size
        part: list[Any] = []
        yielded = False
        try:
            for item in ijson.items(self._events(), f"{self._list_key}.item"):
                part.append(item)
                if len(part) >= size:
                    yield part
                    part, yielded = [], True
        except ijson.JSONError:
            raise ProviderDataError("a list answer is not readable JSON (malformed or cut short)") from None
        if not self._list_seen:
            raise ProviderDataError(f"a list answer carries no '{self._list_key}' list")
        self.kept = {key: builder.value for key, builder in self._builders.items()}
        if part or not yielded:
            yield part

    def _events(self) -> Iterator[Event]:
        """ijson's events, passed on unchanged, noting the answer's shape and building the kept values."""
        first = True
        for prefix, event, value in ijson.parse(self._stream, use_float=True):
            if first and event != "start_map":
                raise ProviderDataError("a list answer is not a JSON object")
            first = False
            if prefix == self._list_key and event != "end_array":
                if event != "start_array":
                    raise ProviderDataError(f"'{self._list_key}' of a list answer is not a list")
                self._list_seen = True
            head = prefix.split(".", 1)[0]
            if prefix and head in self._keep:
                self._builders.setdefault(head, ObjectBuilder()).event(event, value)
            yield prefix, event, value
