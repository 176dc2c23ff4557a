"""What every step of one sync shares: the integration as the sync found it, its lease, its connector.

Why an object: the steps (fetch, map, fenced write, sweep) of both paths, the full listing
(sync.listing) and the change feed (sync.changes), need the same eight things; handing them around
one by one made every step's signature longer than its body. The fence lives here too, so that no
step can write without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection

from connectors.base import RosterConnector
from mappers.policy import MappingContext
from mappers.records import ROLES, Role, RosterBatch
from providers.registry import Provider
from store import breaker
from store.fence import Lease, fenced, still_current
from store.integrations import IntegrationState
from store.runtime import Runtime
from sync.outcomes import SyncOutcome


@dataclass
class FenceSeen:
    """Whether the fence was last verified after the sync's latest provider request (``SyncPass.still_current``)."""

    since_last_request: bool = True
    """True at the start: the lease was taken, and the state read, in one transaction (store.leases.begin)."""


@dataclass(frozen=True)
class SyncPass:
    """One sync of one integration once its lease is held and its connector open."""

    runtime: Runtime
    state: IntegrationState
    lease: Lease
    spec: Provider
    connector: RosterConnector
    mapping: MappingContext
    roles: tuple[Role, ...]  # what the consent basis allows (sync.consent.roles_to_sync)
    outcome: SyncOutcome
    fence: FenceSeen = field(default_factory=FenceSeen)

    @contextmanager
    def fenced_write(self) -> Iterator[Connection]:
        """A transaction that commits only on the generation and the lease this sync started on (store.fence)."""
        with fenced(self.runtime.engine, self.state.id, self.state.generation, self.lease) as connection:
            self.fence.since_last_request = True  # verified under the lock (and the lease renewed if due)
            yield connection

    def still_current(self) -> None:
        """Raise ``Fenced`` when the integration was ended or re-linked: no further provider call then.

        The connector calls it before each request (``before_request``). The fence is read only when no
        check has passed since the previous request: a fenced write (or the lease taken at the start)
        that came after it was that check already, under the lock. So between any two provider requests,
        and before the first, the fence has been verified once, and a revoke that commits while a
        request is out is seen before the next one goes.
        """
        if self.fence.since_last_request:
            self.fence.since_last_request = False
            return
        still_current(self.runtime.engine, self.state.id, self.state.generation, self.lease)

    def limits(self) -> breaker.Limits:
        return breaker.Limits(self.runtime.settings.breaker_share, self.runtime.settings.breaker_min_people)

    def within(self, batch: RosterBatch) -> RosterBatch:
        """The batch without people (and enrolments) of roles the consent basis does not cover."""
        if set(self.roles) >= set(ROLES):
            return batch
        return replace(
            batch,
            people=[p for p in batch.people if p.role in self.roles],
            enrollments=[e for e in batch.enrollments if e.role in self.roles],
        )
