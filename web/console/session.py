"""The console's sign-in: one of ``ADMIN_TOKENS`` once, then a signed, expiring session cookie and a CSRF token.

The cookie (``__Host-rostersync-console``: HttpOnly, Secure, SameSite=Strict, path ``/``, no domain)
holds ``v1.<token id>.<expires>.<csrf>.<signature>``. The token id is a hash of the admin token
the session was opened with, and the signature is an HMAC under that token itself: no new secret
to configure, and taking a token out of ``ADMIN_TOKENS`` ends every session opened with it at the
next request. The CSRF token is random per session; every form the console serves carries it and
every POST is refused without it (SameSite=Strict alone leaves same-site subdomains able to post).
Sign-in itself is guarded by a double-submit cookie, so no other site can sign a browser in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "__Host-rostersync-console"
SIGN_IN_COOKIE = "__Host-rostersync-console-sign-in"
SIGN_IN_SECONDS = 900
ACTOR = "admin:console"
"""Who the audit log says acted, for every action taken in the console."""


@dataclass(frozen=True)
class Session:
    token_id: str
    expires: int
    csrf: str


def token_id(token: str) -> str:
    """A name for an admin token that says nothing about it (a hash of a high-entropy secret)."""
    return hashlib.sha256(b"rostersync-console-token|" + token.encode()).hexdigest()[:16]


def _signature(token: str, token_ref: str, expires: int, csrf: str) -> str:
    message = f"rostersync-console-v1|{token_ref}|{expires}|{csrf}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def open_session(token: str, lifetime: int, now: float | None = None) -> tuple[Session, str]:
    """A new session for a token already checked, and the cookie value that carries it."""
    expires = int(time.time() if now is None else now) + lifetime
    session = Session(token_id(token), expires, secrets.token_urlsafe(24))
    value = (
        f"v1.{session.token_id}.{expires}.{session.csrf}.{_signature(token, session.token_id, expires, session.csrf)}"
    )
    return session, value


def read_session(value: str | None, tokens: list[str], now: float | None = None) -> Session | None:
    """The session a cookie holds, or None: malformed, forged, expired, or its token no longer configured."""
    if not value:
        return None
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != "v1" or not parts[2].isdigit():
        return None
    _, ref, expires_text, csrf, signature = parts
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return None
    matched = None
    for token in tokens:  # every token looked at, whatever matched first
        if hmac.compare_digest(token_id(token), ref):
            matched = token
    if matched is None:
        return None
    if not hmac.compare_digest(_signature(matched, ref, expires, csrf), signature):
        return None
    return Session(ref, expires, csrf)


def same(presented: str | None, expected: str) -> bool:
    """A form's CSRF token against the session's, in constant time; a missing one never matches."""
    return bool(presented) and bool(expected) and hmac.compare_digest(str(presented).encode(), expected.encode())


def cookie_header(name: str, value: str, max_age: int) -> str:
    """A ``Set-Cookie`` value with every attribute the ``__Host-`` prefix and the console need."""
    return f"{name}={value}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict"


def cleared(name: str) -> str:
    return f"{name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict"
