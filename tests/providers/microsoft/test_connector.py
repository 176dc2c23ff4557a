"""The Microsoft connector against the Microsoft emulator, with the real MSAL: the least permissions,
the fewest requests, links followed only on Graph's host, the token cache written back only when it
changed, and every Entra or Graph failure turned into the taxonomy (revoked vs operator error vs
transient)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.base import (
    AccessBlocked,
    AccessRevoked,
    Page,
    ProviderDataError,
    RateLimited,
    ScopeMissing,
    TransientError,
)
from connectors.microsoft import (
    APPLICATION_PERMISSION,
    ClientRejected,
    CursorExpired,
    Grant,
    LinkRefused,
    MicrosoftConnector,
    RecordUnavailable,
    claims_challenge,
    classify_graph_error,
    classify_token_error,
    complete_teacher_link,
    http_session,
    link_tenant,
    start_teacher_link,
)
from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from tests.microsoft_fixtures import ms_settings

MASKS = {"class": "id,displayName", "member": "id,primaryRole", "teacher": "id,displayName"}


@pytest.fixture
def settings(microsoft: MicrosoftEmulator) -> Settings:
    return ms_settings(microsoft)


def _teacher_grant(emu: MicrosoftEmulator, settings: Settings, teacher: str | None = None) -> Grant:
    if teacher is not None:
        emu.set_signin_user(teacher)
    start = start_teacher_link(settings)
    with http_session(settings) as session:
        callback = session.get(start.auth_url, allow_redirects=False, timeout=5).headers["Location"]
    return complete_teacher_link(settings, start.flow, callback)


def _graph_calls(emu: MicrosoftEmulator, since: int = 0) -> list[Any]:
    return [r for r in emu.requests[since:] if r.path.startswith("/v1.0/")]


class Saved:
    def __init__(self) -> None:
        self.blobs: list[str] = []

    def __call__(self, blob: str) -> None:
        self.blobs.append(blob)


# ------------------------------------------------------------------------------------ linking
def test_teacher_link_asks_for_the_least_delegated_scope(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[1]
    teacher = microsoft.teacher_ids(tenant)[0]
    start = start_teacher_link(settings)
    scope = parse_qs(urlsplit(start.auth_url).query)["scope"][0].split()
    assert sorted(scope) == sorted(["EduRoster.ReadBasic", "openid", "profile", "offline_access"])
    assert parse_qs(urlsplit(start.auth_url).query)["code_challenge_method"] == ["S256"]
    assert "hidden" in repr(start)
    grant = _teacher_grant(microsoft, settings, teacher)
    assert (grant.tenant_id, grant.user_id) == (tenant, teacher)
    assert "EduRoster.ReadBasic" in grant.scopes
    assert set(json.loads(grant.token_cache)) >= {"AccessToken", "RefreshToken", "Account"}
    assert grant.token_cache not in repr(grant)


def test_a_grant_without_the_roster_scope_is_refused(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    microsoft.grant_consent(microsoft.tenant_ids[0], delegated=[])
    with pytest.raises(LinkRefused, match=r"EduRoster\.ReadBasic"):
        _teacher_grant(microsoft, settings)


def test_a_callback_of_another_link_is_refused(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    first, second = start_teacher_link(settings), start_teacher_link(settings)
    with http_session(settings) as session:
        callback = session.get(first.auth_url, allow_redirects=False, timeout=5).headers["Location"]
    with pytest.raises(LinkRefused, match="state mismatch"):
        complete_teacher_link(settings, second.flow, callback)
    with pytest.raises(LinkRefused, match="not completed"):
        complete_teacher_link(settings, first.flow, "https://platform.example/cb?error=access_denied&state=x")


def test_tenant_link_needs_the_application_permission(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    assert grant.tenant_id == tenant and grant.scopes == {APPLICATION_PERMISSION} and grant.user_id is None
    probe = _graph_calls(microsoft)[-1]
    assert probe.query == {"$select": ["id"], "$top": ["1"]}
    microsoft.grant_consent(tenant, application=["EduRoster.ReadBasic.All"])
    with pytest.raises(LinkRefused, match=APPLICATION_PERMISSION):
        link_tenant(settings, tenant)
    microsoft.delete_service_principal(microsoft.tenant_ids[1])
    with pytest.raises(LinkRefused, match="AADSTS700016"):
        link_tenant(settings, microsoft.tenant_ids[1])
    before = len(microsoft.requests)
    for bad in ("organizations", "common", "a/b", ""):
        with pytest.raises(LinkRefused):
            link_tenant(settings, bad)
    assert len(microsoft.requests) == before


# ------------------------------------------------------------------------------------ reads
def test_teacher_reads_own_classes_with_select_and_writes_the_cache_back_only_when_changed(
    microsoft: MicrosoftEmulator, settings: Settings
) -> None:
    tenant = microsoft.tenant_ids[0]
    teacher = microsoft.teacher_ids(tenant)[1]
    grant = _teacher_grant(microsoft, settings, teacher)
    saved = Saved()
    with MicrosoftConnector(settings, token_cache=grant.token_cache, on_token_cache=saved) as connector:
        classes = [r for page in connector.classes(MASKS) for r in page.records]
        assert {c["id"] for c in classes} == set(microsoft.class_ids(tenant, teacher_id=teacher))
        assert all(set(c) == {"id", "displayName"} for c in classes)
        assert connector.change_cursor(MASKS) is None
    assert saved.blobs == []  # the access token came from the cache: nothing changed, nothing written
    call = _graph_calls(microsoft)[-1]
    assert call.path == "/v1.0/education/me/classes" and call.query["$select"] == ["id,displayName"]
    assert call.query["$top"] == ["999"]

    microsoft.expire_access_tokens()
    with MicrosoftConnector(settings, token_cache=grant.token_cache, on_token_cache=saved) as connector:
        assert list(connector.classes(MASKS))
    assert len(saved.blobs) == 1  # the refresh rotated the refresh token: written back once
    with MicrosoftConnector(settings, token_cache=saved.blobs[0]) as connector:
        assert list(connector.classes(MASKS))
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache) as connector,
        pytest.raises(AccessRevoked),
    ):
        list(connector.classes(MASKS))  # the old cache's refresh token was spent by the rotation


def test_full_tenant_read_batches_member_lists(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    start = len(microsoft.requests)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        class_pages = list(connector.classes(MASKS))
        class_ids = [r["id"] for page in class_pages for r in page.records]
        pages = list(connector.members(class_ids, MASKS))
        made = connector.requests_made
    assert sorted(class_ids) == sorted(microsoft.class_ids(tenant))
    for class_id in class_ids:
        members = [r for p in pages if p.kind == "members" and p.parent_id == class_id for r in p.records]
        teachers = [r for p in pages if p.kind == "teachers" and p.parent_id == class_id for r in p.records]
        assert [m["id"] for m in members] == microsoft.members_of(class_id)
        assert all(set(m) == {"id", "primaryRole"} for m in members)
        assert [t["id"] for t in teachers] == microsoft.teachers_of(class_id)
    batches = -(-2 * len(class_ids) // 20)
    assert made == 1 + batches  # one classes page, then 20 member/teacher lists per $batch
    http_calls = [r for r in microsoft.requests[start:] if not r.path.startswith("/v1.0/education/classes/")]
    assert [r.path for r in http_calls].count("/v1.0/$batch") == batches
    member_calls = [r for r in microsoft.requests[start:] if r.path.endswith("/members")]
    assert member_calls and all(r.query["$select"] == ["id,primaryRole"] for r in member_calls)


def test_long_member_lists_follow_next_links(microsoft: MicrosoftEmulator, settings: Settings, tmp_path: Path) -> None:
    tenant = microsoft.tenant_ids[0]
    class_id = microsoft.class_ids(tenant)[0]
    for _ in range(1000):
        microsoft.add_student(class_id)
    grant = link_tenant(settings, tenant)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        pages = list(connector.members([class_id], MASKS))
    members = [r["id"] for p in pages if p.kind == "members" for r in p.records]
    assert members == microsoft.members_of(class_id) and len([p for p in pages if p.kind == "members"]) == 2


def test_a_throttled_sub_request_is_retried_without_losing_members(
    microsoft: MicrosoftEmulator, settings: Settings
) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    class_ids = microsoft.class_ids(tenant)
    microsoft.fail_next(f"/classes/{class_ids[1]}/members", 429, retry_after=2)
    microsoft.fail_next(f"/classes/{class_ids[2]}/teachers", 503)
    waits: list[float] = []
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant, sleep=waits.append) as connector:
        pages = list(connector.members(class_ids, MASKS))
    assert waits == [2.0]
    for class_id in class_ids:
        assert [r["id"] for p in pages if p.kind == "members" and p.parent_id == class_id for r in p.records] == (
            microsoft.members_of(class_id)
        )
        assert [r["id"] for p in pages if p.kind == "teachers" and p.parent_id == class_id for r in p.records] == (
            microsoft.teachers_of(class_id)
        )


def test_a_long_retry_after_is_rate_limited(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    microsoft.fail_next("/members", 429, retry_after=120)
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector,
        pytest.raises(RateLimited) as raised,
    ):
        list(connector.members(microsoft.class_ids(tenant)[:2], MASKS))
    assert raised.value.retry_after == 120
    microsoft.fail_next("/education/classes", 429, retry_after=7)
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector,
        pytest.raises(RateLimited) as raised,
    ):
        list(connector.classes(MASKS))
    assert raised.value.retry_after == 7


def test_a_class_that_cannot_be_read_is_an_unreadable_marker(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    gone, kept = microsoft.class_ids(tenant)[:2]
    microsoft.delete_class(gone)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        pages = list(connector.members([gone, kept], MASKS))
    assert Page(kind="unreadable", parent_id=gone, records=()) in pages
    assert not [p for p in pages if p.parent_id == gone and p.kind != "unreadable"]
    assert {p.kind for p in pages if p.parent_id == kept} == {"members", "teachers"}


def test_a_403_on_one_class_sub_request_stays_an_unreadable_marker(
    microsoft: MicrosoftEmulator, settings: Settings
) -> None:
    # issue 23 made list and /me 403s a block; a class's own 403 still only keeps that class's stored roster
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    denied, kept = microsoft.class_ids(tenant)[:2]
    microsoft.fail_next(f"/education/classes/{denied}/members", 403)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        pages = list(connector.members([denied, kept], MASKS))
    assert Page(kind="unreadable", parent_id=denied, records=()) in pages
    assert {p.kind for p in pages if p.parent_id == kept} == {"members", "teachers"}


def test_without_a_member_mask_no_members_list_is_requested(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    """No consent basis for students: only each class's ``teachers`` are read."""
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    class_id = microsoft.class_ids(tenant)[0]
    start = len(microsoft.requests)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        pages = list(connector.members([class_id], {"class": "id", "teacher": "id,displayName"}))
    assert {p.kind for p in pages} == {"teachers"}
    assert not [r for r in microsoft.requests[start:] if r.path.endswith("/members")]


def test_masks_are_required(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        with pytest.raises(ValueError, match="teacher"):
            list(connector.members(["x"], {"class": "id"}))
        with pytest.raises(ValueError, match="member"):
            list(connector.members(["x"], {"class": "id", "teacher": "id", "member": ""}))
        with pytest.raises(ValueError, match="class"):
            list(connector.classes({"class": "id,displayName&$expand=x"}))


# ------------------------------------------------------------------------------------ links
def _fake_get(connector: MicrosoftConnector, bodies: list[dict[str, Any]]) -> list[str]:
    urls: list[str] = []

    def get(url: str, params: Any) -> dict[str, Any]:
        urls.append(url)
        return bodies.pop(0)

    connector._get = get  # type: ignore[method-assign]
    return urls


def test_next_links_stay_on_graphs_host_and_never_loop(settings: Settings) -> None:
    connector = MicrosoftConnector(settings, token_cache=None, tenant_id="t1")
    endpoint = settings.microsoft.graph_endpoint
    urls = _fake_get(connector, [{"value": [], "@odata.nextLink": "https://evil.example/v1.0/education/classes"}])
    with pytest.raises(ProviderDataError, match="away from Graph"):
        list(connector.classes(MASKS))
    assert len(urls) == 1
    looping = f"{endpoint}/education/classes?$skiptoken=abc"
    _fake_get(connector, [{"value": [], "@odata.nextLink": looping}, {"value": [], "@odata.nextLink": looping}])
    with pytest.raises(ProviderDataError, match="loop"):
        list(connector.classes(MASKS))
    _fake_get(connector, [{"values": []}])
    with pytest.raises(ProviderDataError, match="no value list"):
        list(connector.classes(MASKS))
    connector.close()


# ------------------------------------------------------------------------------------ revocation
def test_consent_withdrawn_under_a_live_teacher_token_is_revoked_after_one_refresh(
    microsoft: MicrosoftEmulator, settings: Settings
) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = _teacher_grant(microsoft, settings)
    microsoft.withdraw_consent(tenant)
    start = len(microsoft.requests)
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache) as connector,
        pytest.raises(AccessRevoked) as raised,
    ):
        list(connector.classes(MASKS))
    assert raised.value.reason == "consent_withdrawn"
    paths = [r.path.rsplit("/", 1)[-1] for r in microsoft.requests[start:]]
    # MSAL's discovery, one Graph 401, one refresh refused, and no further Graph call
    assert paths == ["openid-configuration", "classes", "token"]
    assert not any(token in str(raised.value) for token in microsoft.issued_tokens())


def test_consent_withdrawn_for_a_tenant_link_is_scope_missing(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    microsoft.withdraw_consent(tenant)
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector,
        pytest.raises(ScopeMissing) as raised,
    ):
        list(connector.classes(MASKS))
    assert raised.value.scopes == (APPLICATION_PERMISSION,)


@pytest.mark.parametrize(
    ("control", "error", "reason"),
    [
        ("revoke_sessions", AccessRevoked, "sessions_revoked"),
        ("expire_refresh_tokens", AccessRevoked, "refresh_token_expired"),
        ("disable_app", AccessBlocked, "app_disabled"),  # an admin's toggle, switched back as easily
        ("delete_service_principal", AccessRevoked, "app_removed_from_tenant"),
        ("expire_client_secret", ClientRejected, None),
    ],
)
def test_token_endpoint_refusals_are_classified(
    microsoft: MicrosoftEmulator, settings: Settings, control: str, error: type[Exception], reason: str | None
) -> None:
    grant = _teacher_grant(microsoft, settings)
    argument = {
        "revoke_sessions": (grant.user_id,),
        "expire_refresh_tokens": (grant.user_id,),
        "disable_app": (grant.tenant_id,),
        "delete_service_principal": (grant.tenant_id,),
        "expire_client_secret": (),
    }[control]
    getattr(microsoft, control)(*argument)
    microsoft.expire_access_tokens()
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache) as connector,
        pytest.raises(error) as raised,
    ):
        list(connector.classes(MASKS))
    if reason is not None:
        assert isinstance(raised.value, (AccessRevoked, AccessBlocked)) and raised.value.reason == reason
    else:
        assert isinstance(raised.value, TransientError) and not isinstance(raised.value, AccessRevoked)
        assert "CLIENT_SECRET" in str(raised.value)
    assert not any(token in str(raised.value) for token in microsoft.issued_tokens())


def _reader(emu: MicrosoftEmulator, settings: Settings, kind: str) -> MicrosoftConnector:
    """A connector on a fresh teacher or tenant link of the first tenant."""
    tenant = emu.tenant_ids[0]
    if kind == "teacher":
        return MicrosoftConnector(settings, token_cache=_teacher_grant(emu, settings).token_cache)
    return MicrosoftConnector(settings, token_cache=link_tenant(settings, tenant).token_cache, tenant_id=tenant)


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
@pytest.mark.parametrize("code", [53003, 530032, 7000112])
def test_a_policy_block_on_refresh_is_access_blocked_and_no_graph_call_follows(
    microsoft: MicrosoftEmulator, settings: Settings, kind: str, code: int
) -> None:
    tenant = microsoft.tenant_ids[0]
    connector = _reader(microsoft, settings, kind)
    microsoft.block_signin(tenant, code)
    microsoft.expire_access_tokens()
    start = len(microsoft.requests)
    with connector, pytest.raises(AccessBlocked) as raised:
        list(connector.classes(MASKS))
    assert f"AADSTS{code}" in raised.value.public and "admin" in raised.value.public
    paths = [r.path.rsplit("/", 1)[-1] for r in microsoft.requests[start:] if "openid" not in r.path]
    assert paths == ["classes", "token"], "one Graph 401, one refusal, no Graph call after it"


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_an_unexpected_claims_challenge_gets_one_refresh_with_its_claims_then_is_blocked(
    microsoft: MicrosoftEmulator, settings: Settings, kind: str
) -> None:
    tenant = microsoft.tenant_ids[0]
    connector = _reader(microsoft, settings, kind)
    microsoft.force_claims_challenge(tenant)
    start = len(microsoft.requests)
    with connector, pytest.raises(AccessBlocked) as raised:
        list(connector.classes(MASKS))
    assert raised.value.reason == "claims_challenge" and "Conditional Access" in raised.value.public
    calls = [(r.path.rsplit("/", 1)[-1], r.status) for r in microsoft.requests[start:] if "openid" not in r.path]
    assert calls == [("classes", 401), ("token", 200), ("classes", 401)], "never a blind refresh, then revoked"


def test_a_challenge_in_a_batch_is_blocked_too(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    with _reader(microsoft, settings, "tenant") as connector:
        class_ids = [c["id"] for page in connector.classes(MASKS) for c in page.records]
        microsoft.force_claims_challenge(tenant)
        with pytest.raises(AccessBlocked) as raised:
            list(connector.members(class_ids[:2], MASKS))
    assert raised.value.reason == "claims_challenge"


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
@pytest.mark.parametrize(
    ("denial", "expected"), [("scope", ScopeMissing), ("licence", AccessBlocked), ("ca", AccessBlocked)]
)
def test_only_a_missing_scope_is_scope_missing_among_graph_403s(
    microsoft: MicrosoftEmulator, settings: Settings, kind: str, denial: str, expected: type[Exception]
) -> None:
    connector = _reader(microsoft, settings, kind)
    microsoft.deny_graph(microsoft.tenant_ids[0], denial)
    with connector, pytest.raises(expected) as raised:
        list(connector.classes(MASKS))
    if isinstance(raised.value, AccessBlocked):
        assert raised.value.reason == ("claims_challenge" if denial == "ca" else "graph_forbidden")


@pytest.mark.parametrize("kind", ["teacher", "tenant"])
def test_a_policy_block_at_link_time_is_refused_with_the_admins_words(
    microsoft: MicrosoftEmulator, settings: Settings, kind: str
) -> None:
    tenant = microsoft.tenant_ids[0]
    microsoft.block_signin(tenant, 53003)
    with pytest.raises(LinkRefused) as raised:
        _teacher_grant(microsoft, settings) if kind == "teacher" else link_tenant(settings, tenant)
    assert "Conditional Access" in str(raised.value) and "AADSTS53003" in str(raised.value)
    assert "not admitted" not in str(raised.value)
    microsoft.unblock_signin(tenant)
    microsoft.deny_graph(tenant, "licence")
    if kind == "tenant":  # the probe meets a 403 that is not a missing permission
        with pytest.raises(LinkRefused) as probed:
            link_tenant(settings, tenant)
        assert "licence" in str(probed.value) and "not granted" not in str(probed.value)


def test_claims_challenges_are_read_from_www_authenticate() -> None:
    encoded = base64.b64encode(json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}}).encode())
    header = f'Bearer realm="", authorization_uri="https://x", error="insufficient_claims", claims="{encoded.decode()}"'
    assert json.loads(claims_challenge({"www-authenticate": header}) or "") == {
        "access_token": {"acrs": {"essential": True, "value": "c1"}}
    }
    assert claims_challenge({"WWW-Authenticate": 'Bearer error="insufficient_claims", claims="%%%"'}) == ""
    assert claims_challenge({"WWW-Authenticate": 'Bearer error="invalid_token"'}) is None
    assert claims_challenge({}) is None


def test_token_error_map() -> None:
    assert isinstance(classify_token_error({"error": "invalid_grant", "error_codes": [65001]}), AccessRevoked)
    assert isinstance(classify_token_error({"error": "unauthorized_client", "error_codes": [700016]}), AccessRevoked)
    assert isinstance(classify_token_error({"error": "invalid_client", "error_codes": [7000215]}), ClientRejected)
    assert isinstance(classify_token_error({"error": "invalid_scope"}), ScopeMissing)
    assert isinstance(classify_token_error({"error": "temporarily_unavailable"}), TransientError)
    assert isinstance(classify_token_error({}), TransientError)
    secret = classify_token_error({"error": "invalid_grant", "error_description": "AADSTS50173 user@school.test"})
    assert "school.test" not in str(secret)


@pytest.mark.parametrize(
    ("result", "expected", "reason"),
    [
        # the AADSTS code decides first, whatever ``error`` says (a real 50079 is invalid_grant + basic_action)
        ({"error": "invalid_grant", "error_codes": [50079], "suberror": "basic_action"}, AccessBlocked, None),
        ({"error": "interaction_required", "error_codes": [53003], "suberror": "message_only"}, AccessBlocked, None),
        ({"error": "invalid_grant", "error_codes": [70043]}, AccessBlocked, "sign_in_frequency"),
        ({"error": "unauthorized_client", "error_codes": [7000112]}, AccessBlocked, "app_disabled"),
        ({"error": "invalid_grant", "error_codes": [50057]}, AccessBlocked, "account_disabled"),
        ({"error": "invalid_grant", "error_codes": [50105]}, AccessBlocked, "user_not_assigned"),
        ({"error": "interaction_required", "error_codes": [50173]}, AccessRevoked, "sessions_revoked"),
        ({"error": "invalid_grant", "error_codes": [65001], "suberror": "consent_required"}, AccessRevoked, None),
        ({"error": "invalid_grant", "error_codes": [700082]}, AccessRevoked, "refresh_token_expired"),
        # no table names the code: suberror, then error
        ({"error": "invalid_grant", "error_codes": [9_999_999], "suberror": "basic_action"}, AccessBlocked, None),
        ({"error": "invalid_grant", "error_codes": [9_999_999], "suberror": "consent_required"}, AccessRevoked, None),
        ({"error": "interaction_required", "error_codes": [9_999_999]}, AccessBlocked, "interaction_required"),
        ({"error": "invalid_grant", "error_codes": [9_999_999]}, AccessRevoked, "invalid_grant"),  # conservative
        ({"error": "invalid_grant", "error_codes": [9_999_999], "suberror": "bad_token"}, AccessRevoked, None),
    ],
)
def test_policy_codes_are_blocked_and_revocations_stay_revoked(
    result: dict[str, Any], expected: type[Exception], reason: str | None
) -> None:
    error = classify_token_error(result)
    assert type(error) is expected
    if reason is not None:
        assert isinstance(error, (AccessBlocked, AccessRevoked)) and error.reason == reason
    if isinstance(error, AccessBlocked):
        assert "admin" in error.public or "teacher" in error.public, "worded for the school's admin"


def test_graph_error_map() -> None:
    body = {"error": {"code": "TooManyRequests", "message": "Adele Vance is throttled"}}
    limited = classify_graph_error(429, body, {"Retry-After": "12"}, app_only=True)
    assert isinstance(limited, RateLimited) and limited.retry_after == 12 and "Adele" not in str(limited)
    assert isinstance(classify_graph_error(503, None, {"retry-after": "3"}, app_only=True), RateLimited)
    assert isinstance(classify_graph_error(503, None, {}, app_only=True), TransientError)
    assert isinstance(classify_graph_error(504, "<html>", {}, app_only=True), TransientError)
    expired = {"error": {"code": "SyncStateNotFound", "message": "generation=1"}}
    assert isinstance(classify_graph_error(400, expired, {}, app_only=True), CursorExpired)
    assert isinstance(
        classify_graph_error(410, {"error": {"code": "resyncRequired"}}, {}, app_only=True), CursorExpired
    )
    scp = {"error": {"code": "AccessDenied", "message": "Required scp claim values are not provided."}}
    denied = classify_graph_error(403, scp, {}, app_only=False)
    assert isinstance(denied, ScopeMissing) and denied.scopes == ("EduRoster.ReadBasic",)
    roles = {"error": {"code": "AccessDenied", "message": "Required roles claim values are not provided."}}
    assert classify_graph_error(403, roles, {}, app_only=True).scopes == ("EduRoster.Read.All",)  # type: ignore[attr-defined]
    bare = {"error": {"code": "AccessDenied", "message": ""}}
    narrow = classify_graph_error(403, bare, {}, app_only=False, granted=frozenset({"openid", "profile"}))
    assert isinstance(narrow, ScopeMissing), "the grant we hold lacks the scope"
    for body in (bare, {"error": {"code": "Forbidden", "message": ""}}, None):
        licence = classify_graph_error(403, body, {}, app_only=False, granted=frozenset({"EduRoster.ReadBasic"}))
        assert isinstance(licence, AccessBlocked) and licence.reason == "graph_forbidden"
        assert isinstance(classify_graph_error(403, body, {}, app_only=True), AccessBlocked)
    challenge = {"WWW-Authenticate": 'Bearer realm="", error="insufficient_claims", claims="e30="'}
    for status in (401, 403):
        blocked = classify_graph_error(
            status, bare, challenge, app_only=False, granted=frozenset({"EduRoster.ReadBasic"})
        )
        assert isinstance(blocked, AccessBlocked) and blocked.reason == "claims_challenge"
    assert isinstance(classify_graph_error(404, None, {}, app_only=True), RecordUnavailable)
    weird = classify_graph_error(400, {"error": {"code": "x y <script>", "message": "m"}}, {}, app_only=True)
    assert isinstance(weird, ProviderDataError) and "script" not in str(weird)
    assert isinstance(classify_graph_error(401, None, {}, app_only=True), AccessRevoked)


# ------------------------------------------------------------------------------------ delta
def test_delta_no_change_then_changes_with_cursors(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        cursor = connector.change_cursor(MASKS)
        assert cursor is not None
        before = connector.requests_made
        quiet = list(connector.changes(cursor))
        no_change_cost = connector.requests_made - before
        assert [p.kind for p in quiet] == ["users", "classes"] and not any(p.records for p in quiet)
        assert no_change_cost == 2  # one users delta page, one classes delta page
        assert quiet[0].cursor == cursor and quiet[-1].cursor not in (None, cursor)

        class_id, renamed = microsoft.class_ids(tenant)[:2]
        newcomer = microsoft.add_student(class_id)
        microsoft.rename_class(renamed, "Renamed Class")
        pages = list(connector.changes(cursor))
    assert [r["id"] for p in pages if p.kind == "users" for r in p.records] == [newcomer]
    changed = {r["id"]: r for p in pages if p.kind == "classes" for r in p.records}
    assert set(changed) == {class_id, renamed} and changed[renamed]["displayName"] == "Renamed Class"
    assert newcomer in [r["id"] for p in pages if p.kind == "members" and p.parent_id == class_id for r in p.records]
    assert all(p.cursor == cursor for p in pages[:-1]) and pages[-1].cursor != cursor
    users_delta = [r for r in microsoft.requests if r.path.endswith("/users/delta")]
    assert users_delta[0].query == {"$select": ["id,primaryRole"], "$top": ["999"]}  # the largest page


@pytest.mark.parametrize("status", [400, 410])
def test_an_expired_delta_link_asks_for_a_full_sync(
    microsoft: MicrosoftEmulator, settings: Settings, status: int
) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        cursor = connector.change_cursor(MASKS)
        assert cursor is not None
        microsoft.expire_delta_tokens(tenant, status=status)
        with pytest.raises(CursorExpired) as raised:
            list(connector.changes(cursor))
    assert raised.value.reason == "expired"


def test_old_or_poisoned_cursors_are_refused_without_a_request(
    microsoft: MicrosoftEmulator, settings: Settings
) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        cursor = connector.change_cursor(MASKS)
        assert cursor is not None
        state = json.loads(base64.urlsafe_b64decode(cursor))
        old = base64.urlsafe_b64encode(json.dumps({**state, "issued": state["issued"] - 8 * 86_400}).encode()).decode()
        foreign = {**state, "users": "https://evil.example/v1.0/education/users/delta?$deltatoken=x"}
        poisoned = base64.urlsafe_b64encode(json.dumps(foreign).encode()).decode()
        before = connector.requests_made
        for bad, reason in ((old, "expired"), (poisoned, "invalid"), ("not a cursor", "invalid")):
            with pytest.raises(CursorExpired) as raised:
                list(connector.changes(bad))
            assert raised.value.reason == reason
        assert connector.requests_made == before


def test_session_trusts_only_the_configured_ca(
    microsoft: MicrosoftEmulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    session = http_session(settings)
    assert session.trust_env is False and session.verify == str(microsoft.ca_path)
    assert session.get(f"{microsoft.authority()}/v2.0/.well-known/openid-configuration", timeout=5).status_code == 200
    other = http_session(ms_settings(microsoft, ca_bundle=None))
    with pytest.raises(requests.exceptions.SSLError):
        other.get(f"{microsoft.authority()}/v2.0/.well-known/openid-configuration", timeout=5)


def test_a_401_inside_a_batch_earns_one_refresh(microsoft: MicrosoftEmulator, settings: Settings) -> None:
    tenant = microsoft.tenant_ids[0]
    grant = link_tenant(settings, tenant)
    class_ids = microsoft.class_ids(tenant)[:3]
    microsoft.fail_next(f"/classes/{class_ids[0]}/members", 401)
    with MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector:
        pages = list(connector.members(class_ids, MASKS))
    members = [r["id"] for p in pages if p.kind == "members" and p.parent_id == class_ids[0] for r in p.records]
    assert members == microsoft.members_of(class_ids[0])
    microsoft.fail_next(f"/classes/{class_ids[0]}/members", 401, count=2)
    with (
        MicrosoftConnector(settings, token_cache=grant.token_cache, tenant_id=tenant) as connector,
        pytest.raises(AccessRevoked),
    ):
        list(connector.members(class_ids, MASKS))


def test_no_token_or_personal_value_in_any_log_line(
    microsoft: MicrosoftEmulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """msal logs at DEBUG (account ids, token-cache events), and urllib3 each request line: even with their
    loggers lowered to DEBUG by the application, none of it passes, and nothing we log carries a token,
    a code or a person's data (connectors/logs.py)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="msal")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    tenant = microsoft.tenant_ids[0]
    grant = _teacher_grant(microsoft, settings)
    microsoft.expire_access_tokens()
    saved = Saved()
    with MicrosoftConnector(settings, token_cache=grant.token_cache, on_token_cache=saved) as connector:
        ids = [r["id"] for p in connector.classes(MASKS) for r in p.records]
        list(connector.members(ids, MASKS))
    tenant_grant = link_tenant(settings, tenant)
    with MicrosoftConnector(settings, token_cache=tenant_grant.token_cache, tenant_id=tenant) as connector:
        cursor = connector.change_cursor(MASKS)
        assert cursor is not None
        list(connector.changes(cursor))
    microsoft.withdraw_consent(tenant)
    with MicrosoftConnector(settings, token_cache=saved.blobs[-1]) as connector, pytest.raises(AccessRevoked):
        list(connector.classes(MASKS))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert [r for r in caplog.records if r.name.startswith(("msal", "urllib3")) and r.levelno < logging.WARNING] == []
    secrets_ = microsoft.issued_tokens() | {microsoft.client_secret}
    assert not [s for s in secrets_ if s in text]
    students = {microsoft.user_record(u)["displayName"] for u in microsoft.student_ids(tenant)}
    assert not [s for s in students if s in text]
