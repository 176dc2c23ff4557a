"""The data inventory is generated from the allowlist, the field masks and the settings, and cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emulators.google import GoogleEmulator
from mappers.google import ALLOWLIST as GOOGLE_ALLOWLIST
from mappers.google import EMAILS_SCOPE as GOOGLE_EMAILS_SCOPE
from mappers.policy import FieldRule
from services.inventory import integration_inventory, provider_inventory, render
from settings import GOOGLE_SCOPES, Settings
from store.runtime import Runtime
from tests.conftest import Linker

DOCS = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"


def defaults() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_inventory_follows_the_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    before = provider_inventory(defaults(), "google")
    student = before["roles"]["student"]
    assert student["on_the_wire"] == "students(userId),nextPageToken"
    assert [k["field"] for k in student["kept"]] == ["pseudonym"]

    # Someone widens the student allowlist: the inventory says so at once, on the wire and in what is kept.
    widened = (*GOOGLE_ALLOWLIST["student"], FieldRule("display_name", ("profile", "name", "fullName")))
    monkeypatch.setitem(GOOGLE_ALLOWLIST, "student", widened)
    after = provider_inventory(defaults(), "google")
    student = after["roles"]["student"]
    assert student["on_the_wire"] == "students(userId,profile(name(fullName))),nextPageToken"
    assert {"field": "display_name", "from": "profile.name.fullName", "stored": "as sent", "only_with_scope": None} in (
        student["kept"]
    )
    assert render(after) != render(before)


def test_inventory_follows_the_settings() -> None:
    shorter = Settings(_env_file=None, removed_retention_days=7, deleted_account_retention_months=3)  # type: ignore[call-arg]
    text = render(provider_inventory(shorter, "google"))
    assert "deleted after 7 days" in text and "3 months after" in text
    google = provider_inventory(defaults(), "google")
    assert google["scopes_asked"] == sorted(scope.rsplit("/", 1)[-1] for scope in GOOGLE_SCOPES)
    assert google["optional_scopes_honoured"] == [GOOGLE_EMAILS_SCOPE.rsplit("/", 1)[-1]]
    teacher = google["roles"]["teacher"]
    assert (
        "emailAddress" not in teacher["on_the_wire"] and "emailAddress" in teacher["on_the_wire_with_optional_scopes"]
    )


def test_docs_show_the_inventory_as_the_command_prints_it() -> None:
    match = re.search(r"<!-- inventory:google -->\n```\n(.*?)```\n<!-- /inventory -->", DOCS.read_text(), re.S)
    assert match, "docs/privacy.md holds the Google inventory between its markers"
    assert match.group(1) == render(provider_inventory(defaults(), "google"))


def test_one_integrations_inventory_follows_its_grant(runtime: Runtime, emulator: GoogleEmulator, link: Linker) -> None:
    plain = link(0)
    emulator.set_granted_scopes([*GOOGLE_SCOPES, GOOGLE_EMAILS_SCOPE])
    with_emails = link(1)
    kept = {
        integration_id: [k["field"] for k in integration_inventory(runtime, integration_id)["roles"]["teacher"]["kept"]]
        for integration_id in (plain, with_emails)
    }
    assert kept[plain] == ["pseudonym", "display_name"]
    assert kept[with_emails] == ["pseudonym", "display_name", "email_address"]
    one = integration_inventory(runtime, with_emails)
    assert one["consent_basis"] == "school"  # recorded at link time, the default of a teacher link
    assert "classroom.profile.emails" in one["scopes_granted"]
    assert "emailAddress" in one["roles"]["teacher"]["on_the_wire"]
