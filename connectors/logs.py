"""What the HTTP libraries under the connectors may log: warnings and errors, with no URL path or query in them.

Why: below WARNING those libraries log what we promise never to log. urllib3 writes every request
line (``GET /v3.0/users/<Clever id>/sections``), googleapiclient and google-auth every URL,
requests-oauthlib and oauthlib the authorization code, the Basic auth header and the token answer,
MSAL its token-cache events. An application that sets the root logger to DEBUG (``dramatiq worker
--verbose``, ``logging.basicConfig(level=DEBUG)``) would hand all of it to its handlers.

Two layers, so the promise holds whoever configures logging:

- their loggers are held at WARNING when the connectors are imported (a root at DEBUG no longer
  reaches them; a level an application set higher is kept);
- a filter on each of their loggers drops any record below WARNING, even when an application
  lowers their level again, and takes the path and query out of every URL in the records it lets
  through (``https://host/v3.0/users/*/sections?limit=*``): urllib3 names the URL in some warnings.

A logger filter sees only the records of its own logger, so the filter goes on every logger of
those namespaces; ``install`` runs again whenever a connector opens a session, to cover a logger
a library created lazily in the meantime.
"""

from __future__ import annotations

import logging
import re

LIBRARIES = (
    "urllib3",
    "requests",
    "requests_oauthlib",
    "oauthlib",
    "msal",
    "google",
    "googleapiclient",
    "google_auth_httplib2",
    "httplib2",
)
"""The namespaces of the libraries the connectors speak HTTP and OAuth through."""

_URL = re.compile(r"(?P<origin>https?://[^/\s\"'?#<>]+)(?P<rest>[/?][^\s\"'<>]*)?")
_TARGET = re.compile(r"(?<![^\s\"'(=])/[^\s\"')<>]*")
"""A path standing on its own, as in urllib3's ``"GET /v1.0/education/classes?$top=999 HTTP/1.1"``."""
_WORD = re.compile(r"\$?[A-Za-z][A-Za-z_-]*|v\d+(\.\d+)?|oauth2|\.well-known")
"""A path segment that names a resource or a version, never an id (ids carry digits, dots or ``@``)."""


def shape(target: str) -> str:
    """A path and query with every segment that could be an id as ``*`` and every query value as ``*``."""
    path, _, query = target.partition("#")[0].partition("?")
    segments = "/".join(part if not part or _WORD.fullmatch(part) else "*" for part in path.split("/"))
    if not query:
        return segments
    names = [item.partition("=")[0] for item in query.split("&") if item]
    return f"{segments}?" + "&".join(f"{name if _WORD.fullmatch(name) else '*'}=*" for name in names)


def _shaped(target: str) -> str:
    """``shape`` of a target found in prose, its trailing punctuation (``):``, ``.``) left as it was."""
    kept = target.rstrip(")]:;,.")
    return shape(kept) + target[len(kept) :]


def scrub(text: str) -> str:
    """``text`` with the path and query of every URL and request target shaped (``shape``)."""
    text = _URL.sub(lambda m: m.group("origin") + _shaped(m.group("rest") or ""), text)
    return _TARGET.sub(lambda m: _shaped(m.group(0)), text)


class LibraryRecords(logging.Filter):
    """On a library's logger: nothing below WARNING; URLs shaped in the rest, the traceback's text too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        try:
            message = record.getMessage()
        except Exception:  # a library's malformed arguments: keep its template only
            message = str(record.msg)
        record.msg, record.args = scrub(message), ()
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER = LibraryRecords()


def _ours(name: str) -> bool:
    return any(name == library or name.startswith(library + ".") for library in LIBRARIES)


def install() -> None:
    """Put the filter on every logger of the libraries that exists now (idempotent, a few microseconds)."""
    loggers = [logging.getLogger(library) for library in LIBRARIES]
    loggers += [
        logger
        for name, logger in list(logging.root.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and _ours(name)
    ]
    for logger in loggers:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def hold_at_warning() -> None:
    """The libraries' own level: WARNING, unless an application already set it higher."""
    for library in LIBRARIES:
        logger = logging.getLogger(library)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
