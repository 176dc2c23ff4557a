"""The teacher's pages in a real Chromium: linking through each provider's consent page, failures, languages."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.plugins.browser import ServedApp, assert_accessible, fresh_teacher_id, screenshot


def test_a_google_teacher_links_in_the_browser(page: Page, served_app: ServedApp) -> None:
    served_app.google.set_consent_user(served_app.google.teacher_ids[0])
    response = page.goto(served_app.signed_link("google", fresh_teacher_id()))
    assert response is not None and response.status == 200
    assert page.url.startswith(served_app.url("/oauth/google/callback?"))
    assert_accessible(page)
    screenshot(page, "teacher-linked-google")
