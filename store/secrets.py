"""Re-seal every secret at rest under the first token key, so that an old key can be retired safely.

A refresh re-seals one integration's tokens as a side effect, but an integration that is not
synced (failed, idle) and every consent in flight would keep depending on the old key. This walks
them all, one row per transaction under a row lock, so it can run beside live syncs: a sync that
stores new tokens meanwhile seals them under the first key anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select, update

from store.models import Integration, LinkAttempt, PendingRevoke
from store.vault import TokenVault, VaultError


@dataclass
class ResealReport:
    """Counts only; the ids of integrations whose tokens no configured key opens (their key must come back)."""

    tokens: int = 0
    link_states: int = 0
    unreadable_integrations: list[int] = field(default_factory=list)
    unreadable_link_states: int = 0
    pending_revokes: int = 0  # grants still to be revoked at the provider (issue 8)


def reseal_all(engine: Engine, vault: TokenVault) -> ResealReport:
    report = ResealReport()
    with engine.connect() as connection:
        integration_ids = list(
            connection.execute(
                select(Integration.id).where(Integration.token_blob.is_not(None)).order_by(Integration.id)
            ).scalars()
        )
        attempt_ids = list(
            connection.execute(
                select(LinkAttempt.id).where(LinkAttempt.used_at.is_(None)).order_by(LinkAttempt.id)
            ).scalars()
        )
    for integration_id in integration_ids:
        with engine.begin() as connection:
            blob = connection.execute(
                select(Integration.token_blob).where(Integration.id == integration_id).with_for_update()
            ).scalar_one_or_none()
            if blob is None:
                continue  # revoked meanwhile: nothing left to re-seal
            try:
                resealed = vault.reseal(blob)
            except VaultError:
                report.unreadable_integrations.append(integration_id)
                continue
            connection.execute(update(Integration).where(Integration.id == integration_id).values(token_blob=resealed))
            report.tokens += 1
    for attempt_id in attempt_ids:
        with engine.begin() as connection:
            blob = connection.execute(
                select(LinkAttempt.verifier_blob).where(LinkAttempt.id == attempt_id).with_for_update()
            ).scalar_one()
            try:
                resealed = vault.reseal(blob)
            except VaultError:
                report.unreadable_link_states += 1  # the consent cannot complete anyway; it expires
                continue
            connection.execute(update(LinkAttempt).where(LinkAttempt.id == attempt_id).values(verifier_blob=resealed))
            report.link_states += 1
    report.pending_revokes = _reseal_pending_revokes(engine, vault)
    return report


def _reseal_pending_revokes(engine: Engine, vault: TokenVault) -> int:
    """Pending provider revokes hold a grant's tokens too; one no key opens is left for its retry to report."""
    resealed_count = 0
    with engine.connect() as connection:
        ids = list(connection.execute(select(PendingRevoke.id).order_by(PendingRevoke.id)).scalars())
    for pending_id in ids:
        with engine.begin() as connection:
            blob = connection.execute(
                select(PendingRevoke.token_blob).where(PendingRevoke.id == pending_id).with_for_update()
            ).scalar_one_or_none()
            if blob is None:
                continue
            try:
                resealed = vault.reseal(blob)
            except VaultError:
                continue
            connection.execute(update(PendingRevoke).where(PendingRevoke.id == pending_id).values(token_blob=resealed))
            resealed_count += 1
    return resealed_count
