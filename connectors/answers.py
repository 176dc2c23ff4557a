"""Reading a provider's answer without trusting it: a body that may not be JSON, a wait that may not be a number.

Why one place: every connector reads error bodies and throttling headers that a proxy, a provider's
bad day or a hostile network can fill with anything (an HTML error page, ``Retry-After: soon``, a
``null``). Each of these readers returns a safe value for any input and never raises, so an error
path never turns into a crash of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import requests


def json_or_none(response: requests.Response) -> Any:
    """The answer's body as JSON, or None when it is not JSON (an HTML error page, an empty body)."""
    try:
        return response.json()
    except ValueError:
        return None


def json_object(text: str | bytes) -> dict[str, Any]:
    """A body as a JSON object, or ``{}`` when it is empty, not JSON, or JSON of another shape."""
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def header(headers: Mapping[str, Any], name: str) -> Any:
    """The value of header ``name`` whatever its case (a ``$batch`` sub-response's headers are a plain
    dict, not requests' case-insensitive one); None when it is absent."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def has_header(headers: Mapping[str, Any], name: str) -> bool:
    wanted = name.lower()
    return any(key.lower() == wanted for key in headers)


def seconds(value: Any, default: float) -> float:
    """A ``Retry-After`` value in delta-seconds (never below 0); ``default`` when absent or unreadable.

    The HTTP-date form is not read: no provider we call sends it, and a date we cannot parse waits
    ``default``, which each connector sets to its provider's documented window.
    """
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return default


def retry_after(headers: Mapping[str, Any], default: float) -> float:
    """Seconds the ``Retry-After`` header asks for; ``default`` when it is absent or unreadable."""
    return seconds(header(headers, "retry-after"), default)


def rate_reset(headers: Mapping[str, Any], default: float, now: float | None = None) -> float:
    """Seconds until a rate window resets: ``X-RateLimit-Reset`` (Unix seconds, at least 1 s away), else
    ``Retry-After``, else ``default`` (Clever sends the first; dev.clever.com/docs/api-rate-limits)."""
    now = time.time() if now is None else now
    reset = header(headers, "x-ratelimit-reset")
    if reset is not None:
        try:
            return max(1.0, float(str(reset).split(",")[0]) - now)
        except ValueError:
            pass
    return retry_after(headers, default)
