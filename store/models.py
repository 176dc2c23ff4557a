"""The tables. Students are a pseudonym only; no provider user id is stored for anyone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

KEY_LENGTH = 128
"""Longest tenant or platform teacher id a link may carry (the width of those columns)."""

ACTOR_LENGTH = 160
"""Room for a role prefix ("teacher:", "admin:") before a KEY_LENGTH id."""

MAX_ID = 2**63 - 1
"""Largest row id either database can hold; larger ids are refused at the edge, not by the driver."""

INTEGRATION_STATUSES = ("active", "degraded", "revoked", "failed", "suspended", "blocked")
"""Every ``integrations.status`` (docs/architecture.md, Statuses); the CHECK ``ck_integrations_status``.

A new status needs a migration that replaces that constraint, and ``skipped:<status>`` in RUN_OUTCOMES."""

RUN_OUTCOMES = (
    *("running", "ok", "held", "fenced", "error", "failed", "revoked", "degraded"),
    # the kind of the connector error that stopped the run (connectors.*, sync.budgets)
    *("connector_error", "access_revoked", "access_blocked", "scope_missing", "rate_limited", "transient"),
    "provider_data",
    *("changes_unavailable", "link_refused", "client_config", "cursor_expired", "record_unavailable"),
    *("events_unavailable", "budget_spent", "tokens_not_stored", "setup_required"),
    "token_refused",
    # not run: another sync holds the lease, or the integration is not active
    *("skipped:busy", "skipped:degraded", "skipped:revoked", "skipped:failed", "skipped:suspended", "skipped:blocked"),
)
"""Every ``sync_runs.outcome`` the code writes (sync.cycle); the CHECK ``ck_sync_runs_outcome``."""

NEVER_REUSED = {"sqlite_autoincrement": True}
"""Table option of every table whose ids a person or the audit log names: SQLite's AUTOINCREMENT never hands
out an id again (a plain rowid table reuses the highest one after it is deleted). PostgreSQL's sequences
never go back anyway. The roster tables keep plain rowids: their ids stay internal and their rows cascade."""

Id = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; INTEGER on SQLite so that it stays the autoincrementing rowid."""


def one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    """A CHECK named after its column (``ck_<table>_<column>``), so that a later migration can replace it."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=column)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Integration(Base):
    """One teacher's (or district's) link to one provider; the fencing token is ``generation``."""

    __tablename__ = "integrations"
    __table_args__ = (
        UniqueConstraint("provider", "tenant", "linked_by"),
        one_of("status", INTEGRATION_STATUSES),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(KEY_LENGTH))
    linked_by: Mapped[str] = mapped_column(String(KEY_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default="active")  # INTEGRATION_STATUSES
    account_key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # pseudonym of the provider account
    granted_scopes: Mapped[str] = mapped_column(Text, default="")
    token_blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sync_cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    due_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    status_changed_at: Mapped[datetime] = mapped_column(DateTime)
    # Issue 8: who consented and on what basis (school | parent; NULL syncs no student), the
    # integration's own interval (NULL: the SYNC_INTERVAL_SECONDS default), and the scheduler's marks.
    consent_basis: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sync_interval_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # a sync is queued or running
    manual_sync_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # last manual request


class SchoolClass(Base):
    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("integration_id", "external_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(Text)
    section: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(32))
    removed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Person(Base):
    """Keyed by pseudonym per role; ``display_name`` and ``email_address`` stay empty for students."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("integration_id", "role", "pseudonym"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    pseudonym: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    email_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("class_id", "person_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    removed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SyncRun(Base):
    """One sync attempt: counts and the error kind only, never a payload."""

    __tablename__ = "sync_runs"
    __table_args__ = (one_of("outcome", RUN_OUTCOMES), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(BigInteger, index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(32), default="running")
    # The counters of store.runs.RunCounts, in its order (tests/test_run_counts.py holds them to it).
    classes_seen: Mapped[int] = mapped_column(Integer, default=0)
    members_seen: Mapped[int] = mapped_column(Integer, default=0)
    rows_written: Mapped[int] = mapped_column(Integer, default=0)
    records_skipped: Mapped[int] = mapped_column(Integer, default=0)
    provider_calls: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(Base):
    """Who did what to which integration and why; kept after a purge (it holds no roster data)."""

    __tablename__ = "audit_events"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int | None] = mapped_column(BigInteger, index=True, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of ids and counts (store.audit)


class LinkAttempt(Base):
    """A consent in flight: state and PKCE verifier, kept until the callback uses them once."""

    __tablename__ = "link_attempts"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(KEY_LENGTH))
    linked_by: Mapped[str] = mapped_column(String(KEY_LENGTH))
    verifier_blob: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    consent_basis: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Issue 18: SHA-256 of the cookie value of the browser that began the link; NULL: `link start` (headless).
    browser_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LinkNonce(Base):
    """The nonce of a signed ``/link`` request, spent on first use and kept until its signature expires."""

    __tablename__ = "link_nonces"

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class PendingRevoke(Base):
    """A provider revoke that failed transiently: the grant's tokens, sealed, kept only until it is confirmed.

    Retried by the worker with backoff until the provider confirms or the attempt cap is hit; either
    way the row (and with it the last copy of the token) is deleted and the verdict audited.
    """

    __tablename__ = "pending_revokes"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(BigInteger, index=True)
    provider: Mapped[str] = mapped_column(String(32))
    token_blob: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Suppression(Base):
    """An erased person kept out of every later sync of the provider and tenant, by pseudonym only."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("provider", "tenant", "pseudonym"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(128))
    pseudonym: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(128))


class AccountDeletion(Base):
    """A platform account (an integration's ``linked_by``) deleted on the platform; its data goes at the deadline."""

    __tablename__ = "account_deletions"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account: Mapped[str] = mapped_column(String(128), unique=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime)
    recorded_by: Mapped[str] = mapped_column(String(128))
    purged_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RemovalHold(Base):
    """A sweep the mass-removal breaker held: one per integration at most, until an admin approves or drops it.

    Counts and ids only. ``run_id`` is the ``sync_runs`` row whose listing asked for the removals;
    ``generation`` the integration's generation then (approving on any other generation is refused);
    ``held_since`` is carried over when a newer listing supersedes the hold with the same verdict.
    """

    __tablename__ = "removal_holds"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), index=True, unique=True
    )
    run_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    generation: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))  # share | empty
    held_at: Mapped[datetime] = mapped_column(DateTime)
    held_since: Mapped[datetime] = mapped_column(DateTime)


class HeldRemoval(Base):
    """One removal a hold keeps back: a class (``person_id`` NULL) or one enrolment ``(class_id, person_id)``.

    Internal row ids only, never a pseudonym or a provider id; the foreign keys cascade, so a purge,
    an erase or the retention job takes the held rows with the roster rows they name.
    """

    __tablename__ = "held_removals"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("removal_holds.id", ondelete="CASCADE"), index=True)
    integration_id: Mapped[int] = mapped_column(Id, index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), nullable=True)


Index("ix_integrations_due", Integration.status, Integration.due_at)
Index("ix_pending_revokes_due", PendingRevoke.next_attempt_at)


class ChangeEvent(Base):
    """One event of the platform's change feed (docs/platform.md), written in the transaction of its change.

    ``seq`` is handed out from ``outbox_head`` by the writer that holds that row's lock until it commits,
    so sequence order is commit order and a reader can never see a later seq before an earlier one.
    ``person`` repeats the pseudonym an event names so that an erase can forget that person's events
    (indexed by its first ``PERSON_KEY`` characters: ``ix_change_events_person``); ``data`` is the event's
    JSON body, pseudonyms and class keys only.
    """

    __tablename__ = "change_events"

    seq: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime)
    type: Mapped[str] = mapped_column(String(32))
    integration_id: Mapped[int] = mapped_column(BigInteger, index=True)
    person: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[str] = mapped_column(Text, default="{}")


PERSON_KEY = 8
"""How many leading characters of ``change_events.person`` its index keeps (migration 0010): a pseudonym is
64 hex characters of an HMAC, so 8 of them tell two people apart but about once in four billion, while the
index costs each event written (a first sync writes one per enrolment) far less than one on the whole
pseudonym. An erase looks up the prefix and compares the whole pseudonym (store.outbox.forget_person). A hash
index on PostgreSQL (migration 0011): the erase asks an equality only, and a hash costs each event written about
half a btree's (no collation-aware descent, no entry for an event that names no one); a btree on SQLite."""
Index("ix_change_events_person", func.substr(ChangeEvent.person, 1, PERSON_KEY), postgresql_using="hash")


class OutboxHead(Base):
    """The change feed's single counter row (``id`` 1): the last seq handed out and the last one forgotten.

    ``forgotten_through`` is the highest seq the retention job has deleted: a reader whose position is
    below it has missed events and must take a new snapshot (410).
    """

    __tablename__ = "outbox_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    forgotten_through: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookCursor(Base):
    """Where delivery of the change feed to ``WEBHOOK_URL`` stands (``id`` 1): at least once, in seq order."""

    __tablename__ = "webhook_cursor"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    delivered_through: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed attempts
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class OutboxPause(Base):
    """An integration whose roster a purge is deleting, inside the purge's own transaction only.

    The outbox triggers write no ``*.removed`` event for a hard delete of this integration's rows while
    its row is here: the purge writes one ``integration.purged`` instead (store.outbox.purging).
    """

    __tablename__ = "outbox_pause"

    integration_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
