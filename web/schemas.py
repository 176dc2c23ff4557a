"""The admin API's request and response bodies (they make its OpenAPI document)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, WithJsonSchema

from store.overview import AuditView, IntegrationView, RunView
from store.pending_revokes import PendingSummary

MAX_TEXT = 500
"""The longest free text a body may carry (a reason, kept in the audit log)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 controls (NUL, tab, line breaks, escape), DEL and C1 controls: never part of a one-line reason."""


def _printable(text: str) -> str:
    """Refuse what the audit log could not keep as one readable line (PostgreSQL refuses NUL outright).

    A lone surrogate is refused before this by pydantic itself (not UTF-8 text): a 422 too.
    """
    if _CONTROL.search(text):
        raise ValueError("must be printable text, without a control character (NUL, tab, line break, escape)")
    return text


BodyText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_TEXT),
    AfterValidator(_printable),
    Field(json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}),
]
"""Every free-text field of every request body: printable, one line, at most MAX_TEXT characters,
surrounding blanks stripped; anything else is a 422 naming the field, before any work is done."""


def _with_offset(moment: datetime) -> str:
    """RFC 3339 with its offset: the store keeps naive UTC, and a time without an offset is read as local time."""
    return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


Utc = Annotated[
    datetime,
    PlainSerializer(_with_offset, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""Every time the API shows: ``2026-12-06T21:00:00+00:00``."""


class RequestBody(BaseModel):
    """A request body: a field the route does not know is a 422, never silently dropped.

    A typo (``{"secs": 60}``) would otherwise read as "field left out" and apply its default.
    """

    model_config = ConfigDict(extra="forbid")


class RevokeRequest(RequestBody):
    reason: BodyText = Field(default="", description="Why; kept in the audit log. May be left out.")


class IntervalRequest(RequestBody):
    seconds: int | None = Field(
        gt=0,
        le=31 * 86_400,
        strict=True,
        description="This integration's sync interval; null for the default. Required: say which.",
    )


class UnlinkRequest(RequestBody):
    reason: BodyText = Field(default="", description="Why; kept in the audit log. Left out or blank: 'unlinked'.")


class Run(BaseModel):
    """One run; its counters are store.runs.RunCounts, in that order (tests/test_run_counts.py holds them to it)."""

    id: int
    integration_id: int
    started_at: Utc
    finished_at: Utc | None
    outcome: str
    classes_seen: int
    members_seen: int
    rows_written: int
    records_skipped: int
    provider_calls: int

    @classmethod
    def of(cls, view: RunView) -> Run:
        return cls(**view.__dict__)


class Counts(BaseModel):
    classes: int
    teachers: int
    students: int


class IntegrationOut(BaseModel):
    id: int
    provider: str
    tenant: str
    linked_by: str
    status: str
    status_reason: str
    consent_basis: str | None
    sync_interval_seconds: int | None
    due_at: Utc | None
    queued: bool
    counts: Counts
    last_run: Run | None

    @classmethod
    def of(cls, view: IntegrationView) -> IntegrationOut:
        values = view.__dict__ | {
            "counts": Counts(**view.counts.__dict__),
            "last_run": Run.of(view.last_run) if view.last_run else None,
        }
        return cls(**values)


class RevokeOut(BaseModel):
    integration_id: int
    already_revoked: bool
    at_provider: str = Field(description="revoked | pending | not_confirmed | none_held | unsupported")


class TenantRevokeOut(BaseModel):
    tenant: str
    results: list[RevokeOut]


class SyncOut(BaseModel):
    integration_id: int
    request: str = Field(description="queued | coalesced | cooldown | not_active")
    retry_after_seconds: int = 0


class AuditOut(BaseModel):
    id: int
    integration_id: int
    at: Utc
    actor: str
    action: str
    reason: str

    @classmethod
    def of(cls, view: AuditView) -> AuditOut:
        return cls(**view.__dict__)


class PendingRevokeOut(BaseModel):
    id: int
    integration_id: int
    provider: str
    attempts: int
    created_at: Utc
    next_attempt_at: Utc
    last_error: str

    @classmethod
    def of(cls, view: PendingSummary) -> PendingRevokeOut:
        return cls(**view.__dict__)


class ProviderOut(BaseModel):
    name: str
    configured: bool  # a teacher can link it in the browser
    problems: list[str]  # when not: each names the setting that stops it (never a value)
