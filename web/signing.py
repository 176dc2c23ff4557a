"""Signed link requests: only the platform, which knows who is logged in, can send a teacher to ``/link``.

Without it anyone who knows (or guesses) a teacher's platform id could link their own provider
account in that teacher's name, and a link to another account ends the teacher's current one
(grant revoked, roster purged). The platform signs what it asks for with ``LINK_SIGNING_KEY``
(docs/web.md has the platform's side in Python):

    sig = HMAC-SHA256(key, message(provider, teacher, tenant, basis, expires, nonce)).hexdigest()

``message`` frames each field as a netstring (``<byte length>:<bytes>,``) after a version tag, so no
value can move a boundary between fields (``|`` in a teacher id once shifted part of it into the
tenant) and no signature of the old ``a|b|c`` form verifies. ``tenant`` is empty when left out,
``expires`` a Unix time at most ``MAX_LIFETIME`` ahead, ``nonce`` a fresh random value: the web app
spends it on first use (store.links.spend_nonce), so a signed link works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

MAX_LIFETIME = 600
"""A signed link is good for ten minutes at most: long enough for a click, too short to linger in a mailbox."""

VERSION = "rostersync-link-v2"
NONCE_PATTERN = "^[A-Za-z0-9_-]{16,64}$"
"""URL-safe base64, e.g. ``secrets.token_urlsafe(16)``: at least 96 random bits."""


class BadSignature(Exception):
    """Missing, wrong or expired; the message says which, never the expected value.

    ``kind`` names it for the metric: ``unsigned`` (no signature at all: a hand-made or truncated URL),
    ``expired`` (a good link opened late), ``forged`` (a signature that does not match, or a lifetime no
    platform gives): the first two are a teacher's mishap, the last is worth an operator's look. ``too_long``: the
    forged kind that is a lifetime no platform gives (its page says the link is not accepted, not that it is
    damaged)."""

    def __init__(self, message: str, kind: Literal["unsigned", "expired", "forged"], *, too_long: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.too_long = too_long


def message(*, provider: str, teacher: str, tenant: str | None, basis: str, expires: int, nonce: str) -> bytes:
    fields = (VERSION, provider, teacher, tenant or "", basis, str(expires), nonce)
    return b"".join(b"%d:%s," % (len(raw), raw) for raw in (field.encode() for field in fields))


def signature(
    key: str, *, provider: str, teacher: str, tenant: str | None, basis: str, expires: int, nonce: str
) -> str:
    signed = message(provider=provider, teacher=teacher, tenant=tenant, basis=basis, expires=expires, nonce=nonce)
    return hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()


def check(
    key: str,
    *,
    provider: str,
    teacher: str,
    tenant: str | None,
    basis: str,
    expires: int | None,
    nonce: str | None,
    sig: str | None,
    now: float | None = None,
) -> None:
    """The signature and its lifetime; the caller spends the nonce (once the request is otherwise good)."""
    if expires is None or not sig or not nonce:
        raise BadSignature("this link is not signed by the platform", "unsigned")
    moment = time.time() if now is None else now
    if expires < moment:
        raise BadSignature("this link has expired", "expired")
    if expires > moment + MAX_LIFETIME:
        raise BadSignature("this link is valid for too long", "forged", too_long=True)
    expected = signature(
        key, provider=provider, teacher=teacher, tenant=tenant, basis=basis, expires=expires, nonce=nonce
    )
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise BadSignature("this link's signature does not match", "forged")


def link_url(
    key: str, callback_uri: str, *, provider: str, teacher: str, tenant: str | None, basis: str, lifetime: int
) -> str:
    """A signed, single-use ``/link/{provider}`` URL on the host (and path prefix) of the provider's callback."""
    expires = int(time.time()) + min(lifetime, MAX_LIFETIME)
    nonce = secrets.token_urlsafe(16)
    sig = signature(key, provider=provider, teacher=teacher, tenant=tenant, basis=basis, expires=expires, nonce=nonce)
    query = {"teacher": teacher, **({"tenant": tenant} if tenant is not None else {}), "basis": basis}
    query |= {"expires": str(expires), "nonce": nonce, "sig": sig}
    parts = urlsplit(callback_uri)
    suffix = f"/oauth/{provider}/callback"
    prefix = parts.path[: -len(suffix)] if parts.path.endswith(suffix) else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{prefix}/link/{provider}", urlencode(query), ""))
