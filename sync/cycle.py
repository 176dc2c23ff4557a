"""One sync of one integration, told as its steps: lease, fetch, map, fenced write, sweep, release.

Failures are sorted by the taxonomy: a lost grant ends the integration here and now (revoked or
degraded, tokens deleted, roster purged, audited) and is never retried; a setting the school can
switch back (``AccessBlocked``) only pauses it as ``blocked`` (tokens and roster kept, tried again
after a growing wait, ``active`` again at the first run that gets through, ended like a revoke once
blocked longer than ``BLOCKED_GRACE_DAYS``); rate limits and
transient faults go back to the actor, which retries them; a revoke that lands mid-run fences
every later write, and the run stops without another provider call.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from connectors.base import (
    UNREADABLE,
    AccessBlocked,
    AccessRevoked,
    ChangesUnavailable,
    ConnectorError,
    ProviderDataError,
    RosterConnector,
    ScopeMissing,
    SetupRequired,
    TokenSet,
)
from mappers.policy import MappingContext, allowlist_digest
from mappers.records import ROLES, Role, RosterBatch
from providers.registry import Provider, provider, tokens_from_payload
from store import breaker, integrations, roster
from store.consent import purge_role
from store.db import utcnow
from store.fence import SYNCABLE, Fenced, Lease, fenced, still_current
from store.runtime import Runtime
from store.statistics import Statistics
from store.vault import VaultError
from sync import cursor as cursor_document
from sync import reappeared
from sync.budgets import budgeted
from sync.coalesce import Coalescer, split
from sync.consent import roles_to_sync
from sync.grants import revoke_grant as revoke_grant_at_provider
from sync.progress import ProgressEvent, emit
from sync.tokens import HeldTokens, TokensNotStored

log = logging.getLogger("rostersync.sync")


@dataclass
class SyncOutcome:
    """What one run did, in counts only."""

    integration_id: int
    outcome: str = "ok"  # set to the failure kind by run_sync when a run does not complete; "held": see store.breaker
    run_id: int = 0
    mode: str = "full"  # "full" (listing and sweep) or "changes" (change feed from the stored cursor)
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
    "add that key back, then `rostersync resume` it (re-link only if the key is lost)"
)
TOKENS_NOT_STORED_REASON = (
    "the provider rotated the tokens and the database would not store them; they were revoked at the provider "
    "(a failure to store is not a revocation: the roster is kept); re-link the integration"
)


def run_sync(runtime: Runtime, integration_id: int) -> SyncOutcome:
    """Sync one integration now. Raises only ``RateLimited`` / ``TransientError`` (for the actor to retry)."""
    lease = Lease(owner=uuid.uuid4().hex, seconds=runtime.settings.lease_seconds)
    state = integrations.acquire_lease(runtime.engine, integration_id, lease)
    if state is None:
        current = integrations.load(runtime.engine, integration_id)
        skipped = "busy" if current.status in SYNCABLE else current.status
        log.info("sync of integration %s skipped: %s", integration_id, skipped)
        integrations.finish_run(
            runtime.engine, integrations.start_run(runtime.engine, integration_id), f"skipped:{skipped}"
        )
        return SyncOutcome(integration_id, outcome=f"skipped:{skipped}")
    run_id = integrations.start_run(runtime.engine, integration_id)
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
        integrations.finish_run(runtime.engine, run_id, outcome.outcome, **outcome.counters())
        integrations.release_lease(runtime.engine, integration_id, lease, state.generation, next_due)
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
        reason = integrations.grace_ended_reason(runtime.engine, state.id, runtime.settings.blocked_grace_days)
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
        integrations.unblock(runtime.engine, state.id, state.generation, lease, actor="system:sync")
        log.info("integration %s unblocked: the provider answered again", state.id)
    interval = state.sync_interval_seconds or runtime.settings.sync_interval_seconds
    return utcnow() + timedelta(seconds=interval)


def _block(runtime: Runtime, state: integrations.IntegrationState, lease: Lease, error: AccessBlocked) -> str:
    """Pause the integration as ``blocked`` (nothing ended, nothing revoked at the provider); fenced."""
    settings = runtime.settings
    wait = integrations.BlockedWait(
        first_seconds=settings.blocked_retry_min_seconds,
        longest_seconds=state.sync_interval_seconds or settings.sync_interval_seconds,
        grace_days=settings.blocked_grace_days,
    )
    try:
        due = integrations.mark_blocked(
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
    tokens = _open_tokens(runtime, state)
    held = HeldTokens(runtime, state, tokens)  # the tokens this sync holds, replaced on each rotation
    scopes = state.granted_scopes
    context = MappingContext(state.tenant, scopes, runtime.pseudonymiser)
    roles = roles_to_sync(state.consent_basis)  # P7: no student is even requested without a consent basis
    # The cursor is trusted only under the rules its rows were stored under: the allowlist and the roles.
    allowlist = f"{allowlist_digest(spec.allowlist, scopes)}:{','.join(roles)}"
    connector = budgeted(spec.connector(runtime.settings, tokens, held.keep), runtime.settings, spec.name)
    try:
        saved = cursor_document.loads(state.sync_cursor)
        # A cursor taken under these rules is read even when a full reconcile is due: what the feed says
        # ended (a rollover's deletions) is then applied as the provider's word before the listing's
        # sweep, which would otherwise find those classes merely absent, and hold them.
        if saved is not None and spec.map_changes is not None and saved.allowlist == allowlist:
            try:
                _apply_changes(runtime, state, lease, spec, connector, context, saved, roles, outcome)
                if saved.usable(allowlist, utcnow(), runtime.settings.full_reconcile_seconds):
                    return
            except ChangesUnavailable as error:
                log.info("integration %s: change feed unavailable (%s); full sync", state.id, error.reason)
            except breaker.ChangesTooLarge as error:  # that page was rolled back; the listing's sweep decides
                log.warning("integration %s: %s", state.id, error)
        teacher_scoped = _teacher_scoped(tokens)
        _full_sync(runtime, state, lease, spec, connector, context, allowlist, roles, outcome, teacher_scoped)
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


def _apply_changes(
    runtime: Runtime,
    state: integrations.IntegrationState,
    lease: Lease,
    spec: Provider,
    connector: RosterConnector,
    context: MappingContext,
    saved: cursor_document.CursorState,
    roles: tuple[Role, ...],
    outcome: SyncOutcome,
) -> None:
    """Apply the change feed page by page; each page's writes and the cursor after it commit together."""
    assert spec.map_changes is not None
    outcome.mode = "changes"
    guard = breaker.ChangeGuard(state.id, _limits(runtime), outcome.run_id)
    for page in connector.changes(saved.cursor):
        batch = spec.map_changes(page, context)
        reappeared.restore(runtime.engine, state.id, spec, connector, context, batch)  # a re-used id: its classes
        batch.upserts = _within(batch.upserts, roles)
        with fenced(runtime.engine, state.id, state.generation, lease) as connection:
            outcome.rows_written += guard.apply(connection, batch)
            if page.cursor is not None and page.cursor != saved.cursor:
                saved = saved.advanced(page.cursor)
                integrations.store_cursor(connection, state.id, saved.dumps())
        outcome.classes_seen += len(batch.upserts.classes)
        outcome.members_seen += len(batch.upserts.people)
        outcome.records_skipped += batch.upserts.skipped


def _full_sync(
    runtime: Runtime,
    state: integrations.IntegrationState,
    lease: Lease,
    spec: Provider,
    connector: RosterConnector,
    context: MappingContext,
    allowlist: str,
    roles: tuple[Role, ...],
    outcome: SyncOutcome,
    teacher_scoped: bool = False,
) -> None:
    """Classes, then the rest of the roster, then the sweep; the feed position is taken first, stored last.

    Only the roles the consent basis allows get a mask, and a role without a mask is not requested;
    members a provider returns inline with its classes are dropped here before any write.
    """
    engine, generation, scopes = runtime.engine, state.generation, state.granted_scopes
    outcome.mode = "full"
    masks = {role: spec.field_mask(role, scopes) for role in ("class", *roles)}
    cursor = connector.change_cursor() if spec.map_changes is not None else None
    class_ids: dict[str, int] = {}
    seen_enrollments = roster.SeenEnrollments()
    classes_complete = True
    statistics = Statistics(engine)
    for page in connector.classes(masks):
        batch = _within(spec.map_page(page, context), roles)
        for part in split(batch):  # a page of thousands of classes is written a thousand rows at a time
            with fenced(engine, state.id, generation, lease) as connection:
                written, ids, keys = roster.apply_batch(connection, state.id, part)
            class_ids.update(ids)
            seen_enrollments.update(keys)
            outcome.rows_written += written
            statistics.written(outcome.rows_written)
        outcome.members_seen += len(batch.enrollments)
        outcome.records_skipped += batch.skipped
        classes_complete = classes_complete and batch.skipped == 0
    outcome.classes_seen = len(class_ids)
    emit(ProgressEvent(state.id, "classes", 0, len(class_ids)))
    done: set[str] = set()
    pending = Coalescer()

    def write_pending() -> None:
        """One fenced write for the pages gathered so far (small pages cost one transaction together)."""
        if pending.empty:
            return
        with fenced(engine, state.id, generation, lease) as connection:
            written, _ids, keys = roster.apply_batch(connection, state.id, pending.take())
        seen_enrollments.update(keys)
        outcome.rows_written += written
        statistics.written(outcome.rows_written)

    try:
        for page in connector.members(list(class_ids), masks):
            if page.parent_id is not None and page.parent_id in class_ids and page.parent_id not in done:
                done.add(page.parent_id)
                emit(ProgressEvent(state.id, "class", len(done), len(class_ids)))
            if page.kind == UNREADABLE:
                if page.parent_id in class_ids:
                    outcome.incomplete_classes.add(class_ids[page.parent_id])
                outcome.records_skipped += 1
                log.warning("integration %s: roster of one class skipped (unreadable)", state.id)
                continue
            batch = _within(spec.map_page(page, context), roles)
            outcome.members_seen += len(batch.enrollments)
            outcome.records_skipped += batch.skipped
            if batch.skipped and page.parent_id in class_ids:  # a member record broke: that roster is not whole
                outcome.incomplete_classes.add(class_ids[page.parent_id])
            if pending.add(batch):
                write_pending()
            else:
                still_current(engine, state.id, generation, lease)  # no further provider call once ended
    except ConnectorError:
        # Pages read before the failure are kept as if written one by one (and leave any hold they list);
        # nothing is swept. A revoke that fenced them first wins: the original error still goes up.
        with contextlib.suppress(Fenced):
            write_pending()
        raise
    write_pending()
    # Reached only when every page above was read without error: a failure anywhere raised, unswept.
    with fenced(engine, state.id, generation, lease) as connection:
        if "student" not in roles:
            outcome.removed += purge_role(connection, state.id, "student")  # policy, not a listing: never held
        # Classes the provider listed as ended (archived, expired) end first, as the school's decision.
        outcome.removed += breaker.end_explained(connection, integration_id=state.id, run_id=outcome.run_id)
        plan = roster.plan_removals(
            connection,
            state.id,
            set(class_ids.values()),
            seen_enrollments,
            outcome.incomplete_classes,
            sweep_classes=classes_complete,
        )
        swept = breaker.sweep(
            connection,
            integration_id=state.id,
            run_id=outcome.run_id,
            generation=generation,
            plan=plan,
            limits=_limits(runtime),
            explained=teacher_scoped and classes_complete and not class_ids,  # a teacher with zero classes
        )
        outcome.removed += swept.removed
        if swept.held is not None:
            outcome.outcome = "held"
            log.warning("integration %s: sweep held by the mass-removal breaker (%s)", state.id, swept.held)
        document = cursor_document.CursorState(cursor, allowlist, utcnow()).dumps() if cursor is not None else None
        integrations.store_cursor(connection, state.id, document)


def _teacher_scoped(tokens: TokenSet) -> bool:
    """A link that reads one teacher's own classes: its sealed ``extra`` names the teacher (connectors.base.TokenSet).

    Such a listing, complete and empty, is a teacher with zero classes, not a listing that lost data
    (a provider's certification asks for exactly this: docs/reliability.md, "School year's end").
    """
    return "teacher_id" in tokens.extra


def _limits(runtime: Runtime) -> breaker.Limits:
    return breaker.Limits(runtime.settings.breaker_share, runtime.settings.breaker_min_people)


def _within(batch: RosterBatch, roles: tuple[Role, ...]) -> RosterBatch:
    """The batch without people (and enrolments) of roles the consent basis does not cover."""
    if set(roles) >= set(ROLES):
        return batch
    return replace(
        batch,
        people=[p for p in batch.people if p.role in roles],
        enrollments=[e for e in batch.enrollments if e.role in roles],
    )
