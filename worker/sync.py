"""One sync of one integration, told as its steps: lease, fetch, map, fenced write, sweep, release.

Failures are sorted by the taxonomy: a lost grant ends the integration here and now (revoked or
degraded, tokens deleted, roster purged, audited) and is never retried; rate limits and
transient faults go back to the actor, which retries them; a revoke that lands mid-run fences
every later write, and the run stops without another provider call.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from connectors.base import (
    AccessRevoked,
    ConnectorError,
    ProviderDataError,
    ScopeMissing,
    TokenSet,
)
from mappers.policy import MappingContext
from store import integrations, roster
from store.consent import purge_role
from store.db import utcnow
from store.fence import Fenced, Lease, fenced
from store.vault import VaultError
from worker.budgets import budgeted
from worker.consent import roles_to_sync
from worker.progress import ProgressEvent, emit
from worker.providers import Provider, provider, tokens_from_payload, tokens_to_payload
from worker.revoke import revoke_grant as revoke_grant_at_provider
from worker.runtime import Runtime

log = logging.getLogger("rostersync.sync")


@dataclass
class SyncOutcome:
    """What one run did, in counts only."""

    integration_id: int
    outcome: str = "ok"  # set to the failure kind by run_sync when a run does not complete
    classes_seen: int = 0
    members_seen: int = 0
    rows_written: int = 0
    records_skipped: int = 0
    provider_calls: int = 0
    removed: int = 0
    incomplete_classes: set[int] = field(default_factory=set)

    def counters(self) -> dict[str, int]:
        return {
            "classes_seen": self.classes_seen,
            "members_seen": self.members_seen,
            "rows_written": self.rows_written + self.removed,
            "records_skipped": self.records_skipped,
            "provider_calls": self.provider_calls,
        }


UNREADABLE_GRANT_REASON = (
    "stored token cannot be decrypted with the configured ROSTERSYNC_TOKEN_KEYS (was its key retired?); "
    "re-link the integration"
)


def run_sync(runtime: Runtime, integration_id: int) -> SyncOutcome:
    """Sync one integration now. Raises only ``RateLimited`` / ``TransientError`` (for the actor to retry)."""
    lease = Lease(owner=uuid.uuid4().hex, seconds=runtime.settings.lease_seconds)
    state = integrations.acquire_lease(runtime.engine, integration_id, lease)
    if state is None:
        current = integrations.load(runtime.engine, integration_id)
        skipped = "busy" if current.status == "active" else current.status
        log.info("sync of integration %s skipped: %s", integration_id, skipped)
        integrations.finish_run(
            runtime.engine, integrations.start_run(runtime.engine, integration_id), f"skipped:{skipped}"
        )
        return SyncOutcome(integration_id, outcome=f"skipped:{skipped}")
    outcome = SyncOutcome(integration_id)
    run_id = integrations.start_run(runtime.engine, integration_id)
    next_due = None
    try:
        _sync(runtime, state, lease, provider(state.provider), outcome)
        interval = state.sync_interval_seconds or runtime.settings.sync_interval_seconds
        next_due = utcnow() + timedelta(seconds=interval)
    except Fenced as error:
        outcome.outcome = "fenced"
        log.info("sync of integration %s stopped: %s", integration_id, error)
    except UnusableToken:
        failed = integrations.mark_failed(
            runtime.engine, integration_id, state.generation, actor="system:sync", reason=UNREADABLE_GRANT_REASON
        )
        outcome.outcome = "failed" if failed else "fenced"
        log.warning("integration %s failed: %s", integration_id, UNREADABLE_GRANT_REASON)
    except AccessRevoked as error:
        # After invalid_grant the grant is already dead at the provider; otherwise revoke what is left of it.
        outcome.outcome = _end(runtime, state, "revoked", error.reason, revoke_grant=error.reason != "invalid_grant")
    except ScopeMissing as error:
        outcome.outcome = _end(runtime, state, "degraded", str(error), revoke_grant=True)
    except ProviderDataError as error:
        outcome.outcome = error.kind  # the class list itself broke the schema: nothing swept, not retried
        log.warning("sync of integration %s stopped: %s", integration_id, error)
    except ConnectorError as error:
        outcome.outcome = error.kind
        log.warning("sync of integration %s stopped: %s", integration_id, error)
        raise
    except BaseException:
        outcome.outcome = "error"
        raise
    finally:
        integrations.finish_run(runtime.engine, run_id, outcome.outcome, **outcome.counters())
        integrations.release_lease(runtime.engine, integration_id, lease, state.generation, next_due)
        emit(ProgressEvent(integration_id, "done", outcome.classes_seen, outcome.classes_seen))
    log.info(
        "sync of integration %s: %s, %s classes, %s members, %s rows written, %s skipped",
        integration_id,
        outcome.outcome,
        outcome.classes_seen,
        outcome.members_seen,
        outcome.rows_written + outcome.removed,
        outcome.records_skipped,
    )
    return outcome


class UnusableToken(Exception):
    """The stored token blob cannot be opened or read: a person must re-link, retrying cannot help."""


def _end(
    runtime: Runtime, state: integrations.IntegrationState, status: str, reason: str, *, revoke_grant: bool
) -> str:
    """End the integration this sync started on (fenced: never a newer generation), then revoke the grant."""
    try:
        ended = integrations.end_integration(
            runtime.engine,
            state.id,
            status=status,
            actor="system:sync",
            reason=reason,
            expected_generation=state.generation,
        )
    except Fenced:
        return "fenced"
    log.warning("integration %s %s (%s); credentials deleted, roster purged", state.id, status, reason)
    if revoke_grant and ended is not None and ended.token_blob is not None:
        revoke_grant_at_provider(runtime, state.provider, state.id, ended.token_blob, actor="system:sync")
    return status


def _open_tokens(runtime: Runtime, state: integrations.IntegrationState) -> TokenSet:
    if state.token_blob is None:
        raise AccessRevoked("no tokens stored for this integration", reason="no_tokens")
    try:
        return tokens_from_payload(runtime.vault.open(state.token_blob))
    except (VaultError, KeyError, TypeError, ValueError) as error:
        raise UnusableToken from error


def _sync(
    runtime: Runtime, state: integrations.IntegrationState, lease: Lease, spec: Provider, outcome: SyncOutcome
) -> None:
    engine, generation = runtime.engine, state.generation

    def persist_tokens(tokens: TokenSet) -> None:
        """Store rotated tokens before they are used; tokens the fence refuses belong to nobody: revoke them."""
        sealed = runtime.vault.seal(tokens_to_payload(tokens))
        try:
            integrations.store_tokens(engine, state.id, generation, sealed)
        except Fenced:
            # A revoke or re-link committed while the provider rotated the refresh token: whoever ended
            # this generation revoked the token it read, which is now the dead, rotated-out one. The
            # live grant is in our hands only, so it is ended here before the sync stops.
            revoke_grant_at_provider(runtime, state.provider, state.id, sealed, actor="system:sync")
            raise

    tokens = _open_tokens(runtime, state)
    scopes = state.granted_scopes
    context = MappingContext(state.tenant, scopes, runtime.pseudonymiser)
    connector = budgeted(spec.connector(runtime.settings, tokens, persist_tokens), runtime.settings, spec.name)
    try:
        class_ids: dict[str, int] = {}
        classes_complete = True
        for page in connector.classes(spec.field_mask("class", scopes)):
            outcome.provider_calls += 1
            batch = spec.map_classes(page.records, context)
            with fenced(engine, state.id, generation, lease) as connection:
                written, ids = roster.upsert_classes(connection, state.id, batch.records)
            class_ids.update(ids)
            outcome.rows_written += written
            outcome.records_skipped += batch.skipped
            classes_complete = classes_complete and batch.skipped == 0
        outcome.classes_seen = len(class_ids)
        emit(ProgressEvent(state.id, "classes", 0, len(class_ids)))
        seen_enrollments: set[tuple[int, int]] = set()
        roles = roles_to_sync(state.consent_basis)  # P7: no student is even requested without a consent basis
        for done, (external_id, class_id) in enumerate(class_ids.items(), start=1):
            try:
                for role in roles:
                    for page in connector.members(external_id, role, spec.field_mask(role, scopes)):
                        outcome.provider_calls += 1
                        members = spec.map_members(page.records, external_id, role, context)
                        with fenced(engine, state.id, generation, lease) as connection:
                            written, person_ids = roster.upsert_members(
                                connection, state.id, class_id, members.people, members.enrollments
                            )
                        seen_enrollments.update((class_id, person_id) for person_id in person_ids)
                        outcome.members_seen += len(members.people)
                        outcome.rows_written += written
                        outcome.records_skipped += members.skipped
            except ProviderDataError as error:
                outcome.incomplete_classes.add(class_id)
                outcome.records_skipped += 1
                log.warning("integration %s: roster of one class skipped: %s", state.id, error)
            emit(ProgressEvent(state.id, "class", done, len(class_ids)))
        with fenced(engine, state.id, generation, lease) as connection:
            outcome.removed = roster.remove_unseen(
                connection,
                state.id,
                set(class_ids.values()),
                seen_enrollments,
                outcome.incomplete_classes,
                sweep_classes=classes_complete,
            )
            if "student" not in roles:
                outcome.removed += purge_role(connection, state.id, "student")
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()
