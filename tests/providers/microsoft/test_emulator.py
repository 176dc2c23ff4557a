"""The Microsoft emulator must answer like Entra ID and Graph Education (providers.md section 3), or the
minimisation and revocation tests built on it prove nothing. OAuth flows are driven by MSAL itself,
over real HTTPS, trusting only the emulator's own CA; a fresh MSAL app per test (library-notes 2)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests

from emulators.district import District
from emulators.microsoft import GRAPH_RESOURCE, MicrosoftEmulator

REDIRECT_URI = "https://rostersync.test/oauth/microsoft/callback"
DEFAULT = [GRAPH_RESOURCE + "/.default"]
TIMEOUT = 10
# Every personal property a fully read educationUser carries (providers.md 3.2), plus our unknown one.
PERSONAL = {
    "displayName", "givenName", "middleName", "surname", "mail", "mailNickname", "userPrincipalName",
    "mobilePhone", "businessPhones", "mailingAddress", "residenceAddress", "relatedContacts", "student",
    "teacher", "onPremisesInfo", "createdBy", "learnerWellbeingNote",
}  # fmt: skip

pytestmark = pytest.mark.microsoft(tenants=2, teachers=2, students_per_course=6)


@pytest.fixture
def http(microsoft: MicrosoftEmulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.verify = str(microsoft.ca_path)
    session.trust_env = False
    yield session
    session.close()


def _app(
    emu: MicrosoftEmulator, http: requests.Session, tenant: str = "organizations", *, cp1: bool = False
) -> msal.ConfidentialClientApplication:
    """``cp1``: the app declares the client capability, as a CAE-ready client does (rostersync does not)."""
    return msal.ConfidentialClientApplication(
        emu.client_id,
        client_credential=emu.client_secret,
        authority=emu.authority(tenant),
        http_client=http,
        instance_discovery=False,
        token_cache=msal.SerializableTokenCache(),
        client_capabilities=["cp1"] if cp1 else None,
    )


def _sign_in(emu: MicrosoftEmulator, http: requests.Session, app: msal.ConfidentialClientApplication) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # msal recommends form_post; our callback is a query
        flow = app.initiate_auth_code_flow(["EduRoster.ReadBasic"], redirect_uri=REDIRECT_URI)
    answer = http.get(flow["auth_uri"], allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 302
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, params)
    return result


def _app_token(emu: MicrosoftEmulator, http: requests.Session, tenant: str) -> str:
    result = _app(emu, http, tenant).acquire_token_for_client(DEFAULT)
    assert "access_token" in result, result.get("error")
    return str(result["access_token"])


def _get(http: requests.Session, url: str, token: str, **params: str) -> requests.Response:
    return http.get(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


# ------------------------------------------------------------------------------------ identity
def test_openid_configuration_advertises_https_endpoints_per_tenant(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    for tenant in ("organizations", microsoft.tenant_ids[0]):
        config = http.get(
            f"{microsoft.authority(tenant)}/v2.0/.well-known/openid-configuration", timeout=TIMEOUT
        ).json()
        assert config["token_endpoint"] == f"{microsoft.authority(tenant)}/oauth2/v2.0/token"
        assert all(config[k].startswith("https://") for k in ("authorization_endpoint", "token_endpoint", "issuer"))
    unknown = http.get(
        f"{microsoft.authority('no-such-tenant')}/v2.0/.well-known/openid-configuration", timeout=TIMEOUT
    )
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [90002]


def test_msal_auth_code_flow_with_pkce_and_nonce(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    teacher = microsoft.teacher_ids(microsoft.tenant_ids[1])[0]
    microsoft.set_signin_user(teacher)
    app = _app(microsoft, http)
    result = _sign_in(microsoft, http, app)
    assert "access_token" in result, result.get("error")
    assert result["id_token_claims"]["oid"] == teacher and result["id_token_claims"]["tid"] == microsoft.tenant_ids[1]
    assert "EduRoster.ReadBasic" in result["scope"].split()
    assert app.get_accounts()[0]["home_account_id"] == f"{teacher}.{microsoft.tenant_ids[1]}"
    token_calls = [r for r in microsoft.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1 and token_calls[0].status == 200


def test_code_is_single_use_and_pkce_is_checked(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    app = _app(microsoft, http)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flow = app.initiate_auth_code_flow(["EduRoster.ReadBasic"], redirect_uri=REDIRECT_URI)
    location = http.get(flow["auth_uri"], allow_redirects=False, timeout=TIMEOUT).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    token_url = f"{microsoft.authority()}/oauth2/v2.0/token"
    form = {
        "client_id": microsoft.client_id,
        "client_secret": microsoft.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "not-the-verifier",
    }
    wrong = http.post(token_url, data=form, timeout=TIMEOUT)
    assert wrong.status_code == 400 and wrong.json()["error_codes"] == [501481]
    form["code_verifier"] = flow["code_verifier"]
    reused = http.post(token_url, data=form, timeout=TIMEOUT)
    assert reused.json()["error"] == "invalid_grant" and reused.json()["error_codes"] == [70008]


def test_refresh_rotates_and_the_spent_refresh_token_is_refused(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    app = _app(microsoft, http)
    first = _sign_in(microsoft, http, app)
    account = app.get_accounts()[0]
    second = app.acquire_token_silent_with_error(["EduRoster.ReadBasic"], account, force_refresh=True)
    assert second is not None and "access_token" in second
    assert second["refresh_token"] != first["refresh_token"]
    replay = http.post(
        f"{microsoft.authority()}/oauth2/v2.0/token",
        data={
            "client_id": microsoft.client_id,
            "client_secret": microsoft.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
        },
        timeout=TIMEOUT,
    )
    assert replay.json()["error"] == "invalid_grant"


@pytest.mark.filterwarnings("ignore:Using /common or /organizations authority:DeprecationWarning")
def test_client_credentials_need_a_tenant_and_dot_default(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    tenant = microsoft.tenant_ids[0]
    assert "access_token" in _app(microsoft, http, tenant).acquire_token_for_client(DEFAULT)
    narrow = _app(microsoft, http, tenant).acquire_token_for_client([GRAPH_RESOURCE + "/EduRoster.Read.All"])
    assert narrow["error"] == "invalid_scope"
    assert _app(microsoft, http, "organizations").acquire_token_for_client(DEFAULT)["error_codes"] == [90002]


@pytest.mark.parametrize(
    ("control", "error", "code"),
    [
        ("withdraw_consent", "invalid_grant", 65001),
        ("revoke_sessions", "invalid_grant", 50173),
        ("expire_refresh_tokens", "invalid_grant", 700082),
        ("disable_app", "unauthorized_client", 7000112),
        ("delete_service_principal", "unauthorized_client", 700016),
        ("expire_client_secret", "invalid_client", 7000222),
    ],
)
def test_token_endpoint_errors_carry_the_documented_aadsts_codes(
    microsoft: MicrosoftEmulator, http: requests.Session, control: str, error: str, code: int
) -> None:
    app = _app(microsoft, http)
    result = _sign_in(microsoft, http, app)
    teacher, tenant = result["id_token_claims"]["oid"], result["id_token_claims"]["tid"]
    argument = {
        "withdraw_consent": (tenant,),
        "revoke_sessions": (teacher,),
        "expire_refresh_tokens": (teacher,),
        "disable_app": (tenant,),
        "delete_service_principal": (tenant,),
        "expire_client_secret": (),
    }[control]
    getattr(microsoft, control)(*argument)
    refreshed = app.acquire_token_silent_with_error(["EduRoster.ReadBasic"], app.get_accounts()[0], force_refresh=True)
    assert refreshed is not None and refreshed["error"] == error and refreshed["error_codes"] == [code]
    assert "AADSTS" in refreshed["error_description"]
    if control == "withdraw_consent":
        assert refreshed["suberror"] == "consent_required"


@pytest.mark.parametrize("cp1", [True, False])
def test_consent_withdrawn_cuts_a_live_access_token_and_challenges_only_a_capable_client(
    microsoft: MicrosoftEmulator, http: requests.Session, cp1: bool
) -> None:
    # claims-challenge page: Entra challenges only a client that declared "cp1"; any other just fails
    tenant = microsoft.tenant_ids[0]
    result = _app(microsoft, http, tenant, cp1=cp1).acquire_token_for_client(DEFAULT)
    token = str(result["access_token"])
    assert _get(http, f"{microsoft.graph_endpoint}/education/classes", token).status_code == 200
    microsoft.withdraw_consent(tenant)
    cut = _get(http, f"{microsoft.graph_endpoint}/education/classes", token)
    assert cut.status_code == 401 and cut.json()["error"]["code"] == "InvalidAuthenticationToken"
    challenged = 'error="insufficient_claims"' in cut.headers.get("WWW-Authenticate", "")
    assert challenged is cp1
    fresh = _app_token(microsoft, http, tenant)  # client credentials still work, but the token carries no roles
    denied = _get(http, f"{microsoft.graph_endpoint}/education/classes", fresh)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "AccessDenied"


# ------------------------------------------------------------------------------------ Graph
def test_fully_read_users_carry_every_personal_property_and_an_unknown_one(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    users = _get(http, f"{microsoft.graph_endpoint}/education/users", token, **{"$top": "999"}).json()["value"]
    students = [u for u in users if u["primaryRole"] == "student"]
    assert students and all(set(u) >= PERSONAL for u in users)
    student = students[0]
    assert {"birthDate", "gender", "studentNumber", "externalId", "grade", "graduationYear"} <= set(student["student"])
    assert student["relatedContacts"][0]["emailAddress"] and student["residenceAddress"]["street"]
    strings = microsoft.personal_strings()
    assert student["student"]["birthDate"] in strings and student["relatedContacts"][0]["displayName"] in strings


def test_delegated_tokens_see_the_minimal_set_and_only_their_own_classes(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    tenant = microsoft.tenant_ids[0]
    teacher = microsoft.teacher_ids(tenant)[0]
    microsoft.set_signin_user(teacher)
    token = _sign_in(microsoft, http, _app(microsoft, http))["access_token"]
    classes = _get(http, f"{microsoft.graph_endpoint}/education/me/classes", token).json()["value"]
    assert {c["id"] for c in classes} == set(microsoft.class_ids(tenant, teacher_id=teacher))
    members = _get(http, f"{microsoft.graph_endpoint}/education/classes/{classes[0]['id']}/members", token).json()[
        "value"
    ]
    assert all("mail" not in m and "relatedContacts" not in m for m in members)
    assert _get(http, f"{microsoft.graph_endpoint}/education/users", token).status_code == 403
    me = _get(http, f"{microsoft.graph_endpoint}/education/me", token, **{"$select": "id,primaryRole"}).json()
    assert me["id"] == teacher and me["primaryRole"] == "teacher" and "displayName" not in me


def test_select_top_and_absolute_next_links(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    class_id = microsoft.class_ids(tenant)[0]
    url: str | None = f"{microsoft.graph_endpoint}/education/classes/{class_id}/members?$select=id,primaryRole&$top=3"
    seen: list[str] = []
    while url:
        body = _get(http, url, token).json()
        assert all(set(m) == {"id", "primaryRole"} for m in body["value"]) and len(body["value"]) <= 3
        seen += [m["id"] for m in body["value"]]
        url = body.get("@odata.nextLink")
        assert url is None or url.startswith(microsoft.graph_endpoint + "/")
    assert seen == microsoft.members_of(class_id)
    clamped = _get(http, f"{microsoft.graph_endpoint}/education/users", token, **{"$top": "100000"})
    assert clamped.status_code == 200
    bad = _get(http, f"{microsoft.graph_endpoint}/education/users", token, **{"$select": "id,noSuchProperty"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"


def test_application_permission_levels(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    tenant = microsoft.tenant_ids[0]
    microsoft.grant_consent(tenant, application=["EduRoster.ReadBasic.All"])
    token = _app_token(microsoft, http, tenant)
    assert _get(http, f"{microsoft.graph_endpoint}/education/classes", token).status_code == 403
    delta = _get(http, f"{microsoft.graph_endpoint}/education/users/delta", token).json()["value"]
    assert delta and all("birthDate" not in json.dumps(u) and "relatedContacts" not in u for u in delta)


def _delta_round(http: requests.Session, url: str, token: str) -> tuple[list[dict[str, Any]], str]:
    values: list[dict[str, Any]] = []
    while True:
        body = _get(http, url, token).json()
        assert not ("@odata.nextLink" in body and "@odata.deltaLink" in body)
        values += body["value"]
        if "@odata.deltaLink" in body:
            return values, str(body["@odata.deltaLink"])
        url = body["@odata.nextLink"]


def test_delta_reports_changes_since_the_delta_link(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    users, users_link = _delta_round(
        http, f"{microsoft.graph_endpoint}/education/users/delta?$select=id,primaryRole&$top=5", token
    )
    classes, classes_link = _delta_round(http, f"{microsoft.graph_endpoint}/education/classes/delta?$select=id", token)
    assert len(users) == len(microsoft.student_ids(tenant)) + len(microsoft.teacher_ids(tenant))
    assert all(set(u) == {"id", "primaryRole"} for u in users) and len(classes) == len(microsoft.class_ids(tenant))
    assert _delta_round(http, users_link, token)[0] == [] and _delta_round(http, classes_link, token)[0] == []
    class_id = microsoft.class_ids(tenant)[0]
    newcomer = microsoft.add_student(class_id)
    microsoft.rename_class(microsoft.class_ids(tenant)[1], "Renamed")
    changed_users, users_link = _delta_round(http, users_link, token)
    changed_classes, _ = _delta_round(http, classes_link, token)
    assert changed_users == [{"id": newcomer, "primaryRole": "student"}]
    assert {c["id"] for c in changed_classes} == {class_id, microsoft.class_ids(tenant)[1]}
    microsoft.delete_class(class_id)  # Graph documents that class delta does not report deletions
    assert class_id not in {c["id"] for c in _delta_round(http, classes_link, token)[0]}


def test_delta_removed_entries_when_enabled(tmp_path: Path) -> None:
    with MicrosoftEmulator(
        cert_dir=tmp_path, tenants=1, teachers=1, students_per_course=3, delta_reports_removed=True
    ) as emu:
        session = requests.Session()
        session.verify, session.trust_env = str(emu.ca_path), False
        tenant = emu.tenant_ids[0]
        token = _app_token(emu, session, tenant)
        _, link = _delta_round(session, f"{emu.graph_endpoint}/education/users/delta?$select=id,primaryRole", token)
        gone = emu.student_ids(tenant)[0]
        emu.delete_user(gone)
        changed, _ = _delta_round(session, link, token)
        assert changed == [{"id": gone, "@removed": {"reason": "deleted"}}]
        session.close()


@pytest.mark.parametrize(("status", "code"), [(400, "syncStateNotFound"), (410, "resyncRequired")])
def test_expired_delta_links(microsoft: MicrosoftEmulator, http: requests.Session, status: int, code: str) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    _, link = _delta_round(http, f"{microsoft.graph_endpoint}/education/classes/delta", token)
    microsoft.expire_delta_tokens(tenant, status=status)
    expired = _get(http, link, token)
    assert expired.status_code == status and expired.json()["error"]["code"] == code
    if status == 410:
        assert "/education/classes/delta" in expired.headers["Location"]
    fresh, _ = _delta_round(http, f"{microsoft.graph_endpoint}/education/classes/delta", token)
    assert len(fresh) == len(microsoft.class_ids(tenant))


def test_batch_answers_each_sub_request_on_its_own_and_logs_it(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    class_ids = microsoft.class_ids(tenant)[:3]
    microsoft.fail_next(f"/classes/{class_ids[1]}/members", 429, retry_after=2)
    requests_ = [
        {"id": str(i), "method": "GET", "url": f"/education/classes/{cid}/members?$select=id,primaryRole"}
        for i, cid in enumerate(class_ids)
    ]
    answer = http.post(
        f"{microsoft.graph_endpoint}/$batch", json={"requests": requests_}, headers={"Authorization": f"Bearer {token}"}
    )
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert by_id["1"]["status"] == 429 and by_id["1"]["headers"]["Retry-After"] == "2"
    assert by_id["0"]["status"] == 200 and [m["id"] for m in by_id["2"]["body"]["value"]] == microsoft.members_of(
        class_ids[2]
    )
    logged = [r for r in microsoft.requests if r.path.endswith("/members")]
    assert len(logged) == 3 and all(r.query["$select"] == ["id,primaryRole"] for r in logged)
    too_many = http.post(
        f"{microsoft.graph_endpoint}/$batch",
        json={"requests": requests_ * 7},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert too_many.status_code == 400


def test_throttling_and_server_errors_in_graphs_shape(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    microsoft.fail_next("/education/classes", 429, retry_after=7)
    microsoft.fail_next("/education/users", 503)
    throttled = _get(http, f"{microsoft.graph_endpoint}/education/classes", token)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert _get(http, f"{microsoft.graph_endpoint}/education/users", token).status_code == 503
    assert _get(http, f"{microsoft.graph_endpoint}/education/classes", token).status_code == 200


def test_corrupted_answers_break_the_way_they_say(microsoft: MicrosoftEmulator, http: requests.Session) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    url = f"{microsoft.graph_endpoint}/education/classes"
    microsoft.corrupt_next("/education/classes", "malformed_json")
    cut = _get(http, url, token, **{"$select": "id"})
    assert cut.status_code == 200
    with pytest.raises(ValueError):
        json.loads(cut.content)
    microsoft.corrupt_next("/education/classes", "html_page", status=502)
    page = _get(http, url, token)
    assert page.status_code == 502 and page.headers["Content-Type"] == "text/html" and b"<html>" in page.content
    microsoft.corrupt_next("/education/classes", "missing_value")
    assert "value" not in _get(http, url, token).json()
    microsoft.corrupt_next("/education/classes", "next_link_loop")
    looped = _get(http, url, token, **{"$select": "id"})
    assert looped.json()["@odata.nextLink"] == f"{url}?$select=id"
    microsoft.corrupt_next("/education/users/delta", "foreign_next_link", link="https://elsewhere.test/v1.0/x")
    assert _get(http, f"{microsoft.graph_endpoint}/education/users/delta", token).json()["@odata.deltaLink"] == (
        "https://elsewhere.test/v1.0/x"
    )
    class_id = microsoft.class_ids(tenant)[0]
    microsoft.corrupt_next("/members", "html_page", status=200)
    answer = http.post(
        f"{microsoft.graph_endpoint}/$batch",
        json={"requests": [{"id": "1", "method": "GET", "url": f"/education/classes/{class_id}/members"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    sub = answer.json()["responses"][0]
    assert sub["status"] == 200 and isinstance(sub["body"], str), "a non-JSON sub-response body comes base64-encoded"
    assert _get(http, url, token).json()["value"], "each corruption is served once"
    microsoft.corrupt_next("/education/classes", "missing_value", count=5)
    microsoft.clear_corruptions()
    assert "value" in _get(http, url, token).json()


def test_deleted_class_is_404_and_members_changes_are_visible(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    class_id = microsoft.class_ids(tenant)[0]
    student = next(m for m in microsoft.members_of(class_id) if m in microsoft.student_ids(tenant))
    microsoft.remove_member(class_id, student)
    members = _get(http, f"{microsoft.graph_endpoint}/education/classes/{class_id}/members", token).json()["value"]
    assert student not in {m["id"] for m in members}
    microsoft.delete_class(class_id)
    gone = _get(http, f"{microsoft.graph_endpoint}/education/classes/{class_id}", token)
    assert gone.status_code == 404


def test_the_shared_district_generator_is_unchanged() -> None:
    """Google's and Clever's emulators build from the same generator: the same seed gives the same data."""
    first, second = District(seed=7), District(seed=7)
    assert [p.full_name for p in first.people.values()] == [p.full_name for p in second.people.values()]
    assert [c.name for c in first.courses.values()] == [c.name for c in second.courses.values()]


# ------------------------------------------------------------------------------------ school policies
@pytest.mark.parametrize(
    ("code", "suberror", "error", "sent"),
    [
        (53003, None, "interaction_required", "message_only"),
        (50079, None, "invalid_grant", "basic_action"),
        (50076, "", "invalid_grant", None),
        (7000112, None, "unauthorized_client", None),
        (70043, None, "invalid_grant", None),
    ],
)
def test_block_signin_refuses_a_users_or_tenants_token_requests_until_unblocked(
    microsoft: MicrosoftEmulator, http: requests.Session, code: int, suberror: str | None, error: str, sent: str | None
) -> None:
    app = _app(microsoft, http)
    result = _sign_in(microsoft, http, app)
    teacher, tenant = result["id_token_claims"]["oid"], result["id_token_claims"]["tid"]
    microsoft.block_signin(teacher, code, suberror=suberror)
    refused = app.acquire_token_silent_with_error(["EduRoster.ReadBasic"], app.get_accounts()[0], force_refresh=True)
    assert refused is not None and refused["error"] == error and refused["error_codes"] == [code]
    assert refused.get("suberror") == sent
    assert "access_token" in _app(microsoft, http, tenant).acquire_token_for_client(DEFAULT), "only the user is blocked"
    microsoft.block_signin(tenant, code)
    assert _app(microsoft, http, tenant).acquire_token_for_client(DEFAULT)["error_codes"] == [code]
    microsoft.unblock_signin(teacher)
    microsoft.unblock_signin(tenant)
    later = msal.ConfidentialClientApplication(  # a new app: MSAL's throttle cache replays the refusal
        microsoft.client_id,
        client_credential=microsoft.client_secret,
        authority=microsoft.authority(tenant),
        http_client=http,
        instance_discovery=False,
        token_cache=app.token_cache,
    )
    again = later.acquire_token_silent_with_error(["EduRoster.ReadBasic"], later.get_accounts()[0], force_refresh=True)
    assert again is not None and "access_token" in again, "the refresh token survived the block"


@pytest.mark.parametrize(
    ("kind", "code", "message", "challenged"),
    [
        ("scope", "AccessDenied", "Required roles claim values are not provided.", False),
        ("licence", "Forbidden", "", False),
        ("ca", "AccessDenied", "Access denied by a Conditional Access policy.", True),
    ],
)
def test_deny_graph_answers_403_of_each_kind(
    microsoft: MicrosoftEmulator, http: requests.Session, kind: str, code: str, message: str, challenged: bool
) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    microsoft.deny_graph(tenant, kind)
    denied = _get(http, f"{microsoft.graph_endpoint}/education/classes", token)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == code
    assert denied.json()["error"]["message"] == message
    assert ('error="insufficient_claims"' in denied.headers.get("WWW-Authenticate", "")) is challenged
    microsoft.allow_graph(tenant)
    assert _get(http, f"{microsoft.graph_endpoint}/education/classes", token).status_code == 200


def test_a_forced_claims_challenge_meets_any_client_until_lifted(
    microsoft: MicrosoftEmulator, http: requests.Session
) -> None:
    tenant = microsoft.tenant_ids[0]
    token = _app_token(microsoft, http, tenant)
    microsoft.force_claims_challenge(tenant)
    challenged = _get(http, f"{microsoft.graph_endpoint}/education/classes", token)
    assert challenged.status_code == 401 and 'error="insufficient_claims"' in challenged.headers["WWW-Authenticate"]
    microsoft.force_claims_challenge(tenant, on=False)
    assert _get(http, f"{microsoft.graph_endpoint}/education/classes", token).status_code == 200
