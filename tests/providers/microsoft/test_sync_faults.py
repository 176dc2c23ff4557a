"""Microsoft through the provider-neutral sync cycle when things go wrong, with the real MSAL against the
emulator, on SQLite and PostgreSQL: every AADSTS refusal classified (revoked vs operator error vs
transient; the school's reversible policies, AADSTS7000112 among them, are test_microsoft_blocked.py),
Graph 401s and the one refresh they earn, throttling, a throttled ``$batch`` sub-request,
links that leave Graph's host or loop, delta links that expired or were tampered with, the periodic full
reconcile, and bad answers (malformed JSON, HTML pages, a missing ``value``) that must remove nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from connectors.base import RateLimited, TransientError
from connectors.microsoft import ClientRejected
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from store import integrations, runs
from store.db import utcnow
from store.models import AuditEvent, Integration
from store.runtime import Runtime, build_runtime
from sync import cursor as cursor_document
from sync.cycle import run_sync
from tests.helpers import classes, people, row_count
from tests.microsoft_fixtures import (
    graph_reads,
    link_by_kind,
    microsoft_settings_for,
    roster,
    token_calls,
)


@pytest.fixture
def settings(microsoft: MicrosoftEmulator, database_url: str) -> Settings:
    # What these tests change behind the sync (a class deleted, a student leaving) is what a complete
    # listing then removes; on a teacher link of three classes that is a third, which the mass-removal
    # breaker would hold. Its own tests are test_breaker*.py; here it only lets the removals through.
    return microsoft_settings_for(microsoft, database_url, breaker_share=1.0)


def audit_trail(runtime: Runtime, integration_id: int) -> list[tuple[str, str]]:
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            select(AuditEvent.action, AuditEvent.reason).where(AuditEvent.integration_id == integration_id)
        )
        return [(action, reason) for action, reason in rows]


def change_behind_the_sync(microsoft: MicrosoftEmulator, integration_id_classes: set[str]) -> tuple[str, str, str]:
    """A class deleted and a student leaving another: what a complete full sync would remove."""
    gone, other = sorted(integration_id_classes)[:2]
    students = set(microsoft.student_ids(microsoft.tenant_ids[0]))
    leaver = next(m for m in microsoft.members_of(other) if m in students)
    microsoft.delete_class(gone)
    microsoft.remove_member(other, leaver)
    return gone, other, leaver


# ---------------------------------------------------------------------------------- revocation
def _withdraw_consent(microsoft: MicrosoftEmulator) -> None:
    microsoft.withdraw_consent(microsoft.tenant_ids[0], cae=False)
    microsoft.expire_access_tokens()  # the access token runs out: the refresh meets AADSTS65001


def _expire_refresh_token(microsoft: MicrosoftEmulator) -> None:
    microsoft.expire_refresh_tokens(microsoft.teacher_ids(microsoft.tenant_ids[0])[0])
    microsoft.expire_access_tokens()


REVOCATIONS: dict[str, Callable[[MicrosoftEmulator], None]] = {
    "50173": lambda microsoft: microsoft.revoke_sessions(microsoft.teacher_ids(microsoft.tenant_ids[0])[0]),
    "65001": _withdraw_consent,
    "65001-cae": lambda microsoft: microsoft.withdraw_consent(microsoft.tenant_ids[0], cae=True),
    "700082": _expire_refresh_token,
    "700016": lambda microsoft: microsoft.delete_service_principal(microsoft.tenant_ids[0]),
}


@pytest.mark.parametrize(
    ("kind", "aadsts", "reason"),
    [
        ("teacher", "50173", "sessions_revoked"),
        ("teacher", "65001", "consent_withdrawn"),
        ("teacher", "65001-cae", "consent_withdrawn"),  # consent withdrawn under a still-valid access token
        ("teacher", "700082", "refresh_token_expired"),
        ("teacher", "700016", "app_removed_from_tenant"),
        ("tenant", "700016", "app_removed_from_tenant"),
    ],
)
def test_a_refused_grant_ends_the_link_and_no_graph_call_follows(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, aadsts: str, reason: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    assert row_count(runtime.engine, integration_id) > 0
    REVOCATIONS[aadsts](microsoft)

    since = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == "revoked" and ended.token_blob is None, "the MSAL cache is deleted"
    assert row_count(runtime.engine, integration_id) == 0, "the roster is purged"
    trail = audit_trail(runtime, integration_id)
    assert ("revoked", reason) in trail and "purged" in {action for action, _ in trail}
    assert "provider_revoke_unsupported" in {action for action, _ in trail}

    calls = microsoft.requests[since:]
    refused = [i for i, call in enumerate(calls) if call.path.endswith("/oauth2/v2.0/token") and call.status >= 400]
    assert refused, "the token endpoint said no"
    assert not [c for c in calls[refused[0] :] if c.path.startswith("/v1.0/")], "no Graph call after detection"
    graph_before = [c.status for c in calls[: refused[0]] if c.path.startswith("/v1.0/")]
    assert graph_before == [401], "one Graph 401 earned the one refresh that met the refusal"

    since = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "skipped:revoked"
    assert microsoft.requests[since:] == [], "a revoked link is never called again"


def test_withdrawn_consent_without_cae_ends_the_link_once_the_access_token_expires(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    # Without continuous access evaluation Graph honours an access token until it expires (providers.md 3.7)
    integration_id = link_by_kind(runtime, microsoft, "teacher")
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.withdraw_consent(microsoft.tenant_ids[0], cae=False)
    assert run_sync(runtime, integration_id).outcome == "ok", "the still-valid token reads on, as Graph lets it"
    microsoft.expire_access_tokens()
    assert run_sync(runtime, integration_id).outcome == "revoked"
    assert row_count(runtime.engine, integration_id) == 0


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
@pytest.mark.parametrize("cause", ["expired", "injected"])
def test_a_graph_401_with_consent_in_place_earns_one_refresh_and_the_sync_goes_on(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, cause: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    if cause == "expired":
        microsoft.expire_access_tokens()  # 401 InvalidAuthenticationToken, "Lifetime validation failed"
    else:
        microsoft.fail_next("/v1.0/education/", 401)  # 401 InvalidAuthenticationToken on one call
    since = len(microsoft.requests)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok"
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert roster(runtime, integration_id) == held
    statuses = [c.status for c in microsoft.requests[since:] if c.path.startswith("/v1.0/") or "/token" in c.path]
    assert statuses[:3] == [401, 200, 200], "401, one token call, the resend"
    assert len(token_calls(microsoft, since)) == 1


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_a_401_that_survives_the_refresh_is_revoked(runtime: Runtime, microsoft: MicrosoftEmulator, kind: str) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    microsoft.fail_next("/v1.0/education/", 401, count=2)
    since = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "revoked"
    assert row_count(runtime.engine, integration_id) == 0
    ended = integrations.load(runtime.engine, integration_id)
    assert ended.status == "revoked" and ended.token_blob is None
    sequence = [
        ("graph" if c.path.startswith("/v1.0/") else "token", c.status)
        for c in microsoft.requests[since:]
        if c.path.startswith("/v1.0/") or c.path.endswith("/token")
    ]
    assert sequence == [("graph", 401), ("token", 200), ("graph", 401)], "one refresh, then stop"


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
@pytest.mark.parametrize("aadsts", ["7000215", "7000222"])
def test_our_own_rejected_client_is_an_operator_error_that_changes_nothing(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, aadsts: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    trail = [entry for entry in audit_trail(runtime, integration_id) if entry[0] not in runs.RUN_ACTIONS]
    microsoft.expire_access_tokens()
    syncing = runtime
    if aadsts == "7000222":
        microsoft.expire_client_secret()
    else:  # an operator typed the wrong secret: the same database, another worker configuration
        typed = runtime.settings.microsoft.model_copy(update={"client_secret": SecretStr("not-the-secret")})
        wrong = runtime.settings.model_copy(update={"microsoft": typed})
        syncing = build_runtime(wrong)
    try:
        with pytest.raises(ClientRejected) as raised:
            run_sync(syncing, integration_id)
    finally:
        if syncing is not runtime:
            syncing.engine.dispose()
    message = str(raised.value)
    assert f"AADSTS{aadsts}" in message and "ROSTERSYNC_MICROSOFT_CLIENT_SECRET" in message
    assert isinstance(raised.value, TransientError), "retried by the actor, never purged"
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "active" and state.token_blob is not None
    assert roster(runtime, integration_id) == held, "nothing purged"
    later = [entry for entry in audit_trail(runtime, integration_id) if entry[0] not in runs.RUN_ACTIONS]
    assert later == trail, "no revoke, no purge audited (every run is audited as synced, with its outcome)"
    if aadsts == "7000215":
        assert run_sync(runtime, integration_id).outcome == "ok", "the right secret syncs the link on"


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, 7, RateLimited), (503, 5, RateLimited), (504, 3, RateLimited), (503, None, TransientError)],
)
def test_throttling_waits_for_retry_after_and_keeps_the_link(
    runtime: Runtime, microsoft: MicrosoftEmulator, status: int, retry_after: int | None, expected: type[Exception]
) -> None:
    integration_id = link_by_kind(runtime, microsoft, "teacher")
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    microsoft.fail_next("/education/me/classes", status, retry_after=retry_after)
    with pytest.raises(expected) as raised:
        run_sync(runtime, integration_id)
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == retry_after
    else:
        assert not isinstance(raised.value, RateLimited)
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert roster(runtime, integration_id) == held
    assert run_sync(runtime, integration_id).outcome == "ok"


# ---------------------------------------------------------------------------------- $batch
@pytest.mark.parametrize("status", [429, 503])
def test_a_throttled_batch_sub_request_loses_no_member(
    runtime: Runtime, microsoft: MicrosoftEmulator, status: int
) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_by_kind(runtime, microsoft, "tenant")
    microsoft.fail_next("/members", status, retry_after=1)  # the first class's members, inside the first $batch
    since = len(microsoft.requests)
    assert run_sync(runtime, integration_id).outcome == "ok"
    all_classes = microsoft.class_ids(tenant)
    students = set(microsoft.student_ids(tenant))
    expected = {
        runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, m)
        for c in all_classes
        for m in microsoft.members_of(c)
        if m in students
    }
    assert {p.pseudonym for p in people(runtime.engine, integration_id, role="student")} == expected
    member_reads = [c for c in graph_reads(microsoft, since) if c.path.endswith("/members")]
    assert [c.status for c in member_reads].count(status) == 1
    answered = [c.path for c in member_reads if c.status == 200]
    assert sorted(answered) == sorted(f"/v1.0/education/classes/{c}/members" for c in all_classes), (
        "every class's members answered once: the throttled one again, its siblings not re-read"
    )


# ---------------------------------------------------------------------------------- links
@pytest.mark.parametrize(
    ("kind", "where"),
    [("teacher", "/education/me/classes"), ("teacher", "/members"), ("tenant", "/education/users/delta")],
)
@pytest.mark.parametrize("target", ["foreign_host", "poisoned_on_graph"])
def test_a_next_link_off_graph_or_poisoned_is_refused_and_removes_nothing(
    runtime: Runtime, microsoft: MicrosoftEmulator, emulator: GoogleEmulator, kind: str, where: str, target: str
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    change_behind_the_sync(microsoft, held[0])
    if target == "foreign_host":  # another live HTTPS server: it must never see a request
        bad_link = f"{emulator.base_url}/v1.0/education/classes?$skiptoken=elsewhere"
    else:
        bad_link = f"{microsoft.graph_endpoint}/education/classes?$skiptoken=not-a-token"
    microsoft.corrupt_next(where, "foreign_next_link", link=bad_link)
    outcome = run_sync(runtime, integration_id)
    if where.endswith("/delta") and target == "poisoned_on_graph":
        # a deltaLink on Graph's host cannot be judged before it is used; used, Graph refuses it: full sync
        assert (outcome.outcome, outcome.mode, outcome.removed) == ("ok", "changes", 0)
        assert roster(runtime, integration_id) == held
        fallback = run_sync(runtime, integration_id)
        assert (fallback.outcome, fallback.mode) == ("ok", "full")
        assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(
            microsoft.class_ids(microsoft.tenant_ids[0])
        )
        return
    assert (outcome.outcome, outcome.removed) == ("provider_data", 0)
    assert roster(runtime, integration_id) == held, "nothing removed, nothing lost"
    assert emulator.requests == [], "no request (and no token) went to the other host"
    assert integrations.load(runtime.engine, integration_id).status == "active"
    assert run_sync(runtime, integration_id).outcome == "ok"


# ---------------------------------------------------------------------------------- delta
def _rewrite_cursor(runtime: Runtime, integration_id: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Tamper with the stored delta cursor (the connector's base64 JSON inside the sync's cursor document)."""
    saved = cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor)
    assert saved is not None
    state = json.loads(base64.urlsafe_b64decode(saved.cursor))
    change(state)
    cursor = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    _store_cursor(runtime, integration_id, saved.advanced(cursor).dumps())


def _store_cursor(runtime: Runtime, integration_id: int, document: str | None) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(sync_cursor=document))


def _poison_tokens(state: dict[str, Any]) -> None:
    for key in ("classes", "users"):
        state[key] = state[key].split("?")[0] + "?$deltatoken=eyJwb2lzb25lZCI6dHJ1ZX0"


@pytest.mark.parametrize(
    "spoil", ["expired_400", "reset_410", "older_than_7_days", "foreign_host", "poisoned_token", "unreadable"]
)
def test_an_expired_or_poisoned_delta_link_falls_back_to_a_full_sync(
    runtime: Runtime, microsoft: MicrosoftEmulator, emulator: GoogleEmulator, spoil: str
) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_by_kind(runtime, microsoft, "tenant")
    assert run_sync(runtime, integration_id).outcome == "ok"
    newcomer = microsoft.add_student(microsoft.class_ids(tenant)[0])
    if spoil == "expired_400":
        microsoft.expire_delta_tokens(tenant)
    elif spoil == "reset_410":
        microsoft.expire_delta_tokens(tenant, status=410)
    elif spoil == "older_than_7_days":
        _rewrite_cursor(runtime, integration_id, lambda s: s.update(issued=s["issued"] - 8 * 86_400))
    elif spoil == "foreign_host":
        _rewrite_cursor(
            runtime,
            integration_id,
            lambda s: s.update(users=f"{emulator.base_url}/v1.0/education/users/delta?$deltatoken=x"),
        )
    elif spoil == "poisoned_token":
        _rewrite_cursor(runtime, integration_id, _poison_tokens)
    else:
        saved = cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor)
        assert saved is not None
        _store_cursor(runtime, integration_id, saved.advanced("%%not base64 json%%").dumps())
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.mode) == ("ok", "full")
    assert {c.external_id for c in classes(runtime.engine, integration_id)} == set(microsoft.class_ids(tenant))
    pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, newcomer)
    assert pseudonym in {p.pseudonym for p in people(runtime.engine, integration_id, role="student")}
    assert emulator.requests == []
    assert run_sync(runtime, integration_id).mode == "changes", "a fresh delta link was stored"


def test_the_same_delta_applied_twice_changes_nothing(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    tenant = microsoft.tenant_ids[0]
    integration_id = link_by_kind(runtime, microsoft, "tenant")
    assert run_sync(runtime, integration_id).outcome == "ok"
    before_delta = integrations.load(runtime.engine, integration_id).sync_cursor
    microsoft.add_student(microsoft.class_ids(tenant)[0])
    microsoft.rename_class(microsoft.class_ids(tenant)[1], "Renamed Class")
    first = run_sync(runtime, integration_id)
    assert (first.outcome, first.mode) == ("ok", "changes") and first.rows_written > 0
    after = roster(runtime, integration_id)
    _store_cursor(runtime, integration_id, before_delta)  # as after a crash before the cursor was stored
    again = run_sync(runtime, integration_id)
    assert (again.outcome, again.mode, again.rows_written, again.removed) == ("ok", "changes", 0, 0)
    assert roster(runtime, integration_id) == after


def test_a_deleted_class_and_a_leaver_go_at_the_periodic_full_reconcile(
    runtime: Runtime, microsoft: MicrosoftEmulator
) -> None:
    integration_id = link_by_kind(runtime, microsoft, "tenant")
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    gone, other, leaver = change_behind_the_sync(microsoft, held[0])
    delta = run_sync(runtime, integration_id)
    assert (delta.outcome, delta.mode, delta.removed) == ("ok", "changes", 0)
    assert gone in roster(runtime, integration_id)[0], "class delta never reports a deletion (documented)"

    # the last full listing is older than ROSTERSYNC_FULL_RECONCILE_SECONDS: the next sync lists everything
    saved = cursor_document.loads(integrations.load(runtime.engine, integration_id).sync_cursor)
    assert saved is not None
    aged = cursor_document.CursorState(
        saved.cursor, saved.allowlist, utcnow() - timedelta(seconds=runtime.settings.full_reconcile_seconds + 60)
    )
    _store_cursor(runtime, integration_id, aged.dumps())
    full = run_sync(runtime, integration_id)
    assert (full.outcome, full.mode) == ("ok", "full") and full.removed >= 2
    now = roster(runtime, integration_id)
    assert gone not in now[0] and other in now[0]
    pseudonym = runtime.pseudonymiser.pseudonym("microsoft", runtime.settings.default_tenant, leaver)
    by_pseudonym = {p.pseudonym: p.id for p in people(runtime.engine, integration_id, current=False)}
    class_row = {c.external_id: c.id for c in classes(runtime.engine, integration_id)}[other]
    assert (class_row, by_pseudonym[pseudonym]) not in now[2], "the leaver's enrolment ended"
    assert run_sync(runtime, integration_id).mode == "changes"


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kind", "where", "corruption", "status"),
    [
        ("teacher", "/education/me/classes", "malformed_json", 200),
        ("teacher", "/education/me/classes", "html_page", 200),
        ("teacher", "/education/me/classes", "missing_value", 200),
        ("teacher", "/education/me/classes", "next_link_loop", 200),
        ("teacher", "/$batch", "malformed_json", 200),
        ("teacher", "/$batch", "html_page", 200),
        ("teacher", "/$batch", "missing_value", 200),
        ("teacher", "/members", "malformed_json", 200),
        ("teacher", "/members", "missing_value", 200),
        ("teacher", "/members", "next_link_loop", 200),
        ("tenant", "/education/users/delta", "malformed_json", 200),
        ("tenant", "/education/classes/delta", "missing_value", 200),
        ("tenant", "/education/users/delta", "next_link_loop", 200),
    ],
)
def test_bad_answers_are_clear_errors_that_remove_and_lose_nothing(
    runtime: Runtime, microsoft: MicrosoftEmulator, kind: str, where: str, corruption: str, status: int
) -> None:
    integration_id = link_by_kind(runtime, microsoft, kind)
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    change_behind_the_sync(microsoft, held[0])
    microsoft.corrupt_next(where, corruption, count=10 if corruption == "next_link_loop" else 1, status=status)
    outcome = run_sync(runtime, integration_id)
    assert (outcome.outcome, outcome.removed) == ("provider_data", 0)
    assert roster(runtime, integration_id) == held, "rows already stored stay"
    assert integrations.load(runtime.engine, integration_id).status == "active"
    microsoft.clear_corruptions()
    assert run_sync(runtime, integration_id).outcome == "ok"


def test_an_html_gateway_error_page_is_transient(runtime: Runtime, microsoft: MicrosoftEmulator) -> None:
    integration_id = link_by_kind(runtime, microsoft, "teacher")
    assert run_sync(runtime, integration_id).outcome == "ok"
    held = roster(runtime, integration_id)
    microsoft.corrupt_next("/education/me/classes", "html_page", status=502)
    with pytest.raises(TransientError) as raised:
        run_sync(runtime, integration_id)
    assert "502" in str(raised.value)
    assert roster(runtime, integration_id) == held
    assert run_sync(runtime, integration_id).outcome == "ok"
