"""Weak or empty secrets are refused at start-up (issue 18, item 4): one `error:` line naming the setting,
never the value. An empty ``LINK_SIGNING_KEY`` used to count as configured, so anyone could link in any
teacher's name; a one-letter admin token, a key of one repeated letter, an all-zero Fernet key all passed."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from settings import Settings
from tests.clikit import env_for, one_line_error, run

GOOD = {"pseudonym_key": secrets.token_urlsafe(48), "token_keys": Fernet.generate_key().decode()}
ZERO_FERNET = base64.urlsafe_b64encode(bytes(32)).decode()
WEAK = [
    ("link_signing_key", "", "empty"),
    ("link_signing_key", "   ", "empty"),
    ("link_signing_key", "s" * 31 + "x", None),  # 32: long enough, and not one repeated character
    ("link_signing_key", "short-signing-key", "at least 32"),
    ("link_signing_key", "k" * 40, "one repeated character"),
    ("admin_tokens", "", "empty"),
    ("admin_tokens", "x", "at least 32"),
    ("admin_tokens", secrets.token_urlsafe(32) + ",x", "at least 32"),
    ("admin_tokens", secrets.token_urlsafe(32) + ",,", "empty"),
    ("admin_tokens", "a" * 32, "one repeated character"),
    ("platform_tokens", "", "empty"),
    ("platform_tokens", "short-platform-token", "at least 32"),
    ("platform_tokens", secrets.token_urlsafe(32) + ",,", "empty"),
    ("platform_tokens", "p" * 40, "one repeated character"),
    ("pseudonym_key", "", "empty"),
    ("pseudonym_key", "z" * 32, "one repeated character"),
    ("pseudonym_key", "short", "at least 32"),
    ("token_keys", "", "empty"),
    ("token_keys", ZERO_FERNET, "one repeated byte"),
    ("token_keys", f"{Fernet.generate_key().decode()},{ZERO_FERNET}", "one repeated byte"),
    ("token_keys", "not-a-fernet-key", "not a valid Fernet key"),
    ("token_keys", f"{Fernet.generate_key().decode()},", "empty"),
]


# Ids name the case, never the value: a generated value would differ between xdist workers' collections.
WEAK_IDS = [f"{name}-{complaint or 'accepted'}-{n}" for n, (name, _, complaint) in enumerate(WEAK)]


@pytest.mark.parametrize(("name", "value", "complaint"), WEAK, ids=WEAK_IDS)
def test_weak_or_empty_secrets_are_refused_without_their_value(name: str, value: str, complaint: str | None) -> None:
    if complaint is None:
        assert Settings(**(GOOD | {name: value})) is not None
        return
    with pytest.raises(ValidationError) as raised:
        Settings(**(GOOD | {name: value}))
    [error] = raised.value.errors()
    assert error["loc"] == (name,) and complaint in error["msg"]
    if value.strip():
        assert value not in str(raised.value)  # neither the message nor the whole error echoes the secret


def test_generated_keys_pass() -> None:
    settings = Settings(
        **GOOD,
        admin_tokens=f"{secrets.token_urlsafe(32)},{secrets.token_urlsafe(32)}",
        link_signing_key=secrets.token_urlsafe(48),
    )
    settings.require_secrets()
    assert len(settings.admin_token_list()) == 2


def test_a_token_of_both_apis_is_refused_without_its_value() -> None:
    """Issue 20: a platform token must not open the admin API (nor the reverse), so no token may be both."""
    shared = secrets.token_urlsafe(32)
    with pytest.raises(ValidationError) as raised:
        Settings(**GOOD, admin_tokens=f"{secrets.token_urlsafe(32)},{shared}", platform_tokens=f" {shared}")
    [error] = raised.value.errors()
    assert error["loc"] == ("platform_tokens",) and "also an admin token" in error["msg"]
    assert shared not in str(raised.value)
    both = Settings(**GOOD, admin_tokens=secrets.token_urlsafe(32), platform_tokens=f"{shared},{shared[::-1]}")
    assert both.platform_token_list() == sorted([shared, shared[::-1]])


def test_an_empty_signing_key_stops_every_command_in_one_line(sqlite_settings: Settings) -> None:
    env = env_for(sqlite_settings)
    for command in (("status",), ("web", "--port", "1"), ("scheduler", "--once"), ("worker",)):
        result = run(*command, env=env | {"ROSTERSYNC_LINK_SIGNING_KEY": ""})
        one_line_error(result, "ROSTERSYNC_LINK_SIGNING_KEY", "empty")
    short = env | {"ROSTERSYNC_ADMIN_TOKENS": "tok-a-secret-value"}
    result = run("web", env=short)
    one_line_error(result, "ROSTERSYNC_ADMIN_TOKENS", "at least 32")
    assert "tok-a-secret-value" not in result.stderr + result.stdout
    weak_platform = env | {"ROSTERSYNC_PLATFORM_TOKENS": "plat-secret-value"}
    result = run("web", env=weak_platform)
    one_line_error(result, "ROSTERSYNC_PLATFORM_TOKENS", "at least 32")
    assert "plat-secret-value" not in result.stderr + result.stdout
