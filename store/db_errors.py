"""What a database that cannot be used said, in words safe to print: a table from the driver's text to ours.

The driver's own text is never printed whole (a future driver may put more in it); the one part echoed
is the database name the server could not find, which is the operator's own setting.
"""

from __future__ import annotations

import re

import sqlalchemy.exc

_MISSING_DATABASE = re.compile(r'database "([^"\n]{1,128})" does not exist')
KNOWN: tuple[tuple[str, str], ...] = (
    ("password authentication failed", "the server refused the user or password"),
    ("no password supplied", "the server asks for a password and the URL gives none"),
    ('role "', "the server knows no such user"),
    ("connection refused", "connection refused (no server listening on that host and port)"),
    ("could not translate host name", "unknown host"),
    ("name or service not known", "unknown host"),
    ("timeout expired", "the connection timed out"),
    ("unable to open database file", "cannot open the SQLite file (a missing directory, or not writable)"),
    ("database is locked", "the SQLite file is locked by another process"),
)


def unusable_reason(error: sqlalchemy.exc.OperationalError) -> str:
    """``database "x" does not exist``, ``connection refused: ...``, or the driver error's class name."""
    text = str(error.orig)
    missing = _MISSING_DATABASE.search(text)
    if missing:
        return f'database "{missing.group(1)}" does not exist'
    lowered = text.lower()
    for fragment, reason in KNOWN:
        if fragment in lowered:
            return reason
    return type(error.orig).__name__
