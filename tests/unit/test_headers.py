"""connectors.headers: a response's headers read as headers only, everything else as http.client reads it."""

from __future__ import annotations

import email.parser as email_parser
import http.client
import io
from typing import Any

import pytest

from connectors.google import _QuietHTTP, _QuietHTTPS
from connectors.headers import HeadersOnlyResponse, parse_headers_only

BATCH_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: multipart/mixed; boundary=batch_Zx1\r\n"
    b"X-Folded: one\r\n two\r\n"
    b"Content-Length: 26\r\n"
    b"\r\n"
    b"--batch_Zx1\r\n--batch_Zx1--"
)


class _Socket:
    """What ``HTTPResponse`` needs of a socket: a file to read the answer from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> Any:
        return io.BytesIO(self._data)


def _headers(block: bytes, parse: Any) -> list[tuple[str, str]]:
    return list(parse(io.BytesIO(block)).items())


@pytest.mark.parametrize(
    "content_type", ["multipart/mixed; boundary=batch_Zx1", "multipart/mixed", "application/json; charset=UTF-8"]
)
def test_the_headers_are_those_http_client_reads(content_type: str) -> None:
    block = f"Content-Type: {content_type}\r\nX-Folded: a\r\n  b\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    assert _headers(block, parse_headers_only) == _headers(block, http.client.parse_headers)
    # no pass for parts in what is only a header block (http.client's own finds "defects" there)
    assert parse_headers_only(io.BytesIO(block)).defects == []


def test_a_response_is_read_as_http_client_reads_it() -> None:
    ours, theirs = HeadersOnlyResponse(_Socket(BATCH_ANSWER)), http.client.HTTPResponse(_Socket(BATCH_ANSWER))
    ours.begin()
    theirs.begin()
    assert (ours.status, ours.reason, ours.version, ours.length) == (theirs.status, theirs.reason, 11, 26)
    assert ours.getheaders() == theirs.getheaders()
    assert ours.read() == theirs.read() == b"--batch_Zx1\r\n--batch_Zx1--"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    answer = HeadersOnlyResponse(_Socket(chunked))
    answer.begin()
    assert answer.chunked and answer.read() == b"abc"


def test_the_standard_limits_hold() -> None:
    too_many = b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        HeadersOnlyResponse(_Socket(too_many)).begin()
    with pytest.raises(http.client.BadStatusLine):
        HeadersOnlyResponse(_Socket(b"SPDY/3 200 OK\r\n\r\n")).begin()


def test_google_connections_read_their_answers_so() -> None:
    assert _QuietHTTPS.response_class is HeadersOnlyResponse and _QuietHTTP.response_class is HeadersOnlyResponse


def test_this_python_reads_headers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the Python we ship with, the swap is in place (another version falls back to http.client's own)."""
    calls: list[int] = []
    monkeypatch.setattr(email_parser.Parser, "parsestr", _counting(email_parser.Parser.parsestr, calls))
    HeadersOnlyResponse(_Socket(BATCH_ANSWER)).begin()
    assert calls == [True]


def _counting(parsestr: Any, calls: list[Any]) -> Any:
    def parse(self: Any, text: str, headersonly: bool = False) -> Any:
        calls.append(headersonly)
        return parsestr(self, text, headersonly)

    return parse
