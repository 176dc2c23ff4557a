"""The admin API's request and response bodies (they make its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from store.overview import AuditView, IntegrationView, RunView
from store.pending_revokes import PendingSummary


class RevokeRequest(BaseModel):
    reason: str = Field(default="", max_length=500, description="Why; kept in the audit log.")


class IntervalRequest(BaseModel):
    seconds: int | None = Field(
        default=None, gt=0, le=31 * 86_400, description="This integration's sync interval; null for the default."
    )


class UnlinkRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class Run(BaseModel):
    id: int
    integration_id: int
    started_at: datetime
    finished_at: datetime | None
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
    due_at: datetime | None
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
    at: datetime
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
    created_at: datetime
    next_attempt_at: datetime
    last_error: str

    @classmethod
    def of(cls, view: PendingSummary) -> PendingRevokeOut:
        return cls(**view.__dict__)


class ProviderOut(BaseModel):
    name: str
    configured: bool  # a teacher can link it in the browser
    problems: list[str]  # when not: each names the setting that stops it (never a value)
