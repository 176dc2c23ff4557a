"""The teacher's pages in a real Chromium: linking through each provider's consent page, every failure a teacher
can meet, the privacy page, and the same pages in Ukrainian. axe-core runs on every page; each is screenshotted
under test-artifacts/screenshots/ (``teacher-*.png``) for a reviewer."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page

from settings import GOOGLE_SCOPES
from tests.plugins.browser import OpenPage, ServedApp, assert_accessible, fresh_teacher_id, screenshot

PROPER = {"google": "Google Classroom", "clever": "Clever", "microsoft": "Microsoft 365"}
OPERATOR_WORDS = ("rostersync link", "integration ", "state", "callback", "scope", "LINK_SIGNING_KEY", "{", "detail")


def consenting(served_app: ServedApp, provider: str, index: int = 0) -> None:
    """Who approves the next consent at the provider's emulator: its teacher ``index``."""
    if provider == "google":
        served_app.google.set_consent_user(served_app.google.teacher_ids[index])
    elif provider == "clever":
        served_app.clever.set_consent_user(served_app.clever.teacher_ids()[index])
    else:
        tenant = served_app.microsoft.tenant_ids[0]
        served_app.microsoft.set_signin_user(served_app.microsoft.teacher_ids(tenant)[index])


def watch_console(page: Page) -> list[str]:
    """The browser's console errors (a stylesheet or script the page's CSP refused shows up here)."""
    errors: list[str] = []
    page.on("console", lambda entry: errors.append(entry.text) if entry.type == "error" else None)
    return errors


def check_page(page: Page, name: str, *, status: int | None = None) -> str:
    """The checks every teacher page passes: styled by our stylesheet, no operator words, axe; a screenshot."""
    text = page.inner_text("body")
    for word in OPERATOR_WORDS:
        assert word not in text, f"{name}: {word!r} on a teacher's page"
    border = page.eval_on_selector("main", "main => getComputedStyle(main).borderTopWidth")
    assert border != "0px", f"{name}: the stylesheet did not apply"
    assert_accessible(page)
    screenshot(page, name)
    return text


@pytest.mark.parametrize("provider", ["google", "clever", "microsoft"])
def test_a_teacher_links_through_the_consent_page_and_sees_their_classes(
    page: Page, served_app: ServedApp, provider: str
) -> None:
    errors = watch_console(page)
    consenting(served_app, provider)
    response = page.goto(served_app.signed_link(provider, fresh_teacher_id()))
    assert response is not None and response.status == 200
    assert page.url.startswith(served_app.url(f"/oauth/{provider}/callback?"))  # through the emulator's consent
    assert page.inner_text("h1") == f"Your {PROPER[provider]} account is linked"
    classes = page.locator("ul.classes li").all_inner_texts()
    assert classes, f"{provider}: no class listed"
    listing = "This class will sync:" if len(classes) == 1 else f"These {len(classes)} classes will sync:"
    assert listing in page.inner_text("main")
    back = page.get_by_role("link", name="Back to the platform")
    assert back.get_attribute("href") == served_app.platform_url
    response_headers = response.headers
    assert "style-src 'self'" in response_headers["content-security-policy"]
    assert "script-src" not in response_headers["content-security-policy"]
    check_page(page, f"teacher-linked-{provider}")

    page.get_by_role("link", name=f"What rostersync reads from {PROPER[provider]} and what it keeps").click()
    assert page.url == served_app.url(f"/privacy/{provider}")
    assert page.inner_text("h1") == f"What rostersync keeps from {PROPER[provider]}"
    privacy = check_page(page, f"teacher-privacy-{provider}")
    assert "About each student of your classes" in privacy and "a pseudonym made from their" in privacy
    assert f"deleted after {served_app.settings.removed_retention_days} days" in privacy
    assert not errors, errors


def test_refusing_at_the_consent_page_says_nothing_was_linked(page: Page, served_app: ServedApp) -> None:
    """The provider sends the teacher back with ``error=access_denied``, as it does when they click Cancel."""
    started = page.request.get(served_app.signed_link("google", fresh_teacher_id()), max_redirects=0)
    assert started.status == 302  # the browser's context now holds the link's cookie
    consent = parse_qs(urlsplit(started.headers["location"]).query)
    response = page.goto(f"{consent['redirect_uri'][0]}?error=access_denied&state={consent['state'][0]}")
    assert response is not None and response.status == 400
    assert page.inner_text("h1") == "You did not allow access"
    text = check_page(page, "teacher-failure-refused")
    assert "Google Classroom says access was not allowed, so nothing was linked." in text
    assert "choose Allow" in text


def test_a_partial_grant_asks_to_leave_every_permission_ticked(page: Page, served_app: ServedApp) -> None:
    consenting(served_app, "google")
    served_app.google.set_granted_scopes([GOOGLE_SCOPES[0]])
    response = page.goto(served_app.signed_link("google", fresh_teacher_id()))
    assert response is not None and response.status == 400
    assert page.inner_text("h1") == "Some permissions were left out"
    assert "leave every permission ticked" in check_page(page, "teacher-failure-permissions")
    assert served_app.google.live_grants(served_app.google.teacher_ids[0]) == 0  # handed back


def test_an_expired_and_a_reused_link_say_to_start_again_from_the_platform(page: Page, served_app: ServedApp) -> None:
    response = page.goto(served_app.signed_link("clever", fresh_teacher_id(), lifetime=-5))
    assert response is not None and response.status == 403
    assert page.inner_text("h1") == "This link has expired"
    assert "use its Connect button again" in check_page(page, "teacher-failure-expired")

    consenting(served_app, "clever")
    link = served_app.signed_link("clever", fresh_teacher_id())
    first = page.goto(link)
    assert first is not None and first.status == 200
    again = page.goto(link)
    assert again is not None and again.status == 403
    assert page.inner_text("h1") == "This link was already used"
    check_page(page, "teacher-failure-reused")


def test_a_link_finished_in_another_browser_links_nothing(open_page: OpenPage, served_app: ServedApp) -> None:
    """A teacher's consent URL (or its landing) forwarded to someone else links nothing there."""
    mine, other = open_page(), open_page()
    consenting(served_app, "microsoft")
    started = mine.request.get(served_app.signed_link("microsoft", fresh_teacher_id()), max_redirects=0)
    approved = mine.request.get(started.headers["location"], max_redirects=0)
    landing = approved.headers["location"]
    assert landing.startswith(served_app.url("/oauth/microsoft/callback?"))
    response = other.goto(landing)
    assert response is not None and response.status == 400
    assert other.inner_text("h1") == "Connecting could not finish in this browser"
    check_page(other, "teacher-failure-other-browser")


def test_an_account_another_teacher_linked_is_refused_and_handed_back(page: Page, served_app: ServedApp) -> None:
    consenting(served_app, "google")
    first = page.goto(served_app.signed_link("google", fresh_teacher_id()))
    assert first is not None and first.status == 200
    taken = page.goto(served_app.signed_link("google", fresh_teacher_id()))
    assert taken is not None and taken.status == 409
    assert page.inner_text("h1") == "This Google Classroom account is linked by another teacher"
    text = check_page(page, "teacher-failure-account-taken")
    assert "handed back" in text and "administrator" in text


@pytest.mark.parametrize(
    ("path", "status", "title"),
    [
        ("/link/google", 422, "This link is incomplete or damaged"),  # no teacher, no signature
        ("/link/google?teacher=t&basis=everyone", 422, "This link is incomplete or damaged"),
        ("/oauth/google/callback?state=" + "x" * 600, 422, "This link is incomplete or damaged"),
        ("/link/", 404, "Page not found"),
        ("/link/myspace?teacher=t", 404, "This service cannot be connected"),
        ("/privacy/myspace", 404, "Page not found"),
        ("/link/google?teacher=t", 403, "This link did not come from the platform"),
    ],
)
def test_a_bad_or_missing_parameter_gets_a_page_never_json(
    page: Page, served_app: ServedApp, path: str, status: int, title: str
) -> None:
    response = page.goto(served_app.url(path))
    assert response is not None and response.status == status
    assert response.headers["content-type"].startswith("text/html")
    assert page.inner_text("h1") == title
    check_page(page, f"teacher-bad-{status}-{path.split('/')[1]}-{len(path)}")


def test_the_pages_in_ukrainian(open_page: OpenPage, served_app: ServedApp) -> None:
    page = open_page(locale="uk-UA")
    consenting(served_app, "microsoft")
    response = page.goto(served_app.signed_link("microsoft", fresh_teacher_id()))
    assert response is not None and response.status == 200
    assert response.headers["content-language"] == "uk"
    assert page.get_attribute("html", "lang") == "uk"
    assert page.inner_text("h1") == "Ваш обліковий запис Microsoft 365 під’єднано"
    classes = page.locator("ul.classes li").all_inner_texts()
    assert classes and "Синхронізуват" in page.inner_text("main")
    assert page.get_by_role("link", name="Повернутися на платформу").get_attribute("href") == served_app.platform_url
    check_page(page, "teacher-uk-linked-microsoft")

    page.get_by_role("link", name="Що rostersync читає з Microsoft 365 і що зберігає").click()
    assert page.inner_text("h1") == "Що rostersync зберігає з Microsoft 365"
    assert "Як довго це зберігається" in check_page(page, "teacher-uk-privacy-microsoft")

    expired = page.goto(served_app.signed_link("google", fresh_teacher_id(), lifetime=-5))
    assert expired is not None and expired.status == 403
    assert page.inner_text("h1") == "Термін дії цього посилання минув"
    check_page(page, "teacher-uk-failure-expired")

    bad = page.goto(served_app.url("/link/google"))
    assert bad is not None and bad.status == 422
    assert page.inner_text("h1") == "Це посилання неповне або пошкоджене"
    check_page(page, "teacher-uk-bad-parameter")
