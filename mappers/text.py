"""Provider strings -> strings the store can keep: one rule for every mapper.

A provider's payload holds whatever its own database holds, and JSON can carry things our store
cannot: PostgreSQL refuses NUL in text, UTF-8 cannot encode a lone surrogate (a ``"\\ud800"`` escape
in JSON decodes to one), and an id longer than its column is refused. Any of those used to fail
the whole write (and the run) far from the record that caused it. Here an id that cannot be one is
refused (the mapper skips and counts the record), and free text is made storable without changing
what a person would read: right-to-left marks, combining characters and long names pass unchanged.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ID_LENGTH = 128
"""The store's ``external_id`` column; no provider's ids come near it (Graph's GUIDs are 36)."""
MAX_STATE_LENGTH = 32
"""The store's ``state`` column."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""C0 controls and DEL, except tab, newline and carriage return."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""Either of the two above, for an id (refused whole, so one search finds both): an events page checks 6,000 lists."""


def identifier(value: Any, *, strip: bool = True, max_length: int = MAX_ID_LENGTH) -> str | None:
    """An id as the provider gave it, or None when it cannot be one.

    Not a string, blank, longer than ``max_length``, or holding a control character or a lone
    surrogate: such a record breaks every provider's documented shape.
    """
    if not isinstance(value, str):
        return None
    text = value.strip() if strip else value
    if not text or len(text) > max_length or not _storable(text):
        return None
    return text


def identifiers(values: list[Any], *, max_length: int = MAX_ID_LENGTH) -> bool:
    """Whether every value is an id as ``identifier(value, strip=False)`` takes it: one look at a whole list.

    A Clever section lists its members' ids, 125,000 of them in a district of 100,000 students; one
    search a list instead of two an id (a control character or a surrogate is found in the joined
    text exactly when it is in one of the ids, and one pattern finds either).
    """
    if not values:
        return True
    try:
        joined = "".join(values)  # a value that is not text fails here
    except TypeError:
        return False
    lengths = set(map(len, values))  # in C: a test per id in Python was most of this function's time
    if min(lengths) < 1 or max(lengths) > max_length:
        return False
    return _storable(joined)


def _storable(text: str) -> bool:
    """Whether ``text`` holds no control character (but tab and line breaks) and no lone surrogate.

    Printable ASCII holds neither (``str.isprintable`` is False for every C0 control and DEL), and two string
    methods tell it at a fraction of a search's cost; any other text is searched as before. ASCII letters and
    digits alone (every id of the providers we know: hex, GUIDs without their dashes) are printable ASCII, and
    ``bytes.isalnum`` tells it from a table, a few times faster than ``str.isprintable``'s per-character
    look-up of the Unicode database (an events page checks some 5 MB of ids): the same verdict, sooner.
    """
    if text.isascii() and (text.encode("ascii").isalnum() or text.isprintable()):
        return True
    return _UNSTORABLE.search(text) is None


def display(value: Any, *, strip: bool = True) -> str | None:
    """Free text (a name, a section, an email) made storable; None when it is not text or is blank.

    NUL and the other C0 controls (but tab and line breaks) are removed, and a lone surrogate is
    replaced by U+FFFD. Nothing else is touched. Printable ASCII holds neither: it is not searched.
    """
    if not isinstance(value, str):
        return None
    if type(value) is str and value.isascii() and value.isprintable():
        text = value
    else:
        text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", value))
    if strip:
        text = text.strip()
    return text or None
