"""Helpers of the console's tests: sign in through the form, read a page's CSRF token, post a console form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from httpx import Response

from tests.webkit import ADMIN_TOKENS

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
GUARD = re.compile(r'name="guard" value="([^"]+)"')


def sign_in(client: TestClient, token: str = ADMIN_TOKENS[0], next_: str = "/console/") -> Response:
    form = client.get("/console/sign-in", params={"next": next_})
    assert form.status_code == 200, form.text
    guard = GUARD.search(form.text)
    assert guard is not None
    return client.post(
        "/console/sign-in", data={"guard": guard.group(1), "token": token, "next": next_}, follow_redirects=False
    )


def csrf_of(client: TestClient, path: str = "/console/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None, f"no form on {path}"
    return found.group(1)


def post_form(client: TestClient, path: str, **fields: str) -> Response:
    """Post the form of the confirmation page at ``path`` (its CSRF token included), as a browser would."""
    return client.post(path, data={"csrf": csrf_of(client, path), **fields}, follow_redirects=False)
