"""HTTP hygiene of the web app (issue 18, item 24), one test per defect, in process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from emulators.google import GoogleEmulator
from settings import Settings
from store.runtime import build_runtime, set_runtime
from tests.webkit import ADMIN_TOKENS, AUTH, signed, web_settings
from web.app import create_app
from web.ratelimit import Limiter
from worker import broker as brokers


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    """The edge never reaches the database in a way that differs between SQLite and PostgreSQL."""
    return f"sqlite:///{tmp_path / 'hygiene.db'}"


@pytest.fixture
def make_client(emulator: GoogleEmulator, database_url: str) -> Iterator[Any]:
    """A TestClient on an app with these settings (defaults otherwise, openapi included as in production)."""
    runtimes = []

    def make(client: tuple[str, int] = ("203.0.113.7", 50000), **overrides: Any) -> TestClient:
        rt = build_runtime(web_settings(emulator, database_url, **({"openapi_enabled": False} | overrides)))
        runtimes.append(rt)
        return TestClient(create_app(rt), base_url="https://rostersync.test", client=client)

    yield make
    set_runtime(None)
    brokers.shutdown()
    for rt in runtimes:
        rt.engine.dispose()


def test_pages_and_answers_forbid_framing_and_scripts(make_client: Any) -> None:
    client = make_client()
    for response in (client.get("/link/nowhere", params={"teacher": "t"}), client.get("/healthz")):
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_docs_are_off_by_default_and_when_on_load_nothing_from_elsewhere(make_client: Any) -> None:
    default = make_client()
    assert default.get("/docs").status_code == 404
    assert default.get("/redoc").status_code == 404
    docs = make_client(docs_enabled=True).get("/docs")
    assert docs.status_code == 200
    assert "GET /admin/integrations" in docs.text
    assert "<script" not in docs.text and "http" not in docs.text.split("<body>")[1]
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_a_host_header_cannot_steer_a_redirect(make_client: Any) -> None:
    client = make_client()
    answer = client.get("/admin/integrations/", headers=AUTH | {"Host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in answer.headers.get("location", "")
    assert answer.status_code == 404
    pinned = make_client(allowed_hosts="rostersync.test")
    assert pinned.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert pinned.get("/healthz").status_code == 200


def test_wrong_admin_tokens_are_limited_per_client(make_client: Any) -> None:
    client = make_client(admin_failures_per_minute=5)
    wrong = {"Authorization": "Bearer wrong-token"}
    assert [client.get("/admin/integrations", headers=wrong).status_code for _ in range(5)] == [401] * 5
    limited = client.get("/admin/integrations", headers=wrong)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 12
    # Locked out: even the right token is not looked at, so a lucky guess is not told apart.
    assert client.get("/admin/integrations", headers=AUTH).status_code == 429
    assert client.get("/metrics", headers=wrong).status_code == 429
    other = TestClient(client.app, base_url="https://rostersync.test", client=("198.51.100.9", 1))
    assert other.get("/admin/integrations", headers={"Authorization": f"Bearer {ADMIN_TOKENS[0]}"}).status_code == 200


def test_link_requests_are_limited_per_client(make_client: Any) -> None:
    client = make_client(link_requests_per_minute=3)
    answers = [client.get("/link/google", params=signed("t-1"), follow_redirects=False) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [302, 302, 302, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1 and "Too many attempts" in answers[-1].text
    assert client.get("/oauth/google/callback", params={"state": "s", "code": "c"}).status_code == 429


def test_the_limiter_refills_evenly() -> None:
    now = [0.0]
    limiter = Limiter(6, clock=lambda: now[0])  # one more every 10 s
    assert [limiter.take("a") for _ in range(7)] == [0] * 6 + [10]
    assert limiter.take("b") == 0
    now[0] = 9.5
    assert limiter.wait("a") == 1
    now[0] = 10.0
    assert limiter.take("a") == 0 and limiter.take("a") == 10
    assert Limiter(0).take("a") == 0


@pytest.mark.parametrize(
    ("access", "anonymous", "with_token"), [("admin", 401, 200), ("open", 200, 200), ("off", 404, 404)]
)
def test_metrics_access_is_a_setting(make_client: Any, access: str, anonymous: int, with_token: int) -> None:
    client = make_client(metrics_access=access)
    assert client.get("/metrics").status_code == anonymous
    assert client.get("/metrics", headers=AUTH).status_code == with_token


def test_openapi_is_off_by_default(make_client: Any) -> None:
    assert make_client().get("/openapi.json").status_code == 404
    assert "/admin/integrations" in make_client(openapi_enabled=True).get("/openapi.json").json()["paths"]


def test_proxy_addresses_are_checked_at_start_up() -> None:
    assert Settings(forwarded_allow_ips="10.0.0.0/24, ::1").forwarded_allow_list() == ["10.0.0.0/24", "::1"]
    assert Settings(forwarded_allow_ips="").forwarded_allow_list() == []
    with pytest.raises(ValidationError, match="expected IP addresses or networks"):
        Settings(forwarded_allow_ips="proxy.internal")
