"""Signed link requests: only the platform, which knows who is logged in, can send a teacher to ``/link``.

Without it anyone who knows (or guesses) a teacher's platform id could link their own provider
account in that teacher's name, and a link to another account ends the teacher's current one
(grant revoked, roster purged). The platform signs what it asks for with ``LINK_SIGNING_KEY``:

    sig = HMAC-SHA256(key, "provider|teacher|tenant|basis|expires").hexdigest()

with ``tenant`` empty when left out and ``expires`` a Unix time at most ``MAX_LIFETIME`` ahead.
"""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_LIFETIME = 3600
"""A signed link is good for an hour at most: long enough for a click, short enough not to linger."""


class BadSignature(Exception):
    """Missing, wrong or expired; the message says which, never the expected value."""


def signature(key: str, *, provider: str, teacher: str, tenant: str | None, basis: str, expires: int) -> str:
    message = "|".join((provider, teacher, tenant or "", basis, str(expires)))
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def check(
    key: str,
    *,
    provider: str,
    teacher: str,
    tenant: str | None,
    basis: str,
    expires: int | None,
    sig: str | None,
    now: float | None = None,
) -> None:
    if expires is None or not sig:
        raise BadSignature("this link is not signed by the platform")
    moment = time.time() if now is None else now
    if expires < moment:
        raise BadSignature("this link has expired")
    if expires > moment + MAX_LIFETIME:
        raise BadSignature("this link is valid for too long")
    expected = signature(key, provider=provider, teacher=teacher, tenant=tenant, basis=basis, expires=expires)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise BadSignature("this link's signature does not match")
