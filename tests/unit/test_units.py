"""Pieces with no I/O: settings, vault, pseudonymiser, field masks and the Google error map."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from connectors.base import AccessBlocked, ProviderDataError, RateLimited, ScopeMissing, TransientError
from connectors.google import classify_api_error
from mappers.google import EMAILS_SCOPE as GOOGLE_EMAILS_SCOPE
from mappers.google import field_mask
from mappers.policy import Pseudonymiser
from settings import ConfigError, Settings
from store.vault import TokenVault, VaultError

SCOPE = "https://www.googleapis.com/auth/classroom.rosters.readonly"


def test_missing_secrets_are_a_clear_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROSTERSYNC_PSEUDONYM_KEY", "ROSTERSYNC_TOKEN_KEYS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="ROSTERSYNC_PSEUDONYM_KEY, ROSTERSYNC_TOKEN_KEYS"):
        Settings().require_secrets()
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(pseudonym_key="short", token_keys=Fernet.generate_key().decode())


def test_plain_http_provider_urls_are_refused() -> None:
    with pytest.raises(ValidationError, match="https"):
        Settings(google_token_uri="http://127.0.0.1:1/token")


def test_vault_rotates_keys() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_with_old = TokenVault(old).seal({"refresh_token": "1//secret"})
    assert b"1//secret" not in sealed_with_old
    rotated = TokenVault(f"{new},{old}")
    assert rotated.open(sealed_with_old) == {"refresh_token": "1//secret"}
    with pytest.raises(VaultError):
        TokenVault(old).open(rotated.seal({"a": 1}))
    with pytest.raises(VaultError, match="not a valid Fernet key"):
        TokenVault("nope")


def test_pseudonym_is_stable_keyed_and_per_tenant() -> None:
    one = Pseudonymiser("k" * 32)
    assert one.pseudonym("google", "a", "123") == Pseudonymiser("k" * 32).pseudonym("google", "a", "123")
    assert one.pseudonym("google", "a", "123") != one.pseudonym("google", "b", "123")
    assert one.pseudonym("google", "a", "123") != Pseudonymiser("j" * 32).pseudonym("google", "a", "123")
    assert "123" not in one.pseudonym("google", "a", "123")


def test_pseudonyms_never_change_across_versions() -> None:
    """Stored pseudonyms are keys: the fast HMAC (issue 22) gives exactly what ``hmac.new`` gave before."""
    one = Pseudonymiser("k" * 32)
    assert one.pseudonym("google", "a", "123") == "3a6255df416de3411f983cf71f6b4fdc994441a59a4187aab9d49aac0a6a66d3"
    assert (
        one.pseudonym("clever", "t-\u00e9", "\u00fc-42")
        == "7c0b91df809ef2d85f68fd3bb3f1cd57249f6a732d72a4bd900580521df4eb92"
    )


def test_teacher_email_is_asked_for_only_when_the_grant_returns_it() -> None:
    assert "emailAddress" not in field_mask("teacher", frozenset())
    assert "emailAddress" in field_mask("teacher", frozenset({GOOGLE_EMAILS_SCOPE}))
    assert field_mask("student", frozenset({GOOGLE_EMAILS_SCOPE})) == "students(userId),nextPageToken"


def _error(message: str = "", reason: str = "", detail: str = "") -> dict[str, object]:
    return {"error": {"message": message, "errors": [{"reason": reason}], "details": [{"reason": detail}]}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, _error(reason="rateLimitExceeded"), RateLimited),
        (403, _error(reason="userRateLimitExceeded"), RateLimited),
        (403, _error(detail="ACCESS_TOKEN_SCOPE_INSUFFICIENT"), ScopeMissing),
        (403, _error(reason="insufficientPermissions"), ScopeMissing),
        (403, _error(message="@ClassroomApiDisabled The user is not permitted"), AccessBlocked),
        (403, _error(message="@ClassroomDisabled The user is not permitted"), AccessBlocked),
        # Google's error guide: the code is the message's first word, followed by a space
        (403, _error(message="@ClassroomApiDisabledByPolicy is not ours to read"), ProviderDataError),
        (403, _error(message="see @ClassroomDisabled docs"), ProviderDataError),
        (403, _error(message="The caller does not have permission"), ProviderDataError),
        (404, _error(), ProviderDataError),
        (500, _error(), TransientError),
        (503, {}, TransientError),
    ],
)
def test_google_error_map(status: int, body: dict[str, object], expected: type[Exception]) -> None:
    assert isinstance(classify_api_error(status, body, None, required_scope=SCOPE), expected)


def test_retry_after_is_read_and_defaulted() -> None:
    limited = classify_api_error(429, {}, "7", required_scope=SCOPE)
    assert isinstance(limited, RateLimited) and limited.retry_after == 7
    fallback = classify_api_error(429, {}, "soon", required_scope=SCOPE)
    assert isinstance(fallback, RateLimited) and fallback.retry_after == 30
