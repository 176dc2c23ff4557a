"""A JSON list answer read as it arrives, a few hundred records at a time, never the whole page at once.

Why: Clever answers a district's sections 10,000 to a page (the fewest requests), each section with
every student id it holds. Parsed whole, one page of a 100,000-student district held some 100 MB
of dicts before the first row was written, and a sync's peak memory grew with the district.
Read as a stream (ijson, over the response's chunks), only the part being mapped and written
is in memory, whatever the page size; the other top-level values (``links``, read after the list
or before it) are kept once the answer is read to its end.

How: the items are built by ijson's C parser (yajl2_c) reading the stream as a plain file, so no
Python code runs per JSON token; each chunk it reads is also pushed into a C coroutine per kept value,
and into a shape check fed only until the list opens. An earlier version passed every token through
a Python generator (to note the shape and the kept values) into ijson's item builder: twice the CPU
of this, the larger part of reading a change page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import ijson

from connectors.base import ProviderDataError

PART_RECORDS = 500
"""Records a part holds: enough that a part is one efficient write, few enough that memory stays flat."""
READ_BYTES = 64 * 1024
"""What one ``read`` asks of a file-like stream (``ChunkReader`` hands out its chunks whatever the size)."""

Event = tuple[str, str, Any]


class Readable(Protocol):
    """What the list is read from: a file, or ``ChunkReader``."""

    def read(self, size: int = -1, /) -> bytes: ...


class ChunkReader:
    """``read`` over ``Response.iter_content``: requests still decodes gzip and turns socket faults into its
    own exceptions, which a read of the raw socket would not. A read may return less than asked, as a
    socket's does; the reader reads until it gets no bytes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, size: int = -1, /) -> bytes:
        if size == 0:
            return b""
        if size < 0:
            return b"".join(self._chunks)
        return next(self._chunks, b"")


class _Opened(Exception):
    """The list has opened: the shape is known, the shape check needs no more tokens."""


class _Shape:
    """Told the answer's first tokens (a target of ijson's ``parse_coro``): is it an object holding a list?"""

    def __init__(self, list_key: str) -> None:
        self._list_key = list_key
        self._first = True

    def send(self, token: Event) -> None:
        prefix, event, _ = token
        if self._first and event != "start_map":
            raise ProviderDataError("a list answer is not a JSON object")
        self._first = False
        if prefix == self._list_key and event != "map_key":
            if event != "start_array":
                raise ProviderDataError(f"'{self._list_key}' of a list answer is not a list")
            raise _Opened


class _Tee:
    """A ``Readable`` that also hands each chunk to the shape check (until the list opens) and the kept values'
    coroutines, so the items' parser reads the stream once, in C, as a plain file."""

    def __init__(self, stream: Readable, shape: Any, coroutines: list[Any]) -> None:
        self._stream = stream
        self.shape = shape
        self._coroutines = coroutines

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._stream.read(size)
        if chunk:
            self.shape = _opened(self.shape, chunk)
            for coroutine in self._coroutines:
                coroutine.send(chunk)
        return chunk

    def close(self) -> None:
        """The answer was read to its end: a shape still unsettled, or a value cut short, fails here."""
        self.shape = _opened(self.shape, None)
        for coroutine in self._coroutines:
            coroutine.close()


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
        self.kept: dict[str, Any] = {}

    def parts(self, size: int | None = None) -> Iterator[list[Any]]:
        """Lists of at most ``size`` (``PART_RECORDS``) items, in order; at least one (maybe empty) for any
        readable answer."""
        size = PART_RECORDS if size is None else size
        kept = {key: ijson.sendable_list() for key in self._keep}
        coroutines = [ijson.items_coro(values, key, use_float=True) for key, values in kept.items()]
        tee = _Tee(self._stream, ijson.parse_coro(_Shape(self._list_key)), coroutines)
        part: list[Any] = []
        yielded = False
        try:
            for item in ijson.items(tee, f"{self._list_key}.item", use_float=True, buf_size=READ_BYTES):
                part.append(item)
                if len(part) >= size:
                    yield part
                    part, yielded = [], True
            tee.close()
        except ijson.JSONError:
            raise ProviderDataError("a list answer is not readable JSON (malformed or cut short)") from None
        if tee.shape is not None:
            raise ProviderDataError(f"a list answer carries no '{self._list_key}' list")
        self.kept = {key: values[0] for key, values in kept.items() if values}
        if part or not yielded:
            yield part


def _opened(shape: Any, chunk: bytes | None) -> Any:
    """Feed the shape check one chunk (None: the end); None once the list has opened (it needs no more)."""
    if shape is None:
        return None
    try:
        if chunk is None:
            shape.close()
        else:
            shape.send(chunk)
    except _Opened:
        return None
    return shape
