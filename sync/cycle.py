"""One sync of one integration, told as its steps: lease, fetch, map, fenced write, sweep, release.

Failures are sorted by the taxonomy: a lost grant ends the integration here and now (revoked or
degraded, tokens deleted, roster purged, audited) and is never retried; a setting the school can
switch back (``AccessBlocked``) only pauses it as ``blocked`` (tokens and roster kept, tried again
after a growing wait, ``active`` again at the first run that gets through, ended like a revoke once
blocked longer than ``BLOCKED_GRACE_DAYS``); rate limits and
transient faults go back to the actor, which retries them; a revoke that lands mid-run fences
every later write, and the run stops without another provider call.

This module holds the lease, the verdicts and the release; the fetch, map, fenced write and sweep
are the paths': the full listing in sync.listing, the change feed in sync.changes, each step reading
what it needs from one sync.context.SyncPass.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta

from connectors.base import (
    AccessBlocked,
    AccessRevoked,
    ChangesUnavailable,
    ConnectorError,
    ProviderDataError,
    ScopeMissing,
    SetupRequired,
    TokenSet,
)
from mappers.policy import MappingContext, allowlist_digest
from providers.registry import Provider, provider, tokens_from_payload
from store import blocking, breaker, integrations, leases, runs
from store.db import utcnow
from store.fence import SYNCABLE, Fenced, Lease
from store.runtime import Runtime
from store.vault import VaultError
from sync import cursor as cursor_document
from sync.budgets import budgeted
from sync.changes import follow_changes
from sync.consent import roles_to_sync
from sync.context import SyncPass
from sync.grants import revoke_grant as revoke_grant_at_provider
from sync.listing import full_sync
from sync.outcomes import SyncOutcome
from sync.progress import ProgressEvent, emit
from sync.tokens import HeldTokens, TokensNotStored

log = logging.getLogger("rostersync.sync")


UNREADABLE_GRANT_REASON = (
    "stored token cannot be decrypted with the configured ROSTERSYNC_TOKEN_KEYS (was its key retired?); "
    "add that key back, then `rostersync resume` it (re-link only if the key is lost)"
)
TOKENS_NOT_STORED_REASON = (
    "the provider rotated the tokens and the database would not store them; they were revoked at the provider "
    "(a failure to store is not a revocation: the roster is kept); re-link the integration"
)


def run_sync(runtime: Runtime, integration_id: int) -> SyncOutcome:
    """Sync one integration now. Raises only ``RateLimited`` / ``TransientError`` (for the actor to retry).

    Whatever cuts the sync short, its lease and run are given back before the error goes on, even when an
    asynchronous interrupt (a worker's SIGTERM, its time limit, Ctrl-C) landed after the lease's commit or
    inside the release itself: a lease left held would block the integration until it expired.
    """
    lease = Lease(owner=uuid.uuid4().hex, seconds=runtime.settings.lease_seconds)
    held = leases.Held()
    try:
        return _leased_sync(runtime, integration_id, lease, held)
    except BaseException:
        if held.run_id is not None and not held.given_back:
            _abandon(runtime, integration_id, lease, held.run_id)
        raise


def _abandon(runtime: Runtime, integration_id: int, lease: Lease, run_id: int) -> None:
    """The give-back of last resort (``store.leases.abandon``); if even it fails, the lease expires by itself."""
    try:
        leases.abandon(runtime.engine, integration_id, lease, run_id)
    except Exception:  # the error that cut the sync short is the one to report
        log.warning("sync of integration %s: its lease could not be given back; it expires by itself", integration_id)


def _leased_sync(runtime: Runtime, integration_id: int, lease: Lease, held: leases.Held) -> SyncOutcome:
    state, run_id = leases.begin(runtime.engine, integration_id, lease, held)  # the lease, the state, the run
    if state is None:
        current = integrations.load(runtime.engine, integration_id)
        skipped = "busy" if current.status in SYNCABLE else current.status
        log.info("sync of integration %s skipped: %s", integration_id, skipped)
        runs.finish_run(runtime.engine, run_id, f"skipped:{skipped}")
        held.given_back = True
        return SyncOutcome(integration_id, outcome=f"skipped:{skipped}")
    outcome = SyncOutcome(integration_id, run_id=run_id)
    next_due = None
    try:
        next_due = _run(runtime, state, lease, outcome)
    except Fenced as error:
        outcome.outcome = "fenced"
        log.info("sync of integration %s stopped: %s", integration_id, error)
    except TokensNotStored:  # not a revocation: roster kept, the dead tokens dropped (sync.tokens)
        outcome.outcome = _fail(runtime, state, TOKENS_NOT_STORED_REASON, "tokens_not_stored", drop_tokens=True)
    except UnusableToken:
        outcome.outcome = _fail(runtime, state, UNREADABLE_GRANT_REASON, "failed")
    except AccessRevoked as error:
        # After invalid_grant the grant is already dead at the provider; otherwise revoke what is left of it.
        outcome.outcome = _end(runtime, state, "revoked", error.reason, revoke_grant=error.reason != "invalid_grant")
    except AccessBlocked as error:
        outcome.outcome = _block(runtime, state, lease, error)
    except ScopeMissing as error:
        outcome.outcome = _end(runtime, state, "degraded", str(error), revoke_grant=True)
    except SetupRequired as error:  # the provider says an admin must set something up: retrying cannot help
        outcome.outcome = _fail(runtime, state, error.public, error.kind)
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
        finished = runs.Finished(run_id, outcome.outcome, asdict(outcome.counts()))
        leases.release(runtime.engine, integration_id, lease, state.generation, next_due, finished=finished)
        held.given_back = True
        emit(ProgressEvent(integration_id, "done", outcome.classes_seen, outcome.classes_seen))
    log.info(
        "sync of integration %s: %s (%s), %s classes, %s members, %s rows written, %s skipped, %s provider calls",
        integration_id,
        outcome.outcome,
        outcome.mode,
        outcome.classes_seen,
        outcome.members_seen,
        outcome.rows_written + outcome.removed,
        outcome.records_skipped,
        outcome.provider_calls,
    )
    return outcome


def _run(runtime: Runtime, state: integrations.IntegrationState, lease: Lease, outcome: SyncOutcome) -> datetime | None:
    """The run proper; returns the next due time of a run that got through, else None.

    A block older than BLOCKED_GRACE_DAYS ends here like a revoke, before any provider call: the school
    never switched the setting back.
    """
    if _blocked_past_grace(runtime, state):
        reason = blocking.grace_ended_reason(runtime.engine, state.id, runtime.settings.blocked_grace_days)
        outcome.outcome = _end(runtime, state, "revoked", reason, revoke_grant=True)
        return None
    _sync(runtime, state, lease, provider(state.provider), outcome)
    return _completed(runtime, state, lease)


def _blocked_past_grace(runtime: Runtime, state: integrations.IntegrationState) -> bool:
    if state.status != "blocked" or state.status_changed_at is None:
        return False
    return state.status_changed_at + timedelta(days=runtime.settings.blocked_grace_days) <= utcnow()


def _completed(runtime: Runtime, state: integrations.IntegrationState, lease: Lease) -> datetime:
    """A run that got through: a blocked integration is unblocked (the provider answers again); the next due time."""
    if state.status == "blocked":
        blocking.unblock(runtime.engine, state.id, state.generation, lease, actor="system:sync")
        log.info("integration %s unblocked: the provider answered again", state.id)
    interval = state.sync_interval_seconds or runtime.settings.sync_interval_seconds
    return utcnow() + timedelta(seconds=interval)


def _block(runtime: Runtime, state: integrations.IntegrationState, lease: Lease, error: AccessBlocked) -> str:
    """Pause the integration as ``blocked`` (nothing ended, nothing revoked at the provider); fenced."""
    settings = runtime.settings
    wait = blocking.BlockedWait(
        first_seconds=settings.blocked_retry_min_seconds,
        longest_seconds=state.sync_interval_seconds or settings.sync_interval_seconds,
        grace_days=settings.blocked_grace_days,
    )
    try:
        due = blocking.mark_blocked(
            runtime.engine, state.id, state.generation, lease, actor="system:sync", reason=str(error), wait=wait
        )
    except Fenced:
        return "fenced"
    log.warning("integration %s blocked (%s); roster kept, tried again at %s", state.id, error.reason, due)
    return error.kind


class UnusableToken(Exception):
    """The stored token blob cannot be opened or read: a person must restore its key (or re-link); retrying cannot
    help."""


def _fail(
    runtime: Runtime, state: integrations.IntegrationState, reason: str, word: str, *, drop_tokens: bool = False
) -> str:
    """Mark the integration this sync started on ``failed`` (fenced); ``word`` is the run's outcome, else ``fenced``."""
    failed = integrations.mark_failed(
        runtime.engine, state.id, state.generation, actor="system:sync", reason=reason, drop_tokens=drop_tokens
    )
    log.warning("integration %s failed: %s", state.id, reason)
    return word if failed else "fenced"


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
    """Open the tokens and the connector, then take the change path, the listing path, or both."""
    tokens = _open_tokens(runtime, state)
    held = HeldTokens(runtime, state, tokens)  # the tokens this sync holds, replaced on each rotation
    scopes = state.granted_scopes
    context = MappingContext(state.tenant, scopes, runtime.pseudonymiser)
    roles = roles_to_sync(state.consent_basis)  # P7: no student is even requested without a consent basis
    # The cursor is trusted only under the rules its rows were stored under: the allowlist and the roles.
    allowlist = f"{allowlist_digest(spec.allowlist, scopes)}:{','.join(roles)}"
    connector = budgeted(spec.connector(runtime.settings, tokens, held.keep), runtime.settings, spec.name)
    run = SyncPass(runtime, state, lease, spec, connector, context, roles, outcome)
    connector.before_request = run.still_current  # no provider call once ended; pages in hand cost no check
    try:
        if _changes_suffice(run, allowlist):
            return
        full_sync(run, allowlist, teacher_scoped=_teacher_scoped(tokens))
    except AccessRevoked:
        # A sync that outlived its lease can find its refresh token rotated out by the sync that took
        # over: the provider then refuses it as if revoked. The grant is alive in the newer tokens.
        # Told by what the tokens are, not by their ciphertext, which `keys rotate` changes meanwhile.
        if not held.still_stored():
            raise Fenced(state.id, "tokens were rotated by another sync") from None
        raise
    finally:
        outcome.provider_calls = connector.requests_made
        connector.close()


def _changes_suffice(run: SyncPass, allowlist: str) -> bool:
    """Follow the change feed from a cursor taken under these rules; True when no full listing is due.

    A cursor taken under these rules is read even when a full reconcile is due: what the feed says
    ended (a rollover's deletions) is then applied as the provider's word before the listing's
    sweep, which would otherwise find those classes merely absent, and hold them.
    """
    saved = cursor_document.loads(run.state.sync_cursor)
    if saved is None or run.spec.map_changes is None or saved.allowlist != allowlist:
        return False
    try:
        follow_changes(run, saved)
        return saved.usable(allowlist, utcnow(), run.runtime.settings.full_reconcile_seconds)
    except ChangesUnavailable as error:
        log.info("integration %s: change feed unavailable (%s); full sync", run.state.id, error.reason)
    except breaker.ChangesTooLarge as error:  # that page was rolled back; the listing's sweep decides
        log.warning("integration %s: %s", run.state.id, error)
    return False


def _teacher_scoped(tokens: TokenSet) -> bool:
    """A link that reads one teacher's own classes: its sealed ``extra`` names the teacher (connectors.base.TokenSet).

    Such a listing, complete and empty, is a teacher with zero classes, not a listing that lost data
    (a provider's certification asks for exactly this: docs/reliability.md, "School year's end").
    """
    return "teacher_id" in tokens.extra
