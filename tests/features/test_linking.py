"""Headless linking: state and PKCE checked, bad callbacks refused with clear words and nothing half-written."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from connectors.google import http_session
from devtools.demo import consent_headlessly
from emulators.google import GoogleEmulator
from services.linking import LinkError, complete_link, start_link
from settings import GOOGLE_SCOPES
from store import audit, integrations
from store.models import Integration, LinkAttempt
from store.runtime import Runtime
from tests.helpers import dump_tables


def consent(runtime: Runtime, emulator: GoogleEmulator, teacher_index: int = 0) -> str:
    emulator.set_consent_user(emulator.teacher_ids[teacher_index])
    url = start_link(runtime, provider_name="google", teacher=f"teacher-{teacher_index}")
    with http_session(runtime.settings) as browser:
        return consent_headlessly(browser, url)


def integration_count(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Integration)).scalar_one())


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_consent_url_asks_for_two_readonly_scopes_with_pkce(runtime: Runtime) -> None:
    url = start_link(runtime, provider_name="google", teacher="t-9")
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == [" ".join(GOOGLE_SCOPES)]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["access_type"] == ["offline"] and len(query["state"][0]) >= 32


def test_link_stores_tokens_encrypted_only(runtime: Runtime, emulator: GoogleEmulator) -> None:
    integration_id = complete_link(runtime, consent(runtime, emulator))
    state = integrations.load(runtime.engine, integration_id)
    assert state.status == "active" and state.granted_scopes == frozenset(GOOGLE_SCOPES)
    dump = dump_tables(runtime.engine)
    assert emulator.issued_tokens()
    assert not any(token in dump for token in emulator.issued_tokens())
    assert "linked" in audit.actions(runtime.engine, integration_id)


def test_reused_state_is_refused(runtime: Runtime, emulator: GoogleEmulator) -> None:
    callback = consent(runtime, emulator)
    complete_link(runtime, callback)
    with pytest.raises(LinkError, match="state already used"):
        complete_link(runtime, callback)
    assert integration_count(runtime) == 1


def test_forged_state_is_refused(runtime: Runtime, emulator: GoogleEmulator) -> None:
    callback = with_query(consent(runtime, emulator), state="forged-state-value")
    with pytest.raises(LinkError, match="unknown state"):
        complete_link(runtime, callback)
    assert integration_count(runtime) == 0


def test_wrong_pkce_verifier_is_refused_by_google(runtime: Runtime, emulator: GoogleEmulator) -> None:
    callback = consent(runtime, emulator)
    with runtime.engine.begin() as connection:
        connection.execute(LinkAttempt.__table__.update().values(verifier_blob=runtime.vault.seal_text("x" * 64)))
    with pytest.raises(LinkError, match="invalid_grant"):
        complete_link(runtime, callback)
    assert integration_count(runtime) == 0


@pytest.mark.parametrize(
    "callback",
    [
        "not a url",
        "https://platform.example/cb?code=abc",
        "https://platform.example/cb?state=abc",
        "ftp://x/cb?state=a&code=b",
    ],
)
def test_malformed_callback_is_refused(runtime: Runtime, callback: str) -> None:
    with pytest.raises(LinkError, match="malformed callback URL"):
        complete_link(runtime, callback)
    assert integration_count(runtime) == 0


def test_grant_missing_a_scope_is_refused_and_revoked(runtime: Runtime, emulator: GoogleEmulator) -> None:
    emulator.set_granted_scopes([GOOGLE_SCOPES[0]])
    with pytest.raises(LinkError, match=r"lacks required scope\(s\): classroom.rosters.readonly"):
        complete_link(runtime, consent(runtime, emulator))
    assert integration_count(runtime) == 0
    assert emulator.requests[-1].path == "/revoke" and emulator.requests[-1].status == 200


def test_teacher_who_declines_gets_a_clear_error(runtime: Runtime) -> None:
    url = start_link(runtime, provider_name="google", teacher="t-1")
    state = parse_qs(urlsplit(url).query)["state"][0]
    with pytest.raises(LinkError, match="did not grant access"):
        complete_link(runtime, f"https://platform.example/cb?state={state}&error=access_denied")
    assert integration_count(runtime) == 0


def test_relinking_after_revoke_starts_a_new_generation(runtime: Runtime, emulator: GoogleEmulator) -> None:
    first = complete_link(runtime, consent(runtime, emulator))
    old_generation = integrations.load(runtime.engine, first).generation
    integrations.end_integration(runtime.engine, first, status="revoked", actor="admin:test", reason="")
    again = complete_link(runtime, consent(runtime, emulator))
    state = integrations.load(runtime.engine, again)
    assert again == first and state.status == "active" and state.generation == old_generation + 2


# --- issue 18, item 2: one provider account, one platform teacher per tenant ---------------------------
@pytest.mark.parametrize(("first", "second"), [("teacher-m", "teacher-t"), ("teacher-t", "teacher-m")])
def test_an_account_belongs_to_one_teacher_of_a_tenant(
    runtime: Runtime, emulator: GoogleEmulator, first: str, second: str
) -> None:
    from services.linking import AccountTaken
    from tests.conftest import link_teacher

    owner = link_teacher(runtime, emulator, 0, platform_teacher=first)
    with pytest.raises(AccountTaken, match="already linked by another teacher of this school"):
        link_teacher(runtime, emulator, 0, platform_teacher=second)
    assert integration_count(runtime) == 1
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1  # the refused grant was given back at Google
    assert audit.actions(runtime.engine, owner)[-2:] == ["link_refused", "provider_revoked"]
    assert link_teacher(runtime, emulator, 0, platform_teacher=first) == owner  # the owner may re-link
    assert link_teacher(runtime, emulator, 0, platform_teacher=second, tenant="another-school") != owner
    integrations.end_integration(runtime.engine, owner, status="revoked", actor="admin:test", reason="")
    assert link_teacher(runtime, emulator, 0, platform_teacher=second) != owner  # once ended, free to link


def test_a_refused_grant_google_cannot_take_back_now_is_retried_until_it_does(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from services.linking import AccountTaken
    from store.db import utcnow
    from store.models import PendingRevoke
    from sync.grants import AtProvider
    from tests.conftest import link_teacher
    from worker.scheduler import run_due_here

    owner = link_teacher(runtime, emulator, 0, platform_teacher="teacher-m")
    emulator.fail_next("/revoke", 503)
    with pytest.raises(AccountTaken) as refused:
        link_teacher(runtime, emulator, 0, platform_teacher="teacher-t")
    assert refused.value.given_back is AtProvider.PENDING
    assert emulator.live_grants(emulator.teacher_ids[0]) == 2  # not yet: kept sealed for the retry worker
    with runtime.engine.begin() as connection:
        connection.execute(update(PendingRevoke).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    run_due_here(runtime)
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1  # only the holder's grant is left
    assert integrations.load(runtime.engine, owner).status == "active"
