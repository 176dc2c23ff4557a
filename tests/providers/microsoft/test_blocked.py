"""A Microsoft school's reversible settings are not a revocation (issue 23, item 1), through the sync cycle
with the real MSAL against the emulator, on SQLite and PostgreSQL.

Entra refuses a refresh with a policy or interaction code (Conditional Access, MFA, sign-in frequency,
a disabled account or app, ...), Graph challenges a client that declared no capabilities, or Graph
answers a 403 that is not a missing permission: the connector raises ``AccessBlocked``, and the sync must
keep the tokens and the roster, revoke nothing, and call Graph no more in that run. Documented
revocations (50173, 65001, 700082, ...) still end the link. The codes and their pages: docs/microsoft.md.

``run_sync`` lets an ``AccessBlocked`` go up today, as any connector error it has no branch for; the
``blocked`` status (i23/blocked) will catch it. ``meet_the_block`` accepts both and asserts what holds
either way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from store import integrations
from store.models import AuditEvent, SyncRun
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.helpers import row_count
from tests.microsoft_fixtures import Roster, link_by_kind, microsoft_settings_for, roster
from tests.microsoft_fixtures import linked_user as principal

pytestmark = pytest.mark.microsoft(tenants=1, teachers=2, students_per_course=5)


@pytest.fixture
def settings(microsoft: MicrosoftEmulator, database_url: str) -> Settings:
    return microsoft_settings_for(microsoft, database_url)


def audited(runtime: Runtime, integration_id: int) -> set[str]:
    with runtime.engine.connect() as connection:
        return set(connection.scalars(select(AuditEvent.action).where(AuditEvent.integration_id == integration_id)))


def last_run_outcome(runtime: Runtime, integration_id: int) -> str:
    with runtime.engine.connect() as connection:
        query = select(SyncRun.outcome).where(SyncRun.integration_id == integration_id).order_by(SyncRun.id.desc())
        return str(connection.scalars(query).first())


def meet_the_block(runtime: Runtime, integration_id: int) -> str:
    """One sync that meets a block: the run ends (nothing raised) and the link is ``blocked``; the admin's text."""
    assert run_sync(runtime, integration_id).outcome == "access_blocked"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "blocked" and state.token_blob is not None
    reason = next(s.status_reason for s in integrations.summaries(runtime.engine) if s.id == integration_id)
    assert reason, "the admin is told why"
    return reason


ENDINGS = {"revoked", "degraded", "failed", "purged"}
"""Audit actions a block must never write (nor any ``provider_revoke*``)."""


def assert_kept(runtime: Runtime, integration_id: int, held: Roster, trail: set[str]) -> None:
    """What a block must leave: the link, its tokens, its roster; no revoke, no purge audited."""
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "blocked" and state.token_blob is not None, "tokens kept"
    assert roster(runtime, integration_id) == held, "nothing purged, nothing removed"
    assert last_run_outcome(runtime, integration_id) == "access_blocked"
    written = audited(runtime, integration_id) - trail
    assert not written & ENDINGS and not {a for a in written if a.startswith("provider_revoke")}, written


def no_graph_call_after(microsoft: MicrosoftEmulator, since: int, refusal: Callable[[str, int], bool]) -> None:
    calls = microsoft.requests[since:]
    refused = [i for i, call in enumerate(calls) if refusal(call.path, call.status)]
    assert refused, "the refusal was met"
    assert not [c for c in calls[refused[-1] + 1 :] if c.path.startswith("/v1.0/")], "no Graph call after it"


def token_refused(path: str, status: int) -> bool:
    return path.endswith("/oauth2/v2.0/token") and status >= 400


# ---------------------------------------------------------------------------------- Entra refusals
BLOCKED_CODES = [
    (53000, None, "conditional_access"),
    (53001, None, "conditional_access"),
    (53002, None, "conditional_access"),
    (53003, None, "conditional_access"),  # interaction_required + message_only
    (53004, None, "interaction_required"),
    (530032, None, "conditional_access"),
    (530035, None, "security_defaults"),
    (50005, None, "conditional_access"),
    (50131, None, "conditional_access"),
    (50076, None, "interaction_required"),  # invalid_grant + basic_action
    (50079, None, "interaction_required"),  # invalid_grant + basic_action
    (50078, None, "interaction_required"),
    (50158, None, "interaction_required"),
    (50097, None, "conditional_access"),
    (50105, None, "user_not_assigned"),
    (50057, None, "account_disabled"),
    (50053, None, "account_locked"),
    (50055, None, "password_expired"),  # invalid_grant + user_password_expired
    (70043, None, "sign_in_frequency"),
    (7000112, None, "app_disabled"),
    (50076, "", "interaction_required"),  # the code alone decides, with no suberror at all
]
TENANT_CODES = [(53003, "conditional_access"), (530032, "conditional_access"), (7000112, "app_disabled")]
"""The codes that apply to an app's own sign-in (Conditional Access for workload identities, the app's toggle)."""


@pytest.mark.parametrize(
    ("kind", "code", "suberror", "reason"),
    [("teacher", code, suberror, reason) for code, suberror, reason in BLOCKED_CODES]
    + [("tenant", code, None, reason) for code, reason in TENANT_CODES],
)
def test_a_school_policy_on_refresh_keeps_link_and_roster_and_stops_graph(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, code: int, suberror: str | None, reason: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    assert held[2], "a roster to keep"
    trail = audited(runtime, integration_id)
    microsoft.block_signin(principal(microsoft, kind), code, suberror=suberror)
    microsoft.expire_access_tokens()  # the next Graph call earns a refresh, which meets the policy

    since = len(microsoft.requests)
    assert f"AADSTS{code}" in meet_the_block(runtime, integration_id)
    assert_kept(runtime, integration_id, held, trail)
    no_graph_call_after(microsoft, since, token_refused)

    microsoft.unblock_signin(principal(microsoft, kind))  # the school lifts the policy: the same tokens sync on
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert roster(runtime, integration_id) == held
    assert integrations.load(runtime.engine, integration_id).status == "active"


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_an_admin_who_disables_the_enterprise_app_blocks_until_enabled_again(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str
) -> None:
    # "Enabled for users to sign in" = No answers AADSTS7000112; it was a revocation before issue 23
    tenant = microsoft.tenant_ids[0]
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    trail = audited(runtime, integration_id)
    microsoft.disable_app(tenant)
    since = len(microsoft.requests)
    assert "AADSTS7000112" in meet_the_block(runtime, integration_id)
    assert_kept(runtime, integration_id, held, trail)
    no_graph_call_after(microsoft, since, token_refused)
    microsoft.enable_app(tenant)
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert roster(runtime, integration_id) == held


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        ("teacher", 50173, "sessions_revoked"),
        ("teacher", 65001, "consent_withdrawn"),
        ("teacher", 90094, "consent_withdrawn"),
        ("teacher", 700082, "refresh_token_expired"),
        ("teacher", 70008, "grant_expired"),
        ("teacher", 70000, "grant_invalid"),
        ("teacher", 50132, "sessions_revoked"),
        ("teacher", 50034, "account_removed"),
        ("teacher", 700016, "app_removed_from_tenant"),
        ("tenant", 700016, "app_removed_from_tenant"),
    ],
)
def test_a_documented_revocation_on_refresh_still_ends_the_link(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, code: int, reason: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.block_signin(principal(microsoft, kind), code)
    microsoft.expire_access_tokens()
    since = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == "revoked" and ended.token_blob is None
    assert row_count(runtime.engine, integration_id) == 0, "the roster is purged"
    with runtime.engine.connect() as connection:
        reasons = set(connection.scalars(select(AuditEvent.reason).where(AuditEvent.action == "revoked")))
    assert reason in reasons
    no_graph_call_after(microsoft, since, token_refused)


# ---------------------------------------------------------------------------------- claims challenge
@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_an_unexpected_claims_challenge_is_a_block_not_a_blind_refresh_then_revoke(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str
) -> None:
    # rostersync declares no client capabilities, so Entra sends it no claims challenge unless a policy
    # wants an interactive step a server cannot take (claims-challenge page)
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    trail = audited(runtime, integration_id)
    microsoft.force_claims_challenge(principal(microsoft, kind))
    since = len(microsoft.requests)
    meet_the_block(runtime, integration_id)
    assert_kept(runtime, integration_id, held, trail)
    sequence = [
        ("graph" if c.path.startswith("/v1.0/") else "token", c.status)
        for c in microsoft.requests[since:]
        if c.path.startswith("/v1.0/") or c.path.endswith("/token")
    ]
    assert sequence == [("graph", 401), ("token", 200), ("graph", 401)], "one refresh with the claims, then stop"
    microsoft.force_claims_challenge(principal(microsoft, kind), on=False)
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert roster(runtime, integration_id) == held


def test_a_cae_cut_without_capabilities_is_a_plain_401_and_the_refresh_decides(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    # consent withdrawn under a live token: no challenge for us, the refresh meets AADSTS65001: revoked
    integration_id = link_by_kind(runtime, microsoft, "teacher")
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.withdraw_consent(microsoft.tenant_ids[0], cae=True)
    since = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    first = next(c for c in microsoft.requests[since:] if c.path.startswith("/v1.0/"))
    assert first.status == 401
    assert row_count(runtime.engine, integration_id) == 0


# ---------------------------------------------------------------------------------- Graph 403
@pytest.mark.parametrize("kind", ["teacher", "tenant"])
@pytest.mark.parametrize("denial", ["licence", "ca"])
def test_a_graph_403_that_is_not_a_missing_scope_keeps_link_and_roster(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, denial: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    trail = audited(runtime, integration_id)
    microsoft.deny_graph(microsoft.tenant_ids[0], denial)
    since = len(microsoft.requests)
    meet_the_block(runtime, integration_id)
    assert_kept(runtime, integration_id, held, trail)
    no_graph_call_after(microsoft, since, lambda path, status: path.startswith("/v1.0/") and status == 403)
    microsoft.allow_graph(microsoft.tenant_ids[0])
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert roster(runtime, integration_id) == held


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_a_graph_403_for_a_missing_scope_still_degrades(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.deny_graph(microsoft.tenant_ids[0], "scope")
    assert run_sync(runtime, integration_id).outcome == "degraded"
    assert integrations.load(runtime.engine, integration_id).status == "degraded"
