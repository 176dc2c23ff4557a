"""Google's batch endpoint: one multipart/mixed POST of application/http parts, one answer each."""

from __future__ import annotations

import email.message
import email.parser
import secrets
from http import HTTPStatus
from typing import TypeAlias
from urllib.parse import parse_qs, urlsplit

from emulators.core import Request, RequestRecord, Response, copy_query, json_body
from emulators.google.api import GoogleApi
from emulators.google.errors import (
    _MSG_BATCH_TOO_LARGE,
    MAX_BATCH_CALLS,
    _api_error,
)

_Request = Request
_Response = Response
_json_body = json_body


class GoogleBatch(GoogleApi):
    """The batch route."""

    # ------------------------------------------------------------------------------ batch
    def _batch(self, request: _Request) -> _Response:
        """Google's batch endpoint: one ``multipart/mixed`` POST of ``application/http`` parts, one answer each.

        As Google's guide describes it (developers.google.com/classroom/best-practices/batch): the outer
        request's headers, but its ``Content-`` ones, apply to every part unless the part sets its own
        (google-api-python-client puts the Authorization header on both); each part is then served as if
        it had come alone, so it is authorised, quota-counted, failure-injected, tampered with and logged
        on its own (the log holds the parts just before the batch itself), while the hooks see only the
        batch: it is one HTTP round trip. Answers come in request order, each part's ``Content-ID``
        ``<response-X>`` for the request's ``<X>``. More than ``MAX_BATCH_CALLS`` parts is refused whole
        with a 400 and no part served [U: the guide gives the limit, not the exact refusal].
        """
        parts = _batch_parts(request)
        if isinstance(parts, _Response):
            return parts
        if len(parts) > self._batch_limit:
            message = _MSG_BATCH_TOO_LARGE.replace(str(MAX_BATCH_CALLS), str(self._batch_limit))
            return _api_error(400, message)
        shared = {name: value for name, value in request.headers.items() if not name.startswith("content-")}
        answers = [(content_id, self._batch_part(sub, shared)) for content_id, sub in parts]
        boundary = "batch_" + secrets.token_hex(12)
        body = b"".join(_batch_answer(boundary, content_id, answer) for content_id, answer in answers)
        response = _Response(
            200,
            body + f"--{boundary}--\r\n".encode(),
            [("Content-Type", f"multipart/mixed; boundary={boundary}"), ("Vary", "Origin, X-Origin, Referer")],
        )
        response.user_id = self._identify(request, before=False)
        return response

    def _batch_part(self, sub: _Request, shared: dict[str, str]) -> _Response:
        """Serve one part as a request of its own (outer headers first, the part's own override them)."""
        sub.headers = shared | sub.headers
        result = self._injected_failure(sub)
        if result is None:
            result = self._api(sub) if sub.path.startswith("/v1/") else _api_error(404)
        result = self._tampered(sub, result)
        user_id = result.user_id if result.user_id is not None else self._identify(sub, before=False)
        self._log.append(RequestRecord(sub.method, sub.path, copy_query(sub.query), user_id, result.status))
        return result


_BatchParts: TypeAlias = "list[tuple[str, _Request]]"


def _batch_parts(request: _Request) -> _BatchParts | _Response:
    """The parts of a batch request as (Content-ID, request), or the 400 a malformed batch gets."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/mixed") or "boundary=" not in content_type.lower():
        return _api_error(400, "Batch requests must be multipart/mixed with a boundary.")
    envelope = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + request.body
    )
    payload = envelope.get_payload() if envelope.is_multipart() else None
    if not isinstance(payload, list) or not payload:
        return _api_error(400, "Failed to parse batch request: no parts.")
    parts: _BatchParts = []
    for index, part in enumerate(payload):
        if not isinstance(part, email.message.Message) or part.get_content_type() != "application/http":
            return _api_error(400, "Failed to parse batch request: every part must be application/http.")
        inner = _inner_request(str(part.get_payload()))
        if inner is None:
            return _api_error(400, "Failed to parse batch request: a part is not an HTTP request.")
        content_id = " ".join(str(part.get("Content-ID", "")).split()).strip("<>") or f"part-{index + 1}"
        parts.append((content_id, inner))
    return parts


def _inner_request(text: str) -> _Request | None:
    """``GET /v1/... HTTP/1.1`` plus headers and body; only a path is allowed, never a full URL."""
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.lstrip("\n").split("\n")
    words = lines[0].split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/") or not words[1].startswith("/"):
        return None
    headers: dict[str, str] = {}
    last = ""
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            return None
        last = name.strip().lower()
        headers[last] = value.strip()
    target = urlsplit(words[1])
    query = parse_qs(target.query, keep_blank_values=True)
    return _Request(words[0].upper(), target.path, query, {}, headers, body.encode())


def _batch_answer(boundary: str, content_id: str, answer: _Response) -> bytes:
    """One ``application/http`` part of a batch answer: status line, headers, JSON body (CRLF throughout)."""
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in answer.headers if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(answer.body)}")
    head = (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n"
        + "\r\n".join(lines)
        + "\r\n\r\n"
    )
    return head.encode() + answer.body + b"\r\n"
