"""An ``http.client`` response whose header block is read as headers only, for answers of ``multipart/mixed``.

Why: ``http.client`` hands a response's header block to the ``email`` package's parser, which, when the
``Content-Type`` is multipart, goes on to look for the parts in the (empty) rest of the block, and for that
compiles a regular expression from the boundary. Google's batch answers carry a new boundary each time, so
``re``'s cache never holds it: measured, 0.3 ms of CPU for each answer against 0.04 ms for a JSON one, about
a tenth of a big teacher's first-sync CPU (its hundred batches). The ``email`` parser has the switch for a
block that has no body (``headersonly``); ``http.client`` does not pass it.

``HeadersOnlyResponse.begin`` is ``http.client.HTTPResponse.begin`` itself, run with ``parse_headers``
pointing at ``parse_headers_only``: the status line, the limits on header lines, the length, chunking and
keep-alive rules stay the standard library's own. The headers come out the same (tests/unit/test_headers.py).
"""

from __future__ import annotations

import email.parser
import http.client
import types
from typing import Any

_read_headers: Any = vars(http.client).get("_read_headers")
"""The standard library's reading of a header block, with its limits (line length, count of lines)."""

SWAPPABLE = _read_headers is not None and "parse_headers" in http.client.HTTPResponse.begin.__code__.co_names
"""Whether this Python's ``http.client`` is shaped as this module expects (a private helper and a global
looked up by ``begin``). Where it is not (another version), answers are read by ``http.client`` unchanged:
slower, never wrong."""


def parse_headers_only(fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage) -> Any:
    """``http.client.parse_headers``, with the ``email`` parser told that no body follows the headers."""
    block = b"".join(_read_headers(fp)).decode("iso-8859-1")
    return email.parser.Parser(_class=_class).parsestr(block, headersonly=True)


class HeadersOnlyResponse(http.client.HTTPResponse):
    """A response whose headers are parsed by ``parse_headers_only``; otherwise ``http.client``'s own."""

    if SWAPPABLE:
        begin = types.FunctionType(
            http.client.HTTPResponse.begin.__code__,
            {**vars(http.client), "parse_headers": parse_headers_only},
            "begin",
        )
