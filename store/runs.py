"""Run records: one ``sync_runs`` row per sync attempt, its outcome and its counts, and the one list of those counts.

Why a module of its own: a run record is written by the sync cycle, read by the CLI, the admin API
and the metrics, and audited when it closes; none of that is the integration's lifecycle
(store.integrations). ``RunCounts`` is the only place the counters are named: the sync's outcome
(sync.outcomes) and the admin view (store.overview) inherit it, and a test holds the ``sync_runs``
columns and the web schema to it (tests/test_run_counts.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, Engine, Update, bindparam, func, insert, select, update

from store import audit
from store.db import utcnow
from store.models import SyncRun


@dataclass(kw_only=True)
class RunCounts:
    """What a run counts, never what it saw: each name is a ``sync_runs`` column and a field of the admin API."""

    classes_seen: int = 0
    members_seen: int = 0
    rows_written: int = 0  # upserts and removals
    records_skipped: int = 0
    provider_calls: int = 0

    def counts(self) -> RunCounts:
        """The counters alone (a subclass's other fields left out), as the run record stores them."""
        return RunCounts(**{name: getattr(self, name) for name in RUN_COUNTERS})


RUN_COUNTERS: tuple[str, ...] = tuple(counter.name for counter in fields(RunCounts))
"""The counter names, in the order of the table and the API."""


def start_run(engine: Engine, integration_id: int) -> int:
    with engine.begin() as connection:
        return open_run(connection, integration_id)


_OPEN = insert(SyncRun).returning(SyncRun.id)
_CLOSE = (
    update(SyncRun)
    .where(SyncRun.id == bindparam("closed_run", type_=SyncRun.id.type), SyncRun.finished_at.is_(None))
    .returning(SyncRun.integration_id)
)
"""Built once, their values given at execution (``_CLOSE`` sets the columns its parameters name): every sync
opens and closes a run, and building the statements (and their cache keys) each time was a visible share of a
teacher link's sync."""


def open_run(connection: Connection, integration_id: int) -> int:
    """``start_run`` inside the caller's transaction (a sync opens its run with its lease: store.leases.begin)."""
    return int(connection.execute(_OPEN, {"integration_id": integration_id, "started_at": utcnow()}).scalar_one())


RUN_ACTIONS = ("synced", "sync_skipped", "sync_failed")
"""The audit action of a finished run: completed (``ok``, or ``held`` with its removals waiting), not run
(``skipped:<status>``), or ended by a failure (every other outcome, named in its details)."""


def run_action(outcome: str) -> str:
    if outcome in ("ok", "held"):
        return "synced"
    return "sync_skipped" if outcome.startswith("skipped:") else "sync_failed"


def finish_run(engine: Engine, run_id: int, outcome: str, **counters: int) -> None:
    """Close the run and audit it (counts and outcome only) in the same transaction.

    ``counters`` are named by ``RunCounts`` (``**asdict(outcome.counts())``); a counter left out keeps the
    column's 0 and is not audited.
    """
    finished = Finished(run_id, outcome, counters)
    with engine.begin() as connection:
        close_run(connection, finished)


@dataclass(frozen=True)
class Finished:
    """A run as it ends: its id, its outcome and its counters (named by ``RunCounts``), checked when made."""

    run_id: int
    outcome: str
    counters: dict[str, int]

    def __post_init__(self) -> None:
        unknown = set(self.counters) - set(RUN_COUNTERS)
        if unknown:
            raise ValueError(f"not a run counter: {', '.join(sorted(unknown))}")


def close_run(connection: Connection, finished: Finished) -> None:
    """``finish_run`` inside the caller's transaction (a sync closes its run as it gives its lease back).

    A run already closed is left as it is, unaudited: the give-back of a sync cut short by an interrupt
    (``store.leases.abandon``) may repeat a close that had already committed.
    """
    integration_id = connection.execute(_CLOSE, close_values(finished)).scalar_one_or_none()
    if integration_id is not None:
        connection.execute(audit.APPEND, {"integration_id": integration_id} | closed_event(finished))


def close_values(finished: Finished) -> dict[str, Any]:
    """The values ``_CLOSE`` (or ``closing``) is executed with."""
    return {"closed_run": finished.run_id, "finished_at": utcnow(), "outcome": finished.outcome, **finished.counters}


def closed_event(finished: Finished) -> dict[str, Any]:
    """The audit event of a closed run, but its integration (the run's own): counts and outcome only."""
    details: dict[str, audit.Detail] = {"outcome": audit.word(finished.outcome), **finished.counters}
    return audit.event_values(action=run_action(finished.outcome), actor="system:sync", details=details, reason="")


def closing(counters: tuple[str, ...]) -> Update:
    """``_CLOSE`` with the columns it sets named: the finish, the outcome and ``counters``.

    Why: a statement that nests it (the release's on PostgreSQL, store.leases) is built once, before its values
    are known, and an ``UPDATE`` nested in a ``WITH`` sets only the columns named when it is built."""
    columns = SyncRun.__table__.c
    named = ("finished_at", "outcome", *counters)
    return _CLOSE.values({name: bindparam(name, type_=columns[name].type) for name in named})


def last_run_id(engine: Engine) -> int:
    """The newest run id, so a command can tell the runs it caused from earlier ones."""
    with engine.connect() as connection:
        return int(connection.execute(select(func.coalesce(func.max(SyncRun.id), 0))).scalar_one())


def latest_outcomes(engine: Engine, integration_ids: list[int], *, after_run: int) -> dict[int, str]:
    """Per integration, the outcome of its newest run after ``after_run`` (retries leave several runs)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(SyncRun.integration_id, SyncRun.outcome)
            .where(SyncRun.id > after_run, SyncRun.integration_id.in_(integration_ids))
            .order_by(SyncRun.id)
        ).all()
    return {row.integration_id: row.outcome for row in rows}


def run_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(SyncRun)).scalar_one())
