"""Syncs and their outcome: ``sync``, ``revoke``, ``resume``, and how a sync that ran here ended (``status``:
cli.status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import IntegrationId, error_line, fail, install_broker, runtime, user_errors
from services.console import err, sync_progress
from store import integrations, runs
from store.models import MAX_ID
from store.runtime import Runtime

if TYPE_CHECKING:  # the commands that sync import these (the provider clients, Dramatiq) when they run
    from dramatiq.broker import Broker

    from sync.outcomes import Verdict


def wait_in_memory(rt: Runtime, broker: Broker, ids: list[int], *, since_run: int | None = None) -> list[Verdict]:
    """With the in-memory broker the work runs here: run it, then say how each sync ended."""
    from sync.outcomes import verdict
    from worker import broker as brokers

    if not brokers.is_in_memory(broker):
        return []
    after_run = since_run if since_run is not None else runs.last_run_id(rt.engine)
    with sync_progress():
        brokers.drain(broker)
    brokers.shutdown()
    outcomes = runs.latest_outcomes(rt.engine, ids, after_run=after_run)
    return [verdict(one, outcomes.get(one)) for one in ids]


def report(verdicts: list[Verdict]) -> None:
    """One line per sync; exit 1 when any of them did not finish well (the others still ran)."""
    for one in verdicts:
        if one.ok:
            err.print(escape(one.line))
        else:
            error_line(one.line)
    if any(not one.ok for one in verdicts):
        raise typer.Exit(1)


def syncable(rt: Runtime, integration_id: int) -> int:
    """The id, if it can be synced; a revoked, degraded or failed one is refused with what to do.

    A blocked one is synced: an admin who switched the setting back need not wait for its next try."""
    state = integrations.load(rt.engine, integration_id)
    if state.status == "failed":
        fail(
            f"integration {integration_id} is failed (`rostersync status` says why); once that is mended, "
            f"`rostersync resume {integration_id}` makes it active again"
        )
    if state.status not in ("active", "blocked"):
        fail(f"integration {integration_id} is {state.status}; link it again to sync it")
    return state.id


def sync(
    integration_id: Annotated[
        int | None, typer.Argument(min=1, max=MAX_ID, help="Integration to sync.", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Sync every active (or blocked) integration.")] = False,
    now: Annotated[bool, typer.Option("--now", help="Run here and now instead of through the queue.")] = False,
) -> None:
    """Sync one integration or all of them (queued; with the in-memory broker this waits until done).

    Exit code 1 when any sync did not complete (each is reported on its own line, the others still run).
    """
    from worker import broker as brokers
    from worker.actors import sync_integration

    if (integration_id is None) == (not all_):
        fail("give an integration ID or --all (not both)")
    with user_errors():
        rt = runtime()
        ids = integrations.syncable_ids(rt.engine) if all_ else [syncable(rt, integration_id or 0)]
        if now:
            verdicts = sync_here(rt, ids)
        else:
            broker = install_broker(rt.settings)
            brokers.check(broker)
            since_run = runs.last_run_id(rt.engine)
            for one in ids:
                brokers.enqueue(sync_integration, one)
            err.print(f"enqueued {len(ids)} sync(s)")
            verdicts = wait_in_memory(rt, broker, ids, since_run=since_run)
    report(verdicts)


def sync_here(rt: Runtime, ids: list[int]) -> list[Verdict]:
    """``sync --now``: every integration in turn, under the actor's retry policy (each wait shown on stderr).

    One's failure is reported and the next still runs.
    """
    from connectors.base import ConnectorError
    from sync.outcomes import Verdict, verdict
    from worker.retry_policy import run_with_retries, wait_line

    verdicts = []
    with sync_progress():
        for one in ids:
            try:
                outcome = run_with_retries(rt, one, on_wait=lambda wait: err.print(wait_line(wait), markup=False))
            except ConnectorError as error:
                verdicts.append(Verdict(one, False, f"integration {one}: sync failed: {error}"))
                continue
            verdicts.append(verdict(one, outcome))
    return verdicts


def revoke(
    integration_id: IntegrationId,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Revoke an integration: its tokens and roster are deleted here at once, then its access is revoked at the
    provider."""
    from providers.registry import provider
    from services.revoke import revoke_integration
    from sync.grants import AtProvider

    with user_errors():
        rt = runtime()
        provider_name = integrations.load(rt.engine, integration_id).provider
        result = revoke_integration(rt, integration_id, actor="admin:cli", reason=reason)
    if result.already_revoked:
        err.print(f"integration {integration_id} was already revoked; nothing to do")
        return
    at_provider = {
        AtProvider.REVOKED: "revoked at the provider",
        AtProvider.NOT_CONFIRMED: "provider revoke NOT confirmed (see the audit log)",
        AtProvider.NONE_HELD: "no grant was held any more (it was revoked at the provider when it ended)",
        AtProvider.PENDING: "the provider could not be reached: the revoke is kept sealed and retried by the worker",
        AtProvider.UNSUPPORTED: f"{provider_name.capitalize()} has no revoke endpoint, so access ends only when "
        f"{provider(provider_name).disconnect}",
    }[result.at_provider]
    err.print(f"integration {integration_id}: revoked, tokens deleted, roster purged; {at_provider}")


def resume(integration_id: IntegrationId) -> None:
    """Make a failed integration active again (e.g. after a provider outage outlasted the retry caps)."""
    with user_errors():
        rt = runtime()
        resumed = integrations.resume_failed(rt.engine, integration_id, actor="admin:cli")
        current = None if resumed else integrations.load(rt.engine, integration_id)
    if current is not None:
        fail(
            f"integration {integration_id} is {current.status}, not failed; only a failed integration that still "
            "holds its tokens resumes (a revoked or degraded one is re-linked)"
        )
    err.print(f"integration {integration_id}: resumed; its next sync is due now")
