"""The retention job (P10): ``rostersync purge-expired``, and the actor a scheduler enqueues.

One run, one clock, one audit event with counts. It removes: roster rows soft-deleted longer than
``REMOVED_RETENTION_DAYS``; whatever is left of integrations ended longer than
``REVOKED_GRACE_SECONDS`` ago (default 0: the revoke already purged at once); consents in flight past
their time to live; integrations ``blocked`` longer than ``BLOCKED_GRACE_DAYS`` (ended like a revoke:
purged, audited, the grant revoked at the provider where it can be; their own sync does the same when it
runs); and, ``DELETED_ACCOUNT_RETENTION_MONTHS`` (6) calendar months after the platform
deleted an account, everything that account linked: its grants are revoked at the provider first
(``revoke_integration``, with its own audit events), then its integrations' records go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.revoke import revoke_integration
from store import audit, blocking, integrations, outbox, retention
from store.db import utcnow
from store.rights import delete_integration, delete_link_attempts
from store.runtime import Runtime
from sync.grants import revoke_at_provider

log = logging.getLogger("rostersync.retention")
ACTOR = "system:retention"


@dataclass
class PurgeReport:
    """Counts only: what a run removed."""

    removed_rows: int = 0
    ended_rows: int = 0
    link_attempts: int = 0
    feed_events: int = 0
    accounts: int = 0
    account_rows: int = 0
    revoked: list[int] = field(default_factory=list)
    integrations: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, int | list[int]]:
        return {
            "soft_deleted_rows": self.removed_rows,
            "ended_integration_rows": self.ended_rows,
            "link_attempts": self.link_attempts,
            "change_events": self.feed_events,
            "deleted_accounts": self.accounts,
            "deleted_account_rows": self.account_rows,
            "revoked_at_provider": self.revoked,
            "integrations": self.integrations,
        }


def mark_account_deleted(runtime: Runtime, account: str, *, actor: str) -> list[int]:
    """The platform deleted this account now; its data goes at the deadline. Returns its integrations."""
    if not account.strip():
        raise ValueError("the account id is empty")
    return retention.mark_account_deleted(runtime.engine, account, actor=actor, at=utcnow())


def end_blocked_past_grace(runtime: Runtime, now: datetime, *, actor: str) -> list[int]:
    """End like a revoke every integration blocked longer than BLOCKED_GRACE_DAYS; returns their ids.

    Only one still blocked since before the grace's start is ended (under its row lock): a sync that
    found the block lifted meanwhile wins, and its integration is left alone.
    """
    days = runtime.settings.blocked_grace_days
    before = now - timedelta(days=days)
    ended = []
    for integration_id in retention.blocked_past_grace(runtime.engine, before):
        state = integrations.load(runtime.engine, integration_id)
        reason = blocking.grace_ended_reason(runtime.engine, integration_id, days)
        done = integrations.end_integration(
            runtime.engine, integration_id, status="revoked", actor=actor, reason=reason, blocked_before=before
        )
        if done is None:
            continue
        if done.token_blob is not None:
            revoke_at_provider(runtime, state.provider, integration_id, done.token_blob, actor=actor)
        ended.append(integration_id)
    return ended


def purge_expired(runtime: Runtime, *, actor: str = ACTOR) -> PurgeReport:
    now = utcnow()
    settings = runtime.settings
    report = PurgeReport()
    report.revoked.extend(end_blocked_past_grace(runtime, now, actor=actor))
    due = retention.due_accounts(runtime.engine, now, settings.deleted_account_retention_months)
    for account in due:
        for integration_id in account.live_ids:
            revoke_integration(runtime, integration_id, actor=actor, reason="account deleted")
            report.revoked.append(integration_id)
    with runtime.engine.begin() as connection:
        # Every integration row this transaction deletes from is locked before it takes the outbox head.
        retention.lock_integrations(connection, [i for account in due for i in account.integration_ids])
        report.removed_rows = retention.purge_removed(connection, now - timedelta(days=settings.removed_retention_days))
        ended, report.ended_rows = retention.purge_ended(
            connection, now - timedelta(seconds=settings.revoked_grace_seconds)
        )
        report.link_attempts = retention.purge_link_attempts(
            connection, now - timedelta(seconds=settings.link_state_ttl_seconds)
        )
        report.feed_events = outbox.prune(connection, now - timedelta(days=settings.change_feed_retention_days))
        touched = list(ended)
        for account in due:
            for integration_id in account.integration_ids:
                report.account_rows += delete_integration(connection, integration_id)
            report.account_rows += delete_link_attempts(connection, account.account)
            retention.mark_account_purged(connection, account.account, now)
            touched.extend(account.integration_ids)
        report.accounts = len(due)
        report.integrations = audit.ids_of(touched)
        audit.record(
            connection,
            action="purged_expired",
            actor=actor,
            integration_id=report.integrations[0] if len(report.integrations) == 1 else None,
            details=dict(report.as_json()),
        )
    log.info(
        "retention: %s soft-deleted rows, %s rows of ended integrations, %s consents, %s feed events, "
        "%s deleted accounts",
        report.removed_rows,
        report.ended_rows,
        report.link_attempts,
        report.feed_events,
        report.accounts,
    )
    return report
