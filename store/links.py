"""Consents in flight: each ``state`` is stored hashed, with its PKCE verifier encrypted, and used once.

A state is finished only by the kind of client that began it (issue 18): one begun in a browser
(``/link``) carries the hash of that browser's cookie value, and the callback must present the same
value; one begun headless (``rostersync link start``) carries none, and only ``link complete``
finishes it. Spent nonces of signed ``/link`` requests live here too, until their signature expires.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from store.db import utcnow
from store.models import LinkAttempt, LinkNonce


class LinkStateError(Exception):
    """The callback's state is unknown, already used, expired or not this client's; nothing is linked."""


class WrongFinisher(LinkStateError):
    """The state was begun by another client (browser, headless, provider path); it is spent all the same."""


@dataclass(frozen=True)
class PendingLink:
    provider: str
    tenant: str
    linked_by: str
    verifier_blob: bytes
    consent_basis: str | None = None


@dataclass(frozen=True)
class Finisher:
    """Who presents a callback: a browser (its cookie value, None when it sent none) or the command line."""

    browser: bool
    cookie: str | None = None
    provider: str | None = None  # the provider the callback's path names (the web's), None: any


HEADLESS = Finisher(browser=False)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def remember(
    engine: Engine,
    *,
    state: str,
    provider: str,
    tenant: str,
    linked_by: str,
    verifier_blob: bytes,
    consent_basis: str | None = None,
    browser_cookie: str | None = None,
) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(LinkAttempt).values(
                state_hash=_hash(state),
                provider=provider,
                tenant=tenant,
                linked_by=linked_by,
                verifier_blob=verifier_blob,
                created_at=utcnow(),
                consent_basis=consent_basis,
                browser_hash=_hash(browser_cookie) if browser_cookie is not None else None,
            )
        )


def _refusal(attempt: Any, finisher: Finisher) -> str | None:
    """Why this finisher may not use this state (None: it may); checked after the state is spent."""
    if finisher.provider is not None and attempt.provider != finisher.provider:
        return f"this callback is not a {finisher.provider} link: start again from the platform"
    if attempt.browser_hash is None:
        if finisher.browser:
            return "this link was started by `rostersync link start`: finish it with `rostersync link complete`"
        return None
    if not finisher.browser:
        return "this link was started in a browser: finish it in that browser"
    if finisher.cookie is None or _hash(finisher.cookie) != attempt.browser_hash:
        return "this link was started in another browser (or its cookie is gone): start again from the platform"
    return None


def claim(engine: Engine, state: str, ttl_seconds: int, finisher: Finisher = HEADLESS) -> PendingLink:
    """Mark the state used and return what it was issued for; a second claim of the same state fails.

    A state presented by the wrong client (another browser, a headless finisher, another provider's
    callback) is spent all the same: whoever began it starts again, and nobody can retry it.
    """
    now = utcnow()
    with engine.begin() as connection:
        attempt = connection.execute(
            select(
                LinkAttempt.id,
                LinkAttempt.provider,
                LinkAttempt.tenant,
                LinkAttempt.linked_by,
                LinkAttempt.verifier_blob,
                LinkAttempt.created_at,
                LinkAttempt.used_at,
                LinkAttempt.consent_basis,
                LinkAttempt.browser_hash,
            )
            .where(LinkAttempt.state_hash == _hash(state))
            .with_for_update()
        ).one_or_none()
        if attempt is None:
            raise LinkStateError("unknown state: this callback was not issued by rostersync")
        if attempt.used_at is not None:
            raise LinkStateError("state already used: start the link again")
        if attempt.created_at < now - timedelta(seconds=ttl_seconds):
            raise LinkStateError("state expired: start the link again")
        connection.execute(update(LinkAttempt).where(LinkAttempt.id == attempt.id).values(used_at=now))
        refused = _refusal(attempt, finisher)
        pending = PendingLink(
            attempt.provider, attempt.tenant, attempt.linked_by, attempt.verifier_blob, attempt.consent_basis
        )
    if refused is not None:
        raise WrongFinisher(refused)
    return pending


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def spend_nonce(engine: Engine, nonce: str, expires_at: datetime) -> bool:
    """Spend a signed request's nonce: True the first time, False on every replay.

    The row lives as long as the signature it came with (a later use is refused as expired anyway);
    spent nonces past that are dropped here, so the table holds at most ten minutes of links.
    """
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(delete(LinkNonce).where(LinkNonce.expires_at < now))
        spent = connection.execute(
            _insert(connection)(LinkNonce)
            .values(nonce_hash=_hash(nonce), expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["nonce_hash"])
            .returning(LinkNonce.nonce_hash)
        ).scalar_one_or_none()
    return spent is not None
