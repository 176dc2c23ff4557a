"""The teacher pages' words: every kept field and retention rule of the inventory has a phrase, providers
their proper names, and ``PLATFORM_URL`` is a URL a teacher may safely be sent to."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from providers.registry import PROVIDERS
from services.inventory import provider_inventory
from settings import Settings
from web.i18n import LANGUAGES, Words
from web.privacy import field_words, privacy_view, retention_words, role_heading


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_field_and_rule_of_the_inventory_has_plain_words(provider: str, lang: str) -> None:
    words, settings = Words(lang), Settings()
    inventory = provider_inventory(settings, provider)
    for role, entry in inventory["roles"].items():
        assert role_heading(words, role) != role, f"no heading for the role {role!r}"
        for kept in entry["kept"]:
            assert field_words(words, kept["field"], provider), f"no words for the kept field {kept['field']!r}"
    for rule in inventory["retention"]:
        assert retention_words(words, rule, settings, provider), f"no words for the retention rule {rule!r}"
    view = privacy_view(words, settings, provider)
    shown = " ".join(
        [*view["intro"], *view["reads"], *view["retention"]] + [k for r in view["roles"] for k in r["kept"]]
    )
    assert "_" not in shown.replace(".", " ")  # no field or rule shown by its code name


def test_the_retention_words_carry_this_servers_numbers() -> None:
    settings = Settings(removed_retention_days=12, revoked_grace_seconds=600, link_state_ttl_seconds=300)
    view = privacy_view(Words("en"), settings, "clever")
    assert "A class or person Clever no longer lists is hidden at once and deleted after 12 days." in view["retention"]
    assert any("Anything left is removed within 10 minutes." in rule for rule in view["retention"])
    assert "A connection you start but do not finish is forgotten after 5 minutes." in view["retention"]


def test_providers_have_their_proper_names() -> None:
    assert {name: spec.proper_name for name, spec in PROVIDERS.items()} == {
        "google": "Google Classroom",
        "clever": "Clever",
        "microsoft": "Microsoft 365",
    }


@pytest.mark.parametrize("url", ["http://platform.example/", "/classes", "javascript:alert(1)", "https://"])
def test_the_platform_url_must_be_https_with_a_host(url: str) -> None:
    with pytest.raises(ValidationError, match="the platform URL must use https and name a host"):
        Settings(platform_url=url)


def test_the_platform_url_is_optional() -> None:
    assert Settings().platform_url is None and Settings(platform_url="").platform_url is None
    assert Settings(platform_url="https://platform.example/classes").platform_url == "https://platform.example/classes"
