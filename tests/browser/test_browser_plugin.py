"""The browser plugin's own checks can fail: axe refuses an inaccessible page, a screenshot is a PNG."""

from __future__ import annotations

import asyncio

import pytest
from playwright.sync_api import Page

from tests.plugins.browser import SCREENSHOTS, assert_accessible, screenshot


def test_axe_fails_a_page_with_serious_violations(page: Page) -> None:
    page.set_content('<html><body><img src="x.png"><input type="text"></body></html>')
    with pytest.raises(AssertionError, match=r"image-alt \(critical\).*label \(critical\)|label.*image-alt"):
        assert_accessible(page)


def test_axe_passes_a_plain_page_and_reports_the_minor_rest(page: Page) -> None:
    page.set_content('<!doctype html><html lang="en"><head><title>Fine</title></head><body><p>Fine.</p></body></html>')
    assert all(violation["impact"] not in ("serious", "critical") for violation in assert_accessible(page))
    path = screenshot(page, "browser-plugin-plain")
    assert path.parent == SCREENSHOTS and path.read_bytes().startswith(b"\x89PNG")


def test_a_browser_test_runs_first(page: Page) -> None:
    page.set_content("<p>x</p>")
    assert page.inner_text("p") == "x"


def test_asyncio_still_runs_after_a_browser_test() -> None:
    """Playwright's sync driver keeps its loop running in this thread; a test without the browser still has
    ``asyncio.run`` (the order of this file: the browser test above runs first, in the same process)."""
    assert asyncio.run(asyncio.sleep(0, result=7)) == 7
