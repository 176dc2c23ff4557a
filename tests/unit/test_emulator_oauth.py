"""The OAuth flow the emulators share (``emulators.oauth``), step by step and without a server.

Each provider's emulator tests prove its answers over HTTPS; these prove the shared steps themselves
(single-use codes, the redirect URI binding, PKCE, refresh rotation, revocation), so a fix to the flow
is checked once, whatever provider reaches it. Every step answers with its own name here, so a test
names the step that refused.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from functools import partial

import pytest

from emulators.core import Request, Response
from emulators.oauth import (
    AuthCode,
    CodeBook,
    Grant,
    GrantBook,
    OAuthErrors,
    TokenLedger,
    check_client,
    dispatch_grant,
    pkce_matches,
    redeem_code,
    refresh_grant,
    revoke_token,
)

REDIRECT = "https://rostersync.test/oauth/callback"
STEPS = [
    "client_unknown",
    "client_secret",
    "grant_type_missing",
    "grant_type_unsupported",
    "code_missing",
    "code_invalid",
    "redirect_mismatch",
    "verifier_missing",
    "verifier_mismatch",
    "refresh_missing",
    "refresh_unknown",
    "refresh_spent",
    "refresh_expired",
    "revoke_missing",
    "revoke_invalid",
]


def _named(step: str) -> Response:
    return Response(400, step.encode())


ERRORS: OAuthErrors = {step: partial(_named, step) for step in STEPS}


def _step(answer: object) -> str:
    """The step a refusal came from (the test table answers with the step's name)."""
    assert isinstance(answer, Response), answer
    return answer.body.decode()


def _form(query: dict[str, str] | None = None, headers: dict[str, str] | None = None, **form: str) -> Request:
    return Request(
        "POST", "/token", {k: [v] for k, v in (query or {}).items()}, {k: [v] for k, v in form.items()}, headers or {}
    )


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _book(code: str = "c1", **fields: object) -> CodeBook:
    book = CodeBook()
    entry = AuthCode(user_id="u1", redirect_uri=REDIRECT, expires_at=time.time() + 60)
    for name, value in fields.items():
        setattr(entry, name, value)
    book.issue(code, entry)
    return book


# ------------------------------------------------------------------------------------------ codes
@pytest.mark.parametrize("burn_first", [True, False])
def test_a_code_is_single_use(burn_first: bool) -> None:
    book = _book()
    first = redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=burn_first)
    assert isinstance(first, AuthCode) and first.user_id == "u1" and first.used
    again = redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=burn_first)
    assert _step(again) == "code_invalid"
    assert book.owner("c1") == "u1" and book.live("c1") is None


def test_unknown_missing_and_expired_codes_are_refused() -> None:
    book = _book(expires_at=time.time() - 1)
    assert _step(redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=False)) == "code_invalid"
    assert _step(redeem_code(_form(code="zz", redirect_uri=REDIRECT), book, ERRORS, burn_first=False)) == "code_invalid"
    missing = redeem_code(_form(redirect_uri=REDIRECT), book, ERRORS, burn_first=False, require_code=True)
    assert _step(missing) == "code_missing"


def test_a_code_is_bound_to_its_redirect_uri() -> None:
    book = _book()
    wrong = redeem_code(_form(code="c1", redirect_uri=REDIRECT + "/other"), book, ERRORS, burn_first=False)
    assert _step(wrong) == "redirect_mismatch"
    assert _step(redeem_code(_form(code="c1"), book, ERRORS, burn_first=False)) == "redirect_mismatch"
    right = redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=False)
    assert isinstance(right, AuthCode)  # without burn_first a failed check leaves the code live


def test_burn_first_spends_the_code_even_when_a_later_check_fails() -> None:
    book = _book()
    wrong = redeem_code(_form(code="c1", redirect_uri="https://evil.test/cb"), book, ERRORS, burn_first=True)
    assert _step(wrong) == "redirect_mismatch"
    right = redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=True)
    assert _step(right) == "code_invalid"


def test_a_provider_binding_is_checked_after_the_redirect_uri() -> None:
    book = _book(tenant_id="t1")

    def bound(code: AuthCode) -> Response | None:
        return _named("foreign") if code.tenant_id != "t2" else None

    refused = redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=False, bound=bound)
    assert _step(refused) == "foreign"


# ------------------------------------------------------------------------------------------ PKCE
def test_pkce_s256_and_plain() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert _s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B
    assert pkce_matches(_s256(verifier), "S256", verifier)
    assert not pkce_matches(_s256(verifier), "S256", verifier + "x")
    assert not pkce_matches(verifier, "S256", verifier)  # S256 never compares the verifier itself
    assert pkce_matches(verifier, "plain", verifier)
    assert not pkce_matches(verifier, "plain", verifier[:-1])


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_a_code_with_a_challenge_needs_the_matching_verifier(method: str) -> None:
    verifier = "a-verifier-long-enough-for-rfc-7636-0123456789"
    challenge = _s256(verifier) if method == "S256" else verifier
    book = _book(challenge=challenge, challenge_method=method)
    missing = redeem_code(_form(code="c1", redirect_uri=REDIRECT), book, ERRORS, burn_first=False)
    assert _step(missing) == "verifier_missing"
    wrong = redeem_code(_form(code="c1", redirect_uri=REDIRECT, code_verifier="nope"), book, ERRORS, burn_first=False)
    assert _step(wrong) == "verifier_mismatch"
    right = redeem_code(_form(code="c1", redirect_uri=REDIRECT, code_verifier=verifier), book, ERRORS, burn_first=False)
    assert isinstance(right, AuthCode) and right.used


# ------------------------------------------------------------------------------------------ client and grant type
def test_client_authentication_in_the_form_or_http_basic() -> None:
    basic = {"authorization": "Basic " + base64.b64encode(b"app:secret").decode()}
    assert (
        check_client(_form(client_id="app", client_secret="secret"), "app", "secret", ERRORS, form=True, basic=False)
        is None
    )
    assert check_client(_form(headers=basic), "app", "secret", ERRORS, form=False, basic=True) is None
    assert check_client(_form(headers=basic), "app", "secret", ERRORS, form=True, basic=True) is None
    refused = check_client(_form(headers=basic), "app", "secret", ERRORS, form=True, basic=False)
    assert _step(refused) == "client_unknown"  # a provider that reads only the form ignores Basic
    wrong = check_client(_form(client_id="app", client_secret="guess"), "app", "secret", ERRORS, form=True, basic=False)
    assert _step(wrong) == "client_secret"


def test_the_grant_switch() -> None:
    handlers = {"authorization_code": lambda r: Response(200, b"code")}
    assert dispatch_grant(_form(grant_type="authorization_code"), handlers, ERRORS).body == b"code"
    assert _step(dispatch_grant(_form(), handlers, ERRORS)) == "grant_type_missing"
    assert _step(dispatch_grant(_form(grant_type="password"), handlers, ERRORS)) == "grant_type_unsupported"


# ------------------------------------------------------------------------------------------ refresh and rotation
def _grant() -> tuple[GrantBook, Grant, str]:
    ledger = TokenLedger()
    grants = GrantBook(ledger)
    grant = grants.open("u1", ("read",))
    return grants, grant, grants.rotate(grant, "rt-", 16)


def test_rotation_spends_the_old_refresh_token() -> None:
    grants, grant, old = _grant()
    assert refresh_grant(_form(refresh_token=old), grants, ERRORS) is grant
    new = grants.rotate(grant, "rt-", 16)
    assert new != old and new.startswith("rt-")
    assert _step(refresh_grant(_form(refresh_token=old), grants, ERRORS)) == "refresh_spent"
    assert refresh_grant(_form(refresh_token=new), grants, ERRORS) is grant
    assert grants.holder(old) is grant  # a spent token still names its user, for the request log


def test_missing_and_unknown_refresh_tokens() -> None:
    grants, _, _ = _grant()
    assert _step(refresh_grant(_form(), grants, ERRORS)) == "refresh_missing"
    assert _step(refresh_grant(_form(refresh_token="rt-forged"), grants, ERRORS)) == "refresh_unknown"


def test_a_refresh_token_idle_past_its_lifetime_is_expired() -> None:
    grants, grant, token = _grant()
    assert refresh_grant(_form(refresh_token=token), grants, ERRORS, lifetime=60.0) is grant
    grant.issued_at = time.time() - 61.0
    assert _step(refresh_grant(_form(refresh_token=token), grants, ERRORS, lifetime=60.0)) == "refresh_expired"
    assert refresh_grant(_form(refresh_token=token), grants, ERRORS) is grant  # no lifetime: never idle


def test_the_provider_binding_comes_before_the_token_state() -> None:
    grants, grant, token = _grant()
    grant.revoked = True
    refused = refresh_grant(_form(refresh_token=token), grants, ERRORS, bound=lambda g: _named("app_disabled"))
    assert _step(refused) == "app_disabled"
    assert _step(refresh_grant(_form(refresh_token=token), grants, ERRORS)) == "refresh_spent"


def test_revoking_a_user_ends_every_grant_they_gave() -> None:
    grants, first, token = _grant()
    second = grants.open("u1", ("read",))
    other = grants.open("u2", ("read",))
    grants.revoke_user("u1")
    assert first.revoked and second.revoked and not other.revoked
    assert _step(refresh_grant(_form(refresh_token=token), grants, ERRORS)) == "refresh_spent"


# ------------------------------------------------------------------------------------------ revocation
@dataclass
class _Access:
    grant: Grant
    expires_at: float


def _revoked(grant: Grant) -> Response:
    return Response(200, b"revoked", user_id=grant.user_id)


def test_revoking_the_refresh_token_ends_the_grant_once() -> None:
    grants, grant, token = _grant()
    answer = revoke_token(_form(token=token), grants, {}, ERRORS, _revoked)
    assert answer.status == 200 and answer.user_id == "u1" and grant.revoked
    assert _step(revoke_token(_form(token=token), grants, {}, ERRORS, _revoked)) == "revoke_invalid"
    assert _step(refresh_grant(_form(refresh_token=token), grants, ERRORS)) == "refresh_spent"


def test_a_live_access_token_revokes_its_grant_and_the_query_names_it_too() -> None:
    grants, grant, _ = _grant()
    access = {"at-live": _Access(grant, time.time() + 60)}
    answer = revoke_token(_form(query={"token": "at-live"}), grants, access, ERRORS, _revoked)
    assert answer.status == 200 and grant.revoked


def test_expired_access_rotated_out_unknown_and_missing_tokens_are_refused() -> None:
    grants, grant, old = _grant()
    grants.rotate(grant, "rt-", 16)
    access = {"at-old": _Access(grant, time.time() - 1)}
    assert _step(revoke_token(_form(token="at-old"), grants, access, ERRORS, _revoked)) == "revoke_invalid"
    assert _step(revoke_token(_form(token=old), grants, access, ERRORS, _revoked)) == "revoke_invalid"
    assert _step(revoke_token(_form(token="nobody"), grants, access, ERRORS, _revoked)) == "revoke_invalid"
    assert _step(revoke_token(_form(), grants, access, ERRORS, _revoked)) == "revoke_missing"
    assert not grant.revoked


def test_minted_tokens_are_in_the_ledger_for_leak_checks() -> None:
    ledger = TokenLedger()
    grants = GrantBook(ledger)
    refresh = grants.rotate(grants.open("u1", ()), "rt-", 16)
    access = ledger.mint("at-", 16)
    assert {refresh, access, ledger.mint_hex(8)} <= ledger.issued
