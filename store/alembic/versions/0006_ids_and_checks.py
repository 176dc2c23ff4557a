"""ids never reused, 64-bit integration ids wherever they are stored, statuses and outcomes checked (issue 18)

SQLite: every table whose ids a person or the audit log names is rebuilt with AUTOINCREMENT (batch
mode, ``recreate="always"``; store.db runs migrations with foreign keys off, so dropping the old
``integrations`` cascades into no roster row), and its counter starts past every id that the audit
log and the other tables still name (an erase before this revision may have freed the highest one).
The audit log's append-only triggers go with the old table and are made again. PostgreSQL's
sequences never go back: there only the types change and the CHECK constraints are added.

The CHECKs are named ``ck_integrations_status`` and ``ck_sync_runs_outcome``: a later revision that
adds a status (and its ``skipped:<status>`` outcome) drops and re-creates them under the same names.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATUSES = ("active", "degraded", "revoked", "failed", "suspended", "blocked")
OUTCOMES = (
    *("running", "ok", "held", "fenced", "error", "failed", "revoked", "degraded"),
    *("connector_error", "access_revoked", "access_blocked", "scope_missing", "rate_limited", "transient"),
    "provider_data",
    *("changes_unavailable", "link_refused", "client_config", "cursor_expired", "record_unavailable"),
    *("events_unavailable", "budget_spent", "tokens_not_stored", "setup_required"),
    "token_refused",
    *("skipped:busy", "skipped:degraded", "skipped:revoked", "skipped:failed", "skipped:suspended", "skipped:blocked"),
)
NAMED_IDS = (
    "integrations",
    "sync_runs",
    "audit_events",
    "removal_holds",
    "pending_revokes",
    "suppressions",
    "account_deletions",
    "link_attempts",
)
FLOORS = {
    "integrations": (
        "SELECT max(integration_id) FROM audit_events",
        "SELECT max(integration_id) FROM sync_runs",
        "SELECT max(integration_id) FROM pending_revokes",
    ),
    "sync_runs": (
        "SELECT max(run_id) FROM removal_holds",
        "SELECT max(CAST(json_extract(details, '$.run') AS INTEGER)) FROM audit_events WHERE json_valid(details)",
        "SELECT max(CAST(json_extract(details, '$.by_run') AS INTEGER)) FROM audit_events WHERE json_valid(details)",
    ),
}
"""Ids that may outlive their row (in the audit log, or in a table without a foreign key)."""

SQLITE_APPEND_ONLY = [
    f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
    for verb in ("UPDATE", "DELETE")
]


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


@contextmanager
def _table(name: str, *, never_reused: bool) -> Iterator[BatchOperations]:
    """On SQLite the table is rebuilt whatever changes (AUTOINCREMENT is a table option); elsewhere ALTERed."""
    with op.batch_alter_table(
        name, recreate="always" if _sqlite() else "auto", table_kwargs={"sqlite_autoincrement": never_reused}
    ) as batch_op:
        yield batch_op
    if name == "audit_events" and _sqlite():
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def _start_counters_past_named_ids() -> None:
    bind = op.get_bind()
    for table, queries in FLOORS.items():
        floor = max([0, *(value for query in queries if (value := bind.exec_driver_sql(query).scalar()) is not None)])
        bind.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) SELECT ?, 0 "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
            (table, table),
        )
        bind.exec_driver_sql("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (floor, table))


def upgrade() -> None:
    for name in NAMED_IDS:
        with _table(name, never_reused=True) as batch_op:
            if name == "integrations":
                batch_op.create_check_constraint(batch_op.f("ck_integrations_status"), _one_of("status", STATUSES))
            elif name == "sync_runs":
                batch_op.alter_column("integration_id", existing_type=sa.Integer(), type_=sa.BigInteger())
                batch_op.create_check_constraint(batch_op.f("ck_sync_runs_outcome"), _one_of("outcome", OUTCOMES))
            elif name == "audit_events":
                batch_op.alter_column(
                    "integration_id", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True
                )
    if _sqlite():
        _start_counters_past_named_ids()


def downgrade() -> None:
    for name in NAMED_IDS:
        with _table(name, never_reused=False) as batch_op:
            if name == "integrations":
                batch_op.drop_constraint(batch_op.f("ck_integrations_status"), type_="check")
            elif name == "sync_runs":
                batch_op.drop_constraint(batch_op.f("ck_sync_runs_outcome"), type_="check")
                batch_op.alter_column("integration_id", existing_type=sa.BigInteger(), type_=sa.Integer())
            elif name == "audit_events":
                batch_op.alter_column(
                    "integration_id", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=True
                )
