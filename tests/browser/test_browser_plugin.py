"""The browser plugin's own checks can fail: axe refuses an inaccessible page, a screenshot is a PNG."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from playwright.sync_api import Page

from tests.plugins.browser import SCREENSHOTS, _loop_set_aside, assert_accessible, screenshot


def test_axe_fails_a_page_with_serious_violations(page: Page) -> None:
    page.set_content('<html><body><img src="x.png"><input type="text"></body></html>')
    with pytest.raises(AssertionError, match=r"image-alt \(critical\).*label \(critical\)|label.*image-alt"):
        assert_accessible(page)


def test_axe_passes_a_plain_page_and_reports_the_minor_rest(page: Page) -> None:
    page.set_content('<!doctype html><html lang="en"><head><title>Fine</title></head><body><p>Fine.</p></body></html>')
    assert all(violation["impact"] not in ("serious", "critical") for violation in assert_accessible(page))
    path = screenshot(page, "browser-plugin-plain")
    assert path.parent == SCREENSHOTS and path.read_bytes().startswith(b"\x89PNG")


def test_asyncio_still_runs_in_the_tests_without_the_browser(page: Page) -> None:
    """Playwright's sync driver keeps its loop running in this thread between calls, which would break any
    later test's ``asyncio.run`` in the same process; the plugin sets the loop aside around such a test."""
    page.set_content("<p>x</p>")
    blocked = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(blocked)  # the problem is real: here, inside a browser test
    blocked.close()
    without_browser = SimpleNamespace(fixturenames=["tmp_path"])
    with _loop_set_aside(without_browser):  # what the plugin's hooks do around a test without the browser
        assert asyncio.run(asyncio.sleep(0, result=7)) == 7
    assert page.inner_text("p") == "x"  # and the driver works after it
