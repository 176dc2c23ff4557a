"""The Clever connector against the Clever emulator: the fewest requests, the links followed as given,
and every failure turned into the taxonomy (rotation is not revocation; a disconnect is)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from connectors.base import AccessRevoked, ProviderDataError, RateLimited, ScopeMissing, TransientError
from connectors.clever import (
    CleverConnector,
    EventsUnavailable,
    LinkRefused,
    RecordUnavailable,
    authorization_url,
    classify_api_error,
    district_token,
    district_tokens,
    exchange_code,
    http_session,
)
from emulators.clever import CleverEmulator
from settings import Settings
from tests.clever_fixtures import clever_settings

pytestmark = pytest.mark.clever(districts=2, teachers=2, students_per_course=8)


@pytest.fixture
def settings(clever: CleverEmulator) -> Settings:
    return clever_settings(clever)


def _district(settings: Settings, clever: CleverEmulator, index: int = 0, **kwargs: Any) -> CleverConnector:
    district_id = clever.district_ids[index]
    token = district_token(settings, district_id)
    assert token is not None
    return CleverConnector(settings, token, district_id=district_id, **kwargs)


def _api_calls(clever: CleverEmulator) -> list[tuple[str, dict[str, list[str]], int]]:
    return [(r.path, r.query, r.status) for r in clever.requests if r.path.startswith("/v3.0")]


def _sign_in(settings: Settings, clever: CleverEmulator, user_id: str, state: str = "state-1") -> str:
    """The consent URL, approved by the emulator; returns the callback URL the browser would be sent to."""
    clever.set_consent_user(user_id)
    with http_session(settings) as browser:
        response = browser.get(authorization_url(settings, state=state), allow_redirects=False, timeout=5)
    assert response.status_code == 302
    return response.headers["Location"]


# ------------------------------------------------------------------------------------- district
def test_district_sync_reads_sections_and_teachers_in_one_request_each(
    settings: Settings, clever: CleverEmulator
) -> None:
    district_id = clever.district_ids[0]
    with _district(settings, clever) as connector:
        sections = [record for page in connector.sections() for record in page.records]
        teachers = [record for page in connector.teachers() for record in page.records]
        assert connector.requests_made == 2
    assert {s["id"] for s in sections} == set(clever.section_ids(district_id))
    assert {t["id"] for t in teachers} == set(clever.teacher_ids(district_id))
    calls = _api_calls(clever)
    assert [(path, query.get("limit")) for path, query, _ in calls] == [
        ("/v3.0/sections", ["10000"]),
        ("/v3.0/users", ["10000"]),
    ]
    assert calls[1][1]["role"] == ["teacher"], "student records are never requested"


def test_a_large_page_is_read_as_a_stream_in_parts_that_cost_one_request(
    settings: Settings, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sections page arrives in parts (connectors/streaming.py): the same records as the page parsed
    whole, in order, one request; only the first part counts against a budget (the others are ``continued``)."""
    monkeypatch.setattr("connectors.streaming.PART_RECORDS", 3)
    with _district(settings, clever) as connector:
        whole, _links = connector._list("/v3.0/sections", {"limit": "10000"})
        before = connector.requests_made
        pages = list(connector.sections())
        assert connector.requests_made - before == 1
    assert len(whole) > 3
    assert [len(page.records) for page in pages] == [min(3, len(whole) - n) for n in range(0, len(whole), 3)]
    assert [record for page in pages for record in page.records] == whole
    assert [page.continued for page in pages] == [False] + [True] * (len(pages) - 1)


def test_an_events_page_read_in_parts_carries_the_cursor_of_each_part(
    settings: Settings, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each part's cursor is its own last event, so a part applied with its cursor resumes right after it."""
    district_id = clever.district_ids[0]
    with _district(settings, clever) as connector:
        cursor = connector.latest_event_id() or ""
    section = clever.section_ids(district_id)[0]
    for _ in range(4):
        clever.add_student(section)
    monkeypatch.setattr("connectors.clever.EVENT_PART_RECORDS", 3)
    with _district(settings, clever) as connector:
        pages = list(connector.events(cursor))
    events = [event for page in pages for event in page.records]
    assert len(events) >= 4 and len(pages) == -(-len(events) // 3)
    assert [page.cursor for page in pages] == [page.records[-1]["id"] for page in pages]


def test_paging_follows_next_links_as_given(
    settings: Settings, clever: CleverEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connectors.clever.PAGE_LIMIT", 3)
    with _district(settings, clever) as connector:
        pages = list(connector.sections())
    ids = [record["id"] for page in pages for record in page.records]
    assert ids == sorted(clever.section_ids(clever.district_ids[0]))
    assert len(pages) == -(-len(ids) // 3)
    later = [query for _, query, _ in _api_calls(clever)][1:]
    assert all(query["starting_after"] and query["limit"] == ["3"] for query in later)


def test_teacher_sections_with_the_district_token(settings: Settings, clever: CleverEmulator) -> None:
    teacher = clever.teacher_ids(clever.district_ids[0])[0]
    with _district(settings, clever) as connector:
        ids = {r["id"] for page in connector.teacher_sections(teacher) for r in page.records}
        assert connector.user(teacher)["id"] == teacher
    assert ids == set(clever.section_ids(teacher_id=teacher))


def test_a_rotated_token_is_refetched_not_revoked(settings: Settings, clever: CleverEmulator) -> None:
    district_id = clever.district_ids[0]
    saved: list[str] = []
    with _district(settings, clever, on_token=saved.append) as connector:
        new = clever.rotate_district_token(district_id)
        sections = [r for page in connector.sections() for r in page.records]
    assert saved == [new]
    assert len(sections) == len(clever.section_ids(district_id))


def test_a_disconnected_district_is_access_revoked_and_stops(settings: Settings, clever: CleverEmulator) -> None:
    district_id = clever.district_ids[0]
    old = clever.district_token(district_id)
    assert old is not None
    with _district(settings, clever) as connector:
        clever.disconnect_district(district_id)
        with pytest.raises(AccessRevoked) as caught:
            list(connector.sections())
    assert caught.value.reason == "district_disconnected"
    assert old not in str(caught.value)
    assert [status for _, _, status in _api_calls(clever)] == [401], "one refused call, then no more"
    assert [r.user_id for r in clever.requests if r.path.startswith("/v3.0")] == [district_id]
    assert district_token(settings, district_id) is None
    assert district_token(settings, clever.district_ids[1]) is not None


def test_district_token_lookup(settings: Settings, clever: CleverEmulator) -> None:
    listed = district_tokens(settings)
    assert {t.district_id for t in listed} == set(clever.district_ids)
    assert listed[0].access_token not in repr(listed[0])
    assert district_token(settings, "000000000000000000000000") is None
    wrong = clever_settings(clever, clever_client_secret="not-the-secret")
    with pytest.raises(TransientError):
        district_tokens(wrong)


# ------------------------------------------------------------------------------------- teachers
def test_library_teacher_link_and_unpaged_sections(settings: Settings, clever: CleverEmulator) -> None:
    teacher = clever.teacher_ids(None)[0]
    callback = _sign_in(settings, clever, teacher)
    tokens = exchange_code(settings, authorization_response=callback, state="state-1")
    assert tokens.access_token and tokens.refresh_token == ""
    assert clever.requests[-1].path == "/oauth/tokens"
    with CleverConnector(settings, str(tokens.access_token)) as connector:
        me = connector.me()
        assert me == {"id": teacher, "type": "user"}, "as Clever's v3.0 Library page documents it"
        info = connector.userinfo()
        assert (info["user_id"], info["user_type"]) == (teacher, "teacher") and "district_id" not in info
        pages = list(connector.teacher_sections(teacher))
        students = [r for page in connector.section_users(pages[0].records[0]["id"], "student") for r in page.records]
    assert len(pages) == 1 and {r["id"] for r in pages[0].records} == set(clever.section_ids(teacher_id=teacher))
    sections_call = next(q for p, q, _ in _api_calls(clever) if p.endswith("/sections"))
    assert sections_call == {}, "no limit or paging parameters with an SSO token"
    assert {s["id"] for s in students} == set(clever.students_of(pages[0].records[0]["id"]))

    clever.revoke_token(str(tokens.access_token))
    with CleverConnector(settings, str(tokens.access_token)) as connector, pytest.raises(AccessRevoked):
        connector.me()


def test_district_shared_teacher_token_reaches_me_but_not_sections(settings: Settings, clever: CleverEmulator) -> None:
    district_id = clever.district_ids[0]
    teacher = clever.teacher_ids(district_id)[0]
    tokens = exchange_code(settings, authorization_response=_sign_in(settings, clever, teacher), state="state-1")
    with CleverConnector(settings, str(tokens.access_token)) as connector:
        me = connector.me()
        assert (me["id"], me["district"]) == (teacher, district_id)
        with pytest.raises(ScopeMissing):
            list(connector.teacher_sections(teacher))


def test_reused_code_and_wrong_state_are_refused(settings: Settings, clever: CleverEmulator) -> None:
    teacher = clever.teacher_ids(None)[0]
    callback = _sign_in(settings, clever, teacher)
    exchange_code(settings, authorization_response=callback, state="state-1")
    with pytest.raises(LinkRefused, match="invalid_grant") as reused:
        exchange_code(settings, authorization_response=callback, state="state-1")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code not in str(reused.value)
    with pytest.raises(LinkRefused, match="state mismatch"):
        exchange_code(settings, authorization_response=_sign_in(settings, clever, teacher), state="another-state")


# --------------------------------------------------------------------------------------- events
def test_events_from_a_cursor(settings: Settings, clever: CleverEmulator) -> None:
    district_id = clever.district_ids[0]
    with _district(settings, clever) as connector:
        assert connector.latest_event_id() is None
        section = clever.section_ids(district_id)[0]
        clever.rename_section(section, "First")
        cursor = connector.latest_event_id()
        assert cursor == clever.newest_event_id(district_id)
        clever.add_student(section)
        pages = list(connector.events(cursor))
        types = [e["type"] for page in pages for e in page.records]
        assert types == ["users.created", "sections.updated"]
        assert pages[-1].cursor == clever.newest_event_id(district_id)
        assert [p.cursor for p in connector.events(pages[-1].cursor)] == [pages[-1].cursor], "nothing new"
        event_query = [q for p, q, _ in _api_calls(clever) if p == "/v3.0/events"][-1]
        assert event_query["record_type"] == ["sections", "users"]

        clever.expire_events(district_id)
        with pytest.raises(EventsUnavailable) as expired:
            list(connector.events(cursor))
        assert expired.value.reason == "expired"
        clever.set_events_enabled(district_id, False)
        with pytest.raises(EventsUnavailable) as disabled:
            connector.latest_event_id()
        assert disabled.value.reason == "disabled"


# --------------------------------------------------------------------------------------- errors
def test_429_waits_for_the_reset_header(settings: Settings, clever: CleverEmulator) -> None:
    clever.fail_next("/v3.0/sections", 429, retry_after=42)
    with _district(settings, clever) as connector, pytest.raises(RateLimited) as caught:
        list(connector.sections())
    assert 40 <= caught.value.retry_after <= 43


def test_5xx_is_transient_and_404_is_record_unavailable(settings: Settings, clever: CleverEmulator) -> None:
    clever.fail_next("/v3.0/sections", 502)
    with _district(settings, clever) as connector:
        with pytest.raises(TransientError):
            list(connector.sections())
        section = clever.section_ids(clever.district_ids[0])[0]
        clever.unshare_section(section)
        with pytest.raises(RecordUnavailable):
            connector.section(section)


def test_error_map() -> None:
    reset = str(int(time.time()) + 30)
    limited = classify_api_error(429, None, CaseInsensitiveDict({"X-RateLimit-Reset": reset}))
    assert isinstance(limited, RateLimited) and 28 <= limited.retry_after <= 31
    assert classify_api_error(429, None, {}).retry_after == 60  # type: ignore[attr-defined]
    assert isinstance(classify_api_error(403, {"message": "Resource not in token's scopes"}, {}), ScopeMissing)
    assert isinstance(classify_api_error(404, {"error": "not found"}, {}), RecordUnavailable)
    assert isinstance(classify_api_error(503, None, {}), TransientError)
    assert type(classify_api_error(413, {"message": "x"}, {})) is ProviderDataError
    assert (
        type(
            classify_api_error(501, None, {}),
        )
        is ProviderDataError
    )


def _fake(status: int, body: bytes, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response._content_consumed = True  # iter_content serves the body as if read from a socket
    response.headers = CaseInsensitiveDict({"Content-Type": content_type})
    return response


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>Oops</body></html>", "not readable JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"data": [{"data": {"id": "x"}}', "cut short"),
        (b'{"data": {"id": "x"}, "links": []}', "'data' of a list answer is not a list"),
        (b'{"links": []}', "carries no 'data' list"),
        (b'{"data": [], "links": [{"rel": "next", "uri": "https://evil.test/v3.0/sections"}]}', "away from"),
        (b'{"data": [], "links": [{"rel": "next", "uri": "/v3.0/sections?starting_after=a"}]}', "loop"),
    ],
)
def test_bad_payloads_are_provider_data_errors(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, body: bytes, message: str
) -> None:
    connector = CleverConnector(settings, "token", district_id="d1")
    monkeypatch.setattr(connector, "_send", lambda path, params, **_: _fake(200, body))
    with pytest.raises(ProviderDataError, match=message):
        list(connector.sections())
