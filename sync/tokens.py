"""The tokens one sync holds, and the rule for rotated ones: stored before they are used, and never lost.

A refresh makes some providers rotate the refresh token: from then on the old one is refused
(``invalid_grant``) and the new one exists only in this process until it is stored. So a failure to
store is never allowed to look like a revocation:

- a store that fails on the database (``OperationalError``: a blip, a failover) is retried within
  the run, the rotated tokens kept sealed in memory meanwhile (``STORE_WAITS``);
- tokens that can still not be stored are in our hands alone: they are revoked at the provider (a
  pending revoke when it is down) and the run ends with ``TokensNotStored``, for ``run_sync`` to mark
  the integration ``failed`` with its roster kept, waiting for a re-link (docs/reliability.md);
- tokens the fence refuses (a revoke or re-link committed meanwhile) belong to nobody: revoked too.

Which tokens the sync holds is kept as their identity (``identity``), never as their ciphertext:
``keys rotate`` re-seals the same tokens into a new ciphertext while a sync runs, and a revocation
that lands meanwhile must still be read as one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable

import sqlalchemy.exc

from connectors.base import TokenSet
from providers.registry import tokens_from_payload, tokens_to_payload
from store import integrations
from store.fence import Fenced
from store.runtime import Runtime
from store.vault import VaultError
from sync.grants import revoke_grant

log = logging.getLogger("rostersync.sync")

ACTOR = "system:sync"
DB_UNAVAILABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
"""What a database that is down, failing over or dropping connections raises; any other error is a bug."""
STORE_WAITS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0)
"""Seconds between the attempts to store rotated tokens: eight attempts over about 24 s, a failover's time."""


class TokensNotStored(Exception):
    """Rotated tokens could not be stored, so they were revoked at the provider: a re-link is needed.

    Not a revocation by the school: nothing is purged.
    """

    def __init__(self, integration_id: int) -> None:
        super().__init__(f"integration {integration_id}: rotated tokens could not be stored")
        self.integration_id = integration_id


def identity(tokens: TokenSet) -> str:
    """What the tokens are, as a digest: of the refresh token, or of the whole set when the provider keeps
    its refresh token elsewhere (a client library's cache in ``extra``) or has none (an organisation's app token)."""
    material = tokens.refresh_token or json.dumps(tokens_to_payload(tokens), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


class HeldTokens:
    """The tokens of one sync of one integration generation; ``keep`` is the connector's token sink."""

    def __init__(
        self,
        runtime: Runtime,
        state: integrations.IntegrationState,
        tokens: TokenSet,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.runtime = runtime
        self.state = state
        self.digest = identity(tokens)
        self._sleep = sleep

    def keep(self, tokens: TokenSet) -> None:
        """Store rotated tokens before they are used; tokens that cannot be stored are revoked at the provider."""
        sealed = self.runtime.vault.seal(tokens_to_payload(tokens))
        try:
            self._store(sealed)
        except Fenced:
            # A revoke or re-link committed while the provider rotated the refresh token: whoever ended
            # this generation revoked the token it read, which is now the dead, rotated-out one. The
            # live grant is in our hands only, so it is ended here before the sync stops.
            self._revoke(sealed)
            raise
        except DB_UNAVAILABLE:
            log.warning("integration %s: rotated tokens could not be stored; revoking them", self.state.id)
            self._revoke(sealed)
            raise TokensNotStored(self.state.id) from None
        self.digest = identity(tokens)

    def _store(self, sealed: bytes) -> None:
        """``integrations.store_tokens``, attempted again after each wait of ``STORE_WAITS`` on a database error."""
        for wait in (*STORE_WAITS, None):
            try:
                integrations.store_tokens(self.runtime.engine, self.state.id, self.state.generation, sealed)
                return
            except DB_UNAVAILABLE:
                if wait is None:
                    raise
                log.warning(
                    "integration %s: storing rotated tokens failed on the database; again in %.2fs",
                    self.state.id,
                    wait,
                )
                self._sleep(wait)

    def _revoke(self, sealed: bytes) -> None:
        """End the grant at the provider (the provider call needs no database; its audit does)."""
        try:
            revoke_grant(self.runtime, self.state.provider, self.state.id, sealed, actor=ACTOR)
        except DB_UNAVAILABLE:
            log.warning(
                "integration %s: the revoke of tokens we could not store could not be recorded either; "
                "if the provider did not confirm it, end the app's access in the provider's console",
                self.state.id,
            )

    def still_stored(self) -> bool:
        """Whether the stored tokens are the ones this sync holds; False when another sync rotated them since
        (or they are gone, or no key opens them: then this sync cannot tell, and must not purge)."""
        blob = integrations.load(self.runtime.engine, self.state.id).token_blob
        if blob is None:
            return False
        try:
            stored = tokens_from_payload(self.runtime.vault.open(blob))
        except (VaultError, KeyError, TypeError, ValueError):
            return False
        return identity(stored) == self.digest
