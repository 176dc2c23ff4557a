"""Retention at the store (P10): what has outlived its time, and the deletes that remove it.

Every function takes ``now`` from its caller, so the one clock of a retention run decides every
deadline in it (and a test can move that clock). Calendar months are calendar months: an account
deleted on 29 November is due on 29 May, not after a fixed number of days.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from store import audit, outbox
from store.models import AccountDeletion, Enrollment, Integration, LinkAttempt, Person, SchoolClass

SUSPENDED = "suspended"
"""An integration of a deleted account: not synced, data and grant kept until the retention deadline."""
ENDED = ("revoked", "degraded")
"""Statuses whose roster the revoke already purged; ``purge_ended`` sweeps what may be left of them."""
REVOKED = "revoked"
BLOCKED = "blocked"
"""The school switched access off, reversibly: roster and grant kept until BLOCKED_GRACE_DAYS, then ended."""
SUSPENDABLE = ("active", "failed", "blocked")
"""Statuses a deleted account's integrations leave for ``suspended``: the ones that hold a grant and could sync."""


def not_ended(status: str) -> bool:
    """Whether a path that ends or erases an integration must revoke it first: every status but ``revoked``.

    ``failed`` and ``suspended`` integrations keep their tokens (a live grant at the provider); a
    ``degraded`` one holds none, and its revoke only records the end (the provider call is skipped).
    """
    return status != REVOKED


class AlreadyDeleted(Exception):
    """The account is already marked deleted; the first deletion time stands (it starts the clock)."""


def add_months(moment: datetime, months: int) -> datetime:
    """Same day of the month ``months`` later, clamped to the month's last day (31 Aug + 6 = 28/29 Feb)."""
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def deletion_pending(account: Any) -> Any:
    """SQL: the account is marked deleted and its data not purged yet.

    The rule of this module: until then the account links nothing (store.links) and resumes nothing
    (store.integrations).
    """
    return (
        select(AccountDeletion.id)
        .where(AccountDeletion.account == account, AccountDeletion.purged_at.is_(None))
        .exists()
    )


def mark_account_deleted(engine: Engine, account: str, *, actor: str, at: datetime) -> list[int]:
    """Record that the platform deleted an account; returns the integrations it linked. One audit event.

    The rule (issue 18, docs/privacy.md): a deletion stands until its deadline. Until then the account
    cannot link again (``store.links.link_refusal``) and nothing of it syncs or resumes; once
    its data is purged the account id is free, and a later deletion of it starts a new clock.
    """
    with engine.begin() as connection:
        known = connection.execute(
            select(AccountDeletion.id, AccountDeletion.purged_at)
            .where(AccountDeletion.account == account)
            .with_for_update()
        ).one_or_none()
        if known is not None and known.purged_at is None:
            raise AlreadyDeleted("that account is already marked deleted; its deadline is unchanged")
        if known is not None:
            connection.execute(
                update(AccountDeletion)
                .where(AccountDeletion.id == known.id)
                .values(deleted_at=at, recorded_by=actor, purged_at=None)
            )
        else:
            connection.execute(insert(AccountDeletion).values(account=account, deleted_at=at, recorded_by=actor))
        linked = audit.ids_of(
            list(connection.execute(select(Integration.id).where(Integration.linked_by == account)).scalars())
        )
        # Each status change below writes its event under the outbox head: every row locked first (lock order).
        lock_integrations(connection, linked)
        # No new data for a deleted account: its active integrations stop syncing (a running sync is fenced
        # by the generation bump) and keep what they hold, tokens included, until the deadline revokes them.
        # A failed one too, or `resume` would bring it back.
        connection.execute(
            update(Integration)
            .where(Integration.linked_by == account, Integration.status.in_(SUSPENDABLE))
            .values(
                status=SUSPENDED,
                generation=Integration.generation + 1,
                due_at=None,
                status_changed_at=at,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        audit.record(
            connection,
            action="account_deleted",
            actor=actor,
            integration_id=linked[0] if len(linked) == 1 else None,
            details={"integrations": linked},
        )
    return linked


@dataclass(frozen=True)
class DueAccount:
    account: str
    integration_ids: list[int]
    live_ids: list[int]  # not revoked yet: revoked (here and at the provider) before anything is deleted


def due_accounts(engine: Engine, now: datetime, months: int) -> list[DueAccount]:
    """Deleted accounts whose data has reached its deadline and is not purged yet."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(AccountDeletion.account, AccountDeletion.deleted_at).where(AccountDeletion.purged_at.is_(None))
        ).all()
        due = []
        for account, deleted_at in rows:
            if add_months(deleted_at, months) > now:
                continue
            linked = connection.execute(
                select(Integration.id, Integration.status)
                .where(Integration.linked_by == account)
                .order_by(Integration.id)
            ).all()
            due.append(
                DueAccount(
                    account,
                    [row.id for row in linked],
                    [row.id for row in linked if not_ended(row.status)],
                )
            )
    return due


def mark_account_purged(connection: Connection, account: str, now: datetime) -> None:
    connection.execute(update(AccountDeletion).where(AccountDeletion.account == account).values(purged_at=now))


def lock_integrations(connection: Connection, integration_ids: list[int]) -> None:
    """Lock these integration rows, in id order, before anything takes the outbox head (store.outbox: lock order)."""
    if integration_ids:
        connection.execute(
            select(Integration.id)
            .where(Integration.id.in_(sorted(set(integration_ids))))
            .order_by(Integration.id)
            .with_for_update()
        ).all()


def purge_removed(connection: Connection, before: datetime) -> int:
    """Hard-delete roster rows soft-deleted before ``before`` (enrolments first, then people and classes)."""
    removed = 0
    for model in (Enrollment, Person, SchoolClass):
        removed += connection.execute(
            delete(model).where(model.removed_at.is_not(None), model.removed_at <= before)
        ).rowcount
    return removed


def purge_ended(connection: Connection, before: datetime) -> tuple[list[int], int]:
    """Remove what is left of integrations ended (revoked, degraded) before ``before``.

    The revoke itself already purges in its own transaction; this sweep is the guarantee that nothing
    of an ended integration outlives its grace period, whatever path ended it.
    """
    ended = list(
        connection.execute(
            select(Integration.id)
            .where(Integration.status.in_(ENDED), Integration.status_changed_at <= before)
            .order_by(Integration.id)
            .with_for_update()  # every integration row before the outbox head (store.outbox: lock order)
        ).scalars()
    )
    removed = 0
    touched = []
    for integration_id in ended:
        count = 0
        outbox.pause(connection, [integration_id])
        for model in (Enrollment, Person, SchoolClass):
            count += connection.execute(delete(model).where(model.integration_id == integration_id)).rowcount
        outbox.unpause(connection, [integration_id])
        if count:
            outbox.purged(connection, integration_id)
        count += connection.execute(
            update(Integration)
            .where(Integration.id == integration_id, Integration.token_blob.is_not(None))
            .values(token_blob=None, sync_cursor=None)
        ).rowcount
        if count:
            touched.append(integration_id)
            removed += count
    return touched, removed


def blocked_past_grace(engine: Engine, before: datetime) -> list[int]:
    """Integrations blocked since before ``before``: the retention job ends them like a revoke.

    Their own sync ends them too when it runs past the grace; this is the guarantee for one the
    scheduler never claims (no worker running, a queue lost), so no roster outlives the grace.
    """
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(Integration.id)
                .where(Integration.status == BLOCKED, Integration.status_changed_at <= before)
                .order_by(Integration.id)
            ).scalars()
        )


def purge_link_attempts(connection: Connection, before: datetime) -> int:
    """Consents in flight older than their time to live: their encrypted verifiers serve nothing any more."""
    return int(connection.execute(delete(LinkAttempt).where(LinkAttempt.created_at < before)).rowcount)
