"""A JSON list answer read as it arrives, a few hundred records at a time, never the whole page at once.

Why: Clever answers a district's sections 10,000 to a page (the fewest requests), each section with
every student id it holds. Parsed whole, one page of a 100,000-student district held some 100 MB
of dicts before the first row was written, and a sync's peak memory grew with the district.
Read as a stream, only the part being mapped and written is in memory, whatever the page size; the
other top-level values (``links``, read after the list or before it) are kept once the answer is read
to its end.

How: the answer's outer object and its list are walked by a few lines of Python (a handful of
characters per item); each item, and each other top-level value, is built by the standard library's C
decoder (``json.JSONDecoder.raw_decode``) from the text read so far. An item cut by the end of what
was read is decoded again once more has arrived. Before (issue 22), ijson's C parser built the items and
a second ijson coroutine was fed the whole answer to find ``links``: two tokenisations of every byte,
about 0.28 s of CPU for a 5.4 MB events page, against about 0.05 s for this.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, Protocol

from connectors.base import ProviderDataError

PART_RECORDS = 500
"""Records a part holds: enough that a part is one efficient write, few enough that memory stays flat."""
READ_BYTES = 64 * 1024
"""What one ``read`` asks of a file-like stream (``ChunkReader`` hands out its chunks whatever the size)."""

_SPACE = re.compile(r"[ \t\n\r]*")
"""JSON's whitespace (RFC 8259), skipped between tokens."""


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259); the standard decoder would take them."""
    raise ValueError(f"{name} is not JSON")


_DECODE = json.JSONDecoder(parse_constant=_no_constant).raw_decode


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


class _Unreadable(Exception):
    """The answer is not JSON, or it ended half-way."""


class _Text:
    """The answer's text read so far, from the first character not yet taken (``at``)."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._at = 0
        self._ended = False

    def _more(self, at_least: int = 1) -> bool:
        """Read until ``at_least`` more characters arrived, or the end; False when nothing more came."""
        if self._ended:
            return False
        pieces, got = [self._text[self._at :]], 0
        while got < at_least:
            chunk = self._stream.read(READ_BYTES)
            try:
                piece = self._utf8.decode(chunk, final=not chunk)
            except UnicodeDecodeError:
                raise _Unreadable from None
            pieces.append(piece)
            got += len(piece)
            if not chunk:
                self._ended = True
                break
        self._text, self._at = "".join(pieces), 0
        return got > 0

    def peek(self) -> str:
        """The next character that is not whitespace, not taken; "" at the end of the answer."""
        while True:
            match = _SPACE.match(self._text, self._at)
            assert match is not None  # the pattern matches the empty string
            self._at = match.end()
            if self._at < len(self._text):
                return self._text[self._at]
            if not self._more():
                return ""

    def take(self, expected: str) -> str:
        """The next character, which must be one of ``expected``."""
        char = self.peek()
        if not char or char not in expected:
            raise _Unreadable
        self._at += 1
        return char

    def value(self) -> Any:
        """The next JSON value, whole. Decoded from what was read; when that ends inside the value (or right
        after it, where a number might go on), read as much again and decode it anew."""
        self.peek()
        while True:
            try:
                value, end = _DECODE(self._text, self._at)
            except ValueError:  # JSONDecodeError included
                if self._more(max(len(self._text) - self._at, READ_BYTES)):
                    continue
                raise _Unreadable from None
            if end == len(self._text) and self._more():
                continue
            self._at = end
            return value


class StreamedList:
    """The items of the list at ``list_key`` of one JSON object answer, in parts; then the kept values.

    ``kept`` holds the top-level values named in ``keep`` once ``parts()`` is exhausted (the first of a
    key given twice). A body that is not a JSON object, has no list at ``list_key`` or ends half-way is a
    ``ProviderDataError`` (raised when it is met, after the parts before it); errors of the stream itself
    (timeouts, resets) come up as the stream raised them, for the connector to sort.
    """

    def __init__(self, stream: Readable, list_key: str = "data", keep: tuple[str, ...] = ("links",)) -> None:
        self._stream = stream
        self._list_key = list_key
        self._keep = keep
        self.kept: dict[str, Any] = {}

    def parts(self, size: int | None = None) -> Iterator[list[Any]]:
        """Lists of at most ``size`` (``PART_RECORDS``) items, in order; at least one (maybe empty) for any
        readable answer. A part handed out is not kept by this generator while it waits: once the reader
        drops it, it is freed by its reference counts (a change page is handled with the cyclic collector
        paused, ``sync.collector.collector_paused``, and anything still alive when it resumes is traversed)."""
        size = PART_RECORDS if size is None else size
        text = _Text(self._stream)
        kept: dict[str, Any] = {}
        part: list[Any] = []
        listed = yielded = False
        try:
            closed = self._open(text)
            while not closed:
                key = text.value()
                if not isinstance(key, str) or text.take(":") != ":":
                    raise _Unreadable
                if key == self._list_key:
                    listed = True
                    for item in self._items(text):
                        part.append(item)
                        if len(part) >= size:
                            ready, part, yielded = [part], [], True
                            yield ready.pop()  # held by the reader alone (see ``parts``)
                elif key in self._keep:
                    kept.setdefault(key, text.value())
                else:
                    text.value()
                closed = text.take(",}") == "}"
            if text.peek():
                raise _Unreadable  # something after the object
        except _Unreadable:
            raise ProviderDataError("a list answer is not readable JSON (malformed or cut short)") from None
        if not listed:
            raise ProviderDataError(f"a list answer carries no '{self._list_key}' list")
        self.kept = kept
        if part or not yielded:
            ready, part = [part], []
            yield ready.pop()

    @staticmethod
    def _open(text: _Text) -> bool:
        """The answer's ``{`` (True when ``}`` follows it); a readable answer of another kind is told apart
        from one that is not JSON."""
        if text.peek() == "{":
            text.take("{")
            if text.peek() == "}":
                text.take("}")
                return True
            return False
        text.value()  # not JSON at all: unreadable
        raise ProviderDataError("a list answer is not a JSON object")

    def _items(self, text: _Text) -> Iterator[Any]:
        """The list's items, each decoded whole, up to its ``]``."""
        if text.peek() != "[":
            if not text.peek():
                raise _Unreadable
            text.value()  # a readable value that is not a list
            raise ProviderDataError(f"'{self._list_key}' of a list answer is not a list")
        text.take("[")
        if text.peek() == "]":
            text.take("]")
            return
        while True:
            yield text.value()
            if text.take(",]") == "]":
                return
